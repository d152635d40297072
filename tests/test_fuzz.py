"""
The fuzz targets (fuzz/): every input that once broke one is replayed,
the corpus seeds hold every invariant, and each target runs under the
fuzzer for two seconds (``make fuzz`` runs them as long as asked).
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

from fuzz.harness import ROOT, regressions

TARGETS = ("session", "mime", "rewrite")
SECONDS = 2


class FuzzTargetTests(SynchronousTestCase):
    def test_regressions(self) -> None:
        """Each crash the fuzzer found, fixed, stays fixed."""
        replayed = 0
        for target in TARGETS:
            module = importlib.import_module(f"fuzz.fuzz_{target}")
            for name, data in regressions(target):
                module.TestOneInput(data)
                replayed += 1
        self.assertGreaterEqual(replayed, 4)

    def test_seeds(self) -> None:
        """The seeds (the corpus' messages where it is present) keep every invariant."""
        for target in TARGETS:
            module = importlib.import_module(f"fuzz.fuzz_{target}")
            for seed in module.seeds():
                module.TestOneInput(seed)

    def test_boundedRun(self) -> None:
        """Every target under libFuzzer for two seconds, all at once: no crash, executions counted."""
        result = subprocess.run([sys.executable, os.path.join(ROOT, "fuzz", "run.py"), "--seconds", str(SECONDS),
                                 "--jobs", str(len(TARGETS))], capture_output=True, text=True, timeout=300, cwd=ROOT)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        for target in TARGETS:
            line = next(l for l in result.stdout.splitlines() if l.startswith(target + " "))
            self.assertGreater(int(line.split()[2].replace(",", "")), 0, line)
