#!/usr/bin/python3
"""Sales flow end to end: the real daemon between both simulators.

Mplus receipts, invoices and orders -> QuickBooks SalesReceipt,
RefundReceipt, Invoice, CreditMemo, Payment (handlers/sales.c,
mapping/sales-to-qbo.jq). Each test starts its own daemon with one
connection, shop1, and the sales flow:

  - the MplusKASSA simulator (its sample catalogue and relations) is polled
    every second from marker 0; till sales are made through its control API
    (/_sim/till/sale, /_sim/till/sales, /_sim/till/pay, /_sim/till/order);
  - the QuickBooks simulator holds the tax codes and accounts of a Dutch
    company, checks every reference (Item, TaxCode, Customer) and the rule
    Amount = round(Qty x UnitPrice, 2), and compares e-mail addresses with
    = case-sensitively;
  - totals are compared to the cent with Decimal, never floats.

    /usr/bin/python3 tests/integration/test_sales.py build/test/gateway [unittest args]
"""

import decimal
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gwtest  # noqa: E402
from gwtest import GatewayTestCase  # noqa: E402
from test_customers import MplusSim, QboSim, CONN, REALM, WEBHOOK_SECRET, MPLUS_IDENT, \
    MPLUS_SECRET, app_config  # noqa: E402
import test_customers  # noqa: E402

D = decimal.Decimal
HOST = gwtest.HOST
FINAL = gwtest.FINAL
# Mplus VAT code -> the QuickBooks TaxCode Id of this company (NL low, high, zero),
# and the TaxRate each TaxCode lists: Id and percent.
TAX_CODES = {1: "7", 2: "5", 3: "9"}
TAX_RATES = {"7": ("17", 9), "5": ("15", 21), "9": ("19", 0)}


class SalesMplus(MplusSim):
    def __init__(self):
        gwtest.SimProcess.__init__(self, "mplus_sim", [
            test_customers.PYTHON, os.path.join(test_customers.SIM_DIR, "mplus_sim.py"),
            "--port", "0", "--ident", MPLUS_IDENT, "--secret", MPLUS_SECRET])

    def reset(self):
        self.call("POST", "/_sim/reset", {})

    def sale(self, **spec):
        spec.setdefault("callback", False)
        return self.call("POST", "/_sim/till/sale", spec)

    def docs(self, kind):
        return self.call("GET", "/_sim/entities?kind=%s" % kind)


QBO = None
MPLUS = None


def setUpModule():
    global QBO, MPLUS
    QBO, MPLUS = gwtest.start_simulators(QboSim, SalesMplus)


def tearDownModule():
    gwtest.close_simulators(QBO, MPLUS)


def cents(value):
    """Mplus cents (int) or QBO decimals (number or text) as Decimal units."""
    return D(str(value))


class SalesTestCase(GatewayTestCase):
    maxDiff = None
    WAIT = 60.0

    def setUp(self):
        QBO.reset()
        QBO.config(rate_per_sec=1000, rate_per_min=100000, max_concurrent=100)
        MPLUS.reset()
        self.gw = None
        self.tmp = tempfile.mkdtemp(prefix="gwtest-sales-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        # A Dutch VAT company: its tax rates and codes, accounts and the rounding item.
        QBO.entity("CompanyInfo", {"Id": REALM, "Country": "NL"})
        for code, (rate, percent) in TAX_RATES.items():
            QBO.entity("TaxRate", {"Id": rate, "Name": "BTW %d%%" % percent, "RateValue": percent,
                                   "Active": True})
            QBO.entity("TaxCode", {"Id": code, "Name": "BTW %s" % code, "Active": True,
                                   "SalesTaxRateList": {"TaxRateDetail": [
                                       {"TaxRateRef": {"value": rate}, "TaxTypeApplicable": "TaxOnAmount",
                                        "TaxOrder": 0}]}})
        QBO.entity("Account", {"Id": "79", "Name": "Omzet", "AccountType": "Income"})
        QBO.entity("Item", {"Id": "900", "Name": "Afronding", "Sku": "ROUNDING", "Type": "Service"})

    def mapping_then(self, name, then):
        """The shipped sales mapping followed by `| then`, as a file of the test's own."""
        path = os.path.join(self.tmp, name)
        with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "mapping",
                               "sales-to-qbo.jq")) as f:
            program = f.read()
        with open(path, "w") as f:
            f.write("%s | %s\n" % (program, then))
        return path

    def start_gateway(self, **keys):
        conf = {"mplus_url": "%s/" % MPLUS.base, "mplus_ident": MPLUS_IDENT,
                "mplus_secret": MPLUS_SECRET, "mplus_poll_interval_s": 1, "mplus_backfill": "true",
                "default_country": "NL",
                "sales_tax_codes": ", ".join("NLD/%d:%s" % kv for kv in TAX_CODES.items()),
                "sales_payment_methods": "CASH:1, PIN:2",
                "sales_deposit_accounts": "CASH:35, PIN:36",
                "sales_rounding_item": "900", "sales_create_items": "true",
                "sales_item_income_account": "79"}
        conf.update(keys)
        conn = gwtest.connection(CONN, REALM, WEBHOOK_SECRET, flows="sales", **conf)

        def extra(gw):
            return app_config(gw, QBO, {"rate_per_sec": 1000, "rate_per_min": 100000,
                                        "batch_per_min": 100000}, {"retry_give_up_s": 6})
        gw = self.gateway(connections=[conn], extra=extra)
        self.gw = gw
        gw.cli("tokens", CONN, "--refresh-token", QBO.refresh_token())
        return gw

    def docs_of(self, entity):
        return [d for d in QBO.entities(entity) if d.get("status") != "Deleted"]

    def by_note(self, entity):
        out = {}
        for d in self.docs_of(entity):
            out.setdefault(d.get("PrivateNote", ""), []).append(d)
        return out

    def sale_events(self, kind, n):
        return self.wait_final(self.gw, n, "%d %s events final" % (n, kind), entity=kind,
                               source="mplus-poll")

    def assertBookedOnce(self, mplus_doc, kind, entity, id_field):
        docs = self.by_note(entity).get("Mplus %s %s" % (kind, mplus_doc[id_field]), [])
        self.assertEqual(len(docs), 1, (mplus_doc[id_field], docs))
        d = docs[0]
        total = abs(cents(mplus_doc["totalInclAmount"]) / 100)
        self.assertEqual(cents(d["TotalAmt"]), total, d)
        return d


class TillSales(SalesTestCase):
    def test_a_day_of_till_sales_is_booked_once_each_exact_to_the_cent(self):
        gw = self.start_gateway(mplus_document_page_size=50)
        # 200 varied receipts, then the hard cases one by one.
        MPLUS.call("POST", "/_sim/till/sales", {"count": 200, "vary": True, "spec": {"kind": "cash"}})
        MPLUS.sale(kind="split", card_amount=1000,
                   lines=[{"articleNumber": 3001, "quantity": "0.537"},
                          {"articleNumber": 1001, "quantity": "3", "discountPercentage": 10}])
        MPLUS.sale(kind="card", lines=[{"articleNumber": 1002, "quantity": "7", "discountAmount": 33}])
        MPLUS.sale(kind="cash", vatMethod="exclusive",
                   lines=[{"articleNumber": 1001, "quantity": "1.333"},
                          {"articleNumber": 2001, "quantity": "2"}])
        first = MPLUS.sale(kind="cash", lines=[{"articleNumber": 1001, "quantity": "2"}])
        MPLUS.sale(kind="credit", credits=first["receipt"]["receiptId"])
        receipts = MPLUS.docs("receipt")
        self.assertEqual(len(receipts), 205)
        evs = self.sale_events("receipt", 205)
        # Documents come in pages of mplus_document_page_size.
        limits = [q["params"].get("syncMarkerLimit") for q in MPLUS.requests("getReceipts")]
        self.assertGreaterEqual(len(limits), 5)
        self.assertEqual(set(limits), {50})
        bad = [(e["id"], e["state"], e["reason"], e["last_error"]) for e in evs if e["state"] != "done"]
        self.assertEqual(bad, [])
        sales = [r for r in receipts if r["receiptType"] == "RECEIPT-TYPE-RECEIPT"]
        credits = [r for r in receipts if r["receiptType"] == "RECEIPT-TYPE-CREDIT-RECEIPT"]
        self.assertEqual((len(sales), len(credits)), (204, 1))
        # The receipt paid by card and cash is an Invoice with a Payment per method.
        split = [r for r in sales if len(r["paymentList"]["payment"]) == 2]
        self.assertEqual(len(split), 1)
        self.assertEqual(len(self.docs_of("SalesReceipt")), 203)
        self.assertEqual(len(self.docs_of("RefundReceipt")), 1)
        for r in sales:
            d = self.assertBookedOnce(r, "receipt", "Invoice" if r in split else "SalesReceipt", "receiptId")
            # VAT per code as Mplus has it: the tax total and the lines' tax codes.
            vat = sum(cents(g["vatAmount"]) for g in r["vatGroupList"]["vatGroup"]) / 100
            self.assertEqual(cents(d["TxnTaxDetail"]["TotalTax"]), vat, d)
            for code in {g["vatCode"] for g in r["vatGroupList"]["vatGroup"]}:
                excl = sum(cents(l["data"]["totalExclAmount"]) for l in r["lineList"]["line"]
                           if l["data"]["vatCode"] == code) / 100
                booked = sum(cents(l["Amount"]) for l in d["Line"]
                             if l.get("SalesItemLineDetail", {}).get("TaxCodeRef", {}).get("value")
                             == TAX_CODES[code])
                self.assertEqual(booked, excl, (code, d))
        self.assertBookedOnce(credits[0], "receipt", "RefundReceipt", "receiptId")
        invoice = self.assertBookedOnce(split[0], "receipt", "Invoice", "receiptId")
        self.assertEqual(cents(invoice["Balance"]), 0, invoice)
        pays = sorted((p["DepositToAccountRef"]["value"], p["PaymentMethodRef"]["value"], cents(p["TotalAmt"]))
                      for p in self.docs_of("Payment"))
        self.assertEqual(pays, sorted((dict(CASH="35", PIN="36")[p["method"]], dict(CASH="1", PIN="2")[p["method"]],
                                       cents(p["amount"]) / 100) for p in split[0]["paymentList"]["payment"]))
        # Amounts travel as JSON numbers, not strings.
        posted = [q["body"] for q in QBO.requests()
                  if q["method"] == "POST" and q["path"].endswith("/salesreceipt")]
        self.assertEqual(len(posted), 203)
        for line in posted[0]["Line"]:
            self.assertIsInstance(line["Amount"], (int, float), line)
            self.assertIsInstance(line["SalesItemLineDetail"]["Qty"], (int, float), line)
            self.assertIsInstance(line["SalesItemLineDetail"]["UnitPrice"], (int, float), line)
        self.assertIsInstance(posted[0]["TxnTaxDetail"]["TotalTax"], (int, float))
        # The anonymous sales share one default customer; the articles became Items once.
        customers = QBO.entities("Customer")
        self.assertEqual([c["DisplayName"] for c in customers], ["Till sales"])
        skus = [i["Sku"] for i in QBO.entities("Item") if i["Sku"] != "ROUNDING"]
        self.assertEqual(len(skus), len(set(skus)))

        # Replayed and re-polled: nothing new.
        before = len(QBO.requests())
        for e in evs[:20]:
            gw.cli("replay", "--event", str(e["id"]))
        ids = [e["id"] for e in evs[:20]]

        def replayed():
            shown = [gw.show(i) for i in ids]
            return all(x.get("replays", 0) >= 1 and x["state"] in FINAL for x in shown) and shown
        for x in self.wait(replayed, "the replays final"):
            self.assertEqual((x["state"], x["reason"]), ("skipped", "already booked"), x)
        self.assertEqual(len(self.docs_of("SalesReceipt")), 203)
        creates = [q for q in QBO.requests()[before:] if q["method"] == "POST"]
        self.assertEqual(creates, [])

    def test_show_holds_the_salesreceipt_body_quickbooks_received(self):
        self.start_gateway()
        sale = MPLUS.sale(kind="card", lines=[{"articleNumber": 3001, "quantity": "0.537"},
                                              {"articleNumber": 1001, "quantity": "2"}])["receipt"]
        e = self.sale_events("receipt", 1)[0]
        self.assertEqual(e["state"], "done", e)
        calls = self.gw.show(e["id"])["history"][-1]["calls"]
        sent = [c for c in calls if c["system"] == "quickbooks" and c["path"] == "/salesreceipt"]
        self.assertEqual(len(sent), 1, calls)
        received = [r for r in QBO.requests() if r["method"] == "POST" and r["path"].endswith("/salesreceipt")]
        self.assertEqual(len(received), 1)
        # Byte for byte (a SalesReceipt holds nothing to redact), and what QuickBooks answered.
        self.assertEqual(sent[0]["request"], received[0]["body_text"])
        self.assertIn("Mplus receipt %s" % sale["receiptId"], sent[0]["response"])
        self.assertEqual(sent[0]["intuit_tid"], received[0]["intuit_tid"])

    def test_a_member_named_like_a_secret_is_sent_but_not_kept_in_show(self):
        """A new document goes as the mapping's text; the log still redacts what looks secret."""
        self.start_gateway(map_sales_to_qbo=self.mapping_then("with-api-key.jq",
                                                             '.ApiKey = "s3cr3t-value-4711"'))
        MPLUS.sale(kind="cash", lines=[{"articleNumber": 1001, "quantity": "2"}])
        e = self.sale_events("receipt", 1)[0]
        # QuickBooks refuses a member it does not know, as the real one does; the call is logged.
        self.assertEqual((e["state"], e["reason"]), ("dead", "rejected by QuickBooks"), e)
        received = [r for r in QBO.requests() if r["method"] == "POST" and r["path"].endswith("/salesreceipt")]
        self.assertEqual(len(received), 1)
        self.assertIn("s3cr3t-value-4711", received[0]["body_text"])  # sent as mapped
        calls = self.gw.show(e["id"])["history"][-1]["calls"]
        self.assertNotIn("s3cr3t-value-4711", json.dumps(calls))
        sent = [c for c in calls if c["system"] == "quickbooks" and c["path"] == "/salesreceipt"]
        self.assertEqual(len(sent), 1, calls)
        logged, wire = json.loads(sent[0]["request"]), json.loads(received[0]["body_text"])
        self.assertEqual(logged["ApiKey"], "***")
        self.assertEqual(logged["Line"], wire["Line"])  # the rest as it went

    def test_line_texts_go_trimmed_and_cut_to_the_quickbooks_limit(self):
        """A line's text loses the white space at its ends (Unicode's, as gw_nonempty trims),
        one of nothing but white space goes without a Description, and one over QuickBooks'
        4,000 characters is cut there. The document's number and date come as Mplus has them."""
        self.start_gateway()
        long_text = "Lange omschrijving " + "\u00e9" * 4100
        r = MPLUS.sale(kind="cash", lines=[
            {"articleNumber": 1001, "quantity": "1", "text": "\u00a0 Koffie\u3000verkeerd \u2003"},
            {"articleNumber": 1001, "quantity": "2", "text": " \u00a0\u3000\u2028"},
            {"articleNumber": 1001, "quantity": "3", "text": long_text}])["receipt"]
        self.assertEqual(self.sale_events("receipt", 1)[0]["state"], "done")
        d = self.assertBookedOnce(r, "receipt", "SalesReceipt", "receiptId")
        by_qty = {float(l["SalesItemLineDetail"]["Qty"]): l for l in d["Line"]
                  if "SalesItemLineDetail" in l}
        self.assertEqual(by_qty[1.0]["Description"], "Koffie\u3000verkeerd", d)
        self.assertNotIn("Description", by_qty[2.0], d)
        self.assertEqual(by_qty[3.0]["Description"], long_text[:4000], d)
        self.assertEqual(d["DocNumber"], r["transactionString"], d)
        fd = r["financialDate"]
        self.assertEqual(d["TxnDate"], "%04d-%02d-%02d" % (fd["year"], fd["mon"], fd["day"]), d)

    def test_sigkill_mid_day_then_restart_loses_none_and_books_none_twice(self):
        gw = self.start_gateway()
        MPLUS.call("POST", "/_sim/till/sales", {"count": 150, "vary": True, "spec": {"kind": "cash"}})
        # Slow answers keep many creates in flight when the daemon dies.
        QBO.fault("slow", count=10000, path_contains="salesreceipt", delay_ms=40)
        self.wait(lambda: len(self.docs_of("SalesReceipt")) >= 30, "30 receipts booked")
        gw.kill()
        booked_before = len(self.docs_of("SalesReceipt"))
        self.assertLess(booked_before, 150)
        gw.start()
        evs = self.sale_events("receipt", 150)
        self.assertEqual(len(evs), 150)
        self.assertEqual([e["id"] for e in evs if e["state"] != "done"], [])
        for r in MPLUS.docs("receipt"):
            self.assertBookedOnce(r, "receipt", "SalesReceipt", "receiptId")
        self.assertEqual(len(self.docs_of("SalesReceipt")), 150)

    def test_an_unknown_tax_code_is_dead_and_names_code_and_country(self):
        self.start_gateway(sales_tax_codes="NLD/2:5")
        low = MPLUS.sale(kind="cash", lines=[{"articleNumber": 1001, "quantity": "1"}])["receipt"]
        high = MPLUS.sale(kind="cash", lines=[{"articleNumber": 2001, "quantity": "1"}])["receipt"]
        self.assertEqual(low["lineList"]["line"][0]["data"]["vatCode"], 1)
        self.assertEqual(high["lineList"]["line"][0]["data"]["vatCode"], 2)
        evs = {e["entity_id"]: e for e in self.sale_events("receipt", 2)}
        dead, done = evs[low["receiptId"]], evs[high["receiptId"]]
        self.assertEqual((dead["state"], dead["reason"], dead["attempts"]), ("dead", "cannot book", 1), dead)
        self.assertIn("Mplus VAT code 1 in country NLD", dead["last_error"])
        self.assertIn("sales_tax_codes", dead["last_error"])
        self.assertEqual(done["state"], "done", done)
        # Nothing was written for the dead one.
        self.assertEqual(list(self.by_note("SalesReceipt")), ["Mplus receipt %s" % high["receiptId"]])

    def test_an_unknown_sku_retries_naming_it_then_goes_dead(self):
        self.start_gateway(sales_create_items="false")
        MPLUS.sale(kind="cash", lines=[{"articleNumber": 1001, "quantity": "1"}])
        e = self.sale_events("receipt", 1)[0]
        self.assertEqual(e["state"], "dead", e)
        self.assertIn("SKU 1001", e["last_error"])
        self.assertGreater(e["attempts"], 1)
        self.assertEqual(self.docs_of("SalesReceipt"), [])
        # Once the Item exists, a replay books it.
        QBO.entity("Item", {"Name": "Koffie", "Sku": "1001", "Type": "NonInventory"})
        self.gw.cli("replay", "--event", str(e["id"]))
        self.wait(lambda: len(self.docs_of("SalesReceipt")) == 1, "the receipt booked after replay")

    def test_an_invoice_paid_in_two_payments_shows_paid(self):
        self.start_gateway()
        inv = MPLUS.sale(document="invoice", customer=10002, payments=[],
                         lines=[{"articleNumber": 2001, "quantity": "4"}])["invoice"]
        self.sale_events("invoice", 1)
        total = cents(inv["totalInclAmount"])
        MPLUS.call("POST", "/_sim/till/pay", {"invoiceId": inv["invoiceId"], "method": "PIN",
                                               "amount": int(total) - 500})
        self.sale_events("invoice", 2)
        MPLUS.call("POST", "/_sim/till/pay", {"invoiceId": inv["invoiceId"], "method": "CASH",
                                               "amount": 500})
        self.sale_events("invoice", 3)
        d = self.assertBookedOnce(inv, "invoice", "Invoice", "invoiceId")
        self.assertEqual(cents(d["Balance"]), 0, d)
        self.assertEqual(len(self.docs_of("Payment")), 2)
        # The relation became one customer, found again by the id map.
        self.assertEqual(len(QBO.entities("Customer")), 1)

    def test_a_cancelled_order_voids_its_document(self):
        self.start_gateway()
        order = MPLUS.sale(document="order", customer=10003,
                           lines=[{"articleNumber": 1001, "quantity": "2"}])["order"]
        e = self.sale_events("order", 1)[0]
        self.assertEqual((e["state"], e["reason"]), ("skipped", "order not complete"))
        MPLUS.call("POST", "/_sim/till/order", {"orderId": order["orderId"], "completeState": "COMPLETE"})
        self.sale_events("order", 2)
        self.assertEqual(len(self.docs_of("Invoice")), 1)
        MPLUS.call("POST", "/_sim/till/order", {"orderId": order["orderId"], "cancelState": "COMPLETE"})
        evs = self.sale_events("order", 3)
        self.assertEqual(evs[-1]["state"], "done", evs[-1])
        inv = self.docs_of("Invoice")[0]
        self.assertEqual(inv["PrivateNote"], "Voided")
        self.assertEqual(cents(inv["TotalAmt"]), 0)

    def test_sales_of_one_new_relation_at_once_make_one_customer(self):
        self.start_gateway()
        MPLUS.call("POST", "/_sim/till/sales",
                   {"count": 12, "vary": True, "spec": {"kind": "card", "customer": 10003}})
        evs = self.sale_events("receipt", 12)
        self.assertEqual([e["state"] for e in evs], ["done"] * 12)
        customers = QBO.entities("Customer")
        self.assertEqual([c["DisplayName"] for c in customers], ["Caf\u00e9 't Hoekje V.O.F."])
        self.assertEqual({d["CustomerRef"]["value"] for d in self.docs_of("SalesReceipt")},
                         {customers[0]["Id"]})

    def test_an_email_in_other_letter_case_finds_the_existing_customer(self):
        QBO.entity("Customer", {"DisplayName": "Piet", "PrimaryEmailAddr": {"Address": "PIET.DEVRIES@example.nl"}})
        self.start_gateway()
        MPLUS.sale(document="invoice", customer=10002, lines=[{"articleNumber": 2001, "quantity": "1"}])
        e = self.sale_events("invoice", 1)[0]
        self.assertEqual(e["state"], "done", e)
        customers = QBO.entities("Customer")
        self.assertEqual(len(customers), 1, customers)
        self.assertEqual(self.docs_of("Invoice")[0]["CustomerRef"]["value"], customers[0]["Id"])


class OneSaleOneBooking(SalesTestCase):
    """A webshop order and the receipt (picked up at the till) or invoice Mplus
    makes of it are one sale: one sales document in QuickBooks, whatever is
    polled first, with the other's payments linked to it."""

    LINES = [{"articleNumber": 1001, "quantity": "2"}, {"articleNumber": 2001, "quantity": "1"}]

    def order(self, payments=()):
        return MPLUS.sale(document="order", customer=10003, lines=self.LINES,
                          payments=list(payments))["order"]

    def change(self, order, **spec):
        return MPLUS.call("POST", "/_sim/till/order", dict(spec, orderId=order["orderId"]))

    def hold_back(self, operation):
        """Mplus answers operation with a SOAP fault until cleared: the other kinds are polled first."""
        MPLUS.call("POST", "/_sim/fault", {"kind": "soap_fault", "count": 1000000, "operation": operation})

    def slow_down(self, operation):
        """Mplus answers operation after 2 s: the other kinds are polled first, and a flow's own
        call of it still works."""
        MPLUS.call("POST", "/_sim/fault", {"kind": "slow", "count": 1000000, "operation": operation,
                                           "delay_ms": 2000})

    def clear(self):
        MPLUS.call("POST", "/_sim/faults/clear", {})

    def booked(self):
        """The sales documents in QuickBooks (not voided)."""
        return [d for e in ("SalesReceipt", "Invoice") for d in self.docs_of(e)
                if d.get("PrivateNote") != "Voided"]

    def last(self, kind, n, state, reason=None):
        e = self.sale_events(kind, n)[-1]
        self.assertEqual(e["state"], state, e)
        if reason is not None:
            self.assertEqual(e["reason"], reason, e)
        return e

    def steps(self, e):
        return [s for h in self.gw.show(e["id"]).get("history", []) for s in h.get("steps", [])]

    def assertOneBooking(self, order, entity):
        docs = self.booked()
        self.assertEqual([d["Id"] for d in docs], [d["Id"] for d in self.docs_of(entity)], docs)
        self.assertEqual(len(docs), 1, docs)
        self.assertEqual(cents(docs[0]["TotalAmt"]), cents(order["totalInclAmount"]) / 100)
        return docs[0]

    def test_an_order_booked_when_created_then_picked_up_gets_the_till_payment(self):
        self.start_gateway(sales_order_state="created")
        order = self.order()
        self.last("order", 1, "done")                       # booked as an Invoice at once
        picked = self.change(order, pickup={})
        e = self.last("receipt", 1, "done")                 # its payment, linked to that Invoice
        self.last("order", 2, "done")                       # its new version updates its own Invoice
        inv = self.assertOneBooking(order, "Invoice")
        self.assertEqual(cents(inv["Balance"]), 0, inv)
        [pay] = self.docs_of("Payment")
        self.assertEqual(cents(pay["TotalAmt"]), cents(picked["receipt"]["totalInclAmount"]) / 100)
        self.assertEqual(pay["Line"][0]["LinkedTxn"][0]["TxnId"], inv["Id"])
        self.assertIn("receipt %s is part of sale %s, booked as Invoice %s"
                      % (picked["receipt"]["receiptId"], order["orderId"], inv["Id"]), self.steps(e))
        # Replayed: nothing more is booked, and it says why.
        self.gw.cli("replay", "--event", str(e["id"]))
        self.wait(lambda: self.gw.show(e["id"])["state"] == "skipped", "the replay final")
        self.assertEqual(self.gw.show(e["id"])["reason"], "part of sale %s" % order["orderId"])
        self.assertEqual(len(self.docs_of("Payment")), 1)

    def test_a_partly_delivered_order_is_booked_by_each_invoice_of_it(self):
        self.start_gateway()
        order = self.order()
        self.last("order", 1, "skipped", "order not complete")
        # Mplus invoices the delivered line, later the other: two invoices, each its own lines.
        first = self.change(order, invoice={"lines": [1]})["invoice"]
        self.last("invoice", 1, "done")
        second = self.change(order, invoice={"lines": [0]})
        self.assertEqual(second["order"]["completeState"], "ORDER-COMPLETE-STATE-COMPLETE")
        second = second["invoice"]
        evs = self.sale_events("invoice", 2)
        self.assertEqual([(e["state"], e["reason"]) for e in evs], [("done", None)] * 2)
        self.assertEqual(first["totalInclAmount"] + second["totalInclAmount"], order["totalInclAmount"])
        self.assertOneBookingEach([first, second])
        e = self.last("order", 3, "skipped", "part of sale %s" % order["orderId"])
        self.assertTrue(any("further part of order" in step for step in self.steps(evs[-1])), self.steps(evs[-1]))
        self.assertEqual(len(self.docs_of("SalesReceipt")), 0)

    def test_with_order_a_partly_delivered_order_is_booked_once_on_complete(self):
        self.start_gateway(sales_order_invoices="with_order")
        order = self.order()
        self.last("order", 1, "skipped", "order not complete")
        first = self.change(order, invoice={"lines": [1]})["invoice"]
        self.last("invoice", 1, "skipped", "part of sale %s" % order["orderId"])
        # Paid in part before the order is complete: the order's booking carries it.
        MPLUS.call("POST", "/_sim/till/pay", {"invoiceId": first["invoiceId"], "amount": 500, "method": "CASH"})
        self.last("invoice", 2, "skipped", "part of sale %s" % order["orderId"])
        second = self.change(order, invoice={"lines": [0]})["invoice"]
        e = self.last("order", 3, "done")
        self.assertTrue(any("booked with its 2 invoice(s)" in step for step in self.steps(e)), self.steps(e))
        doc = self.assertOneBooking(order, "Invoice")
        self.assertEqual(doc["PrivateNote"], "Mplus order %s" % order["orderId"])
        self.assertEqual([cents(p["TotalAmt"]) for p in self.docs_of("Payment")], [D("5.00")])
        # Later payments of its invoices are linked to the order's Invoice, the first not twice.
        MPLUS.call("POST", "/_sim/till/pay", {"invoiceId": second["invoiceId"], "amount": 300, "method": "PIN"})
        MPLUS.call("POST", "/_sim/till/pay", {"invoiceId": first["invoiceId"], "amount": 100, "method": "PIN"})
        self.wait(lambda: len(self.docs_of("Payment")) >= 3, "the later payments")
        evs = self.wait_final(self.gw, 4, "the invoice events final", entity="invoice")
        self.assertEqual({e["state"] for e in evs} - {"done", "skipped"}, set(), evs)
        self.assertEqual(sorted(cents(p["TotalAmt"]) for p in self.docs_of("Payment")),
                         [D("1.00"), D("3.00"), D("5.00")])
        doc = self.assertOneBooking(order, "Invoice")
        self.assertEqual(cents(doc["Balance"]), cents(doc["TotalAmt"]) - D("9.00"))
        self.assertEqual(self.docs_of("SalesReceipt"), [])
        self.assertEqual(first["totalInclAmount"] + second["totalInclAmount"], order["totalInclAmount"])

    def assertOneBookingEach(self, invoices):
        docs = self.booked()
        self.assertEqual(sorted(d["PrivateNote"] for d in docs),
                         sorted("Mplus invoice %s" % i["invoiceId"] for i in invoices), docs)
        for inv in invoices:
            d = [d for d in docs if d["PrivateNote"] == "Mplus invoice %s" % inv["invoiceId"]][0]
            self.assertEqual(cents(d["TotalAmt"]), cents(inv["totalInclAmount"]) / 100, d)

    def test_a_partly_cancelled_order_books_what_remains(self):
        self.start_gateway(sales_order_state="created")
        order = MPLUS.sale(document="order", customer=10003, payments=[],
                           lines=[{"articleNumber": 1001, "quantity": "3"},
                                  {"articleNumber": 3001, "quantity": "1.500"},
                                  {"articleNumber": 2001, "quantity": "1"}])["order"]
        self.last("order", 1, "done")
        # One of three coffees and 0.500 of 1.500 kg of cheese are cancelled; the shirt stays.
        changed = self.change(order, cancel=[{"line": 0, "quantity": "1"}, {"line": 1, "quantity": "0.5"}])["order"]
        self.assertEqual(changed["cancelState"], "ORDER-CANCEL-STATE-PARTIAL")
        self.assertEqual(changed["totalInclAmount"], order["totalInclAmount"])   # Mplus keeps the totals
        self.last("order", 2, "done")
        inv = self.docs_of("Invoice")
        self.assertEqual(len(inv), 1, inv)
        inv = inv[0]
        self.assertNotEqual(inv.get("PrivateNote"), "Voided")
        lines = order["lineList"]["line"]
        remaining = [(D(2), 3), (D("1.000"), D("1.500")), (D(1), 1)]
        want = D(0)
        for line, (left, of) in zip(lines, remaining):
            want += (D(line["data"]["totalInclAmount"]) * left / D(of)).quantize(D(1), decimal.ROUND_HALF_UP)
        self.assertEqual(cents(inv["TotalAmt"]), want / 100, inv)
        qtys = sorted(D(str(l["SalesItemLineDetail"]["Qty"])) for l in inv["Line"] if "SalesItemLineDetail" in l)
        self.assertEqual(qtys, [D(1), D(1), D(2)], inv)
        # QuickBooks' VAT per rate is what the remaining lines carry, net and tax.
        nets = sum(cents(t["TaxLineDetail"]["NetAmountTaxable"]) for t in inv["TxnTaxDetail"]["TaxLine"])
        self.assertEqual(nets + cents(inv["TxnTaxDetail"]["TotalTax"]), cents(inv["TotalAmt"]), inv)
        # Cancelling the rest voids it.
        self.change(order, cancel=[{"line": 0, "quantity": "2"}, {"line": 1, "quantity": "1"},
                                   {"line": 2, "quantity": "1"}])
        self.last("order", 3, "done")
        self.assertEqual(self.docs_of("Invoice")[0]["PrivateNote"], "Voided")

    def test_a_picked_up_order_is_booked_by_its_receipt_in_either_polling_order(self):
        for first in ("order", "receipt"):
            with self.subTest(first=first):
                self.setUp()
                self.start_gateway()
                order = self.order()
                self.last("order", 1, "skipped", "order not complete")
                if first == "order":
                    self.hold_back("getReceipts")
                else:
                    self.slow_down("getOrders")
                picked = self.change(order, pickup={})
                e = self.last("order", 2, "skipped", "part of sale %s" % order["orderId"])
                self.clear()
                self.last("receipt", 1, "done")
                receipt = self.assertOneBooking(order, "SalesReceipt")
                self.assertIn("Mplus receipt %s" % picked["receipt"]["receiptId"], receipt["PrivateNote"])
                # The order's event names what booked its sale: the Mplus receipt, or its SalesReceipt.
                self.assertTrue(any(picked["receipt"]["receiptId"] in s or
                                    ("booked as SalesReceipt %s by receipt" % receipt["Id"]) in s
                                    for s in self.steps(e)), self.steps(e))
                self.gw.stop()

    def test_an_invoice_of_an_order_books_the_sale_in_either_polling_order(self):
        for first, held in (("order", "getInvoices"), ("invoice", "getOrders")):
            with self.subTest(first=first):
                self.setUp()
                self.start_gateway()
                order = self.order()
                self.last("order", 1, "skipped")
                if first == "order":
                    self.hold_back(held)
                else:
                    self.slow_down(held)
                made = self.change(order, invoice=True)
                self.last("order", 2, "skipped", "part of sale %s" % order["orderId"])
                self.clear()
                self.last("invoice", 1, "done")
                inv = self.assertOneBooking(order, "Invoice")
                self.assertIn("Mplus invoice %s" % made["invoice"]["invoiceId"], inv["PrivateNote"])
                # The Mplus invoice is paid later, in two parts: both linked to the one Invoice.
                invoice = made["invoice"]
                total = invoice["totalInclAmount"]
                MPLUS.call("POST", "/_sim/till/pay", {"invoiceId": invoice["invoiceId"],
                                                      "method": "PIN", "amount": total - 500})
                MPLUS.call("POST", "/_sim/till/pay", {"invoiceId": invoice["invoiceId"],
                                                      "method": "CASH", "amount": 500})
                self.wait(lambda: cents(self.docs_of("Invoice")[0]["Balance"]) == 0, "the Invoice paid")
                self.wait(lambda: all(e["state"] in gwtest.FINAL for e in self.gw.events()), "all final")
                self.assertEqual(len(self.docs_of("Payment")), 2)
                self.assertOneBooking(order, "Invoice")
                self.gw.stop()

    def test_an_order_booked_when_paid_in_advance_takes_no_second_payment_at_pickup(self):
        self.start_gateway(sales_order_state="paid")
        order = self.order(payments=[{"method": "PIN", "amount": 1000}])
        self.last("order", 1, "skipped", "order not paid")
        self.change(order, payments=[{"method": "PIN", "amount": order["totalInclAmount"] - 1000}])
        self.last("order", 2, "done")
        inv = self.assertOneBooking(order, "Invoice")
        self.assertEqual(cents(inv["Balance"]), 0)
        self.assertEqual(len(self.docs_of("Payment")), 2)
        picked = self.change(order, pickup={})
        self.assertEqual((picked["receipt"].get("paymentList") or {}).get("payment", []), [])  # nothing to pay
        self.last("receipt", 1, "skipped", "part of sale %s" % order["orderId"])
        self.last("order", 3, "done")        # its new version (complete) updates its own Invoice
        self.assertEqual(len(self.docs_of("Payment")), 2)
        self.assertOneBooking(order, "Invoice")

    def test_a_prepaid_order_picked_up_before_it_is_booked_carries_its_prepayment(self):
        self.start_gateway()
        order = self.order(payments=[{"method": "CASH", "amount": 1000}])
        self.last("order", 1, "skipped", "order not complete")
        self.slow_down("getOrders")
        picked = self.change(order, pickup={})
        self.assertEqual(sum(p["amount"] for p in picked["receipt"]["paymentList"]["payment"]),
                         order["totalInclAmount"] - 1000)
        e = self.last("receipt", 1, "done")
        self.last("order", 2, "skipped", "part of sale %s" % order["orderId"])
        self.clear()
        # Paid in cash in advance and by card at the till: an Invoice with a Payment per method.
        doc = self.assertOneBooking(order, "Invoice")
        self.assertTrue(any("was paid in advance" in s for s in self.steps(e)), self.steps(e))
        self.assertEqual(cents(doc["Balance"]), 0, doc)
        self.assertEqual(sorted((p["DepositToAccountRef"]["value"], cents(p["TotalAmt"]) * 100)
                                for p in self.docs_of("Payment")),
                         sorted([("35", 1000), ("36", order["totalInclAmount"] - 1000)]))


    def test_a_day_of_webshop_orders_and_till_sales_across_a_sigkill_books_each_sale_once(self):
        gw = self.start_gateway()
        orders = [self.order() for _ in range(100)]
        MPLUS.call("POST", "/_sim/till/sales", {"count": 60, "vary": True, "spec": {"kind": "card"}})
        self.sale_events("order", 100)
        # Half the orders are picked up at the till, half invoiced; slow answers keep many
        # bookings in flight when the daemon dies halfway.
        QBO.fault("slow", count=1000000, path_contains="/v3/company/", delay_ms=30)
        for i, o in enumerate(orders[:50]):
            self.change(o, **({"pickup": {}} if i % 2 else {"invoice": True}))
        self.wait(lambda: len(self.booked()) >= 40, "40 sales booked")
        gw.kill()
        self.assertLess(len(self.booked()), 110)
        for i, o in enumerate(orders[50:]):
            self.change(o, **({"pickup": {}} if i % 2 else {"invoice": True}))
        QBO.call("POST", "/_sim/faults/clear", {})
        gw.start()
        receipts, invoices = MPLUS.docs("receipt"), MPLUS.docs("invoice")
        self.assertEqual((len(receipts), len(invoices)), (110, 50))
        self.sale_events("receipt", 110)
        self.sale_events("invoice", 50)
        self.wait(lambda: all(e["state"] in gwtest.FINAL for e in self.gw.events()), "every event final")
        evs = self.gw.events()
        self.assertEqual([(e["entity"], e["entity_id"], e["state"], e["last_error"]) for e in evs
                          if e["state"] == "dead" or (e["state"] == "skipped" and e["entity"] != "order")], [])
        # Every receipt and invoice is booked once; no order is booked on its own.
        for r in receipts:
            self.assertBookedOnce(r, "receipt", "SalesReceipt", "receiptId")
        for i in invoices:
            self.assertBookedOnce(i, "invoice", "Invoice", "invoiceId")
        self.assertEqual(len(self.booked()), 160)
        # The turnover in QuickBooks is Mplus's, to the cent.
        mplus = sum(cents(d["totalInclAmount"]) for d in receipts + invoices) / 100
        self.assertEqual(sum(cents(d["TotalAmt"]) for d in self.booked()), mplus)
        for o in orders:
            reasons = [e["reason"] for e in evs if e["entity_id"] == o["orderId"]]
            self.assertEqual(set(reasons), {"order not complete", "part of sale %s" % o["orderId"]},
                             (o["orderId"], reasons))



class VatPaymentsAsTheAccountantReconciles(SalesTestCase):
    """VAT per rate, split payments and the rounding bound (a Dutch VAT company).

    Every figure is read back from QuickBooks' own state as the simulator
    keeps it (it works VAT out per line itself unless given tax lines), and
    compared with Mplus's own figures.
    """

    ACCOUNTS = {"CASH": "35", "PIN": "36"}

    def test_a_day_of_receipts_matches_mplus_per_vat_rate_and_per_payment_method(self):
        self.start_gateway(mplus_document_page_size=100)
        # Five lines cycling the catalogue (2 or 3 VAT rates a receipt, 3-decimal weights),
        # two of them without totalExclAmount, two with discounts; split, cash and card.
        lines = [{"omitExcl": True}, {"discountPercentage": 10}, {}, {"omitExcl": True, "discountAmount": 7}, {}]
        MPLUS.call("POST", "/_sim/till/sales", {"count": 120, "vary": True,
                                                "spec": {"kind": "split", "lines": lines}})
        MPLUS.call("POST", "/_sim/till/sales", {"count": 60, "vary": True, "spec": {"kind": "cash", "lines": lines}})
        MPLUS.call("POST", "/_sim/till/sales", {"count": 30, "vary": True, "spec": {"kind": "card"}})
        receipts = MPLUS.docs("receipt")
        self.assertEqual(len(receipts), 210)
        evs = self.sale_events("receipt", 210)
        self.assertEqual([(e["state"], e["last_error"]) for e in evs if e["state"] != "done"], [])
        # The day as Mplus has it: per VAT code net and VAT, per method what was paid.
        rate_counts, mplus_vat, mplus_paid, omitted = set(), {}, {}, 0
        for r in receipts:
            groups = r["vatGroupList"]["vatGroup"]
            rate_counts.add(len(groups))
            for g in groups:
                net, vat = mplus_vat.get(g["vatCode"], (0, 0))
                mplus_vat[g["vatCode"]] = (net + g["exclAmount"], vat + g["vatAmount"])
            for p in r["paymentList"]["payment"]:
                mplus_paid[p["method"]] = mplus_paid.get(p["method"], 0) + p["amount"]
            omitted += sum("totalExclAmount" not in l["data"] for l in r["lineList"]["line"])
        self.assertTrue({2, 3} <= rate_counts, "receipts with two and with three VAT rates")
        self.assertEqual(omitted, 360)
        # QuickBooks' VAT per rate: the tax lines of every sales document of the day.
        docs = self.docs_of("SalesReceipt") + self.docs_of("Invoice")
        self.assertEqual(len(docs), 210)
        qbo_vat = {}
        for d in docs:
            for t in d["TxnTaxDetail"]["TaxLine"]:
                rate = t["TaxLineDetail"]["TaxRateRef"]["value"]
                net, vat = qbo_vat.get(rate, (D(0), D(0)))
                qbo_vat[rate] = (net + cents(t["TaxLineDetail"]["NetAmountTaxable"]), vat + cents(t["Amount"]))
        self.assertEqual(qbo_vat, {TAX_RATES[TAX_CODES[code]][0]: (D(net) / 100, D(vat) / 100)
                                   for code, (net, vat) in mplus_vat.items()})
        # The lines themselves (nets derived where Mplus gave none) add up to each rate's net.
        line_net = {}
        for d in docs:
            for line in d["Line"]:
                detail = line.get("SalesItemLineDetail")
                if detail and detail["ItemRef"]["value"] != "900":
                    code = detail["TaxCodeRef"]["value"]
                    line_net[code] = line_net.get(code, D(0)) + cents(line["Amount"])
        self.assertEqual(line_net, {TAX_CODES[code]: D(net) / 100 for code, (net, vat) in mplus_vat.items()})
        # Each method's deposit account holds what Mplus says was paid with it.
        held = {}
        for d in self.docs_of("SalesReceipt") + self.docs_of("Payment"):
            account = d["DepositToAccountRef"]["value"]
            held[account] = held.get(account, D(0)) + cents(d["TotalAmt"])
        self.assertEqual(held, {self.ACCOUNTS[m]: D(v) / 100 for m, v in mplus_paid.items()})
        self.assertEqual(len(self.docs_of("Invoice")), 120)
        self.assertEqual([d["Id"] for d in self.docs_of("Invoice") if cents(d["Balance"]) != 0], [])
        # Every document's total is Mplus's; no rounding line is over the bound.
        by_note = {d["PrivateNote"]: d for d in docs}
        for r in receipts:
            d = by_note["Mplus receipt %s" % r["receiptId"]]
            self.assertEqual(cents(d["TotalAmt"]), D(r["totalInclAmount"]) / 100, d)
            bound = D(2 * len(r["vatGroupList"]["vatGroup"])) / 100
            for line in d["Line"]:
                if line.get("SalesItemLineDetail", {}).get("ItemRef", {}).get("value") == "900":
                    self.assertLessEqual(abs(cents(line["Amount"])), bound, d)
                    self.assertEqual(line["SalesItemLineDetail"]["TaxCodeRef"]["value"], "9", d)

    def test_without_tax_lines_quickbooks_own_vat_would_differ(self):
        """The simulator is a real check: a document sent without tax lines gets QuickBooks' per-line VAT."""
        self.start_gateway(map_sales_to_qbo=self.without_tax_lines())
        # Three lines of 0.06 at 9 %: Mplus's VAT is 0.00 a line, QuickBooks' own 0.01 a line.
        sale = MPLUS.sale(kind="cash", lines=[{"articleNumber": 1001, "quantity": "1", "price": 6}] * 3)["receipt"]
        self.sale_events("receipt", 1)
        d = self.docs_of("SalesReceipt")[0]
        self.assertNotEqual(cents(d["TxnTaxDetail"]["TotalTax"]),
                            sum(D(g["vatAmount"]) for g in sale["vatGroupList"]["vatGroup"]) / 100, d)

    def without_tax_lines(self):
        return self.mapping_then("no-tax-lines.jq", ".TxnTaxDetail = {TotalTax: .TxnTaxDetail.TotalTax}")

    def test_a_difference_over_the_rounding_bound_is_dead_and_made_nothing(self):
        sale = MPLUS.sale(kind="cash", customer=10002,
                          lines=[{"articleNumber": 1002, "quantity": "2"}, {"articleNumber": 2002, "quantity": "1"}])
        receipt = sale["receipt"]
        # Mplus's total is 10 cents more than its lines and VAT (two VAT groups: 4 cents allowed).
        MPLUS.call("POST", "/_sim/entity", {"kind": "receipt", "object": {
            "receiptId": receipt["receiptId"], "totalInclAmount": receipt["totalInclAmount"] + 10}})
        # Another 3 cents more (within the bound): a rounding line on the TaxCode without VAT.
        small = MPLUS.sale(kind="cash", lines=[{"articleNumber": 1001, "quantity": "2"},
                                               {"articleNumber": 2001, "quantity": "1"}])["receipt"]
        small = MPLUS.call("POST", "/_sim/entity", {"kind": "receipt", "object": {
            "receiptId": small["receiptId"], "totalInclAmount": small["totalInclAmount"] + 3}})
        self.start_gateway()
        evs = {e["entity_id"]: e for e in self.sale_events("receipt", 2)}
        self.assertEqual(evs[small["receiptId"]]["state"], "done", evs)
        booked = self.assertBookedOnce(small, "receipt", "SalesReceipt", "receiptId")
        rounding = [l for l in booked["Line"] if l.get("Description") == "Rounding"]
        self.assertEqual([(cents(l["Amount"]), l["SalesItemLineDetail"]["TaxCodeRef"]["value"]) for l in rounding],
                         [(D("0.03"), "9")], booked)
        e = evs[receipt["receiptId"]]
        self.assertEqual((e["state"], e["reason"]), ("dead", "cannot book"), e)
        self.assertIn("the difference of 10 cents is more than a rounding line may carry", e["last_error"])
        self.assertIn("sales_rounding_max_cents = 2 per VAT group, 2 group(s)", e["last_error"])
        # Refused before any lookup: no customer of its relation, no Item of its own, no document.
        self.assertEqual([c["DisplayName"] for c in self.docs_of("Customer")], ["Till sales"])
        self.assertEqual(sorted(i.get("Sku") for i in self.docs_of("Item")), ["1001", "2001", "ROUNDING"])
        self.assertEqual(list(self.by_note("SalesReceipt")), ["Mplus receipt %s" % small["receiptId"]])

    def test_a_split_receipt_in_clearing_mode_is_one_receipt_to_the_clearing_account(self):
        self.start_gateway(sales_split_payments="clearing", sales_split_account="40")
        sale = MPLUS.sale(kind="split", card_amount=500, lines=[{"articleNumber": 2001, "quantity": "1"}])["receipt"]
        self.sale_events("receipt", 1)
        d = self.assertBookedOnce(sale, "receipt", "SalesReceipt", "receiptId")
        self.assertEqual(d["DepositToAccountRef"]["value"], "40")
        self.assertEqual(self.docs_of("Payment"), [])
    def test_shipping_department_and_terms_on_every_invoice_of_a_relation(self):
        QBO.entity("Department", {"Id": "3", "Name": "Nederland"})
        QBO.entity("Department", {"Id": "4", "Name": "Winkel 2"})
        QBO.entity("Item", {"Id": "950", "Name": "Verzending PostNL", "Type": "Service"})
        # An invoice and a webshop order of relation 10003 (14 days to pay), the order sent by
        # PostNL with its delivery costs on a line of article 1002; till sales in branches 2
        # and 1, without an address.
        invoice = MPLUS.sale(document="invoice", customer=10003, payments=[],
                             lines=[{"articleNumber": 2001, "quantity": "1"}])["invoice"]
        order = MPLUS.sale(document="order", customer=10003, payments=[],
                           lines=[{"articleNumber": 2002, "quantity": "1"}, {"articleNumber": 1002, "quantity": "1"}])
        order = MPLUS.call("POST", "/_sim/entity", {"kind": "order", "object": {
            "orderId": order["order"]["orderId"], "deliveryMethod": "POSTNL"}})
        utrecht = MPLUS.sale(kind="cash", branchNumber=2, workplaceNumber=1,
                             lines=[{"articleNumber": 1001, "quantity": "1"}])["receipt"]
        amsterdam = MPLUS.sale(kind="cash", lines=[{"articleNumber": 1001, "quantity": "1"}])["receipt"]
        self.start_gateway(sales_order_state="created", sales_shipping_articles="1002",
                           sales_shipping_items="POSTNL:950", sales_department_by_country="Nederland:3",
                           sales_department_by_branch="2:4", sales_terms="14:7")
        evs = self.sale_events("invoice", 1) + self.sale_events("order", 1) + self.sale_events("receipt", 2)
        self.assertEqual([(e["state"], e["last_error"]) for e in evs if e["state"] != "done"], [])
        invoices = {d["PrivateNote"]: d for d in self.docs_of("Invoice")}
        # Both Invoices of the relation get its term, not only the first.
        d = invoices["Mplus invoice %s" % invoice["invoiceId"]]
        due = invoice["dueDate"]
        self.assertEqual((d["SalesTermRef"]["value"], d["DueDate"]),
                         ("7", "%04d-%02d-%02d" % (due["year"], due["mon"], due["day"])), d)
        self.assertEqual(d["DepartmentRef"]["value"], "3", d)   # the invoice address is in Nederland
        d = invoices["Mplus order %s" % order["orderId"]]
        self.assertEqual(d["SalesTermRef"]["value"], "7", d)
        self.assertEqual(d["ShipMethodRef"]["value"], "POSTNL", d)
        # The delivery article's line is booked on the method's Item, and no Item is made for it.
        self.assertEqual({l["Description"]: l["SalesItemLineDetail"]["ItemRef"]["value"] for l in d["Line"]
                          if "SalesItemLineDetail" in l}["Cappuccino"], "950", d)
        self.assertEqual(cents(d["TotalAmt"]), D(order["totalInclAmount"]) / 100)
        self.assertEqual([i for i in self.docs_of("Item") if i.get("Sku") == "1002"], [])
        receipts = {d["PrivateNote"]: d for d in self.docs_of("SalesReceipt")}
        self.assertEqual(receipts["Mplus receipt %s" % utrecht["receiptId"]]["DepartmentRef"]["value"], "4")
        self.assertNotIn("DepartmentRef", receipts["Mplus receipt %s" % amsterdam["receiptId"]])

if __name__ == "__main__":
    gwtest.main()
