#!/usr/bin/python3
"""mplus_sim - a local MplusKASSA SOAP API simulator for the gateway's integration tests.

Serves, on 127.0.0.1 only, the SOAP 1.1 document/literal API of one Mplus
administration (namespace urn:mplusqapi) for the operations the gateway uses,
with ident/secret checked as query parameters, every request body validated
against the official schema (tests/fixtures/mplus/mplusqapi.xsd) with lxml,
sync markers and stock ids that move on every change, fault injection, and a
till that makes sales and posts signed completeSession/creditSession
callbacks to the gateway.  A JSON control API lives under /_sim/.  See
README.md next to this file.

    /usr/bin/python3 tests/sim/mplus_sim.py --port 0 --ident I --secret S \\
        [--port-file PATH] [--webhook-url URL --webhook-secret W --subscription-id ID]

prints "READY <port>" once it listens and runs until SIGTERM or SIGINT.
Needs Debian's python3-lxml (use /usr/bin/python3).
"""

import argparse
import base64
import binascii
import copy
import datetime
import decimal
import hashlib
import hmac
import http.client
import http.server
import json
import os
import signal
import socket
import struct
import sys
import threading
import time
import traceback
import urllib.parse
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lxml import etree  # noqa: E402

import mplus_schema  # noqa: E402
import mplus_store  # noqa: E402
from mplus_schema import SOAP_ENV, TZ, URN, SchemaError  # noqa: E402
from mplus_store import RawXML, StoreError  # noqa: E402

HOST = "127.0.0.1"
SOAP12_ENV = "http://www.w3.org/2003/05/soap-envelope"
NSMAP = {"SOAP-ENV": SOAP_ENV, "SOAP-ENC": "http://schemas.xmlsoap.org/soap/encoding/",
         "xsi": "http://www.w3.org/2001/XMLSchema-instance", "xsd": "http://www.w3.org/2001/XMLSchema",
         "ns": URN}
RAW_HEAD = ('<?xml version="1.0" encoding="UTF-8"?>\n<SOAP-ENV:Envelope'
            + "".join(' xmlns:%s="%s"' % item for item in NSMAP.items()) + "><SOAP-ENV:Body>")
RAW_TAIL = "</SOAP-ENV:Body></SOAP-ENV:Envelope>"
XML_CT = "text/xml; charset=utf-8"

FAULT_KINDS = ("soap_fault", "http_500", "http_503", "timeout", "reset", "slow", "truncated", "result_failed")
DEFAULT_HANG_MS = 60000
AUTH_FAULT = ("SOAP-ENV:Client.Authentication", "Authentication failed: unknown ident or wrong secret")
MUTATING = {"createRelation": "CREATE-RELATION-RESULT-FAILED", "updateRelation": "UPDATE-RELATION-RESULT-FAILED",
            "createProduct": "CREATE-PRODUCT-RESULT-FAILED", "updateProduct": "UPDATE-PRODUCT-RESULT-FAILED",
            "setStock": "SET-STOCK-RESULT-FAILED", "updateStock": "UPDATE-STOCK-RESULT-FAILED"}
CONFIG_FIELDS = ("ident", "secret", "webhook_url", "webhook_secret", "webhook_secret_encoding", "subscription_id",
                 "sync_marker_limit_cap", "sync_marker_exclusive", "api_version", "validate_responses",
                 "send_error_requests", "callback_timeout_s", "till_branch", "till_workplace", "till_employee",
                 "log_limit")
ENTITY_TYPES = {"product": "Product", "relation": "Relation", "articleGroup": "ChangedArticleGroup",
                "employee": "Employee", "receipt": "Receipt", "invoice": "Invoice", "order": "Order"}
SERVICE_VERSION_HEADER = "Mplus-Service-Version"


def json_default(o):
    if isinstance(o, decimal.Decimal):
        return str(o)
    raise TypeError("%r is not JSON serializable" % (o,))


def dumps(obj):
    return json.dumps(obj, default=json_default, ensure_ascii=False).encode("utf-8")


def iso_now():
    """Webhook timestamps: ISO-8601 with the Dutch offset, e.g. 2025-11-03T14:21:08+01:00."""
    return datetime.datetime.now(TZ).isoformat(timespec="seconds")


def iso_utc_ms():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ControlError(Exception):
    """A bad control API request: 400 {"error": ...}."""


class SoapFault(Exception):
    def __init__(self, code, string, detail=None):
        super().__init__(string)
        self.code, self.string, self.detail = code, string, detail


# ---- fault injection ----------------------------------------------------------------------


class FaultRule:
    def __init__(self, kind, count, operation, delay_ms, faultcode, faultstring):
        self.kind, self.remaining, self.operation = kind, count, operation
        self.delay_ms, self.faultcode, self.faultstring = delay_ms, faultcode, faultstring


class Faults:
    """Queued rules; each SOAP request consumes the first rule that matches its operation."""

    def __init__(self):
        self.lock = threading.Lock()
        self.rules = []

    def add(self, rule):
        with self.lock:
            self.rules.append(rule)

    def take(self, operation):
        with self.lock:
            for rule in self.rules:
                if rule.remaining <= 0:
                    continue
                if rule.operation and rule.operation != operation:
                    continue
                if rule.kind == "result_failed" and operation not in MUTATING:
                    continue
                rule.remaining -= 1
                return rule
            return None

    def pending(self):
        with self.lock:
            return [{"kind": r.kind, "remaining": r.remaining, "operation": r.operation, "delay_ms": r.delay_ms}
                    for r in self.rules if r.remaining > 0]

    def clear(self):
        with self.lock:
            self.rules = []


# ---- till callbacks (Mplus "webhooks") -----------------------------------------------------


def sign(key, body):
    return base64.b64encode(hmac.new(key, body, hashlib.sha256).digest()).decode()


class Callbacks:
    """Signed JSON callbacks to the gateway, as an Mplus till sends them; every delivery and the
    gateway's reply (with its signature checked) is recorded."""

    def __init__(self, sim):
        self.sim = sim
        self.lock = threading.Lock()
        self.deliveries = []
        self.counter = 0
        self.instance_id = str(uuid.uuid4())   # changes on every "POS restart" (reset)

    def reset(self):
        with self.lock:
            self.deliveries = []
            self.counter = 0
            self.instance_id = str(uuid.uuid4())

    def list(self):
        with self.lock:
            return copy.deepcopy(self.deliveries)

    def key(self):
        s = self.sim.settings
        secret = s.get("webhook_secret") or ""
        if s.get("webhook_secret_encoding") == "base64":
            try:
                return base64.b64decode(secret, validate=True)
            except binascii.Error:
                return secret.encode()
        return secret.encode()

    def envelope(self, branch, workplace, blocking=False):
        with self.lock:
            self.counter += 1
            counter = self.counter
        return {"event": {"eventBlocking": blocking, "eventCounter": counter, "eventTimestamp": iso_now()},
                "sender": {"branchNumber": branch, "workplaceNumber": workplace, "instanceId": self.instance_id}}

    def session_payload(self, event, doc, session_id):
        """completeSession/creditSession body for a stored receipt or invoice; amounts are
        decimal numbers (euros), not cents, as in Mplus' webhook JSON."""
        lines = []
        for line in doc["lineList"]["line"]:
            data = line["data"]
            item = {"lineId": line["lineId"], "articleNumber": line["articleNumber"], "text": line.get("text", ""),
                    "priceIncl": data.get("price", 0) / 100,
                    "quantity": float(mplus_store.unscaled(data["quantity"], data.get("decimalPlaces"))),
                    "totalInclAmount": data.get("totalInclAmount", 0) / 100}
            if data.get("discountAmount"):
                item["discountAmount"] = data["discountAmount"] / 100
            if data.get("discountPercentage"):
                item["discountPercentage"] = data["discountPercentage"]
            lines.append(item)
        payments = [{"method": p["method"], "description": p.get("description", ""), "amount": p["amount"] / 100}
                    for p in doc["paymentList"]["payment"]]
        body = self.envelope(doc["financialBranchNumber"], doc["workplaceNumber"])
        session = {"sessionId": session_id, "lines": lines}
        if doc.get("relationNumber"):
            session["relation"] = {"relationNumber": doc["relationNumber"], "name": doc.get("relationName", "")}
        session["payments"] = payments
        session["totalInclAmount"] = doc["totalInclAmount"] / 100
        body["session"] = session
        body[event] = {"payments": payments}
        return body

    def deliver(self, event, payload, note=None):
        """POSTs one callback (and, when the reply is unusable, an error request); returns the record."""
        s = self.sim.settings
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        record = self._attempt(s.get("webhook_url"), event, body, note)
        if (s.get("send_error_requests") and record["status"] == 200
                and record["reply_problem"] is not None):
            error = {"error": record["reply_problem"], "original": payload}
            error_body = json.dumps(error, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
            sub = self._attempt(s.get("webhook_url"), event, error_body, "error request", record=False)
            with self.lock:
                record["error_request"] = sub
        return copy.deepcopy(record)

    def _attempt(self, base, event, body, note, record=True):
        s = self.sim.settings
        key = self.key()
        signature = sign(key, body)
        entry = {"event": event, "url": None, "body": body.decode("utf-8"), "signature": signature,
                 "subscription_id": s.get("subscription_id"), "note": note, "sent_at": iso_utc_ms(),
                 "status": None, "reply_body": None, "reply_content_type": None, "reply_signature": None,
                 "reply_signature_ok": None, "reply_problem": None, "error": None, "duration_ms": None,
                 "error_request": None}
        if record:
            with self.lock:
                self.deliveries.append(entry)
        if not base:
            entry["error"] = "no webhook_url configured"
            return entry
        url = base.rstrip("/") + "/" + event
        entry["url"] = url
        headers = {"Content-Type": "application/json", "Accept": "application/json",
                   "X-Mplus-Signature": signature, "User-Agent": "MplusKASSA-simulator"}
        if s.get("subscription_id"):
            headers["X-Mplus-Subscription-Id"] = s["subscription_id"]
        started = time.monotonic()
        status, reply_headers, reply, error = self._post(url, body, headers, float(s.get("callback_timeout_s") or 5))
        with self.lock:
            entry["duration_ms"] = round((time.monotonic() - started) * 1000, 1)
            entry["status"], entry["error"] = status, error
            if status is not None:
                entry["reply_body"] = reply.decode("utf-8", "replace")
                entry["reply_content_type"] = reply_headers.get("content-type")
                reply_sig = reply_headers.get("x-mplus-signature")
                entry["reply_signature"] = reply_sig
                if reply_sig is not None:
                    entry["reply_signature_ok"] = hmac.compare_digest(reply_sig.strip(), sign(key, reply))
                elif reply:
                    entry["reply_signature_ok"] = False
                entry["reply_problem"] = self._reply_problem(reply, reply_sig, entry["reply_signature_ok"])
        return entry

    @staticmethod
    def _reply_problem(reply, signature, ok):
        """Why Mplus would not accept a 200 reply (an error request follows), or None."""
        if not reply:
            return None
        if signature is None:
            return {"code": "NO_SIGNATURE", "message": "The response has no X-Mplus-Signature header"}
        if not ok:
            return {"code": "INVALID_SIGNATURE", "message": "The X-Mplus-Signature of the response does not match"}
        try:
            json.loads(reply)
        except ValueError:
            return {"code": "INVALID_JSON", "message": "The response is not valid JSON"}
        return None

    @staticmethod
    def _post(url, body, headers, timeout):
        parts = urllib.parse.urlsplit(url)
        conn_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        try:
            conn = conn_class(parts.hostname, parts.port, timeout=timeout)
            try:
                conn.request("POST", (parts.path or "/") + ("?" + parts.query if parts.query else ""), body, headers)
                response = conn.getresponse()
                data = response.read()
                return response.status, {k.lower(): v for k, v in response.getheaders()}, data, None
            finally:
                conn.close()
        except (OSError, http.client.HTTPException) as e:
            return None, {}, b"", "%s: %s" % (type(e).__name__, e)


# ---- the simulator --------------------------------------------------------------------------


class Simulator:
    """All state of one simulator process; the HTTP handler works on it."""

    def __init__(self, args):
        self.initial_settings = {
            "ident": args.ident, "secret": args.secret, "webhook_url": args.webhook_url,
            "webhook_secret": args.webhook_secret, "webhook_secret_encoding": args.webhook_secret_encoding,
            "subscription_id": args.subscription_id, "sync_marker_limit_cap": args.sync_marker_limit_cap,
            "sync_marker_exclusive": False, "api_version": "67.1.3",
            "validate_responses": args.validate_responses, "send_error_requests": True,
            "callback_timeout_s": 5.0, "till_branch": 1, "till_workplace": 1, "till_employee": 1,
            "log_limit": 10000,
        }
        self.seed = not args.empty
        self.bulk_articles = args.bulk_articles
        self.settings = dict(self.initial_settings)
        self.schema = mplus_schema.load()
        with open(mplus_schema.WSDL_PATH, "rb") as f:
            self.wsdl = f.read()
        self.faults = Faults()
        self.callbacks = Callbacks(self)
        self.log_lock = threading.Lock()
        self.request_log = []
        self.store = None
        self.new_store(self.seed, self.bulk_articles)

    def new_store(self, seed, bulk):
        store = mplus_store.Store(self.schema, self.settings, seed=seed)
        if bulk:
            store.seed_bulk(bulk)
        self.store = store

    def reset(self, seed=None, bulk=None):
        self.settings.clear()
        self.settings.update(self.initial_settings)
        self.new_store(self.seed if seed is None else seed, self.bulk_articles if bulk is None else bulk)
        self.faults.clear()
        self.callbacks.reset()
        with self.log_lock:
            self.request_log = []

    def log(self, entry):
        with self.log_lock:
            self.request_log.append(entry)
            extra = len(self.request_log) - int(self.settings.get("log_limit") or 10000)
            if extra > 0:
                del self.request_log[:extra]


# ---- SOAP operations: (simulator, arguments dict, stamp) -> (response data, log info) ---------


def _request(args):
    return args.get("request") or {}


def op_get_api_version(sim, args, stamp):
    parts = (str(sim.settings.get("api_version") or "67.1.3").split(".") + ["0", "0"])[:3]
    major, minor, revision = (int(p) for p in parts)
    return {"majorNumber": major, "minorNumber": minor, "revisionNumber": revision,
            "databaseMajorNumber": major, "databaseMinorNumber": minor, "databaseRevisionNumber": revision,
            "serviceMajorNumber": major, "serviceMinorNumber": minor, "serviceRevisionNumber": revision,
            "serviceDate": mplus_schema.mplus_date(stamp.date()), "serviceDateTime": mplus_schema.mplus_datetime(stamp),
            "serviceHostname": "mplus-simulator", "inDebugMode": False, "isSlaveApi": False,
            "slaveApiType": "NO-SLAVE-API",
            "serviceVersionDisplayString": "%d.%d.%d (simulator)" % (major, minor, revision)}, {}


def op_get_current_sync_markers(sim, args, stamp):
    return sim.store.markers(), {}


V2_FLAGS = {"includeArticleSyncMarker": "articleSyncMarker", "includeArticleGroupSyncMarker": "articleGroupSyncMarker",
            "includeRelationSyncMarker": "relationSyncMarker", "includeEmployeeSyncMarker": "employeeSyncMarker",
            "includeInvoiceSyncMarker": "invoiceSyncMarker", "includeReceiptSyncMarker": "receiptSyncMarker",
            "includeOrderSyncMarker": "orderSyncMarker", "includeStockId": "stockId"}


def op_get_current_sync_markers_v2(sim, args, stamp):
    req = _request(args)
    markers = sim.store.markers()
    if not any(flag in req for flag in V2_FLAGS):
        return markers, {}
    return {field: markers[field] for flag, field in V2_FLAGS.items() if req.get(flag)}, {}


def op_get_branches(sim, args, stamp):
    return {"branches": {"branch": sim.store.branches}}, {"returned": len(sim.store.branches)}


def op_get_vat_group_list(sim, args, stamp):
    groups = sim.store.vat_groups()
    return {"vatGroup": groups}, {"returned": len(groups)}


def op_get_turnover_groups(sim, args, stamp):
    groups = sim.store.turnover_groups
    return {"turnoverGroupList": {"turnoverGroup": groups}}, {"returned": len(groups)}


def op_get_payment_methods(sim, args, stamp):
    methods = sim.store.payment_methods
    req = _request(args)
    types = set(req.get("paymentMethodTypes") or ())
    if types:
        methods = [m for m in methods if m.get("type") in types]
    if req.get("accountNumber") is not None:
        methods = [m for m in methods if m.get("accountNumber") == req["accountNumber"]]
    return {"paymentMethodList": {"paymentMethod": methods}}, {"returned": len(methods)}


def _listed(answer, found, marker_field="syncMarker"):
    markers = [item.get(marker_field) or 0 for item in found]
    return answer, {"returned": len(found), "max_marker": max(markers) if markers else None}


def op_get_employees(sim, args, stamp):
    return _listed(*sim.store.get_employees(args.get("request")))


def op_get_receipts(sim, args, stamp):
    return _listed(*sim.store.get_documents("receipt", _request(args)))


def op_get_receipts_by_order(sim, args, stamp):
    answer, found = sim.store.get_receipts_by_order(args.get("orderId"))
    info = _listed(answer, found)[1]
    info["result"] = answer["result"]
    return answer, info


def op_get_journals(sim, args, stamp):
    answer, journals = sim.store.get_journals(_request(args))
    return answer, {"returned": len(journals)}


def op_get_financial_journal(sim, args, stamp):
    answer, groups = sim.store.get_financial_journal(_request(args))
    return answer, {"returned": len(groups)}


def op_get_invoices(sim, args, stamp):
    return _listed(*sim.store.get_documents("invoice", _request(args)))


def op_get_orders(sim, args, stamp):
    return _listed(*sim.store.get_documents("order", _request(args)))


def op_get_products(sim, args, stamp):
    raw = sim.store.get_products(_request(args))
    return raw, {"returned": raw.count, "max_marker": raw.max_marker or None}


def op_get_article_group_changes(sim, args, stamp):
    return _listed(*sim.store.get_article_group_changes(_request(args)))


def op_get_relations(sim, args, stamp):
    return _listed(*sim.store.get_relations(args.get("request")))


def op_find_relation(sim, args, stamp):
    found = sim.store.find_relation(args.get("relation"))
    if found is None:
        return {"result": "FIND-RELATION-RESULT-NOT-FOUND"}, {"result": "FIND-RELATION-RESULT-NOT-FOUND"}
    return {"result": "FIND-RELATION-RESULT-OK", "relation": found}, {"result": "FIND-RELATION-RESULT-OK"}


def _result(answer):
    return answer, {"result": answer.get("result")}


def op_create_relation(sim, args, stamp):
    return _result(sim.store.create_relation(args.get("relation"), stamp))


def op_update_relation(sim, args, stamp):
    return _result(sim.store.update_relation(args.get("relation"), stamp))


def op_get_stock(sim, args, stamp):
    return _listed(*sim.store.get_stock(_request(args)), marker_field="stockId")


def op_set_stock(sim, args, stamp):
    return _result(sim.store.change_stock(_request(args), stamp, relative=False))


def op_update_stock(sim, args, stamp):
    return _result(sim.store.change_stock(_request(args), stamp, relative=True))


def op_create_product(sim, args, stamp):
    return _result(sim.store.create_product(args["product"], stamp))


def op_update_product(sim, args, stamp):
    return _result(sim.store.update_product(args["product"], stamp))


OPERATIONS = {
    "getApiVersion": op_get_api_version,
    "getCurrentSyncMarkers": op_get_current_sync_markers,
    "getCurrentSyncMarkersV2": op_get_current_sync_markers_v2,
    "getBranches": op_get_branches,
    "getVatGroupList": op_get_vat_group_list,
    "getTurnoverGroups": op_get_turnover_groups,
    "getPaymentMethods": op_get_payment_methods,
    "getPaymentMethodsV2": op_get_payment_methods,
    "getEmployees": op_get_employees,
    "getReceipts": op_get_receipts,
    "getReceiptsByOrder": op_get_receipts_by_order,
    "getInvoices": op_get_invoices,
    "getOrders": op_get_orders,
    "getProducts": op_get_products,
    "getArticleGroupChanges": op_get_article_group_changes,
    "getRelations": op_get_relations,
    "findRelation": op_find_relation,
    "createRelation": op_create_relation,
    "updateRelation": op_update_relation,
    "getStock": op_get_stock,
    "getJournals": op_get_journals,
    "getFinancialJournal": op_get_financial_journal,
    "setStock": op_set_stock,
    "updateStock": op_update_stock,
    "createProduct": op_create_product,
    "updateProduct": op_update_product,
}


# ---- HTTP ------------------------------------------------------------------------------------


def fault_bytes(code, string, detail=None):
    env = etree.Element("{%s}Envelope" % SOAP_ENV, nsmap=NSMAP)
    body = etree.SubElement(env, "{%s}Body" % SOAP_ENV)
    fault = etree.SubElement(body, "{%s}Fault" % SOAP_ENV)
    etree.SubElement(fault, "faultcode").text = code
    etree.SubElement(fault, "faultstring").text = string
    if detail:
        etree.SubElement(fault, "detail").text = detail
    return etree.tostring(env, xml_declaration=True, encoding="UTF-8")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "gSOAP/2.8"
    sys_version = ""

    def version_string(self):
        return self.server_version

    @property
    def sim(self):
        return self.server.sim

    def log_message(self, fmt, *args):
        """Quiet: GET /_sim/requests is the request log."""

    def do_GET(self):
        self._dispatch()

    def do_POST(self):
        self._dispatch()

    # -- plumbing --

    def _read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self):
        url = urllib.parse.urlsplit(self.path)
        self.url_path = url.path
        self.raw_query = url.query
        self.params = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
        self.body = self._read_body()
        self.entry = None
        try:
            if url.path.startswith("/_sim/"):
                self._control()
            elif self.command == "POST":
                self._soap()
            elif self.command == "GET" and ("wsdl" in self.params or url.query.lower() == "wsdl"):
                self._send(200, self.sim.wsdl, XML_CT)
            else:
                # The legacy client probes the endpoint with a GET and expects 405.
                self._send(405, b"Method Not Allowed\n", "text/plain", {"Allow": "POST"})
        except Exception:  # a simulator bug: answer 500 and show it, do not hang the client
            traceback.print_exc()
            try:
                self._send(500, fault_bytes("SOAP-ENV:Server", "simulator error: see its stderr"), XML_CT)
            except OSError:
                pass

    def _send(self, status, body, content_type, headers=None):
        # Logged before the answer goes: a client that reads the log as soon
        # as it has the answer finds the status there.
        if self.entry is not None:
            self.entry["status"] = status
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, status, obj):
        self._send(status, dumps(obj), "application/json; charset=utf-8")

    # -- SOAP --

    def _soap(self):
        sim = self.sim
        started = time.monotonic()
        entry = self.entry = {
            "time": iso_utc_ms(), "method": self.command, "path": self.url_path,
            "query": {k: v for k, v in self.params.items() if k != "secret"},
            "operation": None, "soap_action": self.headers.get("SOAPAction"),
            "request_id": self.headers.get("X-Request-Id"), "content_type": self.headers.get("Content-Type"),
            "auth": None, "validated": None, "validation_errors": None, "fault": None, "soap_fault": None,
            "status": None, "params": None, "result": None, "returned": None, "max_marker": None,
            "response_errors": None, "duration_ms": None,
        }
        sim.log(entry)
        try:
            self._soap_request(entry)
        finally:
            entry["duration_ms"] = round((time.monotonic() - started) * 1000, 1)

    def _soap_request(self, entry):
        sim = self.sim
        doc, parse_error, op_el, envelope_error = None, None, None, None
        try:
            parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)
            doc = etree.fromstring(self.body, parser) if self.body.strip() else None
            if doc is None:
                parse_error = "the request has no body"
        except etree.XMLSyntaxError as e:
            parse_error = "XML parse error: line %s: %s" % (e.lineno, e.msg)
        if doc is not None:
            op_el, envelope_error = self._operation_element(doc)
        if op_el is not None and etree.QName(op_el).namespace == URN:
            entry["operation"] = etree.QName(op_el).localname
        operation = entry["operation"]
        rule = sim.faults.take(operation)
        if rule is not None:
            entry["fault"] = rule.kind
            if rule.kind not in ("slow", "truncated", "result_failed"):
                self._inject(rule)
                return
            if rule.kind == "slow":
                time.sleep((rule.delay_ms or 0) / 1000.0)
        s = sim.settings
        ident_ok = hmac.compare_digest(self.params.get("ident", "").encode(), (s.get("ident") or "").encode())
        secret_ok = hmac.compare_digest(self.params.get("secret", "").encode(), (s.get("secret") or "").encode())
        entry["auth"] = "ok" if ident_ok and secret_ok else "failed"
        if op_el is not None:
            # Validated even when the credentials are wrong, so the log always tells.
            errors = ["line %s: %s" % e for e in sim.schema.validate(op_el)]
            entry["validated"] = "failed" if errors else "ok"
            entry["validation_errors"] = errors or None
        elif parse_error or envelope_error:
            entry["validated"] = "failed"
            entry["validation_errors"] = [parse_error or envelope_error[1]]
        try:
            if entry["auth"] != "ok":
                raise SoapFault(*AUTH_FAULT)
            if parse_error:
                raise SoapFault("SOAP-ENV:Client", parse_error)
            if envelope_error:
                raise SoapFault(*envelope_error)
            if entry["validation_errors"]:
                raise SoapFault("SOAP-ENV:Client", "Validation constraint violation: " + entry["validation_errors"][0],
                                "\n".join(entry["validation_errors"]))
            handler = OPERATIONS.get(operation)
            if handler is None:
                raise SoapFault("SOAP-ENV:Client", "Method 'ns:%s' not implemented: the MplusKASSA simulator does "
                                                   "not model this operation" % operation)
            args = sim.schema.read(op_el, sim.schema.elements[operation])
            entry["params"] = self._summary(args)
            response_name = sim.schema.operations[operation][1]
            if rule is not None and rule.kind == "result_failed":
                # An in-band failure: HTTP 200, result ...-FAILED, nothing changed.
                data = {"result": MUTATING[operation],
                        "errorMessage": rule.faultstring or "Simulated failure (fault injection)"}
                info = {"result": data["result"]}
                body = self._response_bytes(response_name, data)
            else:
                with sim.store.lock:  # the answer refers to live records: serialize before unlocking
                    data, info = handler(sim, args, mplus_store.now())
                    body = self._response_bytes(response_name, data)
            entry.update(info)
        except SoapFault as fault:
            entry["soap_fault"] = fault.code
            self._send(500, fault_bytes(fault.code, fault.string, fault.detail), XML_CT, self._headers())
            return
        if s.get("validate_responses"):
            problems = self._check_response(body)
            if problems:
                entry["soap_fault"] = "SOAP-ENV:Server"
                entry["response_errors"] = problems
                self._send(500, fault_bytes("SOAP-ENV:Server", "simulator produced an invalid response: " + problems[0],
                                            "\n".join(problems)), XML_CT, self._headers())
                return
        if rule is not None and rule.kind == "truncated":
            body = body[:max(1, len(body) // 2)]
        self._send(200, body, XML_CT, self._headers())

    @staticmethod
    def _operation_element(doc):
        """(body child, None) or (None, (faultcode, faultstring))."""
        root = etree.QName(doc)
        if root.namespace == SOAP12_ENV:
            return None, ("SOAP-ENV:VersionMismatch", "SOAP 1.2 envelope; this service speaks SOAP 1.1")
        if root.namespace != SOAP_ENV or root.localname != "Envelope":
            return None, ("SOAP-ENV:Client", "not a SOAP 1.1 envelope: the root element is %s" % doc.tag)
        body = doc.find("{%s}Body" % SOAP_ENV)
        if body is None:
            return None, ("SOAP-ENV:Client", "the SOAP envelope has no Body")
        children = [c for c in body if isinstance(c.tag, str)]
        if len(children) != 1:
            return None, ("SOAP-ENV:Client", "the SOAP Body must hold exactly one element, not %d" % len(children))
        return children[0], None

    @staticmethod
    def _summary(args):
        """The request's top-level simple values (syncMarker, syncMarkerLimit, stockId...) for the log."""
        req = args.get("request") if isinstance(args.get("request"), dict) else args
        out = {}
        for k, v in req.items():
            if isinstance(v, (int, str, bool)) or isinstance(v, decimal.Decimal):
                out[k] = v
        return out

    def _response_bytes(self, name, data):
        if isinstance(data, RawXML):
            inner = "<ns:%s>%s</ns:%s>" % (data.element, data.inner, data.element)
            return (RAW_HEAD + inner + RAW_TAIL).encode("utf-8")
        schema = self.sim.schema
        env = etree.Element("{%s}Envelope" % SOAP_ENV, nsmap=NSMAP)
        body = etree.SubElement(env, "{%s}Body" % SOAP_ENV)
        el = etree.SubElement(body, "{%s}%s" % (URN, name))
        schema.build(el, schema.elements[name], data)
        return etree.tostring(env, xml_declaration=True, encoding="UTF-8")

    def _check_response(self, body):
        doc = etree.fromstring(body, etree.XMLParser(huge_tree=True))
        element = doc.find("{%s}Body" % SOAP_ENV)[0]
        return ["line %s: %s" % e for e in self.sim.schema.validate(element)]

    def _headers(self):
        return {SERVICE_VERSION_HEADER: str(self.sim.settings.get("api_version") or ""),
                "Server-Timing": "app;dur=1"}

    def _inject(self, rule):
        kind = rule.kind
        if kind == "reset":
            # SO_LINGER 0 turns close() into a TCP RST: the client sees "connection reset".
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
        elif kind == "timeout":
            time.sleep((rule.delay_ms or DEFAULT_HANG_MS) / 1000.0)
            self.close_connection = True  # and no answer at all
        elif kind == "soap_fault":
            code = rule.faultcode or "SOAP-ENV:Server"
            self.entry["soap_fault"] = code
            self._send(500, fault_bytes(code, rule.faultstring or "Internal server error (simulated)"), XML_CT,
                       self._headers())
        elif kind == "http_500":
            self._send(500, b"<html><body><h1>500 Internal Server Error</h1></body></html>\n", "text/html")
        elif kind == "http_503":
            self._send(503, b"<html><body><h1>503 Service Unavailable</h1></body></html>\n", "text/html")

    # -- control API --

    def _control(self):
        sim = self.sim
        try:
            data = json.loads(self.body) if self.body else {}
        except ValueError:
            data = None
        if not isinstance(data, dict):
            self._send_json(400, {"error": "the body must be a JSON object"})
            return
        route = (self.command, self.url_path)
        try:
            if route == ("POST", "/_sim/reset"):
                seed = data.get("seed")
                bulk = data.get("bulk_articles")
                sim.reset(None if seed is None else bool(seed), None if bulk is None else int(bulk))
                answer = {"ok": True, "markers": sim.store.markers()}
            elif route == ("GET", "/_sim/requests"):
                with sim.log_lock:
                    answer = copy.deepcopy(sim.request_log)
            elif route == ("POST", "/_sim/requests/clear"):
                with sim.log_lock:
                    sim.request_log = []
                answer = {"ok": True}
            elif route == ("POST", "/_sim/fault"):
                answer = self._control_fault(data)
            elif route == ("GET", "/_sim/faults"):
                answer = sim.faults.pending()
            elif route == ("POST", "/_sim/faults/clear"):
                sim.faults.clear()
                answer = {"ok": True}
            elif route == ("POST", "/_sim/config"):
                answer = self._control_config(data)
            elif route == ("GET", "/_sim/markers"):
                with sim.store.lock:
                    answer = sim.store.markers()
            elif route == ("POST", "/_sim/entity"):
                answer = self._control_entity(data)
            elif route == ("GET", "/_sim/entities"):
                answer = self._control_entities()
            elif route == ("POST", "/_sim/seed"):
                answer = self._control_seed(data)
            elif route == ("POST", "/_sim/stock/burst"):
                answer = self._control_stock_burst(data)
            elif route == ("POST", "/_sim/day/close"):
                answer = self._control_day_close(data)
            elif route == ("POST", "/_sim/till/sale"):
                answer = self._control_sale(data)
            elif route == ("POST", "/_sim/till/sales"):
                answer = self._control_sales(data)
            elif route == ("POST", "/_sim/till/pay"):
                answer = self._control_change("invoice", data)
            elif route == ("POST", "/_sim/till/order"):
                answer = self._control_change("order", data)
            elif route == ("POST", "/_sim/till/event"):
                answer = self._control_event(data)
            elif route == ("GET", "/_sim/callbacks"):
                answer = sim.callbacks.list()
            elif route == ("POST", "/_sim/callbacks/clear"):
                with sim.callbacks.lock:
                    sim.callbacks.deliveries = []
                answer = {"ok": True}
            else:
                self._send_json(404, {"error": "no such control endpoint"})
                return
        except (ControlError, StoreError, SchemaError, TypeError, ValueError, KeyError) as e:
            self._send_json(400, {"error": str(e)})
            return
        self._send_json(200, answer)

    def _control_fault(self, data):
        kind = str(data.get("kind", ""))
        if kind not in FAULT_KINDS:
            raise ControlError("kind must be one of %s" % ", ".join(FAULT_KINDS))
        operation = data.get("operation")
        if operation is not None and operation not in self.sim.schema.operations:
            raise ControlError("unknown operation %r" % operation)
        if kind == "result_failed" and operation is not None and operation not in MUTATING:
            raise ControlError("result_failed applies to %s" % ", ".join(MUTATING))
        count = int(data.get("count", 1))
        self.sim.faults.add(FaultRule(kind, count, operation, int(data.get("delay_ms") or 0),
                                      data.get("faultcode"), data.get("faultstring")))
        return {"ok": True}

    def _control_config(self, data):
        unknown = set(data) - set(CONFIG_FIELDS)
        if unknown:
            raise ControlError("unknown config fields: %s" % ", ".join(sorted(unknown)))
        if data.get("webhook_secret_encoding", "raw") not in ("raw", "base64"):
            raise ControlError("webhook_secret_encoding must be raw or base64")
        cap = data.get("sync_marker_limit_cap")
        if cap is not None and (not isinstance(cap, int) or cap < 0):
            raise ControlError("sync_marker_limit_cap must be a non-negative integer or null")
        with self.sim.store.lock:
            self.sim.settings.update(data)
            return dict(self.sim.settings)

    def _control_entity(self, data):
        kind = data.get("kind")
        if kind == "article_group":
            kind = "articleGroup"
        obj = data.get("object")
        if not isinstance(obj, dict):
            raise ControlError("object must be a JSON object")
        store = self.sim.store
        stamp = mplus_store.now()
        if kind == "stock":
            with store.lock:
                return copy.deepcopy(store.put_stock(obj, stamp))
        if kind not in ENTITY_TYPES:
            raise ControlError("kind must be one of %s" % ", ".join(sorted(list(ENTITY_TYPES) + ["stock"])))
        obj = self.sim.schema.normalize(ENTITY_TYPES[kind], obj)
        with store.lock:
            if kind == "product":
                stored = store.put_product(obj, stamp)
            elif kind == "relation":
                stored = store.put_relation(obj, stamp)
            elif kind == "articleGroup":
                stored = store.put_group(obj, stamp)
            elif kind == "employee":
                stored = store.put_employee(obj, stamp)
            else:
                stored = store.put_document(kind, obj, stamp)
            return copy.deepcopy(stored)

    def _control_entities(self):
        store = self.sim.store
        kind = self.params.get("kind", "")
        offset = int(self.params.get("offset", 0))
        limit = int(self.params.get("limit", 10000))
        with store.lock:
            if kind == "product":
                items = store.all_products(offset, limit)
                return copy.deepcopy(items)
            if kind == "stock":
                items = [store.stock_out(key) for _, key in store.logs["stock"].iter_from(0)]
            elif kind in ("articleGroup", "article_group"):
                items = [store._group_out(store.groups[k]) for k in sorted(store.groups)]
            else:
                table = {"relation": store.relations, "employee": store.employees,
                         "receipt": store.receipts, "invoice": store.invoices, "order": store.orders}.get(kind)
                if table is not None:
                    items = sorted(table.values(), key=lambda r: r["syncMarker"])
                elif kind == "branch":
                    items = store.branches
                elif kind == "vatGroup":
                    items = store.vat_groups()
                elif kind == "turnoverGroup":
                    items = store.turnover_groups
                elif kind == "paymentMethod":
                    items = store.payment_methods
                else:
                    raise ControlError("kind must be one of product, relation, articleGroup, stock, employee, "
                                       "receipt, invoice, order, branch, vatGroup, turnoverGroup, paymentMethod")
            return copy.deepcopy(items[offset:offset + limit])

    def _control_seed(self, data):
        if data.get("touch"):
            with self.sim.store.lock:
                return self.sim.store.touch_bulk()
        n = int(data.get("articles", 0))
        with self.sim.store.lock:
            return self.sim.store.seed_bulk(
                n, per_product=int(data.get("articles_per_product", 1)),
                first_article=data.get("first_article_number"), first_product=data.get("first_product_number"),
                stock=bool(data.get("stock", False)))

    def _control_day_close(self, data):
        """{financialDate: "YYYY-MM-DD", branchNumber, closed (default true)}: the day closed at the till."""
        day = datetime.date.fromisoformat(str(data.get("financialDate", "")))
        with self.sim.store.lock:
            return self.sim.store.close_day(mplus_store.mplus_date(day), int(data["branchNumber"]),
                                            data.get("closed", True) is not False)

    def _control_stock_burst(self, data):
        """changes stock changes cycling over articles from first_article_number in branchNumber:
        change i sets article first + i % articles to 100 + i // articles (whole units)."""
        try:
            first, n, changes = int(data["first_article_number"]), int(data["articles"]), int(data["changes"])
            branch = int(data.get("branchNumber", 1))
        except (KeyError, TypeError, ValueError):
            raise ControlError("stock/burst needs first_article_number, articles and changes (numbers)")
        if n < 1 or not 0 <= changes <= 1000000:
            raise ControlError("articles must be at least 1 and changes at most 1,000,000")
        store = self.sim.store
        stamp = mplus_store.now()
        with store.lock:
            for i in range(changes):
                problem = store._stock_article(branch, first + i % n)
                if problem:
                    raise ControlError("article %d: %s" % (first + i % n, problem))
                store.set_stock(branch, first + i % n, mplus_store.D(100 + i // n), stamp)
        return {"changes": changes, "articles": n}

    def _control_sale(self, data):
        sim = self.sim
        store = sim.store
        session_id = str(uuid.uuid4())
        with store.lock:
            document, doc = store.sale(data, mplus_store.now(), sim.settings)
            if document == "invoice":
                doc["sessionId"] = session_id
            doc = copy.deepcopy(doc)
        answer = {"document": document, document: doc, "sessionId": session_id, "callback": None}
        if not data.get("callback", document != "order"):
            return answer
        event = data.get("event") or ("creditSession" if data.get("kind") == "credit" else "completeSession")
        payload = sim.callbacks.session_payload(event, doc, session_id)
        if data.get("wait", True):
            answer["callback"] = sim.callbacks.deliver(event, payload)
        else:
            threading.Thread(target=sim.callbacks.deliver, args=(event, payload), daemon=True).start()
            answer["callback"] = "sending"
        return answer

    def _control_sales(self, data):
        """Many sales in one request (benchmarks): counts and the first/last marker, not the documents."""
        sim = self.sim
        store = sim.store
        unknown = set(data) - {"count", "spec", "vary", "wait"}
        if unknown:
            raise ControlError("unknown fields: %s (allowed: count, spec, vary, wait)" % ", ".join(sorted(unknown)))
        spec = data.get("spec")
        if not isinstance(spec, dict):
            raise ControlError("spec must be a JSON object (a sale spec)")
        callback = bool(spec.get("callback", False))
        started = time.monotonic()
        payloads = []
        with store.lock:
            made = store.sales(data.get("count"), spec, bool(data.get("vary", False)), mplus_store.now(),
                               sim.settings)
            for document, doc in made:
                if document == "invoice":
                    doc["sessionId"] = str(uuid.uuid4())
                if callback:
                    event = spec.get("event") or ("creditSession" if spec.get("kind") == "credit"
                                                  else "completeSession")
                    session_id = doc.get("sessionId") or str(uuid.uuid4())
                    payloads.append((event, sim.callbacks.session_payload(event, doc, session_id)))
            document = made[0][0]
            answer = {"document": document, "count": len(made),
                      "lines": sum(len(doc["lineList"]["line"]) for _, doc in made),
                      "totalInclAmount": sum(doc["totalInclAmount"] for _, doc in made),
                      "first_sync_marker": made[0][1]["syncMarker"], "last_sync_marker": made[-1][1]["syncMarker"],
                      "markers": store.markers()}
        answer["duration_ms"] = round((time.monotonic() - started) * 1000, 1)
        if not payloads:
            answer["callbacks"] = None
        elif data.get("wait", False):
            statuses = {}
            for event, payload in payloads:
                status = str(sim.callbacks.deliver(event, payload)["status"])
                statuses[status] = statuses.get(status, 0) + 1
            answer["callbacks"] = {"sent": len(payloads), "status": statuses}
        else:
            def send():
                for event, payload in payloads:
                    sim.callbacks.deliver(event, payload)
            threading.Thread(target=send, daemon=True).start()
            answer["callbacks"] = {"sending": len(payloads)}
        return answer

    def _control_change(self, kind, data):
        """A later payment on an invoice; an order's state change / payments, or its pickup or invoice."""
        store = self.sim.store
        with store.lock:
            if kind == "invoice":
                doc = store.pay_invoice(data, mplus_store.now(), self.sim.settings)
                return {"document": kind, kind: copy.deepcopy(doc)}
            return copy.deepcopy(store.change_order(data, mplus_store.now(), self.sim.settings))

    def _control_event(self, data):
        """Any other till event (scanCode, addSessionLine, ...) with the usual envelope."""
        sim = self.sim
        event = data.get("event")
        if not isinstance(event, str) or not event or "/" in event:
            raise ControlError("event must be an event name such as scanCode")
        payload = sim.callbacks.envelope(int(data.get("branchNumber", sim.settings["till_branch"])),
                                         int(data.get("workplaceNumber", sim.settings["till_workplace"])),
                                         bool(data.get("blocking", False)))
        payload["session"] = data.get("session") or {"sessionId": str(uuid.uuid4()), "lines": []}
        extra = data.get("extra") or {}
        if not isinstance(extra, dict):
            raise ControlError("extra must be an object")
        payload.update(extra)
        if data.get("wait", True):
            return sim.callbacks.deliver(event, payload)
        threading.Thread(target=sim.callbacks.deliver, args=(event, payload), daemon=True).start()
        return {"ok": True, "callback": "sending"}


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True   # a hanging "timeout" fault must not block shutdown
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, port, sim):
        super().__init__((HOST, port), Handler)
        self.sim = sim


def main(argv=None):
    parser = argparse.ArgumentParser(description="MplusKASSA SOAP API simulator for integration tests")
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--ident", required=True, help="the API ident expected as ?ident=")
    parser.add_argument("--secret", required=True, help="the API secret expected as ?secret=")
    parser.add_argument("--port-file", help="also write the port number to this file")
    parser.add_argument("--webhook-url", help="base URL of the gateway's Mplus callbacks; events go to URL/{event}")
    parser.add_argument("--webhook-secret", default="", help="HMAC key of X-Mplus-Signature")
    parser.add_argument("--webhook-secret-encoding", choices=("raw", "base64"), default="raw",
                        help="raw: the secret's text is the key; base64: its decoded bytes are")
    parser.add_argument("--subscription-id", help="sent as X-Mplus-Subscription-Id")
    parser.add_argument("--empty", action="store_true", help="no sample catalogue, relations or stock")
    parser.add_argument("--bulk-articles", type=int, default=0, help="also seed this many bulk articles")
    parser.add_argument("--sync-marker-limit-cap", type=int, default=None,
                        help="server-side maximum of syncMarkerLimit (also the page size when it is absent)")
    parser.add_argument("--validate-responses", action="store_true",
                        help="validate every response against the XSD before sending it")
    args = parser.parse_args(argv)

    server = Server(args.port, Simulator(args))
    port = server.server_address[1]
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as f:
            f.write("%d\n" % port)
        os.replace(args.port_file + ".tmp", args.port_file)  # readers never see a partial file
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="http", daemon=True)
    thread.start()
    print("READY %d" % port, flush=True)
    stop.wait()
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
