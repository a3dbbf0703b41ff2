"""qbo_company - the accounting side of the simulator: one QuickBooks company (realm).

Holds the entities of one realm and applies QBO's rules when they are
written: Ids and SyncTokens, sparse versus full updates, delete and void, the
unknown-property check against Intuit's schema (2010), unique display names
(6240), document numbers (6140), the line-amount rule of sales documents
(6070), references to items, tax codes, customers and linked transactions
(2500), the tax total (6000), payments against invoices and credit memos,
the rules of Items (types, accounts, quantity on hand, categories and
sub-items), queries and change data capture.  A new company has the accounts
an Item needs (SEED_ACCOUNTS).  Every rule answers with the fault shape of
the real fixtures in tests/fixtures/quickbooks/.  Amounts are Decimal from the
request body to the answer, never float.

Nothing here is thread-safe on its own: callers hold Company.lock.
"""

import copy
import datetime
import decimal
import json
import threading

import qbo_query

D = decimal.Decimal
CENT = D("0.01")

# QBO answers in the company's time zone (US Pacific in every recording).  A
# fixed offset keeps the simulator deterministic across DST changes.
SIM_TZ = datetime.timezone(datetime.timedelta(hours=-7))

# Customer, Vendor and Employee share one namespace of display names.
NAME_ENTITIES = ("Customer", "Vendor", "Employee")
# Name lists whose Name must be unique within their own type.
UNIQUE_NAME_ENTITIES = ("Item", "Account", "PaymentMethod", "Term", "Class", "Department")
# Characters QBO refuses in a display name or item name.
FORBIDDEN_NAME_CHARS = (":", "\t", "\n")
# An Item name may not hold a double quote either (QBO's import rules for
# products and services, shared/docs/quickbooks-api.md §3 Item).
FORBIDDEN_ITEM_NAME_CHARS = FORBIDDEN_NAME_CHARS + ('"',)
# Item limits from Intuit's XSD (Name and Sku 100, Description 4000).
ITEM_MAX_LENGTHS = (("Name", 100), ("Sku", 100), ("Description", 4000))
# Item types the API writes; the schema's other ItemTypeEnum values (Group,
# Bundle, Assembly, ...) get "Unsupported Operation", as Category did before
# minorversion 4 (intuit/QuickBooks-V3-PHP-SDK#70).
ITEM_WRITABLE_TYPES = ("Inventory", "NonInventory", "Service", "Category")
# What each type requires (shared/docs §3 Item; the fixture rest/item_create_inventory.json).
ITEM_REQUIRED_ACCOUNTS = {"Inventory": ("IncomeAccountRef", "AssetAccountRef", "ExpenseAccountRef"),
                          "NonInventory": ("IncomeAccountRef",), "Service": ("IncomeAccountRef",)}
ITEM_ACCOUNT_REFS = ("IncomeAccountRef", "ExpenseAccountRef", "AssetAccountRef")
# Fields a Category does not take: it only groups other items.
CATEGORY_REFUSED = ("Sku", "UnitPrice", "PurchaseCost", "IncomeAccountRef", "ExpenseAccountRef",
                    "AssetAccountRef", "QtyOnHand", "InvStartDate", "ReorderPoint")
# Item amounts kept as Decimal (request bodies may send decimal strings).
ITEM_NUMBERS = ("QtyOnHand", "UnitPrice", "PurchaseCost", "ReorderPoint")
# A FullyQualifiedName is "Limited to 5 levels" (XSD): Level 0 to 4.
ITEM_MAX_LEVEL = 4
# The accounts of a new company: (Id, Name, AccountType, AccountSubType,
# Classification).  Ids and names are those of the Item fixtures
# (rest/item_*_inventory.json: 79, 80, 81; rest/query_items_response.json: 1).
SEED_ACCOUNTS = (
    ("1", "Services", "Income", "ServiceFeeIncome", "Revenue"),
    ("79", "Sales of Product Income", "Income", "SalesOfProductIncome", "Revenue"),
    ("80", "Cost of Goods Sold", "Cost of Goods Sold", "SuppliesMaterialsCogs", "Expense"),
    ("81", "Inventory Asset", "Other Current Asset", "Inventory", "Asset"),
)
# What the QuickBooks UI fills in for an Item made there without it
# (control API): the income account by type, and for inventory the asset and
# cost accounts with tracking on.
UI_ITEM_INCOME_ACCOUNT = {"Inventory": "79", "NonInventory": "79", "Service": "1"}
UI_INVENTORY_ACCOUNTS = {"AssetAccountRef": "81", "ExpenseAccountRef": "80"}
# Sales documents whose DocNumber must be unique per type.
DOC_NUMBER_UNIQUE = ("SalesReceipt", "Invoice", "CreditMemo", "RefundReceipt")
# Transactions that ?operation=void applies to.  The research notes show void
# only for SalesReceipt (rest/salesreceipt_void.json) and name Invoice and
# Payment; they are silent on RefundReceipt and CreditMemo, allowed here too.
VOIDABLE = ("SalesReceipt", "Invoice", "Payment", "RefundReceipt", "CreditMemo")
# Writes whose references are checked against stored objects (2500).
REFERENCE_CHECKED = ("SalesReceipt", "Invoice", "RefundReceipt", "CreditMemo", "Payment")
# TaxCodeRef values a US company accepts without a stored TaxCode
# (rest/salesreceipt_create.json uses "NON"; Automated Sales Tax uses TAX/NON).
US_TAX_CODES = ("TAX", "NON")
# What a Payment line can be linked to, and the sign of the line in the
# payment: an invoice is paid (+), a credit memo's credit is used up (-).
PAYMENT_LINKABLE = {"Invoice": 1, "CreditMemo": -1}
# Sales documents that stay open for payment: Balance = TotalAmt.
OPEN_BALANCE = ("Invoice", "CreditMemo")
# Sales documents that move tracked items' quantity on hand, and which way.
STOCK_SIGN = {"SalesReceipt": -1, "Invoice": -1, "RefundReceipt": 1, "CreditMemo": 1}
# Sales documents paid on the spot: Balance = 0.
PAID_ON_ISSUE = ("SalesReceipt", "RefundReceipt")
# Kept from the stored object on a full update: the server owns them.
SYSTEM_KEYS = ("Id", "domain", "Balance", "BalanceWithJobs", "status")
CDC_MAX_AGE = datetime.timedelta(days=30)
CDC_MAX_OBJECTS = 1000
USD = {"value": "USD", "name": "United States Dollar"}


# ---- time and JSON --------------------------------------------------------------


def now():
    return datetime.datetime.now(SIM_TZ)


def meta_time(stamp):
    """MetaData times carry whole seconds: 2020-09-29T05:58:07-07:00."""
    return stamp.astimezone(SIM_TZ).isoformat(timespec="seconds")


def response_time(stamp):
    """The "time" of a response carries milliseconds: 2020-09-29T05:59:22.019-07:00."""
    return stamp.astimezone(SIM_TZ).isoformat(timespec="milliseconds")


def parse_time(text):
    """An ISO-8601 timestamp as an aware datetime (UTC when it has no offset), or None."""
    try:
        stamp = datetime.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=datetime.timezone.utc)


def _decimal_text(value):
    """A Decimal as the text of a JSON number, exactly: 10 for 10.00, 9.950008, never 1E+1."""
    if not value.is_finite():
        raise TypeError("not JSON serialisable: %r" % (value,))
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def _encode(value):
    # json.dumps can only turn a Decimal into a float (not exact), so the
    # containers are walked here and everything else is left to json.dumps.
    if isinstance(value, D):
        return _decimal_text(value)
    if isinstance(value, dict):
        return "{%s}" % ",".join("%s:%s" % (json.dumps(k if isinstance(k, str) else str(k), ensure_ascii=False),
                                            _encode(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return "[%s]" % ",".join(_encode(v) for v in value)
    return json.dumps(value, ensure_ascii=False)


def dumps(obj):
    """Compact JSON bytes; Decimal amounts become JSON numbers with their exact digits."""
    return _encode(obj).encode()


def loads(data):
    """Parse a request body keeping amounts exact (floats as Decimal)."""
    return json.loads(data, parse_float=D)


# ---- faults -------------------------------------------------------------------------


class Fault(Exception):
    """A QBO error answer, sent with HTTP 400: {"Fault":{"Error":[...],"type":...},"time":...}."""

    def __init__(self, code, message, detail, element=None, fault_type="ValidationFault"):
        super().__init__("%s %s: %s" % (code, message, detail))
        self.code, self.message, self.detail = code, message, detail
        self.element, self.fault_type = element, fault_type

    def body(self, stamp):
        error = {"Message": self.message, "Detail": self.detail, "code": self.code}
        if self.element is not None:
            error["element"] = self.element
        return {"Fault": {"Error": [error], "type": self.fault_type}, "time": response_time(stamp)}


def required(element):
    # errors/fault_2020_required_param.json
    return Fault("2020", "Required param missing, need to supply the required value for the API",
                 "Required parameter %s is missing in the request" % element, element)


def not_found():
    # errors/fault_610_object_not_found.json
    return Fault("610", "Object Not Found",
                 "Object Not Found : Something you're trying to use has been made inactive. "
                 "Check the fields with accounts, customers, items, vendors or employees.", "")


def stale():
    # errors/fault_5010_stale_object.json
    return Fault("5010", "Stale Object Error",
                 "Stale Object Error : You and another user were working on this at the same time. "
                 "The other user finished before you did, so your work was not saved.", "")


def unsupported_operation(what):
    return Fault("500", "Unsupported Operation", "Operation %s is not supported." % what)


def malformed(detail):
    return Fault("2010", "Request has invalid or unsupported property",
                 "Property Name:%s specified is unsupported or invalid" % detail)


# The tail of the 610 fixture's Detail; integrators report it after "Invalid
# Reference Id : " for code 2500 (intuit/QuickBooks-V3-PHP-SDK#95, #110).
INACTIVE_TEXT = ("Something you're trying to use has been made inactive. "
                 "Check the fields with accounts, customers, items, vendors or employees.")


def invalid_reference(element, detail=INACTIVE_TEXT):
    # No fixture: code, Message and Detail as integrators report them (see
    # INACTIVE_TEXT); element names the field, with the line as for 6070.
    return Fault("2500", "Invalid Reference Id", "Invalid Reference Id : " + detail, element)


def business_validation(detail, element=None):
    # 6000 is QBO's generic business rule code (shared/docs §2.5); no fixture.
    return Fault("6000", "A business validation error has occurred while processing your request",
                 "Business Validation Error: " + detail, element)


def too_long(element, limit, length):
    # Code, Message and Detail as integrators quote QBO's answer for an
    # over-long DocNumber or CompanyName (consolibyte/quickbooks-php#79); no fixture.
    return Fault("2050", "String length is either shorter or longer than supported by specification",
                 "String length specified does not match the supported length. Min:0 Max:%d supported. "
                 "Supplied length:%d" % (limit, length), element)


def _money(value):
    """An amount for a Detail text: 9.95, 100, never 1E+2."""
    return _decimal_text(D(value))


def _number(value, element):
    """An amount or quantity as Decimal; anything else is an invalid property (2010)."""
    try:
        return D(str(value))
    except decimal.InvalidOperation:
        raise malformed("%s=%r is not a number" % (element, value))


# ---- the company -------------------------------------------------------------------


class Company:
    """One realm: its entities, deleted transactions and idempotent request ids."""

    def __init__(self, realm, schema):
        self.realm = realm
        self.schema = schema
        self.lock = threading.RLock()
        self.objects = {}     # entity -> {Id: object}
        self.tombstones = {}  # entity -> {Id: {"Id", "deleted_at"}} for deleted transactions
        self.next_id = {}     # entity -> next Id number
        self.responses = {}   # requestid -> (HTTP status, body bytes) of the first answer
        # Apps commonly read companyinfo/{realm} to check a connection.
        stamp = meta_time(now())
        self.objects["CompanyInfo"] = {realm: {
            "CompanyName": "Simulated Company %s" % realm, "LegalName": "Simulated Company %s" % realm,
            "Country": "US", "domain": "QBO", "sparse": False, "Id": realm, "SyncToken": "0",
            "MetaData": {"CreateTime": stamp, "LastUpdatedTime": stamp}}}
        # The accounts an Item needs, shaped like rest/account_read.json; later
        # Accounts continue after the highest Id.
        accounts = self.objects["Account"] = {}
        for obj_id, name, account_type, sub_type, classification in SEED_ACCOUNTS:
            accounts[obj_id] = {
                "Name": name, "SubAccount": False, "FullyQualifiedName": name, "Active": True,
                "Classification": classification, "AccountType": account_type, "AccountSubType": sub_type,
                "CurrentBalance": 0, "CurrentBalanceWithSubAccounts": 0, "CurrencyRef": copy.deepcopy(USD),
                "domain": "QBO", "sparse": False, "Id": obj_id, "SyncToken": "0",
                "MetaData": {"CreateTime": stamp, "LastUpdatedTime": stamp}}
        self.next_id["Account"] = max(int(i) for i in accounts) + 1

    # -- entity traits from the schema --

    def _chain(self, entity):
        return self.schema.base_chain(self.schema.entities[entity])

    def is_transaction(self, entity):
        return "Transaction" in self._chain(entity)

    def _is_sales(self, entity):
        return "SalesTransaction" in self._chain(entity)

    def _has_field(self, entity, field):
        return field in self.schema.type_info(self.schema.entities[entity]).fields

    # -- reads --

    def read(self, entity, obj_id):
        obj = self.objects.get(entity, {}).get(str(obj_id))
        if obj is None:
            raise not_found()
        return copy.deepcopy(obj)

    def all(self, entity):
        """Every stored object of a type, deleted transactions as status Deleted (control API)."""
        rows = [copy.deepcopy(o) for o in self.objects.get(entity, {}).values()]
        rows += [self._tombstone_view(t) for t in self.tombstones.get(entity, {}).values()]
        return sorted(rows, key=lambda o: int(o["Id"]))

    def query(self, text, equals_case_sensitive=True):
        """The body of a query answer (without "time"); raises Fault.

        equals_case_sensitive: whether '=' and IN compare strings exactly
        (the runtime setting query_equals_case_sensitive).
        """
        try:
            q, entity = self._parse_query(text)
        except qbo_query.QueryError as e:
            raise Fault(e.code, e.message, e.detail)
        rows = list(self.objects.get(entity, {}).values())
        mentions_active = any(c[0].lower() == "active" for c in q.conditions)
        if self._has_field(entity, "Active") and not mentions_active:
            # Like QBO, a name list query returns active objects unless it asks about Active.
            rows = [r for r in rows if r.get("Active") is not False]
        page, total = qbo_query.run(q, rows, equals_case_sensitive)
        if q.count:
            return {"QueryResponse": {"totalCount": total}}
        if not page:
            return {"QueryResponse": {}}
        return {"QueryResponse": {entity: copy.deepcopy(page), "startPosition": q.start,
                                  "maxResults": len(page)}}

    def _parse_query(self, text):
        """(Query, entity name) of a statement whose entity and fields exist; raises QueryError."""
        q = qbo_query.parse(text)
        entity = self.schema.entity_by_lower(q.entity)
        if entity is None:
            raise qbo_query.validation_error("Entity %s is not supported" % q.entity)
        fields = {f.lower() for f in self.schema.type_info(self.schema.entities[entity]).fields}
        for field in [c[0] for c in q.conditions] + [o[0] for o in q.order]:
            if field.split(".")[0].lower() not in fields:
                raise qbo_query.validation_error("property '%s' is not queryable" % field)
        return q, entity

    def cdc(self, entity_names, changed_since, stamp):
        """The body of a CDC answer (without "time"); raises Fault."""
        since = parse_time(changed_since or "")
        if since is None:
            raise Fault("4001", "Invalid query", "QueryValidationError: changedSince is not a valid date-time: %s"
                        % (changed_since,))
        if since < stamp - CDC_MAX_AGE:
            raise Fault("4001", "Invalid query",
                        "QueryValidationError: changedSince must be within the last 30 days")
        entities = []
        for name in (entity_names or "").split(","):
            entity = self.schema.entity_by_lower(name.strip())
            if entity is None:
                raise Fault("4001", "Invalid query", "QueryValidationError: Entity %s is not supported" % name)
            entities.append(entity)
        responses, budget = [], CDC_MAX_OBJECTS
        for entity in entities:
            changed = [(parse_time(o["MetaData"]["LastUpdatedTime"]), copy.deepcopy(o))
                       for o in self.objects.get(entity, {}).values()]
            changed += [(t["deleted_at"].replace(microsecond=0), self._tombstone_view(t))
                        for t in self.tombstones.get(entity, {}).values()]
            # Timestamps have whole seconds, so compare at that resolution (inclusive).
            rows = [o for when, o in sorted(changed, key=lambda p: (p[0], int(p[1]["Id"])))
                    if when >= since.replace(microsecond=0)][:budget]
            budget -= len(rows)
            responses.append({entity: rows, "startPosition": 1, "maxResults": len(rows)} if rows else {})
        return {"CDCResponse": [{"QueryResponse": responses}]}

    def _tombstone_view(self, tomb):
        # Deleted objects come back with minimal fields (NangoHQ integration-templates PR #467).
        return {"domain": "QBO", "status": "Deleted", "Id": tomb["Id"],
                "MetaData": {"LastUpdatedTime": meta_time(tomb["deleted_at"])}}

    # -- writes: each returns (object or answer body entity, webhook operation) --

    def create(self, entity, body, stamp, validate=True, obj_id=None):
        if validate:
            self._check_properties(entity, body)
        obj = copy.deepcopy(body)
        for key in ("Id", "SyncToken", "MetaData", "status"):
            obj.pop(key, None)
        fresh = obj_id is None
        obj_id = obj_id or str(self.next_id.get(entity, 1))
        obj.update({"domain": "QBO", "sparse": False, "Id": obj_id, "SyncToken": "0",
                    "MetaData": {"CreateTime": meta_time(stamp), "LastUpdatedTime": meta_time(stamp)}})
        self._derive(entity, obj, None, validate, sent=body)
        if fresh:
            self._take_id(entity)  # only now: a refused create uses up no Id
        self.objects.setdefault(entity, {})[obj_id] = obj
        self._payment_written(entity, None, obj)
        self._stock_written(entity, None, obj)
        return copy.deepcopy(obj), "Create"

    def update(self, entity, body, stamp):
        self._check_properties(entity, body)
        current = self._current_for_write(entity, body)
        if body.get("sparse") is True:
            obj = copy.deepcopy(current)
            obj.update(copy.deepcopy({k: v for k, v in body.items() if k not in ("MetaData", "status")}))
        else:
            # A full update replaces every writable field; what the server owns survives.
            obj = copy.deepcopy({k: v for k, v in body.items() if k not in ("MetaData", "status")})
            obj.update({k: copy.deepcopy(current[k]) for k in SYSTEM_KEYS if k in current})
            if entity == "Item":
                # The quantity on hand is a balance of the item's transactions:
                # a full update that leaves it out keeps it (and its start date).
                obj.update({k: copy.deepcopy(current[k]) for k in ("QtyOnHand", "InvStartDate")
                            if k in current and k not in body})
        obj["sparse"] = False
        self._derive(entity, obj, current, validate=True, sent=body)
        return self._store_version(entity, obj, current, stamp), "Update"

    def delete(self, entity, body, stamp):
        current = self._current_for_write(entity, body)
        if self.is_transaction(entity):
            del self.objects[entity][current["Id"]]
            self.tombstones.setdefault(entity, {})[current["Id"]] = {"Id": current["Id"], "deleted_at": stamp}
            self._payment_written(entity, current, None)  # a deleted payment gives the balances back
            self._stock_written(entity, current, None)
            return {"domain": "QBO", "status": "Deleted", "Id": current["Id"]}, "Delete"
        if not self._has_field(entity, "Active"):
            raise unsupported_operation("delete")
        obj = copy.deepcopy(current)
        obj["Active"] = False
        self._derive(entity, obj, current, validate=False)
        return self._store_version(entity, obj, current, stamp), "Delete"

    def void(self, entity, body, stamp):
        if entity not in VOIDABLE:
            raise unsupported_operation("void")
        current = self._current_for_write(entity, body)
        obj = copy.deepcopy(current)
        # rest/salesreceipt_void.json: amounts and quantities zeroed, PrivateNote "Voided".
        # A voided payment's lines apply nothing, so its invoices are open again.
        for line in obj.get("Line", []):
            line["Amount"] = 0
            detail = line.get("SalesItemLineDetail")
            if detail is not None:
                detail.update({k: 0 for k in ("Qty", "UnitPrice", "TaxInclusiveAmt") if k in detail})
        obj["PrivateNote"] = "Voided"
        obj["TotalAmt"] = 0
        for key in ("Balance", "UnappliedAmt"):
            if key in obj:
                obj[key] = 0
        if "TxnTaxDetail" in obj:
            obj["TxnTaxDetail"]["TotalTax"] = 0
            for tax_line in obj["TxnTaxDetail"].get("TaxLine", []):
                if isinstance(tax_line, dict) and "Amount" in tax_line:
                    tax_line["Amount"] = 0
        return self._store_version(entity, obj, current, stamp), "Void"

    def put_direct(self, entity, body, stamp):
        """A change made "in the QuickBooks UI" (control API): no SyncToken or property checks."""
        obj_id = str(body.get("Id", ""))
        current = self.objects.get(entity, {}).get(obj_id)
        if current is None:
            if obj_id:
                # Seed a chosen Id; later creates continue after it.
                self.next_id[entity] = max(self.next_id.get(entity, 1), int(obj_id) + 1)
            if entity == "Item":
                body = self._ui_item_defaults(body)
            return self.create(entity, body, stamp, validate=False, obj_id=obj_id or None)
        obj = copy.deepcopy(current)
        obj.update({k: copy.deepcopy(v) for k, v in body.items() if k not in ("SyncToken", "MetaData")})
        self._derive(entity, obj, current, validate=False, sent=body)
        return self._store_version(entity, obj, current, stamp), "Update"

    def _ui_item_defaults(self, body):
        """An Item made in the QuickBooks UI always has its type's accounts (the
        form fills them in), so later API updates of it pass the Item rules."""
        item_type = body.get("Type")
        body = dict(body)
        income = UI_ITEM_INCOME_ACCOUNT.get(item_type)
        if income and "IncomeAccountRef" not in body:
            body["IncomeAccountRef"] = {"value": income}
        if item_type == "Inventory":
            for key, value in UI_INVENTORY_ACCOUNTS.items():
                body.setdefault(key, {"value": value})
            body.setdefault("TrackQtyOnHand", True)
            body.setdefault("QtyOnHand", 0)
            body.setdefault("InvStartDate", now().date().isoformat())
        return body

    # -- write helpers --

    def _take_id(self, entity):
        n = self.next_id.get(entity, 1)
        self.next_id[entity] = n + 1
        return n

    def _current_for_write(self, entity, body):
        """The stored object an update/delete/void names, after the SyncToken check."""
        obj_id = body.get("Id")
        if obj_id in (None, ""):
            raise required("Id")
        current = self.objects.get(entity, {}).get(str(obj_id))
        if current is None:
            raise not_found()
        if body.get("SyncToken") in (None, ""):
            raise required("SyncToken")
        if str(body["SyncToken"]) != current["SyncToken"]:
            raise stale()
        return current

    def _store_version(self, entity, obj, current, stamp):
        obj["SyncToken"] = str(int(current["SyncToken"]) + 1)
        obj["MetaData"] = {"CreateTime": current["MetaData"]["CreateTime"], "LastUpdatedTime": meta_time(stamp)}
        self.objects[entity][obj["Id"]] = obj
        self._payment_written(entity, current, obj)
        self._stock_written(entity, current, obj)
        if entity == "Item" and (obj.get("FullyQualifiedName"), obj.get("Level")) != (
                current.get("FullyQualifiedName"), current.get("Level")):
            self._rename_sub_items(obj, {obj["Id"]})
        return copy.deepcopy(obj)

    def _rename_sub_items(self, parent, seen):
        """A renamed or moved Item's sub-items (to any depth) get its new
        FullyQualifiedName prefix and their Level.  They keep their SyncToken
        and MetaData and no webhook is sent: whether QBO bumps them is not
        confirmed."""
        for child in self.objects.get("Item", {}).values():
            ref = child.get("ParentRef")
            if child["Id"] in seen or not isinstance(ref, dict) or str(ref.get("value")) != parent["Id"]:
                continue
            seen.add(child["Id"])
            ref["name"] = parent.get("FullyQualifiedName", "")
            child["FullyQualifiedName"] = "%s:%s" % (parent.get("FullyQualifiedName", ""), child.get("Name", ""))
            child["Level"] = parent.get("Level", 0) + 1
            self._rename_sub_items(child, seen)

    def _check_properties(self, entity, body):
        found = self.schema.unknown_property(self.schema.entities[entity], body)
        if found:
            key, type_name = found
            known = self.schema.known_properties(type_name)
            # Detail text as in vcr/http400_2010_unsupported_property.yml.
            raise malformed('Unrecognized field "%s" (class com.intuit.schema.finance.v3.%s), not marked as '
                            "ignorable (%d known properties: %s])"
                            % (key, type_name, len(known), ", ".join('"%s"' % k for k in known)))

    def _derive(self, entity, obj, current, validate, sent=None):
        """Fill the fields QBO computes and enforce the rules of the entity's kind.

        sent is the request body (None for a delete): some rules look at what
        the request set, not at the merged object.
        """
        if validate and self.is_transaction(entity):
            self._check_book_close(obj)
        if entity in NAME_ENTITIES:
            self._derive_name(entity, obj, current, validate)
        elif entity in UNIQUE_NAME_ENTITIES:
            self._derive_list_name(entity, obj, validate)
        if entity == "Item":
            self._derive_item(obj, current, sent or {}, validate)
        if self._has_field(entity, "Active"):
            obj.setdefault("Active", True)
        if validate and entity in REFERENCE_CHECKED:
            self._check_references(obj)
        if self._is_sales(entity):
            self._derive_sales(entity, obj, validate)
        elif entity == "JournalEntry":
            self._derive_journal(obj, validate)
        elif entity == "Payment":
            self._derive_payment(obj, validate)

    def _derive_name(self, entity, obj, current, validate):
        if not obj.get("DisplayName"):
            # QBO builds the display name from the person's name parts when it is omitted.
            parts = [obj.get(k) for k in ("Title", "GivenName", "MiddleName", "FamilyName", "Suffix")]
            obj["DisplayName"] = " ".join(p for p in parts if p) or obj.get("CompanyName", "")
        name = obj["DisplayName"]
        if validate:
            if not name:
                raise required("DisplayName")
            if any(ch in name for ch in FORBIDDEN_NAME_CHARS):
                raise Fault("2040", "Invalid String",
                            "DisplayName must not contain a colon (:), tab or newline", "DisplayName")
            for other in NAME_ENTITIES:
                for o in self.objects.get(other, {}).values():
                    if o["DisplayName"].lower() == name.lower() and not (other == entity and o["Id"] == obj["Id"]):
                        # vcr/http400_6240_duplicate_displayname.yml
                        raise Fault("6240", "Duplicate Name Exists Error", "The name supplied already exists. : null")
        was_active = current is None or current.get("Active") is not False
        if obj.get("Active") is False and was_active and not name.endswith(" (deleted)"):
            # Made inactive: QBO renames it so the name can be reused (quickbooks-ruby deleted_customer.xml).
            obj["DisplayName"] = name = name + " (deleted)"
        obj["FullyQualifiedName"] = name
        obj.setdefault("PrintOnCheckName", name)
        if entity == "Customer":
            for key, default in (("Job", False), ("BillWithParent", False), ("Balance", 0),
                                 ("BalanceWithJobs", 0), ("CurrencyRef", USD)):
                obj.setdefault(key, copy.deepcopy(default))

    def _derive_list_name(self, entity, obj, validate):
        name = obj.get("Name")
        if validate:
            if not isinstance(name, str) or not name.strip():
                raise required("Name")
            if entity == "Item":
                for key, limit in ITEM_MAX_LENGTHS:
                    value = obj.get(key)
                    if isinstance(value, str) and len(value) > limit:
                        raise too_long(key, limit, len(value))
                if any(ch in name for ch in FORBIDDEN_ITEM_NAME_CHARS):
                    # No fixture for 2040: the code as integrators report it for ':' (shared/docs §2.5).
                    raise Fault("2040", "Invalid String",
                                'Name must not contain a colon (:), tab, newline or double quote (")', "Name")
            # Unique within the type, ignoring case, inactive objects included.
            for o in self.objects.get(entity, {}).values():
                if str(o.get("Name", "")).lower() == name.lower() and o["Id"] != obj["Id"]:
                    raise Fault("6240", "Duplicate Name Exists Error", "The name supplied already exists. : null")
        if name is not None and "FullyQualifiedName" in self.schema.type_info(self.schema.entities[entity]).fields:
            obj["FullyQualifiedName"] = name

    def _derive_item(self, obj, current, sent, validate):
        """The rules of an Item write, then what QBO fills in: amounts as Decimal,
        the names of the account and parent references, FullyQualifiedName
        "Parent:Child" and Level from the ParentRef chain (no Level at the top,
        as in the fixtures)."""
        for key in ITEM_NUMBERS:
            if obj.get(key) is not None:
                obj[key] = _number(obj[key], key)
        if current is not None and sent.get("SubItem") is False and "ParentRef" not in sent:
            # "SubItem": false moves a sub-item to the top (a sparse update cannot drop ParentRef).
            obj.pop("ParentRef", None)
        if validate:
            self._check_item(obj, current, sent)
        for key in ITEM_ACCOUNT_REFS:
            account = self._ref_target("Account", obj.get(key))
            if account is not None and isinstance(obj[key], dict):
                obj[key]["name"] = account.get("Name", "")
        parent_ref = obj.get("ParentRef")
        parent = self._ref_target("Item", parent_ref)
        if parent is not None and parent["Id"] != obj["Id"]:
            parent_name = parent.get("FullyQualifiedName") or parent.get("Name", "")
            if isinstance(parent_ref, dict):
                parent_ref["name"] = parent_name
            obj["FullyQualifiedName"] = "%s:%s" % (parent_name, obj.get("Name", ""))
            obj["Level"] = parent.get("Level", 0) + 1
        elif parent_ref is None:
            obj.pop("Level", None)

    def _check_item(self, obj, current, sent):
        """Refuse an Item QBO would refuse (shared/docs/quickbooks-api.md §3 Item).

        Codes: 2020 (fixture errors/fault_2020_required_param.json) for a missing
        Type, account, QtyOnHand, InvStartDate or ParentRef; 2500 for an account
        or parent that names no stored (active) object, as for other
        references; 2010 for a Type outside ItemTypeEnum or a bad date; 500
        "Unsupported Operation" for the types the API does not write; 6000 for
        the business rules (no fixture: QBO's generic code, and for inventory
        without tracking the Detail QBO answered an integrator,
        intuit/QuickBooks-V3-DotNET-SDK#10).
        """
        item_type = obj.get("Type")
        previous = (current or {}).get("Type")
        types = self.schema.enums.get("ItemTypeEnum", ITEM_WRITABLE_TYPES)
        if item_type is None:
            # Items made in the UI without a Type (control API) may be updated as they are.
            if current is None or previous is not None:
                raise required("Type")
        elif item_type not in types:
            raise malformed("Type=%r is not one of %s" % (item_type, ", ".join(types)))
        elif item_type not in ITEM_WRITABLE_TYPES and item_type != previous:
            raise unsupported_operation("%s %s" % ("UPDATE" if current else "CREATE", item_type.upper()))
        tracked = obj.get("TrackQtyOnHand") is True
        if item_type == "Category":
            for key in CATEGORY_REFUSED + (("TrackQtyOnHand",) if tracked else ()):
                if obj.get(key) is not None:
                    raise business_validation("A Category only groups other items: it has no %s." % key, key)
        for key in ITEM_REQUIRED_ACCOUNTS.get(item_type, ()):
            if obj.get(key) in (None, "", {}):
                raise required(key)
        for key in ITEM_ACCOUNT_REFS:
            if obj.get(key) is not None:
                self._referenced("Account", obj, key, key)
        if item_type == "Inventory" and not tracked:
            raise business_validation("When you create an item, if Track quantity on hand is turned off, "
                                      "the item cannot be of type Inventory.", "TrackQtyOnHand")
        if item_type in ("NonInventory", "Service") and tracked:
            raise business_validation("Only an Inventory item tracks its quantity on hand: TrackQtyOnHand "
                                      "must be false for a %s item." % item_type, "TrackQtyOnHand")
        if item_type == "Inventory" and current is None:
            for key in ("QtyOnHand", "InvStartDate"):
                if obj.get(key) in (None, ""):
                    raise required(key)
        if sent.get("QtyOnHand") is not None and not tracked:
            raise business_validation("QtyOnHand can only be set on an item that tracks its quantity on hand "
                                      "(TrackQtyOnHand true).", "QtyOnHand")
        start = obj.get("InvStartDate")
        if start is not None:
            try:
                datetime.date.fromisoformat(str(start))
            except ValueError:
                raise malformed("InvStartDate=%r is not a date (YYYY-MM-DD)" % (start,))
        self._check_item_parent(obj, current)

    def _check_item_parent(self, obj, current):
        """ParentRef names a stored Category (SubItem true with it, and only with
        it); no cycles; at most ITEM_MAX_LEVEL levels below the top, sub-items
        of a moved category included."""
        parent_ref, sub_item = obj.get("ParentRef"), obj.get("SubItem")
        if parent_ref is None:
            if sub_item is True:
                raise required("ParentRef")
            return
        if sub_item is not True:
            raise business_validation("An item with a ParentRef is a sub-item: SubItem must be true.", "SubItem")
        parent = self._referenced("Item", obj, "ParentRef", "ParentRef")
        if parent.get("Type") != "Category":
            raise business_validation("ParentRef must name a Category; Item %s is of type %s."
                                      % (parent["Id"], parent.get("Type")), "ParentRef")
        ancestor, seen = parent, set()
        while ancestor is not None and ancestor["Id"] not in seen:
            if ancestor["Id"] == obj["Id"]:
                raise business_validation("An item cannot be placed under itself or one of its sub-items.",
                                          "ParentRef")
            seen.add(ancestor["Id"])
            ancestor = self._ref_target("Item", ancestor.get("ParentRef"))
        level = parent.get("Level", 0) + 1
        below = self._sub_item_depth(obj["Id"], set()) if current is not None else 0
        if level + below > ITEM_MAX_LEVEL:
            raise business_validation("Items nest at most %d levels (Level 0 to %d); this one would be at Level %d."
                                      % (ITEM_MAX_LEVEL + 1, ITEM_MAX_LEVEL, level + below), "ParentRef")

    def _sub_item_depth(self, item_id, seen):
        """How many levels of sub-items hang below an Item (0: none)."""
        seen.add(item_id)
        depth = 0
        for child in self.objects.get("Item", {}).values():
            ref = child.get("ParentRef")
            if (isinstance(ref, dict) and str(ref.get("value")) == item_id and child["Id"] not in seen):
                depth = max(depth, 1 + self._sub_item_depth(child["Id"], seen))
        return depth

    def _ref_target(self, entity, ref):
        """The stored object a reference names, or None."""
        value = ref.get("value") if isinstance(ref, dict) else ref
        if value in (None, "") or isinstance(value, (dict, list)):
            return None
        return self.objects.get(entity, {}).get(str(value))

    def _derive_sales(self, entity, obj, validate):
        """Line ids, the amount rule, the subtotal line, TotalAmt, Balance and DocNumber."""
        lines = [l for l in obj.get("Line", []) if l.get("DetailType") != "SubTotalLineDetail"]
        used_ids = {str(l["Id"]) for l in lines if l.get("Id")}
        next_line_id, subtotal = 1, D(0)
        for number, line in enumerate(lines, 1):
            if not line.get("Id"):
                while str(next_line_id) in used_ids:
                    next_line_id += 1
                line["Id"] = str(next_line_id)
                used_ids.add(line["Id"])
            line["LineNum"] = number
            if line.get("DetailType") == "DescriptionOnly":
                continue  # a comment line: its amount, if any, does not count
            if validate and "Amount" not in line:
                raise required("Line.Amount")
            # Amounts may arrive as JSON numbers or decimal strings; QBO answers numbers.
            line["Amount"] = amount = _number(line.get("Amount", 0), "Amount")
            detail = line.get("SalesItemLineDetail")
            if isinstance(detail, dict):
                # TaxInclusiveAmt (the gross of a tax-inclusive line) is kept as sent: no total uses it.
                detail.update({k: _number(detail[k], k) for k in ("Qty", "UnitPrice", "TaxInclusiveAmt")
                               if k in detail})
            if validate and detail and "Qty" in detail and "UnitPrice" in detail:
                expected = (_number(detail["Qty"], "Qty") * _number(detail["UnitPrice"], "UnitPrice")).quantize(
                    CENT, decimal.ROUND_HALF_UP)
                if amount != expected:
                    # Integrators report code 6070 with this text; element names the offending line.
                    raise Fault("6070", "Business Validation Error",
                                "Amount is not equal to UnitPrice * Qty. Supplied value:%s"
                                % format(amount.normalize(), ",f"), "Line[%d].Amount" % number)
            subtotal += -amount if line.get("DetailType") == "DiscountLineDetail" else amount
        vat = self.vat_company()
        if validate and vat:
            self._check_vat_lines(lines)
        lines.append({"Amount": subtotal, "DetailType": "SubTotalLineDetail", "SubTotalLineDetail": {}})
        obj["Line"] = lines
        # Line amounts are tax-exclusive whatever GlobalTaxCalculation says (so QBO
        # answers for non-US companies): the tax comes on top.
        obj["TotalAmt"] = subtotal + self._derive_tax(obj, validate, lines if vat else None)
        if entity in OPEN_BALANCE:
            obj["Balance"] = self._open_balance(entity, obj)  # less what payments applied already
        elif entity in PAID_ON_ISSUE:
            obj["Balance"] = 0
        obj.setdefault("TxnDate", now().date().isoformat())
        obj.setdefault("CurrencyRef", copy.deepcopy(USD))
        self._derive_doc_number(entity, obj, validate)

    def _derive_journal(self, obj, validate):
        """A JournalEntry: every line a JournalEntryLineDetail with PostingType and an
        AccountRef naming a stored account; a TaxCodeRef (non-US) names a stored TaxCode and
        comes with TaxApplicableOn and TaxAmount, which the VAT control account takes on the
        line's side (Intuit's JournalEntryLineDetail).  Debits and credits, each with its tax,
        must be equal (6000; the wording of QBO's form, no fixture), and tax lines given in
        TxnTaxDetail must add up to the lines' sales tax.  TotalAmt is the debit side."""
        side = {"Debit": D(0), "Credit": D(0)}
        line_tax = D(0)
        for number, line in enumerate(obj.get("Line") or [], 1):
            where = "Line[%d].JournalEntryLineDetail." % number
            if validate and "Amount" not in line:
                raise required("Line.Amount")
            line["Amount"] = amount = _number(line.get("Amount", 0), "Amount")
            detail = line.get("JournalEntryLineDetail")
            if not isinstance(detail, dict):
                if validate:
                    raise required("Line.JournalEntryLineDetail")
                continue
            posting = detail.get("PostingType")
            if validate and posting not in side:
                raise required(where + "PostingType")
            if validate:
                if detail.get("AccountRef") in (None, "", {}):
                    raise required(where + "AccountRef")
                self._referenced("Account", detail, "AccountRef", where + "AccountRef")
            tax = D(0)
            if detail.get("TaxCodeRef") is not None:
                if validate:
                    self._referenced("TaxCode", detail, "TaxCodeRef", where + "TaxCodeRef")
                    for key in ("TaxApplicableOn", "TaxAmount"):
                        if detail.get(key) in (None, ""):
                            raise required(where + key)
                detail["TaxAmount"] = tax = _number(detail.get("TaxAmount", 0), "TaxAmount")
                if detail.get("TaxApplicableOn") == "Sales":
                    line_tax += tax if posting == "Credit" else -tax
            if posting in side:
                side[posting] += amount + tax
        if validate and side["Debit"] != side["Credit"]:
            raise business_validation("Debits and credits must be equal: debits %s, credits %s."
                                      % (_money(side["Debit"]), _money(side["Credit"])), "Line")
        detail = obj.get("TxnTaxDetail")
        if isinstance(detail, dict) and detail.get("TaxLine"):
            total = self._derive_tax(obj, validate, vat_lines=[] if self.vat_company() else None)
            if validate and total != line_tax:
                raise business_validation("TotalTax %s is not the sales tax of the lines (%s)."
                                          % (_money(total), _money(line_tax)), "TxnTaxDetail.TotalTax")
        obj["TotalAmt"] = side["Debit"]
        obj.setdefault("TxnDate", now().date().isoformat())
        obj.setdefault("CurrencyRef", copy.deepcopy(USD))

    def book_close_date(self):
        """Preferences.AccountingInfoPrefs.BookCloseDate (Intuit's schema), or None."""
        prefs = next(iter(self.objects.get("Preferences", {}).values()), {})
        text = (prefs.get("AccountingInfoPrefs") or {}).get("BookCloseDate")
        try:
            return datetime.date.fromisoformat(str(text)) if text else None
        except ValueError:
            return None

    def _check_book_close(self, obj):
        """A transaction dated on or before the closing date is refused.  Code, message and
        detail as an integrator reports them (routablehq/python-quickbooks#208): 5010
        "Account Period Closed", "The account period has closed."."""
        closed = self.book_close_date()
        try:
            when = datetime.date.fromisoformat(str(obj.get("TxnDate") or now().date().isoformat()))
        except ValueError:
            return  # a bad date is refused elsewhere
        if closed is not None and when <= closed:
            raise Fault("5010", "Account Period Closed",
                        "The account period has closed. TxnDate %s is on or before the closing date %s."
                        % (when.isoformat(), closed.isoformat()), "TxnDate")

    def vat_company(self):
        """A company outside the US (CompanyInfo.Country) works VAT out per line."""
        info = next(iter(self.objects.get("CompanyInfo", {}).values()), {})
        return info.get("Country", "US") != "US"

    def _check_vat_lines(self, lines):
        """A VAT company refuses an item line without a TaxCodeRef (6000, quickbooks-api.md)."""
        items = [l for l in lines if l.get("DetailType") not in ("DescriptionOnly", "SubTotalLineDetail")]
        for number, line in enumerate(items, 1):
            detail = line.get("SalesItemLineDetail")
            code = detail.get("TaxCodeRef") if isinstance(detail, dict) else None
            if not (isinstance(code, dict) and code.get("value") not in (None, "")):
                raise Fault("6000", "A business validation error has occurred while processing your request",
                            "Make sure all your transactions have a VAT rate before you save.",
                            "Line[%d].SalesItemLineDetail.TaxCodeRef" % number)

    def _derive_tax(self, obj, validate, vat_lines=None):
        """TxnTaxDetail.TotalTax as Decimal; it must be the sum of the TaxLine amounts given.

        Without TotalTax it is that sum (0 without tax lines).  In a VAT company
        (vat_lines: the document's lines) tax lines the caller gives are kept,
        each TaxRateRef naming a stored TaxRate; without them the tax is worked
        out per line from its TaxCode's sales rates (half up to the cent per
        line, then summed per rate) and a TotalTax sent is replaced, as QBO does.
        """
        detail = obj.setdefault("TxnTaxDetail", {})
        if not isinstance(detail, dict):
            raise malformed("TxnTaxDetail=%r is not an object" % (detail,))
        tax_lines = [t for t in detail.get("TaxLine") or [] if isinstance(t, dict) and "Amount" in t]
        for tax_line in tax_lines:
            tax_line["Amount"] = _number(tax_line["Amount"], "TaxLine.Amount")
            line_detail = tax_line.get("TaxLineDetail")
            if isinstance(line_detail, dict) and "NetAmountTaxable" in line_detail:
                line_detail["NetAmountTaxable"] = _number(line_detail["NetAmountTaxable"], "NetAmountTaxable")
            if validate and vat_lines is not None:
                self._referenced("TaxRate", line_detail if isinstance(line_detail, dict) else {},
                                 "TaxRateRef", "TxnTaxDetail.TaxLine.TaxLineDetail.TaxRateRef")
        if validate and vat_lines is not None and not tax_lines:
            detail.pop("TotalTax", None)
            detail["TaxLine"] = tax_lines = self._tax_lines_of(vat_lines)
        line_sum = sum((t["Amount"] for t in tax_lines), D(0))
        detail["TotalTax"] = total = _number(detail.get("TotalTax", line_sum), "TotalTax")
        if validate and tax_lines and total != line_sum:
            raise business_validation("TotalTax %s is not the sum of the TaxLine amounts (%s)."
                                      % (_money(total), _money(line_sum)), "TxnTaxDetail.TotalTax")
        return total

    def _tax_lines_of(self, lines):
        """QBO's own VAT of the lines: per line and sales rate of its TaxCode, rounded half up."""
        per_rate = {}
        for line in lines:
            detail = line.get("SalesItemLineDetail")
            if not isinstance(detail, dict):
                continue
            code = self._ref_target("TaxCode", detail.get("TaxCodeRef")) or {}
            for rate_detail in (code.get("SalesTaxRateList") or {}).get("TaxRateDetail") or []:
                rate = self._ref_target("TaxRate", rate_detail.get("TaxRateRef")) or {}
                percent = _number(rate.get("RateValue", 0), "RateValue")
                entry = per_rate.setdefault(rate.get("Id"), [D(0), D(0), percent])
                entry[0] += line["Amount"]
                entry[1] += (line["Amount"] * percent / 100).quantize(CENT, decimal.ROUND_HALF_UP)
        return [{"Amount": tax, "DetailType": "TaxLineDetail",
                 "TaxLineDetail": {"TaxRateRef": {"value": rate_id}, "PercentBased": True, "TaxPercent": percent,
                                   "NetAmountTaxable": net}}
                for rate_id, (net, tax, percent) in sorted(per_rate.items(), key=lambda kv: int(kv[0]))]

    def _check_references(self, obj):
        """Refuse a CustomerRef, ItemRef or TaxCodeRef naming no stored object, or a deleted one.

        Lines are numbered as for 6070 (the subtotal line does not count).
        Payment lines' LinkedTxn are checked in _derive_payment.
        """
        self._referenced("Customer", obj, "CustomerRef", "CustomerRef")
        lines = [l for l in obj.get("Line") or [] if isinstance(l, dict)
                 and l.get("DetailType") != "SubTotalLineDetail"]
        for number, line in enumerate(lines, 1):
            detail = line.get("SalesItemLineDetail")
            if not isinstance(detail, dict):
                continue
            where = "Line[%d].SalesItemLineDetail." % number
            self._referenced("Item", detail, "ItemRef", where + "ItemRef")
            tax_code = detail.get("TaxCodeRef")
            if not (isinstance(tax_code, dict) and tax_code.get("value") in US_TAX_CODES):
                self._referenced("TaxCode", detail, "TaxCodeRef", where + "TaxCodeRef")

    def _referenced(self, entity, holder, key, element):
        """The stored object holder[key] names (None without the key); raises 2500."""
        if key not in holder:
            return None
        ref = holder[key]
        value = ref.get("value") if isinstance(ref, dict) else ref
        target = self.objects.get(entity, {}).get(str(value)) if value not in (None, "") else None
        if target is None:
            raise invalid_reference(element)
        if target.get("Active") is False:
            # Wording as an integrator quotes it for a deleted customer (no fixture).
            name = str(target.get("DisplayName") or target.get("Name") or target["Id"])
            if not name.endswith(" (deleted)"):
                name += " (deleted)"
            raise invalid_reference(element, "%s assigned to this transaction has been deleted. Before you can "
                                             "modify this transaction, you must restore %s." % (entity, name))
        return target

    # -- payments --

    def _derive_payment(self, obj, validate):
        """TotalAmt, the amounts applied to linked invoices and credit memos, UnappliedAmt.

        A line's Amount applies to each Invoice or CreditMemo in its LinkedTxn
        (QBO's payment lines link one each).  The balances of those are
        recomputed from all stored payments once this one is stored
        (_payment_written), so an update, void or delete gives back what the
        old version applied.  Other TxnTypes are kept and change nothing.
        """
        if validate and obj.get("TotalAmt") in (None, ""):
            raise required("TotalAmt")
        obj["TotalAmt"] = total = _number(obj.get("TotalAmt", 0), "TotalAmt")
        applied, first_line, net = {}, {}, D(0)   # (type, Id) -> amount / line number
        for number, line in enumerate(obj.get("Line") or [], 1):
            if not isinstance(line, dict):
                continue
            if validate and "Amount" not in line:
                raise required("Line.Amount")
            line["Amount"] = amount = _number(line.get("Amount", 0), "Amount")
            for link_number, link in enumerate(line.get("LinkedTxn") or [], 1):
                if not isinstance(link, dict) or link.get("TxnType") not in PAYMENT_LINKABLE:
                    continue
                key = (link["TxnType"], str(link.get("TxnId", "")))
                if validate and key[1] not in self.objects.get(key[0], {}):
                    raise invalid_reference("Line[%d].LinkedTxn[%d].TxnId" % (number, link_number))
                applied[key] = applied.get(key, D(0)) + amount
                first_line.setdefault(key, number)
                net += PAYMENT_LINKABLE[key[0]] * amount
        if validate:
            for key, amount in applied.items():
                open_balance = self._open_balance(key[0], self.objects[key[0]][key[1]], skip_payment=obj["Id"])
                if amount > open_balance:
                    # No fixture for this rule: QBO's generic business rule code.
                    raise business_validation("The amount applied to %s %s (%s) is more than its open balance (%s)."
                                              % (key[0], key[1], _money(amount), _money(open_balance)),
                                              "Line[%d].Amount" % first_line[key])
            if net > total:
                raise business_validation("TotalAmt %s is less than the amount applied to transactions (%s)."
                                          % (_money(total), _money(net)), "TotalAmt")
        obj["UnappliedAmt"] = max(D(0), total - net)
        obj.setdefault("TxnDate", now().date().isoformat())
        obj.setdefault("CurrencyRef", copy.deepcopy(USD))

    @staticmethod
    def _payment_links(payment):
        """(TxnType, TxnId, line Amount) of every invoice or credit memo a payment version links."""
        for line in (payment or {}).get("Line") or []:
            if not isinstance(line, dict):
                continue
            for link in line.get("LinkedTxn") or []:
                if isinstance(link, dict) and link.get("TxnType") in PAYMENT_LINKABLE:
                    yield link["TxnType"], str(link.get("TxnId", "")), line.get("Amount", 0)

    def _open_balance(self, entity, txn, skip_payment=None):
        """TotalAmt of an invoice or credit memo less what stored payments apply to it, never below 0."""
        applied = D(0)
        for payment in self.objects.get("Payment", {}).values():
            if payment["Id"] != skip_payment:
                applied += sum((_number(amount, "Amount") for txn_type, txn_id, amount in self._payment_links(payment)
                                if (txn_type, txn_id) == (entity, txn["Id"])), D(0))
        return max(D(0), _number(txn.get("TotalAmt", 0), "TotalAmt") - applied)

    def _payment_written(self, entity, old, new):
        """After a payment is stored, voided or deleted: the balances of what either version links."""
        if entity != "Payment":
            return
        touched = {(t, i) for version in (old, new) for t, i, _ in self._payment_links(version)}
        for txn_type, txn_id in touched:
            txn = self.objects.get(txn_type, {}).get(txn_id)
            if txn is not None:
                txn["Balance"] = self._open_balance(txn_type, txn)

    # -- quantities on hand --

    def _stock_effect(self, entity, txn):
        """{Item Id: signed Qty} a sales document moves: a sale lowers the quantity on hand
        of each tracked Inventory item, a refund or credit memo raises it."""
        sign, effect = STOCK_SIGN[entity], {}
        for line in (txn or {}).get("Line") or []:
            detail = line.get("SalesItemLineDetail") if isinstance(line, dict) else None
            item = self._ref_target("Item", detail.get("ItemRef")) if isinstance(detail, dict) else None
            if item is not None and item.get("TrackQtyOnHand") is True:
                effect[item["Id"]] = effect.get(item["Id"], D(0)) + sign * _number(detail.get("Qty", 0), "Qty")
        return effect

    def _stock_written(self, entity, old, new):
        """After a sales document is stored, voided or deleted: its items' QtyOnHand move by the
        difference, as QBO keeps the quantity a balance of the item's transactions (the Item's
        SyncToken is not bumped)."""
        if entity not in STOCK_SIGN:
            return
        before, after = self._stock_effect(entity, old), self._stock_effect(entity, new)
        for item_id in set(before) | set(after):
            item = self.objects["Item"][item_id]
            item["QtyOnHand"] = _number(item.get("QtyOnHand", 0), "QtyOnHand") + after.get(item_id, D(0)) \
                - before.get(item_id, D(0))

    def _derive_doc_number(self, entity, obj, validate):
        others = [o for o in self.objects.get(entity, {}).values() if o["Id"] != obj["Id"]]
        taken = {str(o.get("DocNumber")) for o in others}
        if obj.get("DocNumber") in (None, "", "AUTO_GENERATE"):
            # Automatic numbering continues after the highest number in use.
            numbers = [int(n) for n in taken if n.isdigit()]
            obj["DocNumber"] = str(max(numbers, default=1000) + 1)
        elif validate and entity in DOC_NUMBER_UNIQUE and str(obj["DocNumber"]) in taken:
            holder = next(o for o in others if str(o.get("DocNumber")) == str(obj["DocNumber"]))
            raise Fault("6140", "Duplicate Document Number Error",
                        "Duplicate Document Number Error : You must specify a different number. This number has "
                        "already been used. DocNumber=%s is assigned to TxnType=%s with TxnId=%s"
                        % (obj["DocNumber"], entity, holder["Id"]))

    # -- idempotency --

    def remembered(self, request_id):
        """The first answer to a write with this requestid, or None."""
        return self.responses.get(request_id)

    def remember(self, request_id, status, body):
        self.responses[request_id] = (status, body)
