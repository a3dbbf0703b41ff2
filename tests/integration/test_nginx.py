#!/usr/bin/env python3
"""The shipped nginx site in front of the real daemon.

Starts nginx (/usr/sbin/nginx, Debian's nginx-light) as an unprivileged
process with its own prefix in a temporary directory, serving
deploy/nginx/mplus-qbo-gateway.conf as shipped except for the listen ports,
the upstream port and a throw-away self-signed certificate. Webhooks go
through it over TLS; the gateway's log shows whom it believed.

Addresses: nginx connects to the gateway from 127.0.0.1, the only trusted
proxy; the test client talks to nginx from 127.0.0.3 (so the address nginx
forwards is not nginx's own) and to the gateway directly from 127.0.0.2
(an untrusted peer) or 127.0.0.1 (trusted).

    python3 tests/integration/test_nginx.py /path/to/gateway [unittest args]
"""

import atexit
import ctypes
import http.client
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gwtest  # noqa: E402
from gwtest import GatewayTestCase, cloudevent, dumps, mplus_callback, sign  # noqa: E402

NGINX = "/usr/sbin/nginx"
SITE = os.path.normpath(os.path.join(gwtest.HERE, "..", "..", "deploy", "nginx",
                                     "mplus-qbo-gateway.conf"))
REALM = "310687"  # shop2 of gwtest's default connections
NGINX_FROM = "127.0.0.1"  # nginx's side of its connections to the gateway
CLIENT = "127.0.0.3"      # the test client, as nginx sees it
UNTRUSTED = "127.0.0.2"   # a direct client the gateway does not trust
MIB = 1 << 20


# Every nginx started here, stopped at exit whatever happens. SIGTERM, not
# SIGKILL: the master then takes its worker down with it.
_running = set()


def _stop_all():
    for p in list(_running):
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()


atexit.register(_stop_all)


def have_nginx():
    return os.access(NGINX, os.X_OK)


def tls_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the throw-away certificate
    return ctx


def call(port, method, path, body=None, headers=None, source=None, tls=False, timeout=15.0):
    """One request on a fresh connection from address source; a gwtest.Response."""
    kw = {"timeout": timeout, "source_address": (source, 0) if source else None}
    if tls:
        conn = http.client.HTTPSConnection(gwtest.HOST, port, context=tls_context(), **kw)
    else:
        conn = http.client.HTTPConnection(gwtest.HOST, port, **kw)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return gwtest.Response(r.status, r.headers, r.read())
    finally:
        conn.close()


def qbo_body(ce_id, size=None):
    """A CloudEvents webhook for REALM, padded with blanks to size bytes."""
    body = dumps([cloudevent(ce_id, ce_id, REALM)])
    if size is not None:
        assert size >= len(body)
        body += b" " * (size - len(body))
    return body


def qbo_headers(body, **extra):
    h = {"Content-Type": "application/json", "intuit-signature": sign(gwtest.VERIFIER_TOKEN, body)}
    h.update(extra)
    return h


class Nginx:
    """nginx with the shipped site, rewritten to loopback ports, in front of
    the gateway listening on gateway_port."""

    def __init__(self, gateway_port, site=None):
        self.dir = tempfile.mkdtemp(prefix="gwtest-nginx-")
        self.http_port, self.https_port = gwtest.free_ports(2)
        if site is None:
            with open(SITE) as f:
                site = f.read()
        self.site = self._rewrite(site, gateway_port)
        self.error_log = os.path.join(self.dir, "error.log")
        self.access_log = os.path.join(self.dir, "access.log")
        cert, key = os.path.join(self.dir, "cert.pem"), os.path.join(self.dir, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=gateway.example.com", "-keyout", key, "-out", cert],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.site = self.site.replace("@CERT@", cert).replace("@KEY@", key)
        with open(os.path.join(self.dir, "site.conf"), "w") as f:
            f.write(self.site)
        temps = "\n".join("    %s_temp_path %s;" % (k, os.path.join(self.dir, k))
                          for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        self.conf = os.path.join(self.dir, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write("daemon off;\nworker_processes 1;\npid %s;\nerror_log %s info;\n"
                    "events { worker_connections 128; }\n"
                    "http {\n    access_log %s;\n%s\n    include %s;\n}\n"
                    % (os.path.join(self.dir, "nginx.pid"), self.error_log, self.access_log,
                       temps, os.path.join(self.dir, "site.conf")))
        self.proc = None

    def _rewrite(self, text, gateway_port):
        """Ports and certificate replaced, IPv6 listens dropped; every other
        line as shipped. Each change must find its line exactly once, so a
        changed site file fails here instead of testing something else."""
        subs = [
            (r"(?m)^\s*listen \[::\]:80;\n", ""),
            (r"(?m)^\s*listen \[::\]:443 ssl;\n", ""),
            (r"(?m)^(\s*)listen 80;$", r"\1listen %s:%d;" % (gwtest.HOST, self.http_port)),
            (r"(?m)^(\s*)listen 443 ssl;$", r"\1listen %s:%d ssl;" % (gwtest.HOST, self.https_port)),
            (r"(?m)^(\s*)server 127\.0\.0\.1:8080;$", r"\g<1>server %s:%d;" % (gwtest.HOST, gateway_port)),
            (r"(?m)^(\s*)ssl_certificate \S+;$", r"\1ssl_certificate @CERT@;"),
            (r"(?m)^(\s*)ssl_certificate_key \S+;$", r"\1ssl_certificate_key @KEY@;"),
        ]
        for pattern, repl in subs:
            text, n = re.subn(pattern, repl, text)
            if n != 1:
                raise AssertionError("%s: expected one line matching %r, found %d"
                                     % (SITE, pattern, n))
        return text

    def _as_nobody(self):
        """In the child before exec: drop root, then ask for SIGTERM when the
        test runner dies (a change of user clears that request)."""
        if os.geteuid() == 0:
            os.setgroups([])
            os.setgid(self.nobody.pw_gid)
            os.setuid(self.nobody.pw_uid)
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    def start(self):
        if os.geteuid() == 0:
            # Unprivileged even when the tests run as root (CI): the master
            # process itself runs as nobody and owns its prefix.
            self.nobody = pwd.getpwnam("nobody")
            for root, dirs, files in os.walk(self.dir):
                for name in [root] + [os.path.join(root, n) for n in files]:
                    os.chown(name, self.nobody.pw_uid, self.nobody.pw_gid)
        self.proc = subprocess.Popen([NGINX, "-p", self.dir, "-c", self.conf, "-e", self.error_log],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, preexec_fn=self._as_nobody)
        _running.add(self.proc)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("nginx exited with %s\n%s" % (self.proc.returncode,
                                                                   self.log_tail()))
            try:
                if call(self.https_port, "GET", "/healthz", tls=True, timeout=2).status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError("nginx did not answer /healthz through TLS\n%s" % self.log_tail())

    def log_tail(self):
        try:
            with open(self.error_log) as f:
                return "--- nginx error log ---\n" + "".join(f.readlines()[-30:])
        except OSError:
            return ""

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful shutdown
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        _running.discard(self.proc)
        if os.environ.get("GWTEST_KEEP"):
            sys.stderr.write("gwtest: kept %s\n" % self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def post(self, path, body, headers, tls=True, source=CLIENT):
        port = self.https_port if tls else self.http_port
        return call(port, "POST", path, body, headers, source=source, tls=tls)

    def get(self, path, headers=None):
        return call(self.https_port, "GET", path, headers=headers, source=CLIENT, tls=True)


def established(port):
    """TCP connections established to the local port, from /proc/net/tcp."""
    n = 0
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            n += int(local.split(":")[1], 16) == port and state == "01"
    return n


def log_msgs(gw):
    return [r["msg"] for r in gw.log_records()]


class ProxyTestCase(GatewayTestCase):

    def gateway(self, start=True, server=None, **kw):
        """A gateway trusting only nginx's address, logging every webhook."""
        extra = {"server": {"trusted_proxies": NGINX_FROM}, "log": {"level": "debug"}}
        extra["server"].update(server or {})
        return super().gateway(start=start, extra=extra, **kw)

    def nginx(self, gw):
        n = Nginx(gw.port)
        self.addCleanup(n.close)
        return n.start()

    def webhook_lines(self, gw):
        return [m for m in log_msgs(gw) if m.startswith("quickbooks webhook from ")]


@unittest.skipUnless(have_nginx(), "%s is missing (Debian package nginx-light; "
                     "scripts/setup installs it)" % NGINX)
class ThroughNginx(ProxyTestCase):

    def test_signed_webhooks_stored_and_logged_with_the_address_nginx_saw(self):
        gw = self.gateway()
        ngx = self.nginx(gw)
        body = qbo_body("through-nginx-1")
        # What the client claims itself is the client's own word: nginx
        # appends the address it saw and sets the scheme.
        r = ngx.post("/webhooks/quickbooks", body,
                     qbo_headers(body, **{"X-Forwarded-For": "203.0.113.9",
                                          "X-Forwarded-Proto": "http"}))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, b"ok\n")
        evs = gw.events()
        self.assertEqual([(e["entity_id"], e["connection"], e["state"]) for e in evs],
                         [("through-nginx-1", "shop2", "pending")])
        # show names the client nginx saw, not the one the client claimed.
        self.assertEqual(gw.show(evs[0]["id"])["client"], CLIENT)
        self.assertEqual(self.webhook_lines(gw),
                         ["quickbooks webhook from %s over https: %d bytes, signature good"
                          % (CLIENT, len(body))])

        # A bad signature: refused through nginx, and the warning names the client.
        r = ngx.post("/webhooks/quickbooks", body,
                     qbo_headers(body, **{"intuit-signature": sign("wrong", body)}))
        self.assertEqual(r.status, 401, r)
        self.assertIn("quickbooks webhook from %s over https rejected: bad intuit-signature"
                      % CLIENT, log_msgs(gw))

        # Mplus: the prefix location, and the signed answer's header comes back.
        mbody = dumps(mplus_callback("sess-nginx"))
        r = ngx.post("/webhooks/mplus/shop1/completeSession", mbody,
                     {"Content-Type": "application/json",
                      "X-Mplus-Signature": sign(gw.mplus_key("shop1"), mbody)})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.headers.get("X-Mplus-Signature"), sign(gw.mplus_key("shop1"), r.body))
        self.assertIn("mplus callback completeSession from %s over https: %d bytes, signature good"
                      % (CLIENT, len(mbody)), log_msgs(gw))
        session = gw.events("--source", "mplus")
        self.assertEqual([gw.show(e["id"])["client"] for e in session], [CLIENT])

        # Several in a row over nginx's kept-alive upstream connections.
        for i in range(2, 12):
            b = qbo_body("through-nginx-%d" % i)
            self.assertEqual(ngx.post("/webhooks/quickbooks", b, qbo_headers(b)).status, 200)
        self.assertEqual(len(gw.events("--source", "quickbooks")), 11)
        # One upstream connection carried them all, and stays open for the next.
        self.assertEqual(established(gw.port), 1)
        self.assertNotIn("203.0.113.9", gw.log_text())
        self.assertTrue(all(" from %s over https" % CLIENT in m for m in self.webhook_lines(gw)),
                        self.webhook_lines(gw))

    def test_plain_http_is_only_a_redirect(self):
        gw = self.gateway()
        ngx = self.nginx(gw)
        body = qbo_body("plain-http")
        r = ngx.post("/webhooks/quickbooks", body, qbo_headers(body), tls=False)
        self.assertEqual(r.status, 301, r)
        self.assertEqual(r.headers.get("Location"), "https://127.0.0.1/webhooks/quickbooks")
        self.assertEqual(gw.events(), [])
        self.assertEqual(self.webhook_lines(gw), [])

    def test_admin_paths_are_not_reachable_through_nginx(self):
        gw = self.gateway()
        ngx = self.nginx(gw)
        self.assertNotIn(str(gw.admin_port), ngx.site)
        auth = {"Authorization": "Bearer " + gw.admin_token}
        # The token is good: straight on the admin listener these answer.
        self.assertEqual(gw.admin_get("/api/status").status, 200)
        self.assertEqual(gw.admin_get("/metrics").status, 200)
        for path in ("/", "/metrics", "/api/status", "/api/events", "/api/events/1",
                     "/oauth/quickbooks/connect?connection=shop1",
                     "/oauth/quickbooks/callback?state=x&code=y&realmId=1",
                     "/webhooks/mplus/../../metrics", "/webhooks/quickbooks/../api/status",
                     "/webhooks/quickbooksx", "/healthz/x"):
            r = ngx.get(path, auth)
            self.assertEqual(r.status, 404, "%s: %r" % (path, r))
            self.assertIn("text/html", r.headers.get("Content-Type", ""), path)  # nginx's own
        r = call(ngx.https_port, "POST", "/api/replay", b"{}", dict(auth), source=CLIENT,
                 tls=True)
        self.assertEqual(r.status, 404, r)
        # /healthz is the public listener's, through nginx.
        r = ngx.get("/healthz")
        self.assertEqual((r.status, r.body), (200, b"ok\n"))

    def test_bodies_of_the_limit_pass_and_larger_ones_get_413_from_nginx(self):
        # Defaults on both sides (1 MiB): in step.
        gw = self.gateway()
        ngx = self.nginx(gw)
        body = qbo_body("exactly-1mib", MIB)
        r = ngx.post("/webhooks/quickbooks", body, qbo_headers(body))
        self.assertEqual(r.status, 200, r)
        body = qbo_body("over-1mib", MIB + 1)
        r = ngx.post("/webhooks/quickbooks", body, qbo_headers(body))
        self.assertEqual(r.status, 413, r)
        self.assertIn("text/html", r.headers.get("Content-Type"))  # nginx's page
        self.assertEqual([e["entity_id"] for e in gw.events()], ["exactly-1mib"])
        self.assertEqual(len(self.webhook_lines(gw)), 1)

    def test_gateway_limit_raised_nginx_still_refuses(self):
        gw = self.gateway(max_body_bytes=4 * MIB)
        ngx = self.nginx(gw)
        body = qbo_body("two-mib", 2 * MIB)
        r = ngx.post("/webhooks/quickbooks", body, qbo_headers(body))
        self.assertEqual(r.status, 413, r)
        self.assertIn("text/html", r.headers.get("Content-Type"))
        self.assertEqual(gw.events(), [])
        # Straight to the gateway the same body is taken: nginx was the smaller.
        r = call(gw.port, "POST", "/webhooks/quickbooks", body, qbo_headers(body),
                 source=UNTRUSTED)
        self.assertEqual(r.status, 200, r)

    def test_gateway_limit_lowered_its_413_comes_through_nginx(self):
        gw = self.gateway(max_body_bytes=64 * 1024)
        ngx = self.nginx(gw)
        body = qbo_body("hundred-kib", 100 * 1024)
        r = ngx.post("/webhooks/quickbooks", body, qbo_headers(body))
        self.assertEqual(r.status, 413, r)
        self.assertIn("text/plain", r.headers.get("Content-Type"))  # the gateway's
        self.assertEqual(gw.events(), [])
        # nginx keeps working with the gateway afterwards.
        small = qbo_body("small-after-413")
        self.assertEqual(ngx.post("/webhooks/quickbooks", small, qbo_headers(small)).status, 200)
        self.assertEqual([e["entity_id"] for e in gw.events()], ["small-after-413"])


class ForwardedHeaders(ProxyTestCase):
    """Straight to the gateway: the headers count only from trusted_proxies."""

    def post(self, gw, source, ce_id, **headers):
        body = qbo_body(ce_id)
        r = call(gw.port, "POST", "/webhooks/quickbooks", body, qbo_headers(body, **headers),
                 source=source)
        self.assertEqual(r.status, 200, r)
        return "quickbooks webhook from %%s over %%s: %d bytes, signature good" % len(body)

    def test_forged_headers_from_an_untrusted_peer_are_ignored(self):
        gw = self.gateway()
        line = self.post(gw, UNTRUSTED, "forged-1",
                         **{"X-Forwarded-For": "198.51.100.7", "X-Forwarded-Proto": "https"})
        self.assertEqual(self.webhook_lines(gw), [line % (UNTRUSTED, "http")])
        self.assertNotIn("198.51.100.7", gw.log_text())
        self.assertEqual([gw.show(e["id"])["client"] for e in gw.events()], [UNTRUSTED])

    def test_headers_from_a_trusted_peer_are_believed(self):
        gw = self.gateway()
        expect = []
        cases = [
            ({"X-Forwarded-For": "198.51.100.8", "X-Forwarded-Proto": "https"},
             ("198.51.100.8", "https")),
            # Right-most entry that is not a trusted proxy; the left is the client's word.
            ({"X-Forwarded-For": "192.0.2.1, 198.51.100.9, 127.0.0.1"}, ("198.51.100.9", "http")),
            # Something that is not an address ends the walk at the hop right of it.
            ({"X-Forwarded-For": "192.0.2.1, unknown, 127.0.0.1"}, ("127.0.0.1", "http")),
            ({"X-Forwarded-For": "2001:db8::5", "X-Forwarded-Proto": "HTTPS"},
             ("2001:db8::5", "https")),
            ({"X-Forwarded-Proto": "gopher"}, (NGINX_FROM, "http")),
        ]
        for i, (headers, want) in enumerate(cases):
            expect.append(self.post(gw, NGINX_FROM, "trusted-%d" % i, **headers) % want)
        self.assertEqual(self.webhook_lines(gw), expect)

    def test_trusted_proxies_must_be_addresses(self):
        gw = self.gateway(start=False, server={"trusted_proxies": "127.0.0.1, proxy.local"})
        gw._write_config()
        p = gwtest.run_gateway_command(gw.config_path, "check-config")
        self.assertEqual(p.returncode, 2, p)
        self.assertIn(b"key 'trusted_proxies' in [server]", p.stderr)
        self.assertIn(b"'proxy.local'", p.stderr)


UNIT = os.path.normpath(os.path.join(gwtest.HERE, "..", "..", "deploy", "systemd",
                                     "mplus-qbo-gateway.service"))


class SystemdUnit(unittest.TestCase):
    """deploy/systemd/mplus-qbo-gateway.service passes `systemd-analyze verify` (Debian's
    systemd), with ExecStart pointing at the built binary."""

    def verify(self, text):
        with tempfile.TemporaryDirectory(prefix="gwtest-unit-") as d:
            path = os.path.join(d, "mplus-qbo-gateway.service")
            with open(path, "w") as f:
                f.write(text)
            p = subprocess.run(["systemd-analyze", "verify", "--man=no", path],
                               capture_output=True, text=True, timeout=60)
        return p.returncode, (p.stdout + p.stderr).strip()

    @unittest.skipUnless(shutil.which("systemd-analyze"), "systemd-analyze not found (Debian's systemd): "
                         "the shipped unit is not verified")
    def test_the_shipped_unit_verifies_clean(self):
        with open(UNIT) as f:
            text = f.read()
        self.assertIn("ExecStart=/usr/local/bin/gateway ", text)
        text = text.replace("/usr/local/bin/gateway", os.path.abspath(gwtest.gateway_bin()))
        self.assertEqual(self.verify(text), (0, ""))
        # systemd-analyze exits 0 on a value it ignores: what it says is what counts.
        rc, said = self.verify(text.replace("Restart=on-failure", "Restart=sometimes"))
        self.assertIn("Failed to parse service restart specifier", said)
        for key in ("ProtectSystem=strict", "NoNewPrivileges=yes", "PrivateTmp=yes", "SystemCallFilter=",
                    "StateDirectory=", "KillSignal=SIGTERM", "Restart=on-failure"):
            self.assertIn(key, text)

if __name__ == "__main__":
    gwtest.main()
