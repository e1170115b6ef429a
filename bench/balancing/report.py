"""Figures of the balancing benchmark: per-arm summaries, the goals of the default policy, the
Markdown results file and one SVG timeline per scenario (drawn here: no plotting package)."""

import json
import math
import os
import platform
import subprocess
import time

# Arms drawn on the timelines (the tables list every arm).
TIMELINE_ARMS = ["oracle", "lib:prequal", "lib:peak_ewma", "lib:least_request", "lib:round_robin",
                 "proxy:prequal", "haproxy", "nginx", "grpc_round_robin"]
COLORS = ["#000000", "#d62728", "#ff7f0e", "#2ca02c", "#7f7f7f", "#9467bd", "#1f77b4",
          "#17becf", "#bcbd22"]
PEERS = ["haproxy", "nginx", "grpc_round_robin"]


def percentile(sorted_values, q):
    if not sorted_values:
        return None
    i = min(len(sorted_values) - 1, int(math.ceil(q * len(sorted_values))) - 1)
    return sorted_values[max(i, 0)]


def summarize(calls, backends, duration):
    """calls: (scheduled_s, latency_ms, backend, grpc_code); latency -1: never ended."""
    ok = sorted(lat for _, lat, _, code in calls if code == 0 and lat >= 0)
    failed = sum(1 for _, lat, _, code in calls if code != 0 or lat < 0)
    codes = {}
    for _, lat, _, code in calls:
        if code != 0:
            codes[str(code)] = codes.get(str(code), 0) + 1
    share = [0] * (backends + 1)  # last: unknown
    for _, _, b, _ in calls:
        share[b if 0 <= b < backends else backends] += 1
    bins = int(math.ceil(duration))
    timeline = [{"ok": [], "failed": 0, "to": [0] * (backends + 1)} for _ in range(bins)]
    for s, lat, b, code in calls:
        t = timeline[min(bins - 1, max(0, int(s)))]
        if code == 0 and lat >= 0:
            t["ok"].append(lat)
        else:
            t["failed"] += 1
        t["to"][b if 0 <= b < backends else backends] += 1
    series = []
    for t in timeline:
        t["ok"].sort()
        total = sum(t["to"])
        series.append({"p99": percentile(t["ok"], 0.99), "failed": t["failed"],
                       "share": [c / total if total else 0 for c in t["to"]]})
    n = len(calls)
    return {"calls": n, "failed": failed, "codes": codes,
            "p50": percentile(ok, 0.50), "p99": percentile(ok, 0.99),
            "p999": percentile(ok, 0.999), "max": ok[-1] if ok else None,
            "share": [c / n if n else 0 for c in share], "timeline": series}


def median_round(summaries):
    """The round with the median p99 (failed rounds sort last), with every round's p99 and
    failures beside it."""
    ran = [s for s in summaries if "error" not in s and s["p99"] is not None]
    if not ran:
        return summaries[-1]
    ran.sort(key=lambda s: s["p99"])
    chosen = dict(ran[(len(ran) - 1) // 2])
    if len(summaries) > 1:
        chosen["rounds"] = [{"p99": s.get("p99"), "failed": s.get("failed"),
                             "error": s.get("error")} for s in summaries]
    return chosen


def fmt_ms(v):
    if v is None:
        return "-"
    return "%.0f" % v if v >= 100 else ("%.1f" % v if v >= 10 else "%.2f" % v)


def one_line(s):
    return "calls=%d failed=%d p50=%s p99=%s p99.9=%s ms share=%s" % (
        s["calls"], s["failed"], fmt_ms(s["p50"]), fmt_ms(s["p99"]), fmt_ms(s["p999"]),
        "/".join("%.2f" % x for x in s["share"][:-1]))


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def machine_meta(command, duration, deadline_ms, warmup_s):
    def out(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout + \
                subprocess.run(cmd, capture_output=True, text=True, timeout=10).stderr
        except OSError:
            return "not installed"
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True).stdout.strip()
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "command": command,
            "git": git, "duration_s": duration, "deadline_ms": deadline_ms, "warmup_s": warmup_s,
            "cores": os.cpu_count(), "cpu": cpu, "kernel": platform.release(),
            "load_before": loadavg(),
            "haproxy": (out(["haproxy", "-v"]).splitlines() or ["?"])[0],
            "nginx": out(["nginx", "-v"]).strip()}


def best_peer(scenario_arms):
    """The best peer of a scenario: fewest failed calls, then lowest p99 (a peer that fails a
    third of the calls fast is not "better" for its lower p99 of the rest)."""
    peers = [(s["failed"], s["p99"], p) for p, s in scenario_arms.items()
             if p in PEERS and "error" not in s and s["p99"] is not None]
    return min(peers) if peers else None


def goals(arms):
    """The issue's goals for a default policy, checked for every Sluice arm: a list of
    (arm, [goal 1..4 verdicts: True, False or None when not measured])."""
    def get(s, arm):
        a = arms.get(s, {}).get(arm)
        return None if a is None or "error" in a or a["p99"] is None else a

    rows = []
    candidates = sorted({a for s in arms.values() for a in s if a.startswith(("lib:", "proxy:"))})
    for arm in candidates:
        rr = arm.split(":")[0] + ":round_robin"
        verdicts = []
        # 1: p99 <= 1.25 x the oracle's in S1-S4.
        pairs = [(get(s, arm), get(s, "oracle")) for s in ("S1", "S2", "S3", "S4") if s in arms]
        verdicts.append(all(a and o and a["p99"] <= 1.25 * o["p99"] for a, o in pairs)
                        if pairs else None)
        # 2: p99 <= 0.5 x round robin's (same path) in S1-S3.
        pairs = [(get(s, arm), get(s, rr)) for s in ("S1", "S2", "S3") if s in arms]
        verdicts.append(all(a and r and a["p99"] <= 0.5 * r["p99"] for a, r in pairs)
                        if pairs else None)
        # 3: no worse than the best peer in any scenario: no more failures, p99 no higher.
        checks = []
        for s in arms:
            best = best_peer(arms[s])
            if best:
                a = get(s, arm)
                checks.append(bool(a) and a["failed"] <= best[0] and a["p99"] <= best[1])
        verdicts.append(all(checks) if checks else None)
        # 4: S5: failed <= round robin's, p99 <= the best peer's.
        a, r, best = get("S5", arm), get("S5", rr), best_peer(arms.get("S5", {}))
        if a and r:
            verdicts.append(a["failed"] <= r["failed"] and (best is None or a["p99"] <= best[1]))
        else:
            verdicts.append(None)
        rows.append((arm, verdicts))
    return rows


def write(results, out_dir, arm_order):
    os.makedirs(out_dir, exist_ok=True)
    slim = json.loads(json.dumps(results))
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(slim, f, indent=1)
    meta = results["meta"]
    lines = ["# Balancing quality: Sluice's policies against peers and an oracle", "",
             "Generated by `%s` on %s (commit %s)." % (meta["command"], meta["date"], meta["git"]),
             "", "**Machine:** %s cores (%s), Linux %s, loopback only. The machine was shared with "
             "other developers compiling while this ran (load average %s before, %s after), so "
             "absolute numbers are noisy; the simulated backends spend service time on timers, not "
             "CPU, which keeps the comparison fair." % (
                 meta["cores"], meta["cpu"], meta["kernel"], meta["load_before"],
                 meta.get("load_after", "?")),
             "", "**Setup:** 3 simulated backends (4 slots each, exponential service time, a FIFO "
             "queue beyond the slots), Poisson open-loop load for %g s per arm after a %g s "
             "warm-up, deadline %d ms per call. Latency counts from each call's scheduled start; "
             "p50/p99/p99.9 are over successful calls, failures are counted apart. With several "
             "rounds, each cell is the round with the median p99 (results.json has every round). "
             "Shares are the fraction of all calls each backend answered (a call that timed out before any "
             "answer counts for no backend, so shares may sum to less than 1). %d round(s) per "
             "arm; the arms of a scenario run one after another, in a rotated order per scenario "
             "and round. Peers: %s; %s." % (
                 meta["duration_s"], meta["warmup_s"], meta["deadline_ms"],
                 meta.get("rounds", 1), meta["haproxy"], meta["nginx"]),
             "", "Arms: `lib:P` is the Sluice client library with policy P, `proxy:P` is `sluice "
             "proxy --policy P`, `oracle` sends each call to the backend with the shortest true "
             "queue (read from the backends' shared memory: no real balancer can).", ""]
    for name, sc in results["scenarios"].items():
        lines += ["## %s: %s" % (name, sc["title"]), "",
                  "Rate %d calls/s from %d client process(es); capacity %s." % (
                      sc["rate"], sc["clients"], sc["capacity"]), "",
                  "![%s timeline](%s.svg)" % (name, name), "",
                  "| arm | calls | failed | p50 ms | p99 ms | p99.9 ms | p99 / oracle | "
                  "share b0 / b1 / b2 |", "|---|---:|---:|---:|---:|---:|---:|---|"]
        oracle = sc["arms"].get("oracle", {}).get("p99")
        for arm in arm_order:
            s = sc["arms"].get(arm)
            if s is None:
                continue
            if "error" in s:
                lines.append("| %s | did not run: %s |||||||" % (arm, s["error"].replace("|", "/")
                                                                 .replace("\n", " ")[:200]))
                continue
            ratio = "%.2f" % (s["p99"] / oracle) if s["p99"] and oracle else "-"
            lines.append("| %s | %d | %d | %s | %s | %s | %s | %s |" % (
                arm, s["calls"], s["failed"], fmt_ms(s["p50"]), fmt_ms(s["p99"]),
                fmt_ms(s["p999"]), ratio, " / ".join("%.2f" % x for x in s["share"][:3])))
        lines.append("")
        with open(os.path.join(out_dir, name + ".svg"), "w") as f:
            f.write(timeline_svg(name, sc))
    arms = {n: sc["arms"] for n, sc in results["scenarios"].items()}
    names = list(results["scenarios"])
    lines += ["## Summary: p99 ms (failed calls) per scenario", "",
              "| arm | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for arm in arm_order:
        cells = []
        for n in names:
            s = arms[n].get(arm)
            if s is None:
                cells.append("")
            elif "error" in s:
                cells.append("did not run")
            else:
                cells.append("%s (%d)" % (fmt_ms(s["p99"]), s["failed"]))
        if any(cells):
            lines.append("| %s | %s |" % (arm, " | ".join(cells)))
    lines.append("")
    lines += ["## Goals for the default policy", "",
              "1: p99 <= 1.25 x oracle in S1-S4. 2: p99 <= 0.5 x round_robin's (same path) in "
              "S1-S3. 3: no worse than the best peer (HAProxy, nginx, gRPC round_robin; the best is the "
              "one with the fewest failed calls, then the lowest p99) in any scenario: no more "
              "failed calls and no higher p99. 4: S5: failed <= round_robin's (same path) and p99 "
              "<= the best peer's. "
              "(- : not measured in this run.)", "",
              "| arm | 1 | 2 | 3 | 4 |", "|---|---|---|---|---|"]
    mark = {True: "yes", False: "**no**", None: "-"}
    for arm, verdicts in goals(arms):
        lines.append("| %s | %s |" % (arm, " | ".join(mark[v] for v in verdicts)))
    lines.append("")
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write("\n".join(lines))


def timeline_svg(name, sc):
    """Two panels: p99 of each 1 s of scheduled time (log scale), and the share of calls the
    scenario's affected backend got in each second."""
    w, h, left, right, top = 900, 560, 70, 190, 40
    ph = 260  # top panel height
    sh = 150  # share panel height
    gap = 60
    # The standard arms drawn, then any policy variant (lib:P@{config}) the run measured.
    drawn = TIMELINE_ARMS + sorted(a for a in sc["arms"] if "@" in a)
    arms = [(a, COLORS[i % len(COLORS)]) for i, a in enumerate(drawn)
            if a in sc["arms"] and "error" not in sc["arms"][a]]
    bins = max([len(sc["arms"][a]["timeline"]) for a, _ in arms] or [1])
    values = [t["p99"] for a, _ in arms for t in sc["arms"][a]["timeline"] if t["p99"]]
    lo = 10 ** math.floor(math.log10(max(min(values), 0.1))) if values else 1
    hi = 10 ** math.ceil(math.log10(max(values))) if values else 1000
    hi = max(hi, lo * 10)
    pw = w - left - right

    def x(i):
        return left + pw * (i + 0.5) / bins

    def y(v):
        return top + ph * (1 - (math.log10(v) - math.log10(lo)) / (math.log10(hi) -
                                                                     math.log10(lo)))

    def ys(frac):
        return top + ph + gap + sh * (1 - frac)

    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
           'font-family="sans-serif" font-size="12">' % (w, h),
           '<rect width="100%" height="100%" fill="white"/>',
           '<text x="%d" y="20" font-size="14" font-weight="bold">%s: %s</text>' % (
               left, name, sc["title"])]
    # Axes and grid of the latency panel.
    d = lo
    while d <= hi * 1.001:
        out.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/>' % (
            left, left + pw, y(d), y(d)))
        out.append('<text x="%d" y="%.1f" text-anchor="end">%s</text>' % (
            left - 5, y(d) + 4, ("%g ms" % d)))
        d *= 10
    out.append('<text x="%d" y="%d" transform="rotate(-90 %d %d)" text-anchor="middle">'
               'p99 latency per second (log)</text>' % (15, top + ph // 2, 15, top + ph // 2))
    for i in range(0, bins + 1, max(1, bins // 10)):
        xx = left + pw * i / bins
        out.append('<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#eee"/>' % (
            xx, xx, top, top + ph + gap + sh))
        out.append('<text x="%.1f" y="%d" text-anchor="middle">%ds</text>' % (
            xx, top + ph + gap + sh + 15, i))
    out.append('<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#888"/>' % (
        left, top, pw, ph))
    out.append('<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#888"/>' % (
        left, top + ph + gap, pw, sh))
    affected = sc.get("affected", 2)
    out.append('<text x="%d" y="%d">share of calls to backend b%d per second (0 to 1)</text>' % (
        left, top + ph + gap - 8, affected))
    for frac in (0, 1 / 3, 2 / 3, 1):
        out.append('<text x="%d" y="%.1f" text-anchor="end">%.2f</text>' % (
            left - 5, ys(frac) + 4, frac))
    for li, (arm, color) in enumerate(arms):
        tl = sc["arms"][arm]["timeline"]
        pts = " ".join("%.1f,%.1f" % (x(i), y(max(t["p99"], lo))) for i, t in enumerate(tl)
                       if t["p99"])
        out.append('<polyline fill="none" stroke="%s" stroke-width="1.6" points="%s"/>' % (
            color, pts))
        pts = " ".join("%.1f,%.1f" % (x(i), ys(t["share"][affected])) for i, t in enumerate(tl))
        out.append('<polyline fill="none" stroke="%s" stroke-width="1.2" points="%s"/>' % (
            color, pts))
        ly = top + 10 + li * 18
        out.append('<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="%s" stroke-width="3"/>' % (
            w - right + 15, w - right + 35, ly, ly, color))
        out.append('<text x="%d" y="%d">%s</text>' % (w - right + 40, ly + 4, arm))
    out.append("</svg>")
    return "\n".join(out) + "\n"


def short_checks(results):
    """What the `make test` variant asserts about S1 (one backend 3x slower)."""
    problems = []
    arms = results["scenarios"].get("S1", {}).get("arms", {})
    for arm, s in arms.items():
        if "error" in s:
            problems.append("%s did not run: %s" % (arm, s["error"]))
        elif s["calls"] == 0 or s["p99"] is None:
            problems.append("%s made no successful call" % arm)
        elif s["share"][-1] > 0.01:
            problems.append("%s: %.0f%% of calls did not say which backend answered" % (
                arm, 100 * s["share"][-1]))
    if problems:
        return problems
    rr, pq, oracle = arms.get("lib:round_robin"), arms.get("lib:prequal"), arms.get("oracle")
    if rr and pq:
        # Round robin gives the slow backend a third of the calls whatever happens (some of
        # them may time out unattributed); prequal must shed it.
        if not pq["share"][2] < 0.8 / 3:
            problems.append("lib:prequal sent the slow backend %.2f of calls; round robin's "
                            "third is what it must improve on" % pq["share"][2])
        if not pq["p99"] < rr["p99"]:
            problems.append("lib:prequal p99 %.1f ms is not below round_robin's %.1f ms" % (
                pq["p99"], rr["p99"]))
    if oracle and oracle["failed"] != 0:
        problems.append("the oracle had %d failed calls" % oracle["failed"])
    return problems
