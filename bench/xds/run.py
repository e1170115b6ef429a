#!/usr/bin/python3
"""The seed's client (greeter_client --plain, calls back to back) through each way of reaching
three backends, side by side, interleaved, median of rounds:

  xds      target xds:///greeter, GRPC_XDS_BOOTSTRAP naming `sluice xds` (gRPC's balancer, fed
           by Sluice)
  grpc_rr  gRPC's own round_robin over a static list (ipv4:IP:PORT,IP:PORT,IP:PORT): the goal
           is the same as this, within noise, since xDS only feeds gRPC's balancer
  proxy    through `sluice proxy` (one hop)
  direct   one backend, no balancing: the floor

Per arm: calls/s (one call at a time, so 1 / latency), mean latency, and the client's CPU per
call (user + system, from wait4's rusage). Writes a Markdown table.

Usage: bench/xds/run.py [--build build] [--rounds 5] [--calls 4000] [--out FILE]
"""
import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location(
    "experiments_run", os.path.join(HERE, "..", "..", "experiments", "run.py"))
lab_module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lab_module)

ARMS = ["xds", "grpc_rr", "proxy", "direct"]


def run_arm(lab, arm, calls):
    argv = [os.path.join(lab.bin, "greeter_client"), "--plain", "--calls", str(calls),
            "--interval", "0s", "--timeout", "5s"]
    env = dict(os.environ)
    ips = lab_module.BACKEND_IPS
    if arm == "xds":
        argv += ["--target", "xds:///greeter"]
        env["GRPC_XDS_BOOTSTRAP"] = lab.xds_bootstrap
    elif arm == "grpc_rr":
        argv += ["--target", "ipv4:" + ",".join("%s:%d" % (ip, lab.backend_port) for ip in ips),
                 "--plain-lb", "round_robin"]
    elif arm == "proxy":
        argv += ["--target", "127.0.0.1:%d" % lab.proxy_port]
    else:
        argv += ["--target", "%s:%d" % (ips[0], lab.backend_port)]
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                            text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = status
    wall = time.monotonic() - start
    summary = [line for line in out.splitlines() if line.startswith("calls per backend:")]
    failed = int(summary[0].rsplit("failed=", 1)[1]) if summary and "failed=" in summary[0] else -1
    if failed != 0:
        raise RuntimeError("%s: %s failed calls: %s" % (arm, failed, summary))
    return {"calls_per_s": calls / wall, "latency_us": wall / calls * 1e6,
            "cpu_us_per_call": (usage.ru_utime + usage.ru_stime) / calls * 1e6,
            "spread": summary[0].split(":", 1)[1].strip()}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--build", default="build")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--out", default=os.path.join(HERE, "..", "results", "xds.md"))
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="sluice-bench-xds-")
    lab = lab_module.Lab(os.path.abspath(args.build), work, lab_module.Pace(True))
    results = {arm: [] for arm in ARMS}
    try:
        lab.start_etcd()
        lab.start_xds()
        lab.start_proxy()
        lab.reset_backends()
        for arm in ARMS:  # warm-up: connections, page cache
            run_arm(lab, arm, 200)
        for r in range(args.rounds):
            order = ARMS[r % len(ARMS):] + ARMS[:r % len(ARMS)]  # interleaved, rotating
            for arm in order:
                results[arm].append(run_arm(lab, arm, args.calls))
            print("round %d done" % (r + 1), flush=True)
    finally:
        lab.procs.stop_all()

    def median(arm, key):
        return statistics.median(x[key] for x in results[arm])

    lines = [
        "# The seed's client through xDS, gRPC round robin, sluice proxy and direct",
        "",
        "`%s` on %s: greeter_client --plain, %d calls back to back (one in flight) per run, "
        "%d interleaved rounds (the order rotates each round), medians. Three greeter_server "
        "backends on 127.0.0.11-13; `sluice xds` and `sluice proxy` (1 worker, round_robin) read "
        "the same etcd registry. CPU is the client process's user + system time (wait4)." % (
            " ".join(["bench/xds/run.py"] + sys.argv[1:]),
            time.strftime("%Y-%m-%d", time.gmtime()), args.calls, args.rounds),
        "",
        "| arm | calls/s | latency µs | client CPU µs/call | vs grpc_rr calls/s | vs grpc_rr CPU |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    base_rate, base_cpu = median("grpc_rr", "calls_per_s"), median("grpc_rr", "cpu_us_per_call")
    for arm in ARMS:
        rate, cpu = median(arm, "calls_per_s"), median(arm, "cpu_us_per_call")
        lines.append("| %s | %.0f | %.0f | %.1f | %.2fx | %.2fx |" % (
            arm, rate, median(arm, "latency_us"), cpu, rate / base_rate, cpu / base_cpu))
    lines += ["", "Spread of the last round: " + "; ".join(
        "%s: %s" % (arm, results[arm][-1]["spread"]) for arm in ARMS), ""]
    rounds = ["| round | " + " | ".join(ARMS) + " |", "|---|" + "---:|" * len(ARMS)]
    for r in range(args.rounds):
        rounds.append("| %d | " % (r + 1) + " | ".join(
            "%.0f" % results[arm][r]["calls_per_s"] for arm in ARMS) + " |")
    lines += ["Calls/s per round:", ""] + rounds + [""]
    with open(args.out, "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
