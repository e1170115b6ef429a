#!/usr/bin/python3
"""The markdown results of bench/proxy/run.sh.

  report.py WORKDIR OUT

run.sh leaves in WORKDIR: records.jsonl (one line per measurement: target, workload, round,
CPU ticks, parsed h2load output), meta/KEY (one file per value), targets.list and
workloads.list (names in order), t/NAME/{label,status,config,check-W.json,post_check-W.json}
and w/W/{conns,inflight,request,reply,label}.
"""
import json
import os
import statistics
import sys

PEERS = ("haproxy", "nginx", "nghttpx", "caddy")
GIB = 1 << 30

# The goals, per workload, that sluice proxy is measured against (ratios, not absolute numbers).
GOAL_RPS_VS_BEST_PEER = 1.3
GOAL_CPU_VS_BEST_PEER = 0.6
GOAL_P99_VS_BEST_PEER = 1.0
GOAL_RPS_VS_DIRECT = {"resp1m": 0.6, "req1m": 0.9}
GOAL_ADDED_P50_VS_BEST_PEER = 0.7  # the latency workload


def _read(path, default=None):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def _json(path):
    text = _read(path)
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def load(workdir):
    recs = []
    with open(os.path.join(workdir, "records.jsonl")) as f:
        for line in f:
            if line.strip():
                recs.append(json.loads(line))
    meta = {k: _read(os.path.join(workdir, "meta", k))
            for k in os.listdir(os.path.join(workdir, "meta"))}
    meta["clk_tck"] = int(meta["clk_tck"])
    workloads = []
    for name in _read(os.path.join(workdir, "workloads.list"), "").split():
        d = os.path.join(workdir, "w", name)
        workloads.append({"name": name, "label": _read(os.path.join(d, "label"), name),
                          **{k: int(_read(os.path.join(d, k), "0"))
                             for k in ("conns", "inflight", "request", "reply")}})
    targets = []
    for name in _read(os.path.join(workdir, "targets.list"), "").split():
        d = os.path.join(workdir, "t", name)
        t = {"name": name, "label": _read(os.path.join(d, "label"), name),
             "status": _read(os.path.join(d, "status"), "not run"),
             "config": _read(os.path.join(d, "config")), "check": {}, "post_check": {}}
        for w in workloads:
            for k in ("check", "post_check"):
                t[k][w["name"]] = _json(os.path.join(d, f"{k}-{w['name']}.json"))
        targets.append(t)
    return recs, meta, workloads, targets


def validate(rec, frame_sizes, in_flight):
    """Why this measurement cannot be trusted, or None."""
    h = rec["h2load"]
    succ = h.get("req_succeeded", 0)
    if not succ:
        return "no successful request"
    if h.get("req_failed", 0) or h.get("req_errored", 0) or h.get("req_timeout", 0):
        return (f"h2load: {h.get('req_failed', 0)} failed, {h.get('req_errored', 0)} errored, "
                f"{h.get('req_timeout', 0)} timeout")
    non2xx = sum(h.get(k, 0) for k in ("status_3xx", "status_4xx", "status_5xx"))
    # A call still in flight when h2load stops may have its 200 headers but not its end.
    if non2xx or not succ <= h.get("status_2xx", 0) <= succ + in_flight:
        return f"HTTP status: {h.get('status_2xx', 0)} 2xx of {succ}, {non2xx} non-2xx"
    if frame_sizes:
        data = h.get("bytes_data")
        # Calls still in flight when h2load stops may have received part of their reply.
        lo, hi = min(frame_sizes) * succ, max(frame_sizes) * (succ + in_flight)
        if data is None or not lo <= data <= hi:
            return (f"reply bytes {data} not in [{lo}, {hi}]: some 200s carried no Greeter reply "
                    "(a gRPC error in trailers)")
    return None


def fmt(v, digits=0):
    if v is None:
        return "—"
    if isinstance(v, str):
        return v
    return f"{v:,.{digits}f}"


def ratio(a, b, digits=2):
    return fmt(a / b, digits) if a is not None and b else "—"


class Results:
    """Per (target, workload): the rounds, each validated, and their medians."""

    def __init__(self, recs, meta, workloads, targets):
        self.hz = meta["clk_tck"]
        self.workloads = {w["name"]: w for w in workloads}
        self.targets = targets
        self.rows = {}
        for t in targets:
            for w in workloads:
                check = t["check"].get(w["name"]) or {}
                frame_sizes = check.get("frame_bytes") or []
                mine = [r for r in recs if r["target"] == t["name"] and r["workload"] == w["name"]]
                self.rows[t["name"], w["name"]] = [
                    self._row(r, w, frame_sizes) for r in mine]

    def _row(self, r, w, frame_sizes):
        h = r["h2load"]
        succ = h.get("req_succeeded", 0)
        cpu_s = r["proxy_ticks"] / self.hz if r.get("proxy_ticks") is not None else None
        payload = max(w["request"], w["reply"])  # the large direction's message bytes
        return {
            "round": r["round"], "invalid": validate(r, frame_sizes, w["conns"] * w["inflight"]),
            "rps": h.get("rps"), "calls": succ, "ticks": r.get("proxy_ticks"),
            "cpu_us": cpu_s * 1e6 / succ if cpu_s is not None and succ else None,
            "cpu_ms_gib": (cpu_s * 1e3 / (succ * payload / GIB)
                           if cpu_s is not None and succ and payload else None),
            "backend_us": r["backend_ticks"] * 1e6 / self.hz / succ if succ else None,
            "p50": h.get("p50"), "p90": h.get("p90"), "p99": h.get("p99"),
            "mean": h.get("h2load_mean"), "upstream": r.get("upstream_conns"),
        }

    def ok(self, target):
        return any(t["name"] == target and t["status"] == "ok" for t in self.targets)

    def med(self, target, workload, key):
        vals = [x[key] for x in self.rows.get((target, workload), [])
                if not x["invalid"] and x[key] is not None]
        return statistics.median(vals) if vals else None

    def added(self, target, workload, key):
        """Latency added over the direct baseline (µs), from the medians over rounds."""
        mine, direct = self.med(target, workload, key), self.med("direct", workload, key)
        return mine - direct if mine is not None and direct is not None else None

    def cpu_key(self, workload):
        w = self.workloads[workload]
        return "cpu_ms_gib" if max(w["request"], w["reply"]) >= (1 << 20) else "cpu_us"

    def best_peer(self, workload, key, highest):
        vals = [(self.med(p, workload, key), p) for p in PEERS if self.ok(p)]
        vals = [(v, p) for v, p in vals if v is not None]
        if not vals:
            return None, None
        v, p = (max if highest else min)(vals)
        return p, v


def workload_table(res, w, lines):
    name = w["name"]
    cpu_key = res.cpu_key(name)
    cpu_head = "proxy CPU ms/GiB" if cpu_key == "cpu_ms_gib" else "proxy CPU µs/call"
    lines.append(f"### {w['label']}")
    lines.append("")
    lines.append(f"| target | calls/s | × direct | {cpu_head} | backends CPU µs/call | p50 ms "
                 "| p90 ms | p99 ms | p50 added ms | p99 added ms | upstream conns | checks |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    direct_rps = res.med("direct", name, "rps")
    for t in res.targets:
        tname = t["name"]
        if t["status"] != "ok":
            lines.append(f"| {t['label']} | {t['status']} | | | | | | | | | | |")
            continue
        rows = res.rows[tname, name]
        valid = [x for x in rows if not x["invalid"]]
        ups = [x["upstream"] for x in rows if x["upstream"] is not None]
        upstream = "—"
        if ups and tname != "direct":
            upstream = str(max(ups)) if min(ups) == max(ups) else f"{min(ups)}–{max(ups)}"
        chk = t["check"].get(name) or {}
        post = t["post_check"].get(name) or {}
        check = (f"{chk.get('ok', 0)}/{chk.get('calls', 0)} OK before, "
                 f"{post.get('ok', 0)}/{post.get('calls', 0)} after; "
                 + ", ".join(f"{k.split(':')[0]}: {v}"
                             for k, v in sorted(chk.get("by_backend", {}).items())))
        if not valid:
            why = rows[0]["invalid"] if rows else "no run"
            lines.append(f"| {t['label']} | INVALID ({why}) | | | | | | | | | {upstream} "
                         f"| {check} |")
            continue
        ms = lambda v: None if v is None else v / 1000  # noqa: E731
        is_direct = tname == "direct"
        lines.append(
            f"| {t['label']} | {fmt(res.med(tname, name, 'rps'))} | "
            f"{ratio(res.med(tname, name, 'rps'), direct_rps)} | "
            f"{'—' if is_direct else fmt(res.med(tname, name, cpu_key), 1)} | "
            f"{fmt(res.med(tname, name, 'backend_us'), 1)} | "
            f"{fmt(ms(res.med(tname, name, 'p50')), 2)} | "
            f"{fmt(ms(res.med(tname, name, 'p90')), 2)} | "
            f"{fmt(ms(res.med(tname, name, 'p99')), 2)} | "
            f"{'—' if is_direct else fmt(ms(res.added(tname, name, 'p50')), 3)} | "
            f"{'—' if is_direct else fmt(ms(res.added(tname, name, 'p99')), 3)} | "
            f"{upstream} | {check} |")
    lines.append("")


def goals_table(res, workloads, lines):
    lines.append("| workload | measure | sluice | best peer | sluice / best peer | goal | |")
    lines.append("|---|---|---:|---|---:|---|---|")

    def row(wname, measure, mine, peer, value, goal, op, digits=0, scale=1.0, against=None):
        if mine is None or not value:
            r = None
        else:
            r = mine / value
        met = "—" if r is None else ("met" if (r >= goal if op == ">=" else r <= goal)
                                     else "**missed**")
        best = f"{peer} {fmt(value * scale if value is not None else None, digits)}" \
            if peer else "—"
        lines.append(f"| {wname} | {measure} | {fmt(mine * scale if mine is not None else None, digits)}"
                     f" | {best} | {fmt(r, 2)} | {op} {goal}{against or ''} | {met} |")

    for w in workloads:
        name = w["name"]
        if not res.ok("sluice"):
            continue
        cpu_key = res.cpu_key(name)
        cpu_label = "proxy CPU ms/GiB" if cpu_key == "cpu_ms_gib" else "proxy CPU µs/call"
        peer, v = res.best_peer(name, "rps", highest=True)
        row(name, "calls/s", res.med("sluice", name, "rps"), peer, v, GOAL_RPS_VS_BEST_PEER, ">=")
        peer, v = res.best_peer(name, cpu_key, highest=False)
        row(name, cpu_label, res.med("sluice", name, cpu_key), peer, v, GOAL_CPU_VS_BEST_PEER,
            "<=", digits=1)
        peer, v = res.best_peer(name, "p99", highest=False)
        row(name, "p99 ms", res.med("sluice", name, "p99"), peer, v, GOAL_P99_VS_BEST_PEER, "<=",
            digits=2, scale=1e-3)
        if name in GOAL_RPS_VS_DIRECT:
            row(name, "calls/s vs **direct**", res.med("sluice", name, "rps"), "direct",
                res.med("direct", name, "rps"), GOAL_RPS_VS_DIRECT[name], ">=",
                against=" × direct")
        if name == "latency":
            added = {p: res.added(p, name, "p50") for p in PEERS if res.ok(p)}
            added = {p: v for p, v in added.items() if v is not None}
            peer = min(added, key=added.get) if added else None
            row(name, "p50 added over direct, ms", res.added("sluice", name, "p50"), peer,
                added.get(peer), GOAL_ADDED_P50_VS_BEST_PEER, "<=", digits=3, scale=1e-3)
    lines.append("")
    lines.append("The best peer is chosen per row: the highest calls/s, the lowest CPU, the "
                 "lowest p99 or added p50 among the peers measured in the run.")


def rounds_table(res, workloads, lines):
    lines.append("| workload | target | round | calls | calls/s | proxy CPU ticks | proxy CPU µs/call "
                 "| proxy CPU ms/GiB | backends µs/call | p50 ms | p99 ms | upstream conns "
                 "| valid |")
    lines.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for w in workloads:
        for t in res.targets:
            for x in res.rows.get((t["name"], w["name"]), []):
                d = t["name"] == "direct"
                lines.append(
                    f"| {w['name']} | {t['name']} | {x['round']} | {fmt(x['calls'])} | "
                    f"{fmt(x['rps'])} | {fmt(x['ticks'])} | "
                    f"{'—' if d else fmt(x['cpu_us'], 1)} | "
                    f"{'—' if d else fmt(x['cpu_ms_gib'], 1)} | {fmt(x['backend_us'], 1)} | "
                    f"{fmt(None if x['p50'] is None else x['p50'] / 1000, 2)} | "
                    f"{fmt(None if x['p99'] is None else x['p99'] / 1000, 2)} | "
                    f"{fmt(x['upstream'])} | {x['invalid'] or 'yes'} |")


def report(workdir, out_path):
    recs, meta, workloads, targets = load(workdir)
    res = Results(recs, meta, workloads, targets)
    hz = meta["clk_tck"]
    lines = ["# gRPC proxy comparison: Greeter SayHello through each proxy, several workloads", ""]
    lines.append(f"- Date: {meta['date']}")
    lines.append(f"- Command: `{meta['command']}`")
    lines.append(f"- Git: `{meta['git']}`")
    lines.append(f"- Machine: {meta['machine']}. The machine is shared with other work "
                 "(compilers of other builds): absolute figures move with it; the ratios come "
                 "from measurements interleaved within each round.")
    lines.append(f"- Each measurement: h2load `-t 1` for {meta['duration']} s after a "
                 f"{meta['warmup']} s unmeasured warm-up; {meta['rounds']} round(s), each "
                 "measuring every workload on every target in an order that rotates; figures "
                 "are the median over rounds.")
    lines.append(f"- Backends: 3 x `build/bench/bench_greeter` on {meta['backends']} "
                 "(raw-bytes Greeter: small replies, or a reply of the size the "
                 "`bench-reply-bytes` header asks for).")
    lines.append(f"- Peers: {meta['versions']}")
    lines.append("- Workloads: " + "; ".join(
        f"**{w['name']}**: {w['label']} (`-c {w['conns']} -m {w['inflight']}`"
        + (f", request message {w['request']:,} B" if w["request"] else "")
        + (f", reply message {w['reply']:,} B" if w["reply"] else "") + ")"
        for w in workloads))
    lines.append("")
    lines.append("## Goals: sluice proxy against the best peer and against direct")
    lines.append("")
    if res.ok("sluice"):
        goals_table(res, workloads, lines)
    else:
        lines.append("Not computed: sluice proxy was not measured in this run.")
    lines.append("")
    lines.append("## Per workload")
    lines.append("")
    for w in workloads:
        workload_table(res, w, lines)
    lines.append("## How to read it")
    lines.append("")
    lines.append("- **calls/s**: h2load's req/s over the measurement (warm-up excluded); "
                 "**× direct**: against the no-proxy baseline of the same workload.")
    lines.append("- **proxy CPU**: (utime+stime of the proxy after - before, summed over all "
                 "its threads and processes, from /proc/PID/stat) per call completed, or, for "
                 "the 1 MiB workloads, per GiB of message bytes in the large direction "
                 "(calls x 1 MiB). "
                 f"One clock tick is {1000 / hz:.0f} ms; the per-round table gives the ticks.")
    lines.append("- **backends CPU µs/call**: the same for the three backends together.")
    lines.append("- **p50/p90/p99**: per-call latency from h2load's `--log-file`; **added**: the "
                 "target's median minus the direct baseline's median.")
    lines.append("- **upstream conns**: the most ESTABLISHED TCP connections owned by the proxy's "
                 "processes to the backends, sampled once a second (`ss -tnp`); a range is "
                 "min–max over the rounds.")
    lines.append("- **checks**: real gRPC calls (python3-grpcio, raw bytes on "
                 "`/Greeter/SayHello`) of the workload's kind before and after the rounds must "
                 "all return OK with a `Hello, world!, I am <backend>` reply (of exactly the "
                 "asked size for large replies); the per-backend counts show per-call "
                 "balancing. Each h2load measurement must also have 0 failed/errored requests, "
                 "only 2xx statuses, and DATA bytes = calls x the reply frame size seen by the "
                 "check (plus at most the calls in flight at the end); else it is INVALID.")
    lines.append("")
    lines.append("## Every round")
    lines.append("")
    rounds_table(res, workloads, lines)
    lines.append("")
    lines.append("## Configurations")
    lines.append("")
    for t in targets:
        if t.get("config"):
            lines.extend([f"### {t['label']}", "", "```", t["config"].rstrip(), "```", ""])
    with open(out_path, "w") as f:
        f.write("\n".join(lines).rstrip() + "\n")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__)
        sys.exit(2)
    report(sys.argv[1], sys.argv[2])
