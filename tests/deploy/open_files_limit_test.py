#!/usr/bin/python3
"""`sluice proxy` started under systemd's default soft open-files limit (1024, hard 4096) raises
its soft limit to the hard one, says so in its log, and holds 1,500 client connections open at
once (under 1024 it would stop accepting at about 1,000 with "Too many open files").

Usage: open_files_limit_test.py BUILD_DIR
"""
import os
import re
import resource
import shutil
import signal
import socket
import sys
import tempfile
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from e2e import Checks, lab  # noqa: E402

BIN = os.path.join(os.path.abspath(sys.argv[1]), "bin")
CONNECTIONS = 1500
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"

# This process needs the file descriptors too.
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))

# A timeout's SIGTERM still runs the cleanup below (the processes this test started).
signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
work = tempfile.mkdtemp(prefix="sluice-open-files-test-")
procs = lab.Processes(work)
check = Checks()




def metric(port, name):
    text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port).read().decode()
    match = re.search(r"^%s (\d+)$" % name, text, re.M)
    return int(match.group(1)) if match else -1


def lab_rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


clients = []
try:
    proxy_port, admin_port = lab.free_port(), lab.free_port()
    proxy = procs.start("proxy", [
        "prlimit", "--nofile=1024:4096", "--", os.path.join(BIN, "sluice"), "proxy",
        "--listen", "127.0.0.1:%d" % proxy_port, "--admin", "127.0.0.1:%d" % admin_port,
        "--workers", "1", "--target", "static://127.0.0.11:%d" % lab.free_port("127.0.0.11")])
    assert lab.wait_until(lambda: lab.can_connect("127.0.0.1", admin_port), 30), "proxy"
    with open(os.path.join(work, "proxy.log")) as f:
        log = f.read()
    print(log.splitlines()[0])
    check(re.search(r"open-files limit 4096 \(was 1024, hard limit 4096\): room for about \d+ "
                    r"client connections", log) is not None,
          "the proxy logs its raised limit and how many connections it can hold")
    with open("/proc/%d/limits" % proxy.pid) as f:
        limits = [line for line in f if line.startswith("Max open files")][0].split()
    check(limits[3] == "4096", "the proxy's soft limit is now the hard limit (%s)" % limits[3])

    rss_before = lab_rss_kb(proxy.pid)
    for _ in range(CONNECTIONS):
        s = socket.create_connection(("127.0.0.1", proxy_port), timeout=10)
        s.sendall(PREFACE)
        clients.append(s)
    held = lab.wait_until(
        lambda: metric(admin_port, "sluice_proxy_downstream_connections") == CONNECTIONS, 60,
        step=0.5)
    check(held, "the proxy holds %d client connections (metric: %d)" % (
        CONNECTIONS, metric(admin_port, "sluice_proxy_downstream_connections")))
    rss_after = lab_rss_kb(proxy.pid)
    print("proxy RSS %d KB before, %d KB with %d idle HTTP/2 connections: %.1f KB each" % (
        rss_before, rss_after, CONNECTIONS, (rss_after - rss_before) / CONNECTIONS), flush=True)
    with open(os.path.join(work, "proxy.log")) as f:
        check("Too many open files" not in f.read(), "no 'Too many open files' in the log")
finally:
    for s in clients:
        s.close()
    procs.stop_all()
    shutil.rmtree(work, ignore_errors=True)
check.exit()
