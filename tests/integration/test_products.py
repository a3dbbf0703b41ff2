#!/usr/bin/python3
"""Products and stock flows end to end: the real daemon between both simulators.

Mplus articles -> QuickBooks Items, article groups -> Category items, Mplus
stock -> the Item's QtyOnHand (handlers/products.c, handlers/stock.c,
mapping/products-to-qbo.jq). Each test starts its own daemon with one
connection, shop1:

  - the MplusKASSA simulator holds its sample catalogue (articles 1001-4001,
    groups 1 with 11 and 12, 2, 3, 4, stock in branches 1 and 2) and, where a
    test seeds them, bulk variant articles ("Product N", sizes and colours);
    it is polled every second from marker 0;
  - the QuickBooks simulator checks Items as QuickBooks does: unique names
    (case-insensitive, categories included), at most 100 characters, the
    accounts an Inventory item needs, and ParentRef pointing at a Category.

    /usr/bin/python3 tests/integration/test_products.py build/test/gateway [unittest args]
"""

import collections
import decimal
import json
import os
import re
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gwtest  # noqa: E402
from gwtest import GatewayTestCase  # noqa: E402
from test_customers import QboSim, CONN, REALM, WEBHOOK_SECRET, MPLUS_IDENT, MPLUS_SECRET, \
    app_config  # noqa: E402
from test_sales import SalesMplus, TAX_CODES  # noqa: E402

D = decimal.Decimal
HOST = gwtest.HOST
FINAL = gwtest.FINAL
SAMPLE_ARTICLES = {"1001", "1002", "2001", "2002", "2003", "3001", "4001"}
SAMPLE_GROUPS = {"1", "11", "12", "2", "3", "4"}

QBO = None
MPLUS = None


def setUpModule():
    global QBO, MPLUS
    QBO, MPLUS = gwtest.start_simulators(QboSim, SalesMplus)


def tearDownModule():
    gwtest.close_simulators(QBO, MPLUS)


class ProductsTestCase(GatewayTestCase):
    maxDiff = None
    WAIT = 120.0

    def setUp(self):
        QBO.reset()
        QBO.config(rate_per_sec=1000, rate_per_min=100000, max_concurrent=100)
        MPLUS.reset()
        self.gw = None
        self.tmp = tempfile.mkdtemp(prefix="gwtest-products-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        for code in TAX_CODES.values():
            QBO.entity("TaxCode", {"Id": code, "Name": "BTW %s" % code, "Active": True})

    def start_gateway(self, flows="products", extra_storage=None, quickbooks=None, **keys):
        conf = {"mplus_url": "%s/" % MPLUS.base, "mplus_ident": MPLUS_IDENT,
                "mplus_secret": MPLUS_SECRET, "mplus_poll_interval_s": 1, "mplus_backfill": "true",
                "mplus_page_size": 250, "default_country": "NL",
                "sales_tax_codes": ", ".join("*/%d:%s" % kv for kv in TAX_CODES.items()),
                "products_income_accounts": "*:79", "products_expense_accounts": "*:80",
                "products_asset_accounts": "*:81"}
        conf.update(keys)
        conn = gwtest.connection(CONN, REALM, WEBHOOK_SECRET, flows=flows, **conf)

        def extra(gw):
            conf = app_config(gw, QBO, dict({"rate_per_sec": 1000, "rate_per_min": 100000,
                                             "batch_per_min": 100000}, **(quickbooks or {})),
                              {"retry_give_up_s": 20})
            if extra_storage:
                conf.setdefault("storage", {}).update(extra_storage)
            return conf
        gw = self.gateway(connections=[conn], extra=extra)
        self.gw = gw
        gw.cli("tokens", CONN, "--refresh-token", QBO.refresh_token())
        return gw

    # -- what the simulators hold --

    def items(self):
        return QBO.entities("Item")

    def by_sku(self):
        out = {}
        for i in self.items():
            if i.get("Sku"):
                out.setdefault(i["Sku"], []).append(i)
        return out

    def categories(self):
        return {i["Name"]: i for i in self.items() if i["Type"] == "Category"}

    def qbo_count(self, **filters):
        q = "&".join("%s=%s" % kv for kv in filters.items())
        return QBO.call("GET", "/_sim/requests/count?" + q)["count"]

    def item_writes(self, since=0):
        """The Item creates and updates the gateway sent (POST /item), from index since."""
        return [r for r in QBO.call("GET", "/_sim/requests?method=POST&path_contains=/item&since=%d"
                                    % since) if "/v3/company/" in r["path"]]

    def request_summary(self):
        """What the gateway asked of QuickBooks, counted by method and path or query text."""
        rows = QBO.call("GET", "/_sim/requests?path_contains=/v3/company/")
        def what(r):
            q = r.get("query", {}).get("query") if r["method"] == "GET" else None
            if r["path"].endswith("/query"):
                text = q if isinstance(q, str) else r.get("body")
                return "query " + re.sub(r"'[^']*'|\d+", "N", str(text))[:70]
            return "%s %s" % (r["method"], r["path"].rsplit("/", 1)[-1])
        return collections.Counter(what(r) for r in rows).most_common(12)

    def mark(self):
        return self.qbo_count()

    def change_article(self, product, article, **fields):
        fields["articleNumber"] = article
        return MPLUS.call("POST", "/_sim/entity", {"kind": "product", "object": {
            "productNumber": product, "articleList": [fields]}})

    def wait_articles(self, n, what=None):
        return self.wait_final(self.gw, n, what or "%d article events final" % n, entity="article")

    def wait_new_final(self, entity, before, what):
        """Wait for an event of entity with an id above before, and all such final."""
        def check():
            evs = [e for e in self.events_of(self.gw, entity=entity) if e["id"] > before]
            return evs if evs and all(e["state"] in FINAL for e in evs) else None
        return self.wait(check, what)

    def last_event_id(self):
        evs = self.gw.events()
        return max([e["id"] for e in evs] or [0])

    def assertAllOnce(self, skus):
        got = self.by_sku()
        twice = {s: len(v) for s, v in got.items() if len(v) > 1}
        self.assertEqual(twice, {}, "Items with the same SKU")
        self.assertEqual(set(skus) - set(got), set(), "articles without an Item")

    def seed_catalogue(self, n, per_product):
        """n bulk articles in Mplus: their SKUs and the sample catalogue's."""
        seeded = MPLUS.call("POST", "/_sim/seed", {"articles": n, "articles_per_product": per_product})
        return {str(seeded["first_article_number"] + j) for j in range(n)} | SAMPLE_ARTICLES

    def assertCatalogueDone(self, skus):
        """Every article's event done, and one Item per SKU, none more."""
        evs = self.wait_articles(len(skus))
        self.assertEqual([(e["entity_id"], e["state"], e["last_error"]) for e in evs
                          if e["state"] != "done"], [])
        self.assertAllOnce(skus)
        self.assertEqual(len(self.by_sku()), len(skus))


class Catalogue(ProductsTestCase):

    def test_a_catalogue_with_variants_and_groups_arrives_as_items_once(self):
        seeded = MPLUS.call("POST", "/_sim/seed", {"articles": 1000, "articles_per_product": 4})
        first_a, first_p = seeded["first_article_number"], seeded["first_product_number"]
        bulk = {str(first_a + j) for j in range(1000)}
        self.start_gateway()
        groups = self.wait_final(self.gw, len(SAMPLE_GROUPS), "the group events final",
                                 entity="article_group")
        evs = self.wait_articles(1007)
        self.assertEqual([(e["entity_id"], e["state"], e["last_error"]) for e in evs
                          if e["state"] != "done"], [])
        self.assertEqual([(e["entity_id"], e["state"]) for e in groups if e["state"] != "done"], [])
        self.assertAllOnce(bulk | SAMPLE_ARTICLES)

        # The group tree, parents first: 11 and 12 sit under 1.
        cats = self.categories()
        self.assertEqual(set(cats), {"Dranken", "Warme dranken", "Koude dranken", "Kleding",
                                     "Levensmiddelen", "Overig"})
        by_id = {c["Id"]: c for c in cats.values()}
        subs = [c for c in cats.values() if c.get("ParentRef")]
        self.assertEqual(len(subs), 2, subs)
        for c in subs:
            self.assertEqual(by_id[c["ParentRef"]["value"]]["ParentRef"] if "ParentRef" in
                             by_id[c["ParentRef"]["value"]] else None, None)
            self.assertTrue(c["FullyQualifiedName"].startswith(by_id[c["ParentRef"]["value"]]["Name"] + ":"))

        # Variants: "Product – Colour / Size", in their group's category, with the EAN.
        items = {s: v[0] for s, v in self.by_sku().items()}
        sizes = ("S", "M", "L", "XL")
        group_names = {11: "Dranken:Warme dranken", 12: "Dranken:Koude dranken", 2: "Kleding",
                       3: "Levensmiddelen", 4: "Overig"}
        for j in (0, 1, 3, 4, 997, 999):
            item = items[str(first_a + j)]
            product = first_p + j // 4
            self.assertEqual(item["Name"], "Product %d – Zwart / %s" % (product, sizes[j % 4]), item)
            self.assertEqual(item["Type"], "NonInventory")
            self.assertIn("EAN 2", item["Description"])
            self.assertIn("Product %d" % product, item["Description"])
            parent = by_id[item["ParentRef"]["value"]]
            self.assertEqual(parent["Type"], "Category")
            self.assertTrue(item["SubItem"])
            self.assertEqual(parent["FullyQualifiedName"], group_names[(11, 12, 2, 3, 4)[(j // 4) % 5]])
            self.assertEqual(item["FullyQualifiedName"], parent["FullyQualifiedName"] + ":" + item["Name"])
        # A simple article: its own description, its price incl. VAT, its tax code.
        koffie = items["1001"]
        self.assertEqual((koffie["Name"], D(str(koffie["UnitPrice"])), koffie["SalesTaxIncluded"]),
                         ("Koffie", D("2.50"), True))
        self.assertEqual(koffie["SalesTaxCodeRef"]["value"], TAX_CODES[1])
        self.assertEqual(koffie["IncomeAccountRef"]["value"], "79")
        self.assertEqual(koffie["ExpenseAccountRef"]["value"], "80")

        # The articles ran on the payloads the poller parsed, not on their stored
        # text parsed again (a page of 250 fits the dispatcher's room for them).
        offered = self.gw.metric("gateway_payloads_offered_total")
        reused = self.gw.metric("gateway_payloads_reused_total")
        self.assertGreaterEqual(offered, 1007)
        self.assertGreaterEqual(reused, 0.9 * 1007, "payloads offered %d, reused %d" % (offered, reused))

        # At most 1.1 QuickBooks requests per Item on the first sync (the index
        # of the company's Items, then one create each).
        item_requests = self.qbo_count(path_contains="/item") + self.qbo_count(
            path_contains="/query", statement_contains="from%20Item")
        self.assertLessEqual(item_requests, 1.1 * len(items), self.request_summary())

        # An article that Mplus reports again unchanged costs no request.
        before, last = self.mark(), self.last_event_id()
        self.change_article(first_p, first_a, description="Artikel %d" % first_a)
        e = self.wait_new_final("article", last, "the unchanged article's event")[0]
        self.assertEqual((e["state"], e["reason"]), ("skipped", "unchanged"), e)
        self.assertEqual(self.mark(), before)

    def test_show_tells_what_was_sent_and_answered(self):
        self.start_gateway()
        evs = {e["entity_id"]: e for e in self.wait_articles(7)}
        shown = self.gw.show(evs["1001"]["id"])
        calls = shown["history"][-1]["calls"]
        create = [c for c in calls if c["method"] == "POST" and c["path"] == "/item"]
        self.assertEqual(len(create), 1, calls)
        create = create[0]
        self.assertEqual((create["system"], create["status"], create["outcome"]),
                         ("quickbooks", 200, "ok"))
        sent = json.loads(create["request"])
        self.assertEqual((sent["Sku"], sent["Name"]), ("1001", "Koffie"))
        answered = json.loads(create["response"])
        item = self.by_sku()["1001"][0]
        self.assertEqual(answered["Item"]["Id"], item["Id"])
        # QuickBooks' own transaction id, as its log has it, for Intuit support.
        # (It went in a batch of new Items: the batch's.)
        logged = [r for r in QBO.call("GET", "/_sim/requests?method=POST&path_contains=/batch")
                  if any(i.get("Item", {}).get("Sku") == "1001" for i in r["body"]["BatchItemRequest"])]
        self.assertEqual(create["intuit_tid"], logged[0]["intuit_tid"])
        self.assertTrue(create["requestid"].startswith("ev%d-" % evs["1001"]["id"]), create)
        # No secret of either side in any event's record.
        for e in self.gw.events():
            text = json.dumps(self.gw.show(e["id"]))
            for secret in (MPLUS_SECRET, MPLUS_IDENT, "Bearer"):
                self.assertNotIn(secret, text, e["id"])

    def test_bodies_are_cut_at_activity_body_max(self):
        self.start_gateway(extra_storage={"activity_body_max": 100})
        evs = {e["entity_id"]: e for e in self.wait_articles(7)}
        calls = self.gw.show(evs["1001"]["id"])["history"][-1]["calls"]
        create = [c for c in calls if c["method"] == "POST" and c["path"] == "/item"][0]
        full = len(json.dumps(self.by_sku()["1001"][0], separators=(",", ":")))
        for body in (create["request"], create["response"]):
            m = re.match(r"^(.*)… \((\d+) bytes\)$", body, re.S)
            self.assertIsNotNone(m, body)
            self.assertLessEqual(len(m.group(1).encode()), 100, body)
            self.assertGreater(int(m.group(2)), 100)
        self.assertGreater(full, 100)

    def test_the_flow_hands_the_mapping_its_names_cleaned(self):
        """source.names: the product's and the article's names as gw_clean makes them, and
        the description's texts as gw_nonempty makes them, so the mapping need not clean
        them itself (it does only when they are missing)."""
        shipped = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "mapping",
                               "products-to-qbo.jq")
        path = os.path.join(self.tmp, "names.jq")
        with open(shipped) as f, open(path, "w") as out:
            out.write(". as $in | (\n%s\n) | .Description = ($in.source.names | tojson)\n" % f.read())
        self.start_gateway(map_products_to_qbo=path)
        self.wait_articles(7)
        for sku, items in self.by_sku().items():
            self.assertEqual(sorted(json.loads(items[0]["Description"]) or {}),
                             ["article", "barcode", "colour", "extra", "invoice", "product",
                              "size"], items)
        last = self.last_event_id()
        self.change_article(3, 2002, description=" T-shirt:  blauw ", colour="Rood\t",
                            size="\u00a0XL", extraText="\u2003Katoen: 100%\n",
                            invoiceText=" \u3000 ", barcode=" 8712345000102")
        e = self.wait_new_final("article", last, "the change's event")[0]
        self.assertEqual(e["state"], "done", e)
        names = json.loads(self.by_sku()["2002"][0]["Description"])
        self.assertEqual((names["article"], names["colour"], names["size"]),
                         ("T-shirt blauw", "Rood", "XL"), names)
        # Texts are trimmed only (a colon stays), and one of white space alone is none.
        self.assertEqual((names["extra"], names["invoice"], names["barcode"]),
                         ("Katoen: 100%", None, "8712345000102"), names)

    def test_a_price_change_updates_only_the_price(self):
        self.start_gateway()
        self.wait_articles(7)
        before_item = self.by_sku()["2002"][0]
        before, last = self.mark(), self.last_event_id()
        self.change_article(3, 2002, priceIncl=2195)
        e = self.wait_new_final("article", last, "the price change's event")[0]
        self.assertEqual(e["state"], "done", e)
        writes = self.item_writes(before)
        self.assertEqual(len(writes), 1, writes)
        body = writes[0]["body"]
        self.assertEqual(set(body), {"Id", "SyncToken", "sparse", "UnitPrice"}, body)
        self.assertEqual(D(str(body["UnitPrice"])), D("21.95"))
        after = self.by_sku()["2002"][0]
        self.assertEqual(D(str(after["UnitPrice"])), D("21.95"))
        for k in ("Name", "Description", "PurchaseCost", "ParentRef", "Sku"):
            self.assertEqual(after.get(k), before_item.get(k), k)

    def test_variants_in_a_category_of_their_product(self):
        seeded = MPLUS.call("POST", "/_sim/seed", {"articles": 40, "articles_per_product": 4})
        first_a, first_p = seeded["first_article_number"], seeded["first_product_number"]
        QBO.entity("Item", {"Name": "Product %d" % (first_p + 1), "Type": "Service"})  # a taken name
        self.start_gateway(products_variant_parent="category")
        evs = self.wait_articles(47)
        self.assertEqual([(e["entity_id"], e["state"], e["last_error"]) for e in evs
                          if e["state"] != "done"], [])
        self.assertAllOnce({str(first_a + j) for j in range(40)} | SAMPLE_ARTICLES)
        cats = self.categories()
        by_id = {c["Id"]: c for c in cats.values()}
        # One Category per product, made once though four variants needed it at once.
        creates = [w["body"]["Name"] for w in self.item_writes()
                   if w["body"].get("Type") == "Category" and w["body"]["Name"].startswith("Product ")]
        self.assertEqual(len(creates), len(set(creates)), creates)
        self.assertEqual(len([n for n in cats if n.startswith("Product ")]), 10, sorted(cats))
        self.assertIn("Product %d (product %d)" % (first_p + 1, first_p + 1), cats)
        items = {s: v[0] for s, v in self.by_sku().items()}
        for j in (0, 3, 4, 39):
            item = items[str(first_a + j)]
            parent = by_id[item["ParentRef"]["value"]]
            product = first_p + j // 4
            self.assertTrue(parent["Name"].startswith("Product %d" % product), (item, parent))
            self.assertEqual(parent["Type"], "Category")
            # The product's Category sits in its group's.
            self.assertEqual(by_id[parent["ParentRef"]["value"]]["Type"], "Category", parent)
            self.assertNotIn("\nProduct %d" % product, item["Description"])
        # The sample T-shirt's sizes are variants too; Koffie, no variant, sits in its group.
        self.assertEqual(by_id[items["2001"]["ParentRef"]["value"]]["Name"], "T-shirt logo")
        self.assertEqual(by_id[items["1001"]["ParentRef"]["value"]]["Name"], "Warme dranken")

    def test_a_create_only_field_enriched_in_qbo_survives_the_next_change(self):
        self.start_gateway(products_create_only="Description")
        self.wait_articles(7)
        item = self.by_sku()["1002"][0]
        enriched = "Dubbele espresso met opgeschuimde melk. Allergenen: melk."
        QBO.entity("Item", {"Id": item["Id"], "Description": enriched})
        last = self.last_event_id()
        self.change_article(2, 1002, description="Cappuccino groot", priceIncl=350)
        e = self.wait_new_final("article", last, "the article change's event")[0]
        self.assertEqual(e["state"], "done", e)
        after = self.by_sku()["1002"][0]
        self.assertEqual(after["Description"], enriched)
        self.assertEqual((after["Name"], D(str(after["UnitPrice"]))), ("Cappuccino groot", D("3.50")))

    def test_a_filter_keeps_an_excluded_group_out(self):
        # Products in group 2 (the T-shirts) stay out; nothing is asked of QuickBooks for them.
        self.start_gateway(products_exclude_groups="2")
        evs = {e["entity_id"]: e for e in self.wait_articles(7)}
        for sku in ("2001", "2002", "2003"):
            self.assertEqual((evs[sku]["state"], evs[sku]["reason"]),
                             ("skipped", "article group in products_exclude_groups"), evs[sku])
        self.assertEqual(set(self.by_sku()), SAMPLE_ARTICLES - {"2001", "2002", "2003"})
        # Nor does the group itself become a Category; the others do.
        groups = {e["entity_id"]: e for e in self.wait_final(self.gw, len(SAMPLE_GROUPS), "group events",
                                                             entity="article_group")}
        self.assertEqual((groups["2"]["state"], groups["2"]["reason"]),
                         ("skipped", "article group in products_exclude_groups"), groups["2"])
        self.assertNotIn("Kleding", self.categories())
        self.assertIn("Warme dranken", self.categories())

    def test_a_taken_name_gets_the_sku_and_a_long_one_is_cut_deterministically(self):
        QBO.entity("Item", {"Name": "Koffie", "Type": "Service"})
        QBO.entity("Item", {"Name": "Dranken", "Type": "Service"})
        long_name = "Oude kaas " + "extra belegen é " * 10   # 2-byte letters around the cut
        MPLUS.call("POST", "/_sim/entity", {"kind": "product", "object": {
            "productNumber": 4, "articleList": [{"articleNumber": 3001, "description": long_name}]}})
        long_group = "Levensmiddelen – " + "ééé " * 30
        MPLUS.call("POST", "/_sim/entity", {"kind": "article_group", "object": {"groupNumber": 3, "name": long_group}})
        self.start_gateway()
        evs = self.wait_articles(7)
        self.assertEqual([e["entity_id"] for e in evs if e["state"] != "done"], [])
        items = self.by_sku()
        self.assertEqual(items["1001"][0]["Name"], "Koffie (1001)")
        cheese = items["3001"][0]["Name"]
        self.assertEqual(len(cheese), 100)
        self.assertEqual(cheese, long_name[:100])
        groups = {e["entity_id"]: e for e in self.wait_final(self.gw, len(SAMPLE_GROUPS), "group events",
                                                             entity="article_group")}
        self.assertEqual(groups["3"]["state"], "done", groups["3"])
        self.assertIn(long_group[:100], self.categories())
        self.assertIn("Dranken (group 1)", self.categories())
        # A later change of the renamed article keeps its name: no second 6240, not dead.
        last = self.last_event_id()
        self.change_article(1, 1001, priceIncl=275)
        e = self.wait_new_final("article", last, "the renamed article's change")[0]
        self.assertEqual((e["state"], e["last_error"]), ("done", None), e)
        koffie = self.by_sku()["1001"][0]
        self.assertEqual((koffie["Name"], D(str(koffie["UnitPrice"]))), ("Koffie (1001)", D("2.75")))
        # Mplus renaming it to a name another Item holds: the SKU form of the new name.
        taken = self.by_sku()["1002"][0]["Name"]
        last = self.last_event_id()
        self.change_article(1, 1001, description=taken)
        e = self.wait_new_final("article", last, "the article renamed to a taken name")[0]
        self.assertEqual(e["state"], "done", e)
        self.assertEqual(self.by_sku()["1001"][0]["Name"], taken + " (1001)")


class Batch(ProductsTestCase):
    """batch_items > 1: new Items go to QuickBooks' batch endpoint together."""

    BATCH = {"batch_items": 30}  # the default, said here

    def batches(self):
        return [r for r in QBO.call("GET", "/_sim/requests?method=POST&path_contains=/batch")
                if "/v3/company/" in r["path"]]

    def test_a_catalogue_arrives_in_batches_once_with_taken_names_resolved(self):
        seeded = MPLUS.call("POST", "/_sim/seed", {"articles": 400, "articles_per_product": 4})
        skus = {str(seeded["first_article_number"] + j) for j in range(400)} | SAMPLE_ARTICLES
        QBO.entity("Item", {"Name": "Koffie", "Type": "Service"})
        self.start_gateway(quickbooks=self.BATCH)
        evs = self.wait_articles(407)
        self.assertEqual([(e["entity_id"], e["state"], e["last_error"]) for e in evs
                          if e["state"] != "done"], [])
        self.assertAllOnce(skus)
        items = self.by_sku()
        # The taken name failed in its batch alone, and came back with its SKU.
        self.assertEqual(items["1001"][0]["Name"], "Koffie (1001)")
        batches = self.batches()
        sizes = [len(b["body"]["BatchItemRequest"]) for b in batches]
        self.assertTrue(sizes and max(sizes) <= 30, sizes)
        self.assertGreaterEqual(sum(sizes), 400, "the creates went in batches")
        writes = len(batches) + len(self.item_writes())
        self.assertLessEqual(writes, 0.25 * len(items), self.request_summary())
        # Each event shows its own item's request and answer, not the whole batch's.
        sku = str(seeded["first_article_number"] + 7)
        ev = next(e for e in evs if e["entity_id"] == sku)
        calls = self.gw.show(ev["id"])["history"][-1]["calls"]
        create = [c for c in calls if c["method"] == "POST" and c["path"] == "/item"]
        self.assertEqual(len(create), 1, calls)
        self.assertEqual((create[0]["status"], create[0]["outcome"]), (200, "ok"))
        self.assertEqual(json.loads(create[0]["request"])["Sku"], sku)
        answered = json.loads(create[0]["response"])
        self.assertEqual(answered["Item"]["Id"], items[sku][0]["Id"])
        self.assertIn("bId", answered)

    def test_batch_requests_are_held_to_batch_per_min(self):
        skus = self.seed_catalogue(100, 4)
        limits = {"batch_items": 30, "batch_per_min": 1}
        self.start_gateway(quickbooks=limits)
        self.wait(lambda: len(self.batches()) >= 1 or None, "the first batch")
        time.sleep(3)
        self.assertEqual(len(self.batches()), 1, "one batch a minute")
        self.assertLess(len(self.by_sku()), len(skus) - 30)
        self.assertEqual([e for e in self.gw.events() if e["state"] == "dead"], [])
        # SIGTERM does not wait a minute for the next batch: what has not gone
        # out goes back to the queue, no attempt lost, and comes out after a restart.
        started = time.monotonic()
        self.gw.stop()
        self.assertLess(time.monotonic() - started, 10)
        limits["batch_per_min"] = 100000
        self.gw.start()
        self.assertCatalogueDone(skus)
        self.assertLess(time.monotonic() - started, 30, "the events not sent were due again at once")

    def test_a_failed_batch_comes_back_and_makes_no_item_twice(self):
        skus = self.seed_catalogue(200, 4)
        QBO.fault("500", count=2, path_contains="/batch")
        self.start_gateway(quickbooks=self.BATCH)
        self.assertCatalogueDone(skus)

    def test_an_item_quickbooks_fails_in_a_batch_is_tried_again_alone(self):
        skus = self.seed_catalogue(100, 4)
        QBO.fault("batch_item", count=3, path_contains="/batch")
        self.start_gateway(quickbooks=self.BATCH)
        self.assertCatalogueDone(skus)
        # The three (articles' or groups') events whose item failed tried again, and are done.
        failed = [e for e in self.gw.events() if "SystemFault" in json.dumps(self.gw.show(e["id"]))]
        self.assertEqual(len(failed), 3, failed)
        self.assertEqual([(e["state"], e["attempts"]) for e in failed], [("done", 2)] * 3)

    def test_a_batch_whose_answer_is_lost_makes_no_item_twice(self):
        skus = self.seed_catalogue(200, 4)
        QBO.fault("lost", count=2, path_contains="/batch")
        # Without categories, so the lost batches are Items' (the first could be groups' else).
        self.start_gateway(quickbooks=self.BATCH, products_categories="false")
        self.assertCatalogueDone(skus)
        lost = [r for r in self.batches() if r.get("fault") == "lost"]
        self.assertEqual(len(lost), 2)
        made = {i["Item"]["Sku"] for r in lost for i in r["body"]["BatchItemRequest"] if "Sku" in i["Item"]}
        self.assertTrue(made & skus, "the lost batches made Items")

    def test_sigkill_mid_batches_then_restart_makes_no_item_twice(self):
        skus = self.seed_catalogue(600, 3)
        QBO.fault("slow", count=100000, path_contains="/batch", delay_ms=300)
        gw = self.start_gateway(quickbooks=self.BATCH)
        self.wait(lambda: len(self.by_sku()) >= 100, "100 Items made")
        gw.kill()
        self.assertLess(len(self.by_sku()), len(skus))
        QBO.call("POST", "/_sim/faults/clear", {})
        gw.start()
        self.assertCatalogueDone(skus)


class SigKill(ProductsTestCase):

    def test_sigkill_mid_catalogue_then_restart_makes_no_item_twice(self):
        skus = self.seed_catalogue(1000, 3)
        QBO.fault("slow", count=100000, path_contains="/item", delay_ms=30)
        gw = self.start_gateway()
        self.wait(lambda: len(self.by_sku()) >= 150, "150 Items made")
        gw.kill()
        made = len(self.by_sku())
        self.assertLess(made, len(skus))
        QBO.call("POST", "/_sim/faults/clear", {})
        gw.start()
        self.assertCatalogueDone(skus)


class Stock(ProductsTestCase):

    def stock(self, **row):
        return MPLUS.call("POST", "/_sim/entity", {"kind": "stock", "object": row})

    def qty(self, sku):
        return D(str(self.by_sku()[sku][0]["QtyOnHand"]))

    def test_stock_of_a_till_sale_reaches_qty_on_hand_exactly(self):
        # Free stock summed over branches 1 and 2: amountFree - amountReserved.
        self.stock(branchNumber=1, articleNumber=3001, amount="12.500", amountReserved="0.250")
        self.stock(branchNumber=2, articleNumber=3001, amount="3.125")
        self.start_gateway(flows="products, stock", products_track_stock="true",
                           products_inventory_start="2026-01-01", stock_branches="1, 2")
        self.wait_articles(7)
        cheese = self.by_sku()["3001"][0]
        self.assertEqual((cheese["Type"], cheese["TrackQtyOnHand"]), ("Inventory", True))
        self.assertEqual(cheese["AssetAccountRef"]["value"], "81")
        self.wait(lambda: self.qty("3001") == D("15.375"), "QtyOnHand 12.500 - 0.250 + 3.125")
        # The event's activity: what Mplus was asked and said, what QuickBooks was sent.
        booked = [e for e in self.events_of(self.gw, entity="stock") if e["state"] == "done"
                  and e["entity_id"].endswith("/3001")][0]
        calls = self.gw.show(booked["id"])["history"][-1]["calls"]
        read = [c for c in calls if c["system"] == "mplus"][0]
        self.assertEqual((read["operation"], read["outcome"]), ("getStock", "ok"), read)
        self.assertTrue(read["request_id"].startswith("gw-"), read)
        self.assertEqual(json.loads(read["request"])["articleNumbers"], [3001], read)
        self.assertIn("3.125", read["response"])
        write = [c for c in calls if c["system"] == "quickbooks" and c["method"] == "POST"][-1]
        self.assertEqual((write["path"], write["status"]), ("/item (sparse update)", 200), write)
        self.assertEqual(json.loads(write["request"])["QtyOnHand"], 15.375)
        # A till sale of 1.234 kg in branch 1.
        MPLUS.sale(kind="cash", branchNumber=1, lines=[{"articleNumber": 3001, "quantity": "1.234"}])
        self.wait(lambda: self.qty("3001") == D("14.141"), "QtyOnHand after the sale")
        # Articles that are no stock articles are NonInventory; their stock events say so.
        self.assertEqual(self.by_sku()["1001"][0]["Type"], "NonInventory")

    def test_free_plus_incoming_in_one_branch(self):
        self.stock(branchNumber=1, articleNumber=2002, amount="30", amountReserved="4",
                   amountIncoming="12.5")
        self.stock(branchNumber=2, articleNumber=2002, amount="100")
        self.start_gateway(flows="products, stock", products_track_stock="true",
                           stock_amount="free_incoming")
        self.wait_articles(7)
        self.wait(lambda: self.qty("2002") == D("38.5"), "QtyOnHand 30 - 4 + 12.5 (branch 1 only)")

    def mplus_free(self, article, branches=(1,)):
        """Mplus's free stock of an article over branches (amountFree - amountReserved), exact."""
        total = D(0)
        for row in MPLUS.call("GET", "/_sim/entities?kind=stock"):
            if row["articleNumber"] == article and row["branchNumber"] in branches:
                for key, places, sign in (("amountFree", "decimalPlacesFree", 1),
                                          ("amountReserved", "decimalPlacesReserved", -1)):
                    if row.get(key) is not None:
                        total += sign * D(row[key]).scaleb(-row.get(places, 0))
        return total

    def test_a_burst_of_changes_books_the_latest_quantity(self):
        self.start_gateway(flows="products, stock", products_track_stock="true")
        self.wait_articles(7)
        self.wait(lambda: self.qty("2001") == D("25"), "the first quantity")
        before = self.mark()
        # QuickBooks takes 3 s per Item write while the till changes the stock
        # 50 times in 5 s (about six polls): the events queue behind the slow
        # write, and the one that runs next reads the stock as it is by then.
        QBO.fault("slow", count=1000, path_contains="/item", delay_ms=3000)
        for n in range(50):
            self.stock(branchNumber=1, articleNumber=2001, amount=str(40 + n))
            time.sleep(0.1)
        self.wait(lambda: self.qty("2001") == D("89"), "the latest quantity")
        self.wait_final(self.gw, 1, "the stock events final", entity="stock")
        QBO.call("POST", "/_sim/faults/clear", {})
        writes = [D(str(w["body"]["QtyOnHand"])) for w in self.item_writes(before)
                  if "QtyOnHand" in w["body"]]
        self.assertLess(len(writes), 8, writes)
        # In order, never an older quantity after a newer one; the last is the latest.
        self.assertEqual(writes, sorted(set(writes)), writes)
        self.assertEqual(writes[-1], D("89"))
        evs = self.events_of(self.gw, entity="stock", entity_id="1/2001")
        superseded = [e for e in evs if e["reason"] == "superseded"]
        self.assertGreater(len(superseded), 0, [(e["state"], e["reason"]) for e in evs])
        self.assertEqual({e["state"] for e in evs} - {"done", "skipped"}, set())

    def test_sales_and_stock_together_subtract_each_sale_once(self):
        # QuickBooks lowers an Inventory Item's quantity by each SalesReceipt of it,
        # and Mplus's stock already counts the sale: a day of sales of the shirts
        # and the cheese (some refunded) ends with QuickBooks' quantities equal to
        # Mplus's, whichever of a sale and its stock change is booked first.
        QBO.entity("Item", {"Id": "900", "Name": "Afronding", "Sku": "ROUNDING", "Type": "Service"})
        self.start_gateway(flows="products, stock, sales", products_track_stock="true",
                           products_inventory_start="2026-01-01", sales_rounding_item="900",
                           mplus_document_page_size=20)
        self.wait_articles(7)
        stocked = (2001, 2002, 2003, 3001)
        for a in stocked:
            self.wait(lambda: self.qty(str(a)) == self.mplus_free(a), "article %d's first quantity" % a)
        lines = [{"articleNumber": 2001, "quantity": "1"}, {"articleNumber": 3001, "quantity": "0.375"},
                 {"articleNumber": 2002, "quantity": "2"}, {"articleNumber": 1001, "quantity": "1"}]
        sold = []
        for i in range(40):
            sold.append(MPLUS.sale(kind="cash", lines=lines[i % 3:i % 3 + 2])["receipt"])
            if i % 10 == 9:
                MPLUS.sale(kind="credit", credits=sold[-1]["receiptId"])
        self.wait_final(self.gw, 44, "the receipts booked", entity="receipt")
        self.wait_final(self.gw, 1, "the stock events final", entity="stock")
        for a in stocked:
            self.wait(lambda: self.qty(str(a)) == self.mplus_free(a),
                      "article %d: QuickBooks %s, Mplus %s" % (a, self.qty(str(a)), self.mplus_free(a)))
        self.assertEqual(self.mplus_free(2001), D(25 - 14 + 2))
        # Without the refresh after each sale, QuickBooks' own subtraction would count twice.
        self.assertEqual(len(QBO.entities("SalesReceipt")), 40)

    def test_sigkill_in_a_burst_then_restart_ends_at_mplus_quantities(self):
        gw = self.start_gateway(flows="products, stock", products_track_stock="true")
        self.wait_articles(7)
        self.wait(lambda: self.qty("2003") == D("20"), "the first quantity")
        QBO.fault("slow", count=1000, path_contains="/item", delay_ms=500)
        for n in range(30):
            self.stock(branchNumber=1, articleNumber=2003, amount=str(60 + n))
            self.stock(branchNumber=1, articleNumber=2002, amount="%d.5" % (10 + n))
            time.sleep(0.05)
        time.sleep(1.5)
        gw.kill()
        QBO.call("POST", "/_sim/faults/clear", {})
        gw.start()
        self.wait(lambda: self.qty("2003") == D("89") and self.qty("2002") == D("39.5"), "the latest quantities")
        self.wait_final(self.gw, 1, "the stock events final", entity="stock")
        evs = self.events_of(self.gw, entity="stock")
        self.assertEqual({e["state"] for e in evs} - {"done", "skipped"}, set(),
                         [(e["state"], e["last_error"]) for e in evs])

    def test_without_tracked_stock_stock_events_are_skipped_saying_why(self):
        self.start_gateway(flows="products, stock")
        self.wait_articles(7)
        evs = self.wait_final(self.gw, 1, "a stock event final", entity="stock")
        self.assertEqual({(e["state"], e["reason"]) for e in evs},
                         {("skipped", "QuickBooks does not keep stock (products_track_stock = false)")})
        self.assertEqual([w["body"] for w in self.item_writes() if "QtyOnHand" in w["body"]], [])

    def test_stock_of_an_unknown_item_waits_and_never_makes_a_bare_item(self):
        # The stock flow alone: the article has no Item, so its stock event waits.
        self.start_gateway(flows="stock", products_track_stock="true")
        # A wait leaves the event retrying with what it waits for as its last error.
        evs = self.wait(lambda: [e for e in self.events_of(self.gw, entity="stock")
                                 if e["state"] == "retrying" and "no QuickBooks Item has SKU"
                                 in (e["last_error"] or "")], "a stock event waiting")
        self.assertEqual({e["state"] for e in self.events_of(self.gw, entity="stock")} & {"done"}, set())
        self.assertEqual(self.by_sku(), {})
        self.assertEqual(self.item_writes(), [])


class SalesNeedItems(ProductsTestCase):

    def test_the_sales_flow_makes_a_missing_item_through_the_products_flow(self):
        seeded = MPLUS.call("POST", "/_sim/seed", {"articles": 40, "articles_per_product": 4})
        first = seeded["first_article_number"]
        # Each receipt shares an article with the next, so receipts need Items at once too.
        for j in range(0, 40, 2):
            MPLUS.sale(kind="cash", lines=[{"articleNumber": first + j, "quantity": "1"},
                                           {"articleNumber": first + j + 1, "quantity": "2"},
                                           {"articleNumber": first + (j + 2) % 40, "quantity": "1"}])
        QBO.entity("Account", {"Id": "79", "Name": "Omzet", "AccountType": "Income"})
        QBO.entity("Item", {"Id": "900", "Name": "Afronding", "Sku": "ROUNDING", "Type": "Service"})
        # Every Item create takes a second, so the receipts need Items that the
        # article events are still making (and the other way round).
        QBO.fault("slow", count=1000, path_contains="/item", delay_ms=1000)
        self.start_gateway(flows="sales, products", sales_payment_methods="CASH:1",
                           sales_deposit_accounts="CASH:35", sales_rounding_item="900",
                           sales_create_items="false")
        receipts = self.wait_final(self.gw, 20, "the receipts final", entity="receipt")
        self.assertEqual([(e["entity_id"], e["last_error"]) for e in receipts if e["state"] != "done"], [])
        QBO.call("POST", "/_sim/faults/clear", {})
        shown = [self.gw.show(e["id"]) for e in receipts + self.events_of(self.gw, entity="article")]
        waited = [s for e in shown for h in e.get("history", []) for s in h.get("steps", [])
                  if s.startswith("waits for article ")]
        self.assertNotEqual(waited, [], "no event waited for an Item another was making: %r" % shown[:3])
        self.wait_articles(47)
        skus = {str(first + j) for j in range(40)}
        self.assertAllOnce(skus)
        items = self.by_sku()
        # Made by the products mapping (variant name, description with EAN), not from a line.
        for s in skus:
            self.assertRegex(items[s][0]["Name"], r"^Product \d+ – Zwart / (S|M|L|XL)$")
            self.assertIn("EAN", items[s][0]["Description"])


class Back(ProductsTestCase):
    """QuickBooks -> Mplus for Items: products_direction = both."""

    def start_back(self, **keys):
        gw = self.start_gateway(**keys)
        QBO.config(webhook_url="http://%s:%d/webhooks/quickbooks" % (HOST, gw.port))
        self.wait_articles(7)
        return gw

    def article(self, number):
        for p in MPLUS.docs("product"):
            for a in p["articleList"]["article"]:
                if a["articleNumber"] == number:
                    return a
        return None

    def article_lookups(self, since):
        """getProducts asked for single articles (the way back; polls ask by marker)."""
        return [r for r in MPLUS.requests("getProducts", since) if "syncMarker" not in (r["params"] or {})]

    def steps(self, e):
        return [s for h in self.gw.show(e["id"]).get("history", []) for s in h.get("steps", [])]

    def new_events(self, entity, before, n, what):
        """Wait for n events of entity above id before, all final; oldest first."""
        def check():
            evs = [e for e in self.events_of(self.gw, entity=entity) if e["id"] > before]
            return evs if len(evs) >= n and all(e["state"] in FINAL for e in evs) else None
        return sorted(self.wait(check, what), key=lambda e: e["id"])

    def quiet(self):
        """Two more article polls, every webhook delivered and every event final: what a
        change set going has come back by then."""
        mark = MPLUS.mark()
        self.wait(lambda: len([r for r in MPLUS.requests("getProducts", mark)
                               if "syncMarker" in (r["params"] or {})]) >= 2, "two article polls")
        self.wait(lambda: all(w["delivered"] for w in QBO.webhooks())
                  and all(e["state"] in FINAL for e in self.gw.events()), "webhooks delivered, events final")

    def test_an_item_edited_in_quickbooks_updates_its_article_once(self):
        self.start_back(products_direction="both")
        ids = {s: v[0]["Id"] for s, v in self.by_sku().items()}

        # A new article: its Item's Create webhook is known as the gateway's own, unread.
        last, qmark = self.last_event_id(), self.mark()
        self.change_article(6, 5001, description="Thee", priceIncl=225, turnoverGroup=1, vatCode=1)
        made = self.new_events("Item", last, 1, "the new Item's webhook")
        self.assertEqual([(e["state"], e["reason"]) for e in made], [("skipped", "echo")], made)
        item = self.by_sku()["5001"][0]
        self.assertEqual([r for r in QBO.call("GET", "/_sim/requests?method=GET&since=%d" % qmark)
                          if r["path"].endswith("/item/" + item["Id"])], [])

        # Mplus changes a price: the Item's update comes back as a webhook, and goes no further.
        last, mmark = self.last_event_id(), MPLUS.mark()
        self.change_article(2, 1002, priceIncl=345)
        echo = self.new_events("Item", last, 1, "the webhook of the gateway's own update")
        self.assertEqual({(e["state"], e["reason"]) for e in echo} - {("skipped", "echo"), ("skipped", "unchanged")},
                         set(), echo)
        self.quiet()
        self.assertEqual(MPLUS.requests("updateProduct", mmark), [])

        # The accountant renames Koffie and changes its price.
        last, mmark, qmark = self.last_event_id(), MPLUS.mark(), self.mark()
        QBO.entity("Item", {"Id": ids["1001"], "UnitPrice": 2.75, "Name": "Koffie zwart"})
        e = self.new_events("Item", last, 1, "the edit's webhook")[0]
        self.assertEqual((e["state"], e["entity_id"]), ("done", ids["1001"]), e)
        self.assertIn("updated article 1001: priceIncl, description", self.steps(e))
        [write] = MPLUS.requests("updateProduct", mmark)
        self.assertEqual((write["validated"], write["result"]), ("ok", "UPDATE-PRODUCT-RESULT-OK"), write)
        a = self.article(1001)
        self.assertEqual((a["priceIncl"], a["description"], a["barcode"], a["purchasePrice"]),
                         (275, "Koffie zwart", "8712345000012", 40), a)
        # The article's change comes back by the poll: the Item holds its name and price
        # already; the texts the products mapping makes of the article's description follow.
        back = self.new_events("article", last, 1, "the article change's poll")[0]
        self.assertEqual(back["state"], "done", back)
        self.quiet()
        [w] = self.item_writes(qmark)
        self.assertEqual(w["body"], {"Id": ids["1001"], "SyncToken": w["body"]["SyncToken"], "sparse": True,
                                     "Description": "Koffie zwart\nEAN 8712345000012",
                                     "PurchaseDesc": "Koffie zwart"})
        # That write's webhook goes no further: one edit, one write each way, and quiet after.
        evs = [e for e in self.events_of(self.gw, entity="Item") if e["id"] > back["id"]]
        self.assertEqual({e["state"] for e in evs}, {"skipped"}, evs)
        self.assertEqual(len(MPLUS.requests("updateProduct", mmark)), 1)
        self.assertEqual(len([e for e in self.events_of(self.gw, entity="article") if e["id"] > last]), 1)

        # A new text: into the article's own text, without the EAN line the gateway adds.
        last, mmark, qmark = self.last_event_id(), MPLUS.mark(), self.mark()
        QBO.entity("Item", {"Id": ids["1001"],
                            "Description": "Verse bonen, vers gemalen\nEAN 8712345000012"})
        e = self.new_events("Item", last, 1, "the text edit's webhook")[0]
        self.assertEqual(e["state"], "done", e)
        a = self.article(1001)
        self.assertEqual((a.get("extraText"), a["description"], a["priceIncl"]),
                         ("Verse bonen, vers gemalen", "Koffie zwart", 275), a)
        back = self.new_events("article", last, 1, "the article change's poll")[0]
        self.assertEqual((back["state"], back["reason"]), ("skipped", "unchanged"), back)
        self.quiet()
        self.assertEqual(self.item_writes(qmark), [])
        self.assertEqual(len(MPLUS.requests("updateProduct", mmark)), 1)

        # A field that does not go back: skipped without asking Mplus anything.
        last, mmark = self.last_event_id(), MPLUS.mark()
        QBO.entity("Account", {"Id": "82", "Name": "Omzet koffie", "AccountType": "Income"})
        QBO.entity("Item", {"Id": ids["1001"], "IncomeAccountRef": {"value": "82"}})
        e = self.new_events("Item", last, 1, "the account edit's webhook")[0]
        self.assertEqual((e["state"], e["reason"]), ("skipped", "echo"), e)
        self.assertEqual(self.article_lookups(mmark), [])
        self.assertEqual(MPLUS.requests("updateProduct", mmark), [])
        self.assertEqual(self.by_sku()["1001"][0]["IncomeAccountRef"]["value"], "82")

        # Someone in Mplus sets the old price again: it goes to QuickBooks, though it is
        # what the gateway wrote to the Item before the accountant's edit.
        last, qmark = self.last_event_id(), self.mark()
        self.change_article(1, 1001, priceIncl=250)
        back = self.new_events("article", last, 1, "the price change's event")[0]
        self.assertEqual(back["state"], "done", back)
        # (The account edit made the gateway's SyncToken stale: a 400, then the same again.)
        writes = self.item_writes(qmark)
        self.assertEqual([w["status"] for w in writes][-1:], [200], writes)
        self.assertEqual({k for w in writes for k in w["body"]}, {"Id", "SyncToken", "sparse", "UnitPrice"},
                         writes)
        self.assertEqual(D(str(self.by_sku()["1001"][0]["UnitPrice"])), D("2.50"))

    def test_an_edit_in_quickbooks_never_undoes_a_change_mplus_has_not_delivered_yet(self):
        self.start_back(products_direction="both")
        ids = {s: v[0]["Id"] for s, v in self.by_sku().items()}
        # Mplus raises Cappuccino's price; QuickBooks refuses the update for a while.
        QBO.fault("500", count=3, path_contains="/item?")
        last, mmark = self.last_event_id(), MPLUS.mark()
        self.change_article(2, 1002, priceIncl=345)

        def failed_once():
            evs = [e for e in self.events_of(self.gw, entity="article") if e["id"] > last]
            return evs if evs and evs[0]["attempts"] >= 1 and evs[0]["state"] == "retrying" else None
        [pending] = self.wait(failed_once, "the price update refused once")
        # Meanwhile the accountant renames the Item, whose price is still the old one.
        QBO.entity("Item", {"Id": ids["1002"], "Name": "Cappuccino groot"})
        e = self.new_events("Item", pending["id"], 1, "the rename's webhook")[0]
        self.assertEqual(e["state"], "done", e)
        self.assertIn("updated article 1002: description", self.steps(e))
        a = self.article(1002)
        self.assertEqual((a["description"], a["priceIncl"]), ("Cappuccino groot", 345), a)
        # The price reaches QuickBooks once it takes updates again.
        self.wait(lambda: self.gw.show(pending["id"])["state"] in FINAL, "the price update final")
        self.quiet()
        item = self.by_sku()["1002"][0]
        self.assertEqual((item["Name"], D(str(item["UnitPrice"]))), ("Cappuccino groot", D("3.45")), item)
        self.assertEqual(self.article(1002)["priceIncl"], 345)
        self.assertEqual(len(MPLUS.requests("updateProduct", mmark)), 1)

    def test_items_that_are_no_linked_article_are_never_pushed(self):
        # Postzegel (article 4001, group 4) is left out of the products flow.
        self.start_back(products_direction="both", products_exclude_groups="4")
        last, mmark = self.last_event_id(), MPLUS.mark()
        QBO.entity("Item", {"Name": "Cadeaubon", "Sku": "GIFT-25", "Type": "Service", "UnitPrice": 25})
        QBO.entity("Item", {"Name": "Statiegeld", "Sku": "0042", "Type": "Service", "UnitPrice": 0.15})
        QBO.entity("Item", {"Name": "Zonder SKU", "Type": "Service"})
        QBO.entity("Item", {"Name": "Postzegels", "Sku": "4001", "Type": "Service", "UnitPrice": 1})
        QBO.entity("Item", {"Name": "Koffie (oud)", "Sku": "1001", "Type": "Service", "UnitPrice": 1})
        evs = self.new_events("Item", last, 5, "the five new Items' webhooks")
        self.assertEqual([(e["state"], e["reason"]) for e in evs],
                         [("skipped", "SKU not numeric"), ("skipped", "SKU not numeric"),
                          ("skipped", "no SKU"), ("skipped", "not linked"),
                          ("skipped", "not the article's Item")], evs)
        self.assertEqual(MPLUS.requests("updateProduct", mmark), [])
        self.assertEqual(MPLUS.requests("createProduct", mmark), [])
        self.assertEqual(self.article_lookups(mmark), [])

    def cdc_entities(self):
        """The entities each CDC sweep of the gateway asked QuickBooks for."""
        return [sorted(r["query"]["entities"].split(","))
                for r in QBO.call("GET", "/_sim/requests?method=GET&path_contains=/cdc")]

    def test_cdc_brings_an_item_edit_no_webhook_told_of(self):
        # No webhooks: only the CDC sweeps tell the gateway of changes in QuickBooks.
        self.start_gateway(products_direction="both", quickbooks={"cdc_interval_s": 1})
        self.wait_articles(7)
        # The first sweep only notes where the next starts: changes from then on.
        self.wait(self.cdc_entities, "a CDC request")
        ids = {s: v[0]["Id"] for s, v in self.by_sku().items()}
        mmark = MPLUS.mark()
        QBO.entity("Item", {"Id": ids["1001"], "UnitPrice": 2.95})

        def edited():
            evs = [e for e in self.events_of(self.gw, entity="Item", entity_id=ids["1001"])
                   if e["state"] == "done"]
            return evs or None
        [e] = self.wait(edited, "the edit, found by a CDC sweep")
        self.assertEqual(e["source"], "qbo-cdc", e)
        self.assertEqual(self.article(1001)["priceIncl"], 295)
        self.assertEqual(len(MPLUS.requests("updateProduct", mmark)), 1)
        self.assertIn("Item", self.cdc_entities()[-1])

    def test_cdc_leaves_items_out_while_they_do_not_go_back(self):
        self.start_gateway(flows="products, customers", quickbooks={"cdc_interval_s": 1})
        self.wait_articles(7)
        self.wait(lambda: len(self.cdc_entities()) >= 2, "two CDC sweeps")
        self.assertEqual({tuple(e) for e in self.cdc_entities()}, {("Customer",)})

    def test_off_by_default_an_item_edit_finds_no_flow(self):
        self.start_back()
        ids = {s: v[0]["Id"] for s, v in self.by_sku().items()}
        last, mmark = self.last_event_id(), MPLUS.mark()
        QBO.entity("Item", {"Id": ids["1001"], "UnitPrice": 9.99})
        e = self.new_events("Item", last, 1, "the edit's webhook")[0]
        self.assertEqual((e["state"], e["reason"]), ("skipped", "no flow"), e)
        self.assertEqual(MPLUS.requests("updateProduct", mmark), [])
        self.assertEqual(self.article(1001)["priceIncl"], 250)


if __name__ == "__main__":
    gwtest.main()
