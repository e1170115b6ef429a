#!/usr/bin/env python3
"""Balancing quality: every Sluice policy (client library and `sluice proxy`), HAProxy 2.6
(leastconn, h2), nginx 1.22 (least_conn, grpc_pass), gRPC C++ round_robin and an oracle
(join-shortest-queue on the backends' true queue lengths), under open-loop load at ~75% of
capacity, on simulated backends whose service time is spent on timers. See docs/balancing.md.

  python3 bench/balancing/run.py                      # every scenario and arm, 30 s each
  python3 bench/balancing/run.py --scenarios S1,S5 --arms lib:prequal,oracle --duration 10
  python3 bench/balancing/run.py --short --check      # the `make test` variant

Writes OUT/results.md, OUT/results.json and OUT/<scenario>.svg (OUT: bench/results/balancing).
Environment: SKIP_INSTALL=1 skips installing HAProxy/nginx (bench/proxy/install-peers.sh).
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import report  # noqa: E402  (next to this file)

IPS = ["127.0.0.11", "127.0.0.12", "127.0.0.13"]
POLICIES = ["round_robin", "random", "least_request", "peak_ewma", "weighted_round_robin",
            "ring_hash", "prequal"]
PEERS = ["haproxy", "nginx", "grpc_round_robin", "oracle"]
ALL_ARMS = ["lib:" + p for p in POLICIES] + ["proxy:" + p for p in POLICIES] + PEERS
SHORT_ARMS = ["lib:round_robin", "lib:prequal", "proxy:prequal", "oracle"]
WARMUP_S = 2.0
DEADLINE_MS = 5000


def uniform(slots=4, service_ms=20):
    return {"slots": slots, "service_ms": service_ms, "distribution": "exponential"}


def scenarios(duration):
    """Scenario name -> backends, events, stalls, rate, clients, what it shows. Times of events
    scale with the duration (the issue's S3 is 10 s of a 30 s run)."""
    third = duration / 3.0
    return {
        "S1": {"title": "one of 3 backends 3x slower",
               "backends": [uniform(), uniform(), uniform(service_ms=60)],
               "rate": 350, "clients": 1, "affected": 2,
               "capacity": "4/20ms + 4/20ms + 4/60ms = 467 calls/s; 350/s is 75%"},
        "S2": {"title": "one backend stalls 300 ms every 2 s (GC pause)",
               "backends": [uniform(), uniform(), uniform()],
               "stalls": [{"backend": 0, "first_s": 1.0, "every_s": 2.0, "length_s": 0.3}],
               "rate": 450, "clients": 1, "affected": 0,
               "capacity": "3 x 4/20ms = 600 calls/s (570 with the stalls); 450/s is 75%"},
        "S3": {"title": "one backend's capacity halves for %g s mid-run (noisy neighbour)" % third,
               "backends": [uniform(), uniform(), uniform()],
               "events": [{"at_s": third, "backend": 2, "slots": 2},
                          {"at_s": 2 * third, "backend": 2, "slots": 4}],
               "rate": 450, "clients": 1, "affected": 2,
               "capacity": "600 calls/s, 500 while backend 2 has 2 slots; 450/s is 75% (90%)"},
        "S4": {"title": "8 independent client processes sharing S1's 3 backends",
               "backends": [uniform(), uniform(), uniform(service_ms=60)],
               "rate": 350, "clients": 8, "affected": 2,
               "capacity": "as S1: 467 calls/s; 8 x 43.75/s = 350/s"},
        "S5": {"title": "one backend fails fast (UNAVAILABLE in 1 ms) from t=%g s" % (third / 2),
               "backends": [uniform(), uniform(), uniform()],
               "events": [{"at_s": third / 2, "backend": 2, "fail_fast": True}],
               "rate": 300, "clients": 1, "affected": 2,
               "capacity": "2 healthy x 200 = 400 calls/s; 300/s is 75% of what can succeed"},
    }


def log(msg):
    print("[balancing %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def free_port(ip):
    with socket.socket() as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def wait_port(ip, port, proc, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection((ip, port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def stop(proc):
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def policy_of(arm):
    """'lib:P' or 'proxy:P', optionally 'lib:P@{json config}' -> (P, config or '')."""
    rest = arm.split(":", 1)[1]
    policy, _, config = rest.partition("@")
    return policy, config


def known_arm(arm):
    return arm in ALL_ARMS or (arm.startswith(("lib:", "proxy:")) and "@" in arm and
                               arm.split("@")[0] in ALL_ARMS)


def haproxy_config(port, backends):
    servers = "\n".join("    server b%d %s proto h2" % (i, b) for i, b in enumerate(backends))
    return """global
    nbthread 1
    maxconn 4000
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend grpc_in
    bind 127.0.0.1:%d proto h2
    default_backend greeters
backend greeters
    balance leastconn
%s
""" % (port, servers)


def nginx_config(port, backends, workdir):
    servers = "\n".join("        server %s;" % b for b in backends)
    return """worker_processes 1;
daemon off;
pid %(w)s/nginx.pid;
error_log %(w)s/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path %(w)s/body;
    proxy_temp_path %(w)s/proxy;
    fastcgi_temp_path %(w)s/fastcgi;
    uwsgi_temp_path %(w)s/uwsgi;
    scgi_temp_path %(w)s/scgi;
    keepalive_requests 10000000;
    upstream greeters {
        least_conn;
%(servers)s
        keepalive 256;
        keepalive_requests 10000000;
    }
    server {
        listen 127.0.0.1:%(port)d http2;
        location / { grpc_pass grpc://greeters; }
    }
}
""" % {"w": workdir, "servers": servers, "port": port}


class Bench:
    def __init__(self, args):
        self.args = args
        self.bin = os.path.join(args.build_dir, "bench", "balancing")
        self.sluice = os.path.join(args.build_dir, "bin", "sluice")
        self.work = tempfile.mkdtemp(prefix="sluice-balancing.")
        self.procs = []

    def spawn(self, cmd, name):
        logf = open(os.path.join(self.work, name + ".log"), "w")
        priority = self.args.priority

        def raise_priority():
            # The arm's processes use little CPU but wait on timers: on a shared machine a run
            # queue of compile jobs would add its scheduling delays to every one of them, and
            # whole-second stalls to the latencies. Real-time round robin lets them run as soon
            # as they wake (the kernel's real-time throttling still bounds them to 95% of a core);
            # every arm gets the same treatment.
            try:
                if priority == "realtime":
                    os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(10))
                elif priority == "nice":
                    os.nice(-5)
            except OSError:
                pass  # not permitted: run at the default priority
        proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT,
                                preexec_fn=raise_priority)
        self.procs.append(proc)
        return proc

    def tail(self, name):
        try:
            with open(os.path.join(self.work, name + ".log")) as f:
                return f.read()[-600:]
        except OSError:
            return ""

    def start_front(self, arm, backends, tag):
        """The proxy an arm goes through: (process, "channel:IP:PORT") or (None, None)."""
        kind = arm.split(":")[0]
        if kind not in ("proxy", "haproxy", "nginx"):
            return None, None
        port = free_port("127.0.0.1")
        if kind == "proxy":
            policy, config = policy_of(arm)
            cmd = [self.sluice, "proxy", "--listen", "127.0.0.1:%d" % port,
                   "--target", "static://" + ",".join(backends),
                   "--policy", policy, "--workers", "1"]
            if config:
                cmd += ["--policy-config", config]
        elif kind == "haproxy":
            path = os.path.join(self.work, tag + "-haproxy.cfg")
            with open(path, "w") as f:
                f.write(haproxy_config(port, backends))
            cmd = ["haproxy", "-db", "-f", path]
        else:
            ngdir = os.path.join(self.work, tag + "-nginx")
            os.makedirs(ngdir, exist_ok=True)
            path = os.path.join(ngdir, "nginx.conf")
            with open(path, "w") as f:
                f.write(nginx_config(port, backends, ngdir))
            cmd = ["nginx", "-p", ngdir, "-e", os.path.join(ngdir, "error.log"), "-c", path]
        proc = self.spawn(cmd, tag + "-front")
        if not wait_port("127.0.0.1", port, proc):
            raise RuntimeError("%s did not start: %s" % (arm, self.tail(tag + "-front")))
        return proc, "channel:127.0.0.1:%d" % port

    def run_arm(self, name, scenario, arm, duration):
        tag = "%s-%d-%s" % (name, len(self.procs), "".join(
            ch if ch.isalnum() or ch == "_" else "-" for ch in arm.split("@")[0]))
        backends = ["%s:%d" % (ip, free_port(ip)) for ip in IPS]
        scenario_path = os.path.join(self.work, tag + ".json")
        with open(scenario_path, "w") as f:
            json.dump({k: scenario.get(k, []) for k in ("backends", "events", "stalls")}, f)
        state = os.path.join("/dev/shm" if os.path.isdir("/dev/shm") else self.work,
                             "sluice-balancing-%d-%s" % (os.getpid(), tag))
        backend = self.spawn([os.path.join(self.bin, "balancing_backend"), "--listen",
                              ",".join(backends), "--scenario", scenario_path, "--state", state],
                             tag + "-backend")
        front = None
        try:
            for b in backends:
                ip, port = b.split(":")
                if not wait_port(ip, int(port), backend):
                    raise RuntimeError("backends did not start: " + self.tail(tag + "-backend"))
            front, channel = self.start_front(arm, backends, tag)
            how = channel if channel else (
                "sluice:" + policy_of(arm)[0] if arm.startswith("lib:") else arm)
            config = policy_of(arm)[1] if arm.startswith("lib:") else ""
            clients = scenario["clients"]
            start_ns = time.monotonic_ns() + int((WARMUP_S + 0.5 * clients) * 1e9)
            outs, drivers = [], []
            for c in range(clients):
                out = os.path.join(self.work, "%s-c%d.calls" % (tag, c))
                outs.append(out)
                drivers.append(self.spawn(
                    [os.path.join(self.bin, "balancing_load"), "--arm", how,
                     "--backends", ",".join(backends), "--state", state,
                     "--rate", str(scenario["rate"] / clients), "--duration", str(duration),
                     "--start-ns", str(start_ns), "--out", out,
                     "--seed", str(1000 * (c + 1) + len(self.procs)),
                     "--deadline-ms", str(DEADLINE_MS)] +
                    (["--policy-config", config] if config else []), "%s-c%d" % (tag, c)))
            for c, d in enumerate(drivers):
                d.wait(timeout=duration + WARMUP_S + 0.5 * clients + DEADLINE_MS / 1000 + 60)
                if d.returncode != 0:
                    raise RuntimeError("driver failed: " + self.tail("%s-c%d" % (tag, c)))
            calls = []
            for out in outs:
                with open(out) as f:
                    for line in f:
                        s, lat, b, code = line.split()
                        calls.append((float(s) / 1000.0, float(lat), int(b), int(code)))
            return calls
        finally:
            stop(front)
            stop(backend)
            try:
                os.unlink(state)
            except OSError:
                pass

    def cleanup(self):
        for p in self.procs:
            stop(p)
        if os.environ.get("KEEP_WORK") == "1":
            log("raw outputs kept in " + self.work)
        else:
            shutil.rmtree(self.work, ignore_errors=True)


def build(args, arms):
    targets = ["balancing_backend", "balancing_load"]
    if any(a.startswith("proxy:") for a in arms):
        targets.append("sluice")
    if not os.path.exists(os.path.join(args.build_dir, "CMakeCache.txt")):
        subprocess.check_call(["cmake", "-S", ROOT, "-B", args.build_dir,
                               "-DCMAKE_BUILD_TYPE=RelWithDebInfo"], stdout=sys.stderr)
    subprocess.check_call(["cmake", "--build", args.build_dir, "-j", "2", "--target"] + targets,
                          stdout=sys.stderr)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scenarios", default="S1,S2,S3,S4,S5")
    p.add_argument("--arms", default=",".join(ALL_ARMS),
                   help="comma-separated: lib:POLICY, proxy:POLICY, " + ", ".join(PEERS))
    p.add_argument("--duration", type=float, default=30.0, help="seconds of load per arm")
    p.add_argument("--rounds", type=int, default=1,
                   help="runs of every arm; each cell is the round with the median p99")
    p.add_argument("--short", action="store_true",
                   help="S1 only, 5 s per arm, arms " + ",".join(SHORT_ARMS))
    p.add_argument("--check", action="store_true",
                   help="exit 1 unless the results pass the short-run checks (see report.py)")
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "balancing"))
    p.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    p.add_argument("--no-build", action="store_true")
    p.add_argument("--priority", choices=["realtime", "nice", "normal"], default="realtime",
                   help="scheduling of every process of an arm: SCHED_RR 10 (default, when "
                        "permitted), nice -5, or unchanged")
    p.add_argument("--report-from", metavar="RESULTS_JSON",
                   help="rewrite OUT's results.md and SVG charts from a results.json, run nothing")
    args = p.parse_args()
    if args.report_from:
        with open(args.report_from) as f:
            results = json.load(f)
        order = [a for a in ALL_ARMS if any(a in sc["arms"] for sc in results["scenarios"].values())]
        extra = sorted({a for sc in results["scenarios"].values() for a in sc["arms"]} - set(order))
        report.write(results, args.out, order + extra)
        return 0
    if args.short:
        args.scenarios, args.duration = "S1", 5.0
        if args.arms == ",".join(ALL_ARMS):
            args.arms = ",".join(SHORT_ARMS)
    arms = [a for a in args.arms.split(",") if a]
    all_scenarios = scenarios(args.duration)
    names = [s for s in args.scenarios.split(",") if s]
    for a in arms:
        if not known_arm(a):
            p.error("unknown arm '%s'; known: %s" % (a, ", ".join(ALL_ARMS)))
    for s in names:
        if s not in all_scenarios:
            p.error("unknown scenario '%s'; known: %s" % (s, ", ".join(all_scenarios)))
    if not 1 <= args.duration <= 300:
        p.error("--duration must be within 1..300 seconds")
    if not 1 <= args.rounds <= 9:
        p.error("--rounds must be within 1..9")

    if any(a in ("haproxy", "nginx") for a in arms) and os.environ.get("SKIP_INSTALL") != "1":
        subprocess.check_call(["bash", os.path.join(ROOT, "bench", "proxy", "install-peers.sh")],
                              stdout=sys.stderr)
    if not args.no_build:
        build(args, arms)
    command = "python3 bench/balancing/run.py " + " ".join(
        a for a in sys.argv[1:] if not a.startswith("--out") and not a.startswith("--build-dir"))
    bench = Bench(args)
    results = {"meta": report.machine_meta(command, args.duration, DEADLINE_MS, WARMUP_S),
               "scenarios": {}}
    try:
        rounds = {}  # (scenario, arm) -> the summary of each round
        for r in range(args.rounds):
            for si, name in enumerate(names):
                sc = all_scenarios[name]
                # Arms in a different order per scenario and round, so no arm always runs first.
                shift = (si + r) % len(arms)
                order = arms[shift:] + arms[:shift]
                results["scenarios"][name] = {k: v for k, v in sc.items()}
                results["scenarios"][name]["arms"] = {}
                for arm in order:
                    log("%s (%s): %s for %g s, round %d of %d" % (
                        name, sc["title"], arm, args.duration, r + 1, args.rounds))
                    try:
                        calls = bench.run_arm(name, sc, arm, args.duration)
                        summary = report.summarize(calls, len(IPS), args.duration)
                        log("  %s" % report.one_line(summary))
                    except Exception as e:  # one broken arm must not lose the others' results
                        summary = {"error": str(e)[-400:]}
                        log("  FAILED: %s" % summary["error"])
                    rounds.setdefault((name, arm), []).append(summary)
                for arm in order:
                    results["scenarios"][name]["arms"][arm] = report.median_round(
                        rounds[(name, arm)])
                results["meta"]["load_after"] = report.loadavg()
                results["meta"]["rounds"] = r + 1
                report.write(results, args.out, arms)
    finally:
        bench.cleanup()
    log("wrote %s" % args.out)
    if args.check:
        problems = report.short_checks(results)
        for prob in problems:
            log("CHECK FAILED: " + prob)
        return 1 if problems else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
