#!/usr/bin/env python3
"""The experiments end to end in short mode (run by `make test`): the report has every table and
chart, and the figures show what Sluice is for: per-call balancing spreads one client over every
backend, loses no call when a backend goes, and reaches returning backends at once.

Usage: experiments/test_short_run.py BUILD_DIR OUT_DIR
"""
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    build, out = sys.argv[1], sys.argv[2]
    run = subprocess.run([sys.executable, os.path.join(HERE, "run.py"), "--short",
                          "--build", build, "--out", out], cwd=os.path.dirname(HERE))
    failures, checks = [], []

    def check(condition, what):
        print(("ok      " if condition else "FAILED  ") + what)
        checks.append(what)
        if not condition:
            failures.append(what)

    check(run.returncode == 0, "run.py --short exits 0")
    report_path = os.path.join(out, "report.md")
    report = open(report_path).read() if os.path.exists(report_path) else ""
    for heading in ("## One client", "## The backend the client is connected to is killed",
                    "## The backend the client is connected to is stopped gracefully",
                    "## Scale 3 -> 1 -> 3", "## Four clients"):
        check(heading in report, "report has the table '%s'" % heading)
    for chart in ("one_client", "kill_connected", "stop_connected", "scale", "four_clients"):
        path = os.path.join(out, chart + ".svg")
        ok = os.path.exists(path) and open(path).read().startswith("<svg")
        check(ok and "(%s.svg)" % chart in report, "chart %s.svg written and linked" % chart)

    def rows(setup):
        return [line for line in report.splitlines() if line.startswith("| %s |" % setup)]

    for setup in ("l4", "client", "proxy", "xds"):
        check(len(rows(setup)) >= 10, "every table has a row for '%s'" % setup)
    # The one-client table: | setup | .11 | .12 | .13 | failed |
    for setup in ("client", "proxy", "xds"):
        one = [r for r in rows(setup) if re.match(r"\| \w+ \| \d+ \| \d+ \| \d+ \| \d+ \|$", r)]
        if one:
            cells = [int(x) for x in one[0].strip("|").split("|")[1:]]
            check(all(n > 0 for n in cells[:3]) and cells[3] == 0,
                  "%s: one client's calls reach all three backends, none fails (%s)"
                  % (setup, one[0]))
        else:
            check(False, "%s: one-client row found" % setup)
    # Kill -9 / graceful stop with the client library, and with xDS and its retry policy: no
    # failed call.
    for setup in ("client", "xds"):
        for row in rows(setup):
            cells = [c.strip() for c in row.strip("|").split("|")]
            if len(cells) == 6 and cells[1].startswith("127.0.0."):
                check(cells[3] == "0", "%s: no failed call when %s goes (%s)"
                      % (setup, cells[1], row))
    # Returning backends get calls after the scale-up, with the library and the proxy.
    waits = [line for line in report.splitlines()
             if re.match(r"\| (client|proxy|xds) \| (never|[\d.]+ s) \| (never|[\d.]+ s) \|$",
                         line)]
    check(len(waits) == 3 and all("never" not in w for w in waits),
          "returning backends get calls (client library, proxy, xds): %s" % waits)
    print("checks: %d passed, %d failed" % (len(checks) - len(failures), len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
