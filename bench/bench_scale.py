"""
Scale: the gateway with several worker processes and on PostgreSQL,
next to Postfix and Postfix + MIMEDefang relaying the same load to the
same sink in the same run (smtp-source -> server -> smtp-sink, 20
sessions, the clock stops when the sink has counted every message).

    .venv/bin/python bench/bench_scale.py [--messages N] [--sessions C] [--runs R]

``--tmpfs`` puts every queue, spool, database and object folder on
/dev/shm. Rows: protected 89 KB messages (64 KiB attachment) with --workers 2 vs
Postfix + MIMEDefang (target x3) and plain Postfix; 2 KB pass-through
with --workers 2 vs plain Postfix (target x2.5); workers 1 vs 2 on both
loads; PostgreSQL (fsync on) vs SQLite on the protected path.  ``--table``
runs only the rows of issue 21's table (workers 2, SQLite, the anchors),
the anchors' way: ``--messages 4000 --runs 3``.  The load average before
and after shows how busy the shared machine was.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile

from bench_throughput import attachmentMessage, measure
from common import MIMEDefang, Gateway, PostfixRelay, SMTPSink, have, row

from secudoc_gateway.testing import postgres as pgcluster


def rate(port: int, sink: SMTPSink, sessions: int, messages: int, runs: int, size: int = 0, file: str = "") -> float:
    """Messages per second, the median of ``runs``."""
    measure(port, sink, sessions, max(messages // 10, 20), size, file)  # warm up
    return messages / statistics.median(measure(port, sink, sessions, messages, size, file) for _ in range(runs))


def table(args: argparse.Namespace, sink: SMTPSink, message: str, folder: str) -> dict[str, float]:
    """
    ``--table``: every system up at once, taking turns run by run (this
    machine is shared: a busy minute then falls on all of them alike).
    """
    relay = f"smtp://127.0.0.1:{sink.port}"
    servers: dict[str, int] = {}
    stops = []
    try:
        gateway = Gateway(relay, workers=2)
        stops.append(gateway.stop)
        servers["gateway --workers 2"] = gateway.smtpPort
        if args.before:
            from bench_protected import checkout

            old = Gateway(relay, workers=2, root=checkout(args.before, tempfile.mkdtemp(dir=folder)))
            stops.append(old.stop)
            servers[f"gateway {args.before} --workers 2"] = old.smtpPort
        postfix = PostfixRelay(sink.port)
        stops.append(postfix.stop)
        if not postfix.reason:
            servers["Postfix"] = postfix.port
        defang = MIMEDefang()
        stops.append(defang.stop)
        if not defang.reason:
            milter = PostfixRelay(sink.port, milter=defang.address)
            stops.insert(0, milter.stop)
            if not milter.reason:
                servers["Postfix+MIMEDefang"] = milter.port
        loads = {"protected": (args.messages, 0, message), "2 KB": (3 * args.messages, 2048, "")}
        seconds: dict[str, list[float]] = {}
        for label, port in servers.items():
            measure(port, sink, args.sessions, max(args.messages // 10, 20), 0, message)  # warm up
        for _ in range(args.runs):
            for load, (n, size, file) in loads.items():
                for label, port in servers.items():
                    if load == "2 KB" and "MIMEDefang" in label:
                        continue
                    seconds.setdefault(f"{label} {load}", []).append(
                        measure(port, sink, args.sessions, n, size, file))
        for label, each in seconds.items():
            n = loads["2 KB" if label.endswith("2 KB") else "protected"][0]
            print(f"  {label}: runs " + ", ".join(f"{n / s:.0f}" for s in each) + " msg/s")
        return {label: loads["2 KB" if label.endswith("2 KB") else "protected"][0] / statistics.median(each)
                for label, each in seconds.items()}
    finally:
        for stop in stops:
            stop()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=1000, help="protected messages per run (2 KB: three times)")
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--table", action="store_true",
                        help="only workers 2 on SQLite and the anchors (no workers 1, no PostgreSQL)")
    parser.add_argument("--before", default="", metavar="REV",
                        help="with --table: that revision's gateway too, taking its turns with the others")
    parser.add_argument("--tmpfs", action="store_true",
                        help="queues, spools, databases and objects on /dev/shm (anchors.md's tmpfs rows):"
                             " what the processes cost without the disk's syncs")
    args = parser.parse_args()
    if args.tmpfs:
        tempfile.tempdir = "/dev/shm"
        os.environ["SPOOL"] = "/dev/shm/MIMEDefang-anchor"  # md_start.sh's spool
    if not (have("smtp-source") and have("smtp-sink")):
        print("needs Postfix's smtp-source and smtp-sink (Debian package postfix)")
        return 1
    folder = tempfile.mkdtemp(prefix="secudoc-scale-")
    message = attachmentMessage(folder)
    sink = SMTPSink()
    results: dict[str, float] = {}
    relay = f"smtp://127.0.0.1:{sink.port}"
    n, small = args.messages, 3 * args.messages

    def gateway(label: str, workers: int, database: dict | None = None) -> None:
        g = Gateway(relay, workers=workers, database=database)
        try:
            results[f"{label} protected"] = rate(g.smtpPort, sink, args.sessions, n, args.runs, file=message)
            if database is None:
                results[f"{label} 2 KB"] = rate(g.smtpPort, sink, args.sessions, small, args.runs, size=2048)
        finally:
            g.stop()

    load = os.getloadavg()
    if args.table:
        try:
            results = table(args, sink, message, folder)
        finally:
            sink.stop()
            shutil.rmtree(folder, ignore_errors=True)
        return report(args, results, load)
    try:
        gateway("gateway --workers 2", 2)
        if not args.table:
            gateway("gateway --workers 1", 1)
            cluster = pgcluster.Cluster(tempfile.mkdtemp(prefix="secudoc-pg-"), durable=True)
            cluster.create()
            cluster.start()
            try:
                os.environ["SECUDOC_BENCH_DB_PASSWORD"] = cluster.password
                database = {"url": pgcluster.freshDatabase(cluster.url(), cluster.password),
                            "password_env": "SECUDOC_BENCH_DB_PASSWORD"}
                gateway("gateway --workers 2, PostgreSQL", 2, database)
            finally:
                cluster.destroy()
        postfix = PostfixRelay(sink.port)
        try:
            if not postfix.reason:
                results["Postfix protected"] = rate(postfix.port, sink, args.sessions, n, args.runs, file=message)
                results["Postfix 2 KB"] = rate(postfix.port, sink, args.sessions, small, args.runs, size=2048)
        finally:
            postfix.stop()
        defang = MIMEDefang()
        try:
            if not defang.reason:
                milter = PostfixRelay(sink.port, milter=defang.address)
                try:
                    if not milter.reason:
                        results["Postfix+MIMEDefang protected"] = rate(milter.port, sink, args.sessions, n,
                                                                       args.runs, file=message)
                finally:
                    milter.stop()
        finally:
            defang.stop()
    finally:
        sink.stop()
        shutil.rmtree(folder, ignore_errors=True)

    return report(args, results, load)


def report(args: argparse.Namespace, results: dict[str, float], load: tuple[float, ...]) -> int:
    n, small = args.messages, 3 * args.messages
    print(f"{args.sessions} sessions; protected: {n} x 89 KB (64 KiB attachment); pass-through: {small} x 2 KB;"
          f" median of {args.runs} run(s); {'tmpfs' if args.tmpfs else 'disk'};"
          f" load average before {load[0]:.2f}, after {os.getloadavg()[0]:.2f}")
    for label, value in results.items():
        row(label, f"{value:7.0f} msg/s")

    def ratio(a: str, b: str) -> str:
        return f"x{results[a] / results[b]:.2f}" if a in results and b in results else "not run"

    print("ratios")
    if args.before:
        old = f"gateway {args.before} --workers 2"
        for anchor in ("Postfix+MIMEDefang protected", "Postfix protected", "Postfix 2 KB"):
            kind = "2 KB" if anchor.endswith("2 KB") else "protected"
            row(f"{args.before}: {kind} / {anchor.rpartition(' ')[0] if kind == 'protected' else 'Postfix'}",
                ratio(f"{old} {kind}", anchor))
        row("protected, this checkout / " + args.before, ratio("gateway --workers 2 protected", f"{old} protected"))
        row("2 KB, this checkout / " + args.before, ratio("gateway --workers 2 2 KB", f"{old} 2 KB"))
    row("protected, workers 2 / Postfix+MIMEDefang", ratio("gateway --workers 2 protected",
                                                           "Postfix+MIMEDefang protected"), "target x3.5")
    row("protected, workers 2 / plain Postfix", ratio("gateway --workers 2 protected", "Postfix protected"),
        "target x1.2")
    row("2 KB, workers 2 / plain Postfix", ratio("gateway --workers 2 2 KB", "Postfix 2 KB"), "target x2.5")
    if args.table:
        return 0
    row("protected, workers 2 / workers 1", ratio("gateway --workers 2 protected", "gateway --workers 1 protected"))
    row("2 KB, workers 2 / workers 1", ratio("gateway --workers 2 2 KB", "gateway --workers 1 2 KB"))
    row("protected, PostgreSQL / SQLite (workers 2)", ratio("gateway --workers 2, PostgreSQL protected",
                                                             "gateway --workers 2 protected"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
