#!/usr/bin/env python3
"""The seed's Python server behind `sluice register --health-check`, with a real etcd.

Health messages and stubs are generated here from grpc-proto's grpc/health/v1/health.proto with
grpc_tools (Debian: python3-grpc-tools), and helloworld's from proto/helloworld.proto. Checks:
  - the server with a health servicer is registered while SERVING, deregistered on NOT_SERVING,
    registered again on SERVING, and answers a Sluice client through the registry;
  - the seed's plain server (no health service) counts as healthy and is registered.

Usage: python_backend_test.py BUILD_DIR   (run with Debian's /usr/bin/python3)
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "experiments"))
import run as lab_support  # noqa: E402  (etcd, process and port helpers of the experiments)

HEALTH_PROTO_DIR = "/usr/share/grpc-proto/grpc/health/v1"
POD_IP = "127.0.0.14"


def generate(out):
    """Python modules for helloworld and grpc.health.v1 into `out`."""
    for include, proto in ((os.path.join(ROOT, "proto"), "helloworld.proto"),
                           (HEALTH_PROTO_DIR, "health.proto")):
        # health.proto is compiled from its own directory so its module is plain health_pb2
        # (a grpc/health/v1 package would shadow the grpc package itself).
        subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", include,
                        "--python_out", out, "--grpc_python_out", out, proto], check=True)


def main():
    build = os.path.abspath(sys.argv[1])
    work = tempfile.mkdtemp(prefix="python-backend-")
    lab = lab_support.Lab(build, work, lab_support.Pace(short=True))
    failures = []

    def check(condition, what):
        print(("ok   " if condition else "FAIL ") + what, flush=True)
        if not condition:
            failures.append(what)

    try:
        gen = os.path.join(work, "gen")
        os.makedirs(gen)
        generate(gen)
        lab.start_etcd()
        sluice = os.path.join(build, "bin", "sluice")
        server_py = os.path.join(ROOT, "tests", "health", "seed_greeter_server.py")

        def start_server(name, port, extra):
            env = dict(os.environ, IP=POD_IP, PORT=str(port), PYTHONPATH=gen)
            log = open(os.path.join(work, name + ".log"), "ab")
            proc = subprocess.Popen([sys.executable, server_py] + extra, env=env, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
            proc.log_file = log
            lab.procs.running.append(proc)
            if not lab_support.wait_until(lambda: lab_support.can_connect(POD_IP, port), 20):
                raise RuntimeError("the Python server did not start; see %s/%s.log" % (work, name))
            return proc

        def start_sidecar(name, address):
            return lab.procs.start(name, [sluice, "register", "--etcd", lab.etcd, "--service",
                                          "greeter", "--addr", address, "--ttl", "3",
                                          "--health-check"])

        # 1. A server with a health servicer.
        port = lab_support.free_port(POD_IP)
        address = "%s:%d" % (POD_IP, port)
        server = start_server("seed-health", port, [])
        sidecar = start_sidecar("register-health", address)
        check(lab_support.wait_until(lambda: lab.registered() == {address}, 15),
              "registered while the Python server is SERVING")

        csv_path = os.path.join(work, "calls.csv")
        client = subprocess.run([os.path.join(build, "bin", "greeter_client"), "--target",
                                 "etcd://%s/services/greeter" % lab.etcd, "--calls", "3",
                                 "--interval", "10ms", "--timeout", "2s", "--csv", csv_path],
                                capture_output=True, text=True, timeout=60)
        check(client.returncode == 0 and ("I am " + address) in client.stdout,
              "a Sluice client reaches the Python server through the registry")

        server.send_signal(signal.SIGUSR1)  # NOT_SERVING
        start = time.monotonic()
        gone = lab_support.wait_until(lambda: not lab.registered(), 5, step=0.01)
        check(gone, "deregistered after NOT_SERVING (%.0f ms, polling with sluice ls)"
              % ((time.monotonic() - start) * 1000))
        server.send_signal(signal.SIGUSR2)  # SERVING again
        check(lab_support.wait_until(lambda: lab.registered() == {address}, 5, step=0.01),
              "registered again after SERVING")
        lab.procs.stop(sidecar)
        check(lab_support.wait_until(lambda: not lab.registered(), 5),
              "the sidecar's SIGTERM deregisters")
        lab.procs.stop(server)

        # 2. The seed's server as it is: no health service, counts as healthy.
        port = lab_support.free_port(POD_IP)
        address = "%s:%d" % (POD_IP, port)
        plain = start_server("seed-plain", port, ["--no-health"])
        sidecar = start_sidecar("register-plain", address)
        check(lab_support.wait_until(lambda: lab.registered() == {address}, 15),
              "a server without a health service is registered (no_health_service)")
        lab.procs.stop(sidecar)
        lab.procs.stop(plain)
    finally:
        lab.procs.stop_all()
        if failures:
            print("logs kept in " + work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    if failures:
        print("%d check(s) failed" % len(failures))
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
