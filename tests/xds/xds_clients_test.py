#!/usr/bin/python3
"""`sluice xds` against unmodified gRPC clients: the seed's C++ Greeter client (greeter_client
--plain, one plain gRPC channel) and a plain python3-grpcio client, each with only
GRPC_XDS_BOOTSTRAP set and target xds:///greeter. Real etcd, real greeter_server backends that
register themselves, a real `sluice xds` process; nothing mocked.

Checks, in order (one etcd and one set of backends, reset between steps):
- a config file with a bad field is refused at start, naming its line and field;
- spreading: both clients spread their calls over the 3 registered backends, none failing;
- an instance started without --service serves every registered service;
- joining: a 4th backend gets calls within 100 ms of its key appearing in etcd;
- graceful stop: a backend stopped with SIGTERM (it deregisters, then drains) fails no call;
- kill -9, with the retry policy of the config (unavailable, 3 attempts): no call fails;
- the xDS server restarted: calls go on through the restart, and the client resyncs (it is
  listed on /clients again and follows a change made after the restart);
- etcd stopped for 15 s: clients keep calling the last known backends;
- /metrics counts ACKs and /clients names the node.

Usage: xds_clients_test.py BUILD_DIR
"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "support"))
from e2e import Checks, lab as lab_module  # noqa: E402

BUILD = os.path.abspath(sys.argv[1])
check = Checks()




CONFIG = {
    "default": {"timeout": "5s"},
    "services": {"greeter": {"retry": {"on": ["unavailable"], "max_attempts": 3,
                                       "initial_backoff": "10ms", "max_backoff": "50ms"}}},
}


class KeyWatch:
    """etcdctl watch on the registry prefix: when each key was first put, as seen here."""

    def __init__(self, etcd):
        self.put_at = {}
        self.proc = subprocess.Popen(
            ["etcdctl", "--endpoints", etcd, "watch", "--prefix", "services/greeter/"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env=dict(os.environ, ETCDCTL_API="3"))
        self.thread = threading.Thread(target=self.read, daemon=True)
        self.thread.start()

    def read(self):
        last = None
        for line in self.proc.stdout:
            line = line.strip()
            if last == "PUT" and line.startswith("services/greeter/"):
                self.put_at.setdefault(line, time.time())
            last = line

    def first_put(self, fragment):
        return min((t for k, t in self.put_at.items() if fragment in k), default=None)

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def admin_get(port, path):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=5) as r:
        return r.read().decode()


def run_client(lab, calls, name, interval_ms=10):
    csv_path = os.path.join(lab.work, name + ".csv")
    argv = [os.path.join(lab.bin, "greeter_client"), "--plain", "--target", "xds:///greeter",
            "--calls", str(calls), "--interval", "%dms" % interval_ms, "--timeout", "5s",
            "--csv", csv_path]
    proc = lab.procs.start(name, argv, {"GRPC_XDS_BOOTSTRAP": lab.xds_bootstrap})
    return proc, csv_path


def finish(lab, proc, csv_path, timeout=120):
    proc.wait(timeout=timeout)
    return lab_module.read_calls(csv_path)


def main():
    work = tempfile.mkdtemp(prefix="sluice-xds-test-")
    pace = lab_module.Pace(True)
    pace.ttl = 30  # etcd is paused for 15 s below; the leases must outlive that
    lab = lab_module.Lab(BUILD, work, pace)
    sluice = os.path.join(lab.bin, "sluice")
    try:
        lab.start_etcd()

        # -- a bad config is refused at start ---------------------------------------------
        bad = os.path.join(work, "bad.json")
        with open(bad, "w") as f:
            f.write('{\n  "services": {\n    "greeter": {\n      "retry": {"max_attempts": 7}\n'
                    '    }\n  }\n}\n')
        out = subprocess.run([sluice, "xds", "--etcd", lab.etcd, "--service", "greeter",
                              "--listen", "127.0.0.1:%d" % lab_module.free_port(),
                              "--config", bad], capture_output=True, text=True, timeout=30)
        check(out.returncode == 2 and "bad.json:4: services.greeter.retry.max_attempts" in
              out.stderr, "a bad config is refused naming line 4 and the field (exit %d: %s)" %
              (out.returncode, out.stderr.strip()))

        config = os.path.join(work, "xds.json")
        with open(config, "w") as f:
            json.dump(CONFIG, f, indent=2)
        admin_port = lab_module.free_port()
        xds_args = ["--config", config, "--admin", "127.0.0.1:%d" % admin_port]
        xds = lab.start_xds(extra=xds_args)
        lab.reset_backends()

        # -- spreading ----------------------------------------------------------------------
        proc, csv_path = run_client(lab, 30, "spread-cpp", 20)
        calls = finish(lab, proc, csv_path)
        counts = lab_module.per_backend(calls)
        check(len(calls) == 30 and lab_module.failed(calls) == 0 and
              all(counts[ip] >= 5 for ip in lab_module.BACKEND_IPS),
              "C++ client: 30 calls spread over the 3 backends: %s, %d failed" %
              (counts, lab_module.failed(calls)))
        out = subprocess.run(["/usr/bin/python3", os.path.join(HERE, "python_greeter_client.py"),
                              "xds:///greeter", "30", "0.02"], capture_output=True, text=True,
                             timeout=120, env=dict(os.environ,
                                                   GRPC_XDS_BOOTSTRAP=lab.xds_bootstrap))
        try:
            result = json.loads(out.stdout)
        except ValueError:
            result = {"answered_by": {}, "failed": -1, "errors": [out.stderr[-500:]]}
        by_ip = {k.rsplit(":", 1)[0]: v for k, v in result["answered_by"].items()}
        check(result["failed"] == 0 and sum(by_ip.values()) == 30 and
              all(by_ip.get(ip, 0) >= 5 for ip in lab_module.BACKEND_IPS),
              "python client: 30 calls spread over the 3 backends: %s, failed %d %s" %
              (by_ip, result["failed"], result["errors"]))

        # -- a second instance, with no --service: every registered service ----------------
        every_port = lab_module.free_port()
        every = lab.procs.start("sluice-xds-every", [
            sluice, "xds", "--listen", "127.0.0.1:%d" % every_port, "--etcd", lab.etcd])
        lab_module.wait_until(lambda: lab_module.can_connect("127.0.0.1", every_port), 10)
        every_bootstrap = os.path.join(work, "every-bootstrap.json")
        with open(every_bootstrap, "w") as f:
            f.write(subprocess.run([sluice, "xds", "bootstrap", "--server",
                                    "127.0.0.1:%d" % every_port, "--node-id", "every"],
                                   check=True, capture_output=True, text=True).stdout)
        csv_path = os.path.join(work, "every.csv")
        proc = lab.procs.start("every-client", [
            os.path.join(lab.bin, "greeter_client"), "--plain", "--target", "xds:///greeter",
            "--calls", "30", "--interval", "20ms", "--csv", csv_path],
            {"GRPC_XDS_BOOTSTRAP": every_bootstrap})
        calls = finish(lab, proc, csv_path)
        counts = lab_module.per_backend(calls)
        check(len(calls) == 30 and lab_module.failed(calls) == 0 and
              all(counts[ip] >= 5 for ip in lab_module.BACKEND_IPS),
              "an instance serving every registered service (no --service) spreads a client "
              "too: %s, %d failed" % (counts, lab_module.failed(calls)))
        lab.procs.stop(every)

        # -- joining ------------------------------------------------------------------------
        keys = KeyWatch(lab.etcd)
        time.sleep(0.5)
        proc, csv_path = run_client(lab, 400, "join", 10)
        lab_module.wait_for_calls(csv_path, 50)
        lab.start_backend("127.0.0.14")
        lab_module.wait_until(lambda: keys.first_put("127.0.0.14") is not None, 15)
        lab_module.wait_until(lambda: any(c[3] == "127.0.0.14" for c in
                                          lab_module.read_calls(csv_path)), 5)
        calls = finish(lab, proc, csv_path)
        put_at = keys.first_put("127.0.0.14")
        first = min((c[0] for c in calls if c[3] == "127.0.0.14"), default=None)
        keys.stop()
        delay_ms = (first - put_at) * 1000 if first and put_at else None
        # Sanitizer builds (SLUICE_SANITIZED=1) run several times slower: 3x the budget there.
        budget_ms = 300 if os.environ.get("SLUICE_SANITIZED") else 100
        check(delay_ms is not None and delay_ms <= budget_ms and lab_module.failed(calls) == 0,
              "a new backend got its first call %s ms after its key appeared (<= %d), "
              "%d failed" % ("%.0f" % delay_ms if delay_ms is not None else "never", budget_ms,
                             lab_module.failed(calls)))
        lab.stop_backend("127.0.0.14")

        # -- graceful stop ------------------------------------------------------------------
        proc, csv_path = run_client(lab, 300, "graceful", 10)
        lab_module.wait_for_calls(csv_path, 50)
        lab.stop_backend("127.0.0.12", signal.SIGTERM)
        calls = finish(lab, proc, csv_path)
        after = [c for c in calls[150:] if c[2] == 0]
        check(lab_module.failed(calls) == 0 and len(calls) == 300 and
              not any(c[3] == "127.0.0.12" for c in after),
              "graceful stop of a backend: %d of %d calls failed, none went to it after" %
              (lab_module.failed(calls), len(calls)))
        lab.start_backend("127.0.0.12")

        # -- kill -9 with the retry policy --------------------------------------------------
        lab_module.wait_until(lambda: len(lab.registered()) == 3, 15)
        time.sleep(0.5)
        proc, csv_path = run_client(lab, 300, "kill9", 10)
        lab_module.wait_for_calls(csv_path, 50)
        lab.stop_backend("127.0.0.13", signal.SIGKILL)
        calls = finish(lab, proc, csv_path)
        check(lab_module.failed(calls) == 0 and len(calls) == 300,
              "kill -9 of a backend with the retry policy on unavailable: %d of %d calls failed"
              % (lab_module.failed(calls), len(calls)))
        lab.start_backend("127.0.0.13")
        lab_module.wait_until(lambda: len(lab.registered()) == 3, 40)

        # -- the xDS server restarted -------------------------------------------------------
        proc, csv_path = run_client(lab, 600, "restart", 10)
        lab_module.wait_for_calls(csv_path, 50)
        lab.procs.stop(xds, signal.SIGTERM)
        time.sleep(1.0)
        xds = lab.start_xds(name="sluice-xds-2", extra=xds_args)
        resynced = lab_module.wait_until(
            lambda: len(json.loads(admin_get(admin_port, "/clients"))["clients"]) >= 1, 30)
        check(resynced, "the client reconnected to the restarted xDS server")
        lab.stop_backend("127.0.0.11", signal.SIGTERM)  # a change only the new server sees
        mark = time.time()
        calls = finish(lab, proc, csv_path)
        late = [c for c in calls if c[0] > mark + 0.5 and c[2] == 0]
        check(lab_module.failed(calls) == 0 and len(calls) == 600 and late and
              not any(c[3] == "127.0.0.11" for c in late),
              "through the xDS server's restart: %d of %d calls failed, and a backend stopped "
              "after it was followed" % (lab_module.failed(calls), len(calls)))
        lab.start_backend("127.0.0.11")
        lab_module.wait_until(lambda: len(lab.registered()) == 3, 15)

        # -- etcd stopped for 15 s ----------------------------------------------------------
        etcd = [p for p in lab.procs.running if p.args[0] == "etcd"][0]
        proc, csv_path = run_client(lab, 2000, "etcd-down", 10)
        lab_module.wait_for_calls(csv_path, 50)
        etcd.send_signal(signal.SIGSTOP)
        time.sleep(15)
        etcd.send_signal(signal.SIGCONT)
        calls = finish(lab, proc, csv_path, timeout=180)
        counts = lab_module.per_backend(calls)
        check(lab_module.failed(calls) == 0 and
              all(counts[ip] > 0 for ip in lab_module.BACKEND_IPS),
              "etcd stopped for 15 s: %d of %d calls failed; spread %s" %
              (lab_module.failed(calls), len(calls), counts))

        # -- admin --------------------------------------------------------------------------
        proc, csv_path = run_client(lab, 100, "admin", 10)
        lab_module.wait_for_calls(csv_path, 20)
        clients = json.loads(admin_get(admin_port, "/clients"))
        metrics = admin_get(admin_port, "/metrics")
        finish(lab, proc, csv_path)
        node_ids = [c["node_id"] for c in clients["clients"]]
        acked = [c["types"].get(
            "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment", {}).get(
            "acked_version") for c in clients["clients"]]
        check("sluice-xds-client" in node_ids and any(acked),
              "/clients names the node and its ACKed endpoint version: %s %s" % (node_ids, acked))
        check('sluice_xds_acks_total{type="type.googleapis.com/envoy.config.listener.v3.'
              'Listener"}' in metrics and 'sluice_xds_endpoints{service="greeter"} 3' in metrics,
              "/metrics counts ACKs by type and the endpoints served")
    finally:
        lab.procs.stop_all()
    if check.failures:
        print("logs in " + work)
    check.exit()


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    main()
