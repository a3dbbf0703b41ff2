#!/usr/bin/env python3
"""Crash test: nothing acknowledged is lost, nothing is stored twice.

Eight client threads post 2,000 distinct signed CloudEvents webhooks over
keep-alive connections. When the 700th has been acknowledged the daemon is
SIGKILLed mid-stream; requests that fail from then on count as not
acknowledged. After a restart on the same store every acknowledged webhook
must be there exactly once. Then all 2,000 are posted again, each twice and
concurrently: the store ends with exactly 2,000 distinct events.

A second case sends SIGTERM under the same load: the daemon must drain (answer
every request it stored) and exit 0.

    python3 tests/integration/test_crash.py /path/to/gateway [unittest args]
"""

import collections
import http.client
import os
import queue
import re
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gwtest  # noqa: E402
from gwtest import GatewayTestCase, cloudevent, dumps, sign  # noqa: E402

N = 2000
THREADS = 8
KILL_AFTER = 700
REALM = "310687"  # shop2 in the default connections


def entity_id(i):
    return str(500000 + i)


def body(i):
    return dumps([cloudevent("crash-%05d" % i, entity_id(i), REALM,
                             type_="qbo.invoice.updated.v1",
                             time_="2026-01-02T03:04:05.%03dZ" % (i % 1000))])


class Blast:
    """Post bodies[i] for every i in indices from THREADS keep-alive clients;
    the client that receives the kill_after-th 200 sends kill_signal to
    kill_pid at once."""

    def __init__(self, port, bodies, token, indices, kill_after=None, kill_pid=None,
                 kill_signal=signal.SIGKILL):
        self.port = port
        self.bodies = bodies
        self.token = token
        self.todo = queue.Queue()
        for i in indices:
            self.todo.put(i)
        self.kill_after = kill_after
        self.kill_pid = kill_pid
        self.kill_signal = kill_signal
        self.lock = threading.Lock()
        self.acked = set()       # got 200
        self.oks = 0             # number of 200 answers
        self.status = {}         # i -> other HTTP status
        self.errors = {}         # i -> exception text (not acknowledged)
        self.killed_at = None    # number of 200s when the signal was sent
        self.reused = 0          # requests sent on an already used connection

    def _one(self, conn, i):
        b = self.bodies[i]
        conn.request("POST", "/webhooks/quickbooks", body=b, headers={
            "Content-Type": "application/cloudevents+json",
            "intuit-signature": sign(self.token, b),
        })
        r = conn.getresponse()
        r.read()
        return r.status, r.will_close

    def _worker(self):
        conn, used = None, 0
        while True:
            try:
                i = self.todo.get_nowait()
            except queue.Empty:
                break
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(gwtest.HOST, self.port, timeout=15)
                    used = 0
                status, will_close = self._one(conn, i)
                used += 1
            except (OSError, http.client.HTTPException) as e:
                with self.lock:
                    self.errors[i] = repr(e)
                if conn is not None:
                    conn.close()
                conn = None
                continue
            with self.lock:
                if used > 1:
                    self.reused += 1
                if status == 200:
                    self.acked.add(i)
                    self.oks += 1
                    if (self.kill_after is not None and self.killed_at is None
                            and len(self.acked) >= self.kill_after):
                        os.kill(self.kill_pid, self.kill_signal)
                        self.killed_at = len(self.acked)
                else:
                    self.status[i] = status
            if will_close:
                conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def run(self):
        threads = [threading.Thread(target=self._worker, daemon=True) for _ in range(THREADS)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
            if t.is_alive():
                raise AssertionError("a client thread hung")
        self.seconds = time.monotonic() - t0
        return self


class CrashTest(GatewayTestCase):
    """With the default inbox threshold: at this load most commits index
    their webhooks before answering."""

    EXTRA = None

    def count_by_entity_id(self, gw):
        gw.settle()
        evs = gw.events()
        return evs, collections.Counter(e["entity_id"] for e in evs)

    def test_sigkill_loses_no_acknowledged_webhook(self):
        gw = self.gateway(extra=self.EXTRA)
        bodies = [body(i) for i in range(N)]
        wanted = {entity_id(i): i for i in range(N)}
        self.assertEqual(len(set(bodies)), N)

        # Phase 1: post until KILL_AFTER are acknowledged, then SIGKILL.
        b1 = Blast(gw.port, bodies, gw.verifier_token, range(N), KILL_AFTER, gw.proc.pid).run()
        rc = gw.proc.wait(10)
        gw.kill()
        self.assertEqual(rc, -signal.SIGKILL, "the daemon was not killed by SIGKILL\n"
                         + gw.log_tail())
        self.assertIsNotNone(b1.killed_at, "never reached %d acknowledgements: %d OK, "
                             "statuses %s, errors %s" % (KILL_AFTER, len(b1.acked),
                                                         collections.Counter(b1.status.values()),
                                                         list(b1.errors.values())[:3]))
        self.assertEqual(b1.status, {}, "unexpected non-200 answers before the kill")
        self.assertGreater(b1.reused, 0, "keep-alive connections were not reused")
        self.assertTrue(b1.errors, "no request failed: the kill did not happen mid-stream")
        self.assertEqual(len(b1.acked) + len(b1.errors), N)
        sys.stderr.write("\n  phase 1: %d acknowledged (kill at %d), %d failed, %.1f s\n"
                         % (len(b1.acked), b1.killed_at, len(b1.errors), b1.seconds))

        # Restart on the same store: every acknowledged webhook is there once.
        gw.start()
        evs, counts = self.count_by_entity_id(gw)
        twice = {k: n for k, n in counts.items() if n > 1}
        self.assertEqual(twice, {}, "events stored more than once")
        missing = sorted(i for i in b1.acked if counts[entity_id(i)] != 1)
        self.assertEqual(missing, [], "%d acknowledged webhooks lost after SIGKILL"
                         % len(missing))
        strangers = [e for e in evs if e["entity_id"] not in wanted]
        self.assertEqual(strangers, [])
        for e in evs:
            self.assertEqual((e["state"], e["connection"], e["entity"], e["operation"]),
                             ("pending", "shop2", "Invoice", "Update"), e)
        self.assertEqual(len({e["id"] for e in evs}), len(evs), "event ids repeat")
        self.assertEqual(gw.status()["events"]["pending"], len(evs))
        sys.stderr.write("  after restart: %d stored (%d more than acknowledged)\n"
                         % (len(evs), len(evs) - len(b1.acked)))

        # Phase 2: everything again, each body twice in a row so that the two
        # copies are in flight together (often in one group commit).
        # Duplicates are acknowledged, not stored.
        b2 = Blast(gw.port, bodies, gw.verifier_token, [i for i in range(N) for _ in "ab"]).run()
        self.assertEqual((b2.oks, b2.status, b2.errors), (2 * N, {}, {}),
                         "every re-post must get 200")
        evs, counts = self.count_by_entity_id(gw)
        self.assertEqual(len(evs), N)
        self.assertEqual(set(counts), set(wanted))
        self.assertEqual(max(counts.values()), 1)
        self.assertEqual(gw.status()["events"]["pending"], N)
        sys.stderr.write("  phase 2: %d posts in %.1f s; %d distinct events\n"
                         % (2 * N, b2.seconds, len(evs)))
        self.assertEqual(gw.stop(), 0)

    def test_sigterm_under_load_drains(self):
        """SIGTERM while clients are posting: exit 0, and every request whose
        events were stored got its answer (the drain finishes the requests
        in flight; it does not drop their replies)."""
        gw = self.gateway(extra=self.EXTRA)
        n = 1000
        bodies = [body(i) for i in range(n)]
        b = Blast(gw.port, bodies, gw.verifier_token, range(n), 300, gw.proc.pid,
                  signal.SIGTERM).run()
        self.assertIsNotNone(b.killed_at, "never reached 300 acknowledgements")
        self.assertEqual(gw.stop(send=False), 0)
        # Answers other than 200 while draining: only 503 (retry later).
        self.assertEqual(set(b.status.values()) - {503}, set(), b.status)
        gw.start()
        evs, counts = self.count_by_entity_id(gw)
        self.assertEqual({k: c for k, c in counts.items() if c > 1}, {})
        stored = {int(k) - 500000 for k in counts}
        self.assertEqual(sorted(b.acked - stored), [], "acknowledged but not stored")
        self.assertEqual(sorted(stored & set(b.status)), [], "answered 503 but stored")
        unanswered = sorted(stored - b.acked)
        self.assertEqual(unanswered, [], "stored, but the client got no answer before the "
                         "daemon exited: %s"
                         % ["%d: %s" % (i, b.errors.get(i)) for i in unanswered])


class CrashTestInbox(CrashTest):
    """Every webhook answered from the inbox, and the inbox worked on only
    after a minute of quiet, that is by a restart: the kill leaves every
    committed body there, and the restart must turn them into events, each
    once, before it accepts anything."""

    EXTRA = {"storage": {"index_inline_max": 0, "inbox_quiet_ms": 60000}}
    TURNING = r"turning [1-9][0-9]* webhooks accepted before the last stop"

    def count_by_entity_id(self, gw):
        turned = len(re.findall(self.TURNING, gw.log_text()))
        self.assertGreaterEqual(turned, 1, "the restart found nothing in the inbox")
        if gw.status()["inbox"] > 0:
            self.assertEqual(gw.stop(), 0)
            gw.start()
            self.assertEqual(len(re.findall(self.TURNING, gw.log_text())), turned + 1)
        self.assertEqual(gw.status()["inbox"], 0)
        return super().count_by_entity_id(gw)


if __name__ == "__main__":
    gwtest.main()
