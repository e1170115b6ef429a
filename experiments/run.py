#!/usr/bin/env python3
"""Replays the seed's load-balancing experiments under four setups, side by side, and writes a
report with tables and SVG charts.

Setups:
  l4      an L4 balancer that picks a backend per TCP connection, standing in for a Kubernetes
          Service: HAProxy in mode tcp, balance roundrobin, health checks; the seed's plain
          client (greeter_client --plain) connects to it.
  client  Sluice's client library: greeter_client --target etcd://.../services/greeter.
  proxy   sluice proxy balancing each call; the seed's plain client connects to it.
  xds     sluice xds serving the registry over xDS; the seed's plain client, unchanged but for
          its target (xds:///greeter) and GRPC_XDS_BOOTSTRAP, balances each call itself, with
          the retry policy the proxy has (unavailable, idempotent SayHello).

Experiments (backends: greeter_server on 127.0.0.11-13, registered in a real etcd):
  one_client      one client makes the seed's 50 calls: who answered
  kill_connected  the backend that answered the client's last call is killed with -9
  stop_connected  ... or stopped gracefully (SIGTERM): failed calls, time until served again
  scale           3 -> 1 -> 3 backends while a client runs: who answers in each phase, how long
                  the returning backends wait for their first call
  four_clients    four clients started together from one machine: who answered each

Usage: experiments/run.py [--short] [--out DIR] [--build DIR] [--update-readme]
Only loopback addresses are used; every process started is stopped at the end.
"""

import argparse
import csv
import datetime
import html
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

BACKEND_IPS = ["127.0.0.11", "127.0.0.12", "127.0.0.13"]
SETUPS = ["l4", "client", "proxy", "xds"]
SETUP_TITLES = {
    "l4": "L4 balancer (HAProxy mode tcp)",
    "client": "Sluice client library",
    "proxy": "sluice proxy",
    "xds": "unmodified gRPC client + sluice xds",
}
# One colour per backend, and red for failed calls.
COLOURS = {"127.0.0.11": "#1f77b4", "127.0.0.12": "#2ca02c", "127.0.0.13": "#9467bd",
           "failed": "#d62728"}


class Pace:
    """How fast and how long each experiment runs."""

    def __init__(self, short):
        self.short = short
        self.interval = 0.02 if short else 0.2      # seconds between one client's calls
        self.one_client_calls = 50
        self.disturb_calls = 80 if short else 100   # kill/stop runs
        self.scale_calls = 120 if short else 150
        self.four_client_calls = 30 if short else 50
        self.ttl = 3 if short else 10              # lease TTL of the backends


def free_port(ip="127.0.0.1"):
    with socket.socket() as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def can_connect(ip, port):
    try:
        with socket.create_connection((ip, port), timeout=0.2):
            return True
    except OSError:
        return False


def wait_until(condition, timeout, step=0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(step)
    return condition()


class Processes:
    """Every process the run starts, so that all are stopped whatever happens."""

    def __init__(self, log_dir):
        self.log_dir = log_dir
        self.running = []

    def start(self, name, argv, env=None):
        log = open(os.path.join(self.log_dir, name + ".log"), "ab")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                env=None if env is None else dict(os.environ, **env))
        proc.log_file = log
        self.running.append(proc)
        return proc

    def stop(self, proc, sig=signal.SIGTERM, timeout=10):
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        proc.log_file.close()
        if proc in self.running:
            self.running.remove(proc)

    def stop_all(self):
        for proc in list(self.running):
            self.stop(proc, signal.SIGKILL if proc.poll() is None else signal.SIGTERM, 5)


class Lab:
    """etcd, the backends, HAProxy and sluice proxy for one run."""

    def __init__(self, build, work, pace):
        self.bin = os.path.join(build, "bin")
        self.work = work
        self.pace = pace
        self.procs = Processes(work)
        self.backend_port = free_port("127.0.0.11")
        self.backends = {}   # ip -> process
        self.generation = 0

    # -- infrastructure --------------------------------------------------------------------
    def start_etcd(self):
        client, peer = free_port(), free_port()
        self.etcd = "127.0.0.1:%d" % client
        self.procs.start("etcd", [
            "etcd", "--name", "experiments", "--data-dir", os.path.join(self.work, "etcd"),
            "--listen-client-urls", "http://" + self.etcd,
            "--advertise-client-urls", "http://" + self.etcd,
            "--listen-peer-urls", "http://127.0.0.1:%d" % peer,
            "--initial-advertise-peer-urls", "http://127.0.0.1:%d" % peer,
            "--initial-cluster", "experiments=http://127.0.0.1:%d" % peer,
            "--log-level", "warn", "--logger", "zap"])
        if not wait_until(lambda: can_connect("127.0.0.1", client), 20):
            raise RuntimeError("etcd did not start; see %s/etcd.log" % self.work)

    def start_haproxy(self):
        self.haproxy_port = free_port()
        servers = "\n".join(
            "  server b%s %s:%d check inter 300ms fall 1 rise 1" % (ip.split(".")[-1], ip,
                                                                   self.backend_port)
            for ip in BACKEND_IPS)
        config = os.path.join(self.work, "haproxy.cfg")
        with open(config, "w") as f:
            f.write("""global
  maxconn 2000
defaults
  mode tcp
  timeout connect 1s
  timeout client 120s
  timeout server 120s
  option redispatch
  retries 2
frontend l4
  bind 127.0.0.1:%d
  default_backend greeters
backend greeters
  balance roundrobin
%s
""" % (self.haproxy_port, servers))
        self.procs.start("haproxy", ["haproxy", "-db", "-f", config])
        if not wait_until(lambda: can_connect("127.0.0.1", self.haproxy_port), 10):
            raise RuntimeError("haproxy did not start; see %s/haproxy.log" % self.work)

    def start_proxy(self):
        self.proxy_port = free_port()
        self.procs.start("sluice-proxy", [
            os.path.join(self.bin, "sluice"), "proxy",
            "--listen", "127.0.0.1:%d" % self.proxy_port,
            "--target", "etcd://%s/services/greeter" % self.etcd,
            "--policy", "round_robin", "--workers", "1",
            "--idempotent", "/Greeter/SayHello"])
        if not wait_until(lambda: can_connect("127.0.0.1", self.proxy_port), 10):
            raise RuntimeError("sluice proxy did not start; see %s/sluice-proxy.log" % self.work)

    def start_xds(self, name="sluice-xds", port=None, extra=()):
        """`sluice xds` serving the greeter service, and a bootstrap file naming it."""
        self.xds_port = port or getattr(self, "xds_port", None) or free_port()
        proc = self.procs.start(name, [
            os.path.join(self.bin, "sluice"), "xds",
            "--listen", "127.0.0.1:%d" % self.xds_port, "--etcd", self.etcd,
            "--service", "greeter"] + list(extra))
        if not wait_until(lambda: can_connect("127.0.0.1", self.xds_port), 10):
            raise RuntimeError("sluice xds did not start; see %s/%s.log" % (self.work, name))
        self.xds_bootstrap = os.path.join(self.work, "xds-bootstrap.json")
        with open(self.xds_bootstrap, "w") as f:
            f.write(subprocess.run(
                [os.path.join(self.bin, "sluice"), "xds", "bootstrap",
                 "--server", "127.0.0.1:%d" % self.xds_port],
                check=True, capture_output=True, text=True).stdout)
        return proc

    def registered(self):
        out = subprocess.run([os.path.join(self.bin, "sluice"), "ls", "--etcd", self.etcd,
                              "greeter", "--json"], capture_output=True, text=True)
        if out.returncode != 0:
            return set()
        return {line.split('"address"')[1].split('"')[1]
                for line in out.stdout.splitlines() if '"address"' in line}

    # -- backends --------------------------------------------------------------------------
    def start_backend(self, ip):
        self.generation += 1
        self.backends[ip] = self.procs.start("greeter-%s-%d" % (ip, self.generation), [
            os.path.join(self.bin, "greeter_server"), "--ip", ip,
            "--port", str(self.backend_port), "--etcd", self.etcd, "--service", "greeter",
            "--ttl", str(self.pace.ttl), "--quiet"])

    def stop_backend(self, ip, sig=signal.SIGTERM):
        proc = self.backends.pop(ip)
        if sig == signal.SIGKILL:
            proc.kill()
            proc.wait()
            proc.log_file.close()
            self.procs.running.remove(proc)
        else:
            self.procs.stop(proc, sig, timeout=15)

    def reset_backends(self):
        """Three fresh backends, registered and reachable through every setup."""
        for ip in list(self.backends):
            self.stop_backend(ip)
        # A backend killed earlier may still be registered until its lease expires.
        wait_until(lambda: not self.registered(), self.pace.ttl + 5)
        for ip in BACKEND_IPS:
            self.start_backend(ip)
        want = {"%s:%d" % (ip, self.backend_port) for ip in BACKEND_IPS}
        if not wait_until(lambda: self.registered() == want, 15):
            raise RuntimeError("backends did not register: %s" % sorted(self.registered()))
        time.sleep(0.8)  # HAProxy's health checks (every 300 ms) see them up

    # -- clients ---------------------------------------------------------------------------
    def client_argv(self, setup, calls, csv_path):
        argv = [os.path.join(self.bin, "greeter_client"), "--calls", str(calls),
                "--interval", "%dms" % int(self.pace.interval * 1000), "--timeout", "2s",
                "--csv", csv_path]
        if setup == "l4":
            return argv + ["--plain", "--target", "127.0.0.1:%d" % self.haproxy_port]
        if setup == "proxy":
            return argv + ["--plain", "--target", "127.0.0.1:%d" % self.proxy_port]
        if setup == "xds":
            # The seed's plain client, unchanged but for its target (and the bootstrap file).
            return argv + ["--plain", "--target", "xds:///greeter"]
        return argv + ["--target", "etcd://%s/services/greeter" % self.etcd,
                       "--policy", "round_robin"]

    def start_client(self, setup, calls, csv_path, name):
        env = {"GRPC_XDS_BOOTSTRAP": self.xds_bootstrap} if setup == "xds" else None
        return self.procs.start(name, self.client_argv(setup, calls, csv_path), env)


def read_calls(csv_path):
    """[(start_s, latency_s, code, backend_ip)] from a client's --csv file."""
    calls = []
    if not os.path.exists(csv_path):
        return calls
    with open(csv_path) as f:
        for row in csv.DictReader(f):
            # The client may be writing the file right now: a header or row read half-written
            # lacks fields; it is read whole next time.
            if row.get("backend") is None or row.get("code") in (None, ""):
                continue
            try:
                start_s = int(row["start_unix_ms"]) / 1000.0
                latency_s = float(row["latency_ms"]) / 1000.0
                code = int(row["code"])
            except ValueError:
                continue
            backend = row["backend"].rsplit(":", 1)[0] if row["backend"] else ""
            calls.append((start_s, latency_s, code, backend))
    return calls


def wait_for_calls(csv_path, count, timeout=30):
    wait_until(lambda: len(read_calls(csv_path)) >= count, timeout, 0.01)


def per_backend(calls):
    counts = {ip: 0 for ip in BACKEND_IPS}
    for _, _, code, backend in calls:
        if code == 0:
            counts[backend] = counts.get(backend, 0) + 1
    return counts


def failed(calls):
    return sum(1 for c in calls if c[2] != 0)


# -- experiments -----------------------------------------------------------------------------

def run_one_client(lab, setup, data):
    lab.reset_backends()
    path = os.path.join(data, "one_client-%s.csv" % setup)
    client = lab.start_client(setup, lab.pace.one_client_calls, path, "client-one-%s" % setup)
    client.wait(timeout=120)
    calls = read_calls(path)
    return {"calls": calls, "events": [], "t0": calls[0][0] if calls else time.time()}


def run_disturb_connected(lab, setup, data, sig, name):
    lab.reset_backends()
    path = os.path.join(data, "%s-%s.csv" % (name, setup))
    client = lab.start_client(setup, lab.pace.disturb_calls, path, "client-%s-%s" % (name, setup))
    wait_for_calls(path, int(lab.pace.disturb_calls * 0.3))
    calls = read_calls(path)
    victim = next((c[3] for c in reversed(calls) if c[2] == 0), BACKEND_IPS[0])
    t_event = time.time()
    lab.stop_backend(victim, sig)
    client.wait(timeout=180)
    calls = read_calls(path)
    after = [c for c in calls if c[0] + c[1] >= t_event]
    first_ok = next((c for c in after if c[2] == 0 and c[0] >= t_event), None)
    served_again = (first_ok[0] + first_ok[1] - t_event) if first_ok else None
    label = "kill -9" if sig == signal.SIGKILL else "SIGTERM"
    return {"calls": calls, "t0": calls[0][0] if calls else t_event,
            "events": [(t_event, "%s %s" % (label, victim))],
            "victim": victim, "served_again_s": served_again,
            "failed_after": sum(1 for c in after if c[2] != 0)}


def run_scale(lab, setup, data):
    lab.reset_backends()
    pace = lab.pace
    path = os.path.join(data, "scale-%s.csv" % setup)
    client = lab.start_client(setup, pace.scale_calls, path, "client-scale-%s" % setup)
    wait_for_calls(path, int(pace.scale_calls * 0.25))
    t_down = time.time()
    # Both stop at once, gracefully (a scale-down): they deregister, serve out their grace
    # period, drain and exit. The "1 backend" phase starts once both are gone.
    stopping = [lab.backends.pop(ip) for ip in BACKEND_IPS[1:]]
    for proc in stopping:
        proc.send_signal(signal.SIGTERM)
    for proc in stopping:
        lab.procs.stop(proc, signal.SIGTERM, timeout=15)
    t_down_done = time.time()
    wait_for_calls(path, int(pace.scale_calls * 0.55))
    t_up = time.time()
    for ip in BACKEND_IPS[1:]:
        lab.start_backend(ip)
    client.wait(timeout=180)
    calls = read_calls(path)
    phases = {
        "3 backends": [c for c in calls if c[0] < t_down],
        "2 stopping": [c for c in calls if t_down <= c[0] < t_down_done],
        "1 backend": [c for c in calls if t_down_done <= c[0] < t_up],
        "3 again": [c for c in calls if c[0] >= t_up],
    }
    first_call = {}
    for ip in BACKEND_IPS[1:]:
        first = next((c for c in calls if c[0] >= t_up and c[3] == ip and c[2] == 0), None)
        first_call[ip] = (first[0] - t_up) if first else None
    return {"calls": calls, "t0": calls[0][0] if calls else t_down,
            "events": [(t_down, "scale to 1"), (t_up, "scale to 3")],
            "stop_took_s": t_down_done - t_down,
            "phases": {k: per_backend(v) for k, v in phases.items()},
            "phase_failed": {k: failed(v) for k, v in phases.items()},
            "first_call_s": first_call}


def run_four_clients(lab, setup, data):
    lab.reset_backends()
    paths = [os.path.join(data, "four_clients-%s-%d.csv" % (setup, i + 1)) for i in range(4)]
    clients = [lab.start_client(setup, lab.pace.four_client_calls, p,
                                "client-four-%s-%d" % (setup, i + 1))
               for i, p in enumerate(paths)]
    for c in clients:
        c.wait(timeout=120)
    per_client = [read_calls(p) for p in paths]
    all_calls = [c for calls in per_client for c in calls]
    return {"per_client": per_client, "calls": all_calls,
            "t0": min((c[0] for c in all_calls), default=time.time()), "events": []}


# -- charts ------------------------------------------------------------------------------------

def svg_lanes(title, panels, path):
    """One panel per setup; in each, one lane per row label and a tick per call at its start
    time, coloured by the backend that answered (red when the call failed). Event markers are
    dashed vertical lines. panels: [(panel title, [(lane label, [(t, colour)])], t0, t_end,
    events)]."""
    width, lane_h, left, top = 760, 22, 120, 34
    blocks, y = [], 0
    for panel_title, lanes, t0, t_end, events in panels:
        span = max(t_end - t0, 1e-3)
        plot_w = width - left - 20
        height = top + lane_h * len(lanes) + 28
        parts = ['<g transform="translate(0,%d)">' % y,
                 '<text x="10" y="20" font-size="14" font-weight="bold">%s</text>'
                 % html.escape(panel_title)]
        for i, (label, ticks) in enumerate(lanes):
            ly = top + i * lane_h
            parts.append('<rect x="%d" y="%d" width="%d" height="%d" fill="%s"/>'
                         % (left, ly, plot_w, lane_h - 4, "#f4f4f4" if i % 2 else "#fafafa"))
            parts.append('<text x="%d" y="%d" font-size="12" text-anchor="end">%s</text>'
                         % (left - 6, ly + lane_h - 9, html.escape(label)))
            for t, colour in ticks:
                x = left + (t - t0) / span * plot_w
                parts.append('<rect x="%.1f" y="%d" width="2" height="%d" fill="%s"/>'
                             % (x, ly + 2, lane_h - 8, colour))
        bottom = top + lane_h * len(lanes)
        for t, label in events:
            x = left + (t - t0) / span * plot_w
            parts.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#333" '
                         'stroke-dasharray="4,3"/>' % (x, top - 6, x, bottom))
            parts.append('<text x="%.1f" y="%d" font-size="11">%s</text>'
                         % (x + 3, top - 8, html.escape(label)))
        for k in range(0, 6):
            x = left + k / 5 * plot_w
            parts.append('<text x="%.1f" y="%d" font-size="10" text-anchor="middle">%ss</text>'
                         % (x, bottom + 14, "%.3g" % (span * k / 5)))
        parts.append("</g>")
        blocks.append("\n".join(parts))
        y += height
    legend_y = y + 6
    legend = []
    for i, (name, colour) in enumerate(COLOURS.items()):
        legend.append('<rect x="%d" y="%d" width="10" height="10" fill="%s"/>'
                      '<text x="%d" y="%d" font-size="11">%s</text>'
                      % (left + i * 160, legend_y, colour, left + i * 160 + 14, legend_y + 9,
                         "failed call" if name == "failed" else "answered by " + name))
    total_h = legend_y + 22
    doc = ('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
           'font-family="sans-serif">\n<rect width="100%%" height="100%%" fill="white"/>\n'
           '<title>%s</title>\n%s\n%s\n</svg>\n'
           % (width, total_h, html.escape(title), "\n".join(blocks), "".join(legend)))
    with open(path, "w") as f:
        f.write(doc)


def backend_lanes(calls):
    lanes = []
    for ip in BACKEND_IPS:
        lanes.append((ip, [(c[0], COLOURS[ip]) for c in calls if c[2] == 0 and c[3] == ip]))
    lanes.append(("failed", [(c[0], COLOURS["failed"]) for c in calls if c[2] != 0]))
    return lanes


def end_of(result):
    return max((c[0] + c[1] for c in result["calls"]), default=result["t0"] + 1)


def chart(name, title, results, out_dir):
    panels = []
    for setup in results:
        r = results[setup]
        if name == "four_clients":
            lanes = [("client %d" % (i + 1),
                      [(c[0], COLOURS[c[3]] if c[2] == 0 and c[3] in COLOURS else COLOURS["failed"])
                       for c in calls]) for i, calls in enumerate(r["per_client"])]
        else:
            lanes = backend_lanes(r["calls"])
        panels.append((SETUP_TITLES[setup], lanes, r["t0"], end_of(r), r["events"]))
    svg_lanes(title, panels, os.path.join(out_dir, name + ".svg"))
    return name + ".svg"


# -- report --------------------------------------------------------------------------------------

def fmt_s(value):
    return "never" if value is None else "%.2f s" % value


def report(results, setups, pace, out_dir, command):
    lines = ["# Sluice experiments: the seed's load-balancing experiments, replayed", "",
             "Date: %s  " % datetime.datetime.now(datetime.timezone.utc).strftime(
                 "%Y-%m-%d %H:%M UTC"),
             "Command: `%s`  " % command,
             "Mode: %s (one call every %d ms per client; backend lease TTL %d s)  " % (
                 "short" if pace.short else "full", pace.interval * 1000, pace.ttl),
             "Backends: greeter_server on %s, registered in a real etcd.  " % ", ".join(
                 BACKEND_IPS),
             "Setups: " + "; ".join("**%s**: %s" % (s, SETUP_TITLES[s]) for s in setups) + ".",
             "", "In the charts each call is a tick at its start time, in the lane of the backend "
             "that answered it (red lane: failed calls); dashed lines mark the events.", ""]

    def header(cols):
        lines.append("| " + " | ".join(cols) + " |")
        lines.append("|" + "---|" * len(cols))

    r = results["one_client"]
    lines += ["## One client, the seed's %d calls: who answered" % pace.one_client_calls, ""]
    header(["setup"] + BACKEND_IPS + ["failed"])
    for s in setups:
        counts = per_backend(r[s]["calls"])
        lines.append("| %s | %s | %d |" % (s, " | ".join(str(counts[ip]) for ip in BACKEND_IPS),
                                         failed(r[s]["calls"])))
    lines += ["", "![one client](%s)" % r["chart"], ""]

    for key, title in (("kill_connected", "The backend the client is connected to is killed "
                                          "(kill -9)"),
                       ("stop_connected", "The backend the client is connected to is stopped "
                                          "gracefully (SIGTERM)")):
        r = results[key]
        lines += ["## " + title, ""]
        header(["setup", "victim", "calls", "failed", "served again after",
                "answered by, after the event"])
        for s in setups:
            x = r[s]
            after = per_backend([c for c in x["calls"] if c[0] >= x["events"][0][0]])
            lines.append("| %s | %s | %d | %d | %s | %s |" % (
                s, x["victim"], len(x["calls"]), failed(x["calls"]), fmt_s(x["served_again_s"]),
                ", ".join("%s: %d" % (ip, n) for ip, n in after.items() if n)))
        lines += ["", "'Served again after': from the event to the end of the first successful "
                  "call started after it (calls go out every %d ms)." % (pace.interval * 1000),
                  "", "![%s](%s)" % (key, r["chart"]), ""]

    r = results["scale"]
    lines += ["## Scale 3 -> 1 -> 3 while a client runs", ""]
    header(["setup", "phase"] + BACKEND_IPS + ["failed"])
    for s in setups:
        for phase, counts in r[s]["phases"].items():
            lines.append("| %s | %s | %s | %d |" % (
                s, phase, " | ".join(str(counts[ip]) for ip in BACKEND_IPS),
                r[s]["phase_failed"][phase]))
    lines += ["", "'2 stopping': from the scale-down until both stopped backends have exited "
              "(they deregister at once, serve out their grace period, then drain).", "",
              "How long the returning backends waited for their first call:", ""]
    header(["setup"] + BACKEND_IPS[1:])
    for s in setups:
        lines.append("| %s | %s |" % (s, " | ".join(fmt_s(r[s]["first_call_s"][ip])
                                                  for ip in BACKEND_IPS[1:])))
    lines += ["", "![scale](%s)" % r["chart"], ""]

    r = results["four_clients"]
    lines += ["## Four clients started together from one machine: who answered each", ""]
    header(["setup", "client"] + BACKEND_IPS + ["failed"])
    for s in setups:
        for i, calls in enumerate(r[s]["per_client"]):
            counts = per_backend(calls)
            lines.append("| %s | %d | %s | %d |" % (
                s, i + 1, " | ".join(str(counts[ip]) for ip in BACKEND_IPS), failed(calls)))
    lines += ["", "![four clients](%s)" % r["chart"], ""]

    with open(os.path.join(out_dir, "report.md"), "w") as f:
        f.write("\n".join(lines))
    return "\n".join(lines)


def headline(results, setups):
    """The few figures the README shows."""
    rows = ["| | " + " | ".join(SETUP_TITLES[s] for s in setups) + " |",
            "|---|" + "---|" * len(setups)]

    def spread(calls):
        return sum(1 for n in per_backend(calls).values() if n > 0)

    rows.append("| backends answering one client's calls | " + " | ".join(
        "%d of 3" % spread(results["one_client"][s]["calls"]) for s in setups) + " |")
    for key, label in (("kill_connected", "failed calls when its backend is killed (-9)"),
                       ("stop_connected", "failed calls when its backend stops gracefully")):
        rows.append("| %s | " % label + " | ".join(
            str(failed(results[key][s]["calls"])) for s in setups) + " |")
    rows.append("| returning backends' wait for a first call after 3 -> 1 -> 3 | " + " | ".join(
        " / ".join(fmt_s(results["scale"][s]["first_call_s"][ip]) for ip in BACKEND_IPS[1:])
        for s in setups) + " |")
    rows.append("| backends answering each of four clients | " + " | ".join(
        " ".join(str(spread(calls)) for calls in results["four_clients"][s]["per_client"])
        for s in setups) + " |")
    return "\n".join(rows)


def update_readme(readme, out_dir, results, setups):
    begin, end = "<!-- experiments:begin -->", "<!-- experiments:end -->"
    with open(readme) as f:
        text = f.read()
    if begin not in text or end not in text:
        print("README has no experiments markers; not updated", file=sys.stderr)
        return
    rel = os.path.relpath(out_dir, os.path.dirname(os.path.abspath(readme)))
    body = "\n".join([
        begin, "",
        "Latest full run: [%s/report.md](%s/report.md)." % (rel, rel), "",
        headline(results, setups), "",
        "![four clients](%s/four_clients.svg)" % rel, "",
        "![kill -9 of the connected backend](%s/kill_connected.svg)" % rel, "",
        "![scale 3 -> 1 -> 3](%s/scale.svg)" % rel, "", end])
    text = text[:text.index(begin)] + body + text[text.index(end) + len(end):]
    with open(readme, "w") as f:
        f.write(text)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", action="store_true", help="fast pace, for the test suite")
    parser.add_argument("--out", help="output folder (default results/<date>)")
    parser.add_argument("--build", default="build", help="the build folder (has bin/)")
    parser.add_argument("--setups", default=",".join(SETUPS), help="comma-separated subset")
    parser.add_argument("--update-readme", action="store_true",
                        help="write the headline figures into README.md")
    args = parser.parse_args()
    setups = [s for s in args.setups.split(",") if s]
    for s in setups:
        if s not in SETUPS:
            parser.error("--setups: unknown setup '%s'; known: %s" % (s, ", ".join(SETUPS)))
    for tool in ("etcd", "haproxy"):
        if shutil.which(tool) is None:
            sys.exit("experiments: '%s' is not installed; run 'make install-deps'" % tool)
    for program in ("sluice", "greeter_server", "greeter_client"):
        if not os.path.exists(os.path.join(args.build, "bin", program)):
            sys.exit("experiments: %s/bin/%s is missing; run 'make build'" % (args.build, program))

    pace = Pace(args.short)
    out_dir = args.out or os.path.join(
        "results", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"))
    data_dir = os.path.join(out_dir, "data")
    os.makedirs(data_dir, exist_ok=True)
    work = tempfile.mkdtemp(prefix="sluice-experiments-")
    lab = Lab(args.build, work, pace)
    results = {k: {} for k in ("one_client", "kill_connected", "stop_connected", "scale",
                               "four_clients")}
    try:
        lab.start_etcd()
        if "l4" in setups:
            lab.start_haproxy()
        if "proxy" in setups:
            lab.start_proxy()
        if "xds" in setups:
            config = os.path.join(work, "xds.json")
            with open(config, "w") as f:
                json.dump({"services": {"greeter": {"retry": {"on": ["unavailable"],
                                                              "max_attempts": 3}}}}, f)
            lab.start_xds(extra=["--config", config])
        for setup in setups:
            print("experiments: %s: one client" % setup, flush=True)
            results["one_client"][setup] = run_one_client(lab, setup, data_dir)
            print("experiments: %s: kill -9 the connected backend" % setup, flush=True)
            results["kill_connected"][setup] = run_disturb_connected(
                lab, setup, data_dir, signal.SIGKILL, "kill_connected")
            print("experiments: %s: stop the connected backend" % setup, flush=True)
            results["stop_connected"][setup] = run_disturb_connected(
                lab, setup, data_dir, signal.SIGTERM, "stop_connected")
            print("experiments: %s: scale 3 -> 1 -> 3" % setup, flush=True)
            results["scale"][setup] = run_scale(lab, setup, data_dir)
            print("experiments: %s: four clients" % setup, flush=True)
            results["four_clients"][setup] = run_four_clients(lab, setup, data_dir)
    finally:
        lab.procs.stop_all()
    titles = {
        "one_client": "One client, the seed's calls",
        "kill_connected": "kill -9 of the backend the client is connected to",
        "stop_connected": "Graceful stop of the backend the client is connected to",
        "scale": "Scale 3 -> 1 -> 3",
        "four_clients": "Four clients from one machine (ticks coloured by the backend that answered)",
    }
    for name, per_setup in results.items():
        per_setup["chart"] = chart(name, titles[name],
                                   {s: per_setup[s] for s in setups}, out_dir)
    command = " ".join(["experiments/run.py"] + sys.argv[1:])
    report(results, setups, pace, out_dir, command)
    with open(os.path.join(out_dir, "headline.md"), "w") as f:
        f.write(headline(results, setups) + "\n")
    if args.update_readme:
        update_readme("README.md", out_dir, results, setups)
    shutil.rmtree(work, ignore_errors=True)
    print("experiments: report in %s/report.md" % out_dir)
    print(headline(results, setups))


if __name__ == "__main__":
    main()
