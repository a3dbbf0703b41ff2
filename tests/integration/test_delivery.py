#!/usr/bin/env python3
"""Delivery engine integration tests: the real daemon against the QBO simulator.

The binary under test is the gateway with three test flows
(tests/integration/testflows.c, enabled by `flows = customers`):
  QBO Customer webhook -> read the customer -> done;
  QBO Item webhook     -> read the item, sparse update Description "checked"
                          (requestid ev<ID>-item; skipped "echo" when already so);
  Mplus completeSession -> create a Customer from session.customerName (when
                          given, requestid ev<ID>-customer), then a SalesReceipt
                          from session.lines (requestid ev<ID>-receipt; after a
                          replay the requestids are ev<ID>r<N>-...).
One simulator (tests/sim/qbo_sim.py) serves the whole run and is reset before
every test; every test starts its own daemon with a fresh store. Outcomes are
read back through the CLI (events/show/status --json) and checked against the
simulator's request log and data.

    python3 tests/integration/test_delivery.py build/dev/tests/gateway-testflows [unittest args]

Python 3 standard library only. Every wait is a poll with a deadline (generous,
for sanitizer builds); the few sleeps only give the daemon time to do
something it must not do.
"""

import base64
import datetime
import os
import re
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gwtest  # noqa: E402
from gwtest import GatewayTestCase, dumps  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
HOST = gwtest.HOST

REALM = "4620816365031610"
CLIENT_ID = "gwtest-client-id"
CLIENT_SECRET = "gwtest-client-secret"
MPLUS_SECRET = "shop1-mplus-webhook-secret"
FINAL = gwtest.FINAL


# ---- the simulator ----------------------------------------------------------------


class Sim(gwtest.QboSim):
    """The QuickBooks Online simulator, with what the OAuth tests look at."""

    def __init__(self):
        super().__init__(REALM, CLIENT_ID, CLIENT_SECRET)

    def grants(self, since=0):
        """Token endpoint requests: [(grant_type, status)]."""
        return [((r["body"] or {}).get("grant_type"), r["status"])
                for r in self.requests()[since:] if r["path"] == "/oauth2/v1/tokens/bearer"]

    def token_post(self, form):
        """POST the token endpoint as the app would (HTTP Basic client credentials)."""
        cred = base64.b64encode(("%s:%s" % (CLIENT_ID, CLIENT_SECRET)).encode()).decode()
        r = gwtest.request(self.port, "POST", "/oauth2/v1/tokens/bearer",
                           urllib.parse.urlencode(form).encode(),
                           {"Authorization": "Basic " + cred,
                            "Content-Type": "application/x-www-form-urlencoded"})
        return r.status, r.json()


SIM = None


def setUpModule():
    global SIM
    SIM = Sim()


def tearDownModule():
    if SIM is not None:
        SIM.close()


def sim_time(text):
    """A simulator log time (2026-01-02T03:04:05.678-07:00) as epoch seconds."""
    return datetime.datetime.fromisoformat(text).timestamp()


def gw_time(text):
    """A gateway time (2026-01-02T10:04:05.678Z) as epoch seconds."""
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# ---- the test case ------------------------------------------------------------------


class DeliveryTestCase(GatewayTestCase):

    maxDiff = None
    WAIT = 40.0  # ASan builds are slow

    def setUp(self):
        SIM.reset()
        self.gw = None

    # -- daemon --

    def start_gateway(self, quickbooks=None, dispatch=None, authorise=True, webhooks=True):
        """A daemon for connection shop1 (flows = customers) on the simulator's
        realm, with fast retries; authorised with a fresh refresh token unless
        authorise is False; the simulator's webhooks point at it unless
        webhooks is False."""
        qb = {"timeout_s": 5, "cdc_interval_s": 0}
        qb.update(quickbooks or {})
        # Failures in tests other than the circuit test must not open it.
        disp = {"enabled": "true", "retry_first_s": 1, "retry_max_s": 2, "circuit_failures": 50}
        disp.update(dispatch or {})

        def extra(gw):
            q = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                 "redirect_url": "http://%s:%d/oauth/quickbooks/callback" % (HOST, gw.admin_port),
                 "api_base": SIM.base,
                 "oauth_token_url": SIM.base + "/oauth2/v1/tokens/bearer",
                 "oauth_authorize_url": SIM.base + "/connect/oauth2"}
            q.update(qb)
            return {"quickbooks": q, "dispatch": disp}

        gw = self.gateway(connections=[gwtest.connection("shop1", REALM, MPLUS_SECRET,
                                                         flows="customers")],
                          extra=extra)
        self.gw = gw
        self.webhooks = webhooks
        self.point_webhooks(gw)
        if authorise:
            self.authorise(gw)
        return gw

    def point_webhooks(self, gw):
        SIM.config(webhook_url=("http://%s:%d/webhooks/quickbooks" % (HOST, gw.port))
                   if self.webhooks else None)

    def start_again(self, gw):
        """Start a stopped or killed daemon again on its store (new ports)."""
        gw.start()
        self.point_webhooks(gw)

    def authorise(self, gw, token=None):
        token = token or SIM.refresh_token()
        gw.cli("tokens", "shop1", "--refresh-token", token)
        return token

    # -- polling --

    def wait_state(self, gw, event_id, states, what=None):
        states = (states,) if isinstance(states, str) else states

        def check():
            e = gw.show(event_id)
            return e if e["state"] in states else None
        return self.wait(check, what or "event %s to be %s" % (event_id, "/".join(states)))

    def customer(self, name, **fields):
        obj = {"DisplayName": name}
        obj.update(fields)
        return SIM.entity("Customer", obj)

    def post_session(self, gw, session_id, lines, customer_name=None, counter=1):
        """An Mplus till completeSession callback, signed with shop1's secret."""
        session = {"sessionId": session_id, "lines": lines}
        if customer_name is not None:
            session["customerName"] = customer_name
        body = {"event": {"eventBlocking": False, "eventCounter": counter,
                          "eventTimestamp": "2026-03-04T10:11:12+01:00"},
                "sender": {"branchNumber": 1, "workplaceNumber": 2, "instanceId": "inst-gwtest"},
                "session": session,
                "completeSession": {"payments": [{"method": "CASH", "amount": 5.00}]}}
        r = gw.post_mplus("shop1", "completeSession", dumps(body))
        self.assertEqual(r.status, 200, r)
        evs = [e for e in gw.events() if e["source"] == "mplus" and e["entity_id"] == session_id]
        self.assertEqual(len(evs), 1, evs)
        return evs[0]["id"]

    def assertDoneOnce(self, e):
        """done at the first attempt, without an error."""
        self.assertEqual((e["state"], e["attempts"], e["last_error"]), ("done", 1, None), e)

    def outcomes(self, gw, event_id):
        return [h["outcome"] for h in gw.show(event_id).get("history", [])]


LINE = {"amount": "5.00", "quantity": 2, "price": "2.50"}


# ---- 1. OAuth -----------------------------------------------------------------------


class OAuth(DeliveryTestCase):

    def test_connect_and_callback_store_tokens(self):
        gw = self.start_gateway(authorise=False)
        self.wait(lambda: self.conn_status(gw, "shop1").get("authorised") is False,
                  "status to show shop1 not authorised")

        # The connect page needs the admin bearer token.
        self.assertEqual(gw.admin_get("/oauth/quickbooks/connect?connection=shop1",
                                      token=None).status, 401)
        self.assertEqual(gw.admin_get("/oauth/quickbooks/connect?connection=nosuch").status, 404)
        r = gw.admin_get("/oauth/quickbooks/connect?connection=shop1")
        self.assertEqual(r.status, 302, r)
        location = r.headers.get("Location")
        self.assertTrue(location.startswith(SIM.base + "/connect/oauth2?"), location)
        q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))
        self.assertEqual(q["client_id"], CLIENT_ID)
        self.assertEqual(q["response_type"], "code")
        self.assertEqual(q["redirect_uri"],
                         "http://%s:%d/oauth/quickbooks/callback" % (HOST, gw.admin_port))
        self.assertRegex(q["state"], r"^[0-9a-f]{64}$")

        # The browser follows it to Intuit (the simulator), which sends it back.
        parts = urllib.parse.urlsplit(location)
        r = gwtest.request(SIM.port, "GET", parts.path + "?" + parts.query)
        self.assertEqual(r.status, 302, r)
        back = urllib.parse.urlsplit(r.headers.get("Location"))
        self.assertEqual((back.hostname, back.port, back.path),
                         (HOST, gw.admin_port, "/oauth/quickbooks/callback"))
        cb = dict(urllib.parse.parse_qsl(back.query))
        self.assertEqual((cb["state"], cb["realmId"]), (q["state"], REALM))

        # A forged state is refused and does not use up the real one.
        forged = back.query.replace(cb["state"], "0" * 64)
        r = gw.request("GET", back.path + "?" + forged, admin=True)
        self.assertEqual(r.status, 400, r)
        # The real callback needs no bearer token: the state vouches for it.
        r = gw.request("GET", back.path + "?" + back.query, admin=True)
        self.assertEqual(r.status, 200, r)
        # The state is single use.
        r = gw.request("GET", back.path + "?" + back.query, admin=True)
        self.assertEqual(r.status, 400, r)

        self.assertEqual(SIM.grants(), [("authorization_code", 200)])
        st = self.wait(lambda: (lambda c: c if c.get("authorised") is True else None)(
            self.conn_status(gw, "shop1")), "status to show shop1 authorised")
        self.assertIn("access_token_expires_at", st)
        self.assertIn("refresh_token_expires_at", st)

        c = self.customer("OAuth Customer")
        [e] = self.wait_final(gw, 1, "the customer's event", entity="Customer",
                              entity_id=c["Id"])
        self.assertDoneOnce(e)
        self.assertEqual(e["source"], "quickbooks")
        reads = SIM.api("GET", "/customer/%s" % c["Id"])
        self.assertEqual([r["status"] for r in reads], [200])
        # The access token from the code exchange was used: no refresh needed.
        self.assertEqual(SIM.grants(), [("authorization_code", 200)])


# ---- 2 and 3. tokens -------------------------------------------------------------------


class Tokens(DeliveryTestCase):

    def test_access_token_expiry_is_invisible_to_events(self):
        gw = self.start_gateway()
        first = self.customer("Before Expiry")
        [e] = self.wait_final(gw, 1, "the first event", entity="Customer", entity_id=first["Id"])
        self.assertDoneOnce(e)
        self.assertEqual(SIM.grants(), [("refresh_token", 200)])

        mark = len(SIM.requests())
        SIM.call("POST", "/_sim/expire_tokens")
        ids = [self.customer("After Expiry %d" % i)["Id"] for i in range(3)]
        for cid in ids:
            [e] = self.wait_final(gw, 1, "customer %s's event" % cid, entity="Customer",
                                  entity_id=cid)
            self.assertDoneOnce(e)
            self.assertEqual(self.outcomes(gw, e["id"]), ["done"])
        # The expired token was refused, refreshed once, and every read then worked.
        self.assertIn(401, [r["status"] for r in SIM.api(since=mark)])
        self.assertEqual(SIM.grants(since=mark), [("refresh_token", 200)])
        for cid in ids:
            self.assertEqual(SIM.api("GET", "/customer/%s" % cid)[-1]["status"], 200)
        # Every API call is counted, as the simulator saw it: the reads that
        # worked (four at least) and the refused one.
        metrics = gw.admin_get("/metrics").body.decode()
        calls = SIM.api()
        worked = [r for r in calls if 200 <= r["status"] < 300]
        self.assertGreaterEqual(len(worked), 4, calls)
        ok = re.search(r'gateway_deliveries_total\{api="quickbooks",outcome="ok"\} (\d+)', metrics)
        self.assertIsNotNone(ok, metrics)
        self.assertEqual(int(ok.group(1)), len(worked), (metrics, calls))
        refused = re.search(r'gateway_deliveries_total\{api="quickbooks",outcome="auth"\} (\d+)',
                            metrics)
        self.assertEqual(int(refused.group(1)), len([r for r in calls if r["status"] == 401]),
                         (metrics, calls))
        count = re.search(r'gateway_delivery_seconds_count\{api="quickbooks"\} (\d+)', metrics)
        self.assertEqual(int(count.group(1)), len(calls), (metrics, calls))

    def test_rotated_refresh_token_survives_restart_and_revocation_waits(self):
        gw = self.start_gateway(authorise=False)
        t0 = self.authorise(gw)
        a = self.customer("Rotation A")
        self.assertDoneOnce(self.wait_final(gw, 1, "A", entity="Customer", entity_id=a["Id"])[0])
        self.assertEqual(SIM.grants(), [("refresh_token", 200)])
        # The simulator rotated the refresh token: the imported one is dead now.
        status, answer = SIM.token_post({"grant_type": "refresh_token", "refresh_token": t0})
        self.assertEqual((status, answer.get("error")), (400, "invalid_grant"))

        # Restart on the same store; the access token is refused after it, so
        # the daemon must refresh with the rotated refresh token it stored.
        gw.stop()
        SIM.call("POST", "/_sim/expire_tokens")
        mark = len(SIM.requests())
        self.start_again(gw)
        b = self.customer("Rotation B")
        self.assertDoneOnce(self.wait_final(gw, 1, "B", entity="Customer", entity_id=b["Id"])[0])
        self.assertEqual(SIM.grants(since=mark), [("refresh_token", 200)])

        # Disconnected at Intuit: events wait without spending attempts.
        SIM.call("POST", "/_sim/revoke")
        mark = len(SIM.requests())
        c = self.customer("Revoked C")
        ec = self.wait(lambda: [e for e in self.events_of(gw, "Customer", c["Id"])
                                if e["state"] == "retrying"], "C to wait for authorisation")[0]
        self.assertEqual(ec["attempts"], 0, ec)
        self.assertIn("invalid_grant", ec["last_error"] or "", ec)
        self.assertEqual(SIM.grants(since=mark), [("refresh_token", 400)])
        st = self.wait(lambda: (lambda s: s if s.get("authorised") is False else None)(
            self.conn_status(gw, "shop1")), "status to show shop1 needs authorisation")
        self.assertIn("invalid_grant", st.get("last_error", ""), st)
        d = self.customer("Revoked D")
        ed = self.wait(lambda: self.events_of(gw, "Customer", d["Id"]), "D's event")[0]
        # Nothing is tried while the connection needs authorisation.
        time.sleep(1.5)
        for e in (ec, ed):
            now = gw.show(e["id"])
            self.assertIn(now["state"], ("pending", "retrying"), now)
            self.assertEqual(now["attempts"], 0, now)
        self.assertEqual(SIM.api("GET", "/customer/%s" % d["Id"]), [])
        self.assertEqual(SIM.grants(since=mark), [("refresh_token", 400)])

        # A fresh token brings them through, each at its first attempt.
        self.authorise(gw)
        for cust in (c, d):
            [e] = self.wait_final(gw, 1, "%s after re-authorisation" % cust["DisplayName"],
                                  entity="Customer", entity_id=cust["Id"])
            self.assertDoneOnce(e)
        self.wait(lambda: self.conn_status(gw, "shop1").get("authorised") is True,
                  "status to show shop1 authorised again")


# ---- 4, 5, 6. throttling, server errors, timeouts ----------------------------------------


class Failures(DeliveryTestCase):

    def test_429_storm_pauses_and_recovers_without_dead_events(self):
        gw = self.start_gateway()
        warm = self.customer("Warm Up")
        self.wait_final(gw, 1, "the warm-up event", entity="Customer", entity_id=warm["Id"])
        # QuickBooks at 2 requests/s per realm, while the gateway allows 8/s.
        SIM.config(rate_per_sec=2, retry_after=1)
        mark = len(SIM.requests())
        ids = [self.customer("Storm %d" % i)["Id"] for i in range(8)]

        def settled():
            evs = [e for e in gw.events() if e["entity"] == "Customer" and e["entity_id"] in ids]
            return evs if len(evs) == len(ids) and all(e["state"] in FINAL for e in evs) else None
        evs = self.wait(settled, "the storm's events to settle")
        for e in evs:
            self.assertDoneOnce(e)  # a 429 consumes no attempt
        statuses = [r["status"] for r in SIM.api("GET", "/customer/", since=mark)]
        self.assertGreaterEqual(statuses.count(429), 3, statuses)
        self.assertEqual(statuses.count(200), len(ids), statuses)
        # Paused, not hammering: at most a few tries per event.
        self.assertLessEqual(len(statuses), 4 * len(ids), statuses)
        histories = [self.outcomes(gw, e["id"]) for e in evs]
        self.assertTrue(any("throttled" in h for h in histories), histories)
        self.assertIn("QuickBooks throttled the realm: pausing 1 s", gw.log_text())

    def test_429_fault_pauses_realm_then_delivers(self):
        gw = self.start_gateway()
        warm = self.customer("Warm Up")
        self.wait_final(gw, 1, "the warm-up event", entity="Customer", entity_id=warm["Id"])
        SIM.config(retry_after=2)
        SIM.fault("429", count=1, path_contains="/customer/")
        mark = len(SIM.requests())
        c = self.customer("Throttled Once")
        # status shows the pause while it lasts.
        self.wait(lambda: "throttled_until" in self.conn_status(gw, "shop1"),
                  "status to show the realm throttled")
        [e] = self.wait_final(gw, 1, "the throttled event", entity="Customer", entity_id=c["Id"])
        self.assertDoneOnce(e)  # the 429 used no attempt
        h = gw.show(e["id"])["history"]
        self.assertEqual([x["outcome"] for x in h], ["throttled", "done"])
        self.assertEqual([x["attempt"] for x in h], [0, 1])
        self.assertIn("HTTP 429 throttled", h[0]["error"])
        reads = SIM.api("GET", "/customer/%s" % c["Id"], since=mark)
        self.assertEqual([r["status"] for r in reads], [429, 200])
        # Retry-After: 2 was honoured (the log has millisecond times).
        self.assertGreaterEqual(sim_time(reads[1]["time"]) - sim_time(reads[0]["time"]), 1.9)

    def test_5xx_then_recovery_and_circuit_breaker(self):
        gw = self.start_gateway(dispatch={"circuit_failures": 2, "circuit_open_s": 2})
        warm = self.customer("Warm Up")
        self.wait_final(gw, 1, "the warm-up event", entity="Customer", entity_id=warm["Id"])
        self.wait(lambda: self.conn_status(gw, "shop1").get("circuit") == "closed", "circuit closed")
        SIM.fault("500", count=1, path_contains="/customer/")
        SIM.fault("503", count=1, path_contains="/customer/")
        mark = len(SIM.requests())
        ids = [self.customer("Outage %d" % i)["Id"] for i in range(2)]
        seen = set()
        deadline = time.monotonic() + self.WAIT
        while True:
            seen.add(self.conn_status(gw, "shop1").get("circuit"))
            evs = [e for e in gw.events() if e["entity"] == "Customer" and e["entity_id"] in ids]
            if len(evs) == 2 and all(e["state"] in FINAL for e in evs):
                break
            self.assertLess(time.monotonic(), deadline, "outage did not settle: %r" % evs)
            time.sleep(0.05)
        for e in evs:
            self.assertEqual((e["state"], e["last_error"]), ("done", None), e)
            self.assertEqual(e["attempts"], 2, e)
            h = gw.show(e["id"])["history"]
            self.assertEqual([x["outcome"] for x in h], ["retry", "done"], h)
            self.assertRegex(h[0]["error"], r"HTTP 50[03]")
        self.assertIn("open", seen)
        self.wait(lambda: self.conn_status(gw, "shop1").get("circuit") == "closed",
                  "the circuit to close again")
        statuses = [r["status"] for r in SIM.api("GET", "/customer/", since=mark)]
        self.assertEqual(sorted(statuses), [200, 200, 500, 503])
        self.assertIn("circuit open", gw.log_text())

    def test_timeouts_and_resets_are_retried(self):
        gw = self.start_gateway(quickbooks={"timeout_s": 2})
        warm = self.customer("Warm Up")
        self.wait_final(gw, 1, "the warm-up event", entity="Customer", entity_id=warm["Id"])
        # The first read of each of two customers (Ids chosen up front, so the
        # faults are in place before their webhooks) hangs or is reset.
        SIM.fault("timeout", count=1, path_contains="/customer/101?", delay_ms=5000)
        SIM.fault("reset", count=1, path_contains="/customer/102?")
        hang = self.customer("Hanging", Id="101")
        reset = self.customer("Reset", Id="102")
        for cust, word in ((hang, "timed out"), (reset, "unreachable")):
            [e] = self.wait_final(gw, 1, cust["DisplayName"], entity="Customer",
                                  entity_id=cust["Id"])
            self.assertEqual((e["state"], e["attempts"], e["last_error"]), ("done", 2, None), e)
            h = gw.show(e["id"])["history"]
            self.assertEqual([x["outcome"] for x in h], ["retry", "done"], h)
            self.assertIn(word, h[0]["error"])
            reads = SIM.api("GET", "/customer/%s" % cust["Id"])
            self.assertEqual([r.get("fault") for r in reads],
                             ["timeout" if cust is hang else "reset", None])
            self.assertEqual(reads[-1]["status"], 200)


# ---- 7. stale SyncToken ---------------------------------------------------------------


class StaleSyncToken(DeliveryTestCase):

    def test_5010_rereads_and_succeeds_within_the_attempt(self):
        gw = self.start_gateway()
        # The simulator sleeps before it computes a "slow" answer, so the
        # change below lands while the gateway's update is on its way.
        SIM.fault("slow", count=1, path_contains="/item?", delay_ms=1500)
        item = SIM.entity("Item", {"Name": "Widget", "Type": "NonInventory", "Description": "new"})
        posted = self.wait(lambda: SIM.api("POST", "/item"), "the gateway's Item update")
        self.assertEqual(posted[0]["body"]["SyncToken"], "0")
        bumped = SIM.entity("Item", {"Id": item["Id"], "UnitPrice": 7})
        self.assertEqual(bumped["SyncToken"], "1")

        evs = self.wait_final(gw, 1, "the item's event", entity="Item", entity_id=item["Id"])
        e = evs[0]
        self.assertEqual(e["operation"], "Create")
        self.assertDoneOnce(e)
        updates = SIM.api("POST", "/item")
        # A 5010 on the first send, then the change again with the fresh
        # SyncToken under a requestid of its own (QBO would repeat the 5010 for
        # the first one).
        self.assertEqual([(u["status"], u["body"]["SyncToken"], u["query"].get("requestid"))
                          for u in updates[:2]],
                         [(400, "0", "ev%d-item" % e["id"]), (200, "1", "ev%d-item-s" % e["id"])],
                         updates)
        self.assertIn("stale SyncToken", gw.log_text())
        final = [i for i in SIM.entities("Item") if i["Id"] == item["Id"]][0]
        self.assertEqual(final["Description"], "checked")
        self.assertEqual(final["UnitPrice"], 7)  # the other change is kept (sparse update)
        # The gateway's own write comes back as a webhook: skipped as an echo.
        later = self.wait_final(gw, 2, "the echo", entity="Item", entity_id=item["Id"])
        self.assertIn(("skipped", "echo"), [(x["state"], x["reason"]) for x in later[1:]])


# ---- 8. permanent faults and replay ------------------------------------------------------


class PermanentFaults(DeliveryTestCase):

    def test_duplicate_name_goes_dead_and_replay_after_fix_completes(self):
        gw = self.start_gateway()
        existing = self.customer("Jan Jansen")
        self.wait_final(gw, 1, "the existing customer's event", entity="Customer",
                        entity_id=existing["Id"])
        eid = self.post_session(gw, "sess-dup-name", [LINE], customer_name="Jan Jansen")
        e = self.wait_state(gw, eid, FINAL)
        self.assertEqual((e["state"], e["attempts"]), ("dead", 1), e)
        self.assertIn("Duplicate Name", e["last_error"])
        self.assertIn("6240", e["last_error"])
        self.assertEqual(SIM.entities("SalesReceipt"), [])

        # The accountant renames the existing customer in QuickBooks ...
        SIM.entity("Customer", {"Id": existing["Id"], "DisplayName": "Jan Jansen (old)"})
        # ... and the operator replays the event.
        out = gw.cli("replay", "--event", str(eid)).stdout.decode()
        self.assertIn("replayed 1 event", out)
        e = self.wait(lambda: (lambda x: x if x["state"] in FINAL and
                               "replayed" in [h["outcome"] for h in x["history"]] else None)(
            gw.show(eid)), "the replayed event to end")
        self.assertEqual((e["state"], e["attempts"], e["last_error"]), ("done", 1, None), e)
        self.assertEqual([h["outcome"] for h in e["history"]], ["dead", "replayed", "done"])
        named = [c for c in SIM.entities("Customer") if c["DisplayName"] == "Jan Jansen"]
        self.assertEqual(len(named), 1, named)
        receipts = SIM.entities("SalesReceipt")
        self.assertEqual(len(receipts), 1, receipts)
        self.assertEqual(receipts[0]["CustomerRef"]["value"], named[0]["Id"])
        # The replay sent its creates under new requestids: QBO repeats the
        # first answer (the 6240) to a repeated one.
        self.assertEqual([(p["query"]["requestid"], p["status"])
                          for p in SIM.api("POST", "/customer")],
                         [("ev%d-customer" % eid, 400), ("ev%dr1-customer" % eid, 200)])
        self.assertEqual([(p["query"]["requestid"], p["status"])
                          for p in SIM.api("POST", "/salesreceipt")],
                         [("ev%dr1-receipt" % eid, 200)])
        self.assertEqual(receipts[0]["TotalAmt"], 5)


# ---- 9. SIGKILL between a create and its commit -----------------------------------------


class CrashMidCreate(DeliveryTestCase):

    def test_sigkill_during_create_makes_no_duplicate(self):
        gw = self.start_gateway()
        SIM.fault("slow", count=1, path_contains="/salesreceipt?", delay_ms=2000)
        eid = self.post_session(gw, "sess-crash", [LINE, {"amount": 3.75, "quantity": 3,
                                                          "price": 1.25}],
                                customer_name="Crash Customer")
        self.wait(lambda: SIM.api("POST", "/salesreceipt"), "the receipt create to reach QBO")
        gw.kill()
        self.assertEqual(gw.show(eid)["state"], "in_flight")
        # QuickBooks finishes the create the gateway never heard about.
        self.wait(lambda: SIM.entities("SalesReceipt"), "QBO to store the receipt", interval=0.1)
        self.start_again(gw)
        e = self.wait_state(gw, eid, FINAL)
        self.assertEqual((e["state"], e["last_error"]), ("done", None), e)
        posts = SIM.api("POST", "/salesreceipt")
        self.assertEqual(len(posts), 2, posts)
        self.assertEqual({p["query"]["requestid"] for p in posts}, {"ev%d-receipt" % eid})
        customers = [c for c in SIM.entities("Customer") if c["DisplayName"] == "Crash Customer"]
        self.assertEqual(len(customers), 1, customers)
        receipts = SIM.entities("SalesReceipt")
        self.assertEqual(len(receipts), 1, receipts)
        self.assertEqual(str(receipts[0]["TotalAmt"]), "8.75")


# ---- 10. one entity: in order, one at a time ---------------------------------------------


class Ordering(DeliveryTestCase):

    def test_burst_for_one_entity_runs_in_order_one_at_a_time(self):
        gw = self.start_gateway()
        a = self.customer("Order A")
        b = self.customer("Order B")
        for c in (a, b):
            self.wait_final(gw, 1, "the create of %s" % c["DisplayName"], entity="Customer",
                            entity_id=c["Id"])
        mark = len(SIM.requests())
        for c in (a, b):  # every read of these two is slow from now on
            SIM.fault("slow", count=10, path_contains="/customer/%s?" % c["Id"], delay_ms=400)
        for i in range(4):
            for c in (a, b):
                SIM.entity("Customer", {"Id": c["Id"], "Notes": "update %d" % i})
            time.sleep(0.005)
        runs = {}
        for c in (a, b):
            evs = self.wait_final(gw, 5, "the burst of %s" % c["DisplayName"], entity="Customer",
                                  entity_id=c["Id"])
            self.assertEqual(len(evs), 5, evs)
            spans = []
            for e in evs:
                self.assertDoneOnce(e)
                full = gw.show(e["id"])
                spans.append((e["id"], gw_time(full["started_at"]),
                              gw_time(full["history"][-1]["at"])))
            # In id order (the order of the changes), each after the previous ended.
            for (id1, s1, f1), (id2, s2, f2) in zip(spans, spans[1:]):
                self.assertLess(id1, id2)
                self.assertGreaterEqual(s2, f1, "event %d started before %d ended: %r"
                                        % (id2, id1, spans))
            runs[c["Id"]] = spans
            # QuickBooks saw this customer's reads one at a time.
            reads = [sim_time(r["time"]) for r in SIM.api("GET", since=mark)
                     if r["path"].endswith("/customer/%s" % c["Id"])]
            self.assertEqual(len(reads), 4, reads)
            for t1, t2 in zip(reads, reads[1:]):
                self.assertGreaterEqual(t2 - t1, 0.39, reads)
        # Different entities are not held up by each other: A and B overlapped.
        sa, sb = runs[a["Id"]][1:], runs[b["Id"]][1:]
        self.assertTrue(any(s1 < f2 and s2 < f1 for _, s1, f1 in sa for _, s2, f2 in sb),
                        "A and B never ran at the same time: %r %r" % (sa, sb))


# ---- 11. replay selection --------------------------------------------------------------


class Replay(DeliveryTestCase):

    def test_replay_dead_filters_dry_run_and_admin_api(self):
        gw = self.start_gateway()
        bad = [{"amount": "5.01", "quantity": 2, "price": "2.50"}]  # QBO answers 6070
        s1 = self.post_session(gw, "sess-bad-1", bad)
        self.wait_state(gw, s1, "dead")
        time.sleep(0.05)
        cut = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")
        time.sleep(0.05)
        s2 = self.post_session(gw, "sess-bad-2", bad)
        # A QuickBooks webhook for a customer that does not exist: 610, dead.
        SIM.call("POST", "/_sim/webhook", {"realm": REALM, "entity": "Customer", "id": "999",
                                          "operation": "Update"})
        ghost = self.wait(lambda: self.events_of(gw, "Customer", "999"), "the ghost event")[0]["id"]
        for eid in (s2, ghost):
            e = self.wait_state(gw, eid, "dead")
        self.assertIn("6070", gw.show(s1)["last_error"])
        self.assertIn("610", gw.show(ghost)["last_error"])
        before = {eid: gw.show(eid) for eid in (s1, s2, ghost)}
        mark = len(SIM.requests())

        def dry(*args):
            return sorted(gw.cli_json("replay", "--dead", "--dry-run", "--json", *args))

        self.assertEqual(dry(), sorted([s1, s2, ghost]))
        self.assertEqual(dry("--source", "mplus"), sorted([s1, s2]))
        self.assertEqual(dry("--source", "quickbooks"), [ghost])
        self.assertEqual(dry("--entity", "Customer"), [ghost])
        self.assertEqual(dry("--entity", "session", "--connection", "shop1"), sorted([s1, s2]))
        self.assertEqual(dry("--connection", "nosuch"), [])
        self.assertEqual(dry("--source", "mplus", "--since", cut), [s2])
        self.assertEqual(dry("--source", "mplus", "--until", cut), [s1])
        text = gw.cli("replay", "--dead", "--source", "mplus", "--dry-run").stdout.decode()
        self.assertIn("would replay 2 events", text)
        r = gw.request("POST", "/api/replay?source=quickbooks&dry_run=1", b"",
                       {"Authorization": "Bearer " + gw.admin_token}, admin=True)
        self.assertEqual((r.status, r.json()), (200, {"would_replay": [ghost], "dry_run": True}))
        time.sleep(1.2)  # a running daemon would have picked up a real replay by now
        for eid, old in before.items():
            now = gw.show(eid)
            self.assertEqual((now["state"], now["attempts"], now["history"]),
                             (old["state"], old["attempts"], old["history"]))
        self.assertEqual(SIM.api(since=mark), [])

        # The admin API replays one event, with the bearer token only.
        path = "/api/events/%d/replay" % s1
        self.assertEqual(gw.request("POST", path, b"", admin=True).status, 401)
        self.assertEqual(gw.request("POST", path, b"", {"Authorization": "Bearer wrong"},
                                    admin=True).status, 401)
        r = gw.request("POST", path, b"", {"Authorization": "Bearer " + gw.admin_token},
                       admin=True)
        self.assertEqual((r.status, r.json()), (200, {"replayed": [s1], "dry_run": False}))
        self.assertEqual(gw.request("POST", "/api/events/99999/replay", b"",
                                    {"Authorization": "Bearer " + gw.admin_token},
                                    admin=True).status, 404)
        e = self.wait(lambda: (lambda x: x if x["state"] == "dead" and
                               len(x["history"]) == 3 else None)(gw.show(s1)),
                      "the replayed event to run again")
        self.assertEqual([h["outcome"] for h in e["history"]], ["dead", "replayed", "dead"])
        self.assertEqual(e["attempts"], 1)
        self.assertEqual(e["history"][1]["attempts"], 1)
        self.assertEqual(len(SIM.api("POST", "/salesreceipt", since=mark)), 1)
        # The others were left alone.
        for eid in (s2, ghost):
            self.assertEqual(gw.show(eid)["history"], before[eid]["history"])

        # The CLI replays by filter into the running daemon, which runs it soon.
        out = gw.cli("replay", "--dead", "--entity", "Customer").stdout.decode()
        replayed_at = time.monotonic()
        self.assertIn("replayed 1 event: %d" % ghost, out)
        self.wait(lambda: SIM.api("GET", "/customer/999", since=mark), "the ghost read again")
        self.assertLess(time.monotonic() - replayed_at, 5.0)
        e = self.wait(lambda: (lambda x: x if x["state"] == "dead" and
                               len(x["history"]) == 3 else None)(gw.show(ghost)),
                      "the ghost event to end again")
        self.assertEqual([h["outcome"] for h in e["history"]], ["dead", "replayed", "dead"])
        self.assertEqual(gw.show(s2)["history"], before[s2]["history"])


# ---- 12. CDC catch-up -------------------------------------------------------------------


class CDC(DeliveryTestCase):

    def test_cdc_catches_missed_changes_and_dedupes_with_webhooks(self):
        gw = self.start_gateway(quickbooks={"cdc_interval_s": 2}, webhooks=False)
        # The first sweep (5 s after start) only sets the checkpoint; wait for
        # a real sweep before changing anything.
        self.wait(lambda: SIM.api("GET", "/cdc"), "the first CDC request")
        cdc = SIM.api("GET", "/cdc")[0]
        self.assertEqual(cdc["status"], 200)
        self.assertIn("Customer", cdc["query"]["entities"].split(","))
        self.assertIn("Item", cdc["query"]["entities"].split(","))

        # Missed by webhooks (they are off): found by the next sweep.
        missed = self.customer("Missed By Webhooks")
        [e] = self.wait_final(gw, 1, "the CDC event", entity="Customer", entity_id=missed["Id"])
        self.assertEqual(e["source"], "qbo-cdc")
        self.assertDoneOnce(e)
        self.assertEqual(SIM.api("GET", "/customer/%s" % missed["Id"])[-1]["status"], 200)

        # A change that comes by webhook and by CDC is stored once. Intuit's
        # legacy webhook carries the entity's LastUpdatedTime (whole seconds).
        both = self.customer("Webhook And CDC")
        lu = datetime.datetime.fromisoformat(both["MetaData"]["LastUpdatedTime"])
        body = dumps({"eventNotifications": [{"realmId": REALM, "dataChangeEvent": {"entities": [{
            "name": "Customer", "id": both["Id"], "operation": "Create",
            "lastUpdated": lu.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        }]}}]})
        self.assertEqual(gw.post_qbo(body).status, 200)
        mark = len(SIM.requests())
        # Two more sweeps: both return the change (the window is inclusive).
        sweeps = self.wait(lambda: (lambda x: x if len(x) >= 2 else None)(
            SIM.api("GET", "/cdc", since=mark)), "two more CDC sweeps")
        for sweep in sweeps:
            self.assertEqual(sweep["status"], 200)
            # The window includes the change (CDC's changedSince is inclusive).
            self.assertLessEqual(gw_time(sweep["query"]["changedSince"]), lu.timestamp())
        evs = self.events_of(gw, "Customer", both["Id"])
        self.assertEqual(len(evs), 1, evs)
        self.assertEqual(evs[0]["source"], "quickbooks")
        self.wait_final(gw, 1, "the webhook event", entity="Customer", entity_id=both["Id"])
        # And the missed one was not stored again by later sweeps either.
        self.assertEqual(len(self.events_of(gw, "Customer", missed["Id"])), 1)


if __name__ == "__main__":
    gwtest.main()
