#!/usr/bin/python3
"""Reconcile end to end: the real daemon between both simulators.

`gateway reconcile` puts Mplus's day figures (getJournals) next to what
QuickBooks holds for the same financial days, read back from QuickBooks,
and names the documents that explain a difference. The CLI asks the running
daemon (GET /api/reconcile), which holds the connection's tokens.

    /usr/bin/python3 tests/integration/test_reconcile.py build/test/gateway [unittest args]
"""

import copy
import decimal
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gwtest  # noqa: E402
import test_sales  # noqa: E402
import test_summary  # noqa: E402
from test_summary import day  # noqa: E402

D = decimal.Decimal


def setUpModule():
    test_sales.setUpModule()


def tearDownModule():
    test_sales.tearDownModule()


class Reconcile(test_summary.DailySummary):
    # The summary's tests are not run again here.
    for name in [n for n in dir(test_summary.DailySummary) if n.startswith("test_")]:
        locals()[name] = None

    def reconcile(self, first, last, expect_rc):
        p = self.gw.cli("reconcile", "--connection", test_sales.CONN, "--from", first, "--to", last, "--json",
                        check=False)
        self.assertEqual(p.returncode, expect_rc, (p.stdout.decode(), p.stderr.decode()))
        return json.loads(p.stdout)

    def test_a_receipt_deleted_by_hand_and_one_booked_twice_by_hand_are_named(self):
        MPLUS, QBO = test_sales.MPLUS, test_sales.QBO
        receipts = [self.sale(day(3), 1 + i % 2, i, kind="cash") for i in range(5)]
        other_day = [self.sale(day(2), 1, i, kind="card") for i in range(2)]
        self.start_gateway()
        self.sale_events("receipt", len(receipts) + len(other_day))
        report = self.reconcile(day(3), day(2), 0)
        self.assertTrue(report["ok"])
        self.assertEqual([d["date"] for d in report["days"]], [day(3), day(2)])
        first = report["days"][0]
        incl = sum(D(r["totalInclAmount"]) for r in receipts) / 100
        self.assertEqual((D(first["mplus"]["incl"]), D(first["quickbooks"]["incl"])), (incl, incl))
        self.assertEqual(first["mplus"]["vat"], first["quickbooks"]["vat"])
        self.assertEqual(first["quickbooks"]["documents"], len(receipts))

        # By hand in QuickBooks: one receipt deleted, another entered a second time.
        booked = {d["PrivateNote"]: d for d in self.docs_of("SalesReceipt")}
        gone = booked["Mplus receipt %s" % receipts[1]["receiptId"]]
        QBO.entity("SalesReceipt", {"Id": gone["Id"]}, operation="delete")
        twice = copy.deepcopy(booked["Mplus receipt %s" % receipts[3]["receiptId"]])
        for k in ("Id", "SyncToken", "MetaData"):
            twice.pop(k)
        QBO.entity("SalesReceipt", twice)

        report = self.reconcile(day(3), day(2), 1)
        self.assertFalse(report["ok"])
        bad, good = report["days"]
        self.assertTrue(good["ok"], good)
        self.assertFalse(bad["ok"])
        self.assertEqual([m["id"] for m in bad["missing"]], [receipts[1]["receiptId"]])
        self.assertEqual([t["id"] for t in bad["twice"]], [receipts[3]["receiptId"]])
        self.assertEqual(len(bad["twice"][0]["quickbooks"]), 2)
        self.assertEqual(bad["differs"], [])
        expected = (D(receipts[1]["totalInclAmount"]) - D(receipts[3]["totalInclAmount"])) / 100
        self.assertEqual(D(bad["difference"]["incl"]), expected)
        # The text form says the same, and exits 1.
        p = self.gw.cli("reconcile", "--connection", test_sales.CONN, "--from", day(3), "--to", day(3),
                        check=False)
        self.assertEqual(p.returncode, 1)
        text = p.stdout.decode()
        self.assertIn("MISMATCH", text)
        self.assertIn(receipts[1]["receiptId"], text)
        # Backfill books the missing one only; the one entered twice is the accountant's to remove.
        report, _ = self.backfill(day(3), day(2))
        self.assertEqual(([m["id"] for m in report["missing"]], report["queued"]), ([receipts[1]["receiptId"]], 1))
        self.wait(lambda: [d for d in self.docs_of("SalesReceipt")
                           if d["PrivateNote"] == "Mplus receipt %s" % receipts[1]["receiptId"]] or None,
                  "the missing receipt booked again", gw=self.gw)
        self.assertEqual(len(self.docs_of("SalesReceipt")), len(receipts) + len(other_day) + 1)
        report = self.reconcile(day(3), day(2), 1)
        self.assertEqual((report["days"][0]["missing"], [t["id"] for t in report["days"][0]["twice"]]),
                         ([], [receipts[3]["receiptId"]]))

    def test_daily_summaries_reconcile_with_the_day(self):
        for d in (day(3), day(2)):
            for branch in (1, 2):
                for i in range(3):
                    self.sale(d, branch, i)
        self.start_summary(day(3))
        self.wait_entries(4)
        report = self.reconcile(day(3), day(2), 0)
        self.assertEqual([(d["date"], d["quickbooks"]["documents"]) for d in report["days"]],
                         [(day(3), 2), (day(2), 2)])
        # A summary removed by hand: the day's whole figures are missing.
        entry = [e for e in self.entries() if e["DocNumber"] == "MPLUS-2-%s" % day(2)][0]
        test_sales.QBO.entity("JournalEntry", {"Id": entry["Id"]}, operation="delete")
        report = self.reconcile(day(3), day(2), 1)
        self.assertEqual([d["ok"] for d in report["days"]], [True, False])

    def backfill(self, first, last, *extra):
        p = self.gw.cli("backfill", "--connection", test_sales.CONN, "--from", first, "--to", last, "--json",
                        *extra)
        return json.loads(p.stdout), p.stderr.decode()

    def test_backfill_books_only_what_quickbooks_lacks_and_a_rerun_nothing(self):
        QBO = test_sales.QBO
        receipts = [self.sale(day(3), 1, i, kind="cash") for i in range(4)]
        self.start_gateway()
        self.sale_events("receipt", len(receipts))
        gone = {d["PrivateNote"]: d for d in self.docs_of("SalesReceipt")}["Mplus receipt %s"
                                                                            % receipts[2]["receiptId"]]
        QBO.entity("SalesReceipt", {"Id": gone["Id"]}, operation="delete")
        # A dry run names it and queues nothing.
        report, progress = self.backfill(day(3), day(3), "--dry-run")
        self.assertEqual(([m["id"] for m in report["missing"]], report["queued"], report["dry_run"]),
                         ([receipts[2]["receiptId"]], 0, True))
        self.assertIn("missing in QuickBooks", progress)
        self.assertEqual(len(self.docs_of("SalesReceipt")), 3)
        report, progress = self.backfill(day(3), day(3))
        self.assertEqual((report["documents"], report["queued"]), (4, 1))
        self.assertIn("events queued", progress)

        def rebooked():
            return [d for d in self.docs_of("SalesReceipt")
                    if d["PrivateNote"] == "Mplus receipt %s" % receipts[2]["receiptId"]] or None
        again = self.wait(rebooked, "the deleted receipt booked again", gw=self.gw)
        self.assertEqual(len(again), 1)
        self.assertNotEqual(again[0]["Id"], gone["Id"])
        self.wait_final(self.gw, 5, "the events final", entity="receipt")
        self.assertEqual(len(self.docs_of("SalesReceipt")), 4)
        self.assertTrue(self.reconcile(day(3), day(3), 0)["ok"])
        # A rerun finds nothing missing and queues nothing.
        report, _ = self.backfill(day(3), day(3))
        self.assertEqual((report["missing"], report["queued"]), ([], 0))

    def test_backfill_rebooks_a_daily_summary_removed_by_hand(self):
        for i in range(3):
            self.sale(day(2), 1, i)
        self.start_summary(day(2))
        entry = self.wait_entries(1)[0]
        test_sales.QBO.entity("JournalEntry", {"Id": entry["Id"]}, operation="delete")
        self.reconcile(day(2), day(2), 1)
        report, _ = self.backfill(day(2), day(2))
        self.assertEqual([m["id"] for m in report["missing"]], ["1/%s" % day(2)])
        again = self.wait_entries(1)
        self.assertEqual(again[0]["DocNumber"], entry["DocNumber"])
        self.assertNotEqual(again[0]["Id"], entry["Id"])
        self.assertTrue(self.reconcile(day(2), day(2), 0)["ok"])

    def unpost(self, *args, rc=0):
        p = self.gw.cli("unpost", "--connection", test_sales.CONN, "--json", *args, check=False)
        self.assertEqual(p.returncode, rc, (p.stdout.decode(), p.stderr.decode()))
        return json.loads(p.stdout)

    def test_unpost_deletes_a_day_refuses_what_changed_and_a_backfill_books_it_once(self):
        QBO = test_sales.QBO
        receipts = [self.sale(day(3), 1, i, kind="cash") for i in range(3)]
        receipts.append(self.sale(day(3), 1, 9, kind="split"))   # an Invoice with a Payment per method
        self.start_gateway()
        self.sale_events("receipt", len(receipts))
        self.assertEqual((len(self.docs_of("SalesReceipt")), len(self.docs_of("Invoice")),
                          len(self.docs_of("Payment"))), (3, 1, 2))
        # The accountant changed one receipt in QuickBooks since: unpost leaves it and says why.
        changed = {d["PrivateNote"]: d for d in self.docs_of("SalesReceipt")}["Mplus receipt %s"
                                                                               % receipts[0]["receiptId"]]
        QBO.entity("SalesReceipt", {"Id": changed["Id"], "Memo": "checked"})
        dry = self.unpost("--from", day(3), "--to", day(3), "--dry-run", rc=1)
        self.assertEqual(len(dry["unposted"]), 3)
        self.assertEqual(len(self.docs_of("SalesReceipt")), 3)
        report = self.unpost("--from", day(3), "--to", day(3), rc=1)
        self.assertEqual([r["quickbooks"] for r in report["refused"]], ["SalesReceipt %s" % changed["Id"]])
        self.assertIn("--force", report["refused"][0]["reason"])
        self.assertEqual(sorted(u["quickbooks"].split()[0] for u in report["unposted"]),
                         ["Invoice", "SalesReceipt", "SalesReceipt"])
        self.assertEqual([d["Id"] for d in self.docs_of("SalesReceipt")], [changed["Id"]])
        self.assertEqual((self.docs_of("Invoice"), self.docs_of("Payment")), ([], []))
        # --force takes the changed one too.
        report = self.unpost("--from", day(3), "--to", day(3), "--force")
        self.assertEqual([u["quickbooks"] for u in report["unposted"]], ["SalesReceipt %s" % changed["Id"]])
        self.assertEqual(self.docs_of("SalesReceipt"), [])
        self.assertEqual(len(self.reconcile(day(3), day(3), 1)["days"][0]["missing"]), 4)
        # A backfill books each once again, payments included.
        self.backfill(day(3), day(3))
        self.wait(lambda: len(self.docs_of("SalesReceipt")) == 3 and len(self.docs_of("Payment")) == 2 or None,
                  "the day booked again", gw=self.gw)
        self.wait_final(self.gw, 2 * len(receipts), "the events final", entity="receipt")
        self.assertTrue(self.reconcile(day(3), day(3), 0)["ok"])
        self.assertEqual((len(self.docs_of("SalesReceipt")), len(self.docs_of("Invoice")),
                          len(self.docs_of("Payment"))), (3, 1, 2))
        # One event's document alone.
        ev = [e for e in self.events_of(self.gw, entity="receipt") if e["entity_id"] == receipts[1]["receiptId"]][0]
        report = self.unpost("--event", str(ev["id"]))
        self.assertEqual(len(report["unposted"]), 1)
        self.assertEqual(len(self.docs_of("SalesReceipt")), 2)

    def test_unpost_of_a_summary_day_and_a_rerun(self):
        for i in range(3):
            self.sale(day(2), 2, i)
        self.start_summary(day(2))
        self.wait_entries(1)
        report = self.unpost("--from", day(2), "--to", day(2))
        self.assertEqual([u["doc_number"] for u in report["unposted"]], ["MPLUS-2-%s" % day(2)])
        self.assertEqual(self.entries(), [])
        self.backfill(day(2), day(2))
        self.wait_entries(1)
        self.assertTrue(self.reconcile(day(2), day(2), 0)["ok"])

    def close_books(self, through):
        test_sales.QBO.entity("Preferences", {"Id": "1", "AccountingInfoPrefs": {"BookCloseDate": through}})

    def test_a_closed_period_is_dead_with_a_clear_reason_by_default(self):
        self.close_books(day(3))
        closed = self.sale(day(3), 1, 0, kind="cash")
        open_ = self.sale(day(2), 1, 1, kind="cash")
        self.start_gateway()
        evs = {e["entity_id"]: e for e in self.sale_events("receipt", 2)}
        dead = evs[closed["receiptId"]]
        self.assertEqual((dead["state"], dead["reason"]), ("dead", "closed period"))
        self.assertIn("closed_period = next_open", dead["last_error"])
        self.assertEqual(evs[open_["receiptId"]]["state"], "done")
        self.assertEqual([d["TxnDate"] for d in self.docs_of("SalesReceipt")], [day(2)])

    def test_next_open_books_into_the_first_open_period_with_a_note(self):
        self.close_books(day(3))
        closed = self.sale(day(4), 1, 0, kind="cash")
        self.start_gateway(closed_period="next_open")
        ev = self.sale_events("receipt", 1)[0]
        self.assertEqual(ev["state"], "done", ev)
        docs = self.docs_of("SalesReceipt")
        self.assertEqual(len(docs), 1)
        self.assertEqual(docs[0]["TxnDate"], day(2))   # the day after the closing date
        self.assertEqual(docs[0]["PrivateNote"], "Mplus receipt %s (financial date %s; its period is closed)"
                         % (closed["receiptId"], day(4)))
        self.assertEqual(D(str(docs[0]["TotalAmt"])), D(closed["totalInclAmount"]) / 100)
        # Reconcile finds it booked (on another day), not missing.
        report = self.reconcile(day(4), day(2), 1)
        self.assertEqual([d["missing"] for d in report["days"]], [[], []])

    def test_bad_requests_are_refused_with_a_reason(self):
        self.start_gateway()
        p = self.gw.cli("reconcile", "--connection", test_sales.CONN, "--from", day(1), "--to", day(3),
                        check=False)
        self.assertEqual(p.returncode, 2)
        self.assertIn("from <= to", p.stderr.decode())
        p = self.gw.cli("reconcile", "--connection", "nope", "--from", day(1), "--to", day(1), check=False)
        self.assertEqual(p.returncode, 2)
        r = self.gw.admin_get("/api/reconcile?connection=%s&from=%s&to=%s" % (test_sales.CONN, day(1), day(1)),
                              token=False)
        self.assertEqual(r.status, 401)


if __name__ == "__main__":
    gwtest.main()
