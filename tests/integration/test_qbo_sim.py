"""test_qbo_sim - self-test of the QuickBooks Online simulator (tests/sim/qbo_sim.py).

Starts the simulator as a subprocess and checks through HTTP the behaviours
the gateway's tests rely on: OAuth (code exchange, refresh-token rotation,
expiry, revocation), reads and writes with SyncToken, requestid idempotency,
QBO's validation faults (references, line amounts, tax totals), payments
against invoices, void, exact decimal amounts, the seeded accounts and the
Item rules (types, accounts, inventory, categories, quantity on hand), the
query language (with case-sensitive '='), CDC, throttling, every injected
fault kind, the request log's filters and signed webhooks.

    python3 tests/integration/test_qbo_sim.py [GATEWAY_BINARY] [unittest args]

The gateway binary argument (passed by ctest like to every integration test)
is not used.  Python 3 standard library only.
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
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
SIM = os.path.normpath(os.path.join(HERE, "..", "sim", "qbo_sim.py"))
FIXTURES = os.path.normpath(os.path.join(HERE, "..", "fixtures", "quickbooks"))

HOST = "127.0.0.1"
REALM, OTHER_REALM = "1234", "5678"
CLIENT_ID, CLIENT_SECRET = "sim-client", "sim-secret"
VERIFIER = "b5771f19b12ddb4bcdb9f08bdc50bc63878a"
REDIRECT = "https://gateway.example.com/oauth/quickbooks/callback"


def fixture_bytes(*path):
    with open(os.path.join(FIXTURES, *path), "rb") as f:
        return f.read()


def fixture_json(*path):
    return json.loads(fixture_bytes(*path).decode("utf-8-sig"))


class WebhookListener:
    """A local receiver for the simulator's webhooks; answers with queued statuses (200 when none)."""

    def __init__(self):
        self.received = queue.Queue()
        self.statuses = queue.Queue()
        listener = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                listener.received.put((dict(self.headers), body))
                try:
                    status = listener.statuses.get_nowait()
                except queue.Empty:
                    status = 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer((HOST, 0), Handler)
        self.url = "http://%s:%d/webhooks/quickbooks" % (HOST, self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def next(self, timeout=5):
        return self.received.get(timeout=timeout)

    def drain(self):
        while not self.received.empty():
            self.received.get_nowait()
        while not self.statuses.empty():
            self.statuses.get_nowait()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class SimTest(unittest.TestCase):
    """One simulator for the whole run; every test starts from POST /_sim/reset."""

    @classmethod
    def setUpClass(cls):
        cls.listener = WebhookListener()
        cls.proc = subprocess.Popen(
            [sys.executable, SIM, "--port", "0", "--realm", REALM, "--realm", OTHER_REALM,
             "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET, "--verifier-token", VERIFIER],
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
        self.token = self.connect(REALM)["access_token"]
        # Tests make bursts of calls; test_throttling checks the real limits.
        self.control("POST", "/_sim/config", {"rate_per_sec": 1000, "rate_per_min": 100000})

    # -- HTTP helpers --

    def http(self, method, path, body=None, headers=None, timeout=5):
        """(status, headers dict with lower-case names, body bytes) of one request."""
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

    def control(self, method, path, body=None):
        status, _, data = self.http(method, path, body if body is not None else ({} if method == "POST" else None))
        self.assertEqual(status, 200, data)
        return json.loads(data)

    def token_request(self, form, client=(CLIENT_ID, CLIENT_SECRET)):
        basic = base64.b64encode(("%s:%s" % client).encode()).decode()
        status, _, data = self.http("POST", "/oauth2/v1/tokens/bearer", urllib.parse.urlencode(form),
                                    {"Authorization": "Basic " + basic,
                                     "Content-Type": "application/x-www-form-urlencoded"})
        return status, json.loads(data)

    def refresh(self, refresh_token):
        return self.token_request({"grant_type": "refresh_token", "refresh_token": refresh_token})

    def connect(self, realm):
        """A fresh token grant for a realm, through /_sim/token and a refresh."""
        refresh_token = self.control("POST", "/_sim/token", {"realm": realm})["refresh_token"]
        status, grant = self.refresh(refresh_token)
        self.assertEqual(status, 200, grant)
        return grant

    def api(self, method, path, body=None, token=None, realm=REALM, **kw):
        """(status, parsed JSON or raw bytes, headers) of an Accounting API call."""
        headers = {"Authorization": "Bearer " + (token or self.token), "Accept": "application/json"}
        if isinstance(body, str):
            headers["Content-Type"] = "application/text"
        status, hdrs, data = self.http(method, "/v3/company/%s/%s" % (realm, path), body, headers, **kw)
        try:
            return status, json.loads(data), hdrs
        except ValueError:
            return status, data, hdrs

    def create(self, entity, obj, **kw):
        status, data, _ = self.api("POST", entity.lower() + "?minorversion=75", obj, **kw)
        self.assertEqual(status, 200, data)
        return data[entity]

    def query(self, statement):
        return self.api("GET", "query?" + urllib.parse.urlencode({"query": statement}))

    def seed(self, entity, obj, realm=REALM):
        """An object made "in the QuickBooks UI" (control API: no checks)."""
        return self.control("POST", "/_sim/entity", {"realm": realm, "entity": entity, "object": obj})

    def raw_post(self, path, text):
        """(status, body bytes) of an API POST whose JSON body is sent exactly as written."""
        status, _, data = self.http("POST", "/v3/company/%s/%s" % (REALM, path), text,
                                    {"Authorization": "Bearer " + self.token, "Accept": "application/json",
                                     "Content-Type": "application/json"})
        return status, data

    @staticmethod
    def service(name, **fields):
        """A Service Item body; Account 1 "Services" is in every new company."""
        return dict({"Name": name, "Type": "Service", "IncomeAccountRef": {"value": "1"}}, **fields)

    def sales_line(self, amount, item_id="1", **detail):
        return {"Amount": amount, "DetailType": "SalesItemLineDetail",
                "SalesItemLineDetail": dict({"ItemRef": {"value": item_id}}, **detail)}

    def payment(self, total, *applied, **fields):
        """A Payment body: applied is (TxnType, TxnId, Amount) per line."""
        lines = [{"Amount": amount, "LinkedTxn": [{"TxnId": txn_id, "TxnType": txn_type}]}
                 for txn_type, txn_id, amount in applied]
        return dict({"CustomerRef": {"value": "1"}, "TotalAmt": total, "Line": lines}, **fields)

    def assertFault(self, status, data, code, http_status=400):
        self.assertEqual(status, http_status, data)
        self.assertEqual(data["Fault"]["Error"][0]["code"], code, data)
        self.assertIn("time", data)
        return data["Fault"]["Error"][0]

    # -- OAuth --

    def test_oauth_code_exchange_and_refresh_rotation(self):
        query = urllib.parse.urlencode({"client_id": CLIENT_ID, "response_type": "code", "state": "st-1",
                                        "scope": "com.intuit.quickbooks.accounting", "redirect_uri": REDIRECT})
        status, headers, _ = self.http("GET", "/connect/oauth2?" + query)
        self.assertEqual(status, 302)
        location = urllib.parse.urlsplit(headers["location"])
        self.assertEqual("%s://%s%s" % (location.scheme, location.netloc, location.path), REDIRECT)
        back = dict(urllib.parse.parse_qsl(location.query))
        self.assertEqual((back["state"], back["realmId"]), ("st-1", REALM))

        code_form = {"grant_type": "authorization_code", "code": back["code"], "redirect_uri": REDIRECT}
        self.assertEqual(self.token_request(code_form, (CLIENT_ID, "wrong")), (401, {"error": "invalid_client"}))
        status, grant = self.token_request(code_form)
        self.assertEqual(status, 200, grant)
        self.assertEqual(set(grant), {"token_type", "expires_in", "access_token", "refresh_token",
                                      "x_refresh_token_expires_in"})
        self.assertEqual((grant["token_type"], grant["expires_in"]), ("bearer", 3600))
        self.assertEqual(self.token_request(code_form), (400, {"error": "invalid_grant"}), "code is single-use")

        status, rotated = self.refresh(grant["refresh_token"])
        self.assertEqual(status, 200)
        self.assertNotEqual(rotated["refresh_token"], grant["refresh_token"])
        self.assertEqual(self.refresh(grant["refresh_token"]), (400, {"error": "invalid_grant"}))
        status, _, _ = self.api("GET", "companyinfo/" + REALM, token=rotated["access_token"])
        self.assertEqual(status, 200)
        self.assertEqual(self.refresh(rotated["refresh_token"])[0], 200)

    def test_redirect_uri_must_match(self):
        query = urllib.parse.urlencode({"client_id": CLIENT_ID, "response_type": "code", "redirect_uri": REDIRECT})
        _, headers, _ = self.http("GET", "/connect/oauth2?" + query)
        code = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(headers["location"]).query))["code"]
        status, answer = self.token_request({"grant_type": "authorization_code", "code": code,
                                             "redirect_uri": "https://evil.example/cb"})
        self.assertEqual((status, answer), (400, {"error": "invalid_grant"}))

    def test_refresh_grace_and_no_rotation(self):
        first = self.control("POST", "/_sim/token", {"realm": REALM})["refresh_token"]
        self.control("POST", "/_sim/config", {"refresh_grace": 30})
        _, second = self.refresh(first)
        status, again = self.refresh(first)
        self.assertEqual(status, 200, "the old token works within the grace period")
        self.assertEqual(again["refresh_token"], second["refresh_token"], "and yields the current token")
        self.control("POST", "/_sim/config", {"rotate_refresh": False})
        _, third = self.refresh(second["refresh_token"])
        self.assertEqual(third["refresh_token"], second["refresh_token"])

    def test_access_token_expiry_and_revocation(self):
        grant = self.connect(REALM)
        self.control("POST", "/_sim/expire_tokens")
        status, body, headers = self.api("GET", "companyinfo/" + REALM, token=grant["access_token"])
        self.assertEqual(status, 401)
        self.assertEqual(headers["www-authenticate"], 'Bearer realm="Intuit", error="invalid_token"')
        self.assertEqual(body["fault"]["error"][0]["code"], "3200")
        self.assertEqual(body["fault"]["type"], "AUTHENTICATION")

        self.control("POST", "/_sim/config", {"access_ttl": 2})
        status, fresh = self.refresh(grant["refresh_token"])
        self.assertEqual((status, fresh["expires_in"]), (200, 2))
        self.assertEqual(self.api("GET", "companyinfo/" + REALM, token=fresh["access_token"])[0], 200)
        time.sleep(2.1)
        self.assertEqual(self.api("GET", "companyinfo/" + REALM, token=fresh["access_token"])[0], 401)

        self.assertEqual(self.api("GET", "customer/1", token="not-a-token")[0], 401)
        other = self.connect(OTHER_REALM)["access_token"]
        self.assertEqual(self.api("GET", "companyinfo/" + REALM, token=other)[0], 403, "token of another realm")

        self.control("POST", "/_sim/revoke")
        self.assertEqual(self.refresh(fresh["refresh_token"]), (400, {"error": "invalid_grant"}))

    # -- reads and writes --

    def test_create_read_sparse_update_and_stale_object(self):
        created = self.create("Customer", {"DisplayName": "Jane Doe", "GivenName": "Jane",
                                           "PrimaryEmailAddr": {"Address": "jane@example.com"}})
        self.assertEqual((created["SyncToken"], created["domain"], created["sparse"]), ("0", "QBO", False))
        self.assertEqual(set(created["MetaData"]), {"CreateTime", "LastUpdatedTime"})
        second = self.create("Customer", {"DisplayName": "John Roe"})
        self.assertEqual(int(second["Id"]), int(created["Id"]) + 1)

        status, read, _ = self.api("GET", "customer/%s?minorversion=75" % created["Id"])
        self.assertEqual(status, 200)
        self.assertEqual(read["Customer"], created)
        self.assertIn("time", read)

        updated = self.create("Customer", {"Id": created["Id"], "SyncToken": "0", "sparse": True,
                                           "DisplayName": "Jane Q. Doe"})
        self.assertEqual(updated["SyncToken"], "1")
        self.assertEqual(updated["PrimaryEmailAddr"], {"Address": "jane@example.com"}, "sparse keeps other fields")

        status, data, _ = self.api("POST", "customer", {"Id": created["Id"], "SyncToken": "0", "sparse": True,
                                                        "GivenName": "J"})
        error = self.assertFault(status, data, "5010")
        expected = fixture_json("errors", "fault_5010_stale_object.json")["Fault"]["Error"][0]
        self.assertEqual(set(error), set(expected))
        self.assertEqual((error["Message"], data["Fault"]["type"]), ("Stale Object Error", "ValidationFault"))

        full = self.create("Customer", {"Id": created["Id"], "SyncToken": "1", "DisplayName": "Jane Doe"})
        self.assertNotIn("PrimaryEmailAddr", full, "a full update clears omitted fields")
        self.assertEqual(full["SyncToken"], "2")

        status, data, _ = self.api("GET", "customer/999")
        self.assertFault(status, data, "610")

    def test_requestid_makes_writes_idempotent(self):
        path = "customer?requestid=req-42"
        first = self.api("POST", path, {"DisplayName": "Once Only"})
        second = self.api("POST", path, {"DisplayName": "Once Only"})
        self.assertEqual(first[0], 200)
        self.assertEqual(first[:2], second[:2])
        self.assertEqual(len(self.control("GET", "/_sim/entities?realm=%s&entity=Customer" % REALM)), 1)
        self.assertEqual(self.api("POST", "customer?requestid=req-43", {"DisplayName": "Once Only"})[1]
                         ["Fault"]["Error"][0]["code"], "6240")

    def test_batch_runs_items_in_order_and_answers_faults_in_place(self):
        self.create("Vendor", {"DisplayName": "Boraski Family Store"})
        request = {"BatchItemRequest": [
            {"bId": "bid1", "operation": "create", "Item": {"Name": "Batch One", "Type": "Service", "IncomeAccountRef": {"value": "79"}}},
            {"bId": "bid2", "operation": "create", "Item": {"Name": "batch one", "Type": "Service", "IncomeAccountRef": {"value": "79"}}},
            {"bId": "bid3", "operation": "create", "Vendor": {"DisplayName": "Boraski Family Store"}},
            {"bId": "bid4", "Query": "select * from Item where Name = 'Batch One'"},
            {"bId": "bid5", "operation": "delete", "Invoice": {"Id": "999", "SyncToken": "0"}},
        ]}
        status, data, _ = self.api("POST", "batch?requestid=b-1", request)
        self.assertEqual(status, 200, "a batch answers 200 even when items fail")
        answers = {a["bId"]: a for a in data["BatchItemResponse"]}
        self.assertEqual([a["bId"] for a in data["BatchItemResponse"]], ["bid1", "bid2", "bid3", "bid4", "bid5"])
        made = answers["bid1"]["Item"]
        self.assertEqual((made["Name"], made["SyncToken"]), ("Batch One", "0"))
        # An item's fault in its place, as the recorded batch (vcr/batch_mixed_with_faults.yml)
        # and a single request's fault have it.
        real = fixture_json("errors", "fault_6240_duplicate_name.json")["Fault"]
        fault = answers["bid2"]["Fault"]
        self.assertEqual((fault["type"], fault["Error"][0]["code"]), (real["type"], "6240"),
                         "the item before it is seen")
        self.assertLessEqual(set(fault["Error"][0]), set(real["Error"][0]))
        self.assertEqual(set(answers["bid2"]), {"bId", "Fault"})
        self.assertEqual(answers["bid3"]["Fault"]["Error"][0]["code"], "6240")
        self.assertEqual([i["Id"] for i in answers["bid4"]["QueryResponse"]["Item"]], [made["Id"]])
        self.assertEqual(answers["bid5"]["Fault"]["Error"][0]["code"], "610")
        again = self.api("POST", "batch?requestid=b-1", request)
        self.assertEqual(again[:2], (status, data), "a batch's requestid makes it idempotent too")
        items = self.control("GET", "/_sim/entities?realm=%s&entity=Item" % REALM)
        self.assertEqual(len([i for i in items if i["Name"] == "Batch One"]), 1)
        status, data, _ = self.api("POST", "batch", {"BatchItemRequest": [
            {"bId": "a", "operation": "create", "Item": {"Id": made["Id"], "SyncToken": "0", "Name": "X"}},
            {"bId": "b", "operation": "update", "Item": {"Name": "No Id", "Type": "Service"}}]})
        self.assertEqual([a["Fault"]["type"] for a in data["BatchItemResponse"]], ["ValidationFault"] * 2,
                         "a batch item says its operation: a create with an Id, an update without one, fail")
        kept = [i for i in self.control("GET", "/_sim/entities?realm=%s&entity=Item" % REALM)
                if i["Id"] == made["Id"]]
        self.assertEqual(kept[0]["Name"], "Batch One", "the create with an Id changed nothing")
        status, data, _ = self.api("POST", "batch", {"BatchItemRequest": [
            {"bId": str(i), "operation": "create", "Item": {"Name": "Many %d" % i, "Type": "Service", "IncomeAccountRef": {"value": "79"}}}
            for i in range(31)]})
        self.assertEqual(status, 400, "at most 30 items a batch")
        self.assertEqual(len([i for i in self.control("GET", "/_sim/entities?realm=%s&entity=Item" % REALM)
                              if i["Name"].startswith("Many ")]), 0)

    def test_duplicate_and_invalid_display_names(self):
        self.create("Customer", {"DisplayName": "Weiskopf Consulting"})
        status, data, _ = self.api("POST", "vendor", {"DisplayName": "weiskopf consulting"})
        error = self.assertFault(status, data, "6240")
        self.assertEqual(error, {"Message": "Duplicate Name Exists Error",
                                 "Detail": "The name supplied already exists. : null", "code": "6240"})
        for bad in ("Parent:Child", "Tab\tName", "New\nLine"):
            status, data, _ = self.api("POST", "customer", {"DisplayName": bad})
            self.assertFault(status, data, "2040")

    def test_unknown_properties_are_rejected(self):
        status, data, _ = self.api("POST", "invoice", {"BadJson": True})
        error = self.assertFault(status, data, "2010")
        self.assertEqual(error["Message"], "Request has invalid or unsupported property")
        self.assertIn('Unrecognized field "BadJson"', error["Detail"])
        line = {"Amount": 10, "DetailType": "SalesItemLineDetail",
                "SalesItemLineDetail": {"ItemRef": {"value": "1"}, "Qty": 1, "UnitPrice": 10, "Colour": "red"}}
        status, data, _ = self.api("POST", "salesreceipt", {"Line": [line]})
        self.assertIn('"Colour"', self.assertFault(status, data, "2010")["Detail"])
        # Every key of a real recorded object is accepted.
        item = fixture_json("rest", "item_read_inventory.json")["Item"]
        for key in ("Id", "SyncToken", "MetaData"):
            del item[key]
        self.assertEqual(self.create("Item", item)["Name"], "Pump")

    def test_sales_receipt_line_amounts_totals_and_doc_numbers(self):
        self.create("Item", self.service("Hours"))  # the ItemRef below
        line = {"Amount": 10.01, "DetailType": "SalesItemLineDetail",
                "SalesItemLineDetail": {"ItemRef": {"value": "1"}, "Qty": 3, "UnitPrice": 3.335}}
        receipt = self.create("SalesReceipt", {"DocNumber": "R-1", "Line": [line, dict(line, Amount=10.01)],
                                               "TxnTaxDetail": {"TotalTax": 1.5}})
        self.assertEqual(receipt["TotalAmt"], 21.52)
        self.assertEqual(receipt["Line"][-1], {"Amount": 20.02, "DetailType": "SubTotalLineDetail",
                                               "SubTotalLineDetail": {}})
        self.assertEqual([l["LineNum"] for l in receipt["Line"][:2]], [1, 2])

        wrong = dict(line, Amount=10.00)
        status, data, _ = self.api("POST", "salesreceipt", {"Line": [line, wrong]})
        error = self.assertFault(status, data, "6070")
        self.assertIn("Amount is not equal to UnitPrice * Qty", error["Detail"])
        self.assertEqual(error["element"], "Line[2].Amount")

        status, data, _ = self.api("POST", "salesreceipt", {"DocNumber": "R-1", "Line": [line]})
        self.assertEqual(self.assertFault(status, data, "6140")["Message"], "Duplicate Document Number Error")

    def test_void_and_delete(self):
        self.create("Item", self.service("Hours"))  # the ItemRef below
        line = {"Amount": 5, "DetailType": "SalesItemLineDetail",
                "SalesItemLineDetail": {"ItemRef": {"value": "1"}, "Qty": 1, "UnitPrice": 5}}
        receipt = self.create("SalesReceipt", {"Line": [line]})
        status, data, _ = self.api("POST", "salesreceipt?operation=void",
                                   {"Id": receipt["Id"], "SyncToken": receipt["SyncToken"]})
        self.assertEqual(status, 200, data)
        voided = data["SalesReceipt"]
        self.assertEqual((voided["SyncToken"], voided["PrivateNote"], voided["TotalAmt"]), ("1", "Voided", 0))
        self.assertEqual(voided["Line"][0]["SalesItemLineDetail"]["Qty"], 0)
        self.assertLessEqual(set(fixture_json("rest", "salesreceipt_void.json")["SalesReceipt"]) - set(voided),
                             {"PrintStatus", "EmailStatus", "DepositToAccountRef", "CustomField",
                              "ApplyTaxAfterDiscount"})

        status, data, _ = self.api("POST", "salesreceipt?operation=delete", {"Id": receipt["Id"], "SyncToken": "1"})
        self.assertEqual(data["SalesReceipt"], {"domain": "QBO", "status": "Deleted", "Id": receipt["Id"]})
        self.assertFault(*self.api("GET", "salesreceipt/" + receipt["Id"])[:2], "610")

        customer = self.create("Customer", {"DisplayName": "Thrifty Meats"})
        status, data, _ = self.api("POST", "customer?operation=delete", {"Id": customer["Id"], "SyncToken": "0"})
        gone = data["Customer"]
        self.assertEqual((gone["Active"], gone["DisplayName"]), (False, "Thrifty Meats (deleted)"))
        self.assertEqual(self.query("SELECT * FROM Customer")[1]["QueryResponse"], {}, "inactive ones are hidden")
        self.assertEqual(len(self.query("SELECT * FROM Customer WHERE Active = false")[1]
                             ["QueryResponse"]["Customer"]), 1)
        self.create("Customer", {"DisplayName": "Thrifty Meats"})  # the name is free again

    def test_void_covers_refunds_credit_memos_and_invoices(self):
        self.create("Item", self.service("Hours"))
        for entity in ("Invoice", "RefundReceipt", "CreditMemo", "SalesReceipt"):
            doc = self.create(entity, {"Line": [self.sales_line(8)], "TxnTaxDetail": {"TotalTax": 1}})
            self.assertEqual(doc["TotalAmt"], 9, entity)
            status, data, _ = self.api("POST", entity.lower() + "?operation=void",
                                       {"Id": doc["Id"], "SyncToken": "0"})
            self.assertEqual(status, 200, data)
            voided = data[entity]
            self.assertEqual((voided["PrivateNote"], voided["TotalAmt"], voided["Balance"],
                              voided["TxnTaxDetail"]["TotalTax"], voided["Line"][0]["Amount"]),
                             ("Voided", 0, 0, 0, 0), entity)
        customer = self.create("Customer", {"DisplayName": "Not Voidable"})
        status, data, _ = self.api("POST", "customer?operation=void", {"Id": customer["Id"], "SyncToken": "0"})
        self.assertEqual(self.assertFault(status, data, "500")["Message"], "Unsupported Operation")

    # -- references, tax, payments and exact amounts --

    def test_references_must_name_stored_objects(self):
        self.create("Customer", {"DisplayName": "Cool Cars"})           # Customer 1
        self.create("Item", self.service("Hours"))       # Item 1
        self.create("Item", self.service("Old Stock"))   # Item 2
        self.seed("TaxCode", {"Id": "3", "Name": "21% S"})             # TaxCode create is not in the API
        good = [self.sales_line(10, TaxCodeRef={"value": "TAX"}), self.sales_line(5, TaxCodeRef={"value": "NON"}),
                self.sales_line(2, TaxCodeRef={"value": "3"})]
        receipt = self.create("SalesReceipt", {"CustomerRef": {"value": "1"}, "Line": good})
        self.assertEqual(receipt["TotalAmt"], 17)

        def refused(entity, body, element):
            status, data, _ = self.api("POST", entity.lower(), body)
            error = self.assertFault(status, data, "2500")
            self.assertEqual((error["Message"], error["element"]), ("Invalid Reference Id", element), entity)
            self.assertTrue(error["Detail"].startswith("Invalid Reference Id : "), error)
            return error

        refused("SalesReceipt", {"Line": [good[0], self.sales_line(1, item_id="99")]},
                "Line[2].SalesItemLineDetail.ItemRef")
        refused("Invoice", {"Line": [self.sales_line(1, TaxCodeRef={"value": "7"})]},
                "Line[1].SalesItemLineDetail.TaxCodeRef")
        for entity in ("SalesReceipt", "Invoice", "RefundReceipt", "CreditMemo"):
            refused(entity, {"CustomerRef": {"value": "42"}, "Line": good}, "CustomerRef")
        refused("Payment", self.payment(1, CustomerRef={"value": "42"}), "CustomerRef")

        # A deleted (inactive) item or customer is refused too, also when an old
        # transaction that uses it is modified.
        self.api("POST", "item?operation=delete", {"Id": "2", "SyncToken": "0"})
        error = refused("SalesReceipt", {"Line": [self.sales_line(1, item_id="2")]},
                        "Line[1].SalesItemLineDetail.ItemRef")
        self.assertIn("Item assigned to this transaction has been deleted", error["Detail"])
        self.assertIn("you must restore Old Stock (deleted).", error["Detail"])
        self.api("POST", "customer?operation=delete", {"Id": "1", "SyncToken": "0"})
        error = refused("SalesReceipt", dict(receipt, sparse=True), "CustomerRef")
        self.assertIn("you must restore Cool Cars (deleted).", error["Detail"])

        # Changes "in the QuickBooks UI" are not checked.
        stored = self.seed("SalesReceipt", {"CustomerRef": {"value": "42"}, "Line": [self.sales_line(3, "99")]})
        self.assertEqual(stored["TotalAmt"], 3)

    def test_tax_lines_must_add_up_to_total_tax(self):
        self.create("Item", self.service("Hours"))
        tax_line = {"Amount": 2.10, "DetailType": "TaxLineDetail",
                    "TaxLineDetail": {"TaxRateRef": {"value": "999"}, "PercentBased": True, "TaxPercent": 21,
                                      "NetAmountTaxable": 10}}
        # Line amounts are net; TaxInclusiveAmt is accepted and changes no total.
        receipt = self.create("SalesReceipt", {
            "GlobalTaxCalculation": "TaxInclusive",
            "Line": [self.sales_line(10, Qty=1, UnitPrice=10, TaxInclusiveAmt=12.10)],
            "TxnTaxDetail": {"TotalTax": 2.10, "TaxLine": [tax_line]}})
        self.assertEqual(receipt["TotalAmt"], 12.10)
        self.assertEqual(receipt["Line"][0]["SalesItemLineDetail"]["TaxInclusiveAmt"], 12.10)
        self.assertEqual(receipt["GlobalTaxCalculation"], "TaxInclusive")

        split = [dict(tax_line, Amount=1.00), dict(tax_line, Amount=1.05)]
        status, data, _ = self.api("POST", "salesreceipt", {"Line": [self.sales_line(10)],
                                                            "TxnTaxDetail": {"TotalTax": 2.10, "TaxLine": split}})
        error = self.assertFault(status, data, "6000")
        self.assertEqual(error["element"], "TxnTaxDetail.TotalTax")
        self.assertIn("TotalTax 2.1 is not the sum of the TaxLine amounts (2.05)", error["Detail"])
        # Without TotalTax it is the sum of the tax lines.
        receipt = self.create("SalesReceipt", {"Line": [self.sales_line(10)], "TxnTaxDetail": {"TaxLine": split}})
        self.assertEqual((receipt["TxnTaxDetail"]["TotalTax"], receipt["TotalAmt"]), (2.05, 12.05))

    def test_a_vat_company_works_out_vat_per_line_unless_given_tax_lines(self):
        # A US company (the seed) takes a bare TotalTax and lines without a TaxCodeRef.
        self.create("Item", self.service("Hours"))
        receipt = self.create("SalesReceipt", {"Line": [self.sales_line(10)], "TxnTaxDetail": {"TotalTax": 2.10}})
        self.assertEqual(receipt["TotalAmt"], 12.10)
        # A Dutch company: 21 % and 9 % rates, each in a TaxCode.
        self.seed("CompanyInfo", {"Id": REALM, "Country": "NL"})
        for rate, code, percent in (("15", "5", 21), ("17", "7", 9)):
            self.seed("TaxRate", {"Id": rate, "Name": "BTW %d%%" % percent, "RateValue": percent})
            self.seed("TaxCode", {"Id": code, "Name": "BTW %d" % percent, "SalesTaxRateList": {"TaxRateDetail": [
                {"TaxRateRef": {"value": rate}, "TaxTypeApplicable": "TaxOnAmount", "TaxOrder": 0}]}})
        status, data, _ = self.api("POST", "salesreceipt", {"Line": [self.sales_line(10)],
                                                            "TxnTaxDetail": {"TotalTax": 2.10}})
        error = self.assertFault(status, data, "6000")
        self.assertIn("Make sure all your transactions have a VAT rate", error["Detail"])
        self.assertEqual(error["element"], "Line[1].SalesItemLineDetail.TaxCodeRef")
        # Without tax lines: per line, rounded half up, summed per rate; the TotalTax sent is replaced.
        lines = [self.sales_line(0.05, TaxCodeRef={"value": "7"}), self.sales_line(0.05, TaxCodeRef={"value": "7"}),
                 self.sales_line(10.01, TaxCodeRef={"value": "5"})]
        receipt = self.create("SalesReceipt", {"Line": lines, "TxnTaxDetail": {"TotalTax": 9.99}})
        tax = receipt["TxnTaxDetail"]
        self.assertEqual(tax["TotalTax"], 2.10)   # 0.0045 -> 0.00 twice (0.01 on the sum); 2.1021 -> 2.10
        self.assertEqual(sorted((t["TaxLineDetail"]["TaxRateRef"]["value"], t["TaxLineDetail"]["NetAmountTaxable"],
                                 t["Amount"]) for t in tax["TaxLine"]), [("15", 10.01, 2.10), ("17", 0.10, 0.0)])
        self.assertEqual(receipt["TotalAmt"], 12.21)
        # Tax lines given are kept, when their rates exist.
        given = [{"Amount": 0.01, "DetailType": "TaxLineDetail",
                  "TaxLineDetail": {"TaxRateRef": {"value": "17"}, "PercentBased": True, "TaxPercent": 9,
                                    "NetAmountTaxable": 0.10}},
                 {"Amount": 2.11, "DetailType": "TaxLineDetail",
                  "TaxLineDetail": {"TaxRateRef": {"value": "15"}, "PercentBased": True, "TaxPercent": 21,
                                    "NetAmountTaxable": 10.01}}]
        receipt = self.create("SalesReceipt", {"Line": lines, "TxnTaxDetail": {"TotalTax": 2.12, "TaxLine": given}})
        self.assertEqual([t["Amount"] for t in receipt["TxnTaxDetail"]["TaxLine"]], [0.01, 2.11])
        self.assertEqual(receipt["TotalAmt"], 12.23)
        unknown = [dict(given[0], TaxLineDetail=dict(given[0]["TaxLineDetail"], TaxRateRef={"value": "99"}))]
        status, data, _ = self.api("POST", "salesreceipt", {"Line": lines, "TxnTaxDetail": {"TaxLine": unknown}})
        self.assertEqual(self.assertFault(status, data, "2500")["element"],
                         "TxnTaxDetail.TaxLine.TaxLineDetail.TaxRateRef")

    def test_journal_entries_balance_with_their_vat(self):
        self.seed("CompanyInfo", {"Id": REALM, "Country": "NL"})
        self.seed("TaxRate", {"Id": "15", "Name": "BTW 21%", "RateValue": 21})
        self.seed("TaxCode", {"Id": "5", "Name": "BTW 21", "SalesTaxRateList": {"TaxRateDetail": [
            {"TaxRateRef": {"value": "15"}, "TaxTypeApplicable": "TaxOnAmount", "TaxOrder": 0}]}})
        self.seed("Account", {"Id": "35", "Name": "Kas", "AccountType": "Bank"})

        def line(posting, account, amount, **tax):
            return {"DetailType": "JournalEntryLineDetail", "Amount": amount,
                    "JournalEntryLineDetail": dict({"PostingType": posting, "AccountRef": {"value": account}}, **tax)}
        vat = {"TaxCodeRef": {"value": "5"}, "TaxApplicableOn": "Sales", "TaxAmount": 2.10}
        tax_detail = {"TotalTax": 2.10, "TaxLine": [{"Amount": 2.10, "DetailType": "TaxLineDetail", "TaxLineDetail": {
            "TaxRateRef": {"value": "15"}, "PercentBased": True, "TaxPercent": 21, "NetAmountTaxable": 10}}]}
        # The credit's VAT counts on its side: 12.10 debit = 10.00 + 2.10 credit.
        entry = self.create("JournalEntry", {"DocNumber": "MPLUS-1-2026-11-03", "TxnDate": "2026-11-03",
                                             "Line": [line("Debit", "35", 12.10), line("Credit", "79", 10, **vat)],
                                             "TxnTaxDetail": tax_detail})
        self.assertEqual(entry["TotalAmt"], 12.10)
        self.assertEqual(entry["Line"][1]["JournalEntryLineDetail"]["TaxAmount"], 2.10)
        # A journal number may repeat (QBO only warns in its form).
        self.create("JournalEntry", {"DocNumber": "MPLUS-1-2026-11-03", "Line": [line("Debit", "35", 1),
                                                                                  line("Credit", "79", 1)]})
        for lines, element in (([line("Debit", "35", 12.09), line("Credit", "79", 10, **vat)], "Line"),
                               ([line("Debit", "35", 1), line("Credit", "99", 1)],
                                "Line[2].JournalEntryLineDetail.AccountRef"),
                               ([line("Debit", "35", 1), line("Credit", "79", 1, TaxCodeRef={"value": "5"})],
                                "Line[2].JournalEntryLineDetail.TaxApplicableOn")):
            status, data, _ = self.api("POST", "journalentry", {"Line": lines})
            self.assertEqual(status, 400, data)
            self.assertEqual(data["Fault"]["Error"][0]["element"], element, data)
        status, data, _ = self.api("POST", "journalentry", {
            "Line": [line("Debit", "35", 12.10), line("Credit", "79", 10, **vat)],
            "TxnTaxDetail": dict(tax_detail, TotalTax=2.11, TaxLine=[dict(tax_detail["TaxLine"][0], Amount=2.11)])})
        self.assertEqual(self.assertFault(status, data, "6000")["element"], "TxnTaxDetail.TotalTax")
        status, data, _ = self.query("select * from JournalEntry where TxnDate = '2026-11-03'")
        self.assertEqual([e["DocNumber"] for e in data["QueryResponse"]["JournalEntry"]], ["MPLUS-1-2026-11-03"])

    def test_payments_reduce_and_restore_invoice_balances(self):
        self.create("Customer", {"DisplayName": "Cool Cars"})
        self.create("Item", self.service("Hours"))
        invoice = self.create("Invoice", {"CustomerRef": {"value": "1"},
                                          "Line": [self.sales_line(60), self.sales_line("40.00")]})
        self.assertEqual((invoice["TotalAmt"], invoice["Balance"]), (100, 100))

        def balance():
            return self.api("GET", "invoice/" + invoice["Id"])[1]["Invoice"]["Balance"]

        status, data, _ = self.api("POST", "payment", self.payment(None, ("Invoice", invoice["Id"], 30)))
        self.assertEqual(self.assertFault(status, data, "2020")["element"], "TotalAmt")

        first = self.create("Payment", self.payment(30, ("Invoice", invoice["Id"], 30)))
        self.assertEqual((first["TotalAmt"], first["UnappliedAmt"], balance()), (30, 0, 70))

        status, data, _ = self.api("POST", "payment", self.payment("80.00", ("Invoice", invoice["Id"], "80.00")))
        error = self.assertFault(status, data, "6000")
        self.assertEqual(error["element"], "Line[1].Amount")
        self.assertIn("more than its open balance (70)", error["Detail"])
        status, data, _ = self.api("POST", "payment", self.payment(5, ("Invoice", "999", 5)))
        self.assertEqual(self.assertFault(status, data, "2500")["element"], "Line[1].LinkedTxn[1].TxnId")
        status, data, _ = self.api("POST", "payment", self.payment(10, ("Invoice", invoice["Id"], 20)))
        self.assertEqual(self.assertFault(status, data, "6000")["element"], "TotalAmt")
        self.assertEqual(balance(), 70, "refused payments change nothing")

        second = self.create("Payment", self.payment(75, ("Invoice", invoice["Id"], 70)))
        self.assertEqual((second["UnappliedAmt"], balance()), (5, 0))
        # An update of the invoice keeps what is paid; an update of a payment
        # gives back what its old version applied.
        self.create("Invoice", {"Id": invoice["Id"], "SyncToken": "0", "sparse": True, "PrivateNote": "paid"})
        self.assertEqual(balance(), 0)
        second = self.create("Payment", dict(self.payment(50, ("Invoice", invoice["Id"], 50)),
                                             Id=second["Id"], SyncToken="0"))
        self.assertEqual(balance(), 20)

        status, data, _ = self.api("POST", "payment?operation=void", {"Id": first["Id"], "SyncToken": "0"})
        self.assertEqual(status, 200, data)
        self.assertEqual((data["Payment"]["TotalAmt"], data["Payment"]["PrivateNote"]), (0, "Voided"))
        self.assertEqual(balance(), 50)
        status, data, _ = self.api("POST", "payment?operation=delete", {"Id": second["Id"], "SyncToken": "1"})
        self.assertEqual(status, 200, data)
        self.assertEqual(balance(), 100)

        # A credit memo's credit can pay an invoice: it counts against the payment.
        memo = self.create("CreditMemo", {"CustomerRef": {"value": "1"}, "Line": [self.sales_line(25)]})
        self.assertEqual(memo["Balance"], 25)
        paid = self.create("Payment", self.payment(0, ("Invoice", invoice["Id"], 25), ("CreditMemo", memo["Id"], 25)))
        self.assertEqual((paid["UnappliedAmt"], balance(),
                          self.api("GET", "creditmemo/" + memo["Id"])[1]["CreditMemo"]["Balance"]), (0, 75, 0))

    def test_amounts_are_exact_decimals(self):
        self.create("Item", self.service("Hours"))
        # 0.530 x 18.7736 = 9.950008: Amount 9.95 is right, 9.96 is not.
        for qty, price, amount in ((0.530, 18.7736, 9.95), ("0.530", "18.7736", "9.95")):
            receipt = self.create("SalesReceipt", {"Line": [self.sales_line(amount, Qty=qty, UnitPrice=price)]})
            self.assertEqual(receipt["TotalAmt"], 9.95)
        status, data, _ = self.api("POST", "salesreceipt",
                                   {"Line": [self.sales_line(9.96, Qty=0.530, UnitPrice=18.7736)]})
        self.assertFault(status, data, "6070")
        # Parsed as a float this Amount would be 9.95 and pass.
        status, data = self.raw_post("salesreceipt", '{"Line":[{"Amount":9.950000000000000001,"DetailType":'
                                     '"SalesItemLineDetail","SalesItemLineDetail":{"ItemRef":{"value":"1"},'
                                     '"Qty":0.530,"UnitPrice":18.7736}}]}')
        self.assertEqual((status, json.loads(data)["Fault"]["Error"][0]["code"]), (400, "6070"), data)
        # Answers carry numbers, not strings, with every digit that was sent.
        status, data = self.raw_post("salesreceipt", '{"Line":[{"Amount":"9.95","DetailType":'
                                     '"SalesItemLineDetail","SalesItemLineDetail":{"ItemRef":{"value":"1"},'
                                     '"Qty":"0.530","UnitPrice":"18.7736","TaxInclusiveAmt":12.345678901234567891}}]}')
        self.assertEqual(status, 200, data)
        for text in (b'"Amount":9.95,', b'"Qty":0.53,', b'"UnitPrice":18.7736',
                     b'"TaxInclusiveAmt":12.345678901234567891', b'"TotalAmt":9.95'):
            self.assertIn(text, data)

    # -- Items: accounts, types, inventory, categories, quantity on hand --

    def inventory(self, name, **fields):
        """An Inventory Item body with the seeded accounts (as rest/item_create_inventory.json)."""
        return dict({"Name": name, "Type": "Inventory", "IncomeAccountRef": {"value": "79"},
                     "AssetAccountRef": {"value": "81"}, "ExpenseAccountRef": {"value": "80"},
                     "TrackQtyOnHand": True, "QtyOnHand": 10, "InvStartDate": "2015-01-01"}, **fields)

    def refused(self, entity, body, code, element):
        """The first error of a refused write, checked for its code and element."""
        status, data, _ = self.api("POST", entity.lower(), body)
        error = self.assertFault(status, data, code)
        self.assertEqual(error.get("element"), element, error)
        return error

    def test_new_company_has_the_accounts_an_item_needs(self):
        expected = {"Services": ("1", "Income"), "Sales of Product Income": ("79", "Income"),
                    "Cost of Goods Sold": ("80", "Cost of Goods Sold"),
                    "Inventory Asset": ("81", "Other Current Asset")}
        for name, (account_id, account_type) in expected.items():
            status, data, _ = self.query("select * from Account where Name = '%s'" % name)
            self.assertEqual(status, 200, data)
            [account] = data["QueryResponse"]["Account"]
            self.assertEqual((account["Id"], account["AccountType"], account["Active"]),
                             (account_id, account_type, True))
        self.assertLessEqual(set(fixture_json("rest", "account_read.json")["Account"]), set(account))
        # The same accounts the recorded inventory item uses: creating it works, and the
        # answer names its accounts as the recording does.
        recorded = fixture_json("rest", "item_create_inventory.json")["Item"]
        body = {k: v for k, v in recorded.items() if k not in ("Id", "SyncToken", "MetaData", "domain", "sparse")}
        created = self.create("Item", body)
        for key in ("IncomeAccountRef", "AssetAccountRef", "ExpenseAccountRef", "QtyOnHand", "TrackQtyOnHand",
                    "InvStartDate", "FullyQualifiedName", "Type"):
            self.assertEqual(created[key], recorded[key], key)
        self.assertEqual(self.create("Account", {"Name": "Omzet", "AccountType": "Income"})["Id"], "82")

    def test_inventory_items_need_accounts_tracking_and_an_opening_quantity(self):
        for key in ("IncomeAccountRef", "AssetAccountRef", "ExpenseAccountRef", "QtyOnHand", "InvStartDate"):
            body = self.inventory("Pump")
            del body[key]
            error = self.refused("Item", body, "2020", key)
            self.assertEqual(error["Detail"], "Required parameter %s is missing in the request" % key)
        for key in ("IncomeAccountRef", "AssetAccountRef", "ExpenseAccountRef"):
            self.refused("Item", self.inventory("Pump", **{key: {"value": "999"}}), "2500", key)
        for tracked in (False, None):
            error = self.refused("Item", self.inventory("Pump", TrackQtyOnHand=tracked), "6000", "TrackQtyOnHand")
            self.assertIn("the item cannot be of type Inventory", error["Detail"])
        self.refused("Item", self.inventory("Pump", InvStartDate="31-01-2017"), "2010", None)
        # A deactivated account cannot be used any more.
        self.seed("Account", {"Id": "80", "Active": False})
        self.refused("Item", self.inventory("Pump"), "2500", "ExpenseAccountRef")
        self.assertEqual(self.control("GET", "/_sim/entities?realm=%s&entity=Item" % REALM), [],
                         "refused creates store nothing")
        self.assertEqual(self.create("Item", self.service("Hours"))["Id"], "1", "and use up no Id")

    def test_non_inventory_and_service_items_need_an_income_account(self):
        for item_type in ("NonInventory", "Service"):
            self.refused("Item", {"Name": "Koffie", "Type": item_type}, "2020", "IncomeAccountRef")
            self.refused("Item", {"Name": "Koffie", "Type": item_type, "IncomeAccountRef": {"value": "4"}},
                         "2500", "IncomeAccountRef")
            error = self.refused("Item", {"Name": "Koffie", "Type": item_type, "IncomeAccountRef": {"value": "79"},
                                          "TrackQtyOnHand": True, "QtyOnHand": 3}, "6000", "TrackQtyOnHand")
            self.assertIn("Only an Inventory item", error["Detail"])
            self.refused("Item", {"Name": "Koffie", "Type": item_type, "IncomeAccountRef": {"value": "79"},
                                  "QtyOnHand": 3}, "6000", "QtyOnHand")
        item = self.create("Item", {"Name": "Koffie", "Type": "NonInventory", "Sku": "1001",
                                    "IncomeAccountRef": {"value": "79"}, "UnitPrice": "2.50"})
        self.assertEqual(item["IncomeAccountRef"], {"value": "79", "name": "Sales of Product Income"})
        self.assertEqual(item["UnitPrice"], 2.5)
        self.assertNotIn("Level", item)

    def test_item_types_names_and_lengths(self):
        self.refused("Item", {"Name": "Koffie", "IncomeAccountRef": {"value": "79"}}, "2020", "Type")
        for item_type in ("Group", "Bundle", "Other Charge"):
            error = self.refused("Item", {"Name": "Set", "Type": item_type}, "500", None)
            self.assertEqual(error["Detail"], "Operation CREATE %s is not supported." % item_type.upper())
        self.refused("Item", {"Name": "Set", "Type": "Gadget"}, "2010", None)
        for name in ("", "   "):
            self.refused("Item", self.service(name), "2020", "Name")
        for bad in ('Shirt "Logo"', "Tops:Shirt", "Tab\tName", "New\nLine"):
            self.refused("Item", self.service(bad), "2040", "Name")
        for key, limit in (("Name", 100), ("Sku", 100), ("Description", 4000)):
            body = self.service("x" * 100, **{key: "y" * (limit + 1)})
            error = self.refused("Item", body, "2050", key)
            self.assertIn("Max:%d supported. Supplied length:%d" % (limit, limit + 1), error["Detail"])
        self.create("Item", self.service("x" * 100, Sku="y" * 100))   # the limits themselves are fine
        # Names are unique among Items, ignoring case, on create and on a rename.
        self.create("Item", self.service("Koffie"))
        self.refused("Item", self.service("KOFFIE"), "6240", None)
        thee = self.create("Item", self.service("Thee"))
        self.refused("Item", {"Id": thee["Id"], "SyncToken": "0", "sparse": True, "Name": "koffie"}, "6240", None)
        self.refused("Item", dict(self.service("KOFFIE"), Id=thee["Id"], SyncToken="0"), "6240", None)
        renamed = self.create("Item", {"Id": thee["Id"], "SyncToken": "0", "sparse": True, "Name": "THEE"})
        self.assertEqual((renamed["Name"], renamed["FullyQualifiedName"]), ("THEE", "THEE"), "its own name is free")
        # Another type's name (an Account's) does not clash.
        self.create("Item", self.service("Services"))

    def test_categories_and_sub_items(self):
        drinks = self.create("Item", {"Name": "Dranken", "Type": "Category"})
        self.assertEqual((drinks["FullyQualifiedName"], drinks["Active"]), ("Dranken", True))
        self.assertNotIn("Level", drinks)
        for key, value in (("Sku", "1"), ("UnitPrice", 1), ("PurchaseCost", 1),
                           ("IncomeAccountRef", {"value": "79"}), ("ExpenseAccountRef", {"value": "80"}),
                           ("AssetAccountRef", {"value": "81"}),
                           ("QtyOnHand", 1), ("InvStartDate", "2025-01-01"), ("TrackQtyOnHand", True)):
            error = self.refused("Item", {"Name": "Eten", "Type": "Category", key: value}, "6000", key)
            self.assertIn("A Category only groups other items", error["Detail"])
        warm = self.create("Item", {"Name": "Warm", "Type": "Category", "SubItem": True,
                                    "ParentRef": {"value": drinks["Id"]}})
        self.assertEqual((warm["FullyQualifiedName"], warm["Level"], warm["ParentRef"]),
                         ("Dranken:Warm", 1, {"value": drinks["Id"], "name": "Dranken"}))
        coffee = self.create("Item", self.service("Koffie", SubItem=True, ParentRef={"value": warm["Id"]}))
        self.assertEqual((coffee["FullyQualifiedName"], coffee["Level"]), ("Dranken:Warm:Koffie", 2))
        # ParentRef must name a stored Category, with SubItem true, and SubItem needs a ParentRef.
        self.refused("Item", self.service("Thee", SubItem=True, ParentRef={"value": "999"}), "2500", "ParentRef")
        error = self.refused("Item", self.service("Thee", SubItem=True, ParentRef={"value": coffee["Id"]}),
                             "6000", "ParentRef")
        self.assertIn("must name a Category", error["Detail"])
        self.refused("Item", self.service("Thee", ParentRef={"value": warm["Id"]}), "6000", "SubItem")
        self.refused("Item", self.service("Thee", SubItem=False, ParentRef={"value": warm["Id"]}), "6000", "SubItem")
        self.refused("Item", self.service("Thee", SubItem=True), "2020", "ParentRef")
        # No cycles, and at most 5 levels (Level 0 to 4), counting what hangs below a moved category.
        self.refused("Item", {"Id": drinks["Id"], "SyncToken": "0", "sparse": True, "SubItem": True,
                              "ParentRef": {"value": warm["Id"]}}, "6000", "ParentRef")
        parent = warm
        for level in (2, 3, 4):
            parent = self.create("Item", {"Name": "L%d" % level, "Type": "Category", "SubItem": True,
                                          "ParentRef": {"value": parent["Id"]}})
            self.assertEqual(parent["Level"], level)
        self.refused("Item", {"Name": "L5", "Type": "Category", "SubItem": True,
                              "ParentRef": {"value": parent["Id"]}}, "6000", "ParentRef")
        other = self.create("Item", {"Name": "Andere", "Type": "Category"})
        self.refused("Item", {"Id": drinks["Id"], "SyncToken": "0", "sparse": True, "SubItem": True,
                              "ParentRef": {"value": other["Id"]}}, "6000", "ParentRef")
        # A renamed category renames what is below it; a sub-item moved to the top loses its Level.
        self.create("Item", {"Id": drinks["Id"], "SyncToken": "0", "sparse": True, "Name": "Drinken"})
        status, read, _ = self.api("GET", "item/" + coffee["Id"])
        self.assertEqual(read["Item"]["FullyQualifiedName"], "Drinken:Warm:Koffie")
        self.assertEqual(read["Item"]["SyncToken"], "0")
        moved = self.create("Item", dict(self.service("Koffie"), Id=coffee["Id"], SyncToken="0"))
        self.assertEqual(moved["FullyQualifiedName"], "Koffie")
        self.assertNotIn("Level", moved)
        # A sparse update with SubItem false moves an item to the top, with what is below it.
        l2 = self.query("select * from Item where Name = 'L2'")[1]["QueryResponse"]["Item"][0]
        self.refused("Item", {"Id": l2["Id"], "SyncToken": "0", "sparse": True, "SubItem": False,
                              "ParentRef": {"value": warm["Id"]}}, "6000", "SubItem")
        top = self.create("Item", {"Id": l2["Id"], "SyncToken": "0", "sparse": True, "SubItem": False})
        self.assertEqual((top["FullyQualifiedName"], top["SubItem"]), ("L2", False))
        self.assertNotIn("ParentRef", top)
        self.assertNotIn("Level", top)
        l4 = self.query("select * from Item where Name = 'L4'")[1]["QueryResponse"]["Item"][0]
        self.assertEqual((l4["FullyQualifiedName"], l4["Level"]), ("L2:L3:L4", 2))
        self.create("Item", {"Id": l2["Id"], "SyncToken": "1", "sparse": True, "SubItem": True,
                             "ParentRef": {"value": warm["Id"]}})
        status, data, _ = self.query("select * from Item where Type = 'Category' ORDERBY Name")
        self.assertEqual([i["FullyQualifiedName"] for i in data["QueryResponse"]["Item"]],
                         ["Andere", "Drinken", "Drinken:Warm:L2", "Drinken:Warm:L2:L3", "Drinken:Warm:L2:L3:L4",
                          "Drinken:Warm"])
        # A category can be made inactive (deleted) like any name-list object.
        gone = self.create("Item", {"Id": other["Id"], "SyncToken": "0", "sparse": True, "Active": False})
        self.assertIs(gone["Active"], False)
        status, data, _ = self.query("select * from Item where Type = 'Category'")
        self.assertNotIn("Andere", [i["Name"] for i in data["QueryResponse"]["Item"]])
        self.refused("Item", self.service("Thee", SubItem=True, ParentRef={"value": other["Id"]}), "2500",
                     "ParentRef")

    def test_quantity_on_hand_is_exact_and_needs_tracking(self):
        pump = self.create("Item", self.inventory("Pump", QtyOnHand="12.500"))
        self.assertEqual(pump["QtyOnHand"], 12.5)
        status, data = self.raw_post(
            "item", '{"Id":"%s","SyncToken":"0","sparse":true,"QtyOnHand":7.125000000000000001}' % pump["Id"])
        self.assertEqual(status, 200, data)
        self.assertIn(b'"QtyOnHand":7.125000000000000001,', data)
        self.assertIn(b'"SyncToken":"1"', data)
        updated = self.create("Item", {"Id": pump["Id"], "SyncToken": "1", "sparse": True, "QtyOnHand": "-3"})
        self.assertEqual(updated["QtyOnHand"], -3)
        # A full update without QtyOnHand keeps it: it is the item's balance.
        body = self.inventory("Pump", Id=pump["Id"], SyncToken="2", Description="full")
        del body["QtyOnHand"], body["InvStartDate"]
        kept = self.create("Item", body)
        self.assertEqual((kept["QtyOnHand"], kept["InvStartDate"], kept["SyncToken"]), (-3, "2015-01-01", "3"))
        # Tracking cannot be switched off on an Inventory item, and an untracked item takes no quantity.
        self.refused("Item", {"Id": pump["Id"], "SyncToken": "3", "sparse": True, "TrackQtyOnHand": False},
                     "6000", "TrackQtyOnHand")
        tea = self.create("Item", {"Name": "Thee", "Type": "NonInventory", "IncomeAccountRef": {"value": "79"}})
        error = self.refused("Item", {"Id": tea["Id"], "SyncToken": "0", "sparse": True, "QtyOnHand": 5},
                             "6000", "QtyOnHand")
        self.assertIn("TrackQtyOnHand true", error["Detail"])
        # Sparse updates keep the rest of the item; a refused one changes nothing.
        status, read, _ = self.api("GET", "item/" + pump["Id"])
        self.assertEqual((read["Item"]["SyncToken"], read["Item"]["TrackQtyOnHand"], read["Item"]["Description"]),
                         ("3", True, "full"))

    def test_items_made_in_the_ui_get_their_accounts(self):
        widget = self.seed("Item", {"Name": "Widget", "Type": "NonInventory"})
        self.assertEqual(widget["IncomeAccountRef"], {"value": "79", "name": "Sales of Product Income"})
        self.assertEqual(self.seed("Item", {"Name": "Uren", "Type": "Service"})["IncomeAccountRef"]["value"], "1")
        stock = self.seed("Item", {"Name": "Stock", "Type": "Inventory"})
        self.assertEqual((stock["AssetAccountRef"]["value"], stock["ExpenseAccountRef"]["value"],
                          stock["TrackQtyOnHand"], stock["QtyOnHand"]), ("81", "80", True, 0))
        # So the API may update them as they are.
        self.create("Item", {"Id": widget["Id"], "SyncToken": "0", "sparse": True, "Description": "checked"})
        self.create("Item", {"Id": stock["Id"], "SyncToken": "0", "sparse": True, "QtyOnHand": 4})
        # What the test gives is kept.
        mine = self.seed("Item", {"Name": "Mine", "Type": "NonInventory", "IncomeAccountRef": {"value": "1"}})
        self.assertEqual(mine["IncomeAccountRef"]["value"], "1")

    def test_item_queries_by_sku_name_and_type(self):
        for sku, name in (("1", "Koffie"), ("01", "Koffie oud"), ("2", "Thee"), ("20", "Thee groot")):
            self.create("Item", {"Name": name, "Sku": sku, "Type": "NonInventory",
                                 "IncomeAccountRef": {"value": "79"}})
        self.create("Item", {"Name": "Dranken", "Type": "Category"})

        def names(where):
            status, data, _ = self.query("select * from Item where " + where)
            self.assertEqual(status, 200, data)
            return sorted(i["Name"] for i in data["QueryResponse"].get("Item", []))

        self.assertEqual(names("Sku in ('1', '2')"), ["Koffie", "Thee"])
        self.assertEqual(names("Sku = '1'"), ["Koffie"], "'01' is another SKU")
        self.assertEqual(names("Sku = '01'"), ["Koffie oud"])
        self.assertEqual(names("Name = 'Thee groot'"), ["Thee groot"])
        self.assertEqual(names("Name = 'thee groot'"), [])
        self.assertEqual(names("Type = 'Category'"), ["Dranken"])
        self.assertEqual(names("Type = 'NonInventory' AND Sku IN ('2', '20', '3')"), ["Thee", "Thee groot"])

    def test_request_log_filters_and_counts(self):
        self.create("Item", self.service("Hours"))
        self.create("Item", {"Id": "1", "SyncToken": "0", "sparse": True, "Description": "x"})
        self.query("select * from Item where Sku in ('1')")
        self.api("POST", "query", "SELECT * FROM Customer")
        self.api("GET", "item/1")
        posts = self.control("GET", "/_sim/requests?method=POST&path_contains=/item")
        self.assertEqual([(e["body"].get("sparse"), e["status"]) for e in posts], [(None, 200), (True, 200)])
        queries = self.control("GET", "/_sim/requests?statement_contains=from%20item")
        self.assertEqual([e["method"] for e in queries], ["GET"])
        self.assertEqual(len(self.control("GET", "/_sim/requests?statement_contains=FROM%20CUSTOMER")), 1)
        path = "/v3/company/%s/" % REALM
        counted = self.control("GET", "/_sim/requests/count?path_contains=/v3/")
        self.assertEqual(counted, {"count": 5, "by": {"GET " + path + "item/1": 1, "GET " + path + "query": 1,
                                                       "POST " + path + "item": 2, "POST " + path + "query": 1}})
        everything = self.control("GET", "/_sim/requests")
        self.assertEqual(self.control("GET", "/_sim/requests/count?since=%d" % (len(everything) - 1))["count"], 1)
        self.assertEqual(self.control("GET", "/_sim/requests/count?method=get&path_contains=/item/")["count"], 1)
        status, _, _ = self.http("GET", "/_sim/requests?since=many")
        self.assertEqual(status, 400)

    # -- queries and CDC --

    def test_query_escaping(self):
        self.create("Customer", {"DisplayName": "Amy's Bird Sanctuary",
                                 "PrimaryEmailAddr": {"Address": "Birds@Intuit.com"}})
        self.create("Customer", {"DisplayName": "Back\\slash"})
        status, data, _ = self.query("SELECT * FROM Customer WHERE DisplayName = 'Amy\\'s Bird Sanctuary'")
        self.assertEqual(status, 200, data)
        response = data["QueryResponse"]
        self.assertEqual([c["DisplayName"] for c in response["Customer"]], ["Amy's Bird Sanctuary"])
        self.assertEqual((response["startPosition"], response["maxResults"]), (1, 1))
        status, data, _ = self.query("select * from customer where DisplayName = 'Back\\\\slash'")
        self.assertEqual(data["QueryResponse"]["Customer"][0]["DisplayName"], "Back\\slash")
        status, data, _ = self.query("SELECT * FROM Customer WHERE PrimaryEmailAddr = 'Birds@Intuit.com'")
        self.assertEqual(len(data["QueryResponse"]["Customer"]), 1)

        status, data, _ = self.query("SELECT * FROM Customer WHERE DisplayName = 'Amy's Bird Sanctuary'")
        error = self.assertFault(status, data, "4000")
        self.assertEqual(error["Message"], "Error parsing query")
        self.assertTrue(error["Detail"].startswith("QueryParserError"))
        status, data, _ = self.query("SELECT * FROM Customer WHERE DisplayName = 'Amy\u2019s'")
        self.assertFault(status, data, "4000")
        status, data, _ = self.query("SELECT * FROM Customer WHERE Colour = 'red'")
        self.assertFault(status, data, "4001")

    def test_query_equals_is_case_sensitive_unless_configured(self):
        self.create("Customer", {"DisplayName": "Amy's Bird Sanctuary",
                                 "PrimaryEmailAddr": {"Address": "Birds@Intuit.com"}})
        self.assertIs(self.control("POST", "/_sim/config", {})["query_equals_case_sensitive"], True)

        def found(where):
            status, data, _ = self.query("SELECT * FROM Customer WHERE " + where)
            self.assertEqual(status, 200, data)
            return len(data["QueryResponse"].get("Customer", []))

        self.assertEqual(found("PrimaryEmailAddr = 'birds@intuit.com'"), 0)
        self.assertEqual(found("PrimaryEmailAddr IN ('birds@intuit.com')"), 0)
        self.assertEqual(found("DisplayName = 'amy\\'s bird sanctuary'"), 0)
        self.assertEqual(found("PrimaryEmailAddr = 'Birds@Intuit.com'"), 1)
        self.assertEqual(found("PrimaryEmailAddr LIKE 'birds@%'"), 1, "LIKE ignores case")

        answer = self.control("POST", "/_sim/config", {"query_equals_case_sensitive": False})
        self.assertIs(answer["query_equals_case_sensitive"], False)
        self.assertEqual(found("PrimaryEmailAddr = 'birds@intuit.com'"), 1)
        self.assertEqual(found("PrimaryEmailAddr IN ('x@y.z', 'BIRDS@intuit.com')"), 1)
        status, _, _ = self.http("POST", "/_sim/config", {"query_equals_case_sensitive": "no"})
        self.assertEqual(status, 400)
        self.control("POST", "/_sim/reset")
        self.assertIs(self.control("POST", "/_sim/config", {})["query_equals_case_sensitive"], True)

    def test_query_paging_filters_and_count(self):
        for name in ("Delta", "alpha", "Echo", "Bravo", "Charlie"):
            self.create("Item", self.service(name, Sku="SKU-" + name.upper()))
        status, data, _ = self.query("SELECT * FROM Item ORDERBY Name STARTPOSITION 2 MAXRESULTS 2")
        self.assertEqual(status, 200, data)
        response = data["QueryResponse"]
        self.assertEqual([i["Name"] for i in response["Item"]], ["Bravo", "Charlie"])
        self.assertEqual((response["startPosition"], response["maxResults"]), (2, 2))
        status, data, _ = self.query("SELECT * FROM Item ORDERBY Name STARTPOSITION 5 MAXRESULTS 2")
        self.assertEqual([i["Name"] for i in data["QueryResponse"]["Item"]], ["Echo"])

        status, data, _ = self.query("SELECT * FROM Item STARTPOSITION 0 MAXRESULTS 2")
        self.assertFault(status, data, "4001")
        self.assertEqual(self.query("SELECT COUNT(*) FROM Item")[1]["QueryResponse"], {"totalCount": 5})
        status, data, _ = self.query("SELECT * FROM Item WHERE Sku IN ('SKU-ALPHA', 'SKU-ECHO') AND Name LIKE '%a%'")
        self.assertEqual(sorted(i["Name"] for i in data["QueryResponse"]["Item"]), ["alpha"])
        status, data, _ = self.query("SELECT * FROM Item WHERE Name = 'Zulu'")
        self.assertEqual((status, data["QueryResponse"]), (200, {}))
        status, data, _ = self.api("POST", "query", "SELECT * FROM Item WHERE Name LIKE 'E%'")
        self.assertEqual([i["Name"] for i in data["QueryResponse"]["Item"]], ["Echo"])
        status, data, _ = self.query("SELECT * FROM Item WHERE MetaData.LastUpdatedTime > '2000-01-01T00:00:00Z'")
        self.assertEqual(len(data["QueryResponse"]["Item"]), 5)

    def test_change_data_capture(self):
        since = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=1)).isoformat()
        customer = self.create("Customer", {"DisplayName": "Changed"})
        line = {"Amount": 1, "DetailType": "SalesItemLineDetail", "SalesItemLineDetail": {"Qty": 1, "UnitPrice": 1}}
        receipt = self.create("SalesReceipt", {"Line": [line]})
        self.api("POST", "salesreceipt?operation=delete", {"Id": receipt["Id"], "SyncToken": "0"})
        status, data, _ = self.api("GET", "cdc?" + urllib.parse.urlencode(
            {"entities": "Customer,SalesReceipt,Item", "changedSince": since}))
        self.assertEqual(status, 200, data)
        customers, receipts, items = data["CDCResponse"][0]["QueryResponse"]
        self.assertEqual([c["Id"] for c in customers["Customer"]], [customer["Id"]])
        self.assertEqual((customers["startPosition"], customers["maxResults"]), (1, 1))
        self.assertEqual(receipts["SalesReceipt"][0]["status"], "Deleted")
        self.assertEqual(items, {})
        old = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=31)).isoformat()
        status, data, _ = self.api("GET", "cdc?" + urllib.parse.urlencode({"entities": "Customer",
                                                                            "changedSince": old}))
        self.assertEqual(status, 400, data)
        self.assertIn("Fault", data)

    # -- throttling and faults --

    def test_throttling(self):
        throttle_xml = fixture_bytes("errors", "throttle_3001_status429.xml")
        self.control("POST", "/_sim/reset")  # QBO's limits: 10 requests per second per realm
        started = time.monotonic()
        statuses = [self.api("GET", "companyinfo/" + REALM) for _ in range(11)]
        if time.monotonic() - started < 1:  # else a very slow machine spread the burst over two windows
            self.assertEqual([s[0] for s in statuses], [200] * 10 + [429])
            self.assertEqual(statuses[-1][1], throttle_xml)
            self.assertEqual(statuses[-1][2]["content-type"], "application/xml")
            self.assertNotIn("retry-after", statuses[-1][2])
        self.assertEqual(self.api("GET", "companyinfo/" + OTHER_REALM,
                                  token=self.connect(OTHER_REALM)["access_token"], realm=OTHER_REALM)[0], 200,
                         "the limit is per realm")

        time.sleep(1)
        self.control("POST", "/_sim/config", {"rate_per_sec": 2, "retry_after": 60})
        statuses = [self.api("GET", "companyinfo/" + REALM) for _ in range(3)]
        self.assertEqual([s[0] for s in statuses][-1], 429)
        self.assertEqual(statuses[-1][1], throttle_xml)
        self.assertEqual(statuses[-1][2]["content-type"], "application/xml")
        self.assertEqual(statuses[-1][2]["retry-after"], "60")

        # Concurrency: one slow request holds the only slot.
        self.control("POST", "/_sim/config", {"rate_per_sec": 100, "max_concurrent": 1})
        time.sleep(1)  # leave the per-second window of the requests above
        self.control("POST", "/_sim/fault", {"kind": "slow", "delay_ms": 1500, "path_contains": "companyinfo"})
        slow = threading.Thread(target=self.api, args=("GET", "companyinfo/" + REALM))
        slow.start()
        while not any(e.get("fault") == "slow" for e in self.control("GET", "/_sim/requests")):
            time.sleep(0.02)
        status, body, _ = self.api("GET", "customer/1")
        slow.join()
        self.assertEqual((status, body), (429, throttle_xml))

    def test_fault_injection(self):
        def inject(kind, **extra):
            self.control("POST", "/_sim/fault", dict({"kind": kind, "path_contains": "companyinfo"}, **extra))

        path = "companyinfo/" + REALM
        inject("500", count=2)
        self.assertFault(*self.api("GET", path)[:2], "10000", http_status=500)
        self.assertEqual(self.api("GET", path)[0], 500)
        self.assertEqual(self.api("GET", path)[0], 200, "count is used up")

        self.assertEqual(self.api("GET", "customer/1")[0], 400, "path_contains limits the fault")
        inject("503")
        self.assertEqual(self.api("GET", path)[0], 503)
        inject("429")
        self.assertEqual(self.api("GET", path)[1], fixture_bytes("errors", "throttle_3001_status429.xml"))
        inject("401")
        status, body, headers = self.api("GET", path)
        self.assertEqual((status, body["fault"]["error"][0]["code"]), (401, "3200"))
        self.assertIn("www-authenticate", headers)

        inject("slow", delay_ms=300)
        started = time.monotonic()
        self.assertEqual(self.api("GET", path)[0], 200)
        self.assertGreaterEqual(time.monotonic() - started, 0.3)

        inject("reset")
        with self.assertRaises(ConnectionError):
            self.api("GET", path)
        inject("timeout", delay_ms=1500)
        with self.assertRaises(socket.timeout):
            self.api("GET", path, timeout=0.5)

        self.control("POST", "/_sim/fault", {"kind": "500", "path_contains": "oauth2/v1/tokens"})
        self.assertEqual(self.refresh("whatever")[0], 500, "faults hit the token endpoint too")

        log = self.control("GET", "/_sim/requests")
        self.assertIn({"fault": "reset", "status": None},
                      [{"fault": e.get("fault"), "status": e["status"]} for e in log])
        flat = json.dumps(log)
        self.assertNotIn(self.token, flat, "the request log holds no tokens")
        self.control("POST", "/_sim/requests/clear")
        self.assertEqual(self.control("GET", "/_sim/requests"), [])

    # -- webhooks and the control API --

    def verify(self, headers, body):
        expected = base64.b64encode(hmac.new(VERIFIER.encode(), body, hashlib.sha256).digest()).decode()
        self.assertTrue(hmac.compare_digest(headers["intuit-signature"], expected), "signature verifies")
        self.assertEqual(headers["Content-Type"], "application/json")
        return json.loads(body)

    def test_signed_webhooks(self):
        self.control("POST", "/_sim/config", {"webhook_url": self.listener.url})
        self.listener.statuses.put(500)  # the first attempt fails and is retried
        customer = self.create("Customer", {"DisplayName": "Hooked"})
        self.listener.next()
        payload = self.verify(*self.listener.next())
        notification = payload["eventNotifications"][0]
        self.assertEqual(notification["realmId"], REALM)
        event = notification["dataChangeEvent"]["entities"][0]
        self.assertEqual((event["name"], event["id"], event["operation"]), ("Customer", customer["Id"], "Create"))
        self.assertTrue(event["lastUpdated"].endswith("Z"))

        self.control("POST", "/_sim/config", {"webhook_format": "cloudevents"})
        stored = self.control("POST", "/_sim/entity", {"realm": REALM, "entity": "Customer",
                                                        "object": {"Id": customer["Id"], "CompanyName": "UI edit"}})
        self.assertEqual((stored["SyncToken"], stored["CompanyName"]), ("1", "UI edit"))
        events = self.verify(*self.listener.next())
        self.assertEqual(len(events), 1)
        self.assertEqual({k: events[0][k] for k in ("specversion", "type", "intuitentityid", "intuitaccountid")},
                         {"specversion": "1.0", "type": "qbo.customer.updated.v1",
                          "intuitentityid": customer["Id"], "intuitaccountid": REALM})

        deadline = time.monotonic() + 5  # the record is written after the listener answered
        while len(self.control("GET", "/_sim/webhooks")) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        deliveries = self.control("GET", "/_sim/webhooks")
        self.assertEqual([[a["status"] for a in d["attempts"]] for d in deliveries], [[500, 200], [200]])
        self.assertTrue(all(d["delivered"] for d in deliveries))

    def test_control_entities(self):
        seeded = self.control("POST", "/_sim/entity", {"realm": OTHER_REALM, "entity": "Item",
                                                        "object": {"Id": "40", "Name": "Seeded", "QtyOnHand": 3}})
        self.assertEqual((seeded["Id"], seeded["SyncToken"]), ("40", "0"))
        other = self.connect(OTHER_REALM)["access_token"]
        item = self.create("Item", self.service("Next"), token=other, realm=OTHER_REALM)
        self.assertEqual(item["Id"], "41", "creates continue after a seeded Id")
        listed = self.control("GET", "/_sim/entities?realm=%s&entity=item" % OTHER_REALM)
        self.assertEqual([i["Name"] for i in listed], ["Seeded", "Next"])
        self.assertEqual(self.control("GET", "/_sim/entities?realm=%s&entity=Item" % REALM), [])
        status, _, _ = self.http("POST", "/_sim/config", {"no_such_setting": 1})
        self.assertEqual(status, 400)


def main():
    args = sys.argv[1:]
    if args and not args[0].startswith("-"):
        args.pop(0)  # the gateway binary ctest passes to every integration test
    unittest.main(module="__main__", argv=[sys.argv[0]] + args)


if __name__ == "__main__":
    main()
