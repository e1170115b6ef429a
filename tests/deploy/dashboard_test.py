#!/usr/bin/python3
"""The proxy's dashboard in a real browser: Debian's headless Chromium, driven over the Chrome
DevTools protocol, opens GET / on the admin port of a real `sluice proxy` balancing
`sluice bench` traffic over three Greeter backends registered in a real etcd.

- the page shows the three backends, ready, each with a non-zero rate of calls;
- after one backend is killed with -9, the page shows it leaving (no longer ready, its rate 0)
  while the two others keep non-zero rates;
- screenshots of both moments are written to OUT_DIR (docs/images/ holds a copy).

Usage: dashboard_test.py BUILD_DIR OUT_DIR
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

import websocket  # python3-websocket

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from e2e import Checks, lab  # noqa: E402

BUILD, OUT = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
BIN = os.path.join(BUILD, "bin")
IPS = ["127.0.0.11", "127.0.0.12", "127.0.0.13"]
check = Checks()




class DevTools:
    """One page of a headless Chromium, over the DevTools websocket."""

    def __init__(self, work):
        self.proc = subprocess.Popen(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-dev-shm-usage", "--remote-debugging-address=127.0.0.1",
             "--remote-debugging-port=0", "--user-data-dir=" + os.path.join(work, "chromium"),
             "--window-size=1280,900", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            start_new_session=True)
        browser_url = None
        end = time.monotonic() + 60
        while time.monotonic() < end and browser_url is None:
            line = self.proc.stderr.readline()
            if not line and self.proc.poll() is not None:
                break
            match = re.search(r"DevTools listening on (ws://\S+)", line)
            if match:
                browser_url = match.group(1)
        if browser_url is None:
            raise RuntimeError("chromium did not start its DevTools endpoint")
        port = int(re.search(r":(\d+)/", browser_url).group(1))
        pages = json.load(urllib.request.urlopen("http://127.0.0.1:%d/json/list" % port))
        page = [p for p in pages if p.get("type") == "page"][0]
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=60,
                                              suppress_origin=True)
        self.next_id = 0

    def call(self, method, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError("%s: %s" % (method, message["error"]))
                return message.get("result", {})

    def evaluate(self, expression):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    def screenshot(self, path):
        import base64
        data = self.call("Page.captureScreenshot", format="png")["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def close(self):
        try:
            self.ws.close()
        finally:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


ROWS = """JSON.stringify(Array.from(document.querySelectorAll('#backends tbody tr')).map(r => ({
  backend: r.dataset.backend, state: r.dataset.state, rate: parseFloat(r.dataset.rate)})))"""


def rows(browser):
    text = browser.evaluate(ROWS)
    return {r["backend"]: r for r in json.loads(text)} if text else {}


# A timeout's SIGTERM still runs the cleanup below (the processes this test started).
signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
work = tempfile.mkdtemp(prefix="sluice-dashboard-test-")
os.makedirs(OUT, exist_ok=True)
procs = lab.Processes(work)
browser = None
try:
    client_port, peer_port = lab.free_port(), lab.free_port()
    etcd = "127.0.0.1:%d" % client_port
    procs.start("etcd", [
        "etcd", "--name", "dashboard", "--data-dir", os.path.join(work, "etcd"),
        "--listen-client-urls", "http://" + etcd, "--advertise-client-urls", "http://" + etcd,
        "--listen-peer-urls", "http://127.0.0.1:%d" % peer_port,
        "--initial-advertise-peer-urls", "http://127.0.0.1:%d" % peer_port,
        "--initial-cluster", "dashboard=http://127.0.0.1:%d" % peer_port,
        "--log-level", "warn", "--logger", "zap"])
    assert lab.wait_until(lambda: lab.can_connect("127.0.0.1", client_port), 30), "etcd"

    backend_port = lab.free_port(IPS[0])
    backends = {}
    for ip in IPS:
        backends[ip] = procs.start("greeter-" + ip, [
            os.path.join(BIN, "greeter_server"), "--ip", ip, "--port", str(backend_port),
            "--etcd", etcd, "--ttl", "3", "--quiet"])
    for ip in IPS:
        assert lab.wait_until(lambda: lab.can_connect(ip, backend_port), 30), ip

    proxy_port, admin_port = lab.free_port(), lab.free_port()
    procs.start("proxy", [
        os.path.join(BIN, "sluice"), "proxy", "--listen", "127.0.0.1:%d" % proxy_port,
        "--admin", "127.0.0.1:%d" % admin_port,
        "--target", "etcd://%s/services/greeter" % etcd, "--idempotent", "/Greeter/SayHello"])
    assert lab.wait_until(lambda: lab.can_connect("127.0.0.1", admin_port), 30), "proxy"
    procs.start("bench", [
        os.path.join(BIN, "sluice"), "bench", "--target", "127.0.0.1:%d" % proxy_port,
        "--rate", "150", "--concurrency", "8", "--duration", "120s", "--timeout", "5s"])

    browser = DevTools(work)
    browser.call("Page.enable")
    browser.call("Emulation.setDeviceMetricsOverride", width=1280, height=820,
                 deviceScaleFactor=1, mobile=False)
    browser.call("Page.navigate", url="http://127.0.0.1:%d/?minutes=1" % admin_port)
    addresses = ["%s:%d" % (ip, backend_port) for ip in IPS]

    def all_busy():
        r = rows(browser)
        return all(a in r and r[a]["state"] == "ready" and r[a]["rate"] > 0 for a in addresses)

    busy = lab.wait_until(all_busy, 60, step=0.5)
    seen = rows(browser)
    print("page rows: %s" % json.dumps(seen), flush=True)
    check(busy, "the page shows the three backends ready with non-zero rates")
    check(browser.evaluate("document.querySelectorAll('#routes tbody tr').length") == 1 and
          "etcd://" in browser.evaluate("document.querySelector('#routes').innerText"),
          "the page shows the route and its target")
    time.sleep(15)  # some chart history
    check(browser.evaluate("document.querySelectorAll('#chart polyline').length") >= 3,
          "the chart draws a line per backend")
    browser.screenshot(os.path.join(OUT, "dashboard.png"))

    killed = addresses[1]
    procs.stop(backends[IPS[1]], signal.SIGKILL)

    def killed_leaving():
        r = rows(browser)
        others_busy = all(r.get(a, {}).get("rate", 0) > 0 for a in addresses if a != killed)
        return killed in r and r[killed]["state"] != "ready" and r[killed]["rate"] == 0 and \
            others_busy

    leaving = lab.wait_until(killed_leaving, 30, step=0.5)
    seen = rows(browser)
    print("page rows after kill -9 of %s: %s" % (killed, json.dumps(seen)), flush=True)
    check(leaving, "the killed backend is shown leaving (state %s, rate %s), the others busy" % (
        seen.get(killed, {}).get("state"), seen.get(killed, {}).get("rate")))
    gone = lab.wait_until(lambda: rows(browser).get(killed, {}).get("state") == "gone", 30,
                          step=0.5)
    check(gone, "once its lease expires the killed backend is shown gone")
    time.sleep(3)
    browser.screenshot(os.path.join(OUT, "dashboard_backend_killed.png"))
    check(os.path.getsize(os.path.join(OUT, "dashboard.png")) > 10000, "screenshot written")
finally:
    if browser is not None:
        browser.close()
    procs.stop_all()
    if check.failures:
        print("logs kept in " + work)
    else:
        shutil.rmtree(work, ignore_errors=True)

check.exit()
