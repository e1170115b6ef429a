#!/usr/bin/env python3
"""Writes the seed corpus of proxy_h2_fuzzer: hand-built HTTP/2 client byte streams (a valid
gRPC call, and the malformed inputs the proxy must refuse), so the fuzzer starts deep in the
protocol instead of at the preface. HPACK is written without Huffman coding or indexing.
Usage: fuzz/make_h2_seeds.py fuzz/corpus/proxy_h2"""
import os
import struct
import sys

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0, 1, 3, 4, 6, 7, 8, 9
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1


def frame(kind, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def length(n):  # HPACK integer with a 7-bit prefix, H bit clear
    if n < 127:
        return bytes([n])
    out, n = [127], n - 127
    while n >= 128:
        out.append(n % 128 + 128)
        n //= 128
    return bytes(out + [n])


def literal(name, value):  # literal header field without indexing, new name
    return b"\x00" + length(len(name)) + name + length(len(value)) + value


def request_headers(path=b"/Greeter/SayHello", content_type=b"application/grpc", extra=()):
    block = b"\x83\x86"  # :method POST, :scheme http (static table)
    if path is not None:
        block += literal(b":path", path)
    block += literal(b":authority", b"127.0.0.1")
    if content_type is not None:
        block += literal(b"content-type", content_type)
    block += literal(b"te", b"trailers")
    for name, value in extra:
        block += literal(name, value)
    return block


def grpc_message(payload):
    return b"\x00" + struct.pack(">I", len(payload)) + payload


HELLO = grpc_message(b"\x0a\x05world")
START = PREFACE + frame(SETTINGS, 0, 0, b"")

SEEDS = {
    "unary_call": START + frame(HEADERS, END_HEADERS, 1, request_headers())
    + frame(DATA, END_STREAM, 1, HELLO),
    "two_calls_and_ping": START + frame(HEADERS, END_HEADERS, 1, request_headers())
    + frame(DATA, END_STREAM, 1, HELLO) + frame(PING, 0, 0, b"12345678")
    + frame(HEADERS, END_HEADERS, 3, request_headers()) + frame(DATA, END_STREAM, 3, HELLO),
    "timeout_and_cancel": START + frame(HEADERS, END_HEADERS, 1, request_headers(
        extra=[(b"grpc-timeout", b"50m")])) + frame(DATA, 0, 1, HELLO)
    + frame(RST_STREAM, 0, 1, struct.pack(">I", 8)),
    "missing_path": START + frame(HEADERS, END_HEADERS | END_STREAM, 1, request_headers(path=None)),
    "not_grpc": START + frame(HEADERS, END_HEADERS | END_STREAM, 1,
                              request_headers(content_type=b"text/html")),
    "continuation": START + frame(HEADERS, 0, 1, request_headers()[:10])
    + frame(CONTINUATION, END_HEADERS, 1, request_headers()[10:]) + frame(DATA, END_STREAM, 1, HELLO),
    "window_update_settings_ack": START + frame(SETTINGS, ACK, 0, b"")
    + frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1 << 20))
    + frame(SETTINGS, 0, 0, struct.pack(">HI", 4, 1 << 16)),
    "goaway": START + frame(GOAWAY, 0, 0, struct.pack(">II", 0, 0)),
    "garbage": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "preface_then_garbage": PREFACE + b"\xff" * 64,
}

if __name__ == "__main__":
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
