#!/usr/bin/python3
"""Customers flow end to end: the real daemon between both simulators.

Mplus relation <-> QuickBooks Customer (handlers/customers.c, mapping/*.jq),
the acceptance tests of issue 5. Each test starts its own daemon (the real
`gateway`, not gateway-testflows) with one connection, shop1:

  - the MplusKASSA simulator (tests/sim/mplus_sim.py, started --empty) is
    polled for relations every second from marker 0 (mplus_backfill), so a
    relation made "in the back office" through its control API becomes an
    event within a second or two;
  - the QuickBooks simulator (tests/sim/qbo_sim.py) sends a signed webhook
    for every change, the gateway's own writes included, to the daemon. It
    sends it at once, so the webhook of the gateway's own create or update
    often arrives before the gateway has stored that write's outcome (and
    the id map): the echo tests cover that order too;
  - [dispatch] retries fast (1 s, at most 2 s); CDC sweeps are off.

Both simulators serve the whole run and are reset before every test.
Outcomes are read back through the CLI (events/show --json) and checked
against the simulators' data and request logs. Every wait is a poll with a
deadline; "nothing more happens" is proved by waiting for further relation
polls (getRelations in the Mplus log) and webhook deliveries, not by sleeping.

    /usr/bin/python3 tests/integration/test_customers.py build/cust/gateway [unittest args]

The Mplus simulator needs lxml: run it with Debian's /usr/bin/python3.
"""

import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gwtest  # noqa: E402
from gwtest import GatewayTestCase  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SIM_DIR = os.path.normpath(os.path.join(HERE, "..", "sim"))
HOST = gwtest.HOST
# The Mplus simulator needs Debian's lxml.
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

REALM = "9130350021374756"
CLIENT_ID = "gwtest-client-id"
CLIENT_SECRET = "gwtest-client-secret"
MPLUS_IDENT = "gwtest-ident"
MPLUS_SECRET = "gwtest-mplus-api-secret"
WEBHOOK_SECRET = "shop1-mplus-webhook-secret"
CONN = "shop1"
FINAL = gwtest.FINAL
MPLUS_WRITES = ("createRelation", "updateRelation")


# ---- the simulators ----------------------------------------------------------------


class QboSim(gwtest.QboSim):
    """The QuickBooks Online simulator, with what the customer tests look at."""

    def __init__(self):
        super().__init__(REALM, CLIENT_ID, CLIENT_SECRET)

    def customers(self):
        return self.entities("Customer")

    def customer(self, cid):
        found = [c for c in self.customers() if c["Id"] == str(cid)]
        return found[0] if found else None

    def mark(self):
        return len(self.requests())

    def webhooks(self):
        return self.call("GET", "/_sim/webhooks")


class MplusSim(gwtest.SimProcess):
    """tests/sim/mplus_sim.py (an empty administration) and its control API."""

    def __init__(self):
        super().__init__("mplus_sim", [
            PYTHON, os.path.join(SIM_DIR, "mplus_sim.py"), "--port", "0",
            "--ident", MPLUS_IDENT, "--secret", MPLUS_SECRET, "--empty"])

    def reset(self):
        self.call("POST", "/_sim/reset", {"seed": False})

    def relation(self, obj):
        """A relation made or changed in the back office (merged by relationNumber)."""
        return self.call("POST", "/_sim/entity", {"kind": "relation", "object": obj})

    def relations(self):
        return self.call("GET", "/_sim/entities?kind=relation")

    def get_relation(self, number):
        found = [r for r in self.relations() if r["relationNumber"] == int(number)]
        return found[0] if found else None

    def requests(self, operation=None, since=0):
        return [r for r in self.call("GET", "/_sim/requests")[since:]
                if operation is None or r.get("operation") == operation
                or (isinstance(operation, tuple) and r.get("operation") in operation)]

    def mark(self):
        return len(self.call("GET", "/_sim/requests"))

    def writes(self, since=0):
        """createRelation/updateRelation requests the gateway made."""
        return self.requests(MPLUS_WRITES, since)


def app_config(gw, qbo, quickbooks=None, dispatch=None):
    """The [quickbooks] and [dispatch] sections of a daemon talking to the simulator qbo:
    the Intuit app, its OAuth callback on the daemon's admin listener, quick retries."""
    callback = "http://%s:%d/oauth/quickbooks/callback" % (HOST, gw.admin_port)
    app = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
           "redirect_url": callback, "api_base": qbo.base,
           "oauth_token_url": qbo.base + "/oauth2/v1/tokens/bearer",
           "oauth_authorize_url": qbo.base + "/connect/oauth2",
           "timeout_s": 5, "cdc_interval_s": 0}
    app.update(quickbooks or {})
    retries = {"enabled": "true", "retry_first_s": 1, "retry_max_s": 2, "circuit_failures": 50}
    retries.update(dispatch or {})
    return {"quickbooks": app, "dispatch": retries}


QBO = None
MPLUS = None


def setUpModule():
    global QBO, MPLUS
    QBO, MPLUS = gwtest.start_simulators(QboSim, MplusSim)


def tearDownModule():
    gwtest.close_simulators(QBO, MPLUS)


# ---- the test case ------------------------------------------------------------------


class CustomersTestCase(GatewayTestCase):

    maxDiff = None

    def setUp(self):
        QBO.reset()
        MPLUS.reset()
        self.gw = None
        self.tmp = tempfile.mkdtemp(prefix="gwtest-cust-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    # -- daemon --

    def config_extra(self, gw):
        return app_config(gw, QBO)

    def connection(self, **keys):
        c = {"mplus_url": "%s/" % MPLUS.base, "mplus_ident": MPLUS_IDENT,
             "mplus_secret": MPLUS_SECRET, "mplus_poll_interval_s": 1, "mplus_backfill": "true",
             "default_country": "NL"}
        c.update(keys)
        return gwtest.connection(CONN, REALM, WEBHOOK_SECRET, flows="customers", **c)

    def start_gateway(self, **keys):
        """A daemon for shop1 with the customers flow, authorised, the QBO
        simulator's webhooks pointing at it. keys: further connection keys."""
        gw = self.gateway(connections=[self.connection(**keys)], extra=self.config_extra)
        self.gw = gw
        QBO.config(webhook_url="http://%s:%d/webhooks/quickbooks" % (HOST, gw.port))
        gw.cli("tokens", CONN, "--refresh-token", QBO.refresh_token())
        return gw

    def write_file(self, name, text):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    # -- polling --

    def wait_shown(self, n, what, **filters):
        """wait_final on the test's daemon; the events in full (show)."""
        return [self.gw.show(e["id"]) for e in self.wait_final(self.gw, n, what, **filters)]

    def relation_events(self, number):
        return self.events_of(self.gw, "relation", number, "mplus-poll")

    def customer_events(self, cid):
        return self.events_of(self.gw, "Customer", cid, "quickbooks")

    def wait_polls(self, n=2, what="relation polls"):
        """Wait until the gateway has polled relations n more times (so any
        change made before now has been seen)."""
        mark = MPLUS.mark()
        self.wait(lambda: len(MPLUS.requests("getRelations", mark)) >= n, what)

    def wait_quiet(self):
        """Everything settled: every webhook delivered and every event final,
        and still so after two more relation polls (so a change that came back
        to Mplus has been seen, and nothing new followed)."""
        def settled():
            return (all(w["delivered"] for w in QBO.webhooks())
                    and all(e["state"] in FINAL for e in self.gw.events()))

        def counts():
            return len(self.gw.events()), len(QBO.webhooks()), len(MPLUS.writes())
        deadline = time.monotonic() + self.WAIT
        while True:
            self.wait(settled, "webhooks delivered and events final")
            before = counts()
            self.wait_polls(2)
            self.wait(settled, "webhooks delivered and events final")
            if counts() == before:
                return
            if time.monotonic() > deadline:
                self.fail("no quiet after %.0f s: %r -> %r\n%s"
                          % (self.WAIT, before, counts(), self.gw.log_tail()))

    def steps(self, event):
        return [s for h in event.get("history", []) for s in h.get("steps", [])]

    def outcome(self, e):
        return (e["state"], e.get("reason"))

    def assertDone(self, e):
        self.assertEqual((e["state"], e["last_error"]), ("done", None), e)

    def assertEcho(self, e):
        self.assertEqual(self.outcome(e), ("skipped", "echo"), e)

    def relation_to_customer(self, relation, what="the relation's customer"):
        """Make a relation in Mplus and wait for its first event to end; the
        relation (as stored), the event (in full)."""
        rel = MPLUS.relation(relation)
        [e] = self.wait_shown(1, what, entity="relation", entity_id=rel["relationNumber"])
        return rel, e

    def customer_id_of(self, e):
        """The Customer Id a relation event created, updated or adopted (its notes)."""
        for s in self.steps(e):
            for word in ("created Customer ", "updated Customer ", "adopted Customer "):
                if s.startswith(word):
                    return s[len(word):].split()[0]
        self.fail("no customer in the event's steps: %r" % e)


# ---- 1. relation -> customer, and its echo -------------------------------------------------


class RelationToCustomer(CustomersTestCase):

    def test_relation_appears_once_with_mapped_fields_and_echo_is_skipped(self):
        self.start_gateway()
        rel, e = self.relation_to_customer({
            "name": "Sanne Bakker", "email": "sanne.bakker@example.nl",
            "address": "Keizersgracht 12", "zipcode": "1015 CN", "city": "Amsterdam",
            "country": "Nederland", "telephone": "020-6543210", "mobile": "06-87654321",
            "website": "https://sanne.example"})
        self.assertDone(e)
        self.assertEqual(e["attempts"], 1)
        customers = QBO.customers()
        self.assertEqual(len(customers), 1, customers)
        c = customers[0]
        self.assertIn("created Customer %s" % c["Id"], self.steps(e))
        self.assertEqual(c["DisplayName"], "Sanne Bakker")
        self.assertEqual((c.get("GivenName"), c.get("FamilyName")), ("Sanne", "Bakker"))
        self.assertNotIn("CompanyName", c)
        self.assertEqual(c["PrimaryEmailAddr"], {"Address": "sanne.bakker@example.nl"})
        self.assertEqual(c["PrimaryPhone"], {"FreeFormNumber": "020-6543210"})
        self.assertEqual(c["Mobile"], {"FreeFormNumber": "06-87654321"})
        self.assertEqual(c["WebAddr"], {"URI": "https://sanne.example"})
        self.assertEqual({k: c["BillAddr"].get(k)
                          for k in ("Line1", "City", "PostalCode", "Country")},
                         {"Line1": "Keizersgracht 12", "City": "Amsterdam", "PostalCode": "1015 CN",
                          "Country": "NL"})
        self.assertIs(c["Active"], True)
        # Looked for by e-mail first (createRelation-style duplicates are the risk).
        queries = QBO.api("GET", "/query")
        self.assertEqual(len(queries), 1, queries)
        self.assertIn("sanne.bakker@example.nl", queries[0]["query"]["query"])
        posts = QBO.api("POST", "/customer")
        self.assertEqual([(p["status"], p["query"]["requestid"]) for p in posts],
                         [(200, "ev%d-customer" % e["id"])])

        # The create comes back as a webhook: skipped as an echo.
        [echo] = self.wait_shown(1, "the create's webhook", entity="Customer",
                                 entity_id=c["Id"])
        self.assertEcho(echo)
        self.wait_quiet()
        # Nothing bounced back: no write to Mplus, no second event, one customer.
        self.assertEqual(MPLUS.writes(), [])
        self.assertEqual(len(self.relation_events(rel["relationNumber"])), 1)
        self.assertEqual(len(self.customer_events(c["Id"])), 1)
        self.assertEqual(len(QBO.customers()), 1)
        self.assertEqual(len(QBO.api("POST", "/customer")), 1)
        self.assertEqual(self.gw.status()["events"].get("dead", 0), 0)


# ---- 2. QBO edit -> relation, and its echo ---------------------------------------------------


class CustomerToRelation(CustomersTestCase):

    def test_qbo_edit_reaches_the_relation_and_nothing_bounces_back(self):
        self.start_gateway()
        rel, e = self.relation_to_customer({
            "name": "Daan Visser", "email": "daan.visser@example.nl",
            "address": "Lange Nieuwstraat 4", "zipcode": "3512 PH", "city": "Utrecht",
            "country": "NL", "telephone": "030-2222222"})
        self.assertDone(e)
        number = rel["relationNumber"]
        cid = self.customer_id_of(e)
        self.assertEcho(self.wait_shown(1, "the create's webhook", entity="Customer",
                                        entity_id=cid)[0])
        self.wait_quiet()
        self.assertEqual(MPLUS.writes(), [])
        qmark, mmark = QBO.mark(), MPLUS.mark()

        # The accountant changes the phone number and the city in QuickBooks.
        c = QBO.customer(cid)
        bill = dict(c["BillAddr"], City="Utrecht-Zuid")
        QBO.entity("Customer", {"Id": cid, "PrimaryPhone": {"FreeFormNumber": "030-9999999"},
                                "BillAddr": bill})
        [_, edit] = self.wait_shown(2, "the edit's webhook", entity="Customer", entity_id=cid)
        self.assertDone(edit)
        self.assertIn("updated relation %d" % number, self.steps(edit))
        writes = MPLUS.writes(mmark)
        self.assertEqual([(w["operation"], w["validated"], w["result"]) for w in writes],
                         [("updateRelation", "ok", "UPDATE-RELATION-RESULT-OK")], writes)
        r = MPLUS.get_relation(number)
        self.assertEqual((r["telephone"], r["city"]), ("030-9999999", "Utrecht-Zuid"))
        # Found through the id map: no search by extRelationId or e-mail.
        finds = MPLUS.requests("findRelation", mmark)
        self.assertEqual([f["result"] for f in finds], ["FIND-RELATION-RESULT-OK"], finds)
        # What the relation had and the customer does not say is kept.
        self.assertEqual((r["name"], r["email"], r["address"], r["zipcode"]),
                         ("Daan Visser", "daan.visser@example.nl", "Lange Nieuwstraat 4",
                          "3512 PH"))
        self.assertEqual(r["extRelationId"], cid)

        # The update comes back with the next relation poll: an echo.
        later = self.wait_shown(2, "the relation's poll after the update", entity="relation",
                                entity_id=number)
        self.assertEqual(len(later), 2, later)
        self.assertEcho(later[1])
        self.wait_quiet()
        # One write each way: the create in QBO, the update in Mplus.
        self.assertEqual(QBO.api("POST", "/customer", since=qmark), [])
        self.assertEqual(len(QBO.api("POST", "/customer")), 1)
        self.assertEqual(len(MPLUS.writes(mmark)), 1)
        self.assertEqual(len(self.relation_events(number)), 2)
        self.assertEqual(len(self.customer_events(cid)), 2)
        self.assertEqual(QBO.customer(cid)["PrimaryPhone"], {"FreeFormNumber": "030-9999999"})

        # A field the relation does not have yet (a mobile number) is no echo either.
        self.assertNotIn("mobile", MPLUS.get_relation(number))
        QBO.entity("Customer", {"Id": cid, "Mobile": {"FreeFormNumber": "06-44444444"}})
        third = self.wait_shown(3, "the second edit's webhook", entity="Customer", entity_id=cid)[2]
        self.assertDone(third)
        self.assertEqual(MPLUS.get_relation(number)["mobile"], "06-44444444")


# ---- 3. adopt an existing customer by e-mail -------------------------------------------------


class Adopt(CustomersTestCase):

    def test_existing_customer_with_same_email_is_adopted_not_duplicated(self):
        # In QuickBooks before the gateway is connected (no webhook, no CDC).
        old = QBO.entity("Customer", {"DisplayName": "Eva Smit",
                                      "PrimaryEmailAddr": {"Address": "eva.smit@example.nl"},
                                      "Notes": "customer since 2019"})
        self.start_gateway()
        rel, e = self.relation_to_customer({
            "name": "Eva Smit", "email": "eva.smit@example.nl", "address": "Dorpsstraat 1",
            "zipcode": "1234 AB", "city": "Zwolle", "country": "Nederland"})
        self.assertDone(e)
        self.assertEqual(self.steps(e)[:2], ["adopted Customer %s (same e-mail)" % old["Id"],
                                             "updated Customer %s" % old["Id"]])
        customers = QBO.customers()
        self.assertEqual([c["Id"] for c in customers], [old["Id"]], customers)
        c = customers[0]
        self.assertEqual(c["BillAddr"]["City"], "Zwolle")
        self.assertEqual(c["Notes"], "customer since 2019")  # a sparse update
        posts = QBO.api("POST", "/customer")
        self.assertEqual(len(posts), 1, posts)
        self.assertEqual(posts[0]["body"]["Id"], old["Id"])
        self.assertIs(posts[0]["body"].get("sparse"), True)
        self.assertEqual(MPLUS.writes(), [])

        # The id map points to it: the relation's next change goes straight to
        # that customer, without looking for it by e-mail.
        self.wait_quiet()
        qmark = QBO.mark()
        MPLUS.relation({"relationNumber": rel["relationNumber"], "city": "Kampen"})
        later = self.wait_shown(2, "the relation's second change", entity="relation",
                                entity_id=rel["relationNumber"])
        self.assertDone(later[-1])
        self.assertEqual(QBO.api("GET", "/query", since=qmark), [])
        reads = QBO.api("GET", "/customer/", since=qmark)
        self.assertTrue(reads)
        self.assertEqual({r["path"].rsplit("/", 1)[1] for r in reads}, {old["Id"]})
        self.assertEqual(QBO.customer(old["Id"])["BillAddr"]["City"], "Kampen")
        self.wait_quiet()
        self.assertEqual(len(QBO.customers()), 1)
        self.assertEqual(MPLUS.writes(), [])


# ---- 4. company and person -----------------------------------------------------------------


class CompanyAndPerson(CustomersTestCase):

    def test_company_and_person_relations(self):
        self.start_gateway()
        company, e1 = self.relation_to_customer({
            "name": "Bakkerij De Gouden Korst", "companyName": "Bakkerij De Gouden Korst B.V.",
            "contact": "Mila van Dijk", "email": "info@goudenkorst.example",
            "address": "Marktplein 3", "city": "Gouda", "country": "Belgie"}, "the company")
        person, e2 = self.relation_to_customer({
            "name": "Jan de Vries", "email": "jan.devries@example.nl"}, "the person")
        # A name with characters QuickBooks rejects (':' and '"') is cleaned.
        odd, e3 = self.relation_to_customer({"name": 'Kees: "de" Boer  '}, "the odd name")
        for e in (e1, e2, e3):
            self.assertDone(e)
        by_id = {c["Id"]: c for c in QBO.customers()}
        self.assertEqual(len(by_id), 3, by_id)
        c = by_id[self.customer_id_of(e1)]
        self.assertEqual((c["DisplayName"], c["CompanyName"], c["GivenName"], c["FamilyName"]),
                         ("Bakkerij De Gouden Korst B.V.", "Bakkerij De Gouden Korst B.V.", "Mila",
                          "van Dijk"))
        self.assertEqual(c["BillAddr"]["Country"], "BE")
        p = by_id[self.customer_id_of(e2)]
        self.assertEqual((p["DisplayName"], p.get("GivenName"), p.get("FamilyName")),
                         ("Jan de Vries", "Jan", "de Vries"))
        self.assertNotIn("CompanyName", p)
        self.assertEqual(p["PrimaryEmailAddr"]["Address"], "jan.devries@example.nl")
        self.assertEqual(p["BillAddr"], {"Country": "NL"})  # default_country
        o = by_id[self.customer_id_of(e3)]
        self.assertEqual((o["DisplayName"], o.get("GivenName"), o.get("FamilyName")),
                         ("Kees de Boer", "Kees", "de Boer"))
        self.assertNotIn("PrimaryEmailAddr", o)
        self.wait_quiet()
        for e in (e1, e2, e3):
            [echo] = self.customer_events(self.customer_id_of(e))
            self.assertEqual(self.outcome(echo), ("skipped", "echo"), echo)
        self.assertEqual(MPLUS.writes(), [])


# ---- 5. DisplayName collision ---------------------------------------------------------------


class Collision(CustomersTestCase):

    def test_display_name_taken_by_a_vendor_gets_the_relation_number(self):
        QBO.entity("Vendor", {"DisplayName": "Pieter Post",
                              "PrimaryEmailAddr": {"Address": "ap@post.example"}})
        self.start_gateway()
        rel, e = self.relation_to_customer({"name": "Pieter Post", "email": "pieter@post.example",
                                            "city": "Delft"})
        number = rel["relationNumber"]
        self.assertDone(e)
        renamed = "Pieter Post (%d)" % number
        self.assertIn('DisplayName "Pieter Post" is taken in QuickBooks: created as "%s"' % renamed,
                      self.steps(e))
        customers = QBO.customers()
        self.assertEqual(len(customers), 1, customers)
        c = customers[0]
        self.assertEqual((c["DisplayName"], c["GivenName"], c["FamilyName"]),
                         (renamed, "Pieter", "Post"))
        self.assertEqual([(p["status"], p["query"]["requestid"], p["body"]["DisplayName"])
                          for p in QBO.api("POST", "/customer")],
                         [(400, "ev%d-customer" % e["id"], "Pieter Post"),
                          (200, "ev%d-customer-renamed" % e["id"], renamed)])
        self.assertEqual([v["DisplayName"] for v in QBO.entities("Vendor")], ["Pieter Post"])
        self.assertEcho(self.wait_shown(1, "the create's webhook", entity="Customer",
                                        entity_id=c["Id"])[0])

        # A later change of the relation updates that customer and keeps its name.
        self.wait_quiet()
        MPLUS.relation({"relationNumber": number, "telephone": "015-1234567"})
        later = self.wait_shown(2, "the relation's change", entity="relation", entity_id=number)
        self.assertDone(later[1])
        c = QBO.customer(c["Id"])
        self.assertEqual((c["DisplayName"], c["PrimaryPhone"]["FreeFormNumber"]),
                         (renamed, "015-1234567"))
        self.wait_quiet()
        self.assertEqual(len(QBO.customers()), 1)
        self.assertEqual(MPLUS.writes(), [])
        self.assertEqual(self.gw.status()["events"].get("dead", 0), 0)



# ---- 6. a connection's own mapping --------------------------------------------------------

OWN_MAPPING = """\
# shop1's own mapping: names in capitals, the relation number in Notes.
.source as $r
| {
    DisplayName: ($r.name | gw_clean | ascii_upcase),
    PrimaryEmailAddr: (($r.email | gw_nonempty) as $e | if $e then {Address: $e} else null end),
    Notes: ("Mplus relation " + ($r.relationNumber | tostring)),
    BillAddr: {City: ($r.city | gw_nonempty), Country: ($r.country | gw_country)}
  }
| gw_compact
"""


class OwnMapping(CustomersTestCase):

    def test_override_changes_the_output_and_the_preview_shows_it(self):
        own = self.write_file("shop1-customers.jq", OWN_MAPPING)
        gw = self.start_gateway(map_customers_to_qbo=own)
        rel, e = self.relation_to_customer({"name": "Femke Mulder", "email": "femke@example.nl",
                                            "address": "Breestraat 9", "city": "Leiden",
                                            "country": "Holland"})
        self.assertDone(e)
        [c] = QBO.customers()
        self.assertEqual((c["DisplayName"], c["Notes"], c["PrimaryEmailAddr"]["Address"]),
                         ("FEMKE MULDER", "Mplus relation %d" % rel["relationNumber"],
                          "femke@example.nl"))
        self.assertEqual(c["BillAddr"], {"City": "Leiden", "Country": "NL"})
        self.assertNotIn("GivenName", c)  # the default mapping would set it
        self.assertEcho(self.wait_shown(1, "the create's webhook", entity="Customer",
                                        entity_id=c["Id"])[0])

        # The preview runs the connection's own program on a sample ...
        sample = self.write_file("sample.json", json.dumps(rel))
        p = gw.cli("map", "--flow", "customers-to-qbo", "--input", sample, "--connection", CONN)
        preview = json.loads(p.stdout)
        self.assertEqual(preview, {"DisplayName": "FEMKE MULDER",
                                   "PrimaryEmailAddr": {"Address": "femke@example.nl"},
                                   "Notes": "Mplus relation %d" % rel["relationNumber"],
                                   "BillAddr": {"City": "Leiden", "Country": "NL"}})
        self.assertEqual({k: c[k] for k in preview}, preview)
        # ... and without --connection the default one.
        default = json.loads(gw.cli("map", "--flow", "customers-to-qbo", "--input",
                                    sample).stdout)
        self.assertEqual((default["DisplayName"], default["GivenName"], default["FamilyName"]),
                         ("Femke Mulder", "Femke", "Mulder"))
        self.assertEqual(default["BillAddr"]["Line1"], "Breestraat 9")
        self.wait_quiet()
        self.assertEqual(MPLUS.writes(), [])

    def test_runtime_error_fails_that_event_only(self):
        own = self.write_file("strict.jq", """\
# Every relation must have a city.
.source as $r
| if ($r.city | gw_nonempty) == null then error("relation \\($r.relationNumber) has no city")
  else {DisplayName: ($r.name | gw_clean), BillAddr: {City: $r.city}} end
""")
        gw = self.start_gateway(map_customers_to_qbo=own)
        bad, e1 = self.relation_to_customer({"name": "Zonder Stad"}, "the relation without city")
        good, e2 = self.relation_to_customer({"name": "Met Stad", "city": "Haarlem"},
                                             "the relation with a city")
        self.assertEqual((e1["state"], e1["reason"]), ("dead", "mapping failed"), e1)
        self.assertIn(own, e1["last_error"])
        self.assertIn("relation %d has no city" % bad["relationNumber"], e1["last_error"])
        self.assertEqual(e1["attempts"], 1)
        self.assertDone(e2)
        self.assertEqual([c["DisplayName"] for c in QBO.customers()], ["Met Stad"])
        self.assertTrue(gw.running())


# ---- 7. a mapping that does not compile -----------------------------------------------------


class BrokenMapping(CustomersTestCase):

    def test_syntax_error_stops_the_start_with_file_and_line(self):
        own = self.write_file("broken.jq", "# a typo on line 3\n.source as $r\n"
                                           "| {DisplayName: $r.name,, Notes: \"x\"}\n")
        gw = self.gateway(start=False, connections=[self.connection(map_customers_to_qbo=own)],
                          extra=self.config_extra)
        gw._write_config()
        p = gwtest.run_gateway_command(gw.config_path, "serve")
        err = p.stderr.decode()
        self.assertEqual(p.returncode, 2, err)
        self.assertIn(own, err)
        self.assertIn("line 3", err)
        self.assertIn("syntax error", err)
        self.assertIn("cannot start", err)
        # Nothing was polled or asked of QuickBooks.
        self.assertEqual(MPLUS.requests(), [])
        self.assertEqual(QBO.api(), [])
        # check-config refuses it the same way, before any restart.
        p = gwtest.run_gateway_command(gw.config_path, "check-config")
        err = p.stderr.decode()
        self.assertEqual(p.returncode, 2, err)
        self.assertIn(own, err)
        self.assertIn("line 3", err)
        self.assertEqual(p.stdout, b"")
        # The preview names it the same way.
        sample = self.write_file("sample.json", json.dumps({"name": "X"}))
        p = gw.cli("map", "--flow", "customers-to-qbo", "--input", sample, "--connection", CONN,
                   check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("%s: jq: error: syntax error" % own, p.stderr.decode())
        self.assertIn("line 3", p.stderr.decode())

    def test_country_table_without_pairs_is_refused_by_check_config(self):
        gw = self.gateway(start=False, connections=[self.connection(
            tax_code_by_country="NL:3, BE4")], extra=self.config_extra)
        gw._write_config()
        p = gwtest.run_gateway_command(gw.config_path, "check-config")
        err = p.stderr.decode()
        self.assertEqual(p.returncode, 2, err)
        self.assertIn("[connection.%s] key 'tax_code_by_country': expected COUNTRY:VALUE pairs, "
                      "got 'BE4'" % CONN, err)
        # Set right, the same connection passes.
        gw = self.gateway(start=False, connections=[self.connection(
            tax_code_by_country="NL:3, BE:4")], extra=self.config_extra)
        gw._write_config()
        p = gwtest.run_gateway_command(gw.config_path, "check-config")
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        self.assertIn(b"tax_code_by_country = NL:3, BE:4", p.stdout)


# ---- 8. changed twice while QuickBooks is down ------------------------------------------------


class QboDown(CustomersTestCase):

    def test_two_changes_while_qbo_is_down_end_in_one_customer_with_the_latest(self):
        self.start_gateway()
        # QuickBooks fails the next API requests: a SystemFault, then HTML pages.
        QBO.fault("500", count=2, path_contains="/v3/company/")
        QBO.fault("503", count=2, path_contains="/v3/company/")
        rel = MPLUS.relation({"name": "Noor de Graaf", "email": "noor@example.nl",
                              "address": "Grote Markt 1", "city": "Groningen"})
        number = rel["relationNumber"]
        self.wait(lambda: (lambda x: x if x and x[0]["attempts"] >= 1
                           and x[0]["state"] == "retrying" else None)(
            self.relation_events(number)), "the first change to fail")
        MPLUS.relation({"relationNumber": number, "address": "Vismarkt 22",
                        "telephone": "050-3333333"})
        evs = self.wait(lambda: (lambda x: x if len(x) == 2 else None)(
            self.relation_events(number)), "the second change to be polled")
        # Both changes are queued while QuickBooks is still down.
        self.assertNotEqual(evs[0]["state"], "done", evs)
        self.assertEqual(QBO.customers(), [])
        first, second = self.wait_shown(2, "both changes", entity="relation", entity_id=number)
        self.assertDone(first)
        self.assertGreater(first["attempts"], 1)
        self.assertIn("HTTP 5", first["history"][0]["error"])
        self.assertDone(second)
        customers = QBO.customers()
        self.assertEqual(len(customers), 1, customers)
        c = customers[0]
        self.assertEqual((c["BillAddr"]["Line1"], c["BillAddr"]["City"],
                          c["PrimaryPhone"]["FreeFormNumber"]),
                         ("Vismarkt 22", "Groningen", "050-3333333"))
        # One create (repeated under one requestid while it failed), one update.
        posts = QBO.api("POST", "/customer")
        created = [p for p in posts if "Id" not in (p["body"] or {})]
        self.assertEqual({p["query"]["requestid"] for p in created},
                         {"ev%d-customer" % first["id"]})
        self.assertEqual([p["status"] for p in created if p["status"] == 200], [200])
        updates = [p for p in posts if "Id" in (p["body"] or {})]
        self.assertEqual([(p["status"], p["body"]["Id"]) for p in updates], [(200, c["Id"])])
        self.wait_quiet()
        evs = self.customer_events(c["Id"])
        self.assertEqual(len(evs), 2, evs)  # the create's webhook and the update's
        for e in evs:
            self.assertEcho(self.gw.show(e["id"]))
        self.assertEqual(MPLUS.writes(), [])
        self.assertEqual(len(QBO.customers()), 1)


# ---- 8b. Mplus refuses the login ---------------------------------------------------------------


class LoginRefused(CustomersTestCase):

    def config_extra(self, gw):
        extra = super().config_extra(gw)
        extra["dispatch"]["circuit_open_s"] = 1
        return extra

    def test_refused_login_holds_the_work_without_spending_attempts(self):
        self.start_gateway()
        self.wait_quiet()
        # The shop's Mplus secret changed on the Mplus side.
        MPLUS.call("POST", "/_sim/config", {"secret": "not-the-configured-secret"})
        self.addCleanup(MPLUS.call, "POST", "/_sim/config", {"secret": MPLUS_SECRET})
        mmark = MPLUS.mark()
        c = QBO.entity("Customer", {
            "DisplayName": "Lotte Bos", "GivenName": "Lotte", "FamilyName": "Bos",
            "PrimaryEmailAddr": {"Address": "lotte.bos@example.nl"}})
        refusal = "waiting for the Mplus login"

        def refused(times):
            evs = self.customer_events(c["Id"])
            if len(evs) != 1:
                return None
            e = self.gw.show(evs[0]["id"])
            n = sum(h["outcome"] == refusal for h in e.get("history", []))
            return e if n >= times else None

        # Refused, then refused again after the hold: the event waits, its
        # attempts untouched, the circuit closed, the hold shown.
        e = self.wait(lambda: refused(2), "two refused logins")
        self.assertEqual((e["state"], e["attempts"]), ("retrying", 0), e)
        self.assertEqual({h["outcome"] for h in e["history"]}, {refusal}, e["history"])
        self.assertIn("Authentication failed", e["last_error"])
        self.assertTrue(all(r["auth"] == "failed" for r in MPLUS.requests(since=mmark)))
        st = self.wait(lambda: (lambda x: x if "mplus_login_refused_until" in x else None)(
            self.conn_status(self.gw, CONN)), "the hold in status")
        self.assertEqual(st["circuit"], "closed", st)
        # Held, not hammered: between refusals the connection sends nothing
        # for the event (the holds are 1 s, then 2 s, ...).
        tries = [r for r in MPLUS.requests("findRelation", mmark)]
        self.assertLessEqual(len(tries), 2 * 3, tries)

        # The secret is right again: the customer becomes one relation, with
        # one attempt counted.
        MPLUS.call("POST", "/_sim/config", {"secret": MPLUS_SECRET})
        [e] = self.wait_shown(1, "the customer once the login works", entity="Customer",
                              entity_id=c["Id"])
        self.assertDone(e)
        self.assertEqual(e["attempts"], 1, e)
        made = [r for r in MPLUS.relations() if r.get("extRelationId") == c["Id"]]
        self.assertEqual([(r["name"], r["email"]) for r in made],
                         [("Lotte Bos", "lotte.bos@example.nl")], made)
        self.wait(lambda: (lambda x: x if "mplus_login_refused_until" not in x else None)(
            self.conn_status(self.gw, CONN)), "the hold gone from status")


# ---- 9. bad data ------------------------------------------------------------------------------


class BadData(CustomersTestCase):

    def test_relation_without_name_or_email_is_dead_with_a_reason(self):
        self.start_gateway()
        rel, e = self.relation_to_customer({"telephone": "06-11112222", "city": "Assen"})
        self.assertEqual((e["state"], e["reason"], e["attempts"]),
                         ("dead", "incomplete relation", 1), e)
        self.assertIn("relation %d has no name, company name or e-mail" % rel["relationNumber"],
                      e["last_error"])
        self.assertIn("QuickBooks needs a name", e["last_error"])
        self.assertEqual(QBO.api("POST"), [])
        self.assertEqual(QBO.customers(), [])
        # The operator fixes it in Mplus: the change comes back by itself.
        MPLUS.relation({"relationNumber": rel["relationNumber"], "name": "Lotte Kok"})
        later = self.wait_shown(2, "the fixed relation", entity="relation",
                                entity_id=rel["relationNumber"])
        self.assertDone(later[1])
        self.assertEqual([c["DisplayName"] for c in QBO.customers()], ["Lotte Kok"])

    def test_email_matching_two_customers_is_dead_ambiguous(self):
        a = QBO.entity("Customer", {"DisplayName": "Tim Jong (winkel)",
                                    "PrimaryEmailAddr": {"Address": "tim@jong.example"}})
        b = QBO.entity("Customer", {"DisplayName": "Tim Jong (webshop)",
                                    "PrimaryEmailAddr": {"Address": "tim@jong.example"}})
        self.start_gateway()
        rel, e = self.relation_to_customer({"name": "Tim Jong", "email": "tim@jong.example"})
        self.assertEqual((e["state"], e["reason"], e["attempts"]),
                         ("dead", "ambiguous e-mail", 1), e)
        self.assertIn("matches 2 QuickBooks customers (%s, %s)" % (a["Id"], b["Id"]),
                      e["last_error"])
        self.assertIn("merge them", e["last_error"])
        self.assertEqual(QBO.api("POST"), [])
        self.assertEqual(len(QBO.customers()), 2)
        self.assertEqual(MPLUS.writes(), [])
        self.assertTrue(self.gw.running())



# ---- 10. a customer made in QuickBooks ------------------------------------------------------


class NewInQuickBooks(CustomersTestCase):

    def test_new_customer_becomes_one_relation_and_a_partial_email_match_is_not_it(self):
        self.start_gateway()
        jan, e = self.relation_to_customer({"name": "Jan Smit", "email": "jan.smit@example.nl",
                                            "city": "Haarlem"})
        self.assertDone(e)
        self.assertEcho(self.wait_shown(1, "the create's webhook", entity="Customer",
                                        entity_id=self.customer_id_of(e))[0])
        self.wait_quiet()
        mmark = MPLUS.mark()

        # The accountant adds a customer whose e-mail is part of Jan's e-mail
        # (Mplus's findRelation matches substrings).
        an = QBO.entity("Customer", {
            "DisplayName": "An Smit", "GivenName": "An", "FamilyName": "Smit",
            "PrimaryEmailAddr": {"Address": "an.smit@example.nl"},
            "PrimaryPhone": {"FreeFormNumber": "023-5555555"},
            "BillAddr": {"Line1": "Kerkstraat 5", "City": "Haarlem", "PostalCode": "2011 AA",
                         "Country": "NL"}})
        [e] = self.wait_shown(1, "the new customer's webhook", entity="Customer",
                              entity_id=an["Id"])
        self.assertDone(e)
        # Looked for first, by the customer's id and by e-mail (createRelation
        # is not idempotent), then created.
        self.assertEqual([r["operation"] for r in MPLUS.requests(
            ("findRelation",) + MPLUS_WRITES, mmark)],
            ["findRelation", "findRelation", "createRelation"])
        writes = MPLUS.writes(mmark)
        self.assertEqual([(w["operation"], w["result"]) for w in writes],
                         [("createRelation", "CREATE-RELATION-RESULT-OK")], writes)
        relations = {r["relationNumber"]: r for r in MPLUS.relations()}
        self.assertEqual(len(relations), 2, relations)
        new = [r for n, r in relations.items() if n != jan["relationNumber"]][0]
        self.assertIn("created relation %d" % new["relationNumber"], self.steps(e))
        self.assertEqual({k: new.get(k) for k in ("name", "email", "telephone", "address",
                                                  "zipcode", "city", "country", "extRelationId")},
                         {"name": "An Smit", "email": "an.smit@example.nl",
                          "telephone": "023-5555555", "address": "Kerkstraat 5",
                          "zipcode": "2011 AA", "city": "Haarlem", "country": "NL",
                          "extRelationId": an["Id"]})
        # Jan's relation is left alone.
        old = relations[jan["relationNumber"]]
        self.assertEqual((old["name"], old["email"], old.get("extRelationId")),
                         ("Jan Smit", "jan.smit@example.nl", None))
        # The new relation comes back with the next poll: an echo.
        [echo] = self.wait_shown(1, "the new relation's poll", entity="relation",
                                 entity_id=new["relationNumber"])
        self.assertEcho(echo)
        self.wait_quiet()
        self.assertEqual(len(MPLUS.writes(mmark)), 1)
        self.assertEqual(len(QBO.customers()), 2)
        self.assertEqual(len(QBO.api("POST", "/customer")), 1)  # Jan's create only



# ---- 11. inactive relations, create-only fields ----------------------------------------------


class Forget(CustomersTestCase):
    """GDPR: gateway forget --email removes a person's address from the store file, and
    nothing of anyone else's, while the daemon runs on."""

    def store_holds(self, address):
        with open(os.path.join(self.gw.store_path, "data.mdb"), "rb") as f:
            return address.lower().encode() in f.read().lower()

    def test_forget_removes_every_occurrence_and_nothing_of_other_people(self):
        gw = self.start_gateway()
        _, e1 = self.relation_to_customer({"name": "Femke Jansen", "email": "femke.jansen@example.nl",
                                           "city": "Delft"})
        _, e2 = self.relation_to_customer({"name": "Piet Smit", "email": "piet.smit@example.nl",
                                           "city": "Gouda"})
        self.assertDone(e1)
        self.assertDone(e2)
        self.wait_quiet()
        # A longer address that holds hers is someone else's.
        self.assertTrue(self.store_holds("femke.jansen@example.nl"))
        dry = json.loads(gw.cli("forget", "--email", "Femke.Jansen@Example.NL", "--dry-run", "--json").stdout)
        self.assertTrue(dry["dry_run"])
        self.assertGreaterEqual(dry["found"]["events"], 1)
        self.assertGreaterEqual(dry["found"]["payloads"], 1)
        self.assertTrue(self.store_holds("femke.jansen@example.nl"))
        done = json.loads(gw.cli("forget", "--email", "Femke.Jansen@Example.NL", "--json").stdout)
        self.assertEqual(done["found"], dry["found"])
        self.assertTrue(done["compacted"], done)
        self.assertFalse(self.store_holds("femke.jansen@example.nl"))
        self.assertTrue(self.store_holds("piet.smit@example.nl"))
        # His calls keep their bodies through the rewrite of the store.
        calls = gw.show(e2["id"])["history"][0]["calls"]
        self.assertIn("piet.smit@example.nl", " ".join(c.get("request", "") for c in calls))
        shown = gw.show(e1["id"])
        self.assertIn("[forgotten]", json.dumps(shown))
        self.assertEqual((shown["state"], shown["entity_id"]), (e1["state"], e1["entity_id"]))
        # The daemon goes on with the compacted store.
        _, e3 = self.relation_to_customer({"name": "Anna de Vries", "email": "anna@example.nl"})
        self.assertDone(e3)
        again = json.loads(gw.cli("forget", "--email", "femke.jansen@example.nl", "--dry-run",
                                  "--json").stdout)
        self.assertEqual(again["found"], {"events": 0, "payloads": 0, "meta": 0})

    def test_no_secret_is_in_the_store_file_and_no_token_in_a_call(self):
        gw = self.start_gateway()
        _, e = self.relation_to_customer({"name": "Kees Smit", "email": "kees@example.nl"})
        self.assertDone(e)
        self.wait_quiet()
        with open(os.path.join(gw.store_path, "data.mdb"), "rb") as f:
            data = f.read()
        for secret in (MPLUS_IDENT, MPLUS_SECRET, WEBHOOK_SECRET, CLIENT_SECRET, gwtest.VERIFIER_TOKEN,
                       gwtest.ADMIN_TOKEN):
            self.assertNotIn(secret.encode(), data, secret)
        # The calls kept hold no Authorization: the QuickBooks tokens are only in their own
        # record (kept on purpose: the daemon refreshes them).
        calls = gw.show(e["id"])["history"][0]["calls"]
        self.assertTrue(calls)
        for call in calls:
            self.assertNotIn("Bearer", json.dumps(call))


class InactiveAndCreateOnly(CustomersTestCase):

    def test_inactive_relation_deactivates_and_create_only_fields_stay(self):
        self.start_gateway(customer_create_only="WebAddr, Notes")
        rel, e = self.relation_to_customer({"name": "Sem Jacobs", "email": "sem@example.nl",
                                            "website": "https://sem.example"})
        number = rel["relationNumber"]
        self.assertDone(e)
        cid = self.customer_id_of(e)
        self.assertEqual(QBO.customer(cid)["WebAddr"], {"URI": "https://sem.example"})
        self.wait_quiet()

        def change(n, **fields):
            MPLUS.relation(dict(fields, relationNumber=number))
            evs = self.wait_shown(n, "relation change %d" % n, entity="relation",
                                  entity_id=number)
            self.assertEqual(len(evs), n, evs)
            self.assertDone(evs[-1])
            self.wait_quiet()
            return QBO.customer(cid)

        # The shop closes the account and gives a new website.
        c = change(2, active=False, website="https://sem-nieuw.example")
        # QuickBooks renames a customer it makes inactive.
        self.assertEqual((c["Active"], c["DisplayName"]), (False, "Sem Jacobs (deleted)"))
        self.assertEqual(c["WebAddr"], {"URI": "https://sem.example"})  # set on create only
        [update] = [p for p in QBO.api("POST", "/customer") if "Id" in p["body"]]
        self.assertNotIn("WebAddr", update["body"])
        # A later change while inactive keeps QuickBooks's name.
        c = change(3, telephone="050-1231234")
        self.assertEqual((c["Active"], c["DisplayName"], c["PrimaryPhone"]["FreeFormNumber"]),
                         (False, "Sem Jacobs (deleted)", "050-1231234"))
        # Reopened: active again, under its own name.
        c = change(4, active=True)
        self.assertEqual((c["Active"], c["DisplayName"]), (True, "Sem Jacobs"))

        # None of it came back to Mplus: the relation is as the shop left it.
        evs = self.customer_events(cid)
        self.assertEqual(len(evs), 4, evs)  # the create's webhook and three updates'
        for e in evs:
            self.assertEcho(e)
        self.assertEqual(MPLUS.writes(), [])
        r = MPLUS.get_relation(number)
        self.assertEqual((r["name"], r["website"], r["active"]),
                         ("Sem Jacobs", "https://sem-nieuw.example", True))
        self.assertEqual(len(QBO.customers()), 1)


if __name__ == "__main__":
    gwtest.main()
