#!/usr/bin/python3
"""The install tree and the Debian packages, as a user gets them:

1. `cmake --install` into a temporary root (DESTDIR), every component;
2. examples/consumer, a project outside the tree, configured with find_package(Sluice) against
   that install only, built, and run against three real Greeter backends (every backend
   answers, no call fails);
3. a program built with `pkg-config --cflags --libs sluice` against the same install, run
   against the same backends;
4. `cpack -G DEB` (what `make package` runs): the packages' contents, control fields and
   dependencies checked with dpkg-deb; the packaged `sluice` runs.

Usage: install_test.py SOURCE_DIR BUILD_DIR
"""
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from e2e import Checks, lab  # noqa: E402

SOURCE, BUILD = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
PREFIX = "/opt/sluice"
check = Checks()




def run(argv, **kwargs):
    print("$ " + " ".join(argv), flush=True)
    result = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        print(result.stdout[-4000:] + result.stderr[-4000:])
    return result



# A timeout's SIGTERM still runs the cleanup below (the processes this test started).
signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
work = tempfile.mkdtemp(prefix="sluice-install-test-")
root = os.path.join(work, "root")
installed = root + PREFIX
backends = []
try:
    # 1. The install tree.
    env = dict(os.environ, DESTDIR=root)
    r = run(["cmake", "--install", BUILD, "--prefix", PREFIX], env=env)
    check(r.returncode == 0, "cmake --install into a temporary root")
    libdir = None
    for candidate in glob.glob(os.path.join(installed, "lib*", "**", "libsluice_client.a"),
                               recursive=True):
        libdir = os.path.dirname(candidate)
    check(libdir is not None, "the client library is installed")
    for relative in ["bin/sluice", "bin/greeter_server", "include/sluice/client/balancer.h",
                     "include/sluice/client/metrics_export.h", "include/sluice/core/clock.h",
                     "lib/systemd/system/sluice-proxy.service",
                     "lib/systemd/system/sluice-register@.service",
                     "share/sluice/examples/proxy.env"]:
        check(os.path.exists(os.path.join(installed, relative)), "installed " + relative)
    libdir = libdir or os.path.join(installed, "lib")
    check(os.path.exists(os.path.join(libdir, "cmake/Sluice/SluiceConfig.cmake")),
          "installed the CMake package")
    check(os.path.exists(os.path.join(libdir, "pkgconfig/sluice.pc")), "installed sluice.pc")
    r = run([os.path.join(installed, "bin/sluice"), "--help"])
    check(r.returncode == 0 and "proxy" in r.stdout, "the installed sluice runs")

    # Three real Greeter backends on 127.0.0.11-13.
    port = lab.free_port("127.0.0.11")
    addresses = ["127.0.0.%d:%d" % (11 + i, port) for i in range(3)]
    for address in addresses:
        ip = address.split(":")[0]
        backends.append(subprocess.Popen(
            [os.path.join(BUILD, "bin/greeter_server"), "--ip", ip, "--port", str(port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    for address in addresses:
        ip = address.split(":")[0]
        check(lab.wait_until(lambda: lab.can_connect(ip, port), 20), "backend %s is up" % address)
    target = "static://" + ",".join(addresses)

    # 2. The consumer, against the install only.
    consumer = os.path.join(work, "consumer")
    r = run(["cmake", "-S", os.path.join(SOURCE, "examples/consumer"), "-B", consumer,
             "-DCMAKE_PREFIX_PATH=" + installed, "-DCMAKE_EXPORT_COMPILE_COMMANDS=ON",
             "-DCMAKE_BUILD_TYPE=Release"])
    check(r.returncode == 0, "examples/consumer configures with find_package(Sluice)")
    r = run(["cmake", "--build", consumer, "-j2"])
    check(r.returncode == 0, "examples/consumer builds against the install")
    with open(os.path.join(consumer, "compile_commands.json")) as f:
        commands = json.load(f)
    check(all(os.path.join(SOURCE, "src") not in c["command"] for c in commands),
          "the consumer's includes come from the install, not the source tree")
    r = run([os.path.join(consumer, "hello_balanced"), "--target", target, "--calls", "30",
             "--min-ready", "3"],
            timeout=120)
    check(r.returncode == 0, "hello_balanced made 30 calls without a failure")
    answered = {line.split()[1] for line in r.stdout.splitlines()
                if line.startswith("answered_by ")}
    check(answered == set(addresses), "every backend answered the consumer: %s" % sorted(answered))

    # 3. pkg-config.
    pc_env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(libdir, "pkgconfig"))
    r = run(["pkg-config", "--cflags", "--libs", "sluice"], env=pc_env)
    check(r.returncode == 0 and installed in r.stdout, "pkg-config finds sluice in the install")
    probe = os.path.join(work, "pc_probe")
    r = run(["sh", "-c", "g++ -std=c++20 -O1 -o %s %s $(pkg-config --cflags --libs sluice)" % (
        probe, os.path.join(SOURCE, "tests/deploy/pc_probe.cc"))], env=pc_env)
    check(r.returncode == 0, "a program builds with pkg-config --cflags --libs sluice")
    r = run([probe, target, "3"], timeout=60)
    check(r.returncode == 0 and all(a in r.stdout for a in addresses),
          "the pkg-config program sees the three backends ready")

    # 4. The Debian packages.
    packages = os.path.join(work, "packages")
    r = run(["cpack", "-G", "DEB", "-B", packages, "--config",
             os.path.join(BUILD, "CPackConfig.cmake")], cwd=BUILD)
    check(r.returncode == 0, "cpack -G DEB")
    debs = {os.path.basename(p).split("_")[0]: p for p in glob.glob(os.path.join(packages,
                                                                                   "*.deb"))}
    check(set(debs) == {"sluice", "libsluice-dev", "sluice-examples"},
          "three packages: %s" % sorted(debs))

    def contents(package):
        return run(["dpkg-deb", "-c", debs[package]]).stdout

    def field(package, name):
        return run(["dpkg-deb", "-f", debs[package], name]).stdout.strip()

    def depends(package):
        return [d.strip().split()[0] for d in field(package, "Depends").split(",") if d.strip()]

    if "sluice" in debs:
        files = contents("sluice")
        for path in ["./usr/bin/sluice", "./usr/lib/systemd/system/sluice-proxy.service",
                     "./usr/lib/systemd/system/sluice-register@.service",
                     "./usr/share/sluice/examples/proxy.env",
                     "./usr/share/sluice/examples/register-greeter.env"]:
            check(path in files, "sluice.deb holds " + path)
        check("include/" not in files and ".a\n" not in files,
              "sluice.deb holds no headers or static libraries")
        deps = depends("sluice")
        print("sluice depends on: " + field("sluice", "Depends"))
        for needed in ["libc6", "libnghttp2-14", "libssl3"]:
            check(needed in deps, "sluice depends on " + needed)
        check(any(d.startswith("libgrpc++") for d in deps), "sluice depends on Debian's gRPC")
        for d in deps:
            check(run(["apt-cache", "show", d]).returncode == 0, "%s is a Debian package" % d)
        check("postinst" in run(["dpkg-deb", "-I", debs["sluice"]]).stdout,
              "sluice.deb has the postinst that installs /etc/sluice/*.env")
        extracted = os.path.join(work, "extracted")
        run(["dpkg-deb", "-x", debs["sluice"], extracted])
        r = run([os.path.join(extracted, "usr/bin/sluice"), "proxy", "--help"])
        check(r.returncode == 0 and "--target" in r.stdout, "the packaged sluice runs")
    if debs:
        r = run(["apt-get", "install", "--simulate"] + sorted(debs.values()))
        check(r.returncode == 0 and "Conf sluice " in r.stdout,
              "apt-get can install the packages: every dependency resolves in Debian")
    if "libsluice-dev" in debs:
        files = contents("libsluice-dev")
        for needle in ["/include/sluice/client/balancer.h", "/cmake/Sluice/SluiceConfig.cmake",
                       "/pkgconfig/sluice.pc", "/libsluice_client.a"]:
            check(needle in files, "libsluice-dev holds " + needle)
        deps = depends("libsluice-dev")
        for needed in ["libgrpc++-dev", "libprotobuf-dev", "libabsl-dev", "nlohmann-json3-dev"]:
            check(needed in deps, "libsluice-dev depends on " + needed)
    if "sluice-examples" in debs:
        check("./usr/bin/greeter_server" in contents("sluice-examples"),
              "sluice-examples holds greeter_server")
finally:
    for b in backends:
        b.send_signal(signal.SIGKILL)
        b.wait()
    shutil.rmtree(work, ignore_errors=True)

check.exit()
