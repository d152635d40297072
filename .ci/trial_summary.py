"""Print `trial: N passed, N failed` from trial's closing lines (one log per run), for CI to count."""

import re
import sys

passed = failed = 0
for path in sys.argv[1:]:
    text = open(path, encoding="utf-8", errors="replace").read()
    found = re.findall(r"^(PASSED|FAILED) \(([^)]*)\)", text, re.M)
    if not found:
        print(f"{path}: no trial summary found")
        failed += 1
        continue
    counts = dict(
        (k, int(v)) for k, v in re.findall(r"(\w+)=(\d+)", found[-1][1])
    )
    passed += counts.get("successes", 0) + counts.get("expectedFailures", 0)
    failed += counts.get("failures", 0) + counts.get("errors", 0) + counts.get("unexpectedSuccesses", 0)
print(f"trial: {passed} passed, {failed} failed")
