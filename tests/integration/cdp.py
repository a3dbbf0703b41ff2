"""cdp - headless Chromium driven through the DevTools protocol, with the Python
standard library only: a WebSocket client (RFC 6455, client side: masked
frames out, fragments and pings in) and the few protocol calls the dashboard
test needs (open a page, evaluate, screenshot, console and errors).

    with Browser() as b:
        page = b.open("http://127.0.0.1:8081/")
        page.wait("document.readyState === 'complete'")
        page.evaluate("document.title")

Browser() raises Unavailable when Chromium is missing or does not start.
"""

import base64
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request

CHROMIUM = "/usr/bin/chromium"
# As the machine's notes advise: no first run, no background traffic to
# Google (the network is closed), a fresh profile.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--remote-debugging-port=0", "--window-size=1200,900"]


class Unavailable(Exception):
    pass


class WebSocket:
    """One client connection: text messages out, text messages in."""

    def __init__(self, url, timeout=30.0):
        u = urllib.parse.urlparse(url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(("GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n" % (u.path, u.hostname, u.port, key)).encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("the browser closed the connection during the handshake")
            head += chunk
        head, self.buf = head.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError("no WebSocket upgrade: %r" % head[:200])

    def send(self, text):
        data = text.encode()
        n = len(data)
        header = bytes([0x81])
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 65536:
            header += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the browser closed the connection")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv(self):
        """The next text message (fragments joined); answers pings."""
        parts = []
        while True:
            b0, b1 = self._read(2)
            opcode, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            mask = self._read(4) if b1 & 0x80 else None
            payload = self._read(n)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            if opcode == 0x9:  # ping: a pong, masked as a client's frames are
                pong_mask = os.urandom(4)
                self.sock.sendall(bytes([0x8A, 0x80 | len(payload)]) + pong_mask +
                                  bytes(b ^ pong_mask[i % 4] for i, b in enumerate(payload)))
                continue
            if opcode == 0x8:
                raise ConnectionError("the browser closed the WebSocket")
            parts.append(payload)
            if b0 & 0x80:
                return b"".join(parts).decode()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class Page:
    """One tab: protocol calls, and the events that came meanwhile."""

    def __init__(self, url):
        self.ws = WebSocket(url)
        self.next_id = 0
        self.events = []
        for domain in ("Page", "Runtime", "Log"):
            self.call(domain + ".enable")

    def call(self, method, **params):
        self.next_id += 1
        mine = self.next_id
        self.ws.send(json.dumps({"id": mine, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == mine:
                if "error" in msg:
                    raise RuntimeError("%s: %s" % (method, msg["error"]))
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def navigate(self, url):
        self.call("Page.navigate", url=url)

    def evaluate(self, expression):
        """The value of a JavaScript expression (awaited when it is a promise)."""
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError("%s: %s" % (expression, r["exceptionDetails"]))
        return r.get("result", {}).get("value")

    def wait(self, expression, timeout=20.0, what=None):
        """Wait until the expression is true; its value."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                v = self.evaluate(expression)
            except RuntimeError as e:  # the page is not there yet (still loading)
                v, last = None, e
            if v:
                return v
            time.sleep(0.1)
        raise AssertionError("timed out waiting for %s%s" % (what or expression,
                                                             " (last: %s)" % last if last else ""))

    def problems(self, allow=None):
        """Console errors and uncaught exceptions so far (texts); allow: a regex of those
        that are expected."""
        found = []
        for e in self.events:
            m, p = e["method"], e.get("params", {})
            if m == "Runtime.exceptionThrown":
                found.append(json.dumps(p.get("exceptionDetails", {}))[:500])
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                found.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                found.append(p["entry"].get("text", ""))
        return [f for f in found if not (allow and re.search(allow, f))]

    def screenshot(self, path):
        data = self.call("Page.captureScreenshot", format="png")["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def close(self):
        self.ws.close()


class Browser:
    def __init__(self):
        if not os.path.exists(CHROMIUM):
            raise Unavailable("%s is missing (Debian's chromium: scripts/setup --test installs it)" % CHROMIUM)
        self.profile = tempfile.mkdtemp(prefix="gwtest-cdp-")
        # Its log goes to a file (a pipe nobody reads would fill and stop it).
        log_path = os.path.join(self.profile, "chromium.log")
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen([CHROMIUM] + FLAGS + ["--user-data-dir=" + self.profile,
                                                              "about:blank"],
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
        self.base = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.base is None and self.proc.poll() is None:
            with open(log_path, "rb") as log:
                m = re.search(r"DevTools listening on (ws://[^/\s]+)/", log.read().decode(errors="replace"))
            if m:
                self.base = m.group(1).replace("ws://", "http://")
            else:
                time.sleep(0.1)
        if self.base is None:
            self.close()
            raise Unavailable("Chromium did not start its DevTools endpoint")
        self.pages = []

    def open(self, url):
        """A new tab at url."""
        # A blank tab, then the address: a #fragment (the dashboard's #token=) never
        # travels in the HTTP request that opens a tab.
        req = urllib.request.Request(self.base + "/json/new?about:blank", method="PUT")
        with urllib.request.urlopen(req, timeout=10) as r:
            target = json.loads(r.read())
        page = Page(target["webSocketDebuggerUrl"])
        self.pages.append(page)
        page.navigate(url)
        return page

    def close(self):
        for p in getattr(self, "pages", []):
            p.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

