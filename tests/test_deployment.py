"""
The files a production install uses, checked by the tools that read
them: the systemd unit by ``systemd-analyze verify``, the alert rules by
``promtool check rules`` and ``promtool test rules``, and every PromQL
expression of the alerts and the Grafana dashboard by a real Prometheus
scraping a running gateway.  ``make test`` installs Debian's
``prometheus`` package (and systemd) when they are missing.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import urllib.parse

import treq
from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from secudoc_gateway.tap import DRAIN_GRACE_SECONDS
from secudoc_gateway.testing import DEMO_TENANT, startGateway, writeConfig
from tests.support import asyncTest, inThread, sendMail, until
from tests.test_logs import message
from tests.test_operators import downTenant
from secudoc_gateway.testing import ROOT, TWISTD
from secudoc_gateway.testing.ports import freePort

UNIT = os.path.join(ROOT, "etc", "systemd", "secudoc-gateway.service")
ALERTS = os.path.join(ROOT, "etc", "prometheus", "alerts.yml")
ALERT_TESTS = os.path.join(ROOT, "etc", "prometheus", "alerts_test.yml")
DASHBOARD = os.path.join(ROOT, "etc", "grafana", "secudoc-gateway.json")


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise AssertionError(f"{name} is not installed: `make test` installs it (Debian packages)")
    return path


def unitSettings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    with open(UNIT) as f:
        for line in f:
            key, eq, value = line.strip().partition("=")
            if eq and not key.startswith("#"):
                settings.setdefault(key, []).append(value)
    return settings


def alertExpressions() -> dict[str, str]:
    import yaml

    with open(ALERTS) as f:
        rules = yaml.safe_load(f)
    return {rule["alert"]: rule["expr"] for group in rules["groups"] for rule in group["rules"]}


def dashboardExpressions() -> dict[str, str]:
    with open(DASHBOARD) as f:
        dashboard = json.load(f)
    return {f"{panel['title']} {target['refId']}": target["expr"]
            for panel in dashboard["panels"] for target in panel["targets"]}


def withBool(expr: str) -> str:
    """``a > 0.05`` as ``a > bool 0.05``: 0 or 1 for every series, so a quiet alert still returns data."""
    return re.sub(r"\s(==|!=|>=|<=|>|<)\s", r" \1 bool ", expr)


class SystemdUnitTests(SynchronousTestCase):
    def test_verify(self) -> None:
        """
        ``systemd-analyze verify`` with warnings as failures.  It checks
        that ExecStart's program exists: the copy verified points it at
        this checkout's twistd instead of /opt's, nothing else changed.
        """
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        with open(UNIT) as f:
            text = f.read()
        copy = os.path.join(folder, "secudoc-gateway.service")
        with open(copy, "w") as f:
            f.write(text.replace("/opt/secudoc-gateway/venv/bin/twistd", TWISTD))
        result = subprocess.run([tool("systemd-analyze"), "verify", copy], capture_output=True, text=True,
                                timeout=120)
        self.assertEqual((result.returncode, result.stderr), (0, ""))

    def test_settings(self) -> None:
        s = unitSettings()
        self.assertEqual(s["Type"], ["simple"])
        [start] = s["ExecStart"]
        self.assertRegex(start, r"twistd --nodaemon --pidfile= secudoc-gateway --config /etc/")
        self.assertEqual(s["ExecReload"], ["/bin/kill -HUP $MAINPID"])
        self.assertEqual(s["KillSignal"], ["SIGTERM"])
        self.assertGreater(int(s["TimeoutStopSec"][0]), DRAIN_GRACE_SECONDS)
        self.assertNotIn(s["User"][0], ("", "root"))
        self.assertEqual(s["ProtectSystem"], ["strict"])
        self.assertEqual(s["NoNewPrivileges"], ["yes"])
        self.assertEqual(s["PrivateTmp"], ["yes"])
        self.assertEqual(s["ReadWritePaths"], ["/var/lib/secudoc-gateway"])
        self.assertGreaterEqual(int(s["LimitNOFILE"][0]), 4096)


class AlertRuleTests(SynchronousTestCase):
    def test_checkRules(self) -> None:
        result = subprocess.run([tool("promtool"), "check", "rules", ALERTS], capture_output=True, text=True)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("SUCCESS: 7 rules found", result.stdout)

    def test_unitTests(self) -> None:
        result = subprocess.run([tool("promtool"), "test", "rules", ALERT_TESTS], capture_output=True, text=True,
                                cwd=os.path.dirname(ALERT_TESTS))
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)

    def test_everyAlertTested(self) -> None:
        with open(ALERT_TESTS) as f:
            tested = set(re.findall(r"alertname: (\w+)", f.read()))
        self.assertEqual(tested, set(alertExpressions()))


class PrometheusTests(TestCase):
    """One real Prometheus scraping one running gateway, every expression through its HTTP API."""

    # Seconds. Prometheus applies its targets on a 5 s tick, so the first
    # scrape comes after about 5 s whatever this is; after it, short is quick.
    SCRAPE = 0.2

    def startPrometheus(self, metricsPort: int) -> str:
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        config = os.path.join(folder, "prometheus.yml")
        with open(config, "w") as f:
            interval = f"{int(self.SCRAPE * 1000)}ms"
            f.write(f"global:\n  scrape_interval: {interval}\n  evaluation_interval: {interval}\n"
                    f"rule_files: [{json.dumps(ALERTS)}]\n"
                    "scrape_configs:\n  - job_name: secudoc-gateway\n"
                    f"    static_configs: [{{targets: ['127.0.0.1:{metricsPort}']}}]\n")
        port = freePort()
        log = open(os.path.join(folder, "prometheus.log"), "wb")
        self.addCleanup(log.close)
        process = subprocess.Popen(
            [tool("prometheus"), f"--config.file={config}", f"--storage.tsdb.path={folder}/data",
             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)

        def stop() -> None:
            process.terminate()
            process.wait(30)

        self.addCleanup(stop)
        return f"http://127.0.0.1:{port}"

    async def api(self, base: str, path: str, **params: str) -> dict:
        response = await treq.get(f"{base}/api/v1/{path}?{urllib.parse.urlencode(params)}", persistent=False)
        body = json.loads(await response.text())
        self.assertEqual(body["status"], "success", body)
        return body["data"]

    async def traffic(self, gateway) -> None:
        send = lambda sender, to, raw: inThread(sendMail, gateway.smtpPort, sender, to, raw)
        self.assertEqual((await send("alice@example.test", ["bob@external.test", "carol@example.test"],
                                     message("p" * 40)))[0], 250)
        self.assertEqual((await send("alice@example.test", ["bob@external.test"], message()))[0], 250)
        self.assertEqual((await send("dave@down.test", ["bob@external.test"], message()))[0], 451)
        response = await treq.get(gateway.webURL + "/t/" + "A" * 43, persistent=False)
        await response.content()

    @asyncTest
    async def test_everyExpression(self) -> None:
        gateway = await startGateway(writeConfig(os.path.abspath(self.mktemp()), [DEMO_TENANT, downTenant()]),
                                     reactor)
        self.addCleanup(gateway.stop)
        base = self.startPrometheus(gateway.metricsPort)

        async def scrapes(n: int) -> int:
            try:
                data = await self.api(base, "query", query='count_over_time(up{job="secudoc-gateway"}[1h])')
            except Exception:
                return 0  # not ready yet
            return int(data["result"][0]["value"][1]) if data["result"] else 0

        async def twoScrapes() -> bool:
            return await scrapes(0) >= 2

        await until(twoScrapes, "two scrapes", 60, interval=0.2)
        await self.traffic(gateway)  # between scrapes, so every rate below has something to say
        before = await scrapes(0)

        async def twoMore() -> bool:
            return await scrapes(0) >= before + 2

        await until(twoMore, "two more scrapes", 60, interval=0.2)

        async def rulesEvaluated() -> bool:
            groups = (await self.api(base, "rules"))["groups"]
            rules = [r for g in groups for r in g["rules"]]
            return len(rules) == len(alertExpressions()) and all(r.get("lastEvaluation", "").startswith("2")
                                                               and not r["lastEvaluation"].startswith("0001")
                                                               for r in rules)

        await until(rulesEvaluated, "every alert rule evaluated", 60, interval=0.2)
        rules = [r for g in (await self.api(base, "rules"))["groups"] for r in g["rules"]]
        self.assertEqual({r["name"]: r["health"] for r in rules}, {name: "ok" for name in alertExpressions()})

        empty = []
        expressions = {f"dashboard: {k}": v for k, v in dashboardExpressions().items()}
        expressions.update({f"alert: {k}": withBool(v) for k, v in alertExpressions().items()})
        for name, expr in expressions.items():
            result = (await self.api(base, "query", query=expr))["result"]
            if not result:
                empty.append(name)
        self.assertEqual(empty, [])
        [p99] = (await self.api(base, "query", query=dashboardExpressions()[
            "Message latency (end of DATA to final reply) B"]))["result"]
        self.assertTrue(0 < float(p99["value"][1]) < 60, p99)
        self.assertFalse(math.isnan(float(p99["value"][1])))


class MakefileTests(SynchronousTestCase):
    """The two commands' set-up, as ``make -n`` prints it on a fresh checkout (no ``.venv``)."""

    def recipe(self, target: str) -> str:
        folder = self.mktemp()
        os.makedirs(folder)
        for name in ("Makefile", "setup.cfg", "pyproject.toml"):
            shutil.copy(os.path.join(ROOT, name), folder)
        result = subprocess.run(["make", "-n", target], cwd=folder, capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)
        return result.stdout

    def test_runInstallsTheRuntimeOnly(self) -> None:
        """``make run`` installs the package without the test extras; ``make test`` with them."""
        run = self.recipe("run")
        self.assertRegex(run, r"pip install --quiet -e \.\n")
        self.assertNotIn("[test]", run)
        self.assertIn("twistd --nodaemon", run)
        self.assertIn("pip install --quiet -e '.[test]'", self.recipe("test"))
