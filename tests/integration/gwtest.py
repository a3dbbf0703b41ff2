"""gwtest - helpers for the gateway's integration tests.

Starts the real daemon (`gateway serve`) on free loopback ports with a
throw-away config and store, signs and posts webhooks to it, and reads the
store back through the CLI (`events --json`, `show --json`, `status --json`).
Python 3 standard library only.

The binary comes from the first command-line argument of a test file
(`python3 tests/integration/test_x.py /path/to/gateway [unittest args]`) or
from $GATEWAY_BIN. Set GWTEST_KEEP=1 to keep the temporary directories
(config, store, daemon log) for a look after a failure.
"""

import atexit
import base64
import hashlib
import hmac
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
# The QuickBooks webhook fixtures (copied unchanged from shared/fixtures).
FIXTURES = os.path.normpath(os.path.join(HERE, "..", "fixtures", "quickbooks", "webhooks"))

HOST = "127.0.0.1"
START_TIMEOUT = 10.0  # seconds for /healthz to answer after start
STOP_TIMEOUT = 15.0   # seconds for a SIGTERM drain
CLI_TIMEOUT = 60.0

# Defaults written into every test config (literal values, no ${ENV}).
VERIFIER_TOKEN = "b5771f19b12ddb4bcdb9f08bdc50bc63878a"  # the Java SDK vector's token
ADMIN_TOKEN = "test-admin-token-0123456789"

# Every daemon started here, so none outlives the test run.
_live = set()


def _kill_all():
    for p in list(_live):
        if p.poll() is None:
            try:
                p.kill()
                p.wait(5)
            except Exception:
                pass
    _live.clear()


atexit.register(_kill_all)


def _die_with_parent():
    """In the child before exec: get SIGKILL if the test runner dies (Linux)."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


# ---- binary, fixtures, signatures ------------------------------------------


def gateway_bin():
    path = os.environ.get("GATEWAY_BIN")
    if not path:
        raise RuntimeError("no gateway binary: pass it as the first argument or set GATEWAY_BIN")
    path = os.path.abspath(path)  # the daemon and the CLI run in a temp directory
    if not os.access(path, os.X_OK):
        raise RuntimeError("gateway binary %s is not executable" % path)
    return path


def fixture(name):
    """A fixture file's exact bytes."""
    with open(os.path.join(FIXTURES, name), "rb") as f:
        return f.read()


def signature_vectors():
    """The SDK signature vectors by name."""
    data = json.loads(fixture("signature_vectors.json"))
    return {v["name"]: v for v in data["vectors"]}


def sign(key, body):
    """base64(HMAC-SHA256(key, body)) as str; key and body str or bytes."""
    if isinstance(key, str):
        key = key.encode()
    if isinstance(body, str):
        body = body.encode()
    return base64.b64encode(hmac.new(key, body, hashlib.sha256).digest()).decode()


def free_ports(n):
    """n distinct free loopback TCP ports (bound to port 0, then released)."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def cloudevent(ce_id, entity_id, realm, type_="qbo.customer.created.v1",
               time_="2025-09-10T21:31:25.179Z", data=None):
    """One CloudEvent object as Intuit sends it."""
    return {
        "specversion": "1.0",
        "id": ce_id,
        "source": "intuit.gwtest",
        "type": type_,
        "datacontenttype": "application/json",
        "time": time_,
        "intuitentityid": entity_id,
        "intuitaccountid": realm,
        "data": {} if data is None else data,
    }


def mplus_callback(session_id, counter=1, instance_id="inst-7f3a", event_ts="2025-11-03T14:21:08+01:00",
                   blocking=False):
    """A realistic MplusKASSA completeSession callback body (dict)."""
    return {
        "event": {
            "eventBlocking": blocking,
            "eventCounter": counter,
            "eventTimestamp": event_ts,
        },
        "sender": {
            "branchNumber": 1,
            "workplaceNumber": 2,
            "instanceId": instance_id,
        },
        "session": {
            "sessionId": session_id,
            "lines": [{
                "lineId": "b1c9c3e6-5c3f-4d0c-9d7e-1f2a3b4c5d6e",
                "articleNumber": 1001,
                "text": "Koffie",
                "priceIncl": 2.50,
                "quantity": 2,
            }],
            "totalInclAmount": 5.00,
        },
        "completeSession": {
            "payments": [{"method": "CASH", "amount": 5.00}],
        },
    }


def dumps(obj):
    """Compact JSON bytes, the way a sender would put them on the wire."""
    return json.dumps(obj, separators=(",", ":")).encode()


# ---- HTTP -----------------------------------------------------------------


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # http.client.HTTPMessage (case-insensitive get)
        self.body = body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<Response %d %r>" % (self.status, self.body[:200])


def request(port, method, path, body=None, headers=None, timeout=10.0):
    """One request on a fresh connection; returns a Response."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return Response(r.status, r.headers, r.read())
    finally:
        conn.close()


# ---- config ---------------------------------------------------------------


def connection(name, realm_id, webhook_secret="", encoding="raw", subscription_id="", flows=None,
               **keys):
    """One [connection.NAME] section. flows: the `flows` key (omitted when
    None); further keyword arguments become keys of the section as given."""
    c = {
        "name": name,
        "realm_id": realm_id,
        "mplus_webhook_secret": webhook_secret,
        "mplus_webhook_secret_encoding": encoding,
        "mplus_subscription_id": subscription_id,
    }
    if flows is not None:
        c["flows"] = flows
    c.update(keys)
    return c


# Keys every connection section gets (empty when the dict has none).
_CONNECTION_KEYS = ("realm_id", "mplus_webhook_secret", "mplus_webhook_secret_encoding",
                    "mplus_subscription_id")


DEFAULT_CONNECTIONS = [
    # realm of the Java SDK legacy fixture
    connection("shop1", "1185883450", "shop1-mplus-webhook-secret"),
    # realm of the Intuit CloudEvents samples
    connection("shop2", "310687", "shop2-mplus-webhook-secret"),
]


def config_text(listen, admin_listen, storage_path, verifier_token=VERIFIER_TOKEN,
                admin_token=ADMIN_TOKEN, connections=None, max_body_bytes=None,
                extra=None):
    """The text of a complete gateway.ini. extra: {section: {key: value}} for
    further keys of [server], [storage], [quickbooks], [dispatch] or [log], or
    whole further sections ([alerts]).
    Delivery is paused unless extra["dispatch"] says otherwise, so ingress
    tests see events exactly as they were stored."""
    extra = extra or {}
    lines = [
        "; written by tests/integration/gwtest.py",
        "[server]",
        "listen = %s" % listen,
        "admin_listen = %s" % admin_listen,
        "admin_token = %s" % admin_token,
    ]
    if max_body_bytes is not None:
        lines.append("max_body_bytes = %d" % max_body_bytes)
    lines += ["%s = %s" % kv for kv in extra.get("server", {}).items()]
    lines += ["", "[storage]", "path = %s" % storage_path]
    lines += ["%s = %s" % kv for kv in extra.get("storage", {}).items()]
    lines += ["", "[quickbooks]", "verifier_token = %s" % verifier_token]
    lines += ["%s = %s" % kv for kv in extra.get("quickbooks", {}).items()]
    dispatch = {"enabled": "false"}
    dispatch.update(extra.get("dispatch", {}))
    lines += ["", "[dispatch]"] + ["%s = %s" % kv for kv in dispatch.items()]
    lines += ["", "[log]"]
    log = {"level": "info"}
    log.update(extra.get("log", {}))
    lines += ["%s = %s" % kv for kv in log.items()]
    for section in sorted(set(extra) - {"server", "storage", "quickbooks", "dispatch", "log"}):
        lines += ["", "[%s]" % section] + ["%s = %s" % kv for kv in extra[section].items()]
    for c in DEFAULT_CONNECTIONS if connections is None else connections:
        lines += ["", "[connection.%s]" % c["name"]]
        for k in _CONNECTION_KEYS:
            lines.append("%s = %s" % (k, c.get(k, "")))
        # Any other key given (flows, mplus_url, ...), in the order given.
        for k, v in c.items():
            if k != "name" and k not in _CONNECTION_KEYS:
                lines.append("%s = %s" % (k, v))
    return "\n".join(lines) + "\n"


# ---- simulators ---------------------------------------------------------------


class SimProcess:
    """A simulator subprocess that prints READY <port>; its stderr goes to a file."""

    def __init__(self, name, argv, call_timeout=10.0):
        self.name = name
        self.call_timeout = call_timeout
        self.dir = tempfile.mkdtemp(prefix="gwtest-%s-" % name)
        self.log_path = os.path.join(self.dir, name + ".log")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=log, text=True,
                                         preexec_fn=_die_with_parent)
        line = self.proc.stdout.readline()
        if not line.startswith("READY "):
            self.proc.kill()
            with open(self.log_path) as f:
                raise RuntimeError("%s did not start: %r\n%s" % (name, line, f.read()))
        self.port = int(line.split()[1])
        self.base = "http://%s:%d" % (HOST, self.port)

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.proc.stdout.close()
        if os.environ.get("GWTEST_KEEP"):
            sys.stderr.write("gwtest: kept %s\n" % self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        r = request(self.port, method, path, data,
                           {"Content-Type": "application/json"} if data is not None else {},
                           timeout=self.call_timeout)
        if r.status != 200:
            raise AssertionError("%s %s %s: %r" % (self.name, method, path, r))
        return r.json()


class QboSim(SimProcess):
    """tests/sim/qbo_sim.py for one realm, and the control API calls the tests share."""

    SCRIPT = os.path.normpath(os.path.join(HERE, "..", "sim", "qbo_sim.py"))

    def __init__(self, realm, client_id, client_secret):
        self.realm = realm
        super().__init__("qbo_sim", [
            sys.executable, self.SCRIPT, "--port", "0", "--realm", realm,
            "--client-id", client_id, "--client-secret", client_secret,
            "--verifier-token", VERIFIER_TOKEN])

    def reset(self):
        self.call("POST", "/_sim/reset")

    def config(self, **settings):
        return self.call("POST", "/_sim/config", settings)

    def fault(self, kind, count=1, path_contains=None, delay_ms=0):
        rule = {"kind": kind, "count": count, "delay_ms": delay_ms}
        if path_contains is not None:
            rule["path_contains"] = path_contains
        self.call("POST", "/_sim/fault", rule)

    def refresh_token(self):
        return self.call("POST", "/_sim/token", {"realm": self.realm})["refresh_token"]

    def entity(self, entity, obj, operation=None):
        """A change in the QuickBooks UI (sends a webhook); the stored object."""
        body = {"realm": self.realm, "entity": entity, "object": obj}
        if operation:
            body["operation"] = operation
        return self.call("POST", "/_sim/entity", body)

    def entities(self, entity):
        return self.call("GET", "/_sim/entities?realm=%s&entity=%s" % (self.realm, entity))

    def requests(self):
        return self.call("GET", "/_sim/requests")

    def api(self, method=None, contains=None, since=0):
        """Accounting API requests from the log (from index since on), filtered by
        method and by a substring of the path."""
        return [r for r in self.requests()[since:]
                if r["path"].startswith("/v3/company/")
                and (not method or r["method"] == method)
                and (not contains or contains in r["path"])]


# ---- the daemon -------------------------------------------------------------


def start_simulators(*factories):
    """Starts each simulator in turn; if one fails, closes those already started."""
    sims = []
    try:
        for make in factories:
            sims.append(make())
    except Exception:
        close_simulators(*sims)
        raise
    return sims


def close_simulators(*sims):
    for sim in sims:
        if sim is not None:
            sim.close()


class GatewayError(AssertionError):
    pass


class Gateway:
    """One daemon with its own config, store and log in a temporary directory.

    gw = Gateway(); gw.start(); ... gw.stop()   (or use close() in cleanups)

    extra is a dict as for config_text, or a function of the Gateway giving
    one; the function runs on every start, after the ports are chosen, so
    values can name them (gw.port, gw.admin_port).
    """

    def __init__(self, connections=None, verifier_token=VERIFIER_TOKEN, admin_token=ADMIN_TOKEN,
                 max_body_bytes=None, extra=None, workdir=None):
        self.bin = gateway_bin()
        self.own_dir = workdir is None
        self.dir = workdir or tempfile.mkdtemp(prefix="gwtest-")
        self.config_path = os.path.join(self.dir, "gateway.ini")
        self.store_path = os.path.join(self.dir, "store")
        self.log_path = os.path.join(self.dir, "gateway.log")
        self.connections = DEFAULT_CONNECTIONS if connections is None else connections
        self.verifier_token = verifier_token
        self.admin_token = admin_token
        self.max_body_bytes = max_body_bytes
        self.extra = extra
        self.proc = None
        self.port = self.admin_port = None
        self.starts = 0

    # -- lifecycle --

    def _write_config(self):
        self.port, self.admin_port = free_ports(2)
        text = config_text("%s:%d" % (HOST, self.port), "%s:%d" % (HOST, self.admin_port),
                           self.store_path, self.verifier_token, self.admin_token,
                           self.connections, self.max_body_bytes,
                           self.extra(self) if callable(self.extra) else self.extra)
        with open(self.config_path, "w") as f:
            f.write(text)

    def start(self):
        """Start `gateway serve` and wait until /healthz answers 200."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        for attempt in range(3):
            # New ports on every start: a port picked earlier may be taken now.
            self._write_config()
            log = open(self.log_path, "ab")
            log_start = log.tell()
            try:
                self.proc = subprocess.Popen([self.bin, "-c", self.config_path, "serve"],
                                             stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                             cwd=self.dir, preexec_fn=_die_with_parent)
            finally:
                log.close()
            _live.add(self.proc)
            self.starts += 1
            if self._wait_healthy():
                return self
            rc = self.proc.poll()
            if rc is None:
                self.kill()
                raise GatewayError("gateway did not answer /healthz within %.0f s\n%s"
                                   % (START_TIMEOUT, self.log_tail()))
            _live.discard(self.proc)
            with open(self.log_path, "rb") as f:
                f.seek(log_start)
                lost_port = b"cannot listen" in f.read()
            if lost_port and attempt < 2:
                continue  # lost a port race; try other ports
            raise GatewayError("gateway exited with %s during start\n%s" % (rc, self.log_tail()))
        raise GatewayError("gateway could not start")

    def _wait_healthy(self):
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                r = request(self.port, "GET", "/healthz", timeout=2)
                if r.status == 200:
                    return True
            except OSError:
                pass
            time.sleep(0.02)
        return False

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, expect_rc=0, send=True):
        """SIGTERM, wait for the drain, and check the exit status. send=False:
        the signal was sent already, only wait (a second SIGTERM is not part
        of a normal stop)."""
        if self.proc is None:
            return None
        p = self.proc
        if send and p.poll() is None:
            p.send_signal(signal.SIGTERM)
        try:
            rc = p.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
            _live.discard(p)
            raise GatewayError("gateway did not exit within %.0f s of SIGTERM\n%s"
                               % (STOP_TIMEOUT, self.log_tail()))
        _live.discard(p)
        if expect_rc is not None and rc != expect_rc:
            raise GatewayError("gateway exited with %d after SIGTERM, expected %d\n%s"
                               % (rc, expect_rc, self.log_tail()))
        return rc

    def kill(self):
        """SIGKILL: no drain, no cleanup in the daemon."""
        if self.proc is None:
            return None
        p = self.proc
        if p.poll() is None:
            p.kill()
        rc = p.wait(10)
        _live.discard(p)
        return rc

    def close(self):
        """For cleanups: stop a running daemon (exit 0 expected) and remove the files."""
        try:
            if self.running():
                self.stop()
        finally:
            if self.running():
                self.kill()
            if self.own_dir:
                if os.environ.get("GWTEST_KEEP"):
                    sys.stderr.write("gwtest: kept %s\n" % self.dir)
                else:
                    shutil.rmtree(self.dir, ignore_errors=True)

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_records(self):
        """The log as parsed JSON objects, one per line (raises on a bad line)."""
        out = []
        for n, line in enumerate(self.log_text().splitlines(), 1):
            try:
                out.append(json.loads(line))
            except ValueError:
                raise GatewayError("log line %d is not JSON: %r" % (n, line))
        return out

    def log_tail(self, n=40):
        return "--- gateway log (%s) ---\n%s" % (
            self.log_path, "\n".join(self.log_text().splitlines()[-n:]))

    # -- HTTP --

    def request(self, method, path, body=None, headers=None, admin=False, timeout=10.0):
        return request(self.admin_port if admin else self.port, method, path, body, headers,
                       timeout)

    def post_qbo(self, body, signature=True, content_type="application/json", token=None,
                 headers=None):
        """POST /webhooks/quickbooks. signature: True = sign with the verifier
        token (or token), a str = send that header value, None = no header."""
        if isinstance(body, str):
            body = body.encode()
        h = {}
        if content_type is not None:
            h["Content-Type"] = content_type
        if signature is True:
            h["intuit-signature"] = sign(token or self.verifier_token, body)
        elif signature is not None:
            h["intuit-signature"] = signature
        h.update(headers or {})
        return self.request("POST", "/webhooks/quickbooks", body, h)

    def mplus_key(self, name):
        """The HMAC key of a connection's Mplus callbacks, as bytes."""
        for c in self.connections:
            if c["name"] == name:
                secret = c["mplus_webhook_secret"]
                if c.get("mplus_webhook_secret_encoding") == "base64":
                    return base64.b64decode(secret)
                return secret.encode()
        raise KeyError(name)

    def post_mplus(self, conn_name, event, body, signature=True, key=None,
                   content_type="application/json", headers=None):
        """POST /webhooks/mplus/NAME/EVENT. signature as in post_qbo; key
        defaults to the connection's configured key."""
        if isinstance(body, (dict, list)):
            body = dumps(body)
        if isinstance(body, str):
            body = body.encode()
        h = {"Accept": "application/json"}
        if content_type is not None:
            h["Content-Type"] = content_type
        if signature is True:
            h["X-Mplus-Signature"] = sign(key if key is not None else self.mplus_key(conn_name),
                                          body)
        elif signature is not None:
            h["X-Mplus-Signature"] = signature
        h.update(headers or {})
        return self.request("POST", "/webhooks/mplus/%s/%s" % (conn_name, event), body, h)

    def admin_get(self, path, token=True):
        h = {}
        if token is True:
            h["Authorization"] = "Bearer " + self.admin_token
        elif token:
            h["Authorization"] = token
        return self.request("GET", path, headers=h, admin=True)

    def metric(self, name):
        """The value of an unlabelled counter in /metrics (0 when absent)."""
        for line in self.admin_get("/metrics").body.decode().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == name:
                return float(parts[1])
        return 0.0

    # -- CLI --

    def cli(self, *args, check=True):
        """Run `gateway -c CONFIG ARGS...`; returns the CompletedProcess."""
        env = dict(os.environ)
        env.pop("GATEWAY_CONFIG", None)
        p = subprocess.run([self.bin, "-c", self.config_path] + list(args),
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, cwd=self.dir, env=env, timeout=CLI_TIMEOUT)
        if check and p.returncode != 0:
            raise GatewayError("gateway %s exited with %d\nstdout: %s\nstderr: %s"
                               % (" ".join(args), p.returncode, p.stdout.decode(errors="replace"),
                                  p.stderr.decode(errors="replace")))
        return p

    def cli_json(self, *args):
        p = self.cli(*args)
        try:
            return json.loads(p.stdout)
        except ValueError as e:
            raise GatewayError("gateway %s printed no JSON (%s): %r"
                               % (" ".join(args), e, p.stdout[:500]))

    def events(self, *filters):
        """Every event (newest first) as a list of dicts."""
        return self.cli_json("events", "--json", "--limit", "0", *filters)

    def show(self, event_id):
        return self.cli_json("show", str(event_id), "--json")

    def status(self):
        return self.cli_json("status", "--json")

    def settle(self, timeout=30.0):
        """Wait until every webhook answered from the inbox is an event."""
        deadline = time.monotonic() + timeout
        while True:
            left = self.status().get("inbox", 0)
            if left == 0:
                return
            if time.monotonic() > deadline:
                raise GatewayError("the inbox still holds %d webhooks after %.0f s"
                                   % (left, timeout))
            time.sleep(0.05)


def run_gateway_command(config_path, *args, env=None):
    """Run the binary once with a given config (for config-error tests)."""
    e = dict(os.environ if env is None else env)
    e.pop("GATEWAY_CONFIG", None)
    return subprocess.run([gateway_bin(), "-c", config_path] + list(args),
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=e, timeout=CLI_TIMEOUT,
                          cwd=os.path.dirname(config_path))


# ---- unittest glue ------------------------------------------------------------


FINAL = ("done", "skipped", "dead")


class GatewayTestCase(unittest.TestCase):
    """Gives each test gateway(**kw): a started daemon, stopped (exit 0
    checked) and removed at the end of the test, whatever happens; and the
    waits the tests share."""

    WAIT = 30.0  # seconds any single wait may take before the test fails
    gw = None    # the test's daemon, when it keeps one: its log tail goes with a timeout

    def gateway(self, start=True, **kw):
        gw = Gateway(**kw)
        self.addCleanup(gw.close)
        if start:
            gw.start()
        return gw

    def wait(self, fn, what, timeout=None, interval=0.1, gw=None):
        """Poll fn until it returns something true; return that. A timeout
        fails the test with the log tail of gw (else the test's daemon)."""
        timeout = self.WAIT if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            v = fn()
            if v:
                return v
            if time.monotonic() > deadline:
                d = gw or self.gw
                self.fail("timed out after %.0f s waiting for %s (last value %r)\n%s"
                          % (timeout, what, v, d.log_tail() if d else ""))
            time.sleep(interval)

    def events_of(self, gw, entity=None, entity_id=None, source=None):
        """gw's events (of one entity, id, source), oldest first."""
        return sorted([e for e in gw.events()
                       if (entity is None or e["entity"] == entity)
                       and (entity_id is None or e["entity_id"] == str(entity_id))
                       and (source is None or e["source"] == source)],
                      key=lambda e: e["id"])

    def wait_final(self, gw, n, what, **filters):
        """Wait until at least n events match and all of them are final; they,
        oldest first."""
        def check():
            evs = self.events_of(gw, **filters)
            return evs if len(evs) >= n and all(e["state"] in FINAL for e in evs) else None
        return self.wait(check, what, gw=gw)

    def conn_status(self, gw, name):
        """The status of connection name."""
        for c in gw.status()["connections"]:
            if c["name"] == name:
                return c
        self.fail("no connection %s in status" % name)

    def assertNothingStored(self, gw):
        evs = gw.events()
        self.assertEqual(evs, [], "expected an empty store")
        counts = gw.status()["events"]
        self.assertEqual(sum(counts.values()), 0, counts)


def main():
    """Entry point of a test file: `test_x.py [GATEWAY_BINARY] [unittest args]`."""
    args = sys.argv[1:]
    if args and not args[0].startswith("-") and ("/" in args[0] or os.path.isfile(args[0])):
        os.environ["GATEWAY_BIN"] = os.path.abspath(args.pop(0))
    if not os.environ.get("GATEWAY_BIN"):
        sys.stderr.write("usage: %s /path/to/gateway [unittest options]\n"
                         "       (or set GATEWAY_BIN)\n" % sys.argv[0])
        sys.exit(2)
    try:
        gateway_bin()
    except RuntimeError as e:
        sys.stderr.write("%s\n" % e)
        sys.exit(2)
    # A SIGTERM to the runner still runs the atexit cleanup of the daemons.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    unittest.main(module="__main__", argv=[sys.argv[0]] + args)
