"""
Runs the coverage-guided fuzz targets (atheris, libFuzzer inside).

    .venv/bin/python fuzz/run.py TARGET [libFuzzer options]    one target, libFuzzer's own output
    .venv/bin/python fuzz/run.py --seconds N [TARGET ...]      each target N seconds, then a summary
    .venv/bin/python fuzz/run.py --seconds N --jobs 3          the same, the targets at the same time

Targets: session, mime, rewrite.  A target's working corpus lives in
var/fuzz/TARGET/ (its seeds, its regressions, and what the fuzzer
found worth keeping); a crash is written to var/fuzz/TARGET-artifacts/
and ends the run with status 1 (its log stays beside it in var/fuzz/).
The summary adds each run to
var/fuzz/stats.tsv and prints the executions per second and the total
executions ever recorded there.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import os
import re
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from fuzz.harness import REGRESSIONS, regressions  # noqa: E402

TARGETS = ("session", "mime", "rewrite")
WORK = os.path.join(ROOT, "var", "fuzz")
STATS = os.path.join(WORK, "stats.tsv")


def fuzzOne(target: str, options: list[str]) -> None:
    """One target under libFuzzer; only the gateway's own modules are instrumented (fast start)."""
    import atheris

    with atheris.instrument_imports(include=["secudoc_gateway"]):
        module = importlib.import_module(f"fuzz.fuzz_{target}")
    corpus = os.path.join(WORK, target)
    artifacts = os.path.join(WORK, f"{target}-artifacts") + os.sep
    os.makedirs(corpus, exist_ok=True)
    os.makedirs(artifacts, exist_ok=True)
    for n, seed in enumerate(module.seeds()):
        path = os.path.join(corpus, f"seed-{n:04d}")
        if not os.path.exists(path):
            with open(path, "wb") as f:
                f.write(seed)
    for name, _ in regressions(target):
        shutil.copyfile(os.path.join(REGRESSIONS, target, name), os.path.join(corpus, f"regression-{name}"))
    maxLen = getattr(module, "MAX_LEN", 65536)
    atheris.Setup([sys.argv[0], f"-max_len={maxLen}", *options, f"-artifact_prefix={artifacts}", corpus],
                  module.TestOneInput)
    atheris.Fuzz()


def _stat(name: str, output: str) -> int:
    found = re.search(rf"stat::{name}:\s*(\d+)", output)
    return int(found.group(1)) if found else 0


def fuzzAll(seconds: int, targets: list[str], jobs: int = 1) -> int:
    """Each target for ``seconds``, ``jobs`` of them at a time."""
    os.makedirs(WORK, exist_ok=True)
    failed = []
    print(f"{'target':<10} {'seconds':>8} {'executions':>12} {'exec/s':>8}")
    waiting = list(targets)
    running: list[tuple[str, str, subprocess.Popen]] = []
    while waiting or running:
        while waiting and len(running) < jobs:
            target = waiting.pop(0)
            log = os.path.join(WORK, f"{target}-{os.getpid()}.log")  # runs at the same time keep apart
            with open(log, "w") as out:
                running.append((target, log, subprocess.Popen(
                    [sys.executable, os.path.abspath(__file__), target, f"-max_total_time={seconds}",
                     "-print_final_stats=1"], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)))
        target, log, process = running.pop(0)
        returncode = process.wait()
        with open(log, errors="replace") as f:
            output = f.read()
        runs, rate = _stat("number_of_executed_units", output), _stat("average_exec_per_sec", output)
        print(f"{target:<10} {seconds:>8} {runs:>12,} {rate:>8,}")
        with open(STATS, "a") as f:
            f.write(f"{datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}\t"
                    f"{target}\t{seconds}\t{runs}\t{rate}\n")
        if returncode != 0 or runs == 0:
            failed.append(target)
            print(output[-3000:], file=sys.stderr)
        else:
            os.unlink(log)
    totals: dict[str, int] = {}
    with open(STATS) as f:
        for line in f:
            _, target, _, runs, _ = line.rstrip("\n").split("\t")
            totals[target] = totals.get(target, 0) + int(runs)
    print("executions recorded in var/fuzz/stats.tsv: " + ", ".join(f"{t} {n:,}" for t, n in totals.items()))
    if failed:
        print(f"crashed: {', '.join(failed)} (see var/fuzz/<target>-artifacts/)", file=sys.stderr)
    return 1 if failed else 0


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] in TARGETS:
        fuzzOne(sys.argv[1], sys.argv[2:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=int(os.environ.get("FUZZ_SECONDS", "60")))
    parser.add_argument("--jobs", type=int, default=1, help="targets fuzzed at the same time (default 1)")
    parser.add_argument("targets", nargs="*", help=f"some of {', '.join(TARGETS)} (default: all)")
    args = parser.parse_args()
    unknown = set(args.targets) - set(TARGETS)
    if unknown:
        parser.error(f"unknown target(s): {', '.join(sorted(unknown))}")
    return fuzzAll(args.seconds, args.targets or list(TARGETS), max(1, args.jobs))


if __name__ == "__main__":
    sys.exit(main())
