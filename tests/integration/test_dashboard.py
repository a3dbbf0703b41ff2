#!/usr/bin/python3
"""The dashboard in a real browser: headless Chromium (Debian's chromium)
driven through the DevTools protocol (cdp.py), against the real daemon with
the sales flow between both simulators.

The page shows what `gateway status --json` says, filters and pages the
events, draws the events per minute, and replays a dead event after a
confirmation; without the token it shows nothing and says why; no console
errors. Skips, saying why, where Chromium cannot start.

    /usr/bin/python3 tests/integration/test_dashboard.py build/test/gateway [unittest args]

DASHBOARD_SCREENSHOT=FILE keeps a screenshot of the overview (docs/dashboard.png).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cdp  # noqa: E402
import gwtest  # noqa: E402
import test_sales  # noqa: E402


def setUpModule():
    test_sales.setUpModule()


def tearDownModule():
    test_sales.tearDownModule()


class Dashboard(test_sales.SalesTestCase):
    def setUp(self):
        super().setUp()
        try:
            self.browser = cdp.Browser()
        except cdp.Unavailable as e:
            self.skipTest("no browser: %s" % e)
        self.addCleanup(self.browser.close)

    def counts(self, page):
        return page.evaluate("Object.fromEntries([...document.querySelectorAll('#counts td[data-state]')]"
                             ".map(td => [td.dataset.state, Number(td.textContent)]))")

    def test_overview_filters_paging_chart_and_a_confirmed_replay(self):
        QBO, MPLUS = test_sales.QBO, test_sales.MPLUS
        # Items for the articles of the sales that go through; none for 1002: its sale is dead.
        for sku, item in (("1001", "901"), ("2001", "902")):
            QBO.entity("Item", {"Id": item, "Name": "Artikel %s" % sku, "Sku": sku, "Type": "Service",
                                "IncomeAccountRef": {"value": "79"}})
        for i in range(7):
            MPLUS.sale(kind="cash", lines=[{"articleNumber": 1001 + 1000 * (i % 2), "quantity": "1"}])
        stuck = MPLUS.sale(kind="cash", lines=[{"articleNumber": 1002, "quantity": "1"}])["receipt"]
        gw = self.start_gateway(sales_create_items="false")
        events = self.sale_events("receipt", 8)
        dead = [e for e in events if e["entity_id"] == stuck["receiptId"]][0]
        self.assertEqual(dead["state"], "dead", dead)
        base = "http://%s:%d/" % (gwtest.HOST, gw.admin_port)

        page = self.browser.open(base + "#token=" + gw.admin_token)
        page.wait("!document.getElementById('data').hidden", what="the overview")
        # The numbers on the page are the daemon's.
        page.wait("document.querySelectorAll('#counts td[data-state]').length > 0")
        status = gw.cli_json("status", "--json")
        self.assertEqual(self.counts(page), status["events"])
        self.assertEqual(page.evaluate("document.querySelector('#connections tr[data-connection]')"
                                       ".dataset.connection"), test_sales.CONN)
        # The chart: this minute's bars hold the events received.
        page.wait("document.querySelectorAll('#chart rect').length > 0", what="the chart")
        self.assertIn("events in the last hour", page.evaluate("document.getElementById('chart-legend')"
                                                              ".textContent"))
        if os.environ.get("DASHBOARD_SCREENSHOT"):
            page.screenshot(os.environ["DASHBOARD_SCREENSHOT"])

        # Filters: dead events of receipts only.
        page.evaluate("document.getElementById('state').value = 'dead';"
                      "document.getElementById('state').dispatchEvent(new Event('change'))")
        page.wait("[...document.querySelectorAll('#events tbody tr')].length === 1", what="the dead filter")
        self.assertEqual(page.evaluate("document.querySelector('#events tbody tr').dataset.id"), str(dead["id"]))
        page.evaluate("document.getElementById('state').value = '';"
                      "document.getElementById('entity').value = 'nothing-of-that-kind';"
                      "document.getElementById('entity').dispatchEvent(new Event('change'))")
        page.wait("document.querySelectorAll('#events tbody tr').length === 0", what="the entity filter")
        page.evaluate("document.getElementById('entity').value = '';"
                      "document.getElementById('entity').dispatchEvent(new Event('change'))")
        page.wait("document.querySelectorAll('#events tbody tr').length === 8", what="every event")

        # The dead event: opened, replayed after a confirmation, booked once its Item exists.
        QBO.entity("Item", {"Id": "903", "Name": "Artikel 1002", "Sku": "1002", "Type": "Service",
                            "IncomeAccountRef": {"value": "79"}})
        page.evaluate("document.querySelector('#events tr[data-id=\"%d\"] button.open').click()" % dead["id"])
        page.wait("!document.getElementById('replay').hidden", what="the replay button")
        # What came in: the receipt as polled.
        self.assertIn(stuck["receiptId"], page.evaluate("document.getElementById('payload').textContent"))
        page.evaluate("document.getElementById('replay').click()")
        page.wait("!document.getElementById('confirm').hidden", what="the confirmation")
        self.assertEqual(gw.show(dead["id"])["state"], "dead")  # nothing happens before the confirmation
        page.evaluate("document.getElementById('confirm-yes').click()")
        page.wait("document.getElementById('message').textContent.includes('Replayed event %d')"
                  % dead["id"], what="the replay's answer")

        def booked():
            return self.events_of(gw, entity="receipt", entity_id=stuck["receiptId"])[0]["state"] == "done" or None
        self.wait(booked, "the replayed sale booked", gw=gw)
        self.assertBookedOnce(stuck, "receipt", "SalesReceipt", "receiptId")
        self.assertEqual(page.problems(), [])

        # Without the token: nothing shown, and the page says why.
        bare = self.browser.open(base)
        bare.wait("document.readyState === 'complete'")
        self.assertTrue(bare.evaluate("document.getElementById('data').hidden"))
        self.assertEqual(bare.problems(), [])
        wrong = self.browser.open(base + "#token=wrong-" + gw.admin_token)
        wrong.wait("document.getElementById('message').textContent.includes('refused')", what="the refusal")
        self.assertTrue(wrong.evaluate("document.getElementById('data').hidden"))
        self.assertEqual(wrong.evaluate("document.querySelectorAll('#events tbody tr').length"), 0)
        # The only complaint is the browser's own note of the refused request.
        self.assertEqual(wrong.problems(allow=r"status of 401"), [])

    def test_pages_of_events(self):
        QBO, MPLUS = test_sales.QBO, test_sales.MPLUS
        QBO.entity("Item", {"Id": "901", "Name": "Artikel 1001", "Sku": "1001", "Type": "Service",
                            "IncomeAccountRef": {"value": "79"}})
        MPLUS.call("POST", "/_sim/till/sales", {"count": 120, "spec": {
            "kind": "cash", "lines": [{"articleNumber": 1001, "quantity": "1"}]}})
        gw = self.start_gateway(sales_create_items="false")
        self.sale_events("receipt", 120)
        ids = sorted((e["id"] for e in gw.events("--limit", "0")), reverse=True)
        page = self.browser.open("http://%s:%d/#token=%s" % (gwtest.HOST, gw.admin_port, gw.admin_token))
        page.wait("document.querySelectorAll('#events tbody tr').length === 50", what="the first page")
        shown = "[...document.querySelectorAll('#events tbody tr')].map(tr => Number(tr.dataset.id))"
        self.assertEqual(page.evaluate(shown), ids[:50])
        self.assertTrue(page.evaluate("document.getElementById('newer').disabled"))
        page.evaluate("document.getElementById('older').click()")
        page.wait("document.getElementById('page').textContent.includes('older than')")
        page.wait("%s[0] === %d" % (shown, ids[50]), what="the second page")
        self.assertEqual(page.evaluate(shown), ids[50:100])
        page.evaluate("document.getElementById('older').click()")
        page.wait("%s[0] === %d" % (shown, ids[100]), what="the last page")
        self.assertEqual(page.evaluate(shown), ids[100:])
        self.assertTrue(page.evaluate("document.getElementById('older').disabled"))
        page.evaluate("document.getElementById('newer').click()")
        page.wait("%s[0] === %d" % (shown, ids[50]), what="back to the second page")
        page.evaluate("document.getElementById('newer').click()")
        page.wait("%s[0] === %d" % (shown, ids[0]), what="back to the first page")
        self.assertEqual(page.problems(), [])


if __name__ == "__main__":
    gwtest.main()
