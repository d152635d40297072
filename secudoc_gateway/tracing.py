"""
``secudoc-gateway trace`` (SPEC 2, 7): every message the gateway
answered, with its decision: "did my test mail reach the gateway, and
what did it do with it".  A table for people, ``--json`` for scripts,
``--follow`` for a live tail while an admin sends the seed's test mails.

Following polls the database (every node writes there) for rows of the
last few seconds and prints those not printed yet: a row committed late
by another worker or node, or with a clock a little behind, still shows.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable, Optional

from twisted.internet import task

from secudoc_gateway.inventory import parseDate, table, timestamp
from secudoc_gateway.transfers import TraceEntry

# Seconds between polls of --follow, and how far back each poll looks
# again for rows committed after a later one.
FOLLOW_INTERVAL = 1.0
FOLLOW_LAG = 30.0

HEADER = ["TIME", "QUEUE ID", "TENANT", "SENDER", "RECIPIENTS", "SIZE", "DECISION", "REASON", "TRANSFER", "REPLY"]


def traceRecord(entry: TraceEntry) -> dict[str, Any]:
    return {
        "time": timestamp(entry.at),
        "tenant": entry.tenant,
        "queue_id": entry.queue_id,
        "message_id": entry.message_id,
        "sender": entry.sender,
        "recipients": list(entry.recipients),
        "size": entry.size,
        "decision": entry.decision,
        "reason": entry.reason,
        "transfer_id": entry.transfer_id,
        "reply_code": entry.reply_code,
        "reply": entry.reply,
        "relay_reply": entry.relay_reply,
        "scan": entry.scan,
    }


def cells(entry: TraceEntry) -> list[Any]:
    return [timestamp(entry.at), entry.queue_id, entry.tenant, entry.sender or "<>", ", ".join(entry.recipients),
            entry.size, entry.decision, entry.reason, entry.transfer_id, entry.reply]


def render(entries: list[TraceEntry], asJSON: bool, lines: bool, header: bool = True) -> str:
    """
    A table (with its ``header``), a JSON list, or with ``lines`` one
    JSON object a line (``--follow --json``: each readable on arrival).
    """
    if asJSON:
        if lines:
            return "".join(json.dumps(traceRecord(e), ensure_ascii=False) + "\n" for e in entries)
        return json.dumps([traceRecord(e) for e in entries], ensure_ascii=False, indent=2) + "\n"
    text = table(HEADER, [cells(e) for e in entries])
    return text if header else text.partition("\n")[2]


def query(args: argparse.Namespace) -> dict[str, Any]:
    """The filters of the command line, as ``TraceRecords.traceEntries`` names them."""
    return {"tenant": args.tenant, "sender": args.sender, "recipient": args.recipient,
            "messageId": args.message_id}


async def listTrace(args: argparse.Namespace, store: Any, write: Callable[[str], Any]) -> int:
    entries = await store.traceEntries(**query(args), since=args.since, limit=args.limit)
    write(render(entries, args.json, lines=False))
    return 0


async def follow(args: argparse.Namespace, store: Any, reactor: Any, write: Callable[[str], Any],
                 interval: float = FOLLOW_INTERVAL) -> None:
    """
    The rows so far, then every new one as it is written, until the
    process is stopped (Ctrl-C stops the reactor: a clean exit).
    """
    entries = await store.traceEntries(**query(args), since=args.since, limit=args.limit)
    write(render(entries, args.json, lines=True))
    seen = {e.id: e.at for e in entries}
    newest = max((e.at for e in entries), default=reactor.seconds())
    floor = min((e.at for e in entries), default=newest)
    while True:
        await task.deferLater(reactor, interval, lambda: None)
        since = max(newest - FOLLOW_LAG, floor, args.since or floor)
        fresh = [e for e in await store.traceEntries(**query(args), since=since, limit=100000) if e.id not in seen]
        if fresh:
            write(render(fresh, args.json, lines=True, header=False))
        for e in fresh:
            seen[e.id] = e.at
            newest = max(newest, e.at)
        seen = {i: at for i, at in seen.items() if at >= newest - 2 * FOLLOW_LAG}


def writer(stream: Any = None) -> Callable[[str], None]:
    """Write and flush: a follower's reader (a pipe, ``grep``) sees each row as it comes."""

    def write(text: str) -> None:
        out = stream or sys.stdout
        out.write(text)
        out.flush()

    return write


async def traceCommand(args: argparse.Namespace, config: Any, reactor: Any,
                       write: Optional[Callable[[str], Any]] = None) -> int:
    """``trace`` on the database of ``config``, on a running reactor; its exit status."""
    from secudoc_gateway.db import Database
    from secudoc_gateway.transfers import TransferStore

    database = Database.fromConfig(config.database, reactor)
    await database.open()
    try:
        store = TransferStore(database, reactor)
        if args.follow:
            # Ctrl-C stops the reactor with the follower still waiting:
            # the pool closes first, not when the coroutine is collected.
            reactor.addSystemEventTrigger("before", "shutdown", database.close)
            await follow(args, store, reactor, write or writer())
            return 0
        return await listTrace(args, store, write or writer())
    finally:
        database.close()


def addCommand(sub: Any, common: argparse.ArgumentParser, run: Callable[[argparse.Namespace], int]) -> None:
    """The ``trace`` subcommand; ``run(args)`` runs it."""
    helptext = "the message trace: every message the gateway answered, with its decision"
    trace = sub.add_parser("trace", parents=[common], help=helptext, description=helptext)
    trace.add_argument("--tenant", help="only this tenant's messages")
    trace.add_argument("--sender", help="only messages from this envelope sender (any case)")
    trace.add_argument("--recipient", help="only messages to this envelope recipient (any case)")
    trace.add_argument("--message-id", metavar="ID", help="only the message with this Message-ID (<> optional)")
    trace.add_argument("--since", type=parseDate, metavar="DATE",
                       help="only messages since DATE (UTC; YYYY-MM-DD[THH:MM]) or since that long ago (30m, 1d)")
    trace.add_argument("--limit", type=int, default=1000, help="the newest this many (default 1000), oldest first")
    trace.add_argument("--json", action="store_true", help="print JSON for scripts instead of a table"
                       " (with --follow: one object a line)")
    trace.add_argument("--follow", "-f", action="store_true",
                       help="keep printing messages as they are answered, until Ctrl-C")
    trace.set_defaults(func=run)
