#!/usr/bin/python3
"""MplusKASSA polling integration tests: the real daemon against the Mplus simulator.

Every change in an Mplus administration must become exactly one durable event
(source "mplus-poll"): till sales within 2 s of their callback, everything else
by sync marker, page by page, with no gap and no duplicate across restarts and
crashes. One simulator (tests/sim/mplus_sim.py) serves the whole run and is
reset before every test; every test starts its own daemon with a fresh store.
Dispatch stays off (gwtest's default), so polled events stay pending and can be
counted; QuickBooks CDC is off.

    /usr/bin/python3 tests/integration/test_poller.py build/dev/gateway [unittest args]

Needs Debian's python3 (the simulator uses python3-lxml). Every wait is a poll
with a deadline; the few sleeps pace the simulated till or give the daemon time
to do something it must not do.
"""

import datetime
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gwtest  # noqa: E402
from gwtest import GatewayTestCase  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SIM_SCRIPT = os.path.normpath(os.path.join(HERE, "..", "sim", "mplus_sim.py"))
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
HOST = gwtest.HOST

IDENT = "gwtest-ident"
SECRET = "gwtest-secret-5f2c9a"
WEBHOOK_SECRET = "shop1-mplus-webhook-secret"
CONN = "shop1"
REALM = "1185883450"
TILL_LATENCY = 2.0   # a till sale is an event within this many seconds of its callback

# Poll kinds per flow, as in gateway/poller.c, with the simulator's head field
# (GET /_sim/markers) and the event entity of each.
HEAD = {"receipts": "receiptSyncMarker", "invoices": "invoiceSyncMarker",
        "orders": "orderSyncMarker", "relations": "relationSyncMarker",
        "articles": "articleSyncMarker", "article_groups": "articleGroupSyncMarker",
        "stock": "stockId"}
KINDS = {"sales": ("receipts", "invoices", "orders"), "customers": ("relations",),
         "products": ("articles", "article_groups"), "stock": ("stock",)}


# ---- the simulator ----------------------------------------------------------------


class MplusSim(gwtest.SimProcess):
    """The MplusKASSA simulator as a subprocess, and its control API."""

    def __init__(self):
        super().__init__("mplus_sim", [
            PYTHON, SIM_SCRIPT, "--port", "0", "--ident", IDENT, "--secret", SECRET,
            "--webhook-secret", WEBHOOK_SECRET, "--webhook-secret-encoding", "raw"],
            call_timeout=30)
        self.url = self.base + "/"

    def reset(self, seed=True, bulk_articles=0):
        return self.call("POST", "/_sim/reset", {"seed": seed, "bulk_articles": bulk_articles})

    def config(self, **settings):
        return self.call("POST", "/_sim/config", settings)

    def fault(self, kind, operation=None, count=1, delay_ms=0):
        rule = {"kind": kind, "count": count, "delay_ms": delay_ms}
        if operation is not None:
            rule["operation"] = operation
        return self.call("POST", "/_sim/fault", rule)

    def clear_faults(self):
        self.call("POST", "/_sim/faults/clear", {})

    def entity(self, kind, obj):
        return self.call("POST", "/_sim/entity", {"kind": kind, "object": obj})

    def seed(self, articles, per_product=1):
        return self.call("POST", "/_sim/seed", {"articles": articles,
                                                "articles_per_product": per_product})

    def markers(self):
        return self.call("GET", "/_sim/markers")

    def sale(self, **spec):
        return self.call("POST", "/_sim/till/sale", spec)

    def callbacks(self):
        return self.call("GET", "/_sim/callbacks")

    def requests(self, operation=None):
        log = self.call("GET", "/_sim/requests")
        return [r for r in log if operation is None or r["operation"] == operation]

    def clear_requests(self):
        self.call("POST", "/_sim/requests/clear", {})


SIM = None


def setUpModule():
    global SIM
    SIM = MplusSim()


def tearDownModule():
    if SIM is not None:
        SIM.close()


def utc_time(text):
    """A time as the gateway (…Z) or the simulator's log (…Z or +01:00) writes it, in epoch s."""
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# ---- the test case ----------------------------------------------------------------------


class PollerTestCase(GatewayTestCase):

    maxDiff = None
    WAIT = 20.0

    def setUp(self):
        SIM.reset()

    def start_gateway(self, flows, ident=IDENT, secret=SECRET, interval=1, page_size=500,
                      backfill=False, **keys):
        """A daemon with connection shop1 on the simulator; the simulator's till
        callbacks go to it (also after every restart: ports change)."""
        conn = gwtest.connection(CONN, REALM, WEBHOOK_SECRET, encoding="raw", flows=flows,
                                 mplus_url=SIM.url, mplus_ident=ident, mplus_secret=secret,
                                 mplus_poll_interval_s=interval, mplus_page_size=page_size,
                                 mplus_backfill="true" if backfill else "false", **keys)
        gw = self.gateway(connections=[conn], extra={"quickbooks": {"cdc_interval_s": 0}})
        self.point_callbacks(gw)
        return gw

    def point_callbacks(self, gw):
        SIM.config(webhook_url="http://%s:%d/webhooks/mplus/%s" % (HOST, gw.port, CONN))

    def restart(self, gw):
        gw.start()
        self.point_callbacks(gw)

    # -- what the daemon holds --

    def polled(self, gw, entity=None):
        """Summaries of the mplus-poll events, oldest first."""
        args = ["--source", "mplus-poll"] + (["--entity", entity] if entity else [])
        return list(reversed(gw.events(*args)))

    def full(self, gw, summaries):
        """Full records (with marker, dedupe_key and payload) through the admin API."""
        out = []
        for s in summaries:
            r = gw.admin_get("/api/events/%d" % s["id"])
            self.assertEqual(r.status, 200, r)
            out.append(r.json())
        return out

    def poll_status(self, gw, kind):
        return (self.conn_status(gw, CONN).get("mplus_polls") or {}).get(kind) or {}

    def pending(self, gw):
        return gw.status()["events"]["pending"]

    def wait_markers(self, gw, kinds, heads=None):
        """Until the status shows, for each kind, the simulator's head marker."""
        heads = heads or SIM.markers()

        def caught_up():
            polls = self.conn_status(gw, CONN).get("mplus_polls") or {}
            return all((polls.get(k) or {}).get("marker") == heads[HEAD[k]] for k in kinds)
        self.wait(caught_up, "markers %s to reach %s" % (kinds, {k: heads[HEAD[k]] for k in kinds}),
                  gw=gw)
        return heads

    def assertExactlyOnce(self, records, expected_ids, entity):
        """One event per change: no gap (every expected id is there), no
        duplicate (no (entity_id, marker) twice), each keyed by its marker."""
        pairs = [(r["entity_id"], r["marker"]) for r in records]
        self.assertEqual(len(pairs), len(set(pairs)), "duplicate (entity_id, marker) pairs")
        self.assertEqual(sorted(str(i) for i in expected_ids), sorted(p[0] for p in pairs))
        for r in records:
            self.assertEqual((r["source"], r["entity"], r["connection"], r["state"]),
                             ("mplus-poll", entity, CONN, "pending"))
            self.assertEqual(r["dedupe_key"], "mplus-poll|%s|%s|%s|%d"
                             % (CONN, entity, r["entity_id"], r["marker"]))
            self.assertNotIn(SECRET, json.dumps(r))

    def assertPagesContiguous(self, operation, page_size, first=1):
        """The SOAP requests of a backfill asked from first, each page from the
        previous page's highest marker + 1, in pages of page_size, until a short page."""
        reqs = [r for r in SIM.requests(operation) if r["status"] == 200]
        self.assertTrue(reqs, "no %s requests" % operation)
        expect = first
        for i, r in enumerate(reqs):
            self.assertEqual(r["params"].get("syncMarker"), expect, "request %d of %s" % (i, operation))
            self.assertEqual(r["params"].get("syncMarkerLimit"), page_size)
            if r["returned"]:
                expect = r["max_marker"] + 1
        return reqs


# ---- 1. till sale -> receipt event within 2 s of the callback ----------------------------


class TillSales(PollerTestCase):

    def start_sales(self):
        # A long interval: only the callback can make the poll happen in time.
        gw = self.start_gateway("sales", interval=3600)
        self.wait_markers(gw, KINDS["sales"])   # "from now" is known: later sales count
        SIM.call("POST", "/_sim/callbacks/clear", {})
        return gw

    def wait_document(self, gw, entity, doc_id, since):
        """Wait for the event of one document; returns (record, seconds since `since`)."""
        def found():
            for e in self.polled(gw, entity):
                if e["entity_id"] == str(doc_id):
                    return e
            return None
        e = self.wait(found, "%s %s to be polled" % (entity, doc_id), timeout=10, interval=0.02,
                      gw=gw)
        return e, time.monotonic() - since

    def assertPromptAfterCallback(self, gw, answer, entity, doc_field, sent):
        cb = answer["callback"]
        self.assertEqual(cb["status"], 200, cb)
        self.assertTrue(cb["reply_signature_ok"], cb)
        doc_id = answer[answer["document"]][doc_field]
        e, took = self.wait_document(gw, entity, doc_id, sent)
        # Own clock: from the moment the callback was answered to the event seen by the CLI.
        self.assertLess(took, TILL_LATENCY, "%s %s took %.2f s" % (entity, doc_id, took))
        # The daemon's clock: stored (received_at) within 2 s of the simulator's send time.
        lag = utc_time(e["received_at"]) - utc_time(cb["sent_at"])
        self.assertLess(lag, TILL_LATENCY, "%s %s stored %.2f s after its callback" % (entity, doc_id, lag))
        self.assertGreaterEqual(lag, 0.0)
        return e

    def test_sale_becomes_receipt_event_within_2s_of_callback(self):
        gw = self.start_sales()
        t0 = time.monotonic()
        answer = SIM.sale(kind="split", customer=10002,
                          lines=[{"articleNumber": 3001, "quantity": "1.234"},
                                 {"articleNumber": 1002, "quantity": "2", "discountPercentage": 10}])
        sent = time.monotonic()
        self.assertLess(sent - t0, 2.0)
        e = self.assertPromptAfterCallback(gw, answer, "receipt", "receiptId", sent)
        rec = self.full(gw, [e])[0]
        receipt = answer["receipt"]
        self.assertEqual(rec["marker"], receipt["syncMarker"])
        self.assertEqual(rec["payload"]["receiptId"], receipt["receiptId"])
        self.assertEqual(rec["operation"], "Change")
        # The callback itself was stored too (source mplus), and nothing else was polled.
        self.assertEqual(len(gw.events("--source", "mplus")), 1)
        self.assertEqual(len(self.polled(gw)), 1)
        self.wait_markers(gw, ["receipts"])
        self.assertEqual(SIM.markers()["receiptSyncMarker"], receipt["syncMarker"])

    def test_invoice_and_credit_after_callback(self):
        gw = self.start_sales()
        sale = SIM.sale(kind="card", lines=[{"articleNumber": 1001, "quantity": "3"}])
        self.assertPromptAfterCallback(gw, sale, "receipt", "receiptId", time.monotonic())
        credit = SIM.sale(kind="credit", credits=str(sale["receipt"]["receiptId"]))
        self.assertEqual(credit["callback"]["event"], "creditSession")
        self.assertPromptAfterCallback(gw, credit, "receipt", "receiptId", time.monotonic())
        invoice = SIM.sale(kind="cash", document="invoice", customer=10001,
                           lines=[{"articleNumber": 2002, "quantity": "1"}])
        self.assertPromptAfterCallback(gw, invoice, "invoice", "invoiceId", time.monotonic())
        self.assertEqual(len(self.polled(gw, "receipt")), 2)
        self.assertEqual(len(self.polled(gw, "invoice")), 1)

    def test_steady_stream_of_sales_each_within_2s(self):
        """A busy administration: a callback every 150 ms for 3 s. The debounce
        must not postpone the poll for ever, and a callback that arrives while a
        poll is in flight must not be lost."""
        gw = self.start_sales()
        sales = []
        end = time.monotonic() + 3.0
        while time.monotonic() < end:
            answer = SIM.sale(kind="cash", lines=[{"articleNumber": 1001, "quantity": "1"}])
            self.assertEqual(answer["callback"]["status"], 200)
            sales.append((answer["receipt"]["receiptId"], answer["callback"]["sent_at"]))
            time.sleep(0.15)
        ids = {str(r) for r, _ in sales}
        evs = self.wait(lambda: (lambda es: es if ids <= {e["entity_id"] for e in es} else None)(
            self.polled(gw, "receipt")), "all %d receipts" % len(ids), gw=gw)
        at = {e["entity_id"]: utc_time(e["received_at"]) for e in evs}
        late = {r: round(at[str(r)] - utc_time(sent), 2) for r, sent in sales
                if at[str(r)] - utc_time(sent) >= TILL_LATENCY}
        self.assertEqual(late, {}, "receipts stored >= 2 s after their callback (s)")
        self.assertEqual(len(evs), len(ids), "one event per receipt")


# ---- 2. paging across more changes than one page -------------------------------------------


class Paging(PollerTestCase):

    def setUp(self):
        SIM.reset(seed=False)

    def test_relations_paged_exactly_once_then_later_changes(self):
        n, page = 230, 50
        created = [SIM.entity("relation", {"name": "Klant %03d" % i, "city": "Utrecht"})
                   for i in range(n)]
        numbers = [r["relationNumber"] for r in created]
        self.assertEqual(SIM.markers()["relationSyncMarker"], n)
        gw = self.start_gateway("customers", interval=1, page_size=page, backfill=True)
        self.wait(lambda: self.pending(gw) >= n, "%d relation events" % n, gw=gw)
        heads = self.wait_markers(gw, ["relations"])
        recs = self.full(gw, self.polled(gw, "relation"))
        self.assertEqual(len(recs), n)
        self.assertExactlyOnce(recs, numbers, "relation")
        self.assertEqual(sorted(r["marker"] for r in recs), list(range(1, n + 1)))
        reqs = self.assertPagesContiguous("getRelations", page)
        # 4 full pages, one short one (30) ends the poll.
        self.assertEqual([r["returned"] for r in reqs[:5]], [50, 50, 50, 50, 30])
        self.assertEqual(heads["relationSyncMarker"], n)

        # Later changes: two updates (a relation appears again, at its new marker) and a new one.
        SIM.clear_requests()
        SIM.entity("relation", {"relationNumber": numbers[0], "city": "Amsterdam"})
        SIM.entity("relation", {"relationNumber": numbers[117], "city": "Gouda"})
        new = SIM.entity("relation", {"name": "Nieuwe klant"})
        self.wait(lambda: self.pending(gw) >= n + 3, "3 more relation events", gw=gw)
        self.wait_markers(gw, ["relations"])
        # A few more polls must add nothing.
        self.wait(lambda: len([r for r in SIM.requests("getRelations") if r["status"] == 200]) >= 3,
                  "two more polls", gw=gw)
        recs = self.full(gw, self.polled(gw, "relation"))
        self.assertEqual(len(recs), n + 3)
        self.assertExactlyOnce(recs, numbers + [numbers[0], numbers[117], new["relationNumber"]],
                               "relation")
        self.assertEqual(sorted(r["marker"] for r in recs), list(range(1, n + 4)))
        latest = [r for r in recs if r["entity_id"] == str(numbers[0]) and r["marker"] == n + 1]
        self.assertEqual(latest[0]["payload"]["city"], "Amsterdam")
        self.assertPagesContiguous("getRelations", page, first=n + 1)

    def test_articles_paged_by_article_not_by_product(self):
        """getProducts' syncMarkerLimit counts articles: 230 articles in
        products of 5 are 5 pages of 50 articles (10 products each), all
        followed at once although a page holds fewer products than the limit."""
        n, page = 230, 50
        seeded = SIM.seed(n, per_product=5)
        # A long interval: only paging may fetch the later pages.
        gw = self.start_gateway("products", interval=3600, page_size=page, backfill=True)
        self.wait(lambda: self.pending(gw) >= n, "%d article events" % n, gw=gw)
        self.wait_markers(gw, ["articles"])
        recs = self.full(gw, self.polled(gw, "article"))
        numbers = range(seeded["first_article_number"], seeded["last_article_number"] + 1)
        self.assertExactlyOnce(recs, numbers, "article")
        self.assertEqual(sorted(r["marker"] for r in recs),
                         list(range(seeded["first_sync_marker"], seeded["last_sync_marker"] + 1)))
        # Each article carries its product as context.
        self.assertIn("productNumber", recs[0]["payload"]["product"])
        self.assertEqual([r["returned"] for r in self.assertPagesContiguous("getProducts", page)],
                         [50, 50, 50, 50, 30])


# ---- 3. restarts and crashes mid-page --------------------------------------------------------


class Restarts(PollerTestCase):

    N = 400
    PAGE = 50
    SLOW_MS = 200

    def setUp(self):
        SIM.reset(seed=False)
        self.seeded = SIM.seed(self.N)
        self.numbers = range(self.seeded["first_article_number"], self.seeded["last_article_number"] + 1)
        # Every page answers late, so a stop lands while paging.
        SIM.fault("slow", "getProducts", count=1000, delay_ms=self.SLOW_MS)

    def start_products(self):
        return self.start_gateway("products", interval=1, page_size=self.PAGE, backfill=True)

    def interrupt_mid_page(self, gw, stop):
        """After at least one page is stored and before the last: stop(gw)."""
        seen = self.wait(lambda: (lambda p: p if self.PAGE <= p < self.N - self.PAGE else None)(
            self.pending(gw)), "a first page stored", interval=0.02, gw=gw)
        stop(gw)
        return seen

    def finish_and_check(self, gw):
        self.restart(gw)
        self.wait(lambda: self.pending(gw) >= self.N, "all %d article events" % self.N, gw=gw)
        self.wait_markers(gw, ["articles"])
        # One more poll after catching up adds nothing.
        after = self.seeded["last_sync_marker"] + 1

        def polled_again():
            return [r for r in SIM.requests("getProducts")
                    if (r["params"] or {}).get("syncMarker") == after and r["status"] == 200]
        self.wait(lambda: len(polled_again()) >= 2, "two polls after the last change", gw=gw)
        recs = self.full(gw, self.polled(gw, "article"))
        self.assertEqual(len(recs), self.N)
        self.assertExactlyOnce(recs, self.numbers, "article")
        self.assertEqual(sorted(r["marker"] for r in recs),
                         list(range(self.seeded["first_sync_marker"], self.seeded["last_sync_marker"] + 1)))
        self.assertEqual(self.pending(gw), self.N)

    def test_sigkill_mid_page_no_gap_no_duplicate(self):
        gw = self.start_products()
        seen = self.interrupt_mid_page(gw, lambda g: g.kill())
        self.assertLess(seen, self.N)
        # The second run resumes from the stored marker: never from the start.
        SIM.clear_requests()
        self.finish_and_check(gw)
        first = SIM.requests("getProducts")[0]["params"]["syncMarker"]
        self.assertGreater(first, 1, "the restart asked from the beginning again")

    def test_sigkill_twice_mid_page(self):
        gw = self.start_products()
        self.interrupt_mid_page(gw, lambda g: g.kill())
        self.restart(gw)
        before = self.pending(gw)
        self.wait(lambda: self.pending(gw) > before, "progress after the first restart",
                  interval=0.02, gw=gw)
        gw.kill()
        self.finish_and_check(gw)

    def test_sigterm_mid_page_drains_and_resumes(self):
        gw = self.start_products()
        self.interrupt_mid_page(gw, lambda g: g.stop())   # exit status 0 checked
        self.assertIn("received SIGTERM", gw.log_text())
        self.finish_and_check(gw)


# ---- 4. a new connection starts from now -------------------------------------------------------


class FromNow(PollerTestCase):

    def test_new_connection_without_backfill_ignores_existing_data(self):
        # The sample administration has relations, articles, groups and stock; add a sale.
        SIM.sale(kind="cash", callback=False, lines=[{"articleNumber": 2001, "quantity": "1"}])
        heads = SIM.markers()
        self.assertGreater(heads["relationSyncMarker"], 0)
        self.assertGreater(heads["receiptSyncMarker"], 0)
        flows = "sales, customers, products, stock"
        kinds = [k for f in flows.split(", ") for k in KINDS[f]]
        gw = self.start_gateway(flows, interval=1)
        self.wait_markers(gw, kinds, heads)
        # A second round of polls from there finds nothing old.
        SIM.clear_requests()
        self.wait(lambda: len([r for r in SIM.requests("getRelations") if r["status"] == 200]) >= 2,
                  "two polls from now", gw=gw)
        self.assertEqual(self.polled(gw), [])
        for r in SIM.requests("getRelations"):
            self.assertEqual(r["params"]["syncMarker"], heads["relationSyncMarker"] + 1)
        self.assertEqual(gw.status()["events"]["pending"], 0)

        # Changes after the start do become events, one each.
        rel = SIM.entity("relation", {"relationNumber": 10002, "city": "Haarlem"})
        SIM.entity("product", {"productNumber": 1, "articleList": [{"articleNumber": 1001,
                                                                    "priceIncl": 275}]})
        self.wait(lambda: len(self.polled(gw)) >= 2, "events for the new changes", gw=gw)
        self.wait_markers(gw, kinds)
        recs = self.full(gw, self.polled(gw))
        self.assertEqual(sorted((r["entity"], r["entity_id"]) for r in recs),
                         [("article", "1001"), ("relation", "10002")])
        by = {r["entity"]: r for r in recs}
        self.assertEqual(by["relation"]["marker"], rel["syncMarker"])
        self.assertEqual(by["relation"]["payload"]["city"], "Haarlem")

    def test_start_point_survives_a_restart(self):
        """The "from now" start is stored: changes made while the daemon is
        down are polled after the restart, old data still not."""
        gw = self.start_gateway("customers", interval=1)
        self.wait_markers(gw, ["relations"])
        gw.stop()
        rel = SIM.entity("relation", {"name": "Tijdens de stop"})
        self.restart(gw)
        self.wait(lambda: self.polled(gw, "relation"), "the relation made while stopped", gw=gw)
        self.wait_markers(gw, ["relations"])
        evs = self.polled(gw)
        self.assertEqual([e["entity_id"] for e in evs], [str(rel["relationNumber"])])


# ---- 5. bad credentials ------------------------------------------------------------------------


class BadCredentials(PollerTestCase):

    def test_wrong_secret_clear_error_in_status_and_log_and_backoff(self):
        wrong = "wrong-secret-77d1"
        gw = self.start_gateway("customers", secret=wrong, interval=1)

        def refused():
            c = self.conn_status(gw, CONN)
            err = c.get("mplus_error") or ""
            poll_err = (c.get("mplus_polls") or {}).get("relations", {}).get("last_error")
            return c if err and poll_err else None
        c = self.wait(refused, "mplus_error in status", gw=gw)
        err = c["mplus_error"]
        self.assertIn("Authentication failed", err)          # Mplus's own words
        self.assertIn("mplus_ident and mplus_secret", err)   # what to fix
        self.assertNotIn("mplus_api_version", c)
        self.assertIn("Authentication failed", c["mplus_polls"]["relations"]["last_error"])
        self.assertEqual(c["mplus_polls"]["relations"]["marker"], -1)

        # The log says so in a JSON line at level error, and never shows the secret.
        def logged():
            return [r for r in gw.log_records()
                    if r.get("level") == "error" and "refused the ident/secret" in json.dumps(r)]
        recs = self.wait(logged, "an error line about the credentials", gw=gw)
        self.assertIn("Authentication failed", json.dumps(recs[0]))
        self.assertNotIn(wrong, gw.log_text())
        self.assertNotIn(wrong, json.dumps(gw.status()))

        # No hammering: with a 1 s interval, the failing poll backs off (2 s, 4 s, ...).
        def attempts():
            a = [utc_time(r["time"]) for r in SIM.requests("getCurrentSyncMarkers")]
            return a if len(a) >= 3 else None
        t = self.wait(attempts, "three attempts", timeout=15, gw=gw)
        gaps = [b - a for a, b in zip(t, t[1:])]
        self.assertGreaterEqual(gaps[0], 1.5, gaps)
        self.assertGreaterEqual(gaps[1], 1.5 * gaps[0], gaps)
        for r in SIM.requests():
            self.assertEqual(r["auth"], "failed")
        total = len(SIM.requests())
        self.assertLessEqual(total, 5, "requests to Mplus while refused: %d" % total)
        self.assertEqual(gw.status()["events"]["pending"], 0)

    def test_wrong_ident(self):
        gw = self.start_gateway("products", ident="no-such-ident", interval=1)
        c = self.wait(lambda: (lambda c: c if c.get("mplus_error") else None)(self.conn_status(gw, CONN)),
                      "mplus_error in status", gw=gw)
        self.assertIn("unknown ident or wrong secret", c["mplus_error"])
        self.assertNotIn(SECRET, gw.log_text())

    def test_mplus_down_at_start_error_clears_once_it_answers(self):
        """Not a refusal: Mplus unreachable at the start (503). Once it answers,
        the version shows and the error is gone, as are the poll errors."""
        SIM.fault("http_503", count=2)   # getApiVersion and the first poll
        gw = self.start_gateway("customers", interval=1)
        self.wait_markers(gw, ["relations"])

        def recovered():
            c = self.conn_status(gw, CONN)
            return c if c.get("mplus_api_version") and "mplus_error" not in c \
                and "last_error" not in c["mplus_polls"]["relations"] else None
        c = self.wait(recovered, "the version in status and no error", gw=gw)
        self.assertEqual(c["mplus_api_version"], "67.1.3")
        self.assertEqual(self.polled(gw), [])

# ---- 6. stock by stockId -------------------------------------------------------------------------


class Stock(PollerTestCase):

    def test_stock_change_becomes_stock_event(self):
        gw = self.start_gateway("stock", interval=1)
        self.wait_markers(gw, ["stock"])
        self.assertEqual(self.polled(gw), [])
        row = SIM.entity("stock", {"branchNumber": 1, "articleNumber": 3001, "amount": "10.125"})
        # Branch 2 is not this connection's mplus_stock_branch.
        SIM.entity("stock", {"branchNumber": 2, "articleNumber": 2001, "amount": "4"})
        evs = self.wait(lambda: self.polled(gw, "stock"), "a stock event", gw=gw)
        self.wait(lambda: self.poll_status(gw, "stock").get("marker") == row["stockId"]
                  and len(SIM.requests("getStock")) >= 3, "the stock marker", gw=gw)
        evs = self.polled(gw)
        self.assertEqual([(e["entity"], e["entity_id"]) for e in evs], [("stock", "1/3001")])
        rec = self.full(gw, evs)[0]
        self.assertEqual(rec["marker"], row["stockId"])
        self.assertEqual(rec["dedupe_key"], "mplus-poll|%s|stock|1/3001|%d" % (CONN, row["stockId"]))
        self.assertEqual(rec["payload"]["articleNumber"], 3001)
        self.assertEqual(rec["payload"]["branchNumber"], 1)

        # A sale of a stock article moves its stock (and stockId): one more event.
        SIM.sale(kind="cash", callback=False, lines=[{"articleNumber": 3001, "quantity": "0.125"}])
        self.wait(lambda: len(self.polled(gw, "stock")) >= 2, "the stock event of the sale", gw=gw)
        recs = self.full(gw, self.polled(gw, "stock"))
        self.assertEqual([r["entity_id"] for r in recs], ["1/3001", "1/3001"])
        self.assertEqual(len({r["marker"] for r in recs}), 2)


if __name__ == "__main__":
    gwtest.main()
