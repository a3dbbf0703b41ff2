#!/usr/bin/python3
"""Alerts end to end: the real daemon tells a webhook when something needs a person.

The daemon runs the customers flow between both simulators (as in
test_customers) with an [alerts] section pointing at a small receiver in this
test, which records each message with its signature and can refuse the first
ones. Conditions: dead events, a connection that needs re-authorisation, an
open circuit, a refused Mplus login, an old pending event.

    /usr/bin/python3 tests/integration/test_alerts.py build/test/gateway [unittest args]
"""

import base64
import hashlib
import hmac
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gwtest  # noqa: E402
import test_customers  # noqa: E402
from test_customers import CustomersTestCase, app_config  # noqa: E402

HOST = gwtest.HOST
ALERT_SECRET = "alert-signing-secret-7b1e"


class Receiver:
    """An HTTP endpoint that keeps every POST: (headers, body); the first
    `refuse` get a 500."""

    def __init__(self, refuse=0):
        self.lock = threading.Lock()
        self.got = []
        self.refused = 0
        self.refuse = refuse
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, fmt, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    refuse = receiver.refused < receiver.refuse
                    if refuse:
                        receiver.refused += 1
                    else:
                        receiver.got.append((dict(self.headers), body))
                self.send_response(500 if refuse else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = http.server.ThreadingHTTPServer((HOST, 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def messages(self):
        with self.lock:
            return [(h, b) for h, b in self.got]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def setUpModule():
    test_customers.setUpModule()


def tearDownModule():
    test_customers.tearDownModule()


class AlertsTestCase(CustomersTestCase):
    WAIT = 60.0
    ALERTS = {}

    def setUp(self):
        super().setUp()
        self.receiver = Receiver(refuse=getattr(self, "REFUSE", 0))
        self.addCleanup(self.receiver.close)

    def config_extra(self, gw):
        extra = app_config(gw, test_customers.QBO, dispatch=getattr(self, "DISPATCH", None))
        extra["alerts"] = dict({"webhook_url": "http://%s:%d/hook" % (HOST, self.receiver.port),
                                "secret": ALERT_SECRET, "period_s": 3600,
                                "oldest_pending_s": 0}, **self.ALERTS)
        if getattr(self, "STORAGE", None):
            extra["storage"] = self.STORAGE
        return extra

    def alerts(self, condition=None):
        """The messages received, verified and parsed, in order."""
        out = []
        for headers, body in self.receiver.messages():
            want = base64.b64encode(hmac.new(ALERT_SECRET.encode(), body, hashlib.sha256).digest())
            self.assertEqual(headers.get("X-Gateway-Signature"), want.decode(), body)
            self.assertEqual(headers.get("Content-Type"), "application/json")
            m = json.loads(body)
            if condition is None or m["condition"] == condition:
                out.append(m)
        return out

    def wait_alerts(self, condition, n, what):
        return self.wait(lambda: (lambda a: a if len(a) >= n else None)(self.alerts(condition)),
                         what)

    def open_conditions(self):
        return {(a["connection"], a["condition"]) for a in self.gw.status()["alerts"]}

    def metrics(self):
        r = gwtest.request(self.gw.admin_port, "GET", "/metrics", None,
                           {"Authorization": "Bearer " + self.gw.admin_token})
        return r.body.decode()


class DeadEvents(AlertsTestCase):
    REFUSE = 1  # the first delivery fails: the message comes again

    def test_a_dead_event_is_sent_once_per_period_signed_and_listed(self):
        self.start_gateway()
        rel, e = self.relation_to_customer({"telephone": "06-11112222", "city": "Assen"})
        self.assertEqual(e["state"], "dead")
        [m] = self.wait_alerts("dead_events", 1, "the dead event's alert (after one refusal)")
        self.assertEqual((m["connection"], m["state"]), ("shop1", "open"), m)
        self.assertIn("1 dead events; the latest, %d: " % e["id"], m["detail"])
        self.assertIn(e["last_error"][:200], m["detail"])
        self.assertEqual(self.receiver.refused, 1)
        self.assertIn(("shop1", "dead_events"), self.open_conditions())
        self.assertIn('gateway_alert_open{connection="shop1",condition="dead_events"} 1',
                      self.metrics())
        self.assertIn("ALERT dead_events on shop1 since ", self.gw.cli("status").stdout.decode())
        api = gwtest.request(self.gw.admin_port, "GET", "/api/status", None,
                             {"Authorization": "Bearer " + self.gw.admin_token}).json()
        self.assertIn("dead_events", [a["condition"] for a in api["alerts"]])

        # A second one within the period: listed, counted, not sent again.
        rel2, e2 = self.relation_to_customer({"telephone": "06-33334444", "city": "Emmen"})
        self.assertEqual(e2["state"], "dead")
        self.wait(lambda: [a for a in self.gw.status()["alerts"]
                           if a["condition"] == "dead_events" and a["detail"].startswith("2 dead")],
                  "status to count two dead events")
        self.wait_polls(2)
        self.assertEqual(len(self.alerts("dead_events")), 1)
        self.assertIn("alert dead_events", self.gw.log_text())
        self.assertEqual(m["count"], 1)
        self.assertTrue(m["link"].endswith("/#event=%d" % e["id"]), m)
        self.assertIn("http://%s:%d/" % (HOST, self.gw.admin_port), m["link"])


class DeadStorm(AlertsTestCase):

    def test_a_storm_of_500_dead_events_sends_one_alert(self):
        self.start_gateway()
        for n in range(500):
            test_customers.MPLUS.relation({"telephone": "06-%08d" % n})   # no name, no e-mail
        self.wait(lambda: self.gw.status()["events"].get("dead", 0) >= 500, "500 dead events", )
        self.wait(lambda: [a for a in self.gw.status()["alerts"]
                           if a["condition"] == "dead_events" and a["detail"].startswith("500 dead")],
                  "status to count 500 dead events")
        self.wait_polls(2)
        [m] = self.alerts("dead_events")
        self.assertEqual((m["connection"], m["state"]), ("shop1", "open"))


class DeadResolved(AlertsTestCase):
    # QuickBooks down past retry_give_up_s: events die; once it is back, a replay
    # brings them through and the condition clears.
    DISPATCH = {"retry_give_up_s": 3}

    def test_dead_events_replayed_resolve_the_alert(self):
        gw = self.start_gateway()
        test_customers.QBO.fault("503", count=100000)
        for n in range(3):
            test_customers.MPLUS.relation({"name": "Down %d" % n, "email": "down%d@example.nl" % n})
        self.wait(lambda: self.gw.status()["events"].get("dead", 0) >= 3, "3 dead events")
        self.wait_alerts("dead_events", 1, "the dead events' alert")
        test_customers.QBO.call("POST", "/_sim/faults/clear", {})
        gw.cli("replay", "--dead")
        done = self.wait_alerts("dead_events", 2, "the resolved message")
        self.assertEqual([a["state"] for a in done], ["open", "resolved"])
        self.assertNotIn(("shop1", "dead_events"), self.open_conditions())


class Authorisation(AlertsTestCase):
    DISPATCH = {"circuit_failures": 3, "circuit_open_s": 2}

    def test_reauthorisation_and_the_circuit_open_and_resolve(self):
        gw = self.start_gateway()
        self.wait(lambda: 'gateway_connection_authorised{connection="shop1"} 1' in self.metrics(),
                  "the connection authorised in /metrics")
        test_customers.QBO.call("POST", "/_sim/revoke")
        test_customers.QBO.entity("Customer", {"DisplayName": "Revoked", "PrimaryEmailAddr": {
            "Address": "revoked@example.nl"}})
        [m] = self.wait_alerts("needs_reauth", 1, "the re-authorisation alert")
        self.assertEqual((m["connection"], m["state"]), ("shop1", "open"))
        self.assertIn("connect the company again", m["detail"])
        self.assertIn(("shop1", "needs_reauth"), self.open_conditions())
        self.assertIn('gateway_connection_authorised{connection="shop1"} 0', self.metrics())
        # Connected again: one "resolved", and the condition is gone.
        gw.cli("tokens", "shop1", "--refresh-token", test_customers.QBO.refresh_token())
        done = self.wait_alerts("needs_reauth", 2, "the resolved message")
        self.assertEqual(done[1]["state"], "resolved")
        self.wait(lambda: ("shop1", "needs_reauth") not in self.open_conditions(),
                  "needs_reauth to leave status")

        # QuickBooks answers 503: the circuit opens, then closes once it works.
        test_customers.QBO.fault("503", count=30)
        for n in range(4):
            test_customers.QBO.entity("Customer", {"DisplayName": "Down %d" % n})
        [m] = self.wait_alerts("circuit_open", 1, "the circuit alert")
        self.assertIn("failures in a row", m["detail"])
        test_customers.QBO.call("POST", "/_sim/faults/clear", {})
        done = self.wait_alerts("circuit_open", 2, "the circuit's resolved message")
        self.assertEqual([a["state"] for a in done], ["open", "resolved"])
        # Half open between the two is no "resolved" of its own, nor a second "open".
        self.wait_polls(2)
        self.assertEqual(len(self.alerts("circuit_open")), 2)


class ReceiverDown(AlertsTestCase):
    REFUSE = 8  # more refusals than the old five tries; retries 1 s doubling to 2 s
    ALERTS = {"retry_first_s": 1, "retry_max_s": 2}

    def test_an_open_alert_reaches_a_receiver_that_comes_back(self):
        self.start_gateway(mplus_secret="not-the-secret")
        [m] = self.wait_alerts("mplus_login_refused", 1, "the alert once the receiver takes it")
        self.assertEqual((m["connection"], m["state"]), ("shop1", "open"))
        self.assertEqual(self.receiver.refused, 8)
        self.assertIn("alert delivery failed (attempt 8", self.gw.log_text())

    def test_dead_events_alerted_while_the_receiver_was_down_are_sent_after_a_restart(self):
        gw = self.start_gateway()
        rel, e = self.relation_to_customer({"telephone": "06-55556666", "city": "Ede"})
        self.assertEqual(e["state"], "dead")
        self.wait(lambda: self.receiver.refused >= 1, "a refused delivery")
        self.assertEqual(gw.stop(), 0)          # stopped while the message still waits
        self.assertEqual(self.alerts("dead_events"), [])
        self.receiver.refuse = 0
        gw.start()
        [m] = self.wait_alerts("dead_events", 1, "the dead event's alert after the restart")
        self.assertIn("the latest, %d" % e["id"], m["detail"])


class StoreAndInbox(AlertsTestCase):
    # Every QuickBooks webhook goes through the inbox, which is worked on after
    # 4 s of quiet; a store of at most 1 MiB, alerting above 1 %.
    STORAGE = {"index_inline_max": 0, "inbox_quiet_ms": 4000, "map_size_mb": 1, "map_max_mb": 1}
    ALERTS = {"inbox_stall_s": 1, "store_full_pct": 1}

    def test_a_full_store_and_a_stalled_inbox_open_and_the_inbox_resolves(self):
        self.start_gateway()
        [full] = self.wait_alerts("store_full", 1, "the store alert")
        self.assertEqual(full["connection"], "")
        self.assertIn("of the 1 MiB it may grow to", full["detail"])
        self.assertIn(("", "store_full"), self.open_conditions())
        test_customers.QBO.entity("Customer", {"DisplayName": "Inbox", "PrimaryEmailAddr": {
            "Address": "inbox@example.nl"}})
        [stalled] = self.wait_alerts("inbox_stalled", 1, "the inbox alert")
        self.assertIn("1 webhooks wait in the inbox", stalled["detail"])
        done = self.wait_alerts("inbox_stalled", 2, "the inbox drained")
        self.assertEqual(done[1]["state"], "resolved")
        self.assertEqual(self.gw.status()["inbox"], 0)
        # The operator gives the store room (here: a higher threshold) and restarts it:
        # the condition the last daemon had open is resolved.
        self.assertEqual(self.gw.stop(), 0)
        self.ALERTS = dict(self.ALERTS, store_full_pct=100)   # the config the restart writes
        self.gw.start()
        full = self.wait_alerts("store_full", 2, "the store's resolved message")
        self.assertEqual([a["state"] for a in full], ["open", "resolved"])
        self.assertNotIn(("", "store_full"), self.open_conditions())


class MplusLogin(AlertsTestCase):

    def test_a_refused_mplus_login_is_sent_and_resolved(self):
        self.start_gateway(mplus_secret="not-the-secret")
        [m] = self.wait_alerts("mplus_login_refused", 1, "the Mplus login alert")
        self.assertEqual(m["connection"], "shop1")
        self.assertIn("mplus_ident/mplus_secret", m["detail"])
        self.assertIn('gateway_mplus_login_refused{connection="shop1"} 1', self.metrics())
        # Mplus takes that secret now (as if the shop had set it there).
        secret = test_customers.MPLUS.call("POST", "/_sim/config", {})["secret"]
        test_customers.MPLUS.call("POST", "/_sim/config", {"secret": "not-the-secret"})
        self.addCleanup(test_customers.MPLUS.call, "POST", "/_sim/config", {"secret": secret})
        done = self.wait_alerts("mplus_login_refused", 2, "the resolved message")
        self.assertEqual(done[1]["state"], "resolved")


class OldPending(AlertsTestCase):
    ALERTS = {"oldest_pending_s": 2}

    def test_an_event_waiting_too_long_is_sent_and_resolved(self):
        # Mplus refuses the login: the connection's work is held, the event waits.
        self.start_gateway(mplus_secret="not-the-secret")
        test_customers.QBO.entity("Customer", {"DisplayName": "Waiting"})
        [m] = self.wait_alerts("oldest_pending", 1, "the old pending alert")
        self.assertEqual(m["connection"], "")
        self.assertIn("threshold 2 s", m["detail"])
        self.assertIn(("", "oldest_pending"), self.open_conditions())
        secret = test_customers.MPLUS.call("POST", "/_sim/config", {})["secret"]
        test_customers.MPLUS.call("POST", "/_sim/config", {"secret": "not-the-secret"})
        self.addCleanup(test_customers.MPLUS.call, "POST", "/_sim/config", {"secret": secret})
        done = self.wait_alerts("oldest_pending", 2, "the resolved message")
        self.assertEqual(done[1]["state"], "resolved")


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RULES = os.path.join(ROOT, "deploy", "prometheus-alerts.yml")


class PrometheusRules(AlertsTestCase):
    """deploy/prometheus-alerts.yml: valid rules over metrics the daemon serves."""

    @unittest.skipUnless(shutil.which("promtool"), "promtool not found (Debian's prometheus package; "
                         "scripts/setup --test installs it): the rules file is not checked")
    def test_promtool_checks_the_rules(self):
        p = subprocess.run(["promtool", "check", "rules", RULES], capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("SUCCESS: 9 rules found", p.stdout + p.stderr)

    def test_every_metric_the_rules_use_is_served(self):
        self.start_gateway()
        served = set(re.findall(r"^# TYPE (\w+) ", self.metrics(), re.M))
        with open(RULES) as f:
            used = {m for line in f if line.strip().startswith("expr:")
                    for m in re.findall(r"\b(gateway_\w+)", line)}
        self.assertGreater(len(used), 8, used)
        self.assertEqual(used - served, set())


if __name__ == "__main__":
    gwtest.main()
