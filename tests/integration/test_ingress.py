#!/usr/bin/env python3
"""Ingress integration tests: the real daemon on loopback ports.

Every case checks the HTTP answer and what the store holds afterwards, read
back through the CLI (events --json, show --json, status --json).

    python3 tests/integration/test_ingress.py /path/to/gateway [unittest args]
"""

import base64
import http.client
import json
import os
import re
import sys
import shutil
import socket
import tempfile
import subprocess
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gwtest  # noqa: E402
from gwtest import GatewayTestCase, fixture, sign, dumps, cloudevent, mplus_callback  # noqa: E402

JAVA = "java_sdk_WebhooksServiceTest"
DOTNET = "dotnet_sdk_WebhooksServiceTest"


CHROMIUM = "/usr/bin/chromium"


def browse(url):
    """The page's DOM after its scripts ran, as headless Chromium (Debian's
    chromium) renders it; a fresh profile each time, so nothing is remembered."""
    with tempfile.TemporaryDirectory(prefix="gwtest-chromium-") as profile:
        p = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                            "--no-first-run", "--disable-extensions", "--user-data-dir=" + profile,
                            "--virtual-time-budget=3000", "--dump-dom", url],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=60)
    return p.stdout.decode()


def by_entity_id(events):
    return {e["entity_id"]: e for e in events}


class QuickBooksWebhooks(GatewayTestCase):

    def test_java_sdk_legacy_fixture_with_its_signature(self):
        vec = gwtest.signature_vectors()[JAVA]
        body = fixture(vec["body_file"])
        self.assertEqual(len(body), vec["body_length"])
        gw = self.gateway(verifier_token=vec["verifier_token"])

        # The SDK's negative vector first: refused, nothing stored.
        r = gw.post_qbo(body, signature=vec["negative_signature"])
        self.assertEqual(r.status, 401, r)
        self.assertNothingStored(gw)

        r = gw.post_qbo(body, signature=vec["intuit_signature"])
        self.assertEqual(r.status, 200, r)
        evs = gw.events()
        self.assertEqual(len(evs), 1, evs)
        e = evs[0]
        self.assertEqual(e["state"], "pending")
        self.assertEqual(e["source"], "quickbooks")
        self.assertEqual(e["connection"], "shop1")
        self.assertEqual(e["entity"], "Customer")
        self.assertEqual(e["entity_id"], "1")
        self.assertEqual(e["operation"], "Create")
        self.assertEqual(e["attempts"], 0)
        self.assertIsNone(e["reason"])
        self.assertIsNone(e["last_error"])
        full = gw.show(e["id"])
        self.assertEqual(full["id"], e["id"])
        self.assertEqual(full["realm_id"], "1185883450")
        # lastUpdated "2015-10-05T14:42:19-0700" normalised to UTC.
        self.assertEqual(full["occurred_at"], "2015-10-05T21:42:19.000Z")
        self.assertEqual(full["payload"]["entity"]["lastUpdated"], "2015-10-05T14:42:19-0700")
        self.assertEqual(gw.status()["events"]["pending"], 1)

    def test_dotnet_sdk_legacy_fixture_gives_one_event_per_entity(self):
        vec = gwtest.signature_vectors()[DOTNET]
        body = fixture(vec["body_file"])
        self.assertEqual(len(body), vec["body_length"])
        gw = self.gateway(verifier_token=vec["verifier_token"],
                          connections=[gwtest.connection("dotnetco", "1269959970", "s")])
        r = gw.post_qbo(body, signature=vec["intuit_signature"])
        self.assertEqual(r.status, 200, r)
        evs = by_entity_id(gw.events())
        self.assertEqual(sorted(evs), ["40", "43"], evs)
        self.assertEqual((evs["40"]["entity"], evs["40"]["operation"]), ("Vendor", "Update"))
        self.assertEqual((evs["43"]["entity"], evs["43"]["operation"]), ("Customer", "Create"))
        for e in evs.values():
            self.assertEqual(e["state"], "pending")
            self.assertEqual(e["source"], "quickbooks")
            self.assertEqual(e["connection"], "dotnetco")
        self.assertEqual(gw.show(evs["40"]["id"])["occurred_at"], "2016-10-05T03:09:04.000Z")

    def test_cloudevents_fixtures_both_content_types(self):
        gw = self.gateway(connections=[gwtest.connection("shop2", "310687", "s2"),
                                       gwtest.connection("shop3", "999000111", "s3")])
        posts = [
            ("cloudevents_customer_created_intuit_sample.json", "application/json"),
            ("cloudevents_dotnet_sdk_test_class_created.json", "application/cloudevents+json"),
            ("cloudevents_customer_merged_synthetic.json",
             "application/cloudevents+json; charset=utf-8"),
        ]
        for name, ctype in posts:
            r = gw.post_qbo(fixture(name), content_type=ctype)
            self.assertEqual(r.status, 200, "%s: %r" % (name, r))
        evs = gw.events()
        self.assertEqual(len(evs), 3, evs)
        for e in evs:
            self.assertEqual(e["state"], "pending", e)
            self.assertEqual(e["source"], "quickbooks")
        full = {}
        for e in evs:
            f = gw.show(e["id"])
            full[f["payload"]["id"]] = f

        sample = full["88cd52aa-33b6-4351-9aa4-47572edbd068"]
        self.assertEqual((sample["connection"], sample["entity"], sample["entity_id"],
                          sample["operation"]), ("shop2", "Customer", "1234", "Create"))
        self.assertEqual(sample["realm_id"], "310687")
        self.assertEqual(sample["occurred_at"], "2025-09-10T21:31:25.179Z")

        cls = full["d1a3aedd-9670-41bf-a4f9-c148a1cc4e03"]
        self.assertEqual((cls["connection"], cls["entity"], cls["entity_id"], cls["operation"]),
                         ("shop2", "Class", "1234", "Create"))

        merged = full["test-customer-merged-1030"]
        self.assertEqual((merged["connection"], merged["entity"], merged["entity_id"],
                          merged["operation"]), ("shop3", "Customer", "1030", "Merge"))
        self.assertEqual(merged["deleted_id"], "1030")

    def test_unknown_realm_is_acknowledged_and_skipped(self):
        gw = self.gateway()  # no connection has realm 999000111
        r = gw.post_qbo(fixture("cloudevents_customer_merged_synthetic.json"))
        self.assertEqual(r.status, 200, r)
        evs = gw.events()
        self.assertEqual(len(evs), 1, evs)
        self.assertEqual(evs[0]["state"], "skipped")
        self.assertEqual(evs[0]["reason"], "unknown realm")
        self.assertEqual(evs[0]["connection"], "")
        counts = gw.status()["events"]
        self.assertEqual((counts["skipped"], counts["pending"]), (1, 0), counts)

    def test_same_post_twice_is_stored_once(self):
        gw = self.gateway()
        legacy = fixture("legacy_java_sdk_test_body.json")
        ce = fixture("cloudevents_customer_created_intuit_sample.json")
        for _ in range(2):
            self.assertEqual(gw.post_qbo(legacy).status, 200)
            self.assertEqual(gw.post_qbo(ce, content_type="application/cloudevents+json").status,
                             200)
        evs = gw.events()
        self.assertEqual(len(evs), 2, evs)
        self.assertEqual(sorted(e["entity_id"] for e in evs), ["1", "1234"])
        self.assertEqual(gw.status()["events"]["pending"], 2)
        # The same CloudEvent id in a re-serialised body is still the same event.
        again = dumps(json.loads(ce))
        self.assertNotEqual(again, ce)
        self.assertEqual(gw.post_qbo(again).status, 200)
        self.assertEqual(len(gw.events()), 2)
        metrics = gw.admin_get("/metrics").body.decode()
        self.assertIn('gateway_webhooks_total{source="quickbooks",result="duplicate"} 3', metrics)

    def test_legacy_dedupe_normalises_last_updated(self):
        gw = self.gateway()
        self.assertEqual(gw.post_qbo(fixture("legacy_java_sdk_test_body.json")).status, 200)
        doc = json.loads(fixture("legacy_java_sdk_test_body.json"))
        ent = doc["eventNotifications"][0]["dataChangeEvent"]["entities"][0]
        # The same instant as "2015-10-05T14:42:19-0700" in the other spellings.
        for lu in ("2015-10-05T21:42:19.000Z", "2015-10-05T23:42:19+02:00", "1444081339000",
                   1444081339000):
            ent["lastUpdated"] = lu
            self.assertEqual(gw.post_qbo(dumps(doc)).status, 200, lu)
        self.assertEqual(len(gw.events()), 1)
        # A later change of the same entity is a new event.
        ent["lastUpdated"] = "2015-10-05T21:42:20.000Z"
        self.assertEqual(gw.post_qbo(dumps(doc)).status, 200)
        # The same CloudEvent id in another realm is another event.
        ce = json.loads(fixture("cloudevents_customer_created_intuit_sample.json"))
        self.assertEqual(gw.post_qbo(dumps(ce)).status, 200)
        ce[0]["intuitaccountid"] = "1185883450"
        self.assertEqual(gw.post_qbo(dumps(ce)).status, 200)
        evs = gw.events()
        self.assertEqual(len(evs), 4, evs)
        self.assertEqual(len({e["id"] for e in evs}), 4)

    def test_bad_or_missing_signature_is_401_and_stores_nothing(self):
        gw = self.gateway()
        body = fixture("legacy_java_sdk_test_body.json")
        good = sign(gw.verifier_token, body)
        cases = {
            "missing": None,
            "garbage": "1234",
            "empty": "",
            "other key": sign("not-the-verifier-token", body),
            "hex instead of base64": sign(gw.verifier_token, body).encode().hex(),
        }
        for what, sig in cases.items():
            r = gw.post_qbo(body, signature=sig)
            self.assertEqual(r.status, 401, "%s: %r" % (what, r))
        # One byte of the body changed, the original signature kept.
        i = body.index(b'"id":"1"') + len(b'"id":"')
        tampered = body[:i] + b"2" + body[i + 1:]
        self.assertEqual(len(tampered), len(body))
        r = gw.post_qbo(tampered, signature=good)
        self.assertEqual(r.status, 401, r)
        # A trailing byte added.
        r = gw.post_qbo(body + b" ", signature=good)
        self.assertEqual(r.status, 401, r)
        self.assertNothingStored(gw)
        metrics = gw.admin_get("/metrics").body.decode()
        self.assertIn('gateway_webhooks_total{source="quickbooks",result="unauthorized"} 7',
                      metrics)
        # Secrets never reach the log.
        self.assertNotIn(gw.verifier_token, gw.log_text())

    def test_body_size_limit(self):
        limit = 2048
        gw = self.gateway(max_body_bytes=limit)

        def padded_ce(size):
            ev = cloudevent("size-%d" % size, str(size), "310687", data={"pad": ""})
            ev["data"]["pad"] = "x" * (size - len(dumps([ev])))
            body = dumps([ev])
            self.assertEqual(len(body), size)
            return body

        # A valid, signed webhook one byte too large: 413, nothing stored.
        r = gw.post_qbo(padded_ce(limit + 1))
        self.assertEqual(r.status, 413, r)
        r = gw.post_qbo(b"x" * (4 * limit))
        self.assertEqual(r.status, 413, r)
        self.assertNothingStored(gw)

        # Exactly the limit, signed but not JSON: acknowledged, kept as dead.
        junk = b"#" * limit
        r = gw.post_qbo(junk)
        self.assertEqual(r.status, 200, r)
        evs = gw.events()
        self.assertEqual(len(evs), 1, evs)
        self.assertEqual((evs[0]["state"], evs[0]["reason"]), ("dead", "malformed"))
        self.assertEqual(gw.show(evs[0]["id"])["raw_body_bytes"], limit)

        # Exactly the limit and valid: a normal event.
        r = gw.post_qbo(padded_ce(limit))
        self.assertEqual(r.status, 200, r)
        evs = gw.events("--state", "pending")
        self.assertEqual([e["entity_id"] for e in evs], [str(limit)])

    def test_unsupported_content_type_is_415(self):
        gw = self.gateway()
        body = fixture("legacy_java_sdk_test_body.json")
        for ctype in ("text/plain", "application/xml", "application/jsonx", None):
            r = gw.post_qbo(body, content_type=ctype)
            self.assertEqual(r.status, 415, "%s: %r" % (ctype, r))
        self.assertNothingStored(gw)

    def test_malformed_but_signed_body_is_kept_dead(self):
        gw = self.gateway()
        body = b'{"eventNotifications": ['
        r = gw.post_qbo(body)
        self.assertEqual(r.status, 200, r)
        evs = gw.events()
        self.assertEqual(len(evs), 1, evs)
        e = evs[0]
        self.assertEqual((e["state"], e["reason"], e["source"]), ("dead", "malformed", "quickbooks"))
        full = gw.show(e["id"])
        self.assertEqual(full["raw_body"].encode(), body)
        self.assertEqual(full["raw_body_bytes"], len(body))
        counts = gw.status()["events"]
        self.assertEqual((counts["dead"], counts["pending"]), (1, 0), counts)

        # The same bytes again: acknowledged, nothing new stored.
        r = gw.post_qbo(body)
        self.assertEqual(r.status, 200, r)
        self.assertEqual([x["id"] for x in gw.events()], [e["id"]])

        # Valid JSON of the wrong shape is malformed too.
        for other in (b'{"hello": 1}', b"[]", b'"text"'):
            self.assertEqual(gw.post_qbo(other).status, 200, other)
        dead = gw.events("--state", "dead")
        self.assertEqual(len(dead), 4, dead)
        self.assertTrue(all(x["reason"] == "malformed" for x in dead), dead)

        # Bytes that are not even UTF-8 are kept too; show gives their length.
        binary = b"\xff\xfe\x00\x01garbage\x80"
        self.assertEqual(gw.post_qbo(binary).status, 200)
        e = gw.events()[0]
        self.assertEqual((e["state"], e["reason"]), ("dead", "malformed"))
        full = gw.show(e["id"])
        self.assertEqual(full["raw_body_bytes"], len(binary))
        self.assertIsNone(full["raw_body"])

    def test_malformed_entity_among_good_ones(self):
        gw = self.gateway()
        good = cloudevent("ce-good-1", "77", "310687")
        bad = {"specversion": "1.0", "id": "ce-bad-1", "type": "qbo.customer.created.v1"}
        r = gw.post_qbo(dumps([good, bad]))
        self.assertEqual(r.status, 200, r)
        evs = gw.events()
        self.assertEqual(len(evs), 2, evs)
        states = sorted((e["state"], e["reason"] or "") for e in evs)
        self.assertEqual(states, [("dead", "malformed"), ("pending", "")])

    def test_wrong_method_and_unknown_path(self):
        gw = self.gateway()
        self.assertEqual(gw.request("GET", "/webhooks/quickbooks").status, 405)
        self.assertEqual(gw.request("GET", "/nope").status, 404)
        self.assertEqual(gw.request("POST", "/nope", b"{}",
                                    {"Content-Type": "application/json"}).status, 404)
        self.assertEqual(gw.request("GET", "/webhooks/quickbooks/x").status, 404)
        self.assertEqual(gw.request("GET", "/healthz").status, 200)
        self.assertNothingStored(gw)


class Listener(GatewayTestCase):
    """HTTP framing on the webhook listener, spoken over raw sockets."""

    def connect(self, gw):
        sock = socket.create_connection((gwtest.HOST, gw.port), timeout=10)
        self.addCleanup(sock.close)
        return sock

    def signed_post(self, gw, body, extra_headers=b"", chunked=False):
        head = (b"POST /webhooks/quickbooks HTTP/1.1\r\nHost: gw\r\n"
                b"Content-Type: application/json\r\nintuit-signature: "
                + sign(gw.verifier_token, body).encode() + b"\r\n" + extra_headers)
        if chunked:
            half = len(body) // 2
            chunks = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(c), c)
                              for c in (body[:half], body[half:]))
            return head + b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
        return head + b"Content-Length: %d\r\n\r\n" % len(body) + body

    def read_responses(self, sock, n):
        """n whole responses (status, headers, body) read off sock."""
        buf, out = b"", []
        while len(out) < n:
            while b"\r\n\r\n" not in buf:
                data = sock.recv(65536)
                if not data:
                    self.fail("connection closed after %d responses: %r" % (len(out), buf))
                buf += data
            head, buf = buf.split(b"\r\n\r\n", 1)
            lines = head.decode().split("\r\n")
            status = int(lines[0].split()[1])
            headers = {k.lower(): v.strip() for k, v in
                       (line.split(":", 1) for line in lines[1:])}
            length = int(headers.get("content-length", "0"))
            while len(buf) < length:
                buf += sock.recv(65536)
            out.append((status, headers, buf[:length]))
            buf = buf[length:]
        return out

    def assertClosed(self, sock):
        sock.settimeout(10)
        self.assertEqual(sock.recv(1), b"", "the connection should be closed")

    def test_keep_alive_and_pipelining(self):
        gw = self.gateway()
        sock = self.connect(gw)
        bodies = [dumps([cloudevent("ka-%d" % i, str(100 + i), "310687")]) for i in range(3)]
        # One request, then two written in one go: answers come in order.
        sock.sendall(self.signed_post(gw, bodies[0]))
        self.assertEqual(self.read_responses(sock, 1)[0][0], 200)
        sock.sendall(self.signed_post(gw, bodies[1]) + self.signed_post(gw, bodies[2]))
        answers = self.read_responses(sock, 2)
        self.assertEqual([a[0] for a in answers], [200, 200])
        for status, headers, body in answers:
            self.assertEqual(body, b"ok\n")
            self.assertNotIn("connection", headers)
            self.assertIn("date", headers)
        self.assertEqual(sorted(e["entity_id"] for e in gw.events()), ["100", "101", "102"])

    def test_chunked_body_and_expect_continue(self):
        gw = self.gateway()
        sock = self.connect(gw)
        body = dumps([cloudevent("chunked-1", "7", "310687")])
        sock.sendall(self.signed_post(gw, body, chunked=True))
        self.assertEqual(self.read_responses(sock, 1)[0][0], 200)
        # 100-continue: the interim answer comes before the body is sent.
        body2 = dumps([cloudevent("continue-1", "8", "310687")])
        req = self.signed_post(gw, body2, b"Expect: 100-continue\r\n")
        head, _ = req.split(b"\r\n\r\n", 1)
        sock.sendall(head + b"\r\n\r\n")
        sock.settimeout(10)
        self.assertEqual(sock.recv(100), b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(body2)
        self.assertEqual(self.read_responses(sock, 1)[0][0], 200)
        self.assertEqual(sorted(e["entity_id"] for e in gw.events()), ["7", "8"])

    def test_http10_closes_unless_kept_alive(self):
        gw = self.gateway()
        sock = self.connect(gw)
        sock.sendall(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        status, headers, _ = self.read_responses(sock, 1)[0]
        self.assertEqual((status, headers.get("connection")), (200, "keep-alive"))
        sock.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        status, headers, _ = self.read_responses(sock, 1)[0]
        self.assertEqual((status, headers.get("connection")), (200, "close"))
        self.assertClosed(sock)

    def test_bad_framing_is_refused_and_closed(self):
        gw = self.gateway()
        body = dumps([cloudevent("bad-1", "9", "310687")])
        cases = [
            (b"GARBAGE\r\n\r\n", 400),
            (b"POST /webhooks/quickbooks HTTP/1.1\r\nContent-Length: 2\r\n"
             b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", 400),
            (b"POST /webhooks/quickbooks HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
            (b"GET / HTTP/3.0\r\n\r\n", 505),
            (b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", 431),
            (self.signed_post(gw, body).replace(b"chunked", b"x")
             .replace(b"Content-Length: %d" % len(body), b"Content-Length: 99999999"), 413),
        ]
        for raw, want in cases:
            sock = self.connect(gw)
            sock.sendall(raw)
            status, headers, _ = self.read_responses(sock, 1)[0]
            self.assertEqual((status, headers.get("connection")), (want, "close"), raw[:60])
            self.assertClosed(sock)
        self.assertNothingStored(gw)

    def test_slow_request_times_out(self):
        gw = self.gateway(extra={"server": {"timeout_s": 1}})
        sock = self.connect(gw)
        body = dumps([cloudevent("slow-1", "10", "310687")])
        req = self.signed_post(gw, body)
        # Half a request, then silence: 408 after the timeout, nothing stored.
        sock.sendall(req[:len(req) // 2])
        t0 = time.monotonic()
        status, headers, _ = self.read_responses(sock, 1)[0]
        self.assertEqual(status, 408)
        self.assertLess(time.monotonic() - t0, 5)
        self.assertClosed(sock)
        # A client trickling bytes is held to the same deadline, and cannot
        # keep the closing connection open by going on.
        sock = self.connect(gw)
        t0 = time.monotonic()
        for b in req[:100]:  # 5 s of bytes against a 1 s deadline
            try:
                sock.sendall(bytes([b]))
            except OSError:
                break
            time.sleep(0.05)
        self.assertEqual(self.read_responses(sock, 1)[0][0], 408)
        try:
            self.assertEqual(sock.recv(1), b"")
        except ConnectionResetError:
            pass
        self.assertLess(time.monotonic() - t0, 10)
        self.assertNothingStored(gw)
        # An idle keep-alive connection is closed quietly.
        sock = self.connect(gw)
        self.assertClosed(sock)


class Inbox(GatewayTestCase):
    """index_inline_max = 0: every QuickBooks webhook is answered once its
    body is committed, and made an event right after (what a burst gets)."""

    def test_answered_then_stored_once_and_counted(self):
        gw = self.gateway(extra={"storage": {"index_inline_max": 0}})
        two = dumps([cloudevent("inbox-1", "71", "310687"),
                     cloudevent("inbox-2", "72", "999999")])
        self.assertEqual(gw.post_qbo(two).status, 200)
        self.assertEqual(gw.post_qbo(two).status, 200)  # a redelivery
        self.assertEqual(gw.post_qbo(b"not json at all").status, 200)
        gw.settle()
        self.check_events_and_metrics(gw)

    def test_answered_before_they_are_events(self):
        """With the inbox worked on only after a minute of quiet, the answers
        come first: the bodies wait in the inbox, no event exists yet, and a
        restart makes them events."""
        gw = self.gateway(extra={"storage": {"index_inline_max": 0,
                                             "inbox_quiet_ms": 60000}})
        two = dumps([cloudevent("inbox-1", "71", "310687"),
                     cloudevent("inbox-2", "72", "999999")])
        self.assertEqual(gw.post_qbo(two).status, 200)
        self.assertEqual(gw.post_qbo(two).status, 200)
        self.assertEqual(gw.post_qbo(b"not json at all").status, 200)
        self.assertEqual(gw.status()["inbox"], 3)
        self.assertEqual(gw.events(), [])
        self.assertEqual(gw.stop(), 0)
        gw.start()
        self.assertEqual(gw.status()["inbox"], 0)
        self.check_events_and_metrics(gw)

    def check_events_and_metrics(self, gw):
        evs = gw.events()
        got = sorted((e["entity_id"] or "", e["state"], e["reason"] or "") for e in evs)
        self.assertEqual(got, [("", "dead", "malformed"), ("71", "pending", ""),
                               ("72", "skipped", "unknown realm")])
        dead = [e for e in evs if e["state"] == "dead"][0]
        self.assertEqual(gw.show(dead["id"])["raw_body_bytes"], len(b"not json at all"))
        # Who sent each, kept through the inbox (the test client is on loopback).
        self.assertEqual({gw.show(e["id"]).get("client") for e in evs}, {gwtest.HOST})
        st = gw.status()
        self.assertEqual((st["inbox"], st["events"]["pending"]), (0, 1))
        metrics = gw.admin_get("/metrics").body.decode()
        for result, n in (("accepted", 1), ("duplicate", 2), ("skipped", 1), ("malformed", 1)):
            self.assertIn('gateway_webhooks_total{source="quickbooks",result="%s"} %d'
                          % (result, n), metrics)
        # In arrival order: ids follow the posts.
        ids = {e["entity_id"] or "": e["id"] for e in evs}
        self.assertLess(ids["71"], ids[""])


class Retention(GatewayTestCase):
    """The daemon's janitor drops what is past retention (here 4 s, looked at every second)."""

    def test_the_janitor_purges_at_the_boundary_and_strips_dead_events(self):
        gw = self.gateway(extra={"storage": {"retention_s": 4, "janitor_interval_s": 1}})
        self.assertEqual(gw.post_qbo(dumps([cloudevent("old-1", "72", "999999")])).status, 200)
        self.assertEqual(gw.post_qbo(b"not json at all").status, 200)
        old = {e["entity_id"] or "": e for e in gw.events()}
        self.assertEqual((old["72"]["state"], old[""]["state"]), ("skipped", "dead"))
        self.assertEqual(gw.show(old[""]["id"])["raw_body_bytes"], len(b"not json at all"))
        time.sleep(2)
        self.assertEqual(gw.post_qbo(dumps([cloudevent("new-1", "73", "999999")])).status, 200)
        # Once the old finished event is gone, the new one (2 s younger) is still there.
        evs = self.wait(lambda: (lambda ids: ids if old["72"]["id"] not in ids else None)(
            {e["id"]: e for e in gw.events()}), "the old event purged")
        self.assertIn("73", [e["entity_id"] for e in evs.values()])
        # The dead one stays for the operator, without what came in (received a moment after
        # the old one, it may be a tick later).
        dead = self.wait(lambda: (lambda d: d if d.get("bodies_purged") else None)(gw.show(old[""]["id"])),
                         "the dead event stripped")
        self.assertEqual(dead["state"], "dead")
        self.assertNotIn("raw_body_bytes", dead)
        self.assertTrue(dead.get("bodies_purged"), dead)
        self.assertIn("retention: dropped 1 finished events", gw.log_text())


class MplusCallbacks(GatewayTestCase):

    def assertSignedReply(self, r, key):
        sig = r.headers.get("X-Mplus-Signature")
        self.assertIsNotNone(sig, "reply is not signed: %r" % r)
        self.assertEqual(sig, sign(key, r.body), "reply signature does not match its body")
        self.assertTrue(r.headers.get("Content-Type", "").startswith("application/json"))

    def assertMplusError(self, r, code, key=None):
        self.assertEqual(r.status, 400, r)
        self.assertEqual(r.json()["error"]["code"], code, r)
        self.assertIsInstance(r.json()["error"]["message"], str)
        if key is not None:
            self.assertSignedReply(r, key)

    def test_complete_session_is_stored_and_reply_signed(self):
        gw = self.gateway()
        key = gw.mplus_key("shop1")
        sid = "5f0c2a9e-8d1b-4c1e-9a44-3b2f7e6d1c00"
        r = gw.post_mplus("shop1", "completeSession", mplus_callback(sid))
        self.assertEqual(r.status, 200, r)
        self.assertSignedReply(r, key)
        self.assertIsInstance(r.json(), dict)
        evs = gw.events()
        self.assertEqual(len(evs), 1, evs)
        e = evs[0]
        self.assertEqual((e["state"], e["source"], e["connection"], e["operation"], e["entity_id"]),
                         ("pending", "mplus", "shop1", "completeSession", sid))
        full = gw.show(e["id"])
        self.assertEqual(full["payload"]["session"]["sessionId"], sid)
        self.assertEqual(full["occurred_at"], "2025-11-03T13:21:08.000Z")

    def test_same_callback_twice_is_stored_once(self):
        gw = self.gateway()
        body = dumps(mplus_callback("sess-dup", counter=41))
        for _ in range(2):
            r = gw.post_mplus("shop1", "completeSession", body)
            self.assertEqual(r.status, 200, r)
        self.assertEqual(len(gw.events()), 1)
        # The same session credited, or a new event counter, or the other
        # connection: different events.
        self.assertEqual(gw.post_mplus("shop1", "creditSession", body).status, 200)
        self.assertEqual(gw.post_mplus("shop1", "completeSession",
                                       mplus_callback("sess-dup", counter=42)).status, 200)
        self.assertEqual(gw.post_mplus("shop2", "completeSession", body).status, 200)
        evs = gw.events()
        self.assertEqual(len(evs), 4, evs)
        self.assertEqual(sorted((e["connection"], e["operation"]) for e in evs),
                         [("shop1", "completeSession"), ("shop1", "completeSession"),
                          ("shop1", "creditSession"), ("shop2", "completeSession")])

    def test_bad_signature(self):
        gw = self.gateway()
        body = dumps(mplus_callback("sess-bad"))
        for sig in ("AAAA", sign("wrong-secret", body), sign(gw.mplus_key("shop2"), body)):
            r = gw.post_mplus("shop1", "completeSession", body, signature=sig)
            self.assertMplusError(r, "INVALID_SIGNATURE", gw.mplus_key("shop1"))
        # The original signature over a changed body.
        good = sign(gw.mplus_key("shop1"), body)
        r = gw.post_mplus("shop1", "completeSession", body.replace(b"sess-bad", b"sess-bae"),
                          signature=good)
        self.assertMplusError(r, "INVALID_SIGNATURE")
        self.assertNothingStored(gw)

    def test_missing_signature(self):
        gw = self.gateway()
        r = gw.post_mplus("shop1", "completeSession", mplus_callback("sess-nosig"),
                          signature=None)
        self.assertMplusError(r, "NO_SIGNATURE", gw.mplus_key("shop1"))
        self.assertNothingStored(gw)

    def test_non_sync_event_is_acknowledged_not_stored(self):
        gw = self.gateway()
        body = mplus_callback("sess-scan")
        body["scanCode"] = {"scannedCode": "8712345678906", "codeType": "EAN13"}
        r = gw.post_mplus("shop1", "scanCode", body)
        self.assertEqual(r.status, 200, r)
        self.assertSignedReply(r, gw.mplus_key("shop1"))
        self.assertNothingStored(gw)

    def test_signed_non_json_is_invalid_json_and_kept_dead(self):
        gw = self.gateway()
        body = b"this is not json {"
        r = gw.post_mplus("shop1", "completeSession", body)
        self.assertMplusError(r, "INVALID_JSON", gw.mplus_key("shop1"))
        evs = gw.events()
        self.assertEqual(len(evs), 1, evs)
        e = evs[0]
        self.assertEqual((e["state"], e["reason"], e["source"], e["connection"]),
                         ("dead", "malformed", "mplus", "shop1"))
        self.assertEqual(gw.show(e["id"])["raw_body"].encode(), body)
        # Again: same answer, nothing new.
        r = gw.post_mplus("shop1", "completeSession", body)
        self.assertMplusError(r, "INVALID_JSON")
        self.assertEqual(len(gw.events()), 1)

    def test_base64_encoded_secret(self):
        raw_key = bytes(range(200, 232))  # not valid UTF-8 text
        secret = base64.b64encode(raw_key).decode()
        gw = self.gateway(connections=[
            gwtest.connection("b64shop", "555", secret, encoding="base64")])
        self.assertEqual(gw.mplus_key("b64shop"), raw_key)
        body = dumps(mplus_callback("sess-b64"))
        # Signed with the secret's text instead of its decoded bytes: refused.
        r = gw.post_mplus("b64shop", "completeSession", body, key=secret.encode())
        self.assertMplusError(r, "INVALID_SIGNATURE", raw_key)
        self.assertNothingStored(gw)
        r = gw.post_mplus("b64shop", "completeSession", body, key=raw_key)
        self.assertEqual(r.status, 200, r)
        self.assertSignedReply(r, raw_key)
        evs = gw.events()
        self.assertEqual([(e["connection"], e["entity_id"]) for e in evs],
                         [("b64shop", "sess-b64")])

    def test_subscription_id(self):
        gw = self.gateway(connections=[
            gwtest.connection("subshop", "556", "sub-secret", subscription_id="sub-0042")])
        body = mplus_callback("sess-sub")
        r = gw.post_mplus("subshop", "completeSession", body,
                          headers={"X-Mplus-Subscription-Id": "sub-0043"})
        self.assertMplusError(r, "INVALID_SUBSCRIPTION_ID", b"sub-secret")
        r = gw.post_mplus("subshop", "completeSession", body)
        self.assertMplusError(r, "NO_SUBSCRIPTION_ID")
        self.assertNothingStored(gw)
        r = gw.post_mplus("subshop", "completeSession", body,
                          headers={"X-Mplus-Subscription-Id": "sub-0042"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(len(gw.events()), 1)

    def test_routing_errors(self):
        gw = self.gateway()
        body = mplus_callback("sess-route")
        r = gw.post_mplus("noshop", "completeSession", body, key=b"x")
        self.assertEqual(r.status, 404, r)
        self.assertEqual(gw.request("GET", "/webhooks/mplus/shop1/completeSession").status, 405)
        self.assertEqual(gw.request("POST", "/webhooks/mplus/shop1", dumps(body),
                                    {"Content-Type": "application/json"}).status, 404)
        r = gw.post_mplus("shop1", "completeSession", body, content_type="text/plain")
        self.assertMplusError(r, "INVALID_CONTENT_TYPE")
        self.assertNothingStored(gw)


class AdminApi(GatewayTestCase):

    def test_token_metrics_and_events(self):
        gw = self.gateway()
        self.assertEqual(gw.post_qbo(fixture("legacy_java_sdk_test_body.json")).status, 200)
        self.assertEqual(gw.post_mplus("shop2", "completeSession",
                                       mplus_callback("sess-admin")).status, 200)

        for path in ("/metrics", "/api/events", "/api/status", "/api/events/1"):  # the page itself: below
            r = gw.admin_get(path, token=None)
            self.assertEqual(r.status, 401, "%s: %r" % (path, r))
            r = gw.admin_get(path, token="Bearer not-the-token")
            self.assertEqual(r.status, 401, "%s: %r" % (path, r))
            r = gw.admin_get(path, token=gw.admin_token)  # no "Bearer "
            self.assertEqual(r.status, 401, "%s: %r" % (path, r))
        self.assertEqual(gw.admin_get("/healthz", token=None).status, 200)

        r = gw.admin_get("/metrics")
        self.assertEqual(r.status, 200, r)
        text = r.body.decode()
        self.assertIn("gateway_webhooks_total", text)
        self.assertIn('gateway_webhooks_total{source="quickbooks",result="accepted"} 1', text)
        self.assertIn('gateway_webhooks_total{source="mplus",result="accepted"} 1', text)
        self.assertIn('gateway_events{state="pending"} 2', text)
        self.assertNotIn(gw.admin_token, text)

        r = gw.admin_get("/api/events")
        self.assertEqual(r.status, 200, r)
        api = r.json()
        self.assertEqual(api, gw.events())
        self.assertEqual(sorted(e["source"] for e in api), ["mplus", "quickbooks"])

        r = gw.admin_get("/api/events?source=mplus")
        self.assertEqual([e["entity_id"] for e in r.json()], ["sess-admin"])

        one = gw.admin_get("/api/events/%d" % api[0]["id"])
        self.assertEqual(one.status, 200, one)
        self.assertEqual(one.json(), gw.show(api[0]["id"]))
        self.assertEqual(gw.admin_get("/api/events/999").status, 404)

        st = gw.admin_get("/api/status")
        self.assertEqual(st.status, 200, st)
        self.assertEqual(st.json()["events"]["pending"], 2)

    def test_events_page_newest_first_and_activity_per_minute(self):
        gw = self.gateway()
        body = json.dumps([gwtest.cloudevent("ce-page-%d" % i, "page-entity-%d" % i, "310687")
                           for i in range(5)]).encode()
        self.assertEqual(gw.post_qbo(body).status, 200)
        every = gw.admin_get("/api/events").json()
        self.assertEqual(len(every), 5)
        ids = [e["id"] for e in every]
        self.assertEqual(ids, sorted(ids, reverse=True))
        first = gw.admin_get("/api/events?limit=2").json()
        self.assertEqual([e["id"] for e in first], ids[:2])
        second = gw.admin_get("/api/events?limit=2&before=%d" % first[-1]["id"]).json()
        self.assertEqual([e["id"] for e in second], ids[2:4])
        last = gw.admin_get("/api/events?limit=2&before=%d" % second[-1]["id"]).json()
        self.assertEqual([e["id"] for e in last], ids[4:])
        self.assertEqual(gw.admin_get("/api/events?before=%d" % ids[-1]).json(), [])
        # Events received per minute over the last hour, every minute listed, by state now.
        activity = gw.admin_get("/api/activity").json()["minutes"]
        self.assertEqual(len(activity), 60)
        self.assertEqual(sum(m["received"] for m in activity), 5)
        self.assertEqual(sum(m["received"] for m in activity[-2:]), 5)
        self.assertEqual(sum(sum(m[s] for s in ("pending", "in_flight", "retrying", "done", "skipped", "dead"))
                             for m in activity), 5)
        self.assertEqual(len(gw.admin_get("/api/activity?minutes=5").json()["minutes"]), 5)
        self.assertEqual(gw.admin_get("/api/activity?minutes=0").status, 400)
        self.assertEqual(gw.admin_get("/api/activity", token=None).status, 401)

    def test_dashboard_page_holds_no_data_and_sets_its_policy(self):
        gw = self.gateway()
        body = json.dumps([gwtest.cloudevent("ce-dash", "dash-entity-77", "310687")]).encode()
        self.assertEqual(gw.post_qbo(body).status, 200)
        for path, ctype in (("/", "text/html"), ("/dashboard.js", "text/javascript"),
                            ("/dashboard.css", "text/css")):
            r = gwtest.request(gw.admin_port, "GET", path)  # no token
            self.assertEqual(r.status, 200, (path, r))
            self.assertIn(ctype, r.headers.get("Content-Type", ""), path)
            self.assertIn("script-src 'self'", r.headers.get("Content-Security-Policy", ""))
            self.assertEqual(r.headers.get("X-Content-Type-Options"), "nosniff")
            page = r.body.decode()
            for data in ("shop2", "310687", "dash-entity-77", gw.admin_token):
                self.assertNotIn(data, page, path)
        # What the page reads needs the token.
        self.assertEqual(gwtest.request(gw.admin_port, "GET", "/api/events").status, 401)
        self.assertEqual(gwtest.request(gw.admin_port, "GET", "/index.htm").status, 401)
        self.assertEqual(gw.request("GET", "/dashboard.js").status, 404)  # public listener

    @unittest.skipUnless(os.path.exists(CHROMIUM), "needs Debian's chromium")
    def test_dashboard_in_a_real_browser_shows_events_as_text_only_with_the_token(self):
        gw = self.gateway()
        hostile = '<img src=x onerror=document.title="owned">'
        body = json.dumps([gwtest.cloudevent("ce-dash", hostile, "310687")]).encode()
        self.assertEqual(gw.post_qbo(body).status, 200)
        base = "http://%s:%d/" % (gwtest.HOST, gw.admin_port)

        dom = browse(base + "#token=" + gw.admin_token)
        counts = re.search(r'<td class="pending" data-state="pending">(\d+)</td>', dom)
        self.assertIsNotNone(counts, dom)
        self.assertEqual(int(counts.group(1)), gw.status()["events"]["pending"])
        self.assertIn('data-connection="shop2"', dom)
        self.assertIn("&lt;img src=x onerror=", dom)  # the entity id, as text
        self.assertNotIn("<img", dom)
        self.assertNotIn("owned", re.search(r"<title>(.*?)</title>", dom).group(1))
        self.assertIn('<main id="data">', dom)  # shown

        for url in (base, base + "#token=wrong-" + gw.admin_token):
            dom = browse(url)
            self.assertIn('<main id="data" hidden="">', dom, url)
            self.assertNotIn("shop2", dom, url)
            self.assertNotIn("onerror", dom, url)
        self.assertIn("refused", browse(base + "#token=wrong"))


class Lifecycle(GatewayTestCase):

    def test_sigterm_exits_zero_and_events_survive_restart(self):
        gw = self.gateway()
        self.assertEqual(gw.post_qbo(fixture("legacy_java_sdk_test_body.json")).status, 200)
        self.assertEqual(gw.post_qbo(fixture("cloudevents_customer_created_intuit_sample.json"))
                         .status, 200)
        self.assertEqual(gw.post_mplus("shop1", "completeSession",
                                       mplus_callback("sess-restart")).status, 200)
        before = gw.events()
        self.assertEqual(len(before), 3)
        self.assertEqual(gw.stop(), 0)
        # The CLI reads the store with no daemon running, too.
        self.assertEqual(gw.events(), before)
        gw.start()
        self.assertEqual(gw.events(), before)
        # Dedupe survives the restart; new events get new ids.
        self.assertEqual(gw.post_qbo(fixture("legacy_java_sdk_test_body.json")).status, 200)
        self.assertEqual(gw.events(), before)
        self.assertEqual(gw.post_qbo(fixture("cloudevents_dotnet_sdk_test_class_created.json"))
                         .status, 200)
        after = gw.events()
        self.assertEqual(len(after), 4)
        self.assertGreater(after[0]["id"], max(e["id"] for e in before))
        self.assertEqual(gw.stop(), 0)

    def test_sigterm_does_not_wait_for_idle_keepalive_connections(self):
        gw = self.gateway()
        conn = http.client.HTTPConnection(gwtest.HOST, gw.port, timeout=10)
        self.addCleanup(conn.close)
        body = fixture("legacy_java_sdk_test_body.json")
        conn.request("POST", "/webhooks/quickbooks", body, {
            "Content-Type": "application/json",
            "intuit-signature": sign(gw.verifier_token, body)})
        r = conn.getresponse()
        r.read()
        self.assertEqual(r.status, 200)
        self.assertFalse(r.will_close)
        t0 = time.monotonic()
        self.assertEqual(gw.stop(), 0)
        self.assertLess(time.monotonic() - t0, 5.0, "SIGTERM waited for an idle connection")

    def test_sigint_exits_zero(self):
        gw = self.gateway()
        gw.proc.send_signal(2)
        self.assertEqual(gw.proc.wait(gwtest.STOP_TIMEOUT), 0, gw.log_tail())


class Storage(GatewayTestCase):

    def big_ce(self, i, size=150000):
        return dumps([cloudevent("big-%d" % i, str(i), "310687", data={"pad": "z" * size})])

    def test_map_grows_without_losing_a_request(self):
        gw = self.gateway(max_body_bytes=1 << 20,
                          extra={"storage": {"map_size_mb": 1, "map_max_mb": 64}})
        for i in range(30):  # about 4.5 MB into a 1 MiB initial map
            r = gw.post_qbo(self.big_ce(i))
            self.assertEqual(r.status, 200, "post %d: %r\n%s" % (i, r, gw.log_tail()))
        self.assertEqual(len(gw.events()), 30)
        self.assertEqual(gw.status()["events"]["pending"], 30)

    def test_store_full_is_503_and_nothing_acknowledged_is_lost(self):
        gw = self.gateway(max_body_bytes=1 << 20,
                          extra={"storage": {"map_size_mb": 1, "map_max_mb": 1}})
        answers = {}
        for i in range(12):  # 1.8 MB cannot fit in 1 MiB
            answers[i] = gw.post_qbo(self.big_ce(i)).status
        self.assertEqual(set(answers.values()), {200, 503}, answers)
        ok = {str(i) for i, st in answers.items() if st == 200}
        self.assertEqual({e["entity_id"] for e in gw.events()}, ok)
        # The daemon stays up, says so, and takes what still fits.
        self.assertEqual(gw.request("GET", "/healthz").status, 200)
        self.assertEqual(gw.post_qbo(fixture("legacy_java_sdk_test_body.json")).status, 200)
        self.assertEqual(len(gw.events()), len(ok) + 1)
        metrics = gw.admin_get("/metrics").body.decode()
        self.assertIn('gateway_webhooks_total{source="quickbooks",result="unavailable"} %d'
                      % (12 - len(ok)), metrics)


class Logging(GatewayTestCase):

    def test_log_is_json_lines_without_secrets(self):
        gw = self.gateway(extra={"log": {"level": "debug"}})
        body = fixture("legacy_java_sdk_test_body.json")
        gw.post_qbo(body)
        gw.post_qbo(body, signature="bad")
        gw.post_qbo(b'{"eventNotifications": [')
        gw.post_qbo(body, signature=None,
                    headers={"X-Forwarded-For": '1.2.3.4", "level": "forged\\'})
        gw.post_mplus("shop1", "completeSession", mplus_callback("sess-log"))
        gw.post_mplus("shop1", "completeSession", mplus_callback("sess-log2"), signature="bad")
        gw.admin_get("/metrics", token="Bearer wrong")
        gw.stop()
        recs = gw.log_records()
        self.assertGreater(len(recs), 5)
        for r in recs:
            self.assertTrue({"ts", "level", "msg"} <= set(r), r)
            self.assertIn(r["level"], ("debug", "info", "warn", "error"), r)
            self.assertRegex(r["ts"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        text = gw.log_text()
        for secret in (gw.verifier_token, gw.admin_token, "shop1-mplus-webhook-secret",
                       "shop2-mplus-webhook-secret"):
            self.assertNotIn(secret, text)
        self.assertTrue(any(r.get("event_id") for r in recs), "no line names an event_id")
        self.assertTrue(any(r.get("connection") == "shop1" for r in recs),
                        "no line names its connection")


class ConfigErrors(GatewayTestCase):

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="gwtest-cfg-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        port, admin = gwtest.free_ports(2)
        self.base = gwtest.config_text("127.0.0.1:%d" % port, "127.0.0.1:%d" % admin,
                                       os.path.join(self.dir, "store")).splitlines()
        self.path = os.path.join(self.dir, "gateway.ini")

    def write(self, after_prefix, line):
        """Insert line right after the first line starting with after_prefix;
        return its 1-based line number."""
        lines = list(self.base)
        i = next(k for k, l in enumerate(lines) if l.startswith(after_prefix)) + 1
        lines.insert(i, line)
        with open(self.path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return i + 1

    def test_unknown_key(self):
        lineno = self.write("[server]", "listen_backlog = 128")
        for cmd in ("serve", "check-config", "events"):
            p = gwtest.run_gateway_command(self.path, cmd)
            err = p.stderr.decode()
            self.assertEqual(p.returncode, 2, "%s: %s" % (cmd, err))
            self.assertIn("%s:%d" % (self.path, lineno), err)
            self.assertIn("listen_backlog", err)
        self.assertFalse(os.path.exists(os.path.join(self.dir, "store")),
                         "a bad config must stop before the store is opened")

    def test_unset_environment_variable(self):
        var = "GWTEST_SURELY_UNSET_VARIABLE"
        env = dict(os.environ)
        env.pop(var, None)
        lineno = self.write("[quickbooks]", "client_secret = ${%s}" % var)
        p = gwtest.run_gateway_command(self.path, "serve", env=env)
        err = p.stderr.decode()
        self.assertEqual(p.returncode, 2, err)
        self.assertIn(var, err)
        self.assertIn("%s:%d" % (self.path, lineno), err)
        self.assertIn("client_secret", err)
        # Set, it is accepted, and check-config masks it.
        env[var] = "s3cr3t-value"
        p = gwtest.run_gateway_command(self.path, "check-config", env=env)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertNotIn(b"s3cr3t-value", p.stdout + p.stderr)
        self.assertIn(b"client_secret = ********", p.stdout)

    def test_bad_value(self):
        lineno = self.write("[server]", "timeout_s = forever")
        p = gwtest.run_gateway_command(self.path, "serve")
        err = p.stderr.decode()
        self.assertEqual(p.returncode, 2, err)
        self.assertIn("%s:%d" % (self.path, lineno), err)
        self.assertIn("timeout_s", err)

    def test_shipped_config_is_valid_with_its_variables_set(self):
        shipped = os.path.normpath(os.path.join(gwtest.HERE, "..", "..", "gateway.ini"))
        if not os.path.exists(shipped):
            self.skipTest("no gateway.ini next to tests/")
        env = dict(os.environ)
        with open(shipped) as f:
            text = f.read()
        for var in set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", text)):
            env[var] = "x"
        p = gwtest.run_gateway_command(shipped, "check-config", env=env)
        self.assertEqual(p.returncode, 0, p.stderr)


if __name__ == "__main__":
    gwtest.main()
