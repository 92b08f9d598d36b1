# SPDX-License-Identifier: Apache-2.0
"""What the command-line tests share: the clattn program under test (argv[1]), a temporary work directory, seeded
random inputs, `clattn run OP` calls, and the ok/FAIL tally that decides the exit status."""
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np


class CliTest:
    def __init__(self, prefix, seed, op=None):
        self.clattn = sys.argv[1]
        self.work = tempfile.mkdtemp(prefix=prefix)
        self.rng = np.random.default_rng(seed)
        self.op = op  # the `clattn run` operation every run() names, or None when each call names its own
        self.passed = self.failed = 0

    def path(self, name):
        return os.path.join(self.work, name)

    def save(self, name, array):
        np.save(self.path(name), array)
        return self.path(name)

    def remove(self, *names):
        for name in names:
            if os.path.exists(self.path(name)):
                os.remove(self.path(name))

    def run(self, *args):
        op = [self.op] if self.op else []
        return subprocess.run([self.clattn, "run", *op, *args], capture_output=True, text=True)

    def run_to(self, *args, out="o.npy"):
        """run(*args, "-o", out) after removing any earlier out."""
        self.remove(out)
        return self.run(*args, "-o", self.path(out))

    def wrote(self, name="o.npy"):
        return os.path.exists(self.path(name))

    def check(self, what, ok, detail=""):
        if ok:
            self.passed += 1
            print("ok:", what)
        else:
            self.failed += 1
            print("FAIL:", what, detail)

    def finish(self):
        """Prints the tally and exits with it; the work directory goes when every check passed."""
        print(f"{self.passed} passed, {self.failed} failed")
        if not self.failed:
            shutil.rmtree(self.work, ignore_errors=True)
        sys.exit(1 if self.failed else 0)
