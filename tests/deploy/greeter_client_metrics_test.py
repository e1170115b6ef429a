#!/usr/bin/python3
"""`greeter_client --metrics-port` serves the client library's per-endpoint metrics while its
calls run: scraped mid-run, every one of three real backends has calls counted, OK responses
and a latency histogram.

Usage: greeter_client_metrics_test.py BUILD_DIR
"""
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from e2e import Checks, lab  # noqa: E402

BIN = os.path.join(os.path.abspath(sys.argv[1]), "bin")
IPS = ["127.0.0.11", "127.0.0.12", "127.0.0.13"]
# A timeout's SIGTERM still runs the cleanup below (the processes this test started).
signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
work = tempfile.mkdtemp(prefix="sluice-client-metrics-test-")
procs = lab.Processes(work)
check = Checks()
try:
    port = lab.free_port(IPS[0])
    for ip in IPS:
        procs.start("greeter-" + ip, [os.path.join(BIN, "greeter_server"), "--ip", ip, "--port",
                                      str(port), "--quiet"])
    for ip in IPS:
        assert lab.wait_until(lambda: lab.can_connect(ip, port), 30), ip
    metrics_port = lab.free_port()
    target = "static://" + ",".join("%s:%d" % (ip, port) for ip in IPS)
    client = procs.start("client", [os.path.join(BIN, "greeter_client"), "--target", target,
                                    "--calls", "200", "--interval", "50ms",
                                    "--metrics-port", str(metrics_port)])
    assert lab.wait_until(lambda: lab.can_connect("127.0.0.1", metrics_port), 30), "metrics"
    time.sleep(2)
    text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % metrics_port).read().decode()
    for ip in IPS:
        endpoint = '{endpoint="%s:%d"' % (ip, port)
        calls = re.search(r"sluice_client_endpoint_calls_total%s\} (\d+)" % re.escape(endpoint),
                          text)
        ok = calls is not None and int(calls.group(1)) > 0
        ok = ok and ("sluice_client_endpoint_responses_total%s,grpc_status=\"0\"}" % endpoint) in text
        ok = ok and ("sluice_client_endpoint_latency_seconds_count%s}" % endpoint) in text
        ok = ok and ("sluice_client_endpoint_up%s,state=\"ready\"} 1" % endpoint) in text
        check(ok, "%s:%d counted (%s calls)" % (ip, port, calls.group(1) if calls else "no")
              + ("" if ok else " in:\n" + text))
    procs.stop(client)
finally:
    procs.stop_all()
    shutil.rmtree(work, ignore_errors=True)
check.exit()
