#!/usr/bin/python3
"""The daily summary end to end: the real daemon between both simulators.

With sales_mode = receipts:daily_summary a till's financial day of one branch
becomes one QuickBooks JournalEntry (handlers/summary.c,
mapping/summary-to-qbo.jq) equal to the receipts of that day: turnover per
income account, VAT per rate, each payment method. The Mplus simulator
computes its day figures (getJournals, getFinancialJournal) from the
receipts it holds; the QuickBooks simulator is a Dutch VAT company that
refuses an entry whose debits and credits differ.

    /usr/bin/python3 tests/integration/test_summary.py build/test/gateway [unittest args]
"""

import datetime
import decimal
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gwtest  # noqa: E402
import test_sales  # noqa: E402
from test_sales import SalesTestCase, TAX_CODES, TAX_RATES, cents  # noqa: E402

D = decimal.Decimal
# Income account per Mplus turnover group, and deposit account per payment method.
INCOME = {1: "79", 2: "79", 3: "80", 4: "79"}
DEPOSIT = {"CASH": "35", "PIN": "36"}
ROUNDING = "37"


def setUpModule():
    test_sales.setUpModule()


def tearDownModule():
    test_sales.tearDownModule()


def day(n):
    """The local date n days before today, as text."""
    return (datetime.date.today() - datetime.timedelta(days=n)).isoformat()


def mplus_day(doc):
    d = doc["financialDate"]
    return "%04d-%02d-%02d" % (d["year"], d["mon"], d["day"])


def expected(receipts):
    """What the receipts of a day add up to: {account: net} of the turnover (excl), {rate: (net, vat)},
    {method account: paid}."""
    income, vat, paid = {}, {}, {}
    for r in receipts:
        for line in r["lineList"]["line"]:
            account = INCOME[line["data"]["turnoverGroup"]]
            income[account] = income.get(account, 0) + line["data"]["totalExclAmount"]
        for g in r["vatGroupList"]["vatGroup"]:
            rate = TAX_RATES[TAX_CODES[g["vatCode"]]][0]
            net, tax = vat.get(rate, (0, 0))
            vat[rate] = (net + g["exclAmount"], tax + g["vatAmount"])
        for p in r["paymentList"]["payment"]:
            account = DEPOSIT[p["method"]]
            paid[account] = paid.get(account, 0) + p["amount"]
    return ({k: D(v) / 100 for k, v in income.items()},
            {k: (D(n) / 100, D(t) / 100) for k, (n, t) in vat.items()},
            {k: D(v) / 100 for k, v in paid.items()})


def booked(entries):
    """The same figures, of what the journal entries hold (credits positive for income,
    debits positive for payments)."""
    income, vat, paid = {}, {}, {}
    for e in entries:
        for line in e["Line"]:
            det = line["JournalEntryLineDetail"]
            account, amount = det["AccountRef"]["value"], cents(line["Amount"])
            sign = 1 if det["PostingType"] == "Credit" else -1
            if account in DEPOSIT.values():
                paid[account] = paid.get(account, 0) - sign * amount
            elif account != ROUNDING:
                income[account] = income.get(account, 0) + sign * amount
        for t in (e.get("TxnTaxDetail") or {}).get("TaxLine") or []:
            rate = t["TaxLineDetail"]["TaxRateRef"]["value"]
            net, tax = vat.get(rate, (0, 0))
            vat[rate] = (net + cents(t["TaxLineDetail"]["NetAmountTaxable"]), tax + cents(t["Amount"]))
    return ({k: v for k, v in income.items() if v}, {k: v for k, v in vat.items() if v != (0, 0)},
            {k: v for k, v in paid.items() if v})


class DailySummary(SalesTestCase):
    def setUp(self):
        super().setUp()
        QBO = test_sales.QBO
        QBO.entity("Account", {"Id": "80", "Name": "Omzet kleding", "AccountType": "Income"})
        QBO.entity("Account", {"Id": "35", "Name": "Kas", "AccountType": "Bank"})
        QBO.entity("Account", {"Id": "36", "Name": "Pinbetalingen", "AccountType": "Bank"})
        QBO.entity("Account", {"Id": ROUNDING, "Name": "Afrondingsverschillen", "AccountType": "Expense"})

    def start_summary(self, since, **keys):
        conf = {"sales_documents": "receipts, invoices", "sales_mode": "receipts:daily_summary",
                "sales_mode_since": since,
                "summary_income_accounts": ", ".join("%d:%s" % kv for kv in INCOME.items()),
                "summary_rounding_account": ROUNDING}
        conf.update(keys)
        return self.start_gateway(**conf)

    def sale(self, on_day, branch, i, **spec):
        """A till receipt of day and branch, varied by i: kinds, VAT codes, turnover groups."""
        spec.setdefault("kind", ("cash", "card", "split")[i % 3])
        spec.setdefault("lines", [{"articleNumber": 1001, "quantity": str(1 + i % 3)},
                                  {"articleNumber": (2001, 3001, 4001)[i % 3], "quantity": ("1", "0.375", "2")[i % 3]}])
        return test_sales.MPLUS.sale(timestamp="%sT1%d:00:00+01:00" % (on_day, i % 10), branchNumber=branch,
                                     workplaceNumber=1, **spec)["receipt"]

    def entries(self):
        return [e for e in test_sales.QBO.entities("JournalEntry") if e.get("status") != "Deleted"]

    def wait_entries(self, n):
        def check():
            found = self.entries()
            return found if len(found) >= n else None
        found = self.wait(check, "%d journal entries" % n, gw=self.gw)
        time.sleep(1.5)   # a poll more: nothing else comes
        self.assertEqual(len(self.entries()), n, [e["DocNumber"] for e in self.entries()])
        return self.entries()

    def assertBalances(self, entry):
        sides = {"Debit": D(0), "Credit": D(0)}
        for line in entry["Line"]:
            det = line["JournalEntryLineDetail"]
            sides[det["PostingType"]] += cents(line["Amount"]) + cents(det.get("TaxAmount", 0))
        self.assertEqual(sides["Debit"], sides["Credit"], entry)

    def test_three_days_on_two_branches_are_six_entries_equal_to_the_receipts(self):
        days = [day(4), day(3), day(2)]
        before = [self.sale(day(5), 1 + i % 2, i) for i in range(4)]
        made = {}
        for d in days:
            for branch in (1, 2):
                made[(d, branch)] = [self.sale(d, branch, i) for i in range(3 + branch)]
        gw = self.start_summary(days[0])
        entries = self.wait_entries(6)
        by_number = {e["DocNumber"]: e for e in entries}
        self.assertEqual(sorted(by_number), sorted("MPLUS-%d-%s" % (b, d) for d in days for b in (1, 2)))
        for (d, branch), receipts in made.items():
            e = by_number["MPLUS-%d-%s" % (branch, d)]
            self.assertEqual(e["TxnDate"], d)
            self.assertBalances(e)
            self.assertEqual(booked([e]), expected(receipts), (d, branch))
            tax = sum(g["vatAmount"] for r in receipts for g in r["vatGroupList"]["vatGroup"])
            self.assertEqual(cents(e["TxnTaxDetail"]["TotalTax"]), D(tax) / 100)
        # Cutover: the day before it per document, from it only in the summaries.
        self.sale_events("receipt", len(before) + sum(len(v) for v in made.values()))
        receipts_booked = self.by_note("SalesReceipt")
        receipts_booked.update(self.by_note("Invoice"))
        for r in before:
            self.assertEqual(len(receipts_booked.get("Mplus receipt %s" % r["receiptId"], [])), 1, r["receiptId"])
        summarised = {r["receiptId"] for v in made.values() for r in v}
        self.assertFalse([n for n in receipts_booked if n.split()[-1] in summarised])
        skipped = [e for e in self.events_of(gw, entity="receipt") if e["reason"] == "in the daily summary"]
        self.assertEqual(len(skipped), len(summarised))
        # Each summary event shows the day's figures, its entry and the receipts it covers.
        summary = self.events_of(gw, entity="summary", entity_id="1/%s" % days[0])
        shown = gw.cli_json("show", str(summary[0]["id"]), "--json")
        notes = " ".join(str(s) for s in shown.get("steps", shown.get("history", [])))
        self.assertIn("created JournalEntry", notes)
        self.assertIn("Payments CASH", notes)
        self.assertEqual([e["doc_number"] for e in shown["booked"]["entries"]], ["MPLUS-1-%s" % days[0]])
        self.assertEqual(sorted(r["number"] for r in shown["receipts"]),
                         sorted(r["transactionString"] for r in made[(days[0], 1)]))

    def test_a_late_receipt_is_one_correcting_entry(self):
        first = [self.sale(day(3), 1, i) for i in range(3)]
        gw = self.start_summary(day(3))
        self.wait_entries(1)
        late = self.sale(day(3), 1, 7, kind="card", lines=[{"articleNumber": 3001, "quantity": "1"}])
        entries = self.wait_entries(2)
        correction = [e for e in entries if e["DocNumber"] == "MPLUS-1-%sC1" % day(3)]
        self.assertEqual(len(correction), 1, [e["DocNumber"] for e in entries])
        self.assertBalances(correction[0])
        self.assertEqual(booked(correction), expected([late]))
        self.assertEqual(booked(entries), expected(first + [late]))
        # The same figures again make nothing new.
        self.wait_final(gw, 2, "summary events final", entity="summary")
        self.assertEqual(len(self.entries()), 2)

    def test_sigkill_while_booking_a_day_books_it_once(self):
        receipts = [self.sale(day(2), 2, i) for i in range(4)]
        QBO = test_sales.QBO
        QBO.fault("slow", count=1, path_contains="journalentry", delay_ms=2500)
        gw = self.start_summary(day(2))
        self.wait(lambda: [q for q in QBO.requests() if "journalentry" in q["path"]] or None,
                  "the entry's create sent", gw=gw)
        gw.kill()
        self.wait(lambda: self.entries() or None, "the entry made while the daemon was down", gw=gw)
        gw.start()
        self.wait_final(gw, 1, "the day's event final", entity="summary")
        entries = self.wait_entries(1)
        self.assertEqual(entries[0]["DocNumber"], "MPLUS-2-%s" % day(2))
        self.assertEqual(booked(entries), expected(receipts))

    def test_a_day_closed_at_the_till_is_booked_before_the_next_morning(self):
        today = day(0)
        self.sale(today, 1, 0)
        self.sale(today, 2, 1)
        gw = self.start_summary(today)
        time.sleep(3)   # polls: today is not complete yet
        self.assertEqual(self.entries(), [])
        test_sales.MPLUS.call("POST", "/_sim/day/close", {"financialDate": today, "branchNumber": 1})
        entries = self.wait_entries(1)
        self.assertEqual(entries[0]["DocNumber"], "MPLUS-1-%s" % today)
        self.assertEqual(self.events_of(gw, entity="summary", entity_id="2/%s" % today), [])

    def test_the_entry_can_be_previewed(self):
        gw = self.start_summary(day(1))
        source = {"doc_number": "MPLUS-1-2026-11-03", "date": "2026-11-03", "branch": "1",
                  "private_note": "Mplus daily summary: branch 1, financial day 2026-11-03", "correction": False,
                  "lines": [{"posting": "Credit", "account": "79", "amount": "10.00", "tax_code": "5",
                             "tax_amount": "2.10", "description": "Turnover group 1 (Dranken)"},
                            {"posting": "Debit", "account": "35", "amount": "12.10", "tax_code": None,
                             "tax_amount": None, "description": "Payments CASH"}],
                  "tax_lines": [{"rate": "15", "percent": "21", "net": "10.00", "amount": "2.10"}],
                  "total_tax": "2.10", "department": None, "class": None}
        path = os.path.join(self.tmp, "day.json")
        with open(path, "w") as f:
            json.dump(source, f)
        preview = json.loads(gw.cli("map", "--flow", "summary-to-qbo", "--input", path, "--connection",
                                    test_sales.CONN).stdout)
        self.assertEqual(preview, {
            "DocNumber": "MPLUS-1-2026-11-03", "TxnDate": "2026-11-03", "PrivateNote": source["private_note"],
            "Line": [{"DetailType": "JournalEntryLineDetail", "Amount": "10.00",
                      "Description": "Turnover group 1 (Dranken)",
                      "JournalEntryLineDetail": {"PostingType": "Credit", "AccountRef": {"value": "79"},
                                                 "TaxCodeRef": {"value": "5"}, "TaxApplicableOn": "Sales",
                                                 "TaxAmount": "2.10"}},
                     {"DetailType": "JournalEntryLineDetail", "Amount": "12.10", "Description": "Payments CASH",
                      "JournalEntryLineDetail": {"PostingType": "Debit", "AccountRef": {"value": "35"}}}],
            "TxnTaxDetail": {"TotalTax": "2.10", "TaxLine": [
                {"DetailType": "TaxLineDetail", "Amount": "2.10",
                 "TaxLineDetail": {"TaxRateRef": {"value": "15"}, "PercentBased": True, "TaxPercent": "21",
                                   "NetAmountTaxable": "10.00"}}]}})

    def test_a_day_that_does_not_balance_beyond_the_bound_is_dead_and_says_why(self):
        # Paid 5.00 less than the turnover: more than summary_rounding_max_cents.
        self.sale(day(2), 1, 0, payments=[{"method": "CASH", "amount": 100}])
        gw = self.start_summary(day(2), summary_rounding_max_cents="10")
        ev = self.wait_final(gw, 1, "the day's event final", entity="summary")[0]
        self.assertEqual(ev["state"], "dead", ev)
        self.assertIn("differ from its payments", ev["last_error"])
        self.assertEqual(self.entries(), [])


if __name__ == "__main__":
    gwtest.main()
