"""Print `trial: N passed, N failed` from trial's closing lines (one per run in the log), for CI to count."""

import re
import sys

text = open(sys.argv[1], encoding="utf-8", errors="replace").read()
found = re.findall(r"^(PASSED|FAILED) \(([^)]*)\)", text, re.M)
if not found:
    print("trial: 0 passed, 1 failed (no trial summary found)")
    sys.exit(0)
counts: dict[str, int] = {}
for _, summary in found:
    for k, v in re.findall(r"(\w+)=(\d+)", summary):
        counts[k] = counts.get(k, 0) + int(v)
passed = counts.get("successes", 0) + counts.get("expectedFailures", 0)
failed = counts.get("failures", 0) + counts.get("errors", 0) + counts.get("unexpectedSuccesses", 0)
print(f"trial: {passed} passed, {failed} failed")
