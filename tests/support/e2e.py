"""What the end-to-end Python tests share: the experiments' lab (etcd, processes, free ports)
and a tally of checks. A test puts this directory on sys.path and imports from here."""

import importlib.util
import os
import sys

_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
_spec = importlib.util.spec_from_file_location(
    "experiments_run", os.path.join(_ROOT, "experiments", "run.py"))
lab = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lab)


class Checks:
    """check(ok, message) prints ok/FAIL and counts it; exit() prints the tally and exits 1 if
    any check failed."""

    def __init__(self):
        self.passed = 0
        self.failures = []

    def __call__(self, ok, message):
        print(("ok: " if ok else "FAIL: ") + message, flush=True)
        if ok:
            self.passed += 1
        else:
            self.failures.append(message)
        return ok

    def exit(self):
        print("%d passed, %d failed" % (self.passed, len(self.failures)), flush=True)
        sys.exit(1 if self.failures else 0)
