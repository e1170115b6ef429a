#!/usr/bin/env python3
"""The seed's Python Greeter server, plus a grpc.health.v1 servicer (unless --no-health).

Debian packages no Python health module, so the health messages and stubs are generated from
grpc-proto's grpc/health/v1/health.proto (see python_backend_test.py); put the generated
modules (helloworld_pb2*, health_pb2*) on PYTHONPATH. Listens on $IP:$PORT like the seed.
SIGUSR1 makes the health service report NOT_SERVING, SIGUSR2 SERVING again: a test's switch.
"""

import os
import signal
import sys
import threading
from concurrent import futures

import grpc

import helloworld_pb2
import helloworld_pb2_grpc

IP = os.getenv("IP", "127.0.0.1")
PORT = os.getenv("PORT", "50051")


class Greeter(helloworld_pb2_grpc.GreeterServicer):
    def SayHello(self, request, context):
        print(f"name: {request.name}", flush=True)
        return helloworld_pb2.HelloReply(message=f"Hello, {request.name}!, I am {IP}:{PORT}")


class Health:
    """Serves one status for every service name; Watch streams push each change."""

    def __init__(self, health_pb2):
        self.pb = health_pb2
        self.status = health_pb2.HealthCheckResponse.SERVING
        self.changed = threading.Condition()

    def set(self, status):
        with self.changed:
            self.status = status
            self.changed.notify_all()

    def Check(self, request, context):
        with self.changed:
            return self.pb.HealthCheckResponse(status=self.status)

    def Watch(self, request, context):
        sent = None
        while context.is_active():
            with self.changed:
                if self.status == sent:
                    self.changed.wait(timeout=0.05)
                    continue
                sent = self.status
            yield self.pb.HealthCheckResponse(status=sent)


def serve(with_health):
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=10))
    helloworld_pb2_grpc.add_GreeterServicer_to_server(Greeter(), server)
    if with_health:
        import health_pb2
        import health_pb2_grpc

        health = Health(health_pb2)

        class Servicer(health_pb2_grpc.HealthServicer):
            Check = health.Check
            Watch = health.Watch

        health_pb2_grpc.add_HealthServicer_to_server(Servicer(), server)
        serving = health_pb2.HealthCheckResponse
        signal.signal(signal.SIGUSR1, lambda *_: health.set(serving.NOT_SERVING))
        signal.signal(signal.SIGUSR2, lambda *_: health.set(serving.SERVING))
    server.add_insecure_port(f"{IP}:{PORT}")
    server.start()
    signal.signal(signal.SIGTERM, lambda *_: server.stop(0.5))
    server.wait_for_termination()


if __name__ == "__main__":
    serve("--no-health" not in sys.argv[1:])
