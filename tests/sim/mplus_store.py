"""mplus_store - one simulated MplusKASSA administration: data, sync markers, operations.

Everything is kept as dicts shaped like the schema's types (see
mplus_schema.py): element names as keys, lists for repeated elements, money
in cents, quantities as value + decimalPlaces.  Each entity kind has its own
sync-marker sequence (a ChangeLog): every change takes the next number, and
the operations return changes from a requested marker in marker order, at
most syncMarkerLimit of them.  Stock has the stockId sequence.

Bulk-seeded articles (POST /_sim/seed) are not stored one by one: a Bulk
range derives every field from the article's index, and getProducts writes
them from a precomputed XML template, so 100,000 articles cost next to no
memory and a page of 1,000 takes a few milliseconds.  An article of a bulk
range that is changed later is "materialized" into the ordinary store.

The caller (mplus_sim.Simulator) holds Store.lock around every call.
"""

import bisect
import copy
import datetime
import decimal
import heapq
import threading
import uuid

from lxml import etree

import mplus_schema
from mplus_schema import TZ, URN, SchemaError, mplus_date, mplus_datetime

D = decimal.Decimal
KINDS = ("article", "articleGroup", "relation", "employee", "receipt", "invoice", "order", "stock")


class StoreError(Exception):
    """Bad control-API input (400)."""


class RawXML:
    """A response whose body element is already serialized (getProducts' fast path)."""

    def __init__(self, element, inner, count, max_marker):
        self.element, self.inner, self.count, self.max_marker = element, inner, count, max_marker


def cents(value):
    """Decimal -> int, rounded half up (the usual rounding of money)."""
    return int(D(value).quantize(D(1), rounding=decimal.ROUND_HALF_UP))


def scaled(amount, fewest=True):
    """Decimal amount -> (long value, decimalPlaces), with the fewest places when fewest
    (else as many as the amount is written with), at most 3."""
    amount = D(amount)
    if fewest:
        amount = amount.normalize()
    places = max(0, -amount.as_tuple().exponent)
    if places > 3:
        amount = amount.quantize(D("0.001"), rounding=decimal.ROUND_HALF_UP)
        places = 3
    return int(amount.scaleb(places)), places


def unscaled(value, places):
    return D(value).scaleb(-(places or 0))


def line_totals(data):
    """(incl, excl) of a document line's data; a line without totalExclAmount counts its gross
    less its VAT at the line's rate."""
    incl = data.get("totalInclAmount", 0)
    excl = data.get("totalExclAmount")
    if excl is None:
        excl = cents(D(incl) * 100 / (100 + data.get("vatPercentage", 0)))
    return incl, excl


def ymd(date_dict):
    return (date_dict["year"], date_dict["mon"], date_dict["day"])


def now():
    return datetime.datetime.now(TZ)


# ---- sync-marker sequences ---------------------------------------------------------


class ChangeLog:
    """One sync-marker sequence: head is the last marker handed out (0: none yet).

    marks/keys are parallel, sorted by marker; an entry is stale when its key
    has changed again since (current[key] holds the key's latest marker).
    """

    def __init__(self):
        self.head = 0
        self.marks = []
        self.keys = []
        self.current = {}

    def bump(self, key):
        self.head += 1
        self.current[key] = self.head
        self.marks.append(self.head)
        self.keys.append(key)
        return self.head

    def reserve(self, n):
        """n consecutive markers for a bulk range; the first one is returned."""
        first = self.head + 1
        self.head += n
        return first

    def insert(self, key, marker):
        """Records a key at an older marker (a materialized bulk article keeps its marker)."""
        pos = bisect.bisect_right(self.marks, marker)
        self.marks.insert(pos, marker)
        self.keys.insert(pos, key)
        self.current[key] = marker

    def iter_from(self, start):
        """(marker, key) of every current change with marker >= start, in marker order."""
        marks, keys, current = self.marks, self.keys, self.current
        for i in range(bisect.bisect_left(marks, start), len(marks)):
            key = keys[i]
            if current.get(key) == marks[i]:
                yield marks[i], key


# ---- master data -------------------------------------------------------------------

VAT_RATES = {1: 9, 2: 21, 3: 0}   # vatCode -> whole percent (NL: low, high, zero)
VAT_METHODS = {"inclusive": "VAT-METHOD-INCLUSIVE", "exclusive": "VAT-METHOD-EXCLUSIVE"}
LINE_TYPES = {"NONE": "LINE-TYPE-NONE", "PREPARATION": "LINE-TYPE-PREPARATION", "COMPONENT": "LINE-TYPE-COMPONENT"}

BRANCHES = [
    {"branchNumber": 1, "branchName": "Amsterdam Centrum", "abbreviation": "AMS", "extBranchId": "AMS-01",
     "countryCode": 528, "countryIso3": "NLD", "countryName": "Nederland",
     "workplaces": {"workplace": [
         {"workplaceNumber": 1, "workplaceName": "Kassa 1", "isMobile": False, "workplaceType": "STANDARD"},
         {"workplaceNumber": 2, "workplaceName": "Kassa 2", "isMobile": False, "workplaceType": "STANDARD"}]}},
    {"branchNumber": 2, "branchName": "Utrecht Oudegracht", "abbreviation": "UTR", "extBranchId": "UTR-01",
     "countryCode": 528, "countryIso3": "NLD", "countryName": "Nederland",
     "workplaces": {"workplace": [
         {"workplaceNumber": 1, "workplaceName": "Kassa 1", "isMobile": False, "workplaceType": "STANDARD"},
         {"workplaceNumber": 3, "workplaceName": "Handheld", "isMobile": True, "workplaceType": "MOBILE"}]}},
]

TURNOVER_GROUPS = [
    {"turnoverGroupType": "TURNOVER-GROUP-TYPE-TURNOVER", "turnoverGroup": 1, "turnoverGroupName": "Dranken",
     "accountNumber": 8000, "defaultVatCode": 1},
    {"turnoverGroupType": "TURNOVER-GROUP-TYPE-TURNOVER", "turnoverGroup": 2, "turnoverGroupName": "Eten",
     "accountNumber": 8010, "defaultVatCode": 1},
    {"turnoverGroupType": "TURNOVER-GROUP-TYPE-TURNOVER", "turnoverGroup": 3, "turnoverGroupName": "Kleding",
     "accountNumber": 8020, "defaultVatCode": 2,
     "branchAccountNumberList": {"branchAccountNumber": [{"branchNumber": 2, "accountNumber": 8021}]}},
    {"turnoverGroupType": "TURNOVER-GROUP-TYPE-TURNOVER", "turnoverGroup": 4, "turnoverGroupName": "Overig",
     "accountNumber": 8030, "defaultVatCode": 3},
    {"turnoverGroupType": "TURNOVER-GROUP-TYPE-PAYMENT", "turnoverGroup": 90, "turnoverGroupName": "Betalingen",
     "accountNumber": 1300},
    {"turnoverGroupType": "TURNOVER-GROUP-TYPE-CASH-INFLOW", "turnoverGroup": 91, "turnoverGroupName": "Kasstorting",
     "accountNumber": 1000},
]

PAYMENT_METHODS = [
    {"method": "CASH", "description": "Contant", "buttonText": "Contant", "allowNegativeAmount": True,
     "active": True, "type": "PAYMENT-METHOD-TYPE-PAYMENT", "accountNumber": 1000},
    {"method": "PIN", "description": "Pinbetaling", "buttonText": "PIN", "allowNegativeAmount": True,
     "active": True, "type": "PAYMENT-METHOD-TYPE-EFT", "accountNumber": 1100,
     "branchAccountNumberList": {"branchAccountNumber": [{"branchNumber": 2, "accountNumber": 1101}]}},
    {"method": "CREDITCARD", "description": "Creditcard", "buttonText": "Creditcard", "allowNegativeAmount": False,
     "active": True, "type": "PAYMENT-METHOD-TYPE-EFT", "accountNumber": 1110},
    {"method": "ON-ACCOUNT", "description": "Op rekening", "buttonText": "Op rekening", "allowNegativeAmount": True,
     "active": True, "type": "PAYMENT-METHOD-TYPE-PAYMENT", "accountNumber": 1300},
]

EMPLOYEES = [
    {"employeeNumber": 1, "name": "Anna Bakker", "username": "anna", "email": "anna@example.nl", "active": True},
    {"employeeNumber": 2, "name": "Bram Visser", "username": "bram", "email": "bram@example.nl", "active": True},
    {"employeeNumber": 999999, "name": "Beheerder", "username": "admin", "active": True},
]

ARTICLE_GROUPS = [
    {"groupNumber": 1, "name": "Dranken", "text": "Dranken", "sortOrder": 1},
    {"groupNumber": 11, "parentGroupNumber": 1, "name": "Warme dranken", "text": "", "sortOrder": 1,
     "productNumbers": {"number": [1, 2]}},
    {"groupNumber": 12, "parentGroupNumber": 1, "name": "Koude dranken", "text": "", "sortOrder": 2},
    {"groupNumber": 2, "name": "Kleding", "text": "Textiel", "sortOrder": 2, "productNumbers": {"number": [3]}},
    {"groupNumber": 3, "name": "Levensmiddelen", "text": "", "sortOrder": 3, "productNumbers": {"number": [4]}},
    {"groupNumber": 4, "name": "Overig", "text": "", "sortOrder": 4, "productNumbers": {"number": [5]}},
]

PRODUCTS = [
    {"productNumber": 1, "description": "Koffie", "groupNumbers": [11], "articleList": {"article": [
        {"articleNumber": 1001, "pluNumber": "1001", "description": "Koffie", "receiptText": "Koffie",
         "barcode": "8712345000012", "turnoverGroup": 1, "vatCode": 1, "priceIncl": 250, "purchasePrice": 40,
         "stockArticle": False, "webshop": False}]}},
    {"productNumber": 2, "description": "Cappuccino", "groupNumbers": [11], "articleList": {"article": [
        {"articleNumber": 1002, "pluNumber": "1002", "description": "Cappuccino", "receiptText": "Cappuccino",
         "turnoverGroup": 1, "vatCode": 1, "priceIncl": 320, "purchasePrice": 55, "stockArticle": False}]}},
    {"productNumber": 3, "description": "T-shirt logo", "groupNumbers": [2], "articleList": {"article": [
        {"articleNumber": 2001 + i, "extArticleId": "TS-LOGO-" + size, "pluNumber": str(2001 + i),
         "description": "T-shirt logo zwart " + size, "colour": "Zwart", "size": size, "sizeSequenceNumber": i + 1,
         "barcode": ("871234500010%d" % (i + 1)), "turnoverGroup": 3, "vatCode": 2, "priceIncl": 1995,
         "purchasePrice": 650, "stockArticle": True, "webshop": True, "brandName": "Huismerk"}
        for i, size in enumerate(("S", "M", "L"))]}},
    {"productNumber": 4, "description": "Oude kaas", "groupNumbers": [3], "articleList": {"article": [
        {"articleNumber": 3001, "pluNumber": "3001", "description": "Oude kaas per kg", "unit": "kg",
         "siUnit": "KGM", "turnoverGroup": 2, "vatCode": 1, "priceIncl": 1890, "purchasePrice": 1100,
         "stockArticle": True, "contentUnit": "kg", "contentQuantity": 1000, "contentQuantityDecimalPlaces": 3}]}},
    {"productNumber": 5, "description": "Postzegel", "groupNumbers": [4], "articleList": {"article": [
        {"articleNumber": 4001, "pluNumber": "4001", "description": "Postzegel NL 1", "turnoverGroup": 4,
         "vatCode": 3, "priceIncl": 114, "stockArticle": False}]}},
]

RELATIONS = [
    {"relationNumber": 10001, "extRelationId": "", "name": "Jansen Installatietechniek B.V.",
     "companyName": "Jansen Installatietechniek B.V.", "contact": "Marieke Jansen", "address": "Industrieweg 12",
     "zipcode": "3542 AD", "city": "Utrecht", "country": "Nederland", "telephone": "030-1234567",
     "email": "administratie@jansen-installatie.example", "vatNumber": "NL001234567B01",
     "commerceNumber": "30123456", "paymentWithinDays": 30, "creditLimit": 500000,
     "defaultVatMethod": "VAT-METHOD-INCLUSIVE"},
    {"relationNumber": 10002, "name": "Piet de Vries", "address": "Prinsengracht 263", "zipcode": "1016 GV",
     "city": "Amsterdam", "country": "Nederland", "mobile": "06-12345678", "email": "piet.devries@example.nl",
     "birthDate": {"day": 17, "mon": 5, "year": 1980}, "cardNumber": "2200001000027"},
    {"relationNumber": 10003, "name": "Caf\u00e9 't Hoekje", "companyName": "Caf\u00e9 't Hoekje V.O.F.",
     "contact": "Jo\u00ebl \u00d6zdemir", "address": "Oudegracht 101", "zipcode": "3511 AE", "city": "Utrecht",
     "country": "Nederland", "email": "info@hoekje.example", "discountPercentage": 5, "paymentWithinDays": 14},
]

STOCK = [(1, 2001, "25"), (1, 2002, "30"), (1, 2003, "20"), (1, 3001, "12.500"), (2, 2001, "5")]

# Sequence -> its element in getCurrentSyncMarkersResponse.
SYNC_MARKER_FIELDS = {"article": "articleSyncMarker", "articleGroup": "articleGroupSyncMarker",
                      "relation": "relationSyncMarker", "employee": "employeeSyncMarker",
                      "invoice": "invoiceSyncMarker", "receipt": "receiptSyncMarker",
                      "order": "orderSyncMarker", "stock": "stockId"}


def ean13(twelve):
    digits = "%012d" % twelve
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(digits))
    return digits + str((10 - total % 10) % 10)


# Digit sums of three-digit groups weighted 3,1,3 and 1,3,1 (right to left), for bulk EANs.
_W313 = [3 * (x % 10) + (x // 10 % 10) + 3 * (x // 100) for x in range(1000)]
_W131 = [(x % 10) + 3 * (x // 10 % 10) + (x // 100) for x in range(1000)]


def bulk_ean(j):
    """ean13(200000000000 + j) for 0 <= j < 10**9, without string work."""
    total = 2 + _W313[j % 1000] + _W131[j // 1000 % 1000] + _W313[j // 1000000 % 1000]
    return "2%011d%d" % (j, (10 - total % 10) % 10)


# ---- bulk-seeded articles ----------------------------------------------------------

# Variants of a bulk product (per_product > 1): sizes first, then colours, as
# sibling articles of one product differ in Mplus (shared/docs/mplus-api.md §2.3).
BULK_SIZES = ("S", "M", "L", "XL")
BULK_COLOURS = ("Zwart", "Wit", "Rood", "Blauw", "Groen")


def bulk_variant(k):
    """(colour, colourSequenceNumber, size, sizeSequenceNumber) of the k-th article of a
    bulk product: k = 0..3 are Zwart S, M, L, XL, k = 4..7 Wit S..XL, and so on.  After
    the five colours they come round again as "Zwart 2" ... so every article of a
    product has its own colour and size."""
    c, s = divmod(k, len(BULK_SIZES))
    colour = BULK_COLOURS[c % len(BULK_COLOURS)]
    if c >= len(BULK_COLOURS):
        colour += " %d" % (c // len(BULK_COLOURS) + 1)
    return colour, c + 1, BULK_SIZES[s], s + 1


class Bulk:
    """n articles (per_product to a product) whose fields follow from their index j.

    Article j: number a0+j, product p0+j//per_product, syncMarker m0+j.  With
    more than one article per product, the articles are variants: colour and
    size (with their sequence numbers) from bulk_variant(j % per_product).
    """

    _SENT = {"a": 7310000001, "m": 7310000002, "vc": 7310000003, "vp": 7310000004, "pi": 7310000005,
             "pe": 7310000006, "pp": 7310000007, "tg": 7310000008, "p": 7310000009, "pm": 7310000010,
             "g": 7310000011, "cs": 7310000012, "ss": 7310000013}
    # Text sentinels (no digits, nothing XML escapes) for the fields that are strings.
    _TEXT = {"ean": "@@EAN@@", "colour": "@@COLOUR@@", "size": "@@SIZE@@"}

    def __init__(self, schema, n, per_product, a0, p0, m0, stamp, stock):
        self.n, self.per_product, self.a0, self.p0, self.m0 = n, per_product, a0, p0, m0
        self.n_products = (n + per_product - 1) // per_product
        self.stock = stock
        self.stamp = mplus_datetime(stamp)
        self.overridden = set()   # indices now kept in the ordinary store
        self._templates(schema)

    def has_article(self, number):
        return self.a0 <= number < self.a0 + self.n and (number - self.a0) not in self.overridden

    def owns_article_number(self, number):
        return self.a0 <= number < self.a0 + self.n

    def owns_product_number(self, number):
        return self.p0 <= number < self.p0 + self.n_products

    def values(self, j):
        """The variable fields of article j."""
        vat_code = (2, 1, 2, 3)[j % 4]
        vat_pct = VAT_RATES[vat_code]
        price = 95 + (j * 7919) % 19900
        base = 100 + vat_pct
        values = {"a": self.a0 + j, "m": self.m0 + j, "vc": vat_code, "vp": vat_pct, "pi": price,
                  "pe": (price * 200 + base) // (2 * base),   # cents(price * 100 / base), half up
                  "pp": price * 45 // 100, "tg": 1 + j % 4,
                  "p": self.p0 + j // self.per_product, "g": (11, 12, 2, 3, 4)[(j // self.per_product) % 5],
                  "ean": bulk_ean(j)}
        if self.per_product > 1:
            values["colour"], values["cs"], values["size"], values["ss"] = bulk_variant(j % self.per_product)
        return values

    def _article(self, v):
        a = v["a"]
        article = {"articleNumber": a, "extArticleId": "BULK-%d" % a, "pluNumber": str(a), "syncMarker": v["m"],
                   "changeTimestamp": self.stamp, "createTimestamp": self.stamp, "active": True,
                   "description": "Artikel %d" % a, "receiptText": "Artikel %d" % a, "barcode": v["ean"],
                   "turnoverGroup": v["tg"], "vatCode": v["vc"], "vatPercentage": v["vp"],
                   "purchasePrice": v["pp"], "priceIncl": v["pi"], "priceExcl": v["pe"],
                   "webshop": True, "stockArticle": self.stock}
        if self.per_product > 1:
            article.update({"colour": v["colour"], "colourSequenceNumber": v["cs"], "size": v["size"],
                            "sizeSequenceNumber": v["ss"]})
        return article

    def _product(self, v, articles, marker):
        return {"productNumber": v["p"], "syncMarker": marker, "description": "Product %d" % v["p"],
                "articleList": {"article": articles}, "groupNumbers": [v["g"]]}

    def article(self, j):
        return self._article(self.values(j))

    def product(self, pi, indices=None):
        """Canonical dict of product pi with the given article indices (default: all its own)."""
        if indices is None:
            indices = [j for j in range(pi * self.per_product, min((pi + 1) * self.per_product, self.n))
                       if j not in self.overridden]
        v = self.values(indices[0])
        return self._product(v, [self.article(j) for j in indices], self.m0 + max(indices))

    def _templates(self, schema):
        """XML templates of a product and an article, made by the schema serializer from
        sentinel values so that element order and namespaces are exactly the schema's."""
        s = self._SENT
        v = dict(s, **self._TEXT)
        product = self._product(v, [self._article(v)], s["m"])
        product["syncMarker"] = s["pm"]
        el = etree.Element("{%s}product" % URN, nsmap={"ns": URN})
        schema.build(el, "Product", product)
        xml = etree.tostring(el, encoding="unicode").replace("{", "{{").replace("}", "}}")
        for name, value in list(s.items()) + list(self._TEXT.items()):
            xml = xml.replace(str(value), "{%s}" % name)
        head, rest = xml.split("<ns:articleList>", 1)
        article, tail = rest.split("</ns:articleList>", 1)
        self.product_tpl = head + "<ns:articleList>{articles}</ns:articleList>" + tail
        self.article_tpl = article

    def product_xml(self, pi, indices, marker=None):
        """XML of product pi holding the articles with these indices; its syncMarker is marker
        (default: the highest of those articles)."""
        art = self.article_tpl.format
        values = self.values
        parts = [art(**values(j)) for j in indices]
        v = values(indices[0])
        v["pm"] = marker if marker is not None else self.m0 + max(indices)
        v["articles"] = "".join(parts)
        return self.product_tpl.format(**v)

    def iter_from(self, start):
        """(marker, (self, j)) of its articles with marker >= start, in marker order."""
        j0 = max(0, start - self.m0)
        skip = self.overridden
        m0 = self.m0
        for j in range(j0, self.n):
            if j not in skip:
                yield m0 + j, (self, j)


# ---- the administration ---------------------------------------------------------------


class Store:
    def __init__(self, schema, settings, seed=True, stamp=None):
        self.schema = schema
        self.settings = settings          # shared with the simulator: sync_marker_limit_cap, ...
        self.lock = threading.RLock()
        self.logs = {kind: ChangeLog() for kind in KINDS}
        self.products = {}                # productNumber -> Product dict (articles inside)
        self.article_product = {}         # articleNumber -> productNumber (ordinary store)
        self.bulks = []
        self.groups = {}
        self.relations = {}
        self.employees = {}
        self.receipts = {}
        self.invoices = {}
        self.orders = {}
        self.stock = {}                   # (branch, article) -> {free, reserved, incoming, stockId, changed}
        self.branches = copy.deepcopy(BRANCHES)
        self.turnover_groups = copy.deepcopy(TURNOVER_GROUPS)
        self.payment_methods = copy.deepcopy(PAYMENT_METHODS)
        self.next_product = 100
        self.next_article = 100001
        self.next_relation = 10001
        self.numbers = {}                 # document number counters
        self.closed_days = set()          # (financial date as (y, m, d), branch) closed at the till
        stamp = stamp or now()
        for e in EMPLOYEES:
            self.put_employee(dict(e), stamp)
        if seed:
            self._seed(stamp)

    def _seed(self, stamp):
        for g in ARTICLE_GROUPS:
            self.put_group(copy.deepcopy(g), stamp)
        for p in PRODUCTS:
            answer = self.create_product(copy.deepcopy(p), stamp)
            assert answer["result"] == "CREATE-PRODUCT-RESULT-OK", answer
        for r in RELATIONS:
            answer = self.create_relation(copy.deepcopy(r), stamp)
            assert answer["result"] == "CREATE-RELATION-RESULT-OK", answer
        for branch, article, amount in STOCK:
            self.set_stock(branch, article, D(amount), stamp)

    # ---- helpers ----

    def head(self, kind):
        return self.logs[kind].head

    def markers(self):
        return {SYNC_MARKER_FIELDS[k]: self.logs[k].head for k in KINDS}

    def _start(self, marker):
        """First marker to return for a requested syncMarker/stockId."""
        if marker is None:
            return 0
        return marker + 1 if self.settings.get("sync_marker_exclusive") else marker

    def _limit(self, limit, paged):
        cap = self.settings.get("sync_marker_limit_cap")
        if limit is not None and limit <= 0:
            limit = None   # 0 is gSOAP's "not set"
        if cap:
            if limit is None and paged:
                return cap
            if limit is not None:
                return min(limit, cap)
        return limit

    def branch(self, number):
        for b in self.branches:
            if b["branchNumber"] == number:
                return b
        return None

    def workplace(self, branch, number):
        b = self.branch(branch)
        if b is None:
            return None
        for w in b["workplaces"]["workplace"]:
            if w["workplaceNumber"] == number:
                return w
        return None

    def turnover_group(self, number):
        for t in self.turnover_groups:
            if t["turnoverGroup"] == number:
                return t
        return None

    def payment_method(self, code):
        for p in self.payment_methods:
            if p["method"] == code:
                return p
        return None

    def vat_groups(self):
        out = []
        for b in self.branches:
            for code, pct in sorted(VAT_RATES.items()):
                out.append({"branchNumber": b["branchNumber"], "extBranchId": b.get("extBranchId"),
                            "countryCode": b["countryCode"], "countryIso3": b["countryIso3"],
                            "vatCode": code, "vatPercentage": pct, "accountNumber": 1500 + code})
        return out

    # ---- products and articles ----

    def article(self, number):
        """(productNumber, article dict) or None; bulk articles are derived, not stored."""
        pno = self.article_product.get(number)
        if pno is not None:
            for a in self.products[pno]["articleList"]["article"]:
                if a["articleNumber"] == number:
                    return pno, a
        for bulk in self.bulks:
            if bulk.has_article(number):
                j = number - bulk.a0
                return bulk.p0 + j // bulk.per_product, bulk.article(j)
        return None

    def _article_taken(self, number):
        return number in self.article_product or any(b.owns_article_number(number) for b in self.bulks)

    def _product_taken(self, number):
        return number in self.products or any(b.owns_product_number(number) for b in self.bulks)

    def _materialize(self, pno):
        """Moves a bulk product into the ordinary store (its articles keep their markers)."""
        for bulk in self.bulks:
            if bulk.owns_product_number(pno):
                pi = pno - bulk.p0
                indices = [j for j in range(pi * bulk.per_product, min((pi + 1) * bulk.per_product, bulk.n))
                           if j not in bulk.overridden]
                if not indices:
                    return
                product = bulk.product(pi, indices)
                product.pop("syncMarker", None)
                for j, a in zip(indices, product["articleList"]["article"]):
                    bulk.overridden.add(j)
                    self.article_product[a["articleNumber"]] = pno
                    self.logs["article"].insert(a["articleNumber"], a["syncMarker"])
                self.products[pno] = product
                return

    def _fill_article(self, a, stamp, created):
        vat_code = a.setdefault("vatCode", 2)
        if vat_code not in VAT_RATES:
            raise StoreError("vatCode %d does not exist (codes: %s)" % (vat_code, sorted(VAT_RATES)))
        pct = VAT_RATES[vat_code]
        a["vatPercentage"] = pct
        if "priceIncl" in a and "priceExcl" not in a:
            a["priceExcl"] = cents(D(a["priceIncl"]) * 100 / (100 + pct))
        elif "priceExcl" in a and "priceIncl" not in a:
            a["priceIncl"] = cents(D(a["priceExcl"]) * (100 + pct) / 100)
        a.setdefault("priceIncl", 0)
        a.setdefault("priceExcl", 0)
        a.setdefault("turnoverGroup", 1)
        a.setdefault("active", True)
        a.setdefault("stockArticle", True)
        a.setdefault("description", "")
        if created:
            a["createTimestamp"] = mplus_datetime(stamp)
        a["changeTimestamp"] = mplus_datetime(stamp)

    def create_product(self, product, stamp):
        """createProduct: (answer dict) with result, productNumber, articleNumbers, syncMarker."""
        fail = {"result": "CREATE-PRODUCT-RESULT-FAILED", "productNumber": 0, "errorMessage": ""}
        articles = (product.get("articleList") or {}).get("article") or []
        if not articles:
            return dict(fail, errorMessage="A product needs at least one article")
        pno = product.get("productNumber")
        if pno:
            if self._product_taken(pno):
                return dict(fail, result="CREATE-PRODUCT-RESULT-FAILED-PRODUCT-NUMBER-ALREADY-TAKEN",
                            errorMessage="Product number %d is already taken" % pno)
        numbers = [a.get("articleNumber") for a in articles if a.get("articleNumber")]
        for n in numbers:
            if self._article_taken(n) or numbers.count(n) > 1:
                return dict(fail, result="CREATE-PRODUCT-RESULT-FAILED-ARTICLE-NUMBER-ALREADY-TAKEN",
                            errorMessage="Article number %d is already taken" % n)
        if not pno:
            while self._product_taken(self.next_product):
                self.next_product += 1
            pno = self.next_product
        product["productNumber"] = pno
        product.pop("syncMarker", None)
        for a in articles:
            if not a.get("articleNumber"):
                while self._article_taken(self.next_article) or self.next_article in numbers:
                    self.next_article += 1
                a["articleNumber"] = self.next_article
                self.next_article += 1
            self._fill_article(a, stamp, True)
        for a in articles:
            self.article_product[a["articleNumber"]] = pno
            a["syncMarker"] = self.logs["article"].bump(a["articleNumber"])
        self.products[pno] = product
        return {"result": "CREATE-PRODUCT-RESULT-OK", "productNumber": pno,
                "articleNumbers": [a["articleNumber"] for a in articles],
                "changeTimestamp": mplus_datetime(stamp), "syncMarker": articles[-1]["syncMarker"],
                "errorMessage": ""}

    def update_product(self, update, stamp):
        """updateProduct: merges product fields and articles (new ones are added)."""
        pno = update.get("productNumber")
        fail = {"result": "UPDATE-PRODUCT-RESULT-NOT-FOUND", "errorMessage": ""}
        if not pno or not self._product_taken(pno):
            return dict(fail, errorMessage="Product %s not found" % pno)
        if pno not in self.products:
            self._materialize(pno)
        if pno not in self.products:
            return dict(fail, errorMessage="Product %s not found" % pno)
        product = self.products[pno]
        own = {a["articleNumber"]: a for a in product["articleList"]["article"]}
        incoming = (update.get("articleList") or {}).get("article") or []
        for a in incoming:
            n = a.get("articleNumber")
            if n and n not in own and self._article_taken(n):
                return {"result": "UPDATE-PRODUCT-RESULT-FAILED-ARTICLE-NUMBER-ALREADY-TAKEN",
                        "errorMessage": "Article number %d belongs to another product" % n}
        for field, value in update.items():
            if field not in ("productNumber", "syncMarker", "articleList"):
                product[field] = value
        existing, new, touched = [], [], []
        for a in incoming:
            n = a.get("articleNumber")
            a = {k: v for k, v in a.items() if k not in ("syncMarker", "createTimestamp", "changeTimestamp",
                                                            "averagePurchasePrice")}
            if n in own:
                target = own[n]
                if "priceIncl" in a and "priceExcl" not in a:
                    target.pop("priceExcl", None)
                if "priceExcl" in a and "priceIncl" not in a:
                    target.pop("priceIncl", None)
                target.update(a)
                self._fill_article(target, stamp, False)
                existing.append(n)
                touched.append(target)
            else:
                if not n:
                    while self._article_taken(self.next_article):
                        self.next_article += 1
                    n = a["articleNumber"] = self.next_article
                    self.next_article += 1
                self._fill_article(a, stamp, True)
                product["articleList"]["article"].append(a)
                self.article_product[n] = pno
                new.append(n)
                touched.append(a)
        if not incoming:
            # A change of the product itself: every article is changed with it.
            touched = product["articleList"]["article"]
            for a in touched:
                a["changeTimestamp"] = mplus_datetime(stamp)
        marker = None
        for a in touched:
            marker = a["syncMarker"] = self.logs["article"].bump(a["articleNumber"])
        return {"result": "UPDATE-PRODUCT-RESULT-OK", "existingArticleNumbers": existing,
                "newArticleNumbers": new, "changeTimestamp": mplus_datetime(stamp), "syncMarker": marker,
                "errorMessage": ""}

    def seed_bulk(self, n, per_product=1, first_article=None, first_product=None, stock=False, stamp=None):
        if n <= 0 or per_product <= 0:
            raise StoreError("articles and articles_per_product must be positive")
        stamp = stamp or now()
        a0 = first_article or max([1000000] + [b.a0 + b.n for b in self.bulks])
        n_products = (n + per_product - 1) // per_product
        p0 = first_product or max([1000000] + [b.p0 + b.n_products for b in self.bulks])
        if any(a0 <= a < a0 + n for a in self.article_product) or any(
                b.a0 < a0 + n and a0 < b.a0 + b.n for b in self.bulks):
            raise StoreError("article numbers %d..%d are partly taken" % (a0, a0 + n - 1))
        if any(p0 <= p < p0 + n_products for p in self.products) or any(
                b.p0 < p0 + n_products and p0 < b.p0 + b.n_products for b in self.bulks):
            raise StoreError("product numbers %d..%d are partly taken" % (p0, p0 + n_products - 1))
        m0 = self.logs["article"].reserve(n)
        bulk = Bulk(self.schema, n, per_product, a0, p0, m0, stamp, stock)
        self.bulks.append(bulk)
        return {"articles": n, "products": n_products, "first_article_number": a0,
                "last_article_number": a0 + n - 1, "first_product_number": p0,
                "first_sync_marker": m0, "last_sync_marker": m0 + n - 1}

    def touch_bulk(self):
        """Reports every bulk article again, unchanged: each range takes fresh sync markers."""
        touched = 0
        for bulk in self.bulks:
            bulk.m0 = self.logs["article"].reserve(bulk.n)
            touched += bulk.n - len(bulk.overridden)
        return {"articles": touched}

    def _article_changes(self, start):
        log = self.logs["article"]
        products = self.article_product
        regular = ((m, ("r", products[key], key)) for m, key in log.iter_from(start))
        streams = [regular] + [b.iter_from(start) for b in self.bulks]
        if len(streams) == 1:
            return regular
        return heapq.merge(*streams, key=lambda item: item[0])

    def get_products(self, req):
        marker, limit = req.get("syncMarker"), req.get("syncMarkerLimit")
        paged = marker is not None or limit is not None
        start = self._start(marker)
        limit = self._limit(limit, paged)
        article_filter = set(req.get("articleNumbers") or ())
        product_filter = set(req.get("productNumbers") or ())
        group_filter = set(req.get("groupNumbers") or ())
        plu_filter = {t["text"] for t in (req.get("pluNumbers") or {}).get("text", [])}
        only_active = req.get("onlyActive")
        only_webshop = req.get("onlyWebshop")
        include_all = req.get("includeAllArticlesOfSelectedProducts")
        filtered = bool(article_filter or product_filter or group_filter or plu_filter or only_active
                        or only_webshop)
        groups = {}       # product key -> [marker, ...] in order
        order = []
        count = 0
        for m, ref in self._article_changes(start):
            if ref[0] == "r":
                pkey = ("r", ref[1])
            else:
                bulk, j = ref
                pkey = (bulk, j // bulk.per_product)
            if filtered and not self._article_matches(ref, article_filter, product_filter, group_filter,
                                                      plu_filter, only_active, only_webshop):
                continue
            if pkey not in groups:
                groups[pkey] = []
                order.append(pkey)
            groups[pkey].append((m, ref))
            count += 1
            if limit is not None and count >= limit:
                break
        parts = []
        max_marker = 0
        for pkey in order:
            items = groups[pkey]
            # A product's syncMarker is that of its newest article on this page, never one
            # beyond the page, so a client may resume after the highest marker it has seen.
            page_marker = items[-1][0]
            max_marker = max(max_marker, page_marker)
            if pkey[0] == "r":
                parts.append(self._product_fragment(pkey[1], [ref[2] for _, ref in items], include_all,
                                                    page_marker))
            else:
                bulk, pi = pkey
                indices = [ref[1] for _, ref in items]
                if include_all:
                    indices = [j for j in range(pi * bulk.per_product, min((pi + 1) * bulk.per_product, bulk.n))
                               if j not in bulk.overridden]
                parts.append(bulk.product_xml(pi, indices, page_marker))
        inner = "<ns:productList>%s</ns:productList>" % "".join(parts) if parts else "<ns:productList/>"
        return RawXML("GetProductsResponse", inner, count, max_marker)

    def _article_matches(self, ref, articles, products, groups, plus, only_active, only_webshop):
        if ref[0] == "r":
            pno, ano = ref[1], ref[2]
            product = self.products[pno]
            art = next(a for a in product["articleList"]["article"] if a["articleNumber"] == ano)
            group_numbers = product.get("groupNumbers") or []
        else:
            bulk, j = ref
            art = bulk.article(j)
            ano, pno = art["articleNumber"], bulk.p0 + j // bulk.per_product
            group_numbers = [bulk.values(j)["g"]]
        if articles and ano not in articles:
            return False
        if products and pno not in products:
            return False
        if groups and not groups.intersection(group_numbers):
            return False
        if plus and art.get("pluNumber") not in plus:
            return False
        if only_active and not art.get("active", True):
            return False
        if only_webshop and not art.get("webshop"):
            return False
        return True

    def _product_fragment(self, pno, article_numbers, include_all, marker):
        product = self.products[pno]
        wanted = set(article_numbers)
        articles = [a for a in product["articleList"]["article"] if include_all or a["articleNumber"] in wanted]
        out = dict(product, articleList={"article": articles}, syncMarker=marker)
        el = etree.Element("{%s}product" % URN, nsmap={"ns": URN})
        self.schema.build(el, "Product", out)
        return etree.tostring(el, encoding="unicode")

    def all_products(self, offset=0, limit=None):
        """Every product (bulk ones derived), ordinary ones first; offset/limit page the list."""
        refs = [self.products[p] for p in sorted(self.products)]
        for bulk in self.bulks:
            refs.extend((bulk, pi) for pi in range(bulk.n_products) if bulk.p0 + pi not in self.products)
        refs = refs[offset:offset + limit if limit is not None else None]
        return [r if isinstance(r, dict) else r[0].product(r[1]) for r in refs]

    def put_product(self, product, stamp):
        """Control API: create, or update when the product number exists."""
        pno = product.get("productNumber")
        if pno and self._product_taken(pno):
            answer = self.update_product(product, stamp)
            if answer["result"] != "UPDATE-PRODUCT-RESULT-OK":
                raise StoreError("%s: %s" % (answer["result"], answer.get("errorMessage")))
        else:
            answer = self.create_product(product, stamp)
            if answer["result"] != "CREATE-PRODUCT-RESULT-OK":
                raise StoreError("%s: %s" % (answer["result"], answer.get("errorMessage")))
            pno = answer["productNumber"]
        return self.products[pno]

    # ---- article groups ----

    def put_group(self, group, stamp):
        """Control API: create or update (merge) an article group; isDeleted true deletes it."""
        number = group.get("groupNumber")
        if not number:
            number = max([0] + list(self.groups)) + 1
            group["groupNumber"] = number
        old = self.groups.get(number)
        if old is not None:
            merged = dict(old)
            merged.update(group)
            group = merged
        else:
            group.setdefault("name", "Groep %d" % number)
            group.setdefault("text", "")
            group.setdefault("sortOrder", 0)
        group.pop("subGroupNumbers", None)   # derived from the parents of the other groups
        parent = group.get("parentGroupNumber")
        if parent is not None and parent not in self.groups:
            raise StoreError("parent group %d does not exist" % parent)
        if parent is not None and self.groups[parent].get("isDeleted"):
            raise StoreError("parent group %d is deleted" % parent)
        if parent is not None and number in self._group_top_chain(self.groups[parent]):
            raise StoreError("group %d cannot be placed under itself or one of its subgroups" % number)
        # A parent whose subGroupNumbers change is changed too.
        affected = set()
        if old is None or bool(old.get("isDeleted")) != bool(group.get("isDeleted")):
            affected.add(parent)
        if old is not None and old.get("parentGroupNumber") != parent:
            affected.update((old.get("parentGroupNumber"), parent))
        group["syncMarker"] = self.logs["articleGroup"].bump(number)
        self.groups[number] = group
        for p in sorted(x for x in affected if x is not None and x != number and x in self.groups):
            self.groups[p]["syncMarker"] = self.logs["articleGroup"].bump(p)
        return self._group_out(group)

    def _group_out(self, group):
        out = dict(group)
        subs = sorted(g["groupNumber"] for g in self.groups.values()
                      if g.get("parentGroupNumber") == group["groupNumber"] and not g.get("isDeleted"))
        if subs:
            out["subGroupNumbers"] = {"number": subs}
        return out

    def _group_top_chain(self, group):
        seen = []
        while group is not None and group["groupNumber"] not in seen:
            seen.append(group["groupNumber"])
            group = self.groups.get(group.get("parentGroupNumber"))
        return seen

    def get_article_group_changes(self, req):
        wanted = set(req.get("groupNumbers") or ())

        def match(g):
            return not wanted or wanted.intersection(self._group_top_chain(g))
        found = self._page("articleGroup", req, self.groups, match)
        return {"changedArticleGroupList": {"changedArticleGroups": [self._group_out(g) for g in found]}}, found

    # ---- relations ----

    def create_relation(self, relation, stamp):
        if relation is None:
            return {"result": "CREATE-RELATION-RESULT-FAILED", "relationNumber": 0,
                    "errorMessage": "No relation given"}
        number = relation.get("relationNumber")
        if number:
            if number in self.relations:
                return {"result": "CREATE-RELATION-RESULT-FAILED-RELATION-NUMBER-ALREADY-TAKEN",
                        "relationNumber": 0, "errorMessage": "Relation number %d is already taken" % number}
        else:
            while self.next_relation in self.relations:
                self.next_relation += 1
            number = self.next_relation
        relation["relationNumber"] = number
        relation.setdefault("active", True)
        for field in ("syncMarker", "points", "balance", "invoiceCredit", "accountBalance"):
            relation.pop(field, None)
        relation["createTimestamp"] = relation["changeTimestamp"] = mplus_datetime(stamp)
        relation["syncMarker"] = self.logs["relation"].bump(number)
        self.relations[number] = relation
        return {"result": "CREATE-RELATION-RESULT-OK", "relationNumber": number,
                "changeTimestamp": relation["changeTimestamp"], "syncMarker": relation["syncMarker"],
                "errorMessage": ""}

    def update_relation(self, update, stamp):
        number = (update or {}).get("relationNumber")
        relation = self.relations.get(number)
        if relation is None:
            return {"result": "UPDATE-RELATION-RESULT-NOT-FOUND",
                    "errorMessage": "Relation %s not found" % number}
        for field, value in update.items():
            if field not in ("relationNumber", "syncMarker", "createTimestamp", "changeTimestamp"):
                relation[field] = value
        relation["changeTimestamp"] = mplus_datetime(stamp)
        relation["syncMarker"] = self.logs["relation"].bump(number)
        return {"result": "UPDATE-RELATION-RESULT-OK", "errorMessage": "",
                "changeTimestamp": relation["changeTimestamp"], "syncMarker": relation["syncMarker"]}

    def put_relation(self, relation, stamp):
        number = relation.get("relationNumber")
        if number and number in self.relations:
            self.update_relation(relation, stamp)
        else:
            answer = self.create_relation(relation, stamp)
            number = answer["relationNumber"]
        return self.relations[number]

    def find_relation(self, probe):
        """findRelation: the first relation (by number) matching every filled field;
        strings match case-insensitively as substrings, other values exactly."""
        probe = {k: v for k, v in (probe or {}).items() if v not in (None, "", [], {})}
        if not probe:
            return None
        for number in sorted(self.relations):
            relation = self.relations[number]
            for field, wanted in probe.items():
                have = relation.get(field)
                if isinstance(wanted, str):
                    if not isinstance(have, str) or wanted.lower() not in have.lower():
                        break
                elif have != wanted:
                    break
            else:
                return relation
        return None

    def get_relations(self, req):
        req = req or {}
        numbers = set(req.get("relationNumbers") or ())
        category = req.get("categoryId")

        def match(r):
            if numbers and r["relationNumber"] not in numbers:
                return False
            if category is not None and r.get("categoryId") != category and category not in (
                    r.get("categoryIds") or {}).get("category", []):
                return False
            return True
        found = self._page("relation", req, self.relations, match)
        return {"relationList": {"relation": found}}, found

    # ---- employees ----

    def put_employee(self, employee, stamp):
        number = employee.get("employeeNumber")
        if not number:
            number = max([0] + [n for n in self.employees if n < 999999]) + 1
            employee["employeeNumber"] = number
        old = self.employees.get(number)
        if old is not None:
            merged = dict(old)
            merged.update(employee)
            employee = merged
        else:
            employee["createTimestamp"] = mplus_datetime(stamp)
            employee.setdefault("active", True)
        employee["changeTimestamp"] = mplus_datetime(stamp)
        employee["syncMarker"] = self.logs["employee"].bump(number)
        self.employees[number] = employee
        return employee

    def get_employees(self, req):
        req = req or {}
        numbers = set(req.get("employeeNumbers") or ())
        found = self._page("employee", req, self.employees,
                           lambda e: not numbers or e["employeeNumber"] in numbers)
        return {"employeeList": {"employee": found}}, found

    # ---- stock ----

    def _stock_article(self, branch, article):
        """None when the stock of that article in that branch may change, else a result suffix."""
        if self.branch(branch) is None:
            return "BRANCH-NOT-FOUND"
        found = self.article(article)
        if found is None:
            return "ARTICLE-NOT-FOUND"
        if not found[1].get("stockArticle"):
            return "NO-STOCK-ARTICLE"
        return None

    def set_stock(self, branch, article, amount, stamp, relative=False, reserved=None, incoming=None):
        key = (branch, article)
        rec = self.stock.get(key)
        if rec is None:
            rec = self.stock[key] = {"free": D(0), "reserved": D(0), "incoming": D(0)}
        rec["free"] = rec["free"] + amount if relative else amount
        if reserved is not None:
            rec["reserved"] = reserved
        if incoming is not None:
            rec["incoming"] = incoming
        rec["changed"] = mplus_datetime(stamp)
        rec["stockId"] = self.logs["stock"].bump(key)
        return rec["stockId"]

    def stock_out(self, key):
        rec = self.stock[key]
        free, free_dp = scaled(rec["free"])
        res, res_dp = scaled(rec["reserved"])
        inc, inc_dp = scaled(rec["incoming"])
        return {"branchNumber": key[0], "articleNumber": key[1], "changeTimestamp": rec["changed"],
                "stockId": rec["stockId"], "amountFree": free, "decimalPlacesFree": free_dp,
                "amountReserved": res, "decimalPlacesReserved": res_dp,
                "amountIncoming": inc, "decimalPlacesIncoming": inc_dp, "isDayStockArticle": False}

    def get_stock(self, req):
        branches = set((req.get("branchNumbers") or {}).get("branchNumber") or ()) or {req["branchNumber"]}
        articles = set((req.get("articleNumbers") or {}).get("articleNumbers") or ())
        stock_id = req.get("stockId")
        out = []
        if stock_id is not None:
            for _, key in self.logs["stock"].iter_from(self._start(stock_id)):
                if key[0] in branches and (not articles or key[1] in articles):
                    out.append(self.stock_out(key))
        else:
            for _, key in self.logs["stock"].iter_from(0):
                if key[0] in branches and (not articles or key[1] in articles):
                    out.append(self.stock_out(key))
            # Asked-for stock articles without any stock change yet: zero stock, stockId 0.
            seen = {(s["branchNumber"], s["articleNumber"]) for s in out}
            for b in sorted(branches):
                for a in sorted(articles):
                    found = self.article(a)
                    if (b, a) not in seen and found and found[1].get("stockArticle") and self.branch(b):
                        out.append({"branchNumber": b, "articleNumber": a, "stockId": 0, "amountFree": 0,
                                    "amountReserved": 0, "amountIncoming": 0, "isDayStockArticle": False})
        return {"articleStocks": out}, out

    def change_stock(self, req, stamp, relative):
        prefix = "UPDATE-STOCK-RESULT-" if relative else "SET-STOCK-RESULT-"
        problem = self._stock_article(req["branchNumber"], req["articleNumber"])
        if problem:
            return {"result": prefix + problem}
        places = req.get("decimalPlaces") or 0
        amount = unscaled(req["amountChanged"] if relative else req["amount"], places)
        stock_id = self.set_stock(req["branchNumber"], req["articleNumber"], amount, stamp, relative=relative)
        return {"result": prefix + "OK", "stockId": stock_id}

    def put_stock(self, spec, stamp):
        """Control API: {branchNumber, articleNumber, amount | amountChanged (decimal, or scaled with
        decimalPlaces), amountReserved?, amountIncoming?}."""
        try:
            branch, article = int(spec["branchNumber"]), int(spec["articleNumber"])
        except (KeyError, TypeError, ValueError):
            raise StoreError("stock needs branchNumber and articleNumber")
        problem = self._stock_article(branch, article)
        if problem:
            raise StoreError(problem)
        places = spec.get("decimalPlaces")

        def amount(name):
            if spec.get(name) is None:
                return None
            try:
                return unscaled(int(spec[name]), places) if places is not None else D(str(spec[name]))
            except (ValueError, TypeError, decimal.InvalidOperation):
                raise StoreError("%s must be a number" % name)
        relative = spec.get("amountChanged") is not None
        value = amount("amountChanged") if relative else amount("amount")
        if value is None:
            value = D(0) if relative else self.stock.get((branch, article), {}).get("free", D(0))
        self.set_stock(branch, article, value, stamp, relative=relative, reserved=amount("amountReserved"),
                       incoming=amount("amountIncoming"))
        return self.stock_out((branch, article))

    # ---- documents: receipts, invoices, orders ----

    def _page(self, kind, req, records, match=None):
        """The current records of one kind from the requested syncMarker, at most syncMarkerLimit."""
        req = req or {}
        marker, limit = req.get("syncMarker"), req.get("syncMarkerLimit")
        limit = self._limit(limit, marker is not None or limit is not None)
        out = []
        for _, key in self.logs[kind].iter_from(self._start(marker)):
            rec = records[key]
            if match is not None and not match(rec):
                continue
            out.append(rec)
            if limit is not None and len(out) >= limit:
                break
        return out

    def _document_match(self, req, kind):
        """Filters common to getReceipts/getInvoices/getOrders."""
        start = req.get("fromFinancialDate")
        through = req.get("throughFinancialDate")
        branches = set(req.get("branchNumbers") or ())
        employees = set(req.get("employeeNumbers") or ())
        relations = set(req.get("relationNumbers") or ())
        articles = set(req.get("articleNumbers") or ())
        turnover = set(req.get("articleTurnoverGroups") or ())
        plus = {t["text"] for t in (req.get("articlePluNumbers") or {}).get("text", [])}
        barcodes = {t["text"] for t in (req.get("articleBarcodes") or {}).get("text", [])}
        ids = set(req.get(kind + "Ids") or ())
        numbers = {(n["year"], n["number"]) for n in req.get(kind + "Numbers") or ()}
        order_types = set((req.get("orderTypeList") or {}).get("orderType") or ())

        def match(doc):
            if start and (not doc.get("financialDate") or ymd(doc["financialDate"]) < ymd(start)):
                return False
            if through and (not doc.get("financialDate") or ymd(doc["financialDate"]) > ymd(through)):
                return False
            if branches and doc.get("financialBranchNumber") not in branches:
                return False
            if employees and doc.get("employeeNumber") not in employees:
                return False
            if relations and doc.get("relationNumber") not in relations:
                return False
            if ids and doc.get(kind + "Id") not in ids:
                return False
            if numbers:
                n = doc.get(kind + "Number")
                if not n or (n["year"], n["number"]) not in numbers:
                    return False
            if order_types and doc.get("orderType") not in order_types:
                return False
            if articles or turnover or plus or barcodes:
                lines = (doc.get("lineList") or {}).get("line", [])
                if articles and not any(line["articleNumber"] in articles for line in lines):
                    return False
                if turnover and not any(line.get("data", {}).get("turnoverGroup") in turnover for line in lines):
                    return False
                if plus and not any(line.get("pluNumber") in plus for line in lines):
                    return False
                if barcodes and not any((self.article(line["articleNumber"]) or (0, {}))[1].get("barcode")
                                        in barcodes for line in lines):
                    return False
            return True
        return match

    def get_documents(self, kind, req):
        records = {"receipt": self.receipts, "invoice": self.invoices, "order": self.orders}[kind]
        found = self._page(kind, req, records, self._document_match(req, kind))
        hidden = set()
        if req.get("includeLineList") is False:
            hidden.add("lineList")
        if kind == "receipt" and not req.get("includeOrderReferences"):
            hidden.update(("orderIds", "extOrderIds"))   # a receipt's orders come only when asked for
        if hidden:
            found = [{k: v for k, v in doc.items() if k not in hidden} if not hidden.isdisjoint(doc) else doc
                     for doc in found]
        return {kind + "List": {kind: found}}, found

    def get_receipts_by_order(self, order_id):
        """getReceiptsByOrder: the receipts whose orderIds hold the order, in marker order, with
        their orderIds/extOrderIds (as getReceipts with includeOrderReferences).  An unknown order
        is NOT-FOUND (also when a receipt stored through the control API names it); a known one
        without receipts is OK with an empty list.  receiptList is required either way."""
        if order_id not in self.orders:
            return {"result": "GET-RECEIPTS-BY-ORDER-RESULT-NOT-FOUND", "receiptList": {"receipt": []}}, []
        found = sorted((r for r in self.receipts.values()
                        if order_id in ((r.get("orderIds") or {}).get("id") or ())),
                       key=lambda r: r["syncMarker"])
        return {"result": "GET-RECEIPTS-BY-ORDER-RESULT-OK", "receiptList": {"receipt": found}}, found

    JOURNAL_SOURCES = {"JOURNAL-FILTER-RECEIPT": "receipt", "JOURNAL-FILTER-INVOICE": "invoice",
                       "JOURNAL-FILTER-ORDER": "order"}

    def get_journals(self, req):
        """getJournals: per financial day and branch from fromFinancialDate through
        throughFinancialDate (of branchNumbers, else every branch), what the documents of
        journalFilterList (receipts when absent) add up to, computed from them: turnover per
        turnover group (incl and excl; a line without totalExclAmount counts its gross less its
        VAT at the line's rate), payments per method, VAT per VAT group.  Days and branches
        without documents have no journal.  Returns (answer, journals)."""
        first, last = ymd(req["fromFinancialDate"]), ymd(req["throughFinancialDate"])
        branches = set(req.get("branchNumbers") or ())
        filters = list((req.get("journalFilterList") or {}).get("journalFilter") or ["JOURNAL-FILTER-RECEIPT"])
        records = {"receipt": self.receipts, "invoice": self.invoices, "order": self.orders}
        days = {}
        for f in filters:
            for doc in records[self.JOURNAL_SOURCES[f]].values():
                day, branch = ymd(doc["financialDate"]), doc.get("financialBranchNumber")
                if not first <= day <= last or (branches and branch not in branches):
                    continue
                j = days.setdefault((day, branch), {"financialDate": doc["financialDate"], "tg": {}, "pay": {},
                                                    "vat": {}})
                for line in (doc.get("lineList") or {}).get("line", []):
                    d = line["data"]
                    incl, excl = line_totals(d)
                    t = j["tg"].setdefault(d.get("turnoverGroup", 1), [0, 0])
                    t[0] += incl
                    t[1] += excl
                for pay in (doc.get("paymentList") or {}).get("payment", []):
                    j["pay"][pay["method"]] = j["pay"].get(pay["method"], 0) + pay["amount"]
                for g in (doc.get("vatGroupList") or {}).get("vatGroup", []):
                    v = j["vat"].setdefault(g["vatCode"], [g.get("vatPercentage", 0), 0, 0])
                    v[1] += g.get("exclAmount", 0)
                    v[2] += g.get("vatAmount", 0)
        journals = []
        for (day, branch), j in sorted(days.items()):
            groups = []
            for number, (incl, excl) in sorted(j["tg"].items()):
                tg = self.turnover_group(number) or {}
                groups.append({k: v for k, v in (
                    ("turnoverGroupType", tg.get("turnoverGroupType", "TURNOVER-GROUP-TYPE-TURNOVER")),
                    ("turnoverGroup", number), ("turnoverGroupName", tg.get("turnoverGroupName", str(number))),
                    ("inclAmount", incl), ("exclAmount", excl), ("accountNumber", tg.get("accountNumber")))
                    if v is not None})
            b = self.branch(branch) or {}
            journals.append({k: v for k, v in (
                ("financialDate", j["financialDate"]), ("journalFilterList", {"journalFilter": filters}),
                ("branchNumber", branch), ("extBranchId", b.get("extBranchId")),
                ("turnoverGroupList", {"turnoverGroup": groups}),
                ("paymentList", {"payment": [{"method": m, "amount": a} for m, a in sorted(j["pay"].items())]}),
                ("vatGroupList", {"vatGroup": [
                    {"branchNumber": branch, "countryIso3": b.get("countryIso3"), "vatCode": code,
                     "vatPercentage": pct, "exclAmount": excl, "vatAmount": vat}
                    for code, (pct, excl, vat) in sorted(j["vat"].items())]}))
                if v is not None})
        return {"journalList": {"journal": journals}}, journals

    FINANCIAL_SOURCES = (("receipt", "FINANCIAL-GROUP-SOURCE-RECEIPT"), ("invoice", "FINANCIAL-GROUP-SOURCE-INVOICE"))

    def close_day(self, day, branch, closed=True):
        """Control API: the financial day of a branch closed at the till (its cash count), or open again."""
        if self.branch(branch) is None:
            raise StoreError("branch %d does not exist" % branch)
        key = (ymd(day), branch)
        (self.closed_days.add if closed else self.closed_days.discard)(key)
        return {"financialDate": day, "branchNumber": branch, "closed": closed}

    def get_financial_journal(self, req):
        """getFinancialJournal: the financial groups of the documents (receipts and invoices)
        of fromFinancialDate through throughFinancialDate, per branch and source, computed from
        them: per turnover group its incl and excl turnover and, in its vatGroupList, how
        that turnover splits over VAT codes (a document's VAT of a code shared over its
        turnover groups by their excl share, the last taking what the division leaves, so
        the VAT per code is the documents' own); per payment method (financialGroupId) the
        amount paid.  financialPeriodClosed: every day of the range that has documents of
        the branch is closed at the till (close_day); at the top, of every branch.
        Returns (answer, groups)."""
        first, last = ymd(req["fromFinancialDate"]), ymd(req["throughFinancialDate"])
        sums, days = {}, {}
        for kind, source in self.FINANCIAL_SOURCES:
            records = {"receipt": self.receipts, "invoice": self.invoices}[kind]
            for doc in records.values():
                day, branch = ymd(doc["financialDate"]), doc.get("financialBranchNumber")
                if not first <= day <= last:
                    continue
                days.setdefault(branch, set()).add(day)
                j = sums.setdefault((branch, source), {"tg": {}, "pay": {}})
                shares = {}   # vatCode -> {turnoverGroup: excl}
                for line in (doc.get("lineList") or {}).get("line", []):
                    d = line["data"]
                    incl, excl = line_totals(d)
                    number = d.get("turnoverGroup", 1)
                    t = j["tg"].setdefault(number, {"incl": 0, "excl": 0, "vat": {}})
                    t["incl"] += incl
                    t["excl"] += excl
                    code = d.get("vatCode", 0)
                    share = shares.setdefault(code, {})
                    share[number] = share.get(number, 0) + excl
                for g in (doc.get("vatGroupList") or {}).get("vatGroup", []):
                    share = shares.get(g["vatCode"]) or {1: 0}
                    whole, left = sum(share.values()), g.get("vatAmount", 0)
                    for i, (number, excl) in enumerate(sorted(share.items())):
                        part = left if i == len(share) - 1 else (
                            cents(D(g.get("vatAmount", 0)) * excl / whole) if whole else 0)
                        left -= part
                        t = j["tg"].setdefault(number, {"incl": 0, "excl": 0, "vat": {}})
                        v = t["vat"].setdefault(g["vatCode"], [g.get("vatPercentage", 0), 0, 0,
                                                               g.get("countryIso3")])
                        v[1] += excl
                        v[2] += part
                for pay in (doc.get("paymentList") or {}).get("payment", []):
                    j["pay"][pay["method"]] = j["pay"].get(pay["method"], 0) + pay["amount"]
        closed = {branch: all((day, branch) in self.closed_days for day in found)
                  for branch, found in days.items()}
        groups = []
        for (branch, source), j in sorted(sums.items()):
            b = self.branch(branch) or {}
            common = {"branchNumber": branch, "extBranchId": b.get("extBranchId"),
                      "fromFinancialDate": req["fromFinancialDate"], "throughFinancialDate": req["throughFinancialDate"],
                      "financialPeriodClosed": closed[branch]}
            for number, t in sorted(j["tg"].items()):
                tg = self.turnover_group(number) or {}
                groups.append({k: v for k, v in (
                    ("financialGroupType", "FINANCIAL-GROUP-TYPE-TURNOVER"), ("financialGroupSource", source),
                    ("financialGroupNumber", number), ("financialGroupName", tg.get("turnoverGroupName", str(number))),
                    ("accountNumber", tg.get("accountNumber", 0))) + tuple(common.items()) + (
                    ("inclAmount", t["incl"]), ("exclAmount", t["excl"]),
                    ("vatGroupList", {"vatGroup": [
                        {k2: v2 for k2, v2 in (("branchNumber", branch), ("countryIso3", country),
                                               ("vatCode", code), ("vatPercentage", pct), ("exclAmount", excl),
                                               ("vatAmount", vat)) if v2 is not None}
                        for code, (pct, excl, vat, country) in sorted(t["vat"].items())]}))
                    if v is not None})
            for method, amount in sorted(j["pay"].items()):
                pm = self.payment_method(method) or {}
                groups.append({k: v for k, v in (
                    ("financialGroupType", "FINANCIAL-GROUP-TYPE-PAYMENT"), ("financialGroupSource", source),
                    ("financialGroupId", method), ("financialGroupName", pm.get("description", method)),
                    ("accountNumber", pm.get("accountNumber", 0))) + tuple(common.items()) + (
                    ("inclAmount", amount),) if v is not None})
        answer = {"financialGroupList": {"financialGroup": groups}}
        if closed:
            answer["financialPeriodClosed"] = all(closed.values())
        return answer, groups

    def put_document(self, kind, doc, stamp):
        """Control API: store a receipt/invoice/order as given (ids and numbers filled in);
        a known id merges the fields.  Bumps the kind's sync marker."""
        records = {"receipt": self.receipts, "invoice": self.invoices, "order": self.orders}[kind]
        key = doc.get(kind + "Id")
        if key and key in records:
            merged = dict(records[key])
            merged.update(doc)
            doc = merged
            doc["changeCounter"] = doc.get("changeCounter", 0) + 1
        else:
            key = doc[kind + "Id"] = key or str(uuid.uuid4())
            doc.setdefault("entryTimestamp", mplus_datetime(stamp))
            doc.setdefault("financialDate", mplus_date(stamp.date()))
        doc["syncMarker"] = self.logs[kind].bump(key)
        records[key] = doc
        return doc

    def _number(self, kind, *scope):
        key = (kind,) + scope
        self.numbers[key] = self.numbers.get(key, 0) + 1
        return self.numbers[key]

    def sale(self, spec, stamp, defaults):
        """A till sale: a receipt (or invoice/order) from a simple spec; see README.md.
        Returns (kind, stored document)."""
        kind = spec.get("kind", "cash")
        if kind not in ("cash", "card", "split", "credit"):
            raise StoreError("kind must be cash, card, split or credit")
        document = spec.get("document", "receipt")
        if document not in ("receipt", "invoice", "order"):
            raise StoreError("document must be receipt, invoice or order")
        credit = kind == "credit"
        branch = int(spec.get("branchNumber", defaults["till_branch"]))
        workplace = int(spec.get("workplaceNumber", defaults["till_workplace"]))
        employee_no = int(spec.get("employeeNumber", defaults["till_employee"]))
        if self.workplace(branch, workplace) is None:
            raise StoreError("branch %d has no workplace %d" % (branch, workplace))
        employee = self.employees.get(employee_no)
        if employee is None:
            raise StoreError("employee %d does not exist" % employee_no)
        relation = None
        if spec.get("customer") is not None:
            relation = self.relations.get(int(spec["customer"]))
            if relation is None:
                raise StoreError("relation %s does not exist" % spec["customer"])
        original = None
        if spec.get("credits"):
            original = self.receipts.get(spec["credits"]) or self.invoices.get(spec["credits"])
            if original is None:
                raise StoreError("no receipt or invoice %s to credit" % spec["credits"])
            if not credit:
                raise StoreError("credits needs kind credit")
        vat_method = spec.get("vatMethod")
        if vat_method is None:
            vat_method = (original or {}).get("vatMethod", "VAT-METHOD-INCLUSIVE")
        vat_method = VAT_METHODS.get(str(vat_method), str(vat_method))
        if vat_method not in ("VAT-METHOD-INCLUSIVE", "VAT-METHOD-EXCLUSIVE"):
            raise StoreError("vatMethod must be inclusive or exclusive")
        exclusive = vat_method == "VAT-METHOD-EXCLUSIVE"
        line_specs = spec.get("lines")
        if line_specs is None and original is not None:
            line_specs = self._copied_lines(original, exclusive)
            if relation is None and original.get("relationNumber"):
                relation = self.relations.get(original["relationNumber"])
        if not line_specs or not isinstance(line_specs, list):
            raise StoreError("lines must be a non-empty list")
        if "timestamp" in spec:
            try:
                stamp = mplus_schema.parse_iso(spec["timestamp"], "timestamp").astimezone(TZ)
            except SchemaError as e:
                raise StoreError(str(e))
        lines = self._sale_lines(line_specs, credit, employee_no, relation, exclusive)
        total_excl = sum(l["data"]["totalExclAmount"] for l in lines)
        vat = {}
        for l in lines:
            g = vat.setdefault(l["data"]["vatCode"], {"vatCode": l["data"]["vatCode"],
                                                      "vatPercentage": l["data"]["vatPercentage"],
                                                      "exclAmount": 0, "vatAmount": 0})
            g["exclAmount"] += l["data"]["totalExclAmount"]
            if not exclusive:
                g["vatAmount"] += l["data"]["totalInclAmount"] - l["data"]["totalExclAmount"]
        if exclusive:
            # As a POS does it: VAT per group on the group's excl amount, so the lines'
            # incl totals need not add up to the document's.
            for g in vat.values():
                g["vatAmount"] = cents(D(g["exclAmount"]) * g["vatPercentage"] / 100)
            total_incl = sum(g["exclAmount"] + g["vatAmount"] for g in vat.values())
        else:
            total_incl = sum(l["data"]["totalInclAmount"] for l in lines)
        for l in lines:   # a line's totalExclAmount is optional in the schema: gone when asked
            if l["data"].pop("omitExcl", False):
                del l["data"]["totalExclAmount"]
        b = self.branch(branch)
        for g in vat.values():
            g.update({"branchNumber": branch, "countryIso3": b["countryIso3"],
                      "accountNumber": 1500 + g["vatCode"]})
        payments = self._sale_payments(spec, kind, total_incl, original, branch, workplace, employee, stamp)
        common = self._common(branch, workplace, employee, stamp, lines, [vat[c] for c in sorted(vat)],
                              total_incl, total_excl, vat_method, payments, relation, spec.get("reference"))
        extra = {"extOrderId": spec.get("extOrderId")} if document == "order" else None
        doc = self._store_document(document, common, relation, stamp, credit, original, extra)
        if document != "order":
            self._move_stock(branch, lines, stamp)
        return document, doc

    def _common(self, branch, workplace, employee, stamp, lines, vat_groups, total_incl, total_excl, vat_method,
                payments, relation, reference=None):
        """The fields every new receipt, invoice and order has."""
        common = {
            "syncMarker": None, "employeeNumber": employee["employeeNumber"], "employeeName": employee.get("name", ""),
            "entryTimestamp": mplus_datetime(stamp), "financialDate": mplus_date(stamp.date()),
            "financialBranchNumber": branch, "financialExtBranchId": self.branch(branch).get("extBranchId"),
            "workplaceNumber": workplace, "entryBranchNumber": branch, "totalInclAmount": total_incl,
            "totalExclAmount": total_excl, "vatMethod": vat_method, "vatGroupList": {"vatGroup": vat_groups},
            "changeCounter": 0, "versionNumber": 1, "lineList": {"line": lines}, "paymentList": {"payment": payments},
        }
        if reference:
            common["reference"] = str(reference)
        if relation is not None:
            common["relationNumber"] = relation["relationNumber"]
            common["relationName"] = relation.get("name", "")
        return common

    def _store_document(self, document, common, relation, stamp, credit=False, original=None, extra=None):
        """A new receipt/invoice/order of the common fields, numbered as the till numbers them
        (extra fields added last), stored at the next marker of its sequence."""
        branch, workplace = common["financialBranchNumber"], common["workplaceNumber"]
        total_incl = common["totalInclAmount"]
        paid = sum(p["amount"] for p in common["paymentList"]["payment"])
        year = stamp.year
        if document == "receipt":
            number = self._number("receipt", branch, workplace, year)
            doc = {"receiptId": str(uuid.uuid4()),
                   "transactionString": "%d-%d-%d-%d" % (branch, workplace, year, number),
                   "receiptNumber": {"branchNumber": branch, "workplaceNumber": workplace, "year": year,
                                     "number": number},
                   "receiptBarcode": "9%02d%02d%04d%07d" % (branch, workplace, year, number),
                   "receiptType": "RECEIPT-TYPE-CREDIT-RECEIPT" if credit else "RECEIPT-TYPE-RECEIPT"}
            doc.update(common)
            doc["paidAmount"] = paid
            doc["state"] = self._state("RECEIPT-STATE-", paid, total_incl, credit)
            if original is not None:
                doc["creditedReceiptId"] = original.get("receiptId")
            key, records = doc["receiptId"], self.receipts
        elif document == "invoice":
            number = self._number("invoice", year)
            due = stamp.date() + datetime.timedelta(days=(relation or {}).get("paymentWithinDays") or 14)
            doc = {"invoiceId": str(uuid.uuid4()), "transactionString": "F%d-%06d" % (year, number),
                   "invoiceNumber": {"year": year, "number": number},
                   "invoiceBarcode": "8%04d%08d" % (year, number),
                   "invoiceType": "INVOICE-TYPE-CREDIT-INVOICE" if credit else "INVOICE-TYPE-DIRECT-INVOICE"}
            doc.update(common)
            if relation is not None:
                doc["relationVatNumber"] = relation.get("vatNumber")
                doc["invoiceAddress"] = {k: relation[k] for k in ("name", "contact", "address", "zipcode",
                                                                  "city", "country", "companyName")
                                         if relation.get(k)}
            doc["dueDate"] = mplus_date(due)
            doc["paidAmount"] = paid
            doc["state"] = self._state("INVOICE-STATE-", paid, total_incl, credit)
            doc["finalized"] = True
            doc["finalizedTimestamp"] = mplus_datetime(stamp)
            if original is not None and original.get("invoiceId"):
                doc["creditedInvoiceId"] = original["invoiceId"]
            key, records = doc["invoiceId"], self.invoices
        else:
            number = self._number("order", year)
            doc = {"orderId": str(uuid.uuid4()), "transactionString": "O%d-%06d" % (year, number),
                   "orderType": "ORDER-TYPE-SALES-ORDER"}
            doc.update(common)
            doc.update({"prepaidAmount": paid, "fullyPaid": paid == total_incl,
                        "deliveryState": "ORDER-DELIVERY-STATE-NOTHING", "cancelState": "ORDER-CANCEL-STATE-NOTHING",
                        "completeState": "ORDER-COMPLETE-STATE-NOTHING",
                        "orderNumber": {"year": year, "number": number}})
            key, records = doc["orderId"], self.orders
        doc.update(extra or {})
        doc = {k: v for k, v in doc.items() if v is not None or k == "syncMarker"}
        doc["syncMarker"] = self.logs[document].bump(key)
        records[key] = doc
        return doc

    def _move_stock(self, branch, lines, stamp):
        """A sale's stock change: each stock article's line lowers its free stock in branch (a credit raises it);
        preparations and components move none."""
        for l in lines:
            found = self.article(l["articleNumber"])
            if found and found[1].get("stockArticle"):
                qty = unscaled(l["data"]["quantity"], l["data"].get("decimalPlaces"))
                self.set_stock(branch, l["articleNumber"], -qty, stamp, relative=True)

    # ---- till: later changes to documents ----

    @staticmethod
    def _check_keys(spec, allowed):
        unknown = set(spec) - set(allowed)
        if unknown:
            raise StoreError("unknown fields: %s (allowed: %s)" % (", ".join(sorted(unknown)), ", ".join(allowed)))

    @staticmethod
    def _spec_stamp(spec, stamp):
        if "timestamp" not in spec:
            return stamp
        try:
            return mplus_schema.parse_iso(spec["timestamp"], "timestamp").astimezone(TZ)
        except SchemaError as e:
            raise StoreError(str(e))

    def _till_context(self, doc, spec, defaults):
        """(branch, workplace, employee dict) of a later change: the spec's, else the document's
        branch and workplace and the till's employee."""
        branch = int(spec.get("branchNumber", doc.get("financialBranchNumber") or defaults["till_branch"]))
        workplace = int(spec.get("workplaceNumber", doc.get("workplaceNumber") or defaults["till_workplace"]))
        employee = self.employees.get(int(spec.get("employeeNumber", defaults["till_employee"])))
        if employee is None:
            raise StoreError("employee %s does not exist" % spec.get("employeeNumber", defaults["till_employee"]))
        if self.workplace(branch, workplace) is None:
            raise StoreError("branch %d has no workplace %d" % (branch, workplace))
        return branch, workplace, employee

    def _later_payments(self, doc, wanted, already, spec, stamp, defaults):
        """Payments added to a stored invoice/order: [(method, amount)] -> Payment dicts.
        Refuses a payment of the wrong sign and any that would pay more than the total."""
        branch, workplace, employee = self._till_context(doc, spec, defaults)
        total, paid, out = doc.get("totalInclAmount", 0), already, []
        sign = -1 if total < 0 else 1
        for method, amount in wanted:
            if isinstance(amount, bool) or not isinstance(amount, int) or amount * sign <= 0:
                raise StoreError("amount must be a whole number of cents, %s (the total is %d)"
                                 % ("negative" if sign < 0 else "positive", total))
            if (paid + amount) * sign > total * sign:
                raise StoreError("over-payment: %d paid of %d, %d more is too much" % (paid, total, amount))
            paid += amount
            out.append(self._payment(str(method), amount, branch, workplace, employee, stamp))
        return out, paid

    def _changed(self, kind, doc):
        doc["changeCounter"] = doc.get("changeCounter", 0) + 1
        doc["versionNumber"] = doc.get("versionNumber", 0) + 1
        doc["syncMarker"] = self.logs[kind].bump(doc[kind + "Id"])
        return doc

    def pay_invoice(self, spec, stamp, defaults):
        """A later payment on an invoice: {invoiceId, method, amount (cents), timestamp?, branchNumber?,
        workplaceNumber?, employeeNumber?}.  Returns the changed invoice."""
        self._check_keys(spec, ("invoiceId", "method", "amount", "timestamp", "branchNumber", "workplaceNumber",
                                "employeeNumber"))
        doc = self.invoices.get(spec.get("invoiceId"))
        if doc is None:
            raise StoreError("no invoice %s" % spec.get("invoiceId"))
        if not isinstance(spec.get("method"), str) or "amount" not in spec:
            raise StoreError("a payment needs method and amount (cents)")
        stamp = self._spec_stamp(spec, stamp)
        added, paid = self._later_payments(doc, [(spec["method"], spec["amount"])], doc.get("paidAmount", 0),
                                           spec, stamp, defaults)
        doc["paymentList"] = {"payment": doc.get("paymentList", {}).get("payment", []) + added}
        doc["paidAmount"] = paid
        doc["state"] = self._state("INVOICE-STATE-", paid, doc.get("totalInclAmount", 0),
                                   doc.get("invoiceType") == "INVOICE-TYPE-CREDIT-INVOICE")
        return self._changed("invoice", doc)

    TILL_FIELDS = ("timestamp", "branchNumber", "workplaceNumber", "employeeNumber")
    ORDER_ACTIONS = {"pickup": "receipt", "invoice": "invoice"}   # action -> the document it makes
    # An order line's delivered and cancelled quantities, which follow its deliveryState and cancelState.
    ORDER_LINE_QUANTITIES = (("deliveryState", "deliveredQuantity", "deliveredDecimalPlaces"),
                             ("cancelState", "cancelledQuantity", "cancelledDecimalPlaces"))

    def change_order(self, spec, stamp, defaults):
        """Order state changes and payments: {orderId, completeState?, deliveryState?, cancelState?,
        payments? [{method, amount}], timestamp?, ...}; or, alone, an action that makes a document of
        the order: pickup {payments?} (a till receipt) or invoice true (an invoice).  Returns the
        answer: {"document": "order", "order"}, or {"document": "receipt"|"invoice", <it>, "order"}."""
        self._check_keys(spec, ("orderId", "completeState", "deliveryState", "cancelState", "payments", "cancel")
                         + tuple(self.ORDER_ACTIONS) + self.TILL_FIELDS)
        doc = self.orders.get(spec.get("orderId"))
        if doc is None:
            raise StoreError("no order %s" % spec.get("orderId"))
        for action, document in self.ORDER_ACTIONS.items():
            if action in spec:
                others = sorted(set(spec) - {"orderId", action} - set(self.TILL_FIELDS))
                if others:
                    raise StoreError("%s goes alone (with orderId, %s): not with %s"
                                     % (action, ", ".join(self.TILL_FIELDS), ", ".join(others)))
                make = self._pickup_order if action == "pickup" else self._invoice_order
                made = make(doc, spec[action], spec, self._spec_stamp(spec, stamp), defaults)
                return {"document": document, document: made, "order": doc}
        states = {}
        for field, enum, prefix in (("completeState", "OrderCompleteState", "ORDER-COMPLETE-STATE-"),
                                    ("deliveryState", "OrderDeliveryState", "ORDER-DELIVERY-STATE-"),
                                    ("cancelState", "OrderCancelState", "ORDER-CANCEL-STATE-")):
            if field in spec:
                allowed = self.schema.enums[enum]
                value = str(spec[field])
                value = value if value.startswith(prefix) else prefix + value
                if value not in allowed:
                    raise StoreError("%s must be one of %s" % (field, ", ".join(a[len(prefix):] for a in allowed)))
                states[field] = value
        if "cancel" in spec:
            if states:
                raise StoreError("cancel sets cancelState itself: not with %s" % ", ".join(sorted(states)))
            self._cancel_lines(doc, spec["cancel"])
            return {"document": "order", "order": self._changed("order", doc)}
        wanted = self._wanted_payments(spec.get("payments"))
        if not states and not wanted:
            raise StoreError("nothing to change: give completeState, deliveryState, cancelState or payments "
                             "(or pickup or invoice, alone)")
        stamp = self._spec_stamp(spec, stamp)
        if wanted:
            added, paid = self._later_payments(doc, wanted, doc.get("prepaidAmount", 0), spec, stamp, defaults)
            doc["paymentList"] = {"payment": doc.get("paymentList", {}).get("payment", []) + added}
            doc["prepaidAmount"] = paid
            doc["fullyPaid"] = paid == doc.get("totalInclAmount", 0)
        self._set_order_states(doc, states)
        return {"document": "order", "order": self._changed("order", doc)}

    @staticmethod
    def _cancel_lines(doc, cancel):
        """Cancels part of an order: [{line (index from 0), quantity}] adds to each line's
        cancelledQuantity (as Mplus keeps it: the line's quantity and totals stay as ordered);
        cancelState becomes PARTIAL, or COMPLETE once every line is cancelled in full."""
        lines = (doc.get("lineList") or {}).get("line", [])
        if not isinstance(cancel, list) or not cancel:
            raise StoreError("cancel must be a non-empty list of {line, quantity}")
        for c in cancel:
            try:
                line = lines[int(c["line"])]
                qty = D(str(c["quantity"]))
            except (KeyError, IndexError, TypeError, ValueError, decimal.InvalidOperation):
                raise StoreError("cancel: each entry needs line (an index of lineList) and quantity")
            data = line["data"]
            done = unscaled(data.get("cancelledQuantity", 0), data.get("cancelledDecimalPlaces"))
            ordered = unscaled(data["quantity"], data.get("decimalPlaces"))
            if qty <= 0 or done + qty > abs(ordered):
                raise StoreError("cancel: line %s has %s of %s cancelled already" % (c["line"], done, ordered))
            data["cancelledQuantity"], data["cancelledDecimalPlaces"] = scaled(done + qty)
        full = all(unscaled(l["data"].get("cancelledQuantity", 0), l["data"].get("cancelledDecimalPlaces"))
                   == abs(unscaled(l["data"]["quantity"], l["data"].get("decimalPlaces"))) for l in lines)
        doc["cancelState"] = "ORDER-CANCEL-STATE-" + ("COMPLETE" if full else "PARTIAL")

    @staticmethod
    def _wanted_payments(wanted):
        """A control request's payments [{method, amount}] -> [(method, amount)], or None when absent."""
        if wanted is None:
            return None
        if not isinstance(wanted, list) or not all(isinstance(p, dict) and "method" in p and "amount" in p
                                                   for p in wanted):
            raise StoreError("payments must be a list of {method, amount (cents)}")
        return [(p["method"], p["amount"]) for p in wanted]

    def _set_order_states(self, doc, states):
        """Stores the states; the lines follow a complete (or reset) delivery or cancellation."""
        doc.update(states)
        for field, qty_field, places_field in self.ORDER_LINE_QUANTITIES:
            value = states.get(field, "")
            for line in (doc.get("lineList") or {}).get("line", []):
                data = line["data"]
                if value.endswith("-COMPLETE"):
                    data[qty_field], data[places_field] = data["quantity"], data.get("decimalPlaces", 0)
                elif value.endswith("-NOTHING"):
                    data.pop(qty_field, None)
                    data.pop(places_field, None)

    @staticmethod
    def _order_open(doc, action):
        """Refuses to make a document of an order that is invoiced, complete or (partly) cancelled,
        and a pickup of one (partly) delivered: the simulator picks up whole orders only."""
        problem = None
        if (doc.get("invoiceIds") or {}).get("id") and (action != "invoice" or doc.get("deliveryState") !=
                                                         "ORDER-DELIVERY-STATE-PARTIAL"):
            problem = "it is already invoiced"
        elif doc.get("completeState") == "ORDER-COMPLETE-STATE-COMPLETE":
            problem = "it is already complete"
        elif doc.get("cancelState", "ORDER-CANCEL-STATE-NOTHING") != "ORDER-CANCEL-STATE-NOTHING":
            problem = "it is (partly) cancelled"
        elif action == "pickup" and doc.get("deliveryState", "ORDER-DELIVERY-STATE-NOTHING") != \
                "ORDER-DELIVERY-STATE-NOTHING":
            problem = "it is already (partly) delivered"
        if problem:
            raise StoreError("order %s cannot be %s: %s"
                             % (doc["orderId"], "picked up" if action == "pickup" else "invoiced", problem))

    def _pickup_order(self, order, pickup, spec, stamp, defaults):
        """The customer picks the order up at the till: a receipt of it, paid with the pickup
        payments (default: PIN for what is still open); the order becomes delivered and complete."""
        if pickup is True:
            pickup = {}
        if not isinstance(pickup, dict):
            raise StoreError("pickup must be an object: {\"payments\": [{method, amount}]} (payments optional)")
        self._check_keys(pickup, ("payments",))
        self._order_open(order, "pickup")
        total, prepaid = order.get("totalInclAmount", 0), order.get("prepaidAmount", 0)
        wanted = self._wanted_payments(pickup.get("payments"))
        if wanted is None:
            wanted = [("PIN", total - prepaid)] if total != prepaid else []
        payments, paid = self._later_payments(order, wanted, prepaid, spec, stamp, defaults)
        # The receipt holds only the pickup payments; the prepayment settles the rest.
        state = self._state("RECEIPT-STATE-", paid, total, False)
        receipt = self._document_of_order("receipt", order, spec, stamp, defaults, payments, {"state": state})
        self._move_stock(receipt["financialBranchNumber"], receipt["lineList"]["line"], stamp)
        self._set_order_states(order, {"deliveryState": "ORDER-DELIVERY-STATE-COMPLETE",
                                       "completeState": "ORDER-COMPLETE-STATE-COMPLETE"})
        self._changed("order", order)
        return receipt

    def _invoice_order(self, order, value, spec, stamp, defaults):
        """Mplus makes an invoice of the order: no payments of its own, no stock moved; the order
        gets its invoiceIds and becomes complete.  {"lines": [index, ...]} invoices those lines
        only (a partial delivery): they become delivered, and the order is complete once every
        line is."""
        lines = (order.get("lineList") or {}).get("line", [])
        if value is True:   # the whole order, or after part invoices the lines they left
            invoiced = bool((order.get("invoiceIds") or {}).get("id"))
            wanted = [i for i, l in enumerate(lines) if not invoiced or "deliveredQuantity" not in l["data"]]
        elif isinstance(value, dict) and isinstance(value.get("lines"), list) and value["lines"]:
            wanted = value["lines"]
            if not all(isinstance(i, int) and 0 <= i < len(lines) for i in wanted) or len(set(wanted)) < len(wanted):
                raise StoreError("invoice lines must be distinct indexes of the order's lineList")
            if any("deliveredQuantity" in lines[i]["data"] for i in wanted):
                raise StoreError("invoice lines: a line is invoiced already")
        else:
            raise StoreError("invoice must be true or {\"lines\": [index, ...]}")
        self._order_open(order, "invoice")
        extra = {"invoiceType": "INVOICE-TYPE-INVOICE"}
        for field in ("relationVatNumber", "invoiceAddress", "deliveryAddress"):   # the order's own, if it has them
            if order.get(field):
                extra[field] = copy.deepcopy(order[field])
        invoice = self._document_of_order("invoice", order, spec, stamp, defaults, [], extra, wanted)
        order["invoiceIds"] = {"id": (order.get("invoiceIds") or {}).get("id", []) + [invoice["invoiceId"]]}
        if len(wanted) == len(lines):   # the whole order at once: its delivery state stays as it was
            order["completeState"] = "ORDER-COMPLETE-STATE-COMPLETE"
        else:
            for i in wanted:
                data = lines[i]["data"]
                data["deliveredQuantity"], data["deliveredDecimalPlaces"] = \
                    data["quantity"], data.get("decimalPlaces", 0)
            done = all("deliveredQuantity" in l["data"] for l in lines)
            order["deliveryState"] = "ORDER-DELIVERY-STATE-" + ("COMPLETE" if done else "PARTIAL")
            order["completeState"] = "ORDER-COMPLETE-STATE-" + ("COMPLETE" if done else "PARTIAL")
        self._changed("order", order)
        return invoice

    def _document_of_order(self, document, order, spec, stamp, defaults, payments, extra, only=None):
        """A new receipt or invoice of an order, numbered and stored as a till sale's: the order's
        relation, lines (with lineIds of their own), vatMethod, VAT groups and totals, linked to it
        by orderIds (and extOrderIds).  With only (line indexes), of those lines: the VAT groups
        and totals are theirs."""
        branch, workplace, employee = self._till_context(order, spec, defaults)
        relation = self.relations.get(order.get("relationNumber"))
        quantities = {f for _, qty, places in self.ORDER_LINE_QUANTITIES for f in (qty, places)}
        lines = copy.deepcopy((order.get("lineList") or {}).get("line", []))
        totals = (order.get("totalInclAmount", 0), order.get("totalExclAmount", 0))
        vat_groups = copy.deepcopy((order.get("vatGroupList") or {}).get("vatGroup", []))
        if only is not None and len(only) < len(lines):
            lines = [lines[i] for i in sorted(only)]
            by_code = {g["vatCode"]: g for g in vat_groups}
            vat_groups = []
            for code in sorted({l["data"]["vatCode"] for l in lines}):
                mine = [l["data"] for l in lines if l["data"]["vatCode"] == code]
                g = dict(by_code.get(code, {"vatCode": code}))
                g["exclAmount"] = sum(d["totalExclAmount"] for d in mine)
                g["vatAmount"] = sum(d["totalInclAmount"] - d["totalExclAmount"] for d in mine)
                vat_groups.append(g)
            totals = (sum(l["data"]["totalInclAmount"] for l in lines),
                      sum(l["data"]["totalExclAmount"] for l in lines))
        todo = list(lines)
        while todo:
            line = todo.pop()
            line["lineId"] = str(uuid.uuid4())
            for field in quantities:
                line.get("data", {}).pop(field, None)
            todo.extend((line.get("preparationList") or {}).get("line", []))
        for g in vat_groups:
            g["branchNumber"] = branch
        common = self._common(branch, workplace, employee, stamp, lines, vat_groups, totals[0], totals[1],
                              order.get("vatMethod", "VAT-METHOD-INCLUSIVE"), payments, relation,
                              order.get("reference"))
        for field in ("relationNumber", "relationName"):   # also when the relation is not stored
            if order.get(field) is not None:
                common[field] = order[field]
        links = {"orderIds": {"id": [order["orderId"]]}}
        if order.get("extOrderId"):
            links["extOrderIds"] = {"id": [order["extOrderId"]]}
        return self._store_document(document, common, relation, stamp, extra=dict(links, **extra))

    # ---- till: many sales at once ----

    UNIT_QUANTITIES = ("1", "2", "1", "3", "1", "5")
    WEIGHED_QUANTITIES = ("0.250", "1.234", "0.875", "2.500", "0.125")

    def sales(self, count, spec, vary, stamp, defaults):
        """count sales from one spec (see sale); with vary, document i's line j sells the ordinary
        article number (i * L + j) of the catalogue (in number order, cycling; L lines, 5 when the
        spec has none) with a cycling quantity (3 decimals for articles with a unit such as kg).
        Returns [(document, doc)] in order."""
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 100000:
            raise StoreError("count must be a whole number from 1 to 100000")
        if not isinstance(spec, dict):
            raise StoreError("spec must be a JSON object")
        base = spec.get("lines")
        if base is not None and (not isinstance(base, list) or not all(isinstance(l, dict) for l in base)):
            raise StoreError("lines must be a list of objects")
        if not vary:
            return [self.sale(spec, stamp, defaults) for _ in range(count)]
        cycle = sorted(self.article_product)
        if not cycle:
            raise StoreError("vary needs articles in the catalogue (it has none)")
        base = [{k: v for k, v in l.items() if k not in ("articleNumber", "quantity", "price")}
                for l in base or [{}] * 5]
        weighed = {n for n in cycle if self.article(n)[1].get("unit")}
        n, width, out = len(cycle), len(base), []
        for i in range(count):
            lines = []
            for j, extra in enumerate(base):
                number = cycle[(i * width + j) % n]
                qtys = self.WEIGHED_QUANTITIES if number in weighed else self.UNIT_QUANTITIES
                line = dict(extra, articleNumber=number, quantity=qtys[(i + j) % len(qtys)])
                lines.append(line)
            out.append(self.sale(dict(spec, lines=lines), stamp, defaults))
        return out

    @staticmethod
    def _state(prefix, paid, total, credit):
        if total != 0 and paid == 0:
            return prefix + ("OUTSTANDING-CREDIT" if credit else "OUTSTANDING")
        if paid != total:
            return prefix + "PARTLY-PAID"
        return prefix + "PAID"

    def _copied_lines(self, original, exclusive):
        """Line specs that repeat a credited document's lines (preparations after their parent)."""
        out = []

        def copy_line(l, line_type=None):
            d = l["data"]
            ls = {"articleNumber": l["articleNumber"],
                  "quantity": str(unscaled(d["quantity"], d.get("decimalPlaces"))), "text": l.get("text")}
            if line_type is None:
                ls["price"] = d.get("priceExcl") if exclusive else d.get("price")
                ls["discountAmount"] = abs(d.get("discountAmountExcl" if exclusive else "discountAmount", 0))
            else:
                ls["lineType"] = line_type
            out.append(ls)
            for prep in (l.get("preparationList") or {}).get("line", []):
                copy_line(prep, prep.get("lineType", "LINE-TYPE-PREPARATION"))

        for l in original["lineList"]["line"]:
            copy_line(l)
        return out

    def _sale_lines(self, line_specs, credit, employee_no, relation, exclusive):
        """The document's lines; a PREPARATION/COMPONENT line goes into the preparationList of
        the ordinary line before it, at price 0, and adds nothing to the totals."""
        lines = []
        for i, ls in enumerate(line_specs):
            line_type = ls.get("lineType", "NONE") if isinstance(ls, dict) else "NONE"
            line_type = LINE_TYPES.get(str(line_type), str(line_type))
            if line_type not in LINE_TYPES.values():
                raise StoreError("line %d: lineType must be NONE, PREPARATION or COMPONENT" % i)
            if line_type == "LINE-TYPE-NONE":
                lines.append(self._sale_line(i, ls, credit, employee_no, relation, exclusive))
                continue
            if not lines:
                raise StoreError("line %d: a %s line needs an ordinary line before it" % (i, line_type[10:]))
            if ls.get("price") not in (None, 0) or ls.get("discountAmount") or ls.get("discountPercentage"):
                raise StoreError("line %d: a %s line has price 0 and no discount" % (i, line_type[10:]))
            prep = self._sale_line(i, dict(ls, price=0), credit, employee_no, None, exclusive)
            prep["lineType"] = line_type
            lines[-1].setdefault("preparationList", {"line": []})["line"].append(prep)
        return lines

    def _sale_line(self, index, ls, credit, employee_no, relation, exclusive=False):
        """One line; price is incl. VAT, or excl. VAT for an exclusive document, in which case
        the line's VAT (and so its totalInclAmount) is rounded per line."""
        if not isinstance(ls, dict) or "articleNumber" not in ls:
            raise StoreError("line %d needs an articleNumber" % index)
        try:
            number = int(ls["articleNumber"])
        except (TypeError, ValueError):
            raise StoreError("line %d: articleNumber must be a number" % index)
        found = self.article(number)
        if found is None:
            raise StoreError("line %d: article %d does not exist" % (index, number))
        article = found[1]
        try:
            qty = D(str(ls.get("quantity", 1)))
        except decimal.InvalidOperation:
            raise StoreError("line %d: quantity must be a number" % index)
        if qty == 0 or -qty.as_tuple().exponent > 3:
            raise StoreError("line %d: quantity must be non-zero with at most 3 decimals" % index)
        if credit:
            qty = -abs(qty)
        qty_value, places = scaled(qty, fewest=False)
        price = ls.get("price")
        price = int(price) if price is not None else article.get("priceExcl" if exclusive else "priceIncl", 0)
        pct = VAT_RATES.get(article.get("vatCode", 2), 21)
        gross = cents(D(price) * qty)
        if ls.get("discountAmount"):
            discount = int(ls["discountAmount"]) * (1 if qty > 0 else -1)
            disc_pct = None
        elif ls.get("discountPercentage"):
            disc_pct = int(ls["discountPercentage"])
            discount = cents(D(gross) * disc_pct / 100)
        elif relation is not None and relation.get("discountPercentage"):
            disc_pct = relation["discountPercentage"]
            discount = cents(D(gross) * disc_pct / 100)
        else:
            discount, disc_pct = 0, None
        total = gross - discount
        if exclusive:
            total_excl, total = total, total + cents(D(total) * pct / 100)
            price_incl, price_excl = cents(D(price) * (100 + pct) / 100), price
        else:
            total_excl = cents(D(total) * 100 / (100 + pct))
            price_incl, price_excl = price, cents(D(price) * 100 / (100 + pct))
        tg = self.turnover_group(article.get("turnoverGroup", 1)) or {}
        data = {"quantity": qty_value, "decimalPlaces": places, "price": price_incl,
                "priceExcl": price_excl, "originalPrice": article.get("priceIncl", 0),
                "originalPriceExcl": article.get("priceExcl", 0), "purchasePrice": article.get("purchasePrice"),
                "turnoverGroup": article.get("turnoverGroup", 1), "turnoverGroupName": tg.get("turnoverGroupName"),
                "turnoverGroupType": tg.get("turnoverGroupType"),
                "turnoverGroupAccountNumber": tg.get("accountNumber"),
                "vatCode": article.get("vatCode", 2), "vatPercentage": pct, "totalInclAmount": total,
                "totalExclAmount": total_excl, "priceType": "PRICE-TYPE-ARTICLE"}
        if discount:
            data["discountType"] = ls.get("discountType") or (
                "DISCOUNT-TYPE-CUSTOMER-DISCOUNT" if disc_pct is not None and not ls.get("discountPercentage")
                else "DISCOUNT-TYPE-EXTERNAL-DISCOUNT")
            if disc_pct is not None:
                data["discountPercentage"] = disc_pct
            if exclusive:
                data["discountAmount"] = cents(D(discount) * (100 + pct) / 100)
                data["discountAmountExcl"] = discount
            else:
                data["discountAmount"] = discount
                data["discountAmountExcl"] = cents(D(discount) * 100 / (100 + pct))
        if ls.get("omitExcl"):
            data["omitExcl"] = True   # removed once the document's VAT groups are summed (sale)
        data = {k: v for k, v in data.items() if v is not None}
        return {"lineId": str(uuid.uuid4()), "employeeNumber": employee_no, "articleNumber": number,
                "pluNumber": article.get("pluNumber"), "text": ls.get("text") or article.get("receiptText")
                or article.get("description", ""), "data": data, "lineType": "LINE-TYPE-NONE",
                "sequenceNumber": index + 1}

    def _sale_payments(self, spec, kind, total, original, branch, workplace, employee, stamp):
        if spec.get("payments") is not None:
            wanted = spec["payments"]
            if not isinstance(wanted, list):
                raise StoreError("payments must be a list")
            pairs = []
            for p in wanted:
                if not isinstance(p, dict) or "method" not in p or "amount" not in p:
                    raise StoreError("a payment needs method and amount (cents)")
                pairs.append((str(p["method"]), int(p["amount"])))
        elif kind == "cash":
            pairs = [("CASH", total)]
        elif kind == "card":
            pairs = [("PIN", total)]
        elif kind == "split":
            first = int(spec.get("card_amount", int(total / 2)))
            pairs = [("PIN", first), ("CASH", total - first)]
        else:
            refund = spec.get("refund_method")
            if refund is None and original is not None:
                methods = [p["method"] for p in original["paymentList"]["payment"]]
                refund = methods[0] if methods else "CASH"
            pairs = [(refund or "CASH", total)]
        return [self._payment(method, amount, branch, workplace, employee, stamp) for method, amount in pairs]

    def _payment(self, method, amount, branch, workplace, employee, stamp):
        pm = self.payment_method(method)
        if pm is None:
            raise StoreError("payment method %s does not exist" % method)
        return {"paymentId": str(uuid.uuid4()), "financialDate": mplus_date(stamp.date()),
                "entryTimestamp": mplus_datetime(stamp), "branchNumber": branch,
                "workplaceNumber": workplace, "employeeNumber": employee["employeeNumber"],
                "employeeName": employee.get("name", ""), "method": method,
                "description": pm["description"], "amount": amount,
                "paymentMethodType": pm["type"], "accountNumber": pm.get("accountNumber")}

