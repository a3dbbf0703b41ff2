#!/usr/bin/env python3
"""qbo_sim - a local QuickBooks Online simulator for the gateway's integration tests.

Serves, on 127.0.0.1 only, Intuit's OAuth 2.0 endpoints (authorize, token),
the Accounting API under /v3/company/{realm}/ (read, create, update, delete,
void, query, CDC) with QBO's throttling, and sends signed webhooks when data
changes.  A control API under /_sim/ lets a test inject faults, change
limits, expire or revoke tokens, change data "in the QuickBooks UI" and see
every request and webhook.  See README.md next to this file.

    python3 tests/sim/qbo_sim.py --port 0 --realm 1234 --client-id ID --client-secret SECRET

prints "READY <port>" once it listens and runs until SIGTERM or SIGINT.
Python 3 standard library only.
"""

import argparse
import base64
import binascii
import collections
import copy
import datetime
import hashlib
import hmac
import http.client
import http.server
import json
import os
import queue
import re
import secrets
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

import qbo_company  # noqa: E402  (needs the path above)
import qbo_schema  # noqa: E402
from qbo_company import Fault, dumps, now, response_time  # noqa: E402

HOST = "127.0.0.1"
FIXTURES = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                         "..", "fixtures", "quickbooks"))
# Sent byte for byte on every throttled request, as XML even to JSON clients.
with open(os.path.join(FIXTURES, "errors", "throttle_3001_status429.xml"), "rb") as _f:
    THROTTLE_BODY = _f.read()

AUTH_CODE_TTL = 600                 # seconds an authorization code stays usable
REFRESH_TOKEN_LIFETIME = 8640000    # x_refresh_token_expires_in: 100 days, as documented
WEBHOOK_TIMEOUT = 3.0               # Intuit wants the 200 within three seconds
WEBHOOK_RETRY_DELAYS = (0.2, 0.5, 1.0)  # Intuit's real schedule is 10 s, 20 s, 30 s, ... (too slow here)
WEBHOOK_BATCH = 100                 # events per notification at most
BATCH_MAX = 30                      # items per batch request ([LIMITS]; the batch page says 10)
DEFAULT_HANG_MS = 60000             # "timeout" fault without delay_ms
FAULT_KINDS = ("500", "503", "timeout", "reset", "slow", "429", "401", "batch_item", "lost")
# "batch_item" is taken by the items of a batch, not by requests: the item is not
# run and answers QuickBooks' SystemFault in its place. "lost" does the request
# and then resets the connection instead of answering (the answer lost on the way).
WEBHOOK_OPS = {"Create": "created", "Update": "updated", "Delete": "deleted", "Merge": "merged",
               "Void": "void", "Emailed": "emailed"}
CONFIG_FIELDS = ("access_ttl", "rotate_refresh", "refresh_grace", "rate_per_min", "rate_per_sec",
                 "max_concurrent", "retry_after", "webhook_url", "webhook_format", "verifier_token",
                 "authorize_realm", "query_equals_case_sensitive")


def iso_utc(stamp):
    """Webhook timestamps: 2025-09-08T20:52:31.657Z."""
    return stamp.astimezone(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ---- OAuth 2.0 ---------------------------------------------------------------------


class RefreshToken:
    def __init__(self, realm):
        self.realm = realm
        self.successor = None    # the token that replaced this one at rotation
        self.rotated_at = None   # time.monotonic() of the rotation
        self.revoked = False


class OAuth:
    """Authorization codes, refresh tokens (rotating) and access tokens, each tied to a realm."""

    def __init__(self, sim):
        self.sim = sim
        self.lock = threading.RLock()  # token() mints refresh tokens through mint_refresh()
        self.codes = {}    # code -> (redirect_uri, realm, expiry)
        self.refresh = {}  # refresh token -> RefreshToken
        self.access = {}   # access token -> (realm, expiry), expiry in time.monotonic()

    def authorize(self, params):
        """(status, Location or error text) for GET /connect/oauth2."""
        with self.lock:
            return self._authorize(params)

    def _authorize(self, params):
        s = self.sim.settings
        if params.get("client_id") != self.sim.client_id:
            return 400, "invalid_client"
        if params.get("response_type") != "code" or not params.get("redirect_uri"):
            return 400, "invalid_request"
        realm = s["authorize_realm"] or self.sim.realms[0]
        code = "AB11" + secrets.token_urlsafe(24)
        self.codes[code] = (params["redirect_uri"], realm, time.monotonic() + AUTH_CODE_TTL)
        answer = [("code", code)]
        if "state" in params:
            answer.append(("state", params["state"]))
        answer.append(("realmId", realm))
        sep = "&" if "?" in params["redirect_uri"] else "?"
        return 302, params["redirect_uri"] + sep + urllib.parse.urlencode(answer)

    def token(self, authorization, form):
        """(status, JSON body) for POST /oauth2/v1/tokens/bearer."""
        with self.lock:
            return self._token(authorization, form)

    def _token(self, authorization, form):
        if not self._client_ok(authorization):
            return 401, {"error": "invalid_client"}
        grant = form.get("grant_type")
        if grant == "authorization_code":
            entry = self.codes.pop(form.get("code", ""), None)  # single use, even when it fails below
            if entry is None or entry[2] < time.monotonic() or entry[0] != form.get("redirect_uri"):
                return 400, {"error": "invalid_grant"}
            return 200, self._grant(self.mint_refresh(entry[1]))
        if grant == "refresh_token":
            token = form.get("refresh_token", "")
            entry = self.refresh.get(token)
            if entry is None or entry.revoked:
                return 400, {"error": "invalid_grant"}
            if entry.successor is not None:
                # Rotated away: usable only within the grace period, and then it
                # yields the current token of the chain instead of forking it.
                if time.monotonic() - entry.rotated_at > self.sim.settings["refresh_grace"]:
                    return 400, {"error": "invalid_grant"}
                while entry.successor is not None:
                    token, entry = entry.successor, self.refresh[entry.successor]
                return 200, self._grant(token)
            if self.sim.settings["rotate_refresh"]:
                new = self.mint_refresh(entry.realm)
                entry.successor, entry.rotated_at = new, time.monotonic()
                token = new
            return 200, self._grant(token)
        return 400, {"error": "unsupported_grant_type"}

    def _client_ok(self, authorization):
        scheme, _, encoded = (authorization or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            client_id, _, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return (hmac.compare_digest(client_id, self.sim.client_id)
                and hmac.compare_digest(secret, self.sim.client_secret))

    def mint_refresh(self, realm):
        """A new refresh token for a realm (also POST /_sim/token)."""
        with self.lock:
            token = "AB11" + secrets.token_urlsafe(36)
            self.refresh[token] = RefreshToken(realm)
            return token

    def _grant(self, refresh_token):
        """A token response shaped like oauth/token_refresh_success.json."""
        realm = self.refresh[refresh_token].realm
        ttl = self.sim.settings["access_ttl"]
        access = "eyJ" + secrets.token_urlsafe(48)
        self.access[access] = (realm, time.monotonic() + ttl)
        return {"token_type": "bearer", "expires_in": ttl, "refresh_token": refresh_token,
                "x_refresh_token_expires_in": REFRESH_TOKEN_LIFETIME, "access_token": access}

    def access_realm(self, token):
        """The realm of a valid access token, or None."""
        with self.lock:
            entry = self.access.get(token)
        if entry is None or entry[1] <= time.monotonic():
            return None
        return entry[0]

    def expire_all(self):
        with self.lock:
            self.access = {t: (realm, 0) for t, (realm, _) in self.access.items()}

    def revoke_all(self):
        """Like a disconnect: every refresh and access token stops working."""
        with self.lock:
            for entry in self.refresh.values():
                entry.revoked = True
        self.expire_all()


# ---- throttling and fault injection ------------------------------------------------


class Throttle:
    """QBO's per-realm limits: requests per minute, per second and in flight."""

    def __init__(self, sim):
        self.sim = sim
        self.lock = threading.Lock()
        self.history = collections.defaultdict(collections.deque)  # realm -> admitted times
        self.in_flight = collections.Counter()

    def admit(self, realm):
        """True (and counted as in flight) when the request may run; release() it after."""
        s = self.sim.settings
        with self.lock:
            stamp = time.monotonic()
            times = self.history[realm]
            while times and times[0] <= stamp - 60:
                times.popleft()
            last_second = sum(1 for t in times if t > stamp - 1)
            if (len(times) >= s["rate_per_min"] or last_second >= s["rate_per_sec"]
                    or self.in_flight[realm] >= s["max_concurrent"]):
                return False
            times.append(stamp)
            self.in_flight[realm] += 1
            return True

    def release(self, realm):
        with self.lock:
            self.in_flight[realm] -= 1

    def clear(self):
        with self.lock:
            self.history.clear()


def system_failure():
    return Fault("10000", "An application error has occurred while processing your request",
                 "System Failure Error: An unexpected error occurred while accessing or saving your "
                 "data. Please wait a few minutes and try again.", fault_type="SystemFault")


class FaultRule:
    def __init__(self, kind, count, path_contains, delay_ms):
        self.kind, self.remaining = kind, count
        self.path_contains, self.delay_ms = path_contains, delay_ms


class Faults:
    """Queued fault rules; each request consumes the first rule matching its path and query."""

    def __init__(self):
        self.lock = threading.Lock()
        self.rules = []

    def add(self, rule):
        with self.lock:
            self.rules.append(rule)

    def take(self, target, item=False):
        with self.lock:
            for rule in self.rules:
                if (rule.kind == "batch_item") == item and rule.remaining > 0 and \
                        (not rule.path_contains or rule.path_contains in target):
                    rule.remaining -= 1
                    return rule
            return None

    def clear(self):
        with self.lock:
            self.rules = []


# ---- webhooks ------------------------------------------------------------------------


class Webhooks:
    """Sends data-change notifications from one background thread, in order, with retries.

    Events queued while a notification is out travel together in the next one
    (per realm in the legacy format), and like Intuit the sender does not move
    on to later events while an earlier notification is still being retried.
    """

    def __init__(self, sim):
        self.sim = sim
        self.queue = queue.Queue()
        self.lock = threading.Lock()
        self.deliveries = []
        self.generation = 0   # bumped by reset so late deliveries of old events are not recorded
        threading.Thread(target=self._run, name="webhooks", daemon=True).start()

    def notify(self, realm, entity, obj_id, operation, stamp, deleted_id=None):
        if self.sim.settings["webhook_url"]:
            self.queue.put((self.generation, {"realm": realm, "entity": entity, "id": obj_id,
                                              "operation": operation, "time": stamp, "deleted_id": deleted_id}))

    def reset(self):
        with self.lock:
            self.generation += 1
            self.deliveries = []

    def list(self):
        with self.lock:
            return copy.deepcopy(self.deliveries)

    def _run(self):
        while True:
            batch = [self.queue.get()]
            while len(batch) < WEBHOOK_BATCH:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            batch = [event for generation, event in batch if generation == self.generation]
            for body in self._payloads(batch):
                self._deliver(body)

    def _payloads(self, events):
        if not events:
            return []
        if self.sim.settings["webhook_format"] == "cloudevents":
            return [dumps([self._cloudevent(e) for e in events])]
        by_realm = collections.OrderedDict()
        for e in events:
            by_realm.setdefault(e["realm"], []).append(e)
        bodies = []
        for realm, realm_events in by_realm.items():
            entities = []
            for e in realm_events:
                entity = {"name": e["entity"], "id": e["id"], "operation": e["operation"],
                          "lastUpdated": iso_utc(e["time"])}
                if e["deleted_id"]:
                    entity["deletedId"] = e["deleted_id"]
                entities.append(entity)
            bodies.append(dumps({"eventNotifications": [{"realmId": realm,
                                                         "dataChangeEvent": {"entities": entities}}]}))
        return bodies

    @staticmethod
    def _cloudevent(e):
        data = {"deletedid": e["deleted_id"]} if e["deleted_id"] else {}
        return {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "intuit.sim",
                "type": "qbo.%s.%s.v1" % (e["entity"].lower(), WEBHOOK_OPS[e["operation"]]),
                "datacontenttype": "application/json", "time": iso_utc(e["time"]),
                "intuitentityid": e["id"], "intuitaccountid": e["realm"], "data": data}

    def _deliver(self, body):
        s = self.sim.settings
        url, key = s["webhook_url"], (s["verifier_token"] or "").encode()
        signature = base64.b64encode(hmac.new(key, body, hashlib.sha256).digest()).decode()
        record = {"url": url, "format": s["webhook_format"], "body": body.decode(), "signature": signature,
                  "attempts": [], "delivered": False}
        generation = self.generation
        for delay in (0,) + WEBHOOK_RETRY_DELAYS:
            time.sleep(delay)
            status, error = self._post(url, body, signature)
            record["attempts"].append({"status": status, "error": error, "time": iso_utc(now())})
            if status is not None and 200 <= status < 300:
                record["delivered"] = True
                break
        with self.lock:
            if generation == self.generation:
                self.deliveries.append(record)

    @staticmethod
    def _post(url, body, signature):
        """(HTTP status or None, error text or None) of one attempt."""
        parts = urllib.parse.urlsplit(url)
        conn_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        try:
            conn = conn_class(parts.hostname, parts.port, timeout=WEBHOOK_TIMEOUT)
            try:
                conn.request("POST", (parts.path or "/") + ("?" + parts.query if parts.query else ""), body,
                             {"Content-Type": "application/json", "intuit-signature": signature,
                              "User-Agent": "qbo-sim-webhooks"})
                response = conn.getresponse()
                response.read()
                return response.status, None
            finally:
                conn.close()
        except (OSError, http.client.HTTPException) as e:
            return None, "%s: %s" % (type(e).__name__, e)


# ---- the simulator -----------------------------------------------------------------


class Simulator:
    """All state of one simulator process; the HTTP handler works on it."""

    def __init__(self, args):
        self.realms = args.realm
        self.client_id, self.client_secret = args.client_id, args.client_secret
        self.initial_settings = {
            "access_ttl": args.access_ttl, "rotate_refresh": True, "refresh_grace": args.refresh_grace,
            "rate_per_min": 500, "rate_per_sec": 10, "max_concurrent": 10, "retry_after": None,
            "webhook_url": args.webhook_url, "webhook_format": args.webhook_format,
            "verifier_token": args.verifier_token, "authorize_realm": None,
            # '=' in queries compares strings exactly, so a test proves the gateway
            # does not rely on QBO matching some fields case-insensitively.
            "query_equals_case_sensitive": True,
        }
        self.settings = dict(self.initial_settings)
        self.schema = qbo_schema.load()
        self.companies = {r: qbo_company.Company(r, self.schema) for r in self.realms}
        self.oauth = OAuth(self)
        self.throttle = Throttle(self)
        self.faults = Faults()
        self.webhooks = Webhooks(self)
        self.log_lock = threading.Lock()
        self.request_log = []

    def reset(self):
        """Fresh companies, settings, faults, logs and limits; OAuth tokens stay valid
        so a gateway that is connected stays connected."""
        self.settings = dict(self.initial_settings)
        for realm in self.realms:
            self.companies[realm] = qbo_company.Company(realm, self.schema)
        self.faults.clear()
        self.throttle.clear()
        self.webhooks.reset()
        with self.log_lock:
            self.request_log = []

    def log(self, entry):
        with self.log_lock:
            self.request_log.append(entry)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "qbo-sim"
    sys_version = ""

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

    def _dispatch(self):
        url = urllib.parse.urlsplit(self.path)
        self.url_path = url.path
        self.params = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        self.body = self.rfile.read(length) if length else b""
        self.entry = None
        try:
            if url.path.startswith("/_sim/"):
                self._control()
            else:
                self._public()
        except Exception:  # a simulator bug: answer 500 and show it, do not hang the client
            traceback.print_exc()
            self._send(500, b"simulator error\n", "text/plain")

    def _send(self, status, body, content_type="application/json;charset=utf-8", headers=None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.entry is not None:
            # QuickBooks names every API answer with a transaction id for its support.
            self.entry["intuit_tid"] = "1-%s" % uuid.uuid4().hex[:24]
            self.send_header("intuit_tid", self.entry["intuit_tid"])
        self.end_headers()
        self.wfile.write(body)
        if self.entry is not None:
            self.entry["status"] = status

    def _send_json(self, status, obj, headers=None):
        self._send(status, dumps(obj), headers=headers)

    # -- OAuth and Accounting API --

    def _public(self):
        self.entry = {"method": self.command, "path": self.url_path, "query": self.params,
                      "body": self._logged_body(), "status": None, "time": response_time(now())}
        if self.body and isinstance(self.entry["body"], (dict, list)):
            self.entry["body_text"] = self.body.decode("utf-8", "replace")   # as sent, byte for byte
        self.sim.log(self.entry)
        rule = self.sim.faults.take(self.path)
        if rule is not None:
            self.entry["fault"] = rule.kind
            if rule.kind not in ("slow", "lost"):
                self._inject(rule)
                return
        self.lose_answer = rule is not None and rule.kind == "lost"
        delay = rule.delay_ms / 1000.0 if rule is not None else 0  # "slow": late but normal answer
        m = re.fullmatch(r"/v3/company/([^/]+)/(.+)", self.url_path)
        if m:
            self._accounting(m.group(1), m.group(2).split("/"), delay)
            return
        time.sleep(delay)
        if self.command == "GET" and self.url_path == "/connect/oauth2":
            status, target = self.sim.oauth.authorize(self.params)
            if status == 302:
                self._send(302, b"", "text/plain", {"Location": target})
            else:
                self._send(status, target.encode(), "text/plain")
        elif self.command == "POST" and self.url_path == "/oauth2/v1/tokens/bearer":
            form = {k: v[-1] for k, v in urllib.parse.parse_qs(self.body.decode("utf-8", "replace")).items()}
            status, answer = self.sim.oauth.token(self.headers.get("Authorization"), form)
            self._send(status, dumps(answer), "application/json;charset=UTF-8",
                       {"Cache-Control": "no-store", "Pragma": "no-cache"})
        else:
            self._send(404, b"not found\n", "text/plain")

    def _logged_body(self):
        """The request body for the log: JSON parsed, query text as text, never a token."""
        if not self.body:
            return None
        if self.url_path.startswith("/oauth2/"):
            form = urllib.parse.parse_qs(self.body.decode("utf-8", "replace"))
            return {"grant_type": form.get("grant_type", [None])[-1]}
        try:
            return json.loads(self.body)
        except ValueError:
            return self.body.decode("utf-8", "replace")

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
        elif kind == "500":
            self._send_json(500, system_failure().body(now()), {"Intuit-Tid": self._tid()})
        elif kind == "503":
            self._send(503, b"<html><body><h1>503 Service Unavailable</h1></body></html>\n", "text/html")
        elif kind == "429":
            self._throttled()
        elif kind == "401":
            self._unauthorized(self._bearer())

    def _bearer(self):
        scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
        return token.strip() if scheme.lower() == "bearer" else ""

    @staticmethod
    def _tid():
        """An Intuit transaction id as in the recorded Intuit-Tid headers."""
        return "1-%08x-%s" % (int(time.time()), secrets.token_hex(12))

    def _throttled(self):
        retry_after = self.sim.settings["retry_after"]
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        self._send(429, THROTTLE_BODY, "application/xml", headers)

    def _auth_failure(self, status, message, detail, code, fault_type, headers=None):
        # Lower-case envelope of vcr/http401_authentication_failed.yml; "time" in epoch ms there.
        body = {"warnings": None, "intuitObject": None,
                "fault": {"error": [{"message": message, "detail": detail, "code": code, "element": None}],
                          "type": fault_type},
                "report": None, "queryResponse": None, "batchItemResponse": [], "attachableResponse": [],
                "syncErrorResponse": None, "requestId": None, "time": int(time.time() * 1000), "status": None,
                "cdcresponse": []}
        self._send(status, dumps(body), "application/json", headers)

    def _unauthorized(self, token):
        self._auth_failure(401, "message=AuthenticationFailed; errorCode=003200; statusCode=401",
                           "Token expired: " + token[:50], "3200", "AUTHENTICATION",
                           {"WWW-Authenticate": 'Bearer realm="Intuit", error="invalid_token"'})

    def _accounting(self, realm, parts, delay):
        token = self._bearer()
        token_realm = self.sim.oauth.access_realm(token)
        if token_realm is None:
            self._unauthorized(token)
            return
        if token_realm != realm or realm not in self.sim.companies:
            # A token of another company (seen in integrators' logs, not in the fixtures).
            self._auth_failure(403, "message=ApplicationAuthorizationFailed; errorCode=003100; statusCode=403",
                               None, "3100", "SERVICE")
            return
        if not self.sim.throttle.admit(realm):
            self._throttled()
            return
        try:
            time.sleep(delay)
            status, body = self._company_request(self.sim.companies[realm], parts)
            if self.lose_answer:
                self._inject(FaultRule("reset", 1, None, 0))
                return
            self._send(status, body, headers={"Intuit-Tid": self._tid()})
        finally:
            self.sim.throttle.release(realm)

    def _company_request(self, company, parts):
        """(status, body bytes) of one Accounting API request."""
        stamp = now()
        try:
            with company.lock:
                return self._route(company, parts, stamp)
        except Fault as fault:
            return 400, dumps(fault.body(stamp))

    def _route(self, company, parts, stamp):
        head = parts[0].lower()
        if head == "query" and len(parts) == 1:
            text = self.params.get("query") if self.command == "GET" else self.body.decode("utf-8", "replace")
            answer = company.query(text or "", self.sim.settings["query_equals_case_sensitive"])
            return 200, dumps(dict(answer, time=response_time(stamp)))
        if head == "batch" and len(parts) == 1 and self.command == "POST":
            request_id = self.params.get("requestid")
            first = company.remembered(request_id) if request_id else None
            if first:
                return first
            answer = self._batch(company, stamp)
            if request_id:
                company.remember(request_id, *answer)
            return answer
        if head == "cdc" and len(parts) == 1 and self.command == "GET":
            answer = company.cdc(self.params.get("entities"), self.params.get("changedSince"), stamp)
            return 200, dumps(dict(answer, time=response_time(stamp)))
        entity = self.sim.schema.entity_by_lower(head)
        if entity is None or len(parts) > 2:
            raise qbo_company.unsupported_operation(self.url_path)
        if self.command == "GET" and len(parts) == 2:
            return 200, dumps({entity: company.read(entity, parts[1]), "time": response_time(stamp)})
        if self.command == "POST" and len(parts) == 1:
            request_id = self.params.get("requestid")
            first = company.remembered(request_id) if request_id else None
            if first:
                return first
            answer = self._write(company, entity, stamp)
            if request_id:
                company.remember(request_id, *answer)
            return answer
        raise qbo_company.unsupported_operation(self.url_path)

    def _write(self, company, entity, stamp):
        """Create, update, delete or void; (status, body bytes), faults included."""
        try:
            try:
                body = qbo_company.loads(self.body or b"{}")
            except ValueError as e:
                raise qbo_company.malformed("Can not parse the request body: %s" % e)
            if not isinstance(body, dict):
                raise qbo_company.malformed("the request body is not an object")
            obj = self._operation(company, entity, self.params.get("operation", ""), body, stamp)
        except Fault as fault:
            return 400, dumps(fault.body(stamp))
        return 200, dumps({entity: obj, "time": response_time(stamp)})

    def _operation(self, company, entity, operation, body, stamp, named=False):
        """One write, as a request or a batch item names it: the entity written (or a Fault).
        named: the operation was said (a batch item's), so a create may not carry an Id
        and an update must."""
        operation = (operation or "").lower()
        if named and operation == "create" and body.get("Id") not in (None, ""):
            raise qbo_company.malformed("a create carries no Id")
        if named and operation == "update" and body.get("Id") in (None, ""):
            raise qbo_company.required("Id")
        if operation == "delete":
            obj, op = company.delete(entity, body, stamp)
        elif operation == "void":
            obj, op = company.void(entity, body, stamp)
        elif operation in ("", "create", "update") and (named or operation != "create"):
            if body.get("Id") not in (None, ""):
                obj, op = company.update(entity, body, stamp)
            else:
                obj, op = company.create(entity, body, stamp)
        else:
            raise qbo_company.unsupported_operation(operation)
        self.sim.webhooks.notify(company.realm, entity, obj["Id"], op, stamp)
        return obj

    def _batch(self, company, stamp):
        """POST .../batch: {"BatchItemRequest": [{bId, operation, <Entity>: {...}} or {bId, Query}]}.
        Items run one after another; a failed item answers a Fault in its place and the
        answer is HTTP 200 all the same (fixture vcr/batch_mixed_with_faults.yml)."""
        try:
            try:
                body = qbo_company.loads(self.body or b"{}")
            except ValueError as e:
                raise qbo_company.malformed("Can not parse the request body: %s" % e)
            items = body.get("BatchItemRequest") if isinstance(body, dict) else None
            if not isinstance(items, list) or not items:
                raise qbo_company.malformed("BatchItemRequest holds no items")
            if len(items) > BATCH_MAX:
                # The sim's own words: Intuit documents the limit, not its fault.
                raise qbo_company.business_validation(
                    "Batch has %d items; at most %d are allowed" % (len(items), BATCH_MAX))
        except Fault as fault:
            return 400, dumps(fault.body(stamp))
        answers = []
        for item in items:
            answer = {"bId": item.get("bId") if isinstance(item, dict) else None}
            try:
                if self.sim.faults.take(self.path, item=True) is not None:
                    raise system_failure()
                if not isinstance(item, dict):
                    raise qbo_company.malformed("a batch item is not an object")
                if "Query" in item:
                    answer["QueryResponse"] = company.query(
                        item["Query"] or "", self.sim.settings["query_equals_case_sensitive"])["QueryResponse"]
                else:
                    names = [k for k in item if k not in ("bId", "operation", "optionsData")]
                    entity = self.sim.schema.entity_by_lower(names[0].lower()) if len(names) == 1 else None
                    if entity is None or not isinstance(item[names[0]], dict):
                        raise qbo_company.malformed("a batch item names no one entity")
                    answer[entity] = self._operation(company, entity, item.get("operation"), item[names[0]],
                                                     stamp, named=True)
            except Fault as fault:
                answer["Fault"] = fault.body(stamp)["Fault"]
            answers.append(answer)
        return 200, dumps({"BatchItemResponse": answers, "time": response_time(stamp)})

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
                sim.reset()
                answer = {"ok": True}
            elif route == ("GET", "/_sim/requests"):
                answer = self._logged_requests()
            elif route == ("GET", "/_sim/requests/count"):
                rows = self._logged_requests()
                by = collections.Counter("%s %s" % (e["method"], e["path"]) for e in rows)
                answer = {"count": len(rows), "by": dict(sorted(by.items()))}
            elif route == ("POST", "/_sim/requests/clear"):
                with sim.log_lock:
                    sim.request_log = []
                answer = {"ok": True}
            elif route == ("POST", "/_sim/fault"):
                answer = self._control_fault(data)
            elif route == ("POST", "/_sim/faults/clear"):
                self.sim.faults.clear()
                answer = {"ok": True}
            elif route == ("POST", "/_sim/config"):
                answer = self._control_config(data)
            elif route == ("POST", "/_sim/expire_tokens"):
                sim.oauth.expire_all()
                answer = {"ok": True}
            elif route == ("POST", "/_sim/revoke"):
                sim.oauth.revoke_all()
                answer = {"ok": True}
            elif route == ("POST", "/_sim/token"):
                realm = str(data.get("realm", ""))
                self._company(realm)
                answer = {"realm": realm, "refresh_token": sim.oauth.mint_refresh(realm)}
            elif route == ("POST", "/_sim/entity"):
                answer = self._control_entity(data)
            elif route == ("GET", "/_sim/entities"):
                company = self._company(self.params.get("realm", ""))
                with company.lock:
                    answer = company.all(self._entity(self.params.get("entity", "")))
            elif route == ("GET", "/_sim/webhooks"):
                answer = sim.webhooks.list()
            elif route == ("POST", "/_sim/webhook"):
                answer = self._control_webhook(data)
            else:
                self._send_json(404, {"error": "no such control endpoint"})
                return
        except (ControlError, TypeError, ValueError) as e:  # bad input, e.g. "count": "many"
            self._send_json(400, {"error": str(e)})
            return
        self._send_json(200, answer)

    def _logged_requests(self):
        """The request log, filtered by the query parameters: method (any case),
        path_contains, statement_contains (the text of a query request,
        ignoring case) and since (the index of the first entry to look at)."""
        method = self.params.get("method")
        path_part = self.params.get("path_contains")
        statement_part = (self.params.get("statement_contains") or "").lower()
        since = int(self.params.get("since") or 0)
        with self.sim.log_lock:
            rows = copy.deepcopy(self.sim.request_log[since:])
        if method:
            rows = [e for e in rows if e["method"] == method.upper()]
        if path_part:
            rows = [e for e in rows if path_part in e["path"]]
        if statement_part:
            rows = [e for e in rows if statement_part in self._statement(e).lower()]
        return rows

    @staticmethod
    def _statement(entry):
        """The query text of a logged query request, else ""."""
        if not entry["path"].endswith("/query"):
            return ""
        text = entry["query"].get("query") if entry["method"] == "GET" else entry["body"]
        return text if isinstance(text, str) else ""

    def _company(self, realm):
        company = self.sim.companies.get(str(realm))
        if company is None:
            raise ControlError("unknown realm %r" % realm)
        return company

    def _entity(self, name):
        entity = self.sim.schema.entity_by_lower(str(name))
        if entity is None:
            raise ControlError("unknown entity %r" % name)
        return entity

    def _control_fault(self, data):
        kind = str(data.get("kind", ""))
        if kind not in FAULT_KINDS:
            raise ControlError("kind must be one of %s" % ", ".join(FAULT_KINDS))
        rule = FaultRule(kind, int(data.get("count", 1)), data.get("path_contains"), int(data.get("delay_ms", 0)))
        self.sim.faults.add(rule)
        return {"ok": True}

    def _control_config(self, data):
        unknown = set(data) - set(CONFIG_FIELDS)
        if unknown:
            raise ControlError("unknown config fields: %s" % ", ".join(sorted(unknown)))
        if data.get("webhook_format", "legacy") not in ("legacy", "cloudevents"):
            raise ControlError("webhook_format must be legacy or cloudevents")
        if data.get("authorize_realm") not in (None,) + tuple(self.sim.realms):
            raise ControlError("authorize_realm must be one of the realms")
        if not isinstance(data.get("query_equals_case_sensitive", True), bool):
            raise ControlError("query_equals_case_sensitive must be true or false")
        self.sim.settings.update(data)
        return self.sim.settings

    def _control_entity(self, data):
        company = self._company(data.get("realm", ""))
        entity = self._entity(data.get("entity", ""))
        obj = data.get("object")
        if not isinstance(obj, dict):
            raise ControlError("object must be a JSON object")
        obj = qbo_company.loads(self.body)["object"]  # amounts exact (Decimal), as from the API
        stamp = now()
        operation = data.get("operation", "")
        with company.lock:
            try:
                if operation in ("delete", "void"):
                    current = company.read(entity, obj.get("Id"))
                    target = dict(obj, SyncToken=current["SyncToken"])
                    write = company.delete if operation == "delete" else company.void
                    stored, op = write(entity, target, stamp)
                elif operation == "":
                    stored, op = company.put_direct(entity, obj, stamp)
                else:
                    raise ControlError("operation must be delete, void or absent")
            except Fault as fault:
                raise ControlError("%s: %s" % (fault.message, fault.detail))
        self.sim.webhooks.notify(company.realm, entity, stored["Id"], op, stamp)
        return stored  # a copy; dumps writes its Decimal amounts exactly

    def _control_webhook(self, data):
        company = self._company(data.get("realm", ""))
        entity = self._entity(data.get("entity", ""))
        operation = data.get("operation", "")
        if operation not in WEBHOOK_OPS:
            raise ControlError("operation must be one of %s" % ", ".join(WEBHOOK_OPS))
        self.sim.webhooks.notify(company.realm, entity, str(data.get("id", "")), operation, now(),
                                 data.get("deleted_id"))
        return {"ok": True}


class ControlError(Exception):
    """A bad control API request: 400 {"error": ...}."""


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True   # a hanging "timeout" fault must not block shutdown
    allow_reuse_address = True

    def __init__(self, port, sim):
        super().__init__((HOST, port), Handler)
        self.sim = sim


def main(argv=None):
    parser = argparse.ArgumentParser(description="QuickBooks Online simulator for integration tests")
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--realm", action="append", required=True, help="company id; repeat for several")
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--client-secret", required=True)
    parser.add_argument("--access-ttl", type=int, default=3600, help="access token lifetime in seconds")
    parser.add_argument("--refresh-grace", type=float, default=0,
                        help="seconds a rotated-away refresh token still works")
    parser.add_argument("--webhook-url", help="where to POST data-change webhooks")
    parser.add_argument("--verifier-token", default="", help="HMAC key of the intuit-signature header")
    parser.add_argument("--webhook-format", choices=("legacy", "cloudevents"), default="legacy")
    parser.add_argument("--port-file", help="also write the port number to this file")
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
