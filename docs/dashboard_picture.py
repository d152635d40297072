"""
Draws docs/dashboard.png, the README's picture of the Grafana dashboard
(no Grafana server can be installed from the package registries these
machines reach): each panel's queries of etc/grafana/secudoc-gateway.json,
answered by a real Prometheus that scraped a real gateway under a few
minutes of mixed traffic, drawn as the panel would.

    make dashboard-picture        # installs matplotlib, runs this (not part of make test)
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import random
import re
import shutil
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from secudoc_gateway.testing import DEMO_TENANT  # noqa: E402
from tests.test_logs import message  # noqa: E402
from secudoc_gateway.testing import GatewayProcess  # noqa: E402
from secudoc_gateway.testing.ports import freePort, waitForPort  # noqa: E402

DASHBOARD = os.path.join(ROOT, "etc", "grafana", "secudoc-gateway.json")
ALERTS = os.path.join(ROOT, "etc", "prometheus", "alerts.yml")
OUTPUT = os.path.join(ROOT, "docs", "dashboard.png")
MINUTES = float(os.environ.get("MINUTES", "4"))


def query(base: str, path: str, **params: object) -> dict:
    with urllib.request.urlopen(f"{base}/api/v1/{path}?{urllib.parse.urlencode(params)}") as response:
        return json.load(response)["data"]


def traffic(gateway: GatewayProcess, until: float) -> None:
    """Mail as a small office sends it; one tenant's connector is down."""
    outbox = os.path.join(gateway.folder, "outbox", "example", "new")
    n = 0
    while time.monotonic() < until:
        n += 1
        try:
            with smtplib.SMTP("127.0.0.1", gateway.smtpPort, timeout=30) as client:
                for _ in range(random.randint(1, 8)):
                    n += 1
                    protected = random.random() < 0.6
                    recipients = ["bob@external.test"] + (["carol@example.test"] if random.random() < 0.3 else [])
                    raw = message("x" * random.randint(40, 4000) if protected else "", n=n)
                    client.sendmail("alice@example.test", recipients, raw)
                if random.random() < 0.15:
                    try:
                        client.sendmail("dave@down.test", ["bob@external.test"], message(n=n))
                    except smtplib.SMTPException:
                        pass  # 451: the connector of tenant "down" does not answer
        except (OSError, smtplib.SMTPException):
            pass  # a refused session is traffic too: the dashboard shows it
        for name in random.sample(os.listdir(outbox), min(2, len(os.listdir(outbox)))):
            with open(os.path.join(outbox, name), "rb") as f:
                relayed = email.message_from_bytes(f.read(), policy=email.policy.default)
            body = relayed.get_body(("plain",))
            for link in re.findall(r"/t/[A-Za-z0-9_-]{43}", body.get_content() if body else "")[:1]:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{gateway.webPort}{link}/0").read()
                except OSError:
                    pass  # a download that fails is traffic too: the dashboard shows it
        time.sleep(random.uniform(0.2, 1.5))


def draw(base: str, start: float, end: float) -> None:
    with open(DASHBOARD) as f:
        dashboard = json.load(f)
    panels = dashboard["panels"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    figure = plt.figure(figsize=(24, rows * 0.62), dpi=60, facecolor="#111217")
    grid = figure.add_gridspec(rows, 24, hspace=2.2, wspace=1.2, top=0.96, bottom=0.03)
    for panel in panels:
        g = panel["gridPos"]
        ax = figure.add_subplot(grid[g["y"]:g["y"] + g["h"], g["x"]:g["x"] + g["w"]])
        ax.set_facecolor("#181b1f")
        ax.set_title(panel["title"], color="#ccccdc", fontsize=13, loc="left", pad=8)
        ax.tick_params(colors="#8e8e8e", labelsize=9)
        for spine in ax.spines.values():
            spine.set_color("#2c3235")
        unit = panel["fieldConfig"]["defaults"]["unit"]
        if panel["type"] == "timeseries":
            for target in panel["targets"]:
                data = query(base, "query_range", query=target["expr"], start=start, end=end, step=5)
                for series in data["result"]:
                    label = re.sub(r"\{\{(\w+)\}\}", lambda m: series["metric"].get(m.group(1), ""),
                                   target["legendFormat"])
                    xs = [(float(t) - start) / 60 for t, _ in series["values"]]
                    ys = [float(v) for _, v in series["values"]]
                    ax.plot(xs, ys, label=label, linewidth=1.6)
            ax.set_xlabel("minutes", color="#8e8e8e", fontsize=9)
            ax.set_ylabel(unit, color="#8e8e8e", fontsize=9)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8, facecolor="#181b1f", labelcolor="#ccccdc", edgecolor="#2c3235")
        else:
            values = []
            for target in panel["targets"]:
                for series in query(base, "query", query=target["expr"], time=end)["result"]:
                    label = re.sub(r"\{\{(\w+)\}\}", lambda m: series["metric"].get(m.group(1), ""),
                                   target["legendFormat"])
                    values.append((label, float(series["value"][1])))
            ax.set_xticks([])
            ax.set_yticks([])
            for i, (label, value) in enumerate(values):
                y = 1 - (i + 1) / (len(values) + 1)
                shown = f"{value:.0f} {unit}" if unit in ("d", "s") else f"{value:g}"
                ax.text(0.5, y + 0.08, shown, color="#73bf69", fontsize=20, ha="center", transform=ax.transAxes)
                ax.text(0.5, y - 0.08, label, color="#8e8e8e", fontsize=9, ha="center", transform=ax.transAxes)
    figure.suptitle("secudoc-gateway (etc/grafana/secudoc-gateway.json, each panel's queries)", color="#ccccdc",
                    fontsize=16, y=0.99)
    figure.savefig(OUTPUT, facecolor=figure.get_facecolor(), bbox_inches="tight")
    print(f"wrote {OUTPUT}")


def main() -> None:
    folder = tempfile.mkdtemp(prefix="secudoc-dashboard-")
    down = dict(DEMO_TENANT, id="down", domains=["down.test"], users=["*@down.test"],
                relay=f"smtp://127.0.0.1:{freePort()}", facility_sender="noreply@down.test")
    gateway = GatewayProcess.inFolder(folder, log={"path": "gateway.log"})
    with open(os.path.join(folder, "tenants", "down.toml"), "w") as f:
        f.write("".join(f"{k} = {json.dumps(v)}\n" for k, v in down.items()))
    gateway.start()
    port = freePort()
    with open(os.path.join(folder, "prometheus.yml"), "w") as f:
        f.write(f"global: {{scrape_interval: 5s, evaluation_interval: 5s}}\nrule_files: [{json.dumps(ALERTS)}]\n"
                f"scrape_configs:\n  - job_name: secudoc-gateway\n"
                f"    static_configs: [{{targets: ['127.0.0.1:{gateway.metricsPort}']}}]\n")
    prometheus = subprocess.Popen(
        ["prometheus", f"--config.file={folder}/prometheus.yml", f"--storage.tsdb.path={folder}/data",
         f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        waitForPort(port)
        start = time.time()
        until = time.monotonic() + MINUTES * 60
        workers = [threading.Thread(target=traffic, args=(gateway, until)) for _ in range(3)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        time.sleep(10)
        draw(f"http://127.0.0.1:{port}", start, time.time())
    finally:
        prometheus.terminate()
        prometheus.wait()
        gateway.stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
