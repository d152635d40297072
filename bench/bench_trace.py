"""
What the message trace (SPEC 7) costs, and how fast it answers.

1. Protected messages per second with the trace on and off, same run,
   alternating: anchors.md's attachment message (89 KB, a 64 KiB
   attachment) from smtp-source to the gateway to smtp-sink.  The
   message has no Message-ID (every copy is new), so there is no dedup
   record for the row to ride with: the trace's worst case, its own
   transaction before each reply.  The "off" gateway is the same build
   with its ``Tracer`` switched off (a constructor switch, not a config
   key).  Goal: on >= 0.95 of off.
2. ``secudoc-gateway trace --sender X --since 1d`` on a million rows in
   PostgreSQL (made by one INSERT ... SELECT over generate_series):
   the query alone, and the whole command as an operator runs it.
   Goal: under one second.

    .venv/bin/python bench/bench_trace.py [--messages N] [--runs R] [--rows N]

Not part of ``make test``: run by hand.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from bench_throughput import attachmentMessage, measure
from common import PYTHON, ROOT, Process, SMTPSink, have, row, smtpSource

from secudoc_gateway.testing import DEMO_TENANT, writeConfig
from secudoc_gateway.testing.ports import freePort, waitForPort


def serve(configPath: str, trace: bool) -> None:
    """The gateway in this process (``--serve``), its trace on or off."""
    from twisted.internet import reactor

    from secudoc_gateway.config import loadConfig
    from secudoc_gateway.ingress.tracer import Tracer
    from secudoc_gateway.tap import makeService

    service = makeService(loadConfig(configPath), reactor)
    gateway = service.gateway
    gateway.tracer = Tracer(gateway.transfers, reactor, enabled=trace)
    service.startService()
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run()


class TracedGateway(Process):
    """The gateway (``serve``) in its own process, relaying to ``relay``."""

    def __init__(self, relay: str, trace: bool) -> None:
        self.folder = tempfile.mkdtemp(prefix="secudoc-bench-trace-")
        self.smtpPort = freePort()
        config = writeConfig(
            self.folder, [dict(DEMO_TENANT, relay=relay, relay_require_tls=False)],
            smtp={"listen": [f"tcp:{self.smtpPort}:interface=127.0.0.1"], "command_timeout": 600},
            database={"url": "sqlite:gateway.sqlite3"})
        self.config = config
        super().__init__([PYTHON, os.path.abspath(__file__), "--serve", config] + ([] if trace else ["--off"]),
                         env=dict(os.environ, PYTHONPATH=ROOT))
        waitForPort(self.smtpPort)

    def rows(self) -> int:
        import sqlite3

        with sqlite3.connect(os.path.join(self.folder, "gateway.sqlite3")) as connection:
            return connection.execute("SELECT COUNT(*) FROM message_trace").fetchone()[0]

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self.folder, ignore_errors=True)


def throughput(args: argparse.Namespace) -> None:
    folder = tempfile.mkdtemp(prefix="secudoc-bench-trace-")
    sink = SMTPSink()
    gateways: dict[str, TracedGateway] = {}
    try:
        gateways["on"] = TracedGateway(f"smtp://127.0.0.1:{sink.port}", trace=True)
        gateways["off"] = TracedGateway(f"smtp://127.0.0.1:{sink.port}", trace=False)
        message = attachmentMessage(folder)
        for gateway in gateways.values():
            smtpSource(gateway.smtpPort, 2, 40, 0, file=message)  # warm up
        sink.waitFor(80)
        seconds: dict[str, list[float]] = {name: [] for name in gateways}
        for _ in range(args.runs):
            for name, gateway in gateways.items():
                seconds[name].append(measure(gateway.smtpPort, sink, args.sessions, args.messages, 0, message))
        rates = {name: args.messages / statistics.median(s) for name, s in seconds.items()}
        print(f"protected, fs store, SQLite, {args.messages} messages over {args.sessions} connections, "
              f"median of {args.runs} runs alternating")
        row("trace on", f"{rates['on']:7.0f} msg/s", f"runs: {', '.join(f'{args.messages / s:.0f}' for s in seconds['on'])}")
        row("trace off", f"{rates['off']:7.0f} msg/s",
            f"runs: {', '.join(f'{args.messages / s:.0f}' for s in seconds['off'])}")
        row("on / off", f"{rates['on'] / rates['off']:7.3f}", "goal >= 0.95")
        print(f"trace rows written: on {gateways['on'].rows()}, off {gateways['off'].rows()}")
    finally:
        for gateway in gateways.values():
            gateway.stop()
        sink.stop()
        shutil.rmtree(folder, ignore_errors=True)


# A million messages over 30 days, 10 tenants, 5000 senders, one or two
# recipients each: one INSERT ... SELECT per table.
FILL_TRACE = """
INSERT INTO message_trace (at, tenant, queue_id, message_id, sender, recipients, size, decision, reason,
                           transfer_id, reply_code, reply_text, relay_reply, scan)
SELECT %(now)s - (i::float8 / %(rows)s) * 30 * 86400, 'tenant' || (i %% 10), upper(md5(i::text)),
       '<' || md5(i::text) || '@example.test>', 'sender' || (i %% 5000) || '@example.test',
       '["bob' || (i %% 20000) || '@external.test"]', 90000, 'protected', '', substr(md5(i::text), 1, 16),
       250, '2.0.0 Ok', '250 2.0.0 queued', NULL
FROM generate_series(1, %(rows)s) AS i
"""
FILL_RECIPIENTS = """
INSERT INTO message_trace_recipients (trace_id, recipient, at)
SELECT id, 'bob' || (id % 20000) || '@external.test', at FROM message_trace
"""


def million(args: argparse.Namespace) -> None:
    from secudoc_gateway.testing import postgres as pgcluster

    folder = tempfile.mkdtemp(prefix="secudoc-bench-pg-")
    cluster = pgcluster.Cluster(os.path.join(folder, "cluster"))
    cluster.create()
    cluster.start()
    try:
        url = pgcluster.freshDatabase(cluster.url(), cluster.password)
        os.environ[pgcluster.PASSWORD_ENV] = cluster.password
        config = writeConfig(folder, database={"url": url, "password_env": pgcluster.PASSWORD_ENV})
        command = [PYTHON, "-m", "secudoc_gateway.cli", "trace", "--config", config]
        # The schema, made by the gateway's own migrations (the command opens the database).
        subprocess.run(command + ["--limit", "1"], check=True, capture_output=True, env=dict(os.environ, PYTHONPATH=ROOT))
        import psycopg

        with psycopg.connect(url, password=cluster.password, autocommit=True) as connection:
            started = time.monotonic()
            connection.execute(FILL_TRACE % {"now": time.time(), "rows": args.rows})
            connection.execute(FILL_RECIPIENTS)
            connection.execute("ANALYZE message_trace")
            connection.execute("ANALYZE message_trace_recipients")
            row(f"{args.rows} rows made", f"{time.monotonic() - started:7.1f} s")
            since = time.time() - 86400
            query = ("SELECT id FROM message_trace WHERE lower(sender) = lower(%s) AND at >= %s"
                     " ORDER BY at DESC, id DESC LIMIT 1000")
            timings = []
            for _ in range(5):
                began = time.monotonic()
                found = connection.execute(query, ("Sender7@example.test", since)).fetchall()
                timings.append(time.monotonic() - began)
            row("the query: --sender X --since 1d", f"{statistics.median(timings) * 1000:7.1f} ms",
                f"{len(found)} rows; median of 5")
            plan = connection.execute("EXPLAIN " + query, ("sender7@example.test", since)).fetchall()
            print("   plan: " + " / ".join(line.strip() for (line,) in plan[:3]))
            timings = []
            for _ in range(5):
                began = time.monotonic()
                connection.execute(
                    "SELECT id FROM message_trace WHERE id IN (SELECT trace_id FROM message_trace_recipients"
                    " WHERE recipient = %s AND at >= %s) AND at >= %s ORDER BY at DESC, id DESC LIMIT 1000",
                    ("bob7@external.test", since, since)).fetchall()
                timings.append(time.monotonic() - began)
            row("the query: --recipient X --since 1d", f"{statistics.median(timings) * 1000:7.1f} ms", "median of 5")
        timings = []
        for _ in range(3):
            began = time.monotonic()
            result = subprocess.run(command + ["--sender", "sender7@example.test", "--since", "1d"], check=True,
                                    capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=ROOT))
            timings.append(time.monotonic() - began)
        row("secudoc-gateway trace --sender X --since 1d", f"{statistics.median(timings):7.2f} s",
            f"{len(result.stdout.splitlines()) - 1} rows; the whole process, Python start-up included; goal < 1 s")
    finally:
        cluster.destroy()
        shutil.rmtree(folder, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-million", action="store_true")
    parser.add_argument("--serve", metavar="CONFIG", help=argparse.SUPPRESS)
    parser.add_argument("--off", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, trace=not args.off)
        return 0
    if not args.skip_throughput:
        if not (have("smtp-source") and have("smtp-sink")):
            print("needs Postfix's smtp-source and smtp-sink (Debian package postfix)")
            return 1
        throughput(args)
    if not args.skip_million:
        million(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
