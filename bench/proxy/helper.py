#!/usr/bin/python3
"""Helpers of bench/proxy/run.sh (Debian's /usr/bin/python3: python3-grpcio lives there).

  helper.py freeport IP              print a TCP port free on IP (loopback only)
  helper.py body FILE [NAME] [BYTES] write a framed gRPC HelloRequest{name} (h2load's -d file);
                                     with BYTES, padded to a message of exactly BYTES bytes by
                                     an unknown field (15) that the Greeter skips
  helper.py check ADDR CALLS [BODY] [REPLY_BYTES]
                                     CALLS real SayHello calls over one channel, sending BODY's
                                     message (default: HelloRequest{"world"}) and asking the
                                     backend for a REPLY_BYTES reply (bench-reply-bytes); JSON
                                     summary; exit 1 unless every call is OK with a Greeter reply
                                     (of exactly REPLY_BYTES when asked)
  helper.py ticks PID...             utime+stime (clock ticks) of the PIDs, all their threads and
                                     all their descendant processes (nginx's workers)
  helper.py h2load OUT LOG           parse one h2load run (stdout + --log-file) into JSON
  helper.py tree PID...              the PIDs and all their descendants

The markdown report is report.py's.
"""
import json
import os
import re
import socket
import sys

REPLY_BYTES_HEADER = "bench-reply-bytes"  # bench_greeter.cc: the size of the reply to send
PADDING_KEY = (15 << 3) | 2  # an unknown length-delimited field: parsers skip it


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


def _varint(n):
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def padded_request(name, total):
    """HelloRequest{name} plus a padding field, exactly `total` bytes (0: no padding)."""
    base = hello_request(name)
    if total <= 0:
        return base
    for size in range(1, 6):  # the padding's length varint takes `size` bytes
        length = total - len(base) - 1 - size
        if length >= 0 and len(_varint(length)) == size:
            return base + bytes([PADDING_KEY]) + _varint(length) + bytes(length)
    raise SystemExit(f"cannot pad a {len(base)}-byte HelloRequest to {total} bytes")


def cmd_body(path, name="world", total="0"):
    with open(path, "wb") as f:
        f.write(grpc_frame(padded_request(name, int(total))))


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


def cmd_check(addr, calls, body_path=None, reply_bytes="0"):
    import grpc

    _loopback(addr.split(":")[0])
    calls, reply_bytes = int(calls), int(reply_bytes)
    request = hello_request("world")
    if body_path:
        with open(body_path, "rb") as f:
            request = f.read()[5:]  # the message inside the gRPC frame
    metadata = [(REPLY_BYTES_HEADER, str(reply_bytes))] if reply_bytes else None
    result = {"addr": addr, "calls": calls, "request_bytes": len(request),
              "reply_bytes": reply_bytes or None, "ok": 0, "failed": 0, "by_backend": {},
              "frame_bytes": [], "first_error": None}
    options = [("grpc.max_receive_message_length", 64 << 20)]
    with grpc.insecure_channel(addr, options=options) as channel:
        say_hello = channel.unary_unary("/Greeter/SayHello")  # raw bytes in and out
        for _ in range(calls):
            try:
                reply = say_hello(request, timeout=10, metadata=metadata)
                message = _parse_reply(reply)
                if not message or not message.startswith("Hello, world!, I am "):
                    raise ValueError(f"not a Greeter reply: {reply[:200]!r}")
                if reply_bytes and len(reply) != reply_bytes:
                    raise ValueError(f"asked for a {reply_bytes}-byte reply, got {len(reply)}")
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


def cmd_tree(*pids):
    print(" ".join(str(p) for p in sorted(_descendants(pids))))


def main(argv):
    if len(argv) < 2:
        print(__doc__)
        return 2
    cmd, args = argv[1], argv[2:]
    fn = {"freeport": cmd_freeport, "body": cmd_body, "check": cmd_check, "ticks": cmd_ticks,
          "h2load": cmd_h2load, "tree": cmd_tree}.get(cmd)
    if fn is None:
        print(__doc__)
        return 2
    return fn(*args) or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
