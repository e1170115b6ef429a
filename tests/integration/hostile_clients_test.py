#!/usr/bin/env python3
"""Scripted hostile clients against a real `sluice proxy`, while a well-behaved client
(`sluice bench`) runs through the same proxy: each attack gets the right HTTP/2 answer, the
proxy stays up with bounded memory, and the good client loses no call.

Usage: hostile_clients_test.py BUILD_DIR
"""
import importlib.util
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location(
    "h2seeds", os.path.join(HERE, "..", "..", "fuzz", "make_h2_seeds.py"))
h2 = importlib.util.module_from_spec(spec)
spec.loader.exec_module(h2)
sys.path.insert(0, os.path.join(HERE, "..", "support"))
from e2e import lab  # noqa: E402

NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, REFUSED_STREAM, CANCEL, ENHANCE_YOUR_CALM = (
    0x0, 0x1, 0x2, 0x7, 0x8, 0xb)
MAX_STREAMS = 50



def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Connection:
    """A raw HTTP/2 client connection that records what the proxy sends."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""
        self.closed = False

    def send(self, data):
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def read_frames(self, seconds):
        """Frames received within `seconds` (or until the proxy closes): [(type, flags, stream,
        payload)]."""
        self.sock.settimeout(0.2)
        end = time.time() + seconds
        while time.time() < end and not self.closed:
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                self.closed = True
                break
            if not chunk:
                self.closed = True
                break
            self.buffer += chunk
        frames, offset = [], 0
        while offset + 9 <= len(self.buffer):
            length = int.from_bytes(self.buffer[offset:offset + 3], "big")
            if offset + 9 + length > len(self.buffer):
                break
            kind, flags = self.buffer[offset + 3], self.buffer[offset + 4]
            stream = int.from_bytes(self.buffer[offset + 5:offset + 9], "big") & 0x7fffffff
            frames.append((kind, flags, stream, self.buffer[offset + 9:offset + 9 + length]))
            offset += 9 + length
        return frames

    def close(self):
        self.sock.close()


def goaway_code(frames):
    for kind, _, _, payload in frames:
        if kind == h2.GOAWAY and len(payload) >= 8:
            return struct.unpack(">I", payload[4:8])[0]
    return None


def reset_codes(frames):
    return [struct.unpack(">I", p[:4])[0] for k, _, s, p in frames if k == h2.RST_STREAM]


def headers_frames(stream, block, end_stream):
    flags = h2.END_HEADERS | (h2.END_STREAM if end_stream else 0)
    return h2.frame(h2.HEADERS, flags, stream, block)


def main():
    build = sys.argv[1]
    bin_dir = os.path.join(build, "bin")
    work = tempfile.mkdtemp(prefix="sluice-hostile-")
    procs = []
    results = []

    def check(condition, what):
        results.append((condition, what))
        print(("ok      " if condition else "FAILED  ") + what, flush=True)

    def start(name, argv):
        log = open(os.path.join(work, name + ".log"), "wb")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        procs.append(proc)
        return proc

    try:
        backends = []
        for ip in ("127.0.0.11", "127.0.0.12"):
            port = lab.free_port(ip)
            start("greeter-" + ip, [os.path.join(bin_dir, "greeter_server"), "--ip", ip,
                                    "--port", str(port), "--quiet"])
            backends.append("%s:%d" % (ip, port))
        proxy_port = lab.free_port()
        proxy = start("proxy", [os.path.join(bin_dir, "sluice"), "proxy",
                                "--listen", "127.0.0.1:%d" % proxy_port,
                                "--target", "static://" + ",".join(backends),
                                "--workers", "1", "--max-concurrent-streams", str(MAX_STREAMS)])
        if not lab.wait_until(lambda: lab.can_connect("127.0.0.1", proxy_port), 10):
            check(False, "the proxy starts")
            return 1
        time.sleep(0.5)
        rss_start = rss_kb(proxy.pid)

        # The well-behaved client, through the whole attack.
        bench_out = os.path.join(work, "bench.json")
        bench = subprocess.Popen(
            [os.path.join(bin_dir, "sluice"), "bench", "--target", "127.0.0.1:%d" % proxy_port,
             "--concurrency", "4", "--duration", "12s", "--json"],
            stdout=open(bench_out, "w"), stderr=subprocess.DEVNULL)
        time.sleep(0.5)

        good = h2.START + headers_frames(1, h2.request_headers(), False) + \
            h2.frame(h2.DATA, h2.END_STREAM, 1, h2.HELLO)

        # 1. Bytes that are not HTTP/2.
        c = Connection(proxy_port)
        c.send(b"\x16\x03\x01\x02\x00" + os.urandom(400))  # a TLS ClientHello-like start
        frames = c.read_frames(3)
        check(goaway_code(frames) == PROTOCOL_ERROR and c.closed,
              "garbage bytes: GOAWAY(PROTOCOL_ERROR) and close (got %s)" % goaway_code(frames))
        c.close()

        # 2. A valid preface, then garbage.
        c = Connection(proxy_port)
        c.send(h2.PREFACE + b"\x00\x00\x04\xee\xff" + os.urandom(300))
        frames = c.read_frames(3)
        check(goaway_code(frames) in (PROTOCOL_ERROR, 0x6) and c.closed,
              "preface then garbage: GOAWAY(PROTOCOL_ERROR or FRAME_SIZE_ERROR) and close "
              "(got %s)" % goaway_code(frames))
        c.close()

        # 3. An oversized header block (256 KiB of headers in CONTINUATION frames).
        c = Connection(proxy_port)
        block = h2.request_headers(extra=[(b"x-big-%d" % i, b"v" * 8000) for i in range(32)])
        data = h2.START + h2.frame(h2.HEADERS, 0, 1, block[:16000])
        for offset in range(16000, len(block), 16000):
            last = offset + 16000 >= len(block)
            data += h2.frame(h2.CONTINUATION, h2.END_HEADERS if last else 0, 1,
                             block[offset:offset + 16000])
        c.send(data + h2.frame(h2.DATA, h2.END_STREAM, 1, h2.HELLO))
        frames = c.read_frames(3)
        answered = [f for f in frames if f[0] == h2.HEADERS and f[2] == 1]
        refused = reset_codes(frames) or goaway_code(frames) is not None
        status_431 = any(b"431" in f[3] for f in answered)
        check(refused or status_431,
              "oversized header block: the stream is refused (RST_STREAM %s, GOAWAY %s)"
              % (reset_codes(frames), goaway_code(frames)))
        c.close()

        # 4. A flood of streams opened and reset at once (rapid reset).
        c = Connection(proxy_port)
        data = h2.START
        for i in range(3000):
            stream = 1 + 2 * i
            data += headers_frames(stream, h2.request_headers(), False)
            data += h2.frame(h2.RST_STREAM, 0, stream, struct.pack(">I", CANCEL))
        c.send(data)
        frames = c.read_frames(5)
        # nghttp2's rapid-reset limit ends the session with INTERNAL_ERROR.
        check(goaway_code(frames) in (ENHANCE_YOUR_CALM, INTERNAL_ERROR) and c.closed,
              "RST_STREAM flood: GOAWAY(ENHANCE_YOUR_CALM or INTERNAL_ERROR) and close (got %s)"
              % goaway_code(frames))
        c.close()

        # 5. A flood of SETTINGS and of PING from a client that never reads the ACKs.
        for kind, payload, name in ((h2.SETTINGS, b"", "SETTINGS"),
                                    (h2.PING, b"12345678", "PING")):
            c = Connection(proxy_port)
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            flood = h2.frame(kind, 0, 0, payload) * 2000
            sent_ok = c.send(h2.START)
            for _ in range(100):
                if not c.send(flood):
                    break
            frames = c.read_frames(5)
            check(sent_ok and goaway_code(frames) == ENHANCE_YOUR_CALM and c.closed,
                  "%s flood without reading: GOAWAY(ENHANCE_YOUR_CALM) and close (got %s)"
                  % (name, goaway_code(frames)))
            c.close()

        # 6. More streams than SETTINGS_MAX_CONCURRENT_STREAMS, all left open.
        c = Connection(proxy_port)
        data = h2.START
        for i in range(MAX_STREAMS + 20):
            data += headers_frames(1 + 2 * i, h2.request_headers(), False)
        c.send(data)
        frames = c.read_frames(3)
        codes = reset_codes(frames)
        check(codes.count(REFUSED_STREAM) >= 20 or goaway_code(frames) == PROTOCOL_ERROR,
              "streams beyond the limit: the excess is refused (RST_STREAM codes %s, GOAWAY %s)"
              % (sorted(set(codes)), goaway_code(frames)))
        c.close()

        # 7. A client that sends many calls and never reads the answers.
        c = Connection(proxy_port)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        data = h2.START
        for i in range(MAX_STREAMS):
            stream = 1 + 2 * i
            data += headers_frames(stream, h2.request_headers(), False)
            data += h2.frame(h2.DATA, h2.END_STREAM, stream, h2.HELLO)
        for _ in range(20):
            c.send(data)  # stream ids repeat after the first batch: a protocol error too
            time.sleep(0.05)
        time.sleep(2)
        rss_after_attacks = rss_kb(proxy.pid)
        c.close()

        bench.wait(timeout=60)
        report = json.load(open(bench_out))
        check(proxy.poll() is None, "the proxy is still running")
        check(report["calls"]["failed"] == 0 and report["calls"]["ok"] > 100,
              "the good client lost no call during the attacks (%d ok, %d failed)"
              % (report["calls"]["ok"], report["calls"]["failed"]))
        if os.environ.get("SLUICE_SANITIZED"):
            # AddressSanitizer's quarantine keeps freed memory; its leak checker covers leaks.
            print("note    RSS %d KiB before, %d KiB after the attacks (not bounded under ASan)"
                  % (rss_start, rss_after_attacks))
        else:
            check(rss_after_attacks < rss_start + 64 * 1024,
                  "proxy memory stays bounded: RSS %d KiB before, %d KiB after the attacks"
                  % (rss_start, rss_after_attacks))
        c = Connection(proxy_port)
        c.send(good)
        frames = c.read_frames(2)
        check(any(b"I am" in f[3] for f in frames if f[0] == h2.DATA),
              "a new client is served after the attacks")
        c.close()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    failed = sum(1 for ok, _ in results if not ok)
    print("checks: %d passed, %d failed" % (len(results) - failed, failed))
    if failed:
        print("logs in " + work)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
