#!/usr/bin/python3
"""Helpers of bench/proxy/run.sh (Debian's /usr/bin/python3: python3-grpcio lives there).

  helper.py freeport IP              print a TCP port free on IP (loopback only)
  helper.py body FILE [NAME]         write a framed gRPC HelloRequest{name} (h2load's -d file)
  helper.py check ADDR CALLS         CALLS real SayHello calls over one channel; JSON summary;
                                     exit 1 unless every call is OK with a Greeter reply
  helper.py ticks PID...             utime+stime (clock ticks) of the PIDs, all their threads and
                                     all their descendant processes (nginx's workers)
  helper.py h2load OUT LOG           parse one h2load run (stdout + --log-file) into JSON
  helper.py tree PID...              the PIDs and all their descendants
  helper.py report WORKDIR OUT       write the markdown results file
"""
import json
import os
import re
import socket
import statistics
import sys


def _loopback(ip):
    if not ip.startswith("127."):
        raise SystemExit(f"refusing non-loopback address {ip}")


def cmd_freeport(ip):
    _loopback(ip)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((ip, 0))
    port = s.getsockname()[1]
    s.close()
    print(port)


def hello_request(name):
    raw = name.encode()
    assert len(raw) < 128
    return b"\x0a" + bytes([len(raw)]) + raw  # field 1 (name), wire type 2, length, bytes


def grpc_frame(msg):
    return b"\x00" + len(msg).to_bytes(4, "big") + msg  # not compressed, big-endian length


def cmd_body(path, name="world"):
    with open(path, "wb") as f:
        f.write(grpc_frame(hello_request(name)))


def _parse_reply(data):
    """HelloReply{message = 2}: returns the message string (None if not a HelloReply)."""
    i, out = 0, None
    while i < len(data):
        key = data[i]
        i += 1
        if key & 7 != 2:
            return None
        ln, shift = 0, 0
        while True:
            b = data[i]
            i += 1
            ln |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        val = data[i : i + ln]
        i += ln
        if key >> 3 == 2:
            out = val.decode()
    return out


def cmd_check(addr, calls):
    import grpc

    _loopback(addr.split(":")[0])
    calls = int(calls)
    result = {"addr": addr, "calls": calls, "ok": 0, "failed": 0, "by_backend": {},
              "frame_bytes": [], "first_error": None}
    with grpc.insecure_channel(addr) as channel:
        say_hello = channel.unary_unary("/Greeter/SayHello")  # raw bytes in and out
        for _ in range(calls):
            try:
                reply = say_hello(hello_request("world"), timeout=5)
                message = _parse_reply(reply)
                if not message or not message.startswith("Hello, world!, I am "):
                    raise ValueError(f"not a Greeter reply: {reply!r}")
                backend = message.rsplit(" ", 1)[1]
                result["ok"] += 1
                result["by_backend"][backend] = result["by_backend"].get(backend, 0) + 1
                size = len(grpc_frame(reply))
                if size not in result["frame_bytes"]:
                    result["frame_bytes"].append(size)
            except Exception as e:  # noqa: BLE001 - every failure is reported
                result["failed"] += 1
                if result["first_error"] is None:
                    code = getattr(e, "code", None)
                    detail = getattr(e, "details", None)
                    result["first_error"] = (f"{code()} {detail()}" if callable(code)
                                             else repr(e))[:300]
    print(json.dumps(result))
    return 0 if result["failed"] == 0 and result["ok"] == calls else 1


def _descendants(pids):
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    seen, todo = set(), [int(p) for p in pids]
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        todo.extend(children.get(p, []))
    return seen


def cmd_ticks(*pids):
    total = 0
    for p in _descendants(pids):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
    print(total)


def parse_h2load(out_path, log_path):
    r = {}
    with open(out_path) as f:
        text = f.read()
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("finished in"):
            # finished in 10.00s, 20422.30 req/s, 2.34MB/s
            parts = line.split(",")
            r["seconds"] = float(parts[0].split()[-1].rstrip("s"))
            r["rps"] = float(parts[1].split()[0])
        elif line.startswith("requests:"):
            for item in line[len("requests:"):].split(","):
                n, what = item.split()
                r["req_" + what] = int(n)
        elif line.startswith("status codes:"):
            for item in line[len("status codes:"):].split(","):
                n, what = item.split()
                r["status_" + what] = int(n)
        elif line.startswith("traffic:"):
            # traffic: 2.9MB (3040000) total, 0.9MB (930000) headers (space savings 9%), ... data
            for n, key in re.findall(r"\((\d+)\)\s+(total|headers|data)", line):
                r["bytes_" + key] = int(n)
        elif line.startswith("time for request:"):
            # time for request:   1.23ms   4.56ms   2.00ms   0.10ms   90.00%
            vals = line[len("time for request:"):].split()
            r["h2load_min"], r["h2load_max"], r["h2load_mean"], r["h2load_sd"] = (
                _to_us(v) for v in vals[:4])
    lat = []
    codes = {}
    if log_path and os.path.exists(log_path):
        with open(log_path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3:
                    codes[parts[1]] = codes.get(parts[1], 0) + 1
                    lat.append(int(parts[2]))
    if lat:
        lat.sort()
        r["log_calls"] = len(lat)
        r["log_status"] = codes
        for q in (50, 90, 99):
            r[f"p{q}"] = lat[min(len(lat) - 1, int(len(lat) * q / 100))]
        r["p999"] = lat[min(len(lat) - 1, int(len(lat) * 0.999))]
    return r


def _to_us(v):
    for unit, mul in (("us", 1), ("ms", 1000), ("s", 1000000)):
        if v.endswith(unit):
            return float(v[: -len(unit)]) * mul
    return float(v)


def cmd_h2load(out_path, log_path):
    print(json.dumps(parse_h2load(out_path, log_path)))


# ---------------------------------------------------------------------------------------------
# Report


def _read(path, default=None):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def _load(workdir):
    """run.sh leaves: records.jsonl (one line per measurement), meta/KEY (one file per value),
    targets.list (names in order) and t/NAME/{label,status,check.json,post_check.json,config}."""
    recs = []
    with open(os.path.join(workdir, "records.jsonl")) as f:
        for line in f:
            if line.strip():
                recs.append(json.loads(line))
    meta = {k: _read(os.path.join(workdir, "meta", k))
            for k in os.listdir(os.path.join(workdir, "meta"))}
    meta["clk_tck"] = int(meta["clk_tck"])
    targets = []
    for name in _read(os.path.join(workdir, "targets.list"), "").split():
        d = os.path.join(workdir, "t", name)
        t = {"name": name, "label": _read(os.path.join(d, "label"), name),
             "status": _read(os.path.join(d, "status"), "not run"),
             "config": _read(os.path.join(d, "config"))}
        for k in ("check", "post_check"):
            text = _read(os.path.join(d, k + ".json"))
            try:
                t[k] = json.loads(text) if text else None
            except ValueError:
                t[k] = None
        targets.append(t)
    meta["targets"] = targets
    return recs, meta


def cmd_tree(*pids):
    print(" ".join(str(p) for p in sorted(_descendants(pids))))


def _validate(rec, frame_sizes):
    """Why this measurement cannot be trusted, or None."""
    h = rec["h2load"]
    succ = h.get("req_succeeded", 0)
    if not succ:
        return "no successful request"
    if h.get("req_failed", 0) or h.get("req_errored", 0) or h.get("req_timeout", 0):
        return (f"h2load: {h.get('req_failed', 0)} failed, {h.get('req_errored', 0)} errored, "
                f"{h.get('req_timeout', 0)} timeout")
    non2xx = sum(h.get(k, 0) for k in ("status_3xx", "status_4xx", "status_5xx"))
    if non2xx or h.get("status_2xx", 0) != succ:
        return f"HTTP status: {h.get('status_2xx', 0)} 2xx of {succ}, {non2xx} non-2xx"
    if frame_sizes:
        data = h.get("bytes_data")
        lo, hi = min(frame_sizes) * succ, max(frame_sizes) * succ
        if data is None or not lo <= data <= hi:
            return (f"reply bytes {data} not in [{lo}, {hi}]: some 200s carried no Greeter reply "
                    "(a gRPC error in trailers)")
    return None


def _fmt(v, digits=0):
    if v is None:
        return "—"
    if isinstance(v, str):
        return v
    return f"{v:,.{digits}f}"


def cmd_report(workdir, out_path):
    recs, meta = _load(workdir)
    targets = meta["targets"]  # list of {name, label, status, check, post_check, config}
    hz = meta["clk_tck"]
    rows = {}
    for t in targets:
        name = t["name"]
        mine = [r for r in recs if r["target"] == name]
        frame_sizes = (t.get("check") or {}).get("frame_bytes") or []
        per_round = []
        for r in mine:
            why = _validate(r, frame_sizes)
            h = r["h2load"]
            succ = h.get("req_succeeded", 0)
            cpu_us = None
            if r.get("proxy_ticks") is not None and succ:
                cpu_us = r["proxy_ticks"] * 1e6 / hz / succ
            be_us = r["backend_ticks"] * 1e6 / hz / succ if succ else None
            per_round.append({
                "round": r["round"], "invalid": why, "rps": h.get("rps"), "calls": succ,
                "cpu_us": cpu_us, "backend_us": be_us, "p50": h.get("p50"), "p90": h.get("p90"),
                "p99": h.get("p99"), "mean": h.get("h2load_mean"), "max": h.get("h2load_max"),
                "upstream": r.get("upstream_conns"), "ticks": r.get("proxy_ticks"),
            })
        rows[name] = per_round

    def med(name, key):
        vals = [x[key] for x in rows.get(name, []) if not x["invalid"] and x[key] is not None]
        return statistics.median(vals) if vals else None

    lines = []
    lines.append("# gRPC proxy comparison: Greeter SayHello through each proxy")
    lines.append("")
    lines.append(f"- Date: {meta['date']}")
    lines.append(f"- Command: `{meta['command']}`")
    lines.append(f"- Git: `{meta['git']}`")
    lines.append(f"- Machine: {meta['machine']}")
    connections = int(meta.get('connections', 1))
    lines.append(f"- Load: h2load, {connections} client connection{'s' if connections > 1 else ''}"
                 f" x {meta['inflight']} calls in flight "
                 f"(`-c {connections} -m {meta['inflight']} -t 1`), {meta['duration']} s per measurement "
                 f"after {meta['warmup']} s warm-up; {meta['rounds']} interleaved rounds "
                 "(the order rotates each round); figures are the median over rounds.")
    lines.append(f"- Request: `POST /Greeter/SayHello`, `content-type: application/grpc`, "
                 f"`te: trailers`, body = framed `HelloRequest{{name: \"world\"}}` "
                 f"({meta['body_hex']}).")
    lines.append(f"- Backends: 3 x `build/bin/greeter_server --quiet` on {meta['backends']}.")
    lines.append(f"- Peers: {meta['versions']}")
    lines.append("")
    lines.append("| target | calls/s | proxy CPU µs/call | backends CPU µs/call | p50 ms | p90 ms "
                 "| p99 ms | mean ms | upstream conns | reply check |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for t in targets:
        name = t["name"]
        if t["status"] != "ok":
            lines.append(f"| {t['label']} | {t['status']} | | | | | | | | |")
            continue
        valid = [x for x in rows[name] if not x["invalid"]]
        ups = [x["upstream"] for x in rows[name] if x["upstream"] is not None]
        upstream = "—"
        if ups and name != "direct":
            upstream = str(max(ups)) if min(ups) == max(ups) else f"{min(ups)}–{max(ups)}"
        chk = t.get("check") or {}
        post = t.get("post_check") or {}
        check = (f"{chk.get('ok', 0)}/{chk.get('calls', 0)} OK before, "
                 f"{post.get('ok', 0)}/{post.get('calls', 0)} after; "
                 + ", ".join(f"{k}: {v}" for k, v in sorted(chk.get("by_backend", {}).items())))
        if not valid:
            lines.append(f"| {t['label']} | INVALID ({rows[name][0]['invalid'] if rows[name] else 'no run'}) "
                         f"| | | | | | | {upstream} | {check} |")
            continue
        ms = lambda k: None if med(name, k) is None else med(name, k) / 1000  # noqa: E731
        lines.append(
            f"| {t['label']} | {_fmt(med(name, 'rps'))} | "
            f"{'—' if name == 'direct' else _fmt(med(name, 'cpu_us'), 1)} | "
            f"{_fmt(med(name, 'backend_us'), 1)} | {_fmt(ms('p50'), 2)} | {_fmt(ms('p90'), 2)} | "
            f"{_fmt(ms('p99'), 2)} | {_fmt(ms('mean'), 2)} | {upstream} | {check} |")
    lines.append("")

    # Ratios.
    s_rps, s_cpu = med("sluice", "rps"), med("sluice", "cpu_us")
    sluice_ok = any(t["name"] == "sluice" and t["status"] == "ok" for t in targets)
    if sluice_ok and s_rps and s_cpu:
        lines.append("| ratio | calls/s | proxy CPU µs/call |")
        lines.append("|---|---:|---:|")
        for other, label in (("haproxy", "sluice / haproxy"), ("nginx", "sluice / nginx")):
            o_rps, o_cpu = med(other, "rps"), med(other, "cpu_us")
            lines.append(f"| {label} | {_fmt(s_rps / o_rps, 2) if o_rps else '—'} | "
                         f"{_fmt(s_cpu / o_cpu, 2) if o_cpu else '—'} |")
        lines.append("")
        lines.append("calls/s ratio above 1 and CPU ratio below 1 favour sluice.")
    else:
        lines.append("Ratios sluice/haproxy and sluice/nginx: not computed (sluice proxy "
                     "not measured in this run).")
    lines.append("")
    lines.append("## How to read it")
    lines.append("")
    lines.append("- **calls/s**: h2load's req/s over the measurement (warm-up excluded).")
    lines.append("- **proxy CPU µs/call**: (utime+stime of the proxy after - before, summed over "
                 "all its threads and processes, from /proc/PID/stat) / calls completed. "
                 f"One clock tick is {1000 / hz:.0f} ms; the per-round table gives the ticks "
                 "counted, so a round's resolution is 1/ticks.")
    lines.append("- **backends CPU µs/call**: the same for the three greeter_server processes "
                 "together (what serving one call costs behind the proxy).")
    lines.append("- **p50/p90/p99**: per-call latency from h2load's `--log-file` (each request's "
                 "time from send to end of stream); **mean** is h2load's own.")
    lines.append("- **upstream conns**: the most ESTABLISHED TCP connections owned by the proxy's "
                 "processes to the three backend addresses, sampled once a second during the "
                 "measurements (`ss -tnp`; idle pooled connections count too); a range is "
                 "min–max over the rounds. The direct baseline has one connection to "
                 "127.0.0.11 only.")
    lines.append("- **reply check**: real gRPC calls (python3-grpcio, raw bytes on "
                 "`/Greeter/SayHello`) before and after the rounds must all return OK with a "
                 "`Hello, world!, I am <backend>` reply; the per-backend counts show per-call "
                 "balancing. Every h2load measurement must also have 0 failed/errored requests, "
                 "only 2xx statuses, and DATA bytes = calls x the reply frame size seen by the "
                 "check (a gRPC error is a 200 with no DATA), else it is reported INVALID.")
    lines.append("")
    lines.append("## Every round")
    lines.append("")
    lines.append("| target | round | calls | calls/s | proxy CPU ticks | proxy CPU µs/call "
                 "| backends µs/call | p50 ms | p99 ms | upstream conns | valid |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for t in targets:
        for x in rows.get(t["name"], []):
            lines.append(
                f"| {t['name']} | {x['round']} | {_fmt(x['calls'])} | {_fmt(x['rps'])} | "
                f"{_fmt(x['ticks'])} | "
                f"{_fmt(x['cpu_us'], 1) if t['name'] != 'direct' else '—'} | "
                f"{_fmt(x['backend_us'], 1)} | "
                f"{_fmt(None if x['p50'] is None else x['p50'] / 1000, 2)} | "
                f"{_fmt(None if x['p99'] is None else x['p99'] / 1000, 2)} | "
                f"{_fmt(x['upstream'])} | {x['invalid'] or 'yes'} |")
    lines.append("")
    lines.append("## Configurations")
    lines.append("")
    for t in targets:
        if t.get("config"):
            lines.append(f"### {t['label']}")
            lines.append("")
            lines.append("```")
            lines.append(t["config"].rstrip())
            lines.append("```")
            lines.append("")
    with open(out_path, "w") as f:
        f.write("\n".join(lines).rstrip() + "\n")


def main(argv):
    if len(argv) < 2:
        print(__doc__)
        return 2
    cmd, args = argv[1], argv[2:]
    fn = {"freeport": cmd_freeport, "body": cmd_body, "check": cmd_check, "ticks": cmd_ticks,
          "h2load": cmd_h2load, "report": cmd_report,
          "tree": cmd_tree}.get(cmd)
    if fn is None:
        print(__doc__)
        return 2
    return fn(*args) or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
