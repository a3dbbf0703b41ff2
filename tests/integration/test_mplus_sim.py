"""test_mplus_sim - self-test of the MplusKASSA SOAP simulator (tests/sim/mplus_sim.py).

Starts the simulator as a subprocess and checks through HTTP what the
gateway's tests rely on: requests built by hand with lxml (each validated
against tests/fixtures/mplus/mplusqapi.xsd before it is sent) get answers
that validate against the same schema; wrong credentials and invalid bodies
get SOAP Faults that name the problem; sync-marker paging across more
changes than one page has no gap and no duplicate; bulk variants carry
colour and size; a price change moves only its article; article groups
report parents, renames and deletions; stock ids move per branch, also on a
till sale; a till sale posts a correctly signed callback to a local listener
and the reply signature is checked; an order picked up at the till or
invoiced is linked to its receipt or invoice (orderIds/invoiceIds), and
getReceiptsByOrder finds the receipt of a picked-up order; every
injected fault kind behaves as documented.

    /usr/bin/python3 tests/integration/test_mplus_sim.py [GATEWAY_BINARY] [unittest args]

The gateway binary argument (passed by ctest to every integration test) is
not used.  Needs Debian's python3-lxml.
"""

import base64
import datetime
import hashlib
import hmac
import http.client
import http.server
import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
import unittest

from lxml import etree
from lxml.builder import ElementMaker

HERE = os.path.dirname(os.path.abspath(__file__))
SIM_DIR = os.path.normpath(os.path.join(HERE, "..", "sim"))
SIM = os.path.join(SIM_DIR, "mplus_sim.py")
FIXTURES = os.path.normpath(os.path.join(HERE, "..", "fixtures", "mplus"))
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

HOST = "127.0.0.1"
IDENT, SECRET = "sim-ident", "s3cr3t&=?"
WEBHOOK_SECRET = "whsec-Mplus-0123456789"
SUBSCRIPTION = "sub-42"
URN = "urn:mplusqapi"
SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
N = ElementMaker(namespace=URN, nsmap={"ns1": URN})
SCHEMA = etree.XMLSchema(etree.parse(os.path.join(FIXTURES, "mplusqapi.xsd")))


def q(name):
    return "{%s}%s" % (URN, name)


def sign(key, body):
    if isinstance(key, str):
        key = key.encode()
    return base64.b64encode(hmac.new(key, body, hashlib.sha256).digest()).decode()


def text(el, path):
    """Text of a descendant given as 'a/b/c' in urn:mplusqapi, or None."""
    found = el.find("/".join("{%s}%s" % (URN, p) for p in path.split("/")))
    return None if found is None else found.text


def num(el, path):
    value = text(el, path)
    return None if value is None else int(value)


def ids(el, name):
    """The ids of an IdList child (orderIds, invoiceIds): [] when it is absent."""
    return [i.text for i in el.findall("%s/%s" % (q(name), q("id")))]


class Listener:
    """The gateway's Mplus callback endpoint: records requests, answers as told."""

    def __init__(self):
        self.received = queue.Queue()
        self.mode = "good"
        listener = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                listener.received.put((self.path, dict(self.headers), body))
                reply = b'{"ok":true}'
                status, signature = 200, sign(WEBHOOK_SECRET, reply)
                if listener.mode == "bad_signature":
                    signature = sign("wrong", reply)
                elif listener.mode == "error":
                    reply = b'{"error":{"code":"INVALID_DATA","message":"nope"}}'
                    status, signature = 400, sign(WEBHOOK_SECRET, reply)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("X-Mplus-Signature", signature)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer((HOST, 0), Handler)
        self.server.daemon_threads = True
        self.url = "http://%s:%d/webhooks/mplus/shop1" % (HOST, self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def next(self, timeout=5):
        return self.received.get(timeout=timeout)

    def drain(self):
        while not self.received.empty():
            self.received.get_nowait()
        self.mode = "good"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def envelope(op_el):
    env = etree.Element("{%s}Envelope" % SOAP, nsmap={"SOAP-ENV": SOAP, "ns1": URN})
    etree.SubElement(env, "{%s}Header" % SOAP)
    etree.SubElement(env, "{%s}Body" % SOAP).append(op_el)
    return etree.tostring(env, xml_declaration=True, encoding="UTF-8")


def paging(sync_marker=None, limit=None):
    out = []
    if sync_marker is not None:
        out.append(N.syncMarker(str(sync_marker)))
    if limit is not None:
        out.append(N.syncMarkerLimit(str(limit)))
    return out


# Hand-built requests of every modelled operation (element order as in the schema).
def req_get_products(marker=None, limit=None, *extra):
    return N.getProducts(N.request(N.pluNumbers(), *paging(marker, limit), *extra))


def req_documents(op, marker=None, limit=None, *extra):
    return getattr(N, op)(N.request(*paging(marker, limit), N.articlePluNumbers(), N.articleBarcodes(), *extra))


def req_get_stock(branch=1, articles=(), stock_id=None):
    parts = [N.branchNumber(str(branch)), N.articleNumbers(*[N.articleNumbers(str(a)) for a in articles])]
    if stock_id is not None:
        parts.append(N.stockId(str(stock_id)))
    return N.getStock(N.request(*parts))


def req_get_journals(first, last, branches=(), filters=()):
    def date(el, d):
        return el(N.day(str(d.day)), N.mon(str(d.month)), N.year(str(d.year)))
    parts = [date(N.fromFinancialDate, first), date(N.throughFinancialDate, last)]
    parts += [N.branchNumbers(str(b)) for b in branches]
    if filters:
        parts.append(N.journalFilterList(*[N.journalFilter(f) for f in filters]))
    return N.getJournals(N.request(*parts))


def req_get_financial_journal(first, last):
    def date(el, d):
        return el(N.day(str(d.day)), N.mon(str(d.month)), N.year(str(d.year)))
    return N.getFinancialJournal(N.request(date(N.fromFinancialDate, first), date(N.throughFinancialDate, last)))


ALL_REQUESTS = {
    "getApiVersion": lambda: N.getApiVersion(),
    "getCurrentSyncMarkers": lambda: N.getCurrentSyncMarkers(),
    "getCurrentSyncMarkersV2": lambda: N.getCurrentSyncMarkersV2(N.request(N.includeStockId("true"))),
    "getBranches": lambda: N.getBranches(),
    "getVatGroupList": lambda: N.getVatGroupList(),
    "getTurnoverGroups": lambda: N.getTurnoverGroups(N.request(N.onlyActive("true"))),
    "getPaymentMethods": lambda: N.getPaymentMethods(),
    "getPaymentMethodsV2": lambda: N.getPaymentMethodsV2(N.request(N.paymentMethodTypes("PAYMENT-METHOD-TYPE-EFT"))),
    "getEmployees": lambda: N.getEmployees(N.request(*paging(1, 10))),
    "getReceipts": lambda: req_documents("getReceipts", 1, 100),
    "getInvoices": lambda: req_documents("getInvoices", 1, 100),
    "getOrders": lambda: req_documents("getOrders", 1, 100),
    "getReceiptsByOrder": lambda: N.getReceiptsByOrder(N.orderId("no-such-order")),
    "getProducts": lambda: req_get_products(1, 100),
    "getArticleGroupChanges": lambda: N.getArticleGroupChanges(N.request(*paging(1, 100))),
    "getRelations": lambda: N.getRelations(N.request(*paging(1, 100))),
    "findRelation": lambda: N.findRelation(N.relation(N.email("PIET.devries"))),
    "createRelation": lambda: N.createRelation(N.relation(
        N.extRelationId("qbo-77"), N.name("Kees Smit"), N.address("Dorpsstraat 1"), N.zipcode("1234 AB"),
        N.city("Ede"), N.country("Nederland"), N.email("kees@example.nl"))),
    "updateRelation": lambda: N.updateRelation(N.relation(N.relationNumber("10002"), N.city("Haarlem"))),
    "getStock": lambda: req_get_stock(1, (2001, 2002, 3001)),
    "getJournals": lambda: req_get_journals(datetime.date(2026, 1, 1), datetime.date(2026, 12, 31), (1,),
                                            ("JOURNAL-FILTER-RECEIPT",)),
    "getFinancialJournal": lambda: req_get_financial_journal(datetime.date(2026, 1, 1), datetime.date(2026, 1, 1)),
    "setStock": lambda: N.setStock(N.request(N.branchNumber("1"), N.articleNumber("3001"), N.amount("7250"),
                                             N.decimalPlaces("3"))),
    "updateStock": lambda: N.updateStock(N.request(N.branchNumber("1"), N.articleNumber("2001"),
                                                   N.amountChanged("-2"), N.reference("test"))),
    "createProduct": lambda: N.createProduct(N.product(
        N.description("Thee"), N.articleList(N.article(
            N.extArticleId("QBO-ITEM-9"), N.pluNumber("TEA1"), N.description("Thee"), N.turnoverGroup("1"),
            N.vatCode("1"), N.priceIncl("230"), N.stockArticle("false"))), N.groupNumbers("11"))),
    "updateProduct": lambda: N.updateProduct(N.product(N.productNumber("1"), N.articleList(N.article(
        N.articleNumber("1001"), N.description("Koffie zwart"), N.priceIncl("260"))))),
}


class MplusSimTest(unittest.TestCase):
    """One simulator for the whole run; every test starts from POST /_sim/reset."""

    @classmethod
    def setUpClass(cls):
        cls.listener = Listener()
        cls.proc = subprocess.Popen(
            [PYTHON, SIM, "--port", "0", "--ident", IDENT, "--secret", SECRET, "--webhook-url", cls.listener.url,
             "--webhook-secret", WEBHOOK_SECRET, "--subscription-id", SUBSCRIPTION],
            stdout=subprocess.PIPE, text=True)
        line = cls.proc.stdout.readline()
        if not line.startswith("READY "):
            cls.proc.kill()
            raise RuntimeError("simulator did not start: %r" % line)
        cls.port = int(line.split()[1])

    @classmethod
    def tearDownClass(cls):
        cls.proc.terminate()
        try:
            cls.proc.wait(10)
        finally:
            if cls.proc.poll() is None:
                cls.proc.kill()
            cls.proc.stdout.close()
            cls.listener.close()

    def setUp(self):
        self.control("POST", "/_sim/reset")
        self.listener.drain()

    # -- helpers --

    def http(self, method, path, body=None, headers=None, timeout=5):
        conn = http.client.HTTPConnection(HOST, self.port, timeout=timeout)
        try:
            if isinstance(body, (dict, list)):
                body = json.dumps(body)
                headers = dict({"Content-Type": "application/json"}, **(headers or {}))
            conn.request(method, path, body, headers or {})
            response = conn.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            conn.close()

    def control(self, method, path, body=None, status=200, timeout=5):
        got, _, data = self.http(method, path, body if body is not None else ({} if method == "POST" else None),
                                 timeout=timeout)
        self.assertEqual(got, status, data)
        return json.loads(data)

    def post_soap(self, body, ident=IDENT, secret=SECRET, timeout=5):
        from urllib.parse import urlencode
        query = urlencode({k: v for k, v in (("ident", ident), ("secret", secret)) if v is not None})
        return self.http("POST", "/?" + query, body, {"Content-Type": "text/xml; charset=utf-8",
                                                      "SOAPAction": "op", "X-Request-Id": "t-1"}, timeout=timeout)

    def soap(self, op_el, expect_status=200, **kw):
        """Validates the request, sends it, validates the answer; returns the response element
        (or the Fault element when expect_status is 500)."""
        self.assertTrue(SCHEMA.validate(op_el), "test built an invalid request: %s" % SCHEMA.error_log)
        status, headers, data = self.post_soap(envelope(op_el), **kw)
        self.assertEqual(status, expect_status, data[:2000])
        self.assertTrue(headers["content-type"].startswith("text/xml"), headers)
        doc = etree.fromstring(data, etree.XMLParser(huge_tree=True))
        self.assertEqual(doc.tag, "{%s}Envelope" % SOAP)
        child = doc.find("{%s}Body" % SOAP)[0]
        if status == 200:
            self.assertEqual(child.tag, q(self.expected_response(op_el)))
            self.assertTrue(SCHEMA.validate(child), "invalid response: %s\n%s" % (SCHEMA.error_log, data[:3000]))
        else:
            self.assertEqual(child.tag, "{%s}Fault" % SOAP)
        return child

    @staticmethod
    def expected_response(op_el):
        return SIM_OPERATIONS[etree.QName(op_el).localname][1]

    def fault(self, data):
        doc = etree.fromstring(data)
        fault = doc.find("{%s}Body/{%s}Fault" % (SOAP, SOAP))
        self.assertIsNotNone(fault, data)
        return fault.findtext("faultcode"), fault.findtext("faultstring")

    def markers(self):
        return self.control("GET", "/_sim/markers")

    def poll(self, make_request, list_path, start, limit):
        """Pages from start until a short page; returns the markers of every item, in order."""
        seen, marker, pages = [], start, 0
        while True:
            resp = self.soap(make_request(marker, limit))
            items = resp.findall("/".join(q(p) for p in list_path.split("/")))
            page = [num(item, "syncMarker") for item in items]
            self.assertLessEqual(len(page), limit)
            seen.extend(page)
            pages += 1
            if len(page) < limit:
                return seen, pages
            marker = max(page) + 1

    def sale(self, spec, status=200):
        return self.control("POST", "/_sim/till/sale", spec, status)

    # -- tests --

    def test_every_operation_answers_schema_valid_xml(self):
        # The simulator checks its own answers too (a bad one would become a Server fault).
        self.assertTrue(self.control("POST", "/_sim/config", {"validate_responses": True})["validate_responses"])
        for op, make in ALL_REQUESTS.items():
            with self.subTest(op=op):
                resp = self.soap(make())
                if op == "createRelation":
                    self.assertEqual(text(resp, "result"), "CREATE-RELATION-RESULT-OK")
                    self.assertGreater(num(resp, "syncMarker"), 0)
                if op == "createProduct":
                    self.assertEqual(text(resp, "result"), "CREATE-PRODUCT-RESULT-OK")
                if op in ("setStock", "updateStock", "updateProduct", "updateRelation"):
                    self.assertTrue(text(resp, "result").endswith("-OK"), etree.tostring(resp))
                if op == "getReceiptsByOrder":   # receiptList is required, also when empty
                    self.assertEqual((text(resp, "result"), len(resp.find(q("receiptList")))),
                                     ("GET-RECEIPTS-BY-ORDER-RESULT-NOT-FOUND", 0))
                if op == "findRelation":
                    self.assertEqual(num(resp, "relation/relationNumber"), 10002)
                if op == "getApiVersion":
                    self.assertEqual((num(resp, "majorNumber"), num(resp, "minorNumber")), (67, 1))
        log = self.control("GET", "/_sim/requests")
        self.assertEqual(len(log), len(ALL_REQUESTS))
        for entry in log:
            self.assertEqual((entry["auth"], entry["validated"], entry["status"]), ("ok", "ok", 200), entry)
            self.assertNotIn("secret", entry["query"])
            self.assertEqual(entry["request_id"], "t-1")

    def test_wsdl_and_get_probe(self):
        status, _, data = self.http("GET", "/?wsdl")
        self.assertEqual(status, 200)
        with open(os.path.join(FIXTURES, "mplusqapi.wsdl"), "rb") as f:
            self.assertEqual(data, f.read())
        self.assertEqual(self.http("GET", "/")[0], 405)

    def test_wrong_credentials_get_the_authentication_fault(self):
        body = envelope(N.getApiVersion())
        for ident, secret in ((IDENT, "wrong"), ("other", SECRET), (IDENT, None), (None, None)):
            status, _, data = self.post_soap(body, ident=ident, secret=secret)
            self.assertEqual(status, 500)
            code, string = self.fault(data)
            self.assertEqual(code, "SOAP-ENV:Client.Authentication")
            self.assertIn("Authentication", string)
        # Changed credentials take effect at once.
        self.control("POST", "/_sim/config", {"secret": "rotated"})
        self.assertEqual(self.post_soap(body)[0], 500)
        self.assertEqual(self.post_soap(body, secret="rotated")[0], 200)
        log = self.control("GET", "/_sim/requests")
        self.assertEqual([e["auth"] for e in log], ["failed"] * 5 + ["ok"])
        self.assertEqual({e["validated"] for e in log}, {"ok"})   # bodies are checked all the same
        self.assertTrue(all("secret" not in e["query"] for e in log))

    def test_invalid_bodies_get_a_fault_naming_the_problem(self):
        # pluNumbers is required in GetProductsRequest.
        bad = N.getProducts(N.request(N.syncMarker("1")))
        self.assertFalse(SCHEMA.validate(bad))
        status, _, data = self.post_soap(envelope(bad))
        self.assertEqual(status, 500)
        code, string = self.fault(data)
        self.assertEqual(code, "SOAP-ENV:Client")
        self.assertRegex(string, r"line \d+: Element '\{urn:mplusqapi\}syncMarker': This element is not expected")
        self.assertIn("pluNumbers", string)
        # A value of the wrong type.
        status, _, data = self.post_soap(envelope(N.getProducts(N.request(N.pluNumbers(), N.syncMarker("abc")))))
        self.assertIn("'abc' is not a valid value of the atomic type 'xs:long'", self.fault(data)[1])
        # Unqualified children (elementFormDefault="qualified").
        raw = envelope(N.getRelations(etree.Element("request")))
        self.assertIn("Element 'request': This element is not expected", self.fault(self.post_soap(raw)[2])[1])
        # Not XML, an unknown operation, a SOAP 1.2 envelope, an empty Body.
        code, string = self.fault(self.post_soap(b"<SOAP-ENV:Envelope")[2])
        self.assertEqual(code, "SOAP-ENV:Client")
        self.assertIn("XML parse error: line 1", string)
        code, string = self.fault(self.post_soap(envelope(N.getNoSuchThing()))[2])
        self.assertIn("No matching global declaration", string)
        soap12 = b'<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Body/></e:Envelope>'
        self.assertEqual(self.fault(self.post_soap(soap12)[2])[0], "SOAP-ENV:VersionMismatch")
        empty = b'<e:Envelope xmlns:e="%s"><e:Body/></e:Envelope>' % SOAP.encode()
        self.assertIn("exactly one element", self.fault(self.post_soap(empty)[2])[1])
        # A schema-valid operation the simulator does not model.
        code, string = self.fault(self.post_soap(envelope(N.getRelation(N.relationNumber("10001"))))[2])
        self.assertIn("not implemented", string)
        log = self.control("GET", "/_sim/requests")
        self.assertEqual([e["validated"] for e in log], ["failed"] * 7 + ["ok"])
        self.assertTrue(log[0]["validation_errors"][0].startswith("line "))
        self.assertEqual(self.markers()["articleSyncMarker"], 7)   # nothing changed

    def test_product_paging_has_no_gap_and_no_duplicate(self):
        seeded = self.control("POST", "/_sim/seed", {"articles": 2500, "articles_per_product": 3})
        self.assertEqual(seeded["last_sync_marker"] - seeded["first_sync_marker"], 2499)
        # Changes after the bulk: an ordinary product and a bulk product changed again.
        self.soap(ALL_REQUESTS["createProduct"]())
        bulk_product = seeded["first_product_number"] + 10
        resp = self.soap(N.updateProduct(N.product(N.productNumber(str(bulk_product)), N.description("Opnieuw"))))
        self.assertEqual(text(resp, "result"), "UPDATE-PRODUCT-RESULT-OK")
        head = self.markers()["articleSyncMarker"]
        # Ordinary products (1-5, the new one, the materialized bulk one) come first.
        products = self.control("GET", "/_sim/entities?kind=product&offset=7&limit=2")
        self.assertEqual([p["productNumber"] for p in products], [seeded["first_product_number"],
                                                                  seeded["first_product_number"] + 1])
        self.assertEqual(len(products[0]["articleList"]["article"]), 3)
        seen, pages = self.poll(lambda m, l: req_get_products(m, l), "productList/product/articleList/article",
                                1, 1000)
        self.assertEqual(len(seen), len(set(seen)), "duplicates")
        self.assertEqual(seen, sorted(seen))
        self.assertEqual(pages, 3)
        self.assertEqual(seen[-1], head)
        # Every current article exactly once: 7 sample + 2500 bulk + 1 new, with the 3 re-marked
        # articles of the changed bulk product at their new markers only.
        self.assertEqual(len(seen), 7 + 2500 + 1)
        self.assertEqual(seen[-3:], [head - 2, head - 1, head])
        # The request marker is inclusive: asking from marker m returns m first.
        first = self.soap(req_get_products(seeded["first_sync_marker"], 2))
        self.assertEqual([num(a, "syncMarker") for a in first.iter(q("article"))],
                         [seeded["first_sync_marker"], seeded["first_sync_marker"] + 1])
        # A server-side cap shortens pages; exclusive mode starts after the marker.
        self.control("POST", "/_sim/config", {"sync_marker_limit_cap": 250, "sync_marker_exclusive": True})
        capped = self.soap(req_get_products(seeded["first_sync_marker"], 1000))
        markers = [num(a, "syncMarker") for a in capped.iter(q("article"))]
        self.assertEqual(len(markers), 250)
        self.assertEqual(markers[0], seeded["first_sync_marker"] + 1)

    def test_document_and_relation_paging(self):
        for i in range(7):
            self.control("POST", "/_sim/entity", {"kind": "relation", "object": {"name": "Klant %d" % i}})
        self.control("POST", "/_sim/entity", {"kind": "relation", "object": {"relationNumber": 10001,
                                                                             "city": "Zeist"}})
        seen, pages = self.poll(lambda m, l: N.getRelations(N.request(*paging(m, l))), "relationList/relation",
                                0, 3)
        self.assertEqual(seen, [2, 3] + list(range(4, 12)))   # 10001 moved from marker 1 to 11
        self.assertEqual(pages, 4)
        for i in range(5):
            self.sale({"kind": "cash", "lines": [{"articleNumber": 1001, "quantity": i + 1}], "callback": False})
        seen, _ = self.poll(lambda m, l: req_documents("getReceipts", m, l), "receiptList/receipt", 1, 2)
        self.assertEqual(seen, [1, 2, 3, 4, 5])

    def test_stock_ids_move_on_every_change(self):
        start = self.markers()["stockId"]
        resp = self.soap(ALL_REQUESTS["setStock"]())
        self.assertEqual(num(resp, "stockId"), start + 1)
        resp = self.soap(ALL_REQUESTS["updateStock"]())
        self.assertEqual(num(resp, "stockId"), start + 2)
        stock = self.soap(req_get_stock(1, (), start + 1))
        rows = stock.findall(q("articleStocks"))
        self.assertEqual([(num(r, "articleNumber"), num(r, "stockId")) for r in rows],
                         [(3001, start + 1), (2001, start + 2)])
        self.assertEqual((num(rows[0], "amountFree"), num(rows[0], "decimalPlacesFree")), (725, 2))
        self.assertEqual(num(rows[1], "amountFree"), 23)
        # A till sale of stock articles moves the stock (and its stockId) too.
        self.sale({"kind": "card", "lines": [{"articleNumber": 3001, "quantity": "0.250"},
                                              {"articleNumber": 1001}], "callback": False})
        rows = self.soap(req_get_stock(1, (3001,), start + 3)).findall(q("articleStocks"))
        self.assertEqual([(num(r, "stockId"), num(r, "amountFree"), num(r, "decimalPlacesFree")) for r in rows],
                         [(start + 3, 7, 0)])
        self.assertEqual(self.markers()["stockId"], start + 3)
        # Stock rules: no stock article, unknown article, unknown branch.
        for request, result in (((1, 1001), "SET-STOCK-RESULT-NO-STOCK-ARTICLE"),
                                ((1, 99), "SET-STOCK-RESULT-ARTICLE-NOT-FOUND"),
                                ((7, 2001), "SET-STOCK-RESULT-BRANCH-NOT-FOUND")):
            resp = self.soap(N.setStock(N.request(N.branchNumber(str(request[0])), N.articleNumber(str(request[1])),
                                                  N.amount("1"))))
            self.assertEqual(text(resp, "result"), result)
        self.assertEqual(self.markers()["stockId"], start + 3)
        control = self.control("POST", "/_sim/entity", {"kind": "stock", "object": {
            "branchNumber": 2, "articleNumber": 2002, "amount": "4.5"}})
        self.assertEqual((control["stockId"], control["amountFree"], control["decimalPlacesFree"]),
                         (start + 4, 45, 1))

    def test_till_sale_posts_a_signed_callback(self):
        sale = self.sale({"kind": "split", "customer": 10003, "card_amount": 1000, "lines": [
            {"articleNumber": 3001, "quantity": "1.234"},                     # 3 decimals, 9 %
            {"articleNumber": 2002, "quantity": 2, "discountPercentage": 10},  # 21 %
            {"articleNumber": 4001}]})                                         # 0 %
        path, headers, body = self.listener.next()
        self.assertEqual(path, "/webhooks/mplus/shop1/completeSession")
        self.assertEqual(headers["Content-Type"], "application/json")
        self.assertEqual(headers["X-Mplus-Subscription-Id"], SUBSCRIPTION)
        self.assertEqual(headers["X-Mplus-Signature"], sign(WEBHOOK_SECRET, body))
        payload = json.loads(body)
        self.assertEqual(payload["event"]["eventBlocking"], False)
        self.assertEqual(payload["event"]["eventCounter"], 1)
        self.assertRegex(payload["event"]["eventTimestamp"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$")
        self.assertEqual((payload["sender"]["branchNumber"], payload["sender"]["workplaceNumber"]), (1, 1))
        session = payload["session"]
        self.assertEqual(session["sessionId"], sale["sessionId"])
        self.assertEqual(session["relation"]["relationNumber"], 10003)
        self.assertEqual([line["quantity"] for line in session["lines"]], [1.234, 2, 1])
        receipt = sale["receipt"]
        self.assertEqual(session["totalInclAmount"], receipt["totalInclAmount"] / 100)
        self.assertEqual([p["method"] for p in session["payments"]], ["PIN", "CASH"])
        self.assertEqual(session["payments"][0]["amount"], 10.0)
        self.assertEqual(payload["completeSession"]["payments"], session["payments"])
        # The gateway's signed reply is recorded and its signature checked.
        callback = sale["callback"]
        self.assertEqual((callback["status"], callback["reply_signature_ok"]), (200, True))
        self.assertEqual(callback["body"].encode(), body)
        self.assertIsNone(callback["error_request"])
        # The receipt is there to poll, with cents, decimal places and VAT groups.
        resp = self.soap(req_documents("getReceipts", 1, 10))
        r = resp.find(q("receiptList")).find(q("receipt"))
        self.assertEqual(text(r, "receiptId"), receipt["receiptId"])
        self.assertEqual(num(r, "relationNumber"), 10003)
        lines = r.find(q("lineList")).findall(q("line"))
        self.assertEqual([(num(l, "data/quantity"), num(l, "data/decimalPlaces")) for l in lines],
                         [(1234, 3), (2, 0), (1, 0)])
        # The customer's 5 % discount on the cheese (1890 x 1.234 = 2332, -117) and the stamp
        # (114, -6); the line's own 10 % on the shirts (2 x 1995 = 3990, -399).
        self.assertEqual([num(l, "data/totalInclAmount") for l in lines], [2215, 3591, 108])
        self.assertEqual([num(l, "data/discountAmount") for l in lines], [117, 399, 6])
        self.assertEqual([text(l, "data/discountType") for l in lines],
                         ["DISCOUNT-TYPE-CUSTOMER-DISCOUNT", "DISCOUNT-TYPE-EXTERNAL-DISCOUNT",
                          "DISCOUNT-TYPE-CUSTOMER-DISCOUNT"])
        self.assertEqual(num(r, "totalInclAmount"), 5914)
        # Excl amounts per VAT rate: 2215/1.09, 3591/1.21, 108/1.00.
        groups = {num(g, "vatCode"): (num(g, "exclAmount"), num(g, "vatAmount")) for g in r.iter(q("vatGroup"))}
        self.assertEqual(groups, {1: (2032, 183), 2: (2968, 623), 3: (108, 0)})
        self.assertEqual(num(r, "totalExclAmount"), 2032 + 2968 + 108)
        payments = [num(p, "amount") for p in r.iter(q("payment"))]
        self.assertEqual(payments, [1000, 4914])

    def test_credit_and_anonymous_sales(self):
        original = self.sale({"kind": "cash", "lines": [{"articleNumber": 1002, "quantity": 3}]})["receipt"]
        self.listener.next()
        self.assertNotIn("relationNumber", original)
        credit = self.sale({"kind": "credit", "credits": original["receiptId"]})
        path, headers, body = self.listener.next()
        self.assertTrue(path.endswith("/creditSession"))
        payload = json.loads(body)
        self.assertEqual(payload["event"]["eventCounter"], 2)
        self.assertEqual(payload["session"]["totalInclAmount"], -9.6)
        self.assertEqual(payload["creditSession"]["payments"][0]["amount"], -9.6)
        receipt = credit["receipt"]
        self.assertEqual(receipt["receiptType"], "RECEIPT-TYPE-CREDIT-RECEIPT")
        self.assertEqual(receipt["creditedReceiptId"], original["receiptId"])
        self.assertEqual((receipt["totalInclAmount"], receipt["lineList"]["line"][0]["data"]["quantity"]), (-960, -3))
        resp = self.soap(req_documents("getReceipts", 2, 10))
        self.assertEqual(num(resp, "receiptList/receipt/totalInclAmount"), -960)
        # An invoice from the till, and an order (no callback for orders).
        invoice = self.sale({"kind": "card", "document": "invoice", "customer": 10001,
                             "lines": [{"articleNumber": 2001, "quantity": 1}]})
        self.listener.next()
        self.assertEqual(invoice["invoice"]["sessionId"], invoice["sessionId"])
        resp = self.soap(req_documents("getInvoices", 1, 10))
        self.assertEqual(text(resp, "invoiceList/invoice/invoiceType"), "INVOICE-TYPE-DIRECT-INVOICE")
        order = self.sale({"kind": "cash", "document": "order", "customer": 10002, "payments": [],
                           "lines": [{"articleNumber": 2003}]})
        self.assertIsNone(order["callback"])
        resp = self.soap(req_documents("getOrders", 1, 10))
        self.assertEqual(text(resp, "orderList/order/orderId"), order["order"]["orderId"])
        self.assertEqual(text(resp, "orderList/order/fullyPaid"), "false")
        self.assertEqual(self.markers()["receiptSyncMarker"], 2)

    def test_reply_signature_is_verified_and_bad_replies_get_an_error_request(self):
        self.listener.mode = "bad_signature"
        sale = self.sale({"kind": "cash", "lines": [{"articleNumber": 1001}]})
        callback = sale["callback"]
        self.assertEqual((callback["status"], callback["reply_signature_ok"]), (200, False))
        self.listener.next()
        path, _, body = self.listener.next()    # the error request wraps the original event
        error = json.loads(body)
        self.assertEqual(error["error"]["code"], "INVALID_SIGNATURE")
        self.assertEqual(error["original"], json.loads(callback["body"]))
        self.assertTrue(path.endswith("/completeSession"))
        self.listener.mode = "error"
        callback = self.sale({"kind": "cash", "lines": [{"articleNumber": 1001}]})["callback"]
        self.assertEqual((callback["status"], callback["reply_signature_ok"]), (400, True))
        self.assertIsNone(callback["error_request"])
        self.assertEqual(len(self.control("GET", "/_sim/callbacks")), 2)
        # Other till events are sent with the same envelope.
        self.listener.mode = "good"
        self.listener.drain()
        event = self.control("POST", "/_sim/till/event", {"event": "scanCode",
                                                         "extra": {"scanCode": {"scannedCode": "8712345000012"}}})
        self.assertEqual(event["status"], 200)
        path, _, body = self.listener.next()
        self.assertTrue(path.endswith("/scanCode"))
        self.assertEqual(json.loads(body)["scanCode"]["scannedCode"], "8712345000012")

    def test_base64_webhook_secret(self):
        raw = bytes(range(200, 232))
        self.control("POST", "/_sim/config", {"webhook_secret": base64.b64encode(raw).decode(),
                                              "webhook_secret_encoding": "base64"})
        self.sale({"kind": "cash", "lines": [{"articleNumber": 1001}]})
        _, headers, body = self.listener.next()
        self.assertEqual(headers["X-Mplus-Signature"], sign(raw, body))

    def test_fault_kinds(self):
        body = envelope(N.getApiVersion())
        self.control("POST", "/_sim/fault", {"kind": "soap_fault", "count": 2})
        for _ in range(2):
            status, _, data = self.post_soap(body)
            self.assertEqual(status, 500)
            self.assertEqual(self.fault(data)[0], "SOAP-ENV:Server")
        self.assertEqual(self.post_soap(body)[0], 200)
        self.control("POST", "/_sim/fault", {"kind": "soap_fault", "faultcode": "SOAP-ENV:Server.Busy",
                                             "faultstring": "too busy"})
        self.assertEqual(self.fault(self.post_soap(body)[2]), ("SOAP-ENV:Server.Busy", "too busy"))
        self.control("POST", "/_sim/fault", {"kind": "http_500"})
        status, headers, data = self.post_soap(body)
        self.assertEqual((status, headers["content-type"]), (500, "text/html"))
        self.control("POST", "/_sim/fault", {"kind": "http_503"})
        self.assertEqual(self.post_soap(body)[0], 503)
        self.control("POST", "/_sim/fault", {"kind": "reset"})
        with self.assertRaises((ConnectionResetError, http.client.RemoteDisconnected, BrokenPipeError)):
            self.post_soap(body)
        self.control("POST", "/_sim/fault", {"kind": "timeout", "delay_ms": 1500})
        with self.assertRaises(socket.timeout):
            self.post_soap(body, timeout=0.3)
        self.control("POST", "/_sim/fault", {"kind": "timeout", "delay_ms": 200})
        with self.assertRaises(http.client.RemoteDisconnected):
            self.post_soap(body, timeout=3)
        self.control("POST", "/_sim/fault", {"kind": "slow", "delay_ms": 300})
        started = time.monotonic()
        self.soap(N.getApiVersion())
        self.assertGreaterEqual(time.monotonic() - started, 0.3)
        self.control("POST", "/_sim/fault", {"kind": "truncated"})
        status, _, data = self.post_soap(body)
        self.assertEqual(status, 200)
        with self.assertRaises(etree.XMLSyntaxError):
            etree.fromstring(data)
        # Rules for one operation leave the others alone; result_failed is an in-band failure.
        self.control("POST", "/_sim/fault", {"kind": "result_failed", "operation": "createRelation"})
        self.control("POST", "/_sim/fault", {"kind": "http_500", "operation": "getRelations"})
        self.assertEqual(self.post_soap(body)[0], 200)
        before = self.markers()["relationSyncMarker"]
        resp = self.soap(ALL_REQUESTS["createRelation"]())
        self.assertEqual((text(resp, "result"), num(resp, "relationNumber")), ("CREATE-RELATION-RESULT-FAILED", 0))
        self.assertEqual(self.markers()["relationSyncMarker"], before)
        self.assertEqual(self.post_soap(envelope(ALL_REQUESTS["getRelations"]()))[0], 500)
        log = self.control("GET", "/_sim/requests")
        self.assertEqual([e["fault"] for e in log if e["fault"]],
                         ["soap_fault", "soap_fault", "soap_fault", "http_500", "http_503", "reset", "timeout",
                          "timeout", "slow", "truncated", "result_failed", "http_500"])
        self.assertEqual(self.control("GET", "/_sim/faults"), [])
        self.control("POST", "/_sim/fault", {"kind": "nonsense"}, status=400)

    def test_mutations_and_in_band_results(self):
        resp = self.soap(N.createRelation(N.relation(N.relationNumber("10001"), N.name("Dubbel"))))
        self.assertEqual(text(resp, "result"), "CREATE-RELATION-RESULT-FAILED-RELATION-NUMBER-ALREADY-TAKEN")
        resp = self.soap(N.updateRelation(N.relation(N.relationNumber("4242"), N.name("x"))))
        self.assertEqual(text(resp, "result"), "UPDATE-RELATION-RESULT-NOT-FOUND")
        resp = self.soap(N.findRelation(N.relation(N.email("nobody@"))))
        self.assertEqual(text(resp, "result"), "FIND-RELATION-RESULT-NOT-FOUND")
        resp = self.soap(N.createProduct(N.product(N.articleList(N.article(N.articleNumber("1001"))))))
        self.assertEqual(text(resp, "result"), "CREATE-PRODUCT-RESULT-FAILED-ARTICLE-NUMBER-ALREADY-TAKEN")
        resp = self.soap(ALL_REQUESTS["createProduct"]())
        number = num(resp, "articleNumbers")
        product = num(resp, "productNumber")
        articles = self.soap(req_get_products(None, None, N.productNumbers(str(product)))).iter(q("article"))
        article = next(articles)
        self.assertEqual((num(article, "articleNumber"), num(article, "priceIncl"), num(article, "priceExcl"),
                          num(article, "vatPercentage")), (number, 230, 211, 9))
        resp = self.soap(N.updateProduct(N.product(N.productNumber("99999"))))
        self.assertEqual(text(resp, "result"), "UPDATE-PRODUCT-RESULT-NOT-FOUND")
        # A product changed through the control API gets a new marker, like through the API.
        head = self.markers()["articleSyncMarker"]
        stored = self.control("POST", "/_sim/entity", {"kind": "product", "object": {
            "productNumber": 3, "articleList": [{"articleNumber": 2002, "priceIncl": 2495, "active": False}]}})
        changed = [a for a in stored["articleList"]["article"] if a["articleNumber"] == 2002][0]
        self.assertEqual((changed["syncMarker"], changed["priceExcl"], changed["active"]), (head + 1, 2062, False))
        # Only the changed article, unless all articles of the product are asked for; the
        # product's syncMarker stays that of the change either way.
        for flag, count in ((), 1), ((N.includeAllArticlesOfSelectedProducts("true"),), 3):
            resp = self.soap(req_get_products(head + 1, 10, *flag))
            products = resp.find(q("productList")).findall(q("product"))
            self.assertEqual([(num(p, "productNumber"), num(p, "syncMarker")) for p in products], [(3, head + 1)])
            self.assertEqual(len(list(products[0].iter(q("article")))), count)
        group = self.control("POST", "/_sim/entity", {"kind": "articleGroup", "object": {
            "groupNumber": 12, "isDeleted": True}})
        self.assertTrue(group["isDeleted"])
        resp = self.soap(N.getArticleGroupChanges(N.request(*paging(group["syncMarker"], 10))))
        changes = resp.find(q("changedArticleGroupList")).findall(q("changedArticleGroups"))
        self.assertEqual([(num(c, "groupNumber"), text(c, "isDeleted")) for c in changes],
                         [(12, "true"), (1, None)])   # the parent lost a subgroup
        self.control("POST", "/_sim/entity", {"kind": "product", "object": {"nope": 1}}, status=400)
        entities = self.control("GET", "/_sim/entities?kind=relation")
        self.assertEqual([r["relationNumber"] for r in entities], [10001, 10002, 10003])

    # -- products, article groups and stock as the products and stock flows see them --

    def products_from(self, marker, limit=100, *extra):
        """getProducts from marker: {productNumber: (product marker, [article elements])}."""
        resp = self.soap(req_get_products(marker, limit, *extra))
        return {num(p, "productNumber"): (num(p, "syncMarker"), p.find(q("articleList")).findall(q("article")))
                for p in resp.find(q("productList")).findall(q("product"))}

    def test_bulk_variants_have_colour_and_size(self):
        seeded = self.control("POST", "/_sim/seed", {"articles": 10, "articles_per_product": 4, "stock": True})
        self.assertEqual(seeded["products"], 3)
        products = self.products_from(seeded["first_sync_marker"])
        first, last = seeded["first_product_number"], seeded["first_product_number"] + 2
        self.assertEqual(sorted(products), [first, first + 1, last])

        def variants(pno):
            return [(text(a, "colour"), num(a, "colourSequenceNumber"), text(a, "size"), num(a, "sizeSequenceNumber"))
                    for a in products[pno][1]]

        self.assertEqual(variants(first), [("Zwart", 1, "S", 1), ("Zwart", 1, "M", 2), ("Zwart", 1, "L", 3),
                                           ("Zwart", 1, "XL", 4)])
        self.assertEqual(variants(last), [("Zwart", 1, "S", 1), ("Zwart", 1, "M", 2)])
        resp = self.soap(req_get_products(seeded["first_sync_marker"], 1))
        self.assertEqual(text(resp, "productList/product/description"), "Product %d" % first)
        self.assertEqual(text(resp, "productList/product/articleList/article/stockArticle"), "true")
        # The fast template and the stored form agree: materialize the product by changing it.
        self.control("POST", "/_sim/entity", {"kind": "product", "object": {
            "productNumber": first, "articleList": [{"articleNumber": seeded["first_article_number"] + 1,
                                                     "priceIncl": 1234}]}})
        stored = self.control("GET", "/_sim/entities?kind=product&offset=5&limit=1")[0]
        self.assertEqual(stored["productNumber"], first)
        self.assertEqual([(a["colour"], a["size"]) for a in stored["articleList"]["article"]],
                         [("Zwart", "S"), ("Zwart", "M"), ("Zwart", "L"), ("Zwart", "XL")])
        # Beyond 4 sizes x 5 colours every article still has a combination of its own.
        seeded = self.control("POST", "/_sim/seed", {"articles": 24, "articles_per_product": 24})
        arts = self.products_from(seeded["first_sync_marker"])[seeded["first_product_number"]][1]
        combos = [(text(a, "colour"), text(a, "size")) for a in arts]
        self.assertEqual(len(set(combos)), 24)
        self.assertEqual(combos[4], ("Wit", "S"))
        self.assertEqual(combos[20:], [("Zwart 2", s) for s in ("S", "M", "L", "XL")])
        # One article per product: no variant fields.
        seeded = self.control("POST", "/_sim/seed", {"articles": 2})
        for _, arts in self.products_from(seeded["first_sync_marker"]).values():
            self.assertIsNone(text(arts[0], "colour"))
            self.assertIsNone(text(arts[0], "size"))

    def test_a_price_change_moves_only_that_article(self):
        seeded = self.control("POST", "/_sim/seed", {"articles": 6, "articles_per_product": 3})
        before = self.products_from(1, 1000, N.includeAllArticlesOfSelectedProducts("true"))
        marks = {num(a, "articleNumber"): num(a, "syncMarker") for _, arts in before.values() for a in arts}
        head = self.markers()["articleSyncMarker"]
        bulk_article = seeded["first_article_number"] + 4      # the middle article of the second product
        for pno, ano, price in ((3, 2002, 2195), (seeded["first_product_number"] + 1, bulk_article, 2500)):
            stored = self.control("POST", "/_sim/entity", {"kind": "product", "object": {
                "productNumber": pno, "articleList": [{"articleNumber": ano, "priceIncl": price}]}})
            self.assertEqual(len(stored["articleList"]["article"]), 3, "the other articles stay")
        self.assertEqual(self.markers()["articleSyncMarker"], head + 2)
        changed = self.products_from(head + 1)
        self.assertEqual(sorted(changed), [3, seeded["first_product_number"] + 1])
        shirt = changed[3][1]
        self.assertEqual([(num(a, "articleNumber"), num(a, "syncMarker"), num(a, "priceIncl"), num(a, "priceExcl"))
                          for a in shirt], [(2002, head + 1, 2195, 1814)])
        self.assertEqual(changed[3][0], head + 1)
        bulk = changed[seeded["first_product_number"] + 1][1]
        self.assertEqual([(num(a, "articleNumber"), num(a, "syncMarker"), num(a, "priceIncl"), text(a, "size"))
                          for a in bulk], [(bulk_article, head + 2, 2500, "M")])
        # Every other article keeps its marker; a full poll has each article once, at its newest marker.
        after = self.products_from(1, 1000, N.includeAllArticlesOfSelectedProducts("true"))
        now = {num(a, "articleNumber"): num(a, "syncMarker") for _, arts in after.values() for a in arts}
        self.assertEqual({a: m for a, m in now.items() if now[a] != marks[a]},
                         {2002: head + 1, bulk_article: head + 2})
        seen, _ = self.poll(lambda m, l: req_get_products(m, l), "productList/product/articleList/article", 1, 4)
        self.assertEqual(len(seen), len(marks))
        self.assertEqual(seen[-2:], [head + 1, head + 2])

    def test_article_group_tree_renames_and_deletes(self):
        def changes(marker):
            resp = self.soap(N.getArticleGroupChanges(N.request(*paging(marker, 100))))
            out = []
            for c in resp.find(q("changedArticleGroupList")).findall(q("changedArticleGroups")):
                subs = c.find(q("subGroupNumbers"))
                out.append((num(c, "groupNumber"), num(c, "parentGroupNumber"), text(c, "name"),
                            [int(n.text) for n in subs] if subs is not None else [], text(c, "isDeleted")))
            return out

        start = self.markers()["articleGroupSyncMarker"] + 1
        self.control("POST", "/_sim/entity", {"kind": "articleGroup", "object": {
            "groupNumber": 13, "parentGroupNumber": 1, "name": "Thee"}})
        self.assertEqual(changes(start), [(13, 1, "Thee", [], None), (1, None, "Dranken", [11, 12, 13], None)])
        # A rename changes the group only; a move changes both parents.
        self.control("POST", "/_sim/entity", {"kind": "articleGroup", "object": {"groupNumber": 13,
                                                                                  "name": "Thee en kruiden"}})
        self.assertEqual(changes(start + 2), [(13, 1, "Thee en kruiden", [], None)])
        self.control("POST", "/_sim/entity", {"kind": "articleGroup", "object": {"groupNumber": 13,
                                                                                  "parentGroupNumber": 3}})
        self.assertEqual(changes(start + 3), [(13, 3, "Thee en kruiden", [], None),
                                              (1, None, "Dranken", [11, 12], None),
                                              (3, None, "Levensmiddelen", [13], None)])
        # groupNumbers matches a group or any of its ancestors.
        resp = self.soap(N.getArticleGroupChanges(N.request(*paging(1, 100), N.groupNumbers("3"))))
        self.assertEqual([num(c, "groupNumber") for c in resp.iter(q("changedArticleGroups"))], [13, 3])
        # A deleted group comes once more, with isDeleted, and its parent loses it.
        self.control("POST", "/_sim/entity", {"kind": "articleGroup", "object": {"groupNumber": 13,
                                                                                  "isDeleted": True}})
        self.assertEqual(changes(start + 6), [(13, 3, "Thee en kruiden", [], "true"),
                                              (3, None, "Levensmiddelen", [], None)])
        # Parents must exist, not be deleted, and not sit below the group.
        for parent in (77, 13, 11):
            self.control("POST", "/_sim/entity", {"kind": "articleGroup", "object": {
                "groupNumber": 1 if parent == 11 else 14, "parentGroupNumber": parent}}, status=400)
        self.assertEqual(changes(start + 8), [])

    def test_stock_per_branch_by_stock_id(self):
        start = self.markers()["stockId"]
        row = self.control("POST", "/_sim/entity", {"kind": "stock", "object": {
            "branchNumber": 2, "articleNumber": 2002, "amount": "4.5", "amountReserved": "1.25",
            "amountIncoming": 10}})
        self.assertEqual(row["stockId"], start + 1)
        self.control("POST", "/_sim/entity", {"kind": "stock", "object": {
            "branchNumber": 1, "articleNumber": 2003, "amountChanged": -2}})

        def stock(branches, stock_id, articles=()):
            request = N.getStock(N.request(N.branchNumber(str(branches[0])),
                                           N.articleNumbers(*[N.articleNumbers(str(a)) for a in articles]),
                                           N.stockId(str(stock_id)),
                                           N.branchNumbers(*[N.branchNumber(str(b)) for b in branches])))
            return [(num(r, "branchNumber"), num(r, "articleNumber"), num(r, "stockId"),
                     num(r, "amountFree"), num(r, "decimalPlacesFree"), num(r, "amountReserved"),
                     num(r, "decimalPlacesReserved"), num(r, "amountIncoming"), num(r, "decimalPlacesIncoming"))
                    for r in self.soap(request).findall(q("articleStocks"))]

        self.assertEqual(stock([1, 2], start + 1), [(2, 2002, start + 1, 45, 1, 125, 2, 10, 0),
                                                    (1, 2003, start + 2, 18, 0, 0, 0, 0, 0)])
        self.assertEqual(stock([2], start + 1), [(2, 2002, start + 1, 45, 1, 125, 2, 10, 0)])
        self.assertEqual(stock([1, 2], start + 3), [])
        # A till sale in branch 2 lowers the free stock there (not the reserved or incoming
        # stock, nor branch 1's), with a new stockId; its credit gives it back.
        sale = self.sale({"kind": "cash", "branchNumber": 2, "callback": False,
                          "lines": [{"articleNumber": 2002, "quantity": 2}, {"articleNumber": 1001}]})
        self.assertEqual(stock([1, 2], start + 3), [(2, 2002, start + 3, 25, 1, 125, 2, 10, 0)])
        self.sale({"kind": "credit", "branchNumber": 2, "credits": sale["receipt"]["receiptId"], "callback": False})
        self.assertEqual(stock([1, 2], start + 4), [(2, 2002, start + 4, 45, 1, 125, 2, 10, 0)])
        self.assertEqual(stock([1], 0, (2002,)), [(1, 2002, 2, 30, 0, 0, 0, 0, 0)])   # as seeded
        self.assertEqual(self.markers()["stockId"], start + 4)
        # An order moves no stock.
        self.sale({"kind": "cash", "document": "order", "branchNumber": 2,
                   "lines": [{"articleNumber": 2002, "quantity": 1}]})
        self.assertEqual(self.markers()["stockId"], start + 4)

    def test_bulk_template_matches_the_schema_serializer(self):
        sys.path.insert(0, SIM_DIR)
        try:
            import mplus_schema
            import mplus_store
        finally:
            sys.path.remove(SIM_DIR)
        schema = mplus_schema.load()
        store = mplus_store.Store(schema, {}, seed=False)
        store.seed_bulk(50, per_product=4)
        bulk = store.bulks[0]
        for pi, indices in ((0, [0, 1, 2, 3]), (5, [21, 22]), (12, [48, 49])):
            fast = etree.fromstring(bulk.product_xml(pi, indices))
            slow = etree.Element(q("product"), nsmap={"ns": URN})
            schema.build(slow, "Product", bulk.product(pi, indices))
            self.assertEqual(etree.tostring(fast, method="c14n"), etree.tostring(slow, method="c14n"))
        page = store.get_products({"syncMarker": 1, "syncMarkerLimit": 30})
        el = etree.fromstring('<ns:%s xmlns:ns="%s">%s</ns:%s>' % (page.element, URN, page.inner, page.element))
        self.assertTrue(SCHEMA.validate(el), SCHEMA.error_log)
        self.assertEqual((page.count, page.max_marker), (30, 30))


    # -- till: VAT exclusive, later payments, order changes, bulk sales, preparations --

    def validating(self):
        self.assertTrue(self.control("POST", "/_sim/config", {"validate_responses": True})["validate_responses"])

    def soap_documents(self, kind, marker, limit=100, *extra):
        """getReceipts/getInvoices/getOrders from marker: the document elements (validated both ends);
        extra: request elements after articleBarcodes."""
        op = "get" + kind.capitalize() + "s"
        resp = self.soap(req_documents(op, marker, limit, *extra))
        return resp.find(q(kind + "List")).findall(q(kind))

    def test_journals_add_up_the_days_receipts_per_branch(self):
        """getJournals is computed from the receipts it holds: per day and branch, turnover per
        turnover group, payments per method and VAT per group equal the receipts' sums."""
        self.validating()
        days = ("2026-03-02T10:00:00+01:00", "2026-03-03T11:00:00+01:00")
        made = []
        for i in range(12):
            spec = {"kind": ("cash", "card", "split")[i % 3], "callback": False, "timestamp": days[i % 2],
                    "branchNumber": 1 + (i // 2) % 2, "workplaceNumber": 1,
                    "lines": [{"articleNumber": 1001, "quantity": str(1 + i % 3)},
                              {"articleNumber": (2001, 3001, 4001)[i % 3], "quantity": ("1", "0.375", "2")[i % 3],
                               "omitExcl": i % 4 == 0}]}
            made.append(self.sale(spec)["receipt"])
        resp = self.soap(req_get_journals(datetime.date(2026, 3, 2), datetime.date(2026, 3, 3)))
        journals = resp.find(q("journalList")).findall(q("journal"))
        self.assertEqual(len(journals), 4)
        for j in journals:
            day = (num(j, "financialDate/year"), num(j, "financialDate/mon"), num(j, "financialDate/day"))
            branch = num(j, "branchNumber")
            mine = [r for r in made if (r["financialDate"]["year"], r["financialDate"]["mon"],
                                        r["financialDate"]["day"]) == day and r["financialBranchNumber"] == branch]
            self.assertEqual(len(mine), 3, (day, branch))
            pays = {}
            for r in mine:
                for p in r["paymentList"]["payment"]:
                    pays[p["method"]] = pays.get(p["method"], 0) + p["amount"]
            self.assertEqual({text(p, "method"): num(p, "amount") for p in j.find(q("paymentList")).findall(q("payment"))}, pays)
            vat = {}
            for r in mine:
                for g in r["vatGroupList"]["vatGroup"]:
                    e, v = vat.get(g["vatCode"], (0, 0))
                    vat[g["vatCode"]] = (e + g["exclAmount"], v + g["vatAmount"])
            self.assertEqual({num(g, "vatCode"): (num(g, "exclAmount"), num(g, "vatAmount"))
                              for g in j.find(q("vatGroupList")).findall(q("vatGroup"))}, vat)
            incl = sum(r["totalInclAmount"] for r in mine)
            self.assertEqual(sum(num(t, "inclAmount") for t in j.find(q("turnoverGroupList")).findall(q("turnoverGroup"))), incl)
            self.assertEqual(sum(num(t, "exclAmount") for t in j.find(q("turnoverGroupList")).findall(q("turnoverGroup"))),
                             sum(e for e, _ in vat.values()))
        # One branch, one day.
        resp = self.soap(req_get_journals(datetime.date(2026, 3, 3), datetime.date(2026, 3, 3), (2,)))
        self.assertEqual([num(j, "branchNumber") for j in resp.find(q("journalList")).findall(q("journal"))], [2])

    def test_financial_journal_splits_turnover_over_vat_and_reports_closed_days(self):
        """getFinancialJournal: per branch, turnover per group split over VAT codes (the VAT per
        code and the turnover per group equal the receipts' own), payments per method, and
        financialPeriodClosed once the day is closed at the till."""
        self.validating()
        made = []
        for i in range(9):
            spec = {"kind": ("cash", "card", "split")[i % 3], "callback": False,
                    "timestamp": "2026-04-07T1%d:00:00+02:00" % (i % 9), "branchNumber": 1 + i % 2,
                    "vatMethod": "exclusive" if i == 4 else "inclusive",
                    "lines": [{"articleNumber": 1001, "quantity": str(1 + i % 3)},
                              {"articleNumber": (2001, 3001, 4001)[i % 3], "quantity": ("1", "0.375", "2")[i % 3]}]}
            made.append(self.sale(spec)["receipt"])
        self.control("POST", "/_sim/day/close", {"financialDate": "2026-04-07", "branchNumber": 2})
        resp = self.soap(req_get_financial_journal(datetime.date(2026, 4, 7), datetime.date(2026, 4, 7)))
        groups = resp.find(q("financialGroupList")).findall(q("financialGroup"))
        self.assertEqual(text(resp, "financialPeriodClosed"), "false")
        for branch in (1, 2):
            mine = [r for r in made if r["financialBranchNumber"] == branch]
            own = [g for g in groups if num(g, "branchNumber") == branch]
            self.assertTrue(own)
            self.assertEqual({text(g, "financialPeriodClosed") for g in own}, {"true" if branch == 2 else "false"})
            turnover = [g for g in own if text(g, "financialGroupType") == "FINANCIAL-GROUP-TYPE-TURNOVER"]
            vat, split = {}, {}
            for r in mine:
                for g in r["vatGroupList"]["vatGroup"]:
                    e, v = vat.get(g["vatCode"], (0, 0))
                    vat[g["vatCode"]] = (e + g["exclAmount"], v + g["vatAmount"])
            for t in turnover:
                excl = 0
                for g in t.find(q("vatGroupList")).findall(q("vatGroup")):
                    e, v = split.get(num(g, "vatCode"), (0, 0))
                    split[num(g, "vatCode")] = (e + num(g, "exclAmount"), v + num(g, "vatAmount"))
                    excl += num(g, "exclAmount")
                self.assertEqual(excl, num(t, "exclAmount"))
            self.assertEqual(split, vat)
            pays = {}
            for r in mine:
                for p in r["paymentList"]["payment"]:
                    pays[p["method"]] = pays.get(p["method"], 0) + p["amount"]
            self.assertEqual({text(g, "financialGroupId"): num(g, "inclAmount") for g in own
                              if text(g, "financialGroupType") == "FINANCIAL-GROUP-TYPE-PAYMENT"}, pays)
        self.control("POST", "/_sim/day/close", {"financialDate": "2026-04-07", "branchNumber": 1})
        resp = self.soap(req_get_financial_journal(datetime.date(2026, 4, 7), datetime.date(2026, 4, 7)))
        self.assertEqual(text(resp, "financialPeriodClosed"), "true")

    def test_vat_exclusive_documents(self):
        self.validating()
        sale = self.sale({"kind": "cash", "vatMethod": "exclusive", "lines": [
            {"articleNumber": 1001, "quantity": 3, "price": 229},          # 687 excl + 61.83 -> 62
            {"articleNumber": 1002, "quantity": "1.5", "price": 293},      # 439.5 -> 440 excl + 39.6 -> 40
            {"articleNumber": 2001, "discountAmount": 100}]})             # 1649 (article excl) - 100
        self.listener.next()
        receipt = sale["receipt"]
        self.assertEqual(receipt["vatMethod"], "VAT-METHOD-EXCLUSIVE")
        data = [l["data"] for l in receipt["lineList"]["line"]]
        self.assertEqual([(d["priceExcl"], d["price"]) for d in data], [(229, 250), (293, 319), (1649, 1995)])
        self.assertEqual([d["totalExclAmount"] for d in data], [687, 440, 1549])
        self.assertEqual([d["totalInclAmount"] for d in data], [749, 480, 1874])
        self.assertEqual((data[2]["discountAmountExcl"], data[2]["discountAmount"]), (100, 121))
        # VAT per group on the group's excl amount: 9 % of 1127 = 101.43 -> 101 (the lines say 102).
        groups = {g["vatCode"]: (g["exclAmount"], g["vatAmount"]) for g in receipt["vatGroupList"]["vatGroup"]}
        self.assertEqual(groups, {1: (1127, 101), 2: (1549, 325)})
        self.assertEqual((receipt["totalExclAmount"], receipt["totalInclAmount"]), (2676, 3102))
        self.assertEqual(sum(d["totalInclAmount"] for d in data), 3103)
        self.assertEqual((receipt["paidAmount"], receipt["state"]), (3102, "RECEIPT-STATE-PAID"))
        r = self.soap_documents("receipt", 1)[0]
        self.assertEqual((text(r, "vatMethod"), num(r, "totalInclAmount")), ("VAT-METHOD-EXCLUSIVE", 3102))
        # A credit copies the method and the excl prices: everything exactly negated.
        credit = self.sale({"kind": "credit", "credits": receipt["receiptId"], "callback": False})["receipt"]
        self.assertEqual(credit["vatMethod"], "VAT-METHOD-EXCLUSIVE")
        self.assertEqual((credit["totalExclAmount"], credit["totalInclAmount"]), (-2676, -3102))
        self.assertEqual({g["vatCode"]: (g["exclAmount"], g["vatAmount"]) for g in credit["vatGroupList"]["vatGroup"]},
                         {1: (-1127, -101), 2: (-1549, -325)})
        self.assertEqual([l["data"]["totalInclAmount"] for l in credit["lineList"]["line"]], [-749, -480, -1874])
        # Inclusive stays the default, and the name may be the schema's.
        plain = self.sale({"kind": "cash", "lines": [{"articleNumber": 1001}], "callback": False})["receipt"]
        self.assertEqual((plain["vatMethod"], plain["totalInclAmount"], plain["totalExclAmount"]),
                         ("VAT-METHOD-INCLUSIVE", 250, 229))
        invoice = self.sale({"kind": "card", "document": "invoice", "customer": 10001, "callback": False,
                             "vatMethod": "VAT-METHOD-EXCLUSIVE", "lines": [{"articleNumber": 4001, "quantity": 7}]})
        self.assertEqual((invoice["invoice"]["totalExclAmount"], invoice["invoice"]["totalInclAmount"]), (798, 798))
        self.assertEqual(len(self.soap_documents("invoice", 1)), 1)
        error = self.sale({"vatMethod": "shifted", "lines": [{"articleNumber": 1001}]}, status=400)
        self.assertIn("vatMethod", error["error"])

    def test_later_payments_on_an_invoice(self):
        self.validating()
        sale = self.sale({"document": "invoice", "customer": 10001, "payments": [], "callback": False,
                          "lines": [{"articleNumber": 2002, "quantity": 2}]})
        invoice = sale["invoice"]
        self.assertEqual((invoice["totalInclAmount"], invoice["paidAmount"], invoice["state"]),
                         (3990, 0, "INVOICE-STATE-OUTSTANDING"))
        pay = {"invoiceId": invoice["invoiceId"], "method": "PIN", "amount": 1000}
        changed = self.control("POST", "/_sim/till/pay", pay)
        self.assertEqual(changed["document"], "invoice")
        changed = changed["invoice"]
        self.assertEqual((changed["paidAmount"], changed["state"], changed["changeCounter"], changed["versionNumber"]),
                         (1000, "INVOICE-STATE-PARTLY-PAID", 1, 2))
        self.assertEqual(changed["syncMarker"], invoice["syncMarker"] + 1)
        self.assertEqual(self.markers()["invoiceSyncMarker"], invoice["syncMarker"] + 1)
        # A poll by marker sees the change, and the invoice only at its new marker.
        self.assertEqual(self.soap_documents("invoice", invoice["syncMarker"] + 1)[0].findtext(q("state")),
                         "INVOICE-STATE-PARTLY-PAID")
        self.assertEqual(len(self.soap_documents("invoice", 1)), 1)
        # Over-payment is refused and changes nothing; the rest pays it, on another day.
        error = self.control("POST", "/_sim/till/pay", dict(pay, amount=2991), status=400)
        self.assertIn("over-payment", error["error"])
        done = self.control("POST", "/_sim/till/pay", dict(pay, method="ON-ACCOUNT", amount=2990,
                                                           timestamp="2025-03-31T10:00:00+02:00"))["invoice"]
        self.assertEqual((done["paidAmount"], done["state"], done["changeCounter"], done["versionNumber"]),
                         (3990, "INVOICE-STATE-PAID", 2, 3))
        payments = done["paymentList"]["payment"]
        self.assertEqual([(p["method"], p["amount"]) for p in payments], [("PIN", 1000), ("ON-ACCOUNT", 2990)])
        self.assertEqual((payments[1]["financialDate"], payments[1]["accountNumber"], payments[1]["branchNumber"]),
                         ({"day": 31, "mon": 3, "year": 2025}, 1300, 1))
        i = self.soap_documents("invoice", done["syncMarker"])[0]
        self.assertEqual([num(p, "amount") for p in i.iter(q("payment"))], [1000, 2990])
        self.assertEqual(num(i, "paidAmount"), 3990)
        self.control("POST", "/_sim/till/pay", dict(pay, amount=1), status=400)        # paid in full
        # A credit invoice is paid back with negative amounts.
        credit = self.sale({"kind": "credit", "document": "invoice", "credits": invoice["invoiceId"],
                            "payments": [], "callback": False})["invoice"]
        self.assertEqual(credit["state"], "INVOICE-STATE-OUTSTANDING-CREDIT")
        back = {"invoiceId": credit["invoiceId"], "method": "CASH", "amount": -3990}
        self.control("POST", "/_sim/till/pay", dict(back, amount=10), status=400)
        self.assertEqual(self.control("POST", "/_sim/till/pay", back)["invoice"]["state"], "INVOICE-STATE-PAID")
        for bad in ({"invoiceId": "nope", "method": "PIN", "amount": 1}, {"invoiceId": invoice["invoiceId"]},
                    dict(pay, method="BITCOIN"), dict(pay, amount=0), dict(pay, amount=1.5),
                    dict(pay, amount="10"), dict(pay, extra=1), dict(pay, timestamp="yesterday")):
            with self.subTest(bad=bad):
                self.assertIn("error", self.control("POST", "/_sim/till/pay", bad, status=400))
        self.assertEqual(self.markers()["invoiceSyncMarker"], credit["syncMarker"] + 1)

    def test_order_state_changes_and_payments(self):
        self.validating()
        order = self.sale({"document": "order", "customer": 10002, "payments": [], "extOrderId": "WEB-1",
                           "lines": [{"articleNumber": 2001, "quantity": 2}, {"articleNumber": 3001,
                                                                               "quantity": "0.500"}]})["order"]
        self.assertEqual((order["completeState"], order["fullyPaid"], order["prepaidAmount"]),
                         ("ORDER-COMPLETE-STATE-NOTHING", False, 0))
        oid = order["orderId"]
        changed = self.control("POST", "/_sim/till/order", {"orderId": oid, "payments": [
            {"method": "PIN", "amount": 2000}, {"method": "CASH", "amount": order["totalInclAmount"] - 2000}]})
        changed = changed["order"]
        self.assertEqual((changed["prepaidAmount"], changed["fullyPaid"], changed["changeCounter"],
                          changed["versionNumber"], changed["syncMarker"]),
                         (order["totalInclAmount"], True, 1, 2, order["syncMarker"] + 1))
        self.assertEqual(len(changed["paymentList"]["payment"]), 2)
        self.control("POST", "/_sim/till/order", {"orderId": oid, "payments": [{"method": "CASH", "amount": 1}]},
                     status=400)
        done = self.control("POST", "/_sim/till/order", {"orderId": oid, "deliveryState": "COMPLETE",
                                                         "completeState": "ORDER-COMPLETE-STATE-COMPLETE"})["order"]
        self.assertEqual((done["deliveryState"], done["completeState"], done["cancelState"]),
                         ("ORDER-DELIVERY-STATE-COMPLETE", "ORDER-COMPLETE-STATE-COMPLETE",
                          "ORDER-CANCEL-STATE-NOTHING"))
        self.assertEqual([(l["data"]["deliveredQuantity"], l["data"]["deliveredDecimalPlaces"])
                          for l in done["lineList"]["line"]], [(2, 0), (500, 3)])
        self.assertEqual((done["changeCounter"], done["versionNumber"], done["syncMarker"]),
                         (2, 3, order["syncMarker"] + 2))
        o = self.soap_documents("order", done["syncMarker"])[0]
        self.assertEqual((text(o, "completeState"), text(o, "deliveryState"), text(o, "fullyPaid")),
                         ("ORDER-COMPLETE-STATE-COMPLETE", "ORDER-DELIVERY-STATE-COMPLETE", "true"))
        self.assertEqual(num(o, "lineList/line/data/deliveredQuantity"), 2)
        other = self.sale({"document": "order", "payments": [], "lines": [{"articleNumber": 1001}]})["order"]
        cancelled = self.control("POST", "/_sim/till/order", {"orderId": other["orderId"], "cancelState": "COMPLETE",
                                                              "completeState": "PARTIAL"})["order"]
        self.assertEqual((cancelled["cancelState"], cancelled["completeState"],
                          cancelled["lineList"]["line"][0]["data"]["cancelledQuantity"]),
                         ("ORDER-CANCEL-STATE-COMPLETE", "ORDER-COMPLETE-STATE-PARTIAL", 1))
        self.assertEqual(len(self.soap_documents("order", 1)), 2)
        head = self.markers()["orderSyncMarker"]
        for bad in ({"orderId": oid}, {"orderId": "nope", "completeState": "COMPLETE"},
                    {"orderId": oid, "completeState": "DONE"},
                    {"orderId": oid, "cancelState": "PARTIAL-DELIVERY-PENDING"},
                    {"orderId": oid, "payments": {"method": "PIN"}}, {"orderId": oid, "state": "COMPLETE"}):
            with self.subTest(bad=bad):
                self.assertIn("error", self.control("POST", "/_sim/till/order", bad, status=400))
        self.assertIn("PARTIAL-DELIVERY-PENDING", self.control(
            "POST", "/_sim/till/order", {"orderId": oid, "completeState": "x"}, status=400)["error"])
        self.assertEqual(self.markers()["orderSyncMarker"], head)

    def free_stock(self, branch, articles):
        """{articleNumber: (amountFree, decimalPlacesFree)} through getStock (validated both ends)."""
        rows = self.soap(req_get_stock(branch, articles)).findall(q("articleStocks"))
        return {num(r, "articleNumber"): (num(r, "amountFree"), num(r, "decimalPlacesFree") or 0) for r in rows}

    def test_order_pickup_makes_a_linked_receipt(self):
        self.validating()
        order = self.sale({"document": "order", "customer": 10002, "extOrderId": "WEB-7",
                           "payments": [{"method": "CREDITCARD", "amount": 1000}],
                           "lines": [{"articleNumber": 2001, "quantity": 2}, {"articleNumber": 3001,
                                                                               "quantity": "0.500"}]})["order"]
        oid, total = order["orderId"], order["totalInclAmount"]
        self.assertEqual((total, order["prepaidAmount"]), (2 * 1995 + 945, 1000))
        self.assertEqual(self.free_stock(1, (2001, 3001)), {2001: (25, 0), 3001: (125, 1)})   # orders move none
        got = self.control("POST", "/_sim/till/order", {"orderId": oid, "pickup": {}})
        self.assertEqual(sorted(got), ["document", "order", "receipt"])
        self.assertEqual(got["document"], "receipt")
        receipt, changed = got["receipt"], got["order"]
        # The receipt: the order's relation, lines, VAT and totals; only the remainder paid, by PIN (the default).
        self.assertEqual((receipt["receiptType"], receipt["receiptNumber"]["number"], receipt["relationNumber"],
                          receipt["orderIds"], receipt["extOrderIds"], receipt["syncMarker"]),
                         ("RECEIPT-TYPE-RECEIPT", 1, 10002, {"id": [oid]}, {"id": ["WEB-7"]}, 1))
        for field in ("totalInclAmount", "totalExclAmount", "vatMethod", "vatGroupList"):
            self.assertEqual(receipt[field], order[field], field)
        lines = receipt["lineList"]["line"]
        self.assertEqual([(l["articleNumber"], l["data"]["quantity"], l["data"]["totalInclAmount"]) for l in lines],
                         [(l["articleNumber"], l["data"]["quantity"], l["data"]["totalInclAmount"])
                          for l in order["lineList"]["line"]])
        self.assertFalse({l["lineId"] for l in lines} & {l["lineId"] for l in order["lineList"]["line"]})
        self.assertFalse(any("deliveredQuantity" in l["data"] for l in lines))
        self.assertEqual([(p["method"], p["amount"]) for p in receipt["paymentList"]["payment"]],
                         [("PIN", total - 1000)])
        self.assertEqual((receipt["paidAmount"], receipt["state"]), (total - 1000, "RECEIPT-STATE-PAID"))
        # The order: delivered and complete, at its next marker; its own payments unchanged.
        self.assertEqual((changed["deliveryState"], changed["completeState"], changed["cancelState"]),
                         ("ORDER-DELIVERY-STATE-COMPLETE", "ORDER-COMPLETE-STATE-COMPLETE",
                          "ORDER-CANCEL-STATE-NOTHING"))
        self.assertEqual([(l["data"]["deliveredQuantity"], l["data"]["deliveredDecimalPlaces"])
                          for l in changed["lineList"]["line"]], [(2, 0), (500, 3)])
        self.assertEqual((changed["changeCounter"], changed["versionNumber"], changed["syncMarker"]),
                         (1, 2, order["syncMarker"] + 1))
        self.assertEqual((changed["prepaidAmount"], len(changed["paymentList"]["payment"])), (1000, 1))
        self.assertNotIn("invoiceIds", changed)
        self.assertEqual((self.markers()["receiptSyncMarker"], self.markers()["orderSyncMarker"]),
                         (1, order["syncMarker"] + 1))
        # Stock moves as for a till sale; no callback.
        self.assertEqual(self.free_stock(1, (2001, 3001)), {2001: (23, 0), 3001: (12, 0)})
        self.assertEqual(self.control("GET", "/_sim/callbacks"), [])
        # A fully prepaid order picked up ("pickup": true is {}): a receipt without payments, PAID.
        paid = self.sale({"document": "order", "kind": "card", "lines": [{"articleNumber": 1001}]})["order"]
        self.assertEqual(paid["prepaidAmount"], 250)
        second = self.control("POST", "/_sim/till/order", {"orderId": paid["orderId"], "pickup": True,
                                                           "workplaceNumber": 2})["receipt"]
        self.assertEqual((second["paymentList"], second["paidAmount"], second["state"], second["receiptNumber"]),
                         ({"payment": []}, 0, "RECEIPT-STATE-PAID",
                          dict(receipt["receiptNumber"], workplaceNumber=2, number=1)))
        self.assertNotIn("relationNumber", second)
        self.assertNotIn("extOrderIds", second)
        # getReceipts: the order references only with includeOrderReferences.
        plain = self.soap_documents("receipt", 1)
        self.assertEqual([text(r, "receiptId") for r in plain], [receipt["receiptId"], second["receiptId"]])
        self.assertEqual([(r.find(q("orderIds")), r.find(q("extOrderIds"))) for r in plain], [(None, None)] * 2)
        self.assertEqual([num(p, "amount") for p in plain[0].iter(q("payment"))], [total - 1000])
        self.assertEqual((num(plain[0], "paidAmount"), text(plain[0], "state")), (total - 1000, "RECEIPT-STATE-PAID"))
        self.assertEqual(plain[1].find(q("paymentList")).findall(q("payment")), [])
        for flag, expected in (("false", [[], []]), ("true", [[oid], [paid["orderId"]]])):
            with self.subTest(includeOrderReferences=flag):
                refs = self.soap_documents("receipt", 1, 100, N.includeOrderReferences(flag))
                self.assertEqual([ids(r, "orderIds") for r in refs], expected)
        refs = self.soap_documents("receipt", 1, 100, N.includeOrderReferences("true"))
        self.assertEqual((ids(refs[0], "extOrderIds"), refs[1].find(q("extOrderIds"))),
                         (["WEB-7"], None))
        # A poll of orders sees the picked-up order once, at its new marker, complete and delivered.
        orders = self.soap_documents("order", order["syncMarker"] + 1)
        self.assertEqual([(text(o, "orderId"), num(o, "syncMarker")) for o in orders][0], (oid, changed["syncMarker"]))
        self.assertEqual([text(o, "orderId") for o in self.soap_documents("order", 1)].count(oid), 1)
        self.assertEqual((text(orders[0], "completeState"), text(orders[0], "deliveryState"),
                          num(orders[0], "lineList/line/data/deliveredQuantity")),
                         ("ORDER-COMPLETE-STATE-COMPLETE", "ORDER-DELIVERY-STATE-COMPLETE", 2))

    def receipts_by_order(self, order_id):
        """getReceiptsByOrder (validated both ends): (result, [receipt elements])."""
        resp = self.soap(N.getReceiptsByOrder(N.orderId(order_id)))
        self.assertEqual([c.tag for c in resp], [q("result"), q("receiptList")])
        return text(resp, "result"), resp.find(q("receiptList")).findall(q("receipt"))

    def test_get_receipts_by_order(self):
        self.validating()
        order = self.sale({"document": "order", "customer": 10002, "extOrderId": "WEB-9", "payments": [],
                           "lines": [{"articleNumber": 2001, "quantity": 2}]})["order"]
        oid = order["orderId"]
        waiting = self.sale({"document": "order", "payments": [], "lines": [{"articleNumber": 1001}]})["order"]
        invoiced = self.sale({"document": "order", "payments": [], "lines": [{"articleNumber": 1002}]})["order"]
        # An existing order without receipts: OK with an empty list.
        self.assertEqual(self.receipts_by_order(oid), ("GET-RECEIPTS-BY-ORDER-RESULT-OK", []))
        self.sale({"kind": "cash", "lines": [{"articleNumber": 1001}]})   # a receipt of no order
        receipt = self.control("POST", "/_sim/till/order", {"orderId": oid, "pickup": {}})["receipt"]
        self.control("POST", "/_sim/till/order", {"orderId": invoiced["orderId"], "invoice": True})
        self.sale({"kind": "card", "lines": [{"articleNumber": 1002}]})
        # The picked-up order: its receipt, with the order references (getReceipts needs
        # includeOrderReferences for them).
        result, found = self.receipts_by_order(oid)
        self.assertEqual(result, "GET-RECEIPTS-BY-ORDER-RESULT-OK")
        self.assertEqual([(text(r, "receiptId"), num(r, "syncMarker"), ids(r, "orderIds"), ids(r, "extOrderIds"))
                          for r in found], [(receipt["receiptId"], receipt["syncMarker"], [oid], ["WEB-9"])])
        self.assertEqual((num(found[0], "relationNumber"), num(found[0], "totalInclAmount"),
                          num(found[0], "lineList/line/articleNumber"), num(found[0], "paidAmount")),
                         (10002, order["totalInclAmount"], 2001, order["totalInclAmount"]))
        # An invoice is no receipt; an order not picked up has none.
        for other in (invoiced, waiting):
            self.assertEqual(self.receipts_by_order(other["orderId"]), ("GET-RECEIPTS-BY-ORDER-RESULT-OK", []))
        # An unknown order id (a receipt id is not an order id): NOT-FOUND, with the required empty list.
        for unknown in ("no-such-order", receipt["receiptId"], ""):
            with self.subTest(unknown=unknown):
                self.assertEqual(self.receipts_by_order(unknown), ("GET-RECEIPTS-BY-ORDER-RESULT-NOT-FOUND", []))
        # The request is validated: orderId is required.
        status, _, data = self.post_soap(envelope(N.getReceiptsByOrder()))
        self.assertEqual(status, 500)
        self.assertEqual(self.fault(data)[0], "SOAP-ENV:Client")
        self.assertIn("orderId", self.fault(data)[1])
        log = [e for e in self.control("GET", "/_sim/requests") if e["operation"] == "getReceiptsByOrder"]
        self.assertEqual([(e["params"], e["result"], e["returned"]) for e in log[1:3]],
                         [({"orderId": oid}, "GET-RECEIPTS-BY-ORDER-RESULT-OK", 1),
                          ({"orderId": invoiced["orderId"]}, "GET-RECEIPTS-BY-ORDER-RESULT-OK", 0)])
        self.assertEqual((log[-2]["result"], log[-2]["returned"], log[-1]["validated"]),
                         ("GET-RECEIPTS-BY-ORDER-RESULT-NOT-FOUND", 0, "failed"))
        # Fault injection by operation: a rule for getReceiptsByOrder leaves getReceipts alone.
        self.control("POST", "/_sim/fault", {"kind": "http_503", "operation": "getReceiptsByOrder"})
        self.assertEqual(len(self.soap_documents("receipt", 1)), 3)
        self.assertEqual(self.post_soap(envelope(N.getReceiptsByOrder(N.orderId(oid))))[0], 503)
        self.assertEqual(self.receipts_by_order(oid)[0], "GET-RECEIPTS-BY-ORDER-RESULT-OK")
        self.control("POST", "/_sim/fault", {"kind": "result_failed", "operation": "getReceiptsByOrder"},
                     status=400)

    def test_order_invoice_links_both_ways(self):
        self.validating()
        order = self.sale({"document": "order", "customer": 10001, "payments": [], "reference": "PO-88",
                           "lines": [{"articleNumber": 2002, "quantity": 3}]})["order"]
        oid = order["orderId"]
        got = self.control("POST", "/_sim/till/order", {"orderId": oid, "invoice": True,
                                                        "timestamp": "2025-03-31T10:00:00+02:00"})
        self.assertEqual((sorted(got), got["document"]), (["document", "invoice", "order"], "invoice"))
        invoice, changed = got["invoice"], got["order"]
        self.assertEqual((invoice["invoiceType"], invoice["invoiceNumber"], invoice["orderIds"],
                          invoice["relationNumber"], invoice["relationVatNumber"], invoice["reference"]),
                         ("INVOICE-TYPE-INVOICE", {"year": 2025, "number": 1}, {"id": [oid]}, 10001,
                          "NL001234567B01", "PO-88"))
        self.assertEqual((invoice["financialDate"], invoice["dueDate"], invoice["invoiceAddress"]["city"]),
                         ({"day": 31, "mon": 3, "year": 2025}, {"day": 30, "mon": 4, "year": 2025}, "Utrecht"))
        for field in ("totalInclAmount", "totalExclAmount", "vatMethod", "vatGroupList"):
            self.assertEqual(invoice[field], order[field], field)
        self.assertEqual([(l["articleNumber"], l["data"]["quantity"]) for l in invoice["lineList"]["line"]],
                         [(2002, 3)])
        self.assertEqual((invoice["paymentList"], invoice["paidAmount"], invoice["state"], invoice["syncMarker"]),
                         ({"payment": []}, 0, "INVOICE-STATE-OUTSTANDING", 1))
        self.assertNotIn("sessionId", invoice)
        self.assertEqual((changed["invoiceIds"], changed["completeState"], changed["deliveryState"]),
                         ({"id": [invoice["invoiceId"]]}, "ORDER-COMPLETE-STATE-COMPLETE",
                          "ORDER-DELIVERY-STATE-NOTHING"))
        self.assertEqual((changed["changeCounter"], changed["versionNumber"], changed["syncMarker"]),
                         (1, 2, order["syncMarker"] + 1))
        self.assertEqual(self.free_stock(1, (2002,)), {2002: (30, 0)})   # an invoice of an order moves no stock
        # Both links reach a SOAP client, always.
        i = self.soap_documents("invoice", 1)[0]
        self.assertEqual((ids(i, "orderIds"), text(i, "state"), num(i, "paidAmount")),
                         ([oid], "INVOICE-STATE-OUTSTANDING", 0))
        o = self.soap_documents("order", changed["syncMarker"])[0]
        self.assertEqual((ids(o, "invoiceIds"), text(o, "completeState")),
                         ([invoice["invoiceId"]], "ORDER-COMPLETE-STATE-COMPLETE"))
        self.assertEqual(len(self.soap_documents("order", 1)), 1)
        # A prepaid order's invoice holds no payments either: its state is its own paymentList's.
        prepaid = self.sale({"document": "order", "kind": "card", "lines": [{"articleNumber": 1001}]})["order"]
        other = self.control("POST", "/_sim/till/order", {"orderId": prepaid["orderId"], "invoice": True,
                                                          "timestamp": "2025-03-31T11:00:00+02:00"})["invoice"]
        self.assertEqual((other["paidAmount"], other["state"], other["invoiceNumber"]["number"]),
                         (0, "INVOICE-STATE-OUTSTANDING", 2))
        self.assertNotIn("relationNumber", other)

    def test_order_pickup_and_invoice_refusals(self):
        order = self.sale({"document": "order", "customer": 10002, "payments": [{"method": "PIN", "amount": 500}],
                           "lines": [{"articleNumber": 2001}]})["order"]
        oid, open_amount = order["orderId"], order["totalInclAmount"] - 500
        cancelled = self.sale({"document": "order", "payments": [], "lines": [{"articleNumber": 1001}]})["order"]
        self.control("POST", "/_sim/till/order", {"orderId": cancelled["orderId"], "cancelState": "PARTIAL"})
        delivered = self.sale({"document": "order", "payments": [], "lines": [{"articleNumber": 1001}]})["order"]
        self.control("POST", "/_sim/till/order", {"orderId": delivered["orderId"], "deliveryState": "COMPLETE"})
        head = self.markers()
        # Over-payment at pickup: more than total - prepaidAmount.
        error = self.control("POST", "/_sim/till/order", {"orderId": oid, "pickup": {"payments": [
            {"method": "CASH", "amount": 1000}, {"method": "PIN", "amount": open_amount - 999}]}}, status=400)
        self.assertIn("over-payment", error["error"])
        for bad in ({"orderId": oid, "pickup": {}, "completeState": "COMPLETE"},
                    {"orderId": oid, "pickup": {}, "invoice": True},
                    {"orderId": oid, "invoice": True, "payments": [{"method": "PIN", "amount": 1}]},
                    {"orderId": oid, "invoice": False}, {"orderId": oid, "pickup": "yes"},
                    {"orderId": oid, "pickup": {"payments": [], "note": "x"}},
                    {"orderId": oid, "pickup": {"payments": [{"method": "BITCOIN", "amount": open_amount}]}},
                    {"orderId": oid, "pickup": {"payments": [{"method": "PIN", "amount": -1}]}},
                    {"orderId": oid, "pickup": {}, "employeeNumber": 77},
                    {"orderId": "nope", "pickup": {}},
                    {"orderId": cancelled["orderId"], "pickup": {}}, {"orderId": cancelled["orderId"], "invoice": True},
                    {"orderId": delivered["orderId"], "pickup": {}}):
            with self.subTest(bad=bad):
                self.assertIn("error", self.control("POST", "/_sim/till/order", bad, status=400))
        self.assertEqual(self.markers(), head)
        # Exactly the open amount is fine; then the order is complete and cannot be picked up or invoiced.
        receipt = self.control("POST", "/_sim/till/order", {"orderId": oid, "pickup": {"payments": [
            {"method": "CASH", "amount": 1000}, {"method": "PIN", "amount": open_amount - 1000}]}})["receipt"]
        self.assertEqual(receipt["paidAmount"], open_amount)
        head = self.markers()
        for action in ({"pickup": {}}, {"invoice": True}):
            error = self.control("POST", "/_sim/till/order", dict(action, orderId=oid), status=400)
            self.assertIn("already complete", error["error"])
        self.assertEqual(self.markers(), head)
        # A delivered (not yet complete) order may be invoiced, but only once: even with its
        # completeState put back, an invoiced order gets no second invoice and no pickup.
        invoiced = self.control("POST", "/_sim/till/order", {"orderId": delivered["orderId"], "invoice": True})
        self.assertEqual(invoiced["order"]["deliveryState"], "ORDER-DELIVERY-STATE-COMPLETE")
        self.control("POST", "/_sim/till/order", {"orderId": delivered["orderId"], "completeState": "NOTHING"})
        head = self.markers()
        for action in ({"invoice": True}, {"pickup": {}}):
            error = self.control("POST", "/_sim/till/order", dict(action, orderId=delivered["orderId"]), status=400)
            self.assertIn("already invoiced", error["error"])
        self.assertEqual(self.markers(), head)

    def test_bulk_sales(self):
        # About 3.5 s on an idle 2-core machine, far longer beside the sanitized suite: no time bound here,
        # scripts/bench-sales measures how long the simulator takes.
        bulk = self.control("POST", "/_sim/till/sales", {"count": 20000, "spec": {"kind": "card"}, "vary": True},
                            timeout=300)
        self.assertEqual((bulk["document"], bulk["count"], bulk["lines"]), ("receipt", 20000, 100000))
        self.assertEqual((bulk["first_sync_marker"], bulk["last_sync_marker"]), (1, 20000))
        self.assertEqual(bulk["markers"]["receiptSyncMarker"], 20000)
        self.assertIsNone(bulk["callbacks"])
        self.validating()
        receipts = self.soap_documents("receipt", 1, 3)
        lines = [[(num(l, "articleNumber"), text(l, "data/quantity"), num(l, "data/decimalPlaces"))
                  for l in r.find(q("lineList")).findall(q("line"))] for r in receipts]
        # Catalogue order 1001 1002 2001 2002 2003 3001 4001, cycling; kg quantities with 3 decimals.
        self.assertEqual([[a for a, _, _ in doc] for doc in lines],
                         [[1001, 1002, 2001, 2002, 2003], [3001, 4001, 1001, 1002, 2001],
                          [2002, 2003, 3001, 4001, 1001]])
        self.assertEqual(lines[1][0], (3001, "1234", 3))
        self.assertEqual([num(p, "amount") for p in receipts[0].iter(q("payment"))],
                         [num(receipts[0], "totalInclAmount")])
        self.assertEqual(len(self.soap_documents("receipt", 19990, 100)), 11)
        self.assertEqual(self.control("GET", "/_sim/callbacks"), [])
        # Without vary: the spec as it is; callbacks on request; invoices too.
        self.listener.drain()
        few = self.control("POST", "/_sim/till/sales", {"count": 3, "wait": True, "spec": {
            "kind": "cash", "document": "invoice", "customer": 10001, "callback": True, "vatMethod": "exclusive",
            "lines": [{"articleNumber": 1001, "quantity": 2, "price": 229}]}})
        self.assertEqual((few["document"], few["count"], few["totalInclAmount"]), ("invoice", 3, 3 * 499))
        self.assertEqual(few["callbacks"], {"sent": 3, "status": {"200": 3}})
        bodies = [json.loads(self.listener.next()[2]) for _ in range(3)]
        self.assertEqual([b["session"]["totalInclAmount"] for b in bodies], [4.99] * 3)
        invoices = self.soap_documents("invoice", 1)
        self.assertEqual([text(i, "sessionId") for i in invoices], [b["session"]["sessionId"] for b in bodies])
        head = self.markers()
        for bad in ({"count": 0, "spec": {}}, {"count": "5", "spec": {"lines": [{"articleNumber": 1001}]}},
                    {"count": 2}, {"count": 2, "spec": {"lines": [{"articleNumber": 99}]}},
                    {"count": 2, "spec": {"lines": [{"articleNumber": 1001}]}, "nope": 1},
                    {"count": 2, "spec": {"lines": "x"}, "vary": True}):
            with self.subTest(bad=bad):
                self.assertIn("error", self.control("POST", "/_sim/till/sales", bad, status=400))
        self.assertEqual(self.markers(), head)

    def test_preparation_and_component_lines(self):
        self.validating()
        sale = self.sale({"kind": "cash", "lines": [
            {"articleNumber": 1002, "quantity": 2},
            {"articleNumber": 1001, "lineType": "PREPARATION", "text": "extra shot"},
            {"articleNumber": 4001, "lineType": "COMPONENT", "quantity": 2},
            {"articleNumber": 2001}]})
        receipt = sale["receipt"]
        lines = receipt["lineList"]["line"]
        self.assertEqual([l["articleNumber"] for l in lines], [1002, 2001])
        preps = lines[0]["preparationList"]["line"]
        self.assertEqual([(p["articleNumber"], p["lineType"], p["text"], p["data"]["price"], p["data"]["quantity"],
                           p["data"]["totalInclAmount"]) for p in preps],
                         [(1001, "LINE-TYPE-PREPARATION", "extra shot", 0, 1, 0),
                          (4001, "LINE-TYPE-COMPONENT", "Postzegel NL 1", 0, 2, 0)])
        self.assertEqual(receipt["totalInclAmount"], 2 * 320 + 1995)
        self.assertEqual({g["vatCode"] for g in receipt["vatGroupList"]["vatGroup"]}, {1, 2})
        self.assertEqual([l["articleNumber"] for l in json.loads(self.listener.next()[2])["session"]["lines"]],
                         [1002, 2001])
        r = self.soap_documents("receipt", 1)[0]
        top = r.find(q("lineList")).findall(q("line"))
        nested = top[0].find(q("preparationList")).findall(q("line"))
        self.assertEqual([(num(l, "articleNumber"), text(l, "lineType")) for l in nested],
                         [(1001, "LINE-TYPE-PREPARATION"), (4001, "LINE-TYPE-COMPONENT")])
        self.assertEqual(text(top[0], "lineType"), "LINE-TYPE-NONE")
        # A credit copies the preparations, negated.
        credit = self.sale({"kind": "credit", "credits": receipt["receiptId"], "callback": False})["receipt"]
        preps = credit["lineList"]["line"][0]["preparationList"]["line"]
        self.assertEqual([(p["lineType"], p["data"]["quantity"]) for p in preps],
                         [("LINE-TYPE-PREPARATION", -1), ("LINE-TYPE-COMPONENT", -2)])
        self.assertEqual(credit["totalInclAmount"], -receipt["totalInclAmount"])
        for lines in ([{"articleNumber": 1001, "lineType": "PREPARATION"}],
                      [{"articleNumber": 1002}, {"articleNumber": 1001, "lineType": "PREPARATION", "price": 50}],
                      [{"articleNumber": 1002}, {"articleNumber": 1001, "lineType": "COMPONENT",
                                                 "discountPercentage": 10}],
                      [{"articleNumber": 1002}, {"articleNumber": 1001, "lineType": "MENU"}]):
            with self.subTest(lines=lines):
                self.assertIn("error", self.sale({"lines": lines}, status=400))
        self.assertEqual(self.markers()["receiptSyncMarker"], 2)


def operations_from_wsdl():
    wsdl = "http://schemas.xmlsoap.org/wsdl/"
    root = etree.parse(os.path.join(FIXTURES, "mplusqapi.wsdl")).getroot()
    messages = {m.get("name"): m.find("{%s}part" % wsdl).get("element").split(":")[1]
                for m in root.findall("{%s}message" % wsdl)}
    return {op.get("name"): (messages[op.find("{%s}input" % wsdl).get("message").split(":")[1]],
                             messages[op.find("{%s}output" % wsdl).get("message").split(":")[1]])
            for op in root.find("{%s}portType" % wsdl).findall("{%s}operation" % wsdl)}


SIM_OPERATIONS = operations_from_wsdl()


if __name__ == "__main__":
    if len(sys.argv) > 1 and not sys.argv[1].startswith("-"):
        del sys.argv[1]   # the gateway binary ctest passes; not needed here
    unittest.main(verbosity=2)
