#!/usr/bin/python3
"""A plain python3-grpcio Greeter client with no xDS code of its own: gRPC's xDS resolver
does the balancing when the target is xds:///SERVICE and GRPC_XDS_BOOTSTRAP names a bootstrap.

Usage: python_greeter_client.py TARGET CALLS INTERVAL_S
Prints one JSON object: {"answered_by": {backend: calls}, "failed": N, "errors": [...]}.
"""
import json
import sys
import time

import grpc


def encode_hello_request(name):
    # helloworld HelloRequest { string name = 1; } (no generated code needed for one field)
    data = name.encode()
    return b"\x0a" + bytes([len(data)]) + data


def decode_hello_reply(data):
    # The seed's HelloReply { string message = 2; }
    if len(data) < 2 or data[0] != 0x12:
        return ""
    return data[2:2 + data[1]].decode()


def main():
    target, calls, interval = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    answered_by, failed, errors = {}, 0, []
    with grpc.insecure_channel(target) as channel:
        say_hello = channel.unary_unary("/Greeter/SayHello",
                                        request_serializer=lambda b: b,
                                        response_deserializer=lambda b: b)
        for i in range(calls):
            if i:
                time.sleep(interval)
            try:
                reply = decode_hello_reply(say_hello(encode_hello_request("python"), timeout=5))
                backend = reply.rsplit("I am ", 1)[-1]
                answered_by[backend] = answered_by.get(backend, 0) + 1
            except grpc.RpcError as e:
                failed += 1
                errors.append("%s: %s" % (e.code(), e.details()))
    print(json.dumps({"answered_by": answered_by, "failed": failed, "errors": errors[:5]}))


if __name__ == "__main__":
    main()
