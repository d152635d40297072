"""
The operator's view of the records: ``transfers list|show|revoke|extend``
and ``audit`` (SPEC section 2).  A revoke or an extend made here is an
admin event by "operator" (SPEC 7).  Tables for people, ``--json`` for
scripts; a transfer is named by its public id (``X-SecuDoc-Transfer``,
the logs), never by its token.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import sys
import time
from typing import Any, Callable, Optional, Sequence

from secudoc_gateway.config import Config, Tenant
from secudoc_gateway.display import shown
from secudoc_gateway.transfers import OPERATOR, Download, Transfer, TransferStore


_AGO = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parseDate(text: str, now: Optional[float] = None) -> float:
    """
    ``2026-11-30`` or ``2026-11-30T08:00`` (UTC unless an offset is
    given), or a time ago (``30m``, ``12h``, ``1d``, ``2w``), as Unix seconds.
    """
    ago = _AGO.fullmatch(text.strip())
    if ago is not None:
        return (time.time() if now is None else now) - float(ago.group(1)) * _UNIT[ago.group(2)]
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD, YYYY-MM-DDTHH:MM or 1d, 12h, ...): {text!r}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


def timestamp(seconds: Optional[float]) -> Optional[str]:
    """RFC 3339, UTC, to the second."""
    if seconds is None:
        return None
    moment = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


# ``transfers extend``'s bound: a whole number of days, at least one, and
# no more than ten years (a link kept longer is a mistake, not a wish).
MAX_EXTEND_DAYS = 3650


def state(transfer: Transfer, now: float) -> str:
    """``purged`` (a tombstone) first, then ``revoked``, ``expired``, ``live``."""
    if transfer.purged is not None:
        return "purged"
    if transfer.revoked is not None:
        return "revoked"
    return "expired" if transfer.expires <= now else "live"


def extendDays(text: str) -> int:
    """``transfers extend``'s DAYS: a whole number from 1 to ``MAX_EXTEND_DAYS``."""
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= MAX_EXTEND_DAYS:
        raise argparse.ArgumentTypeError(f"not a whole number of days from 1 to {MAX_EXTEND_DAYS}: {text!r}")
    return int(text)


def transferRecord(transfer: Transfer, now: float) -> dict[str, Any]:
    return {
        "id": transfer.id,
        "state": state(transfer, now),
        "tenant": transfer.tenant,
        "sender": transfer.sender,
        "recipients": list(transfer.recipients),
        "subject": transfer.subject,
        "created": timestamp(transfer.created),
        "expires": timestamp(transfer.expires),
        "revoked": timestamp(transfer.revoked),
        "purged": timestamp(transfer.purged),
        "message_id": transfer.message_id,
        "files": [{"n": f.n, "name": f.name, "content_type": f.content_type, "size": f.size, "sha256": f.sha256,
                   "scan": f.scan}
                  for f in transfer.files],
        "withheld": [{"name": w.name, "scan": "infected", "signature": w.signature} for w in transfer.withheld],
    }


def downloadRecord(download: Download) -> dict[str, Any]:
    return {
        "at": timestamp(download.at),
        "transfer": download.transfer_id,
        "tenant": download.tenant,
        "file": download.n,
        "name": download.name,
        "recipient": download.recipient,
        "client": download.client,
        "user_agent": download.user_agent,
    }


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns as wide as their widest cell; text cleaned of control characters."""
    cells = [[shown("" if v is None else str(v)) for v in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() + "\n" for row in cells)


def _print(args: argparse.Namespace, records: Any, text: Callable[[], str]) -> None:
    sys.stdout.write(json.dumps(records, ensure_ascii=False, indent=2) + "\n" if args.json else text())


async def listTransfers(args: argparse.Namespace, store: TransferStore, now: float) -> int:
    transfers = await store.transfers(tenant=args.tenant, sender=args.sender, since=args.since, limit=args.limit,
                                     tombstones=True)
    _print(args, [transferRecord(t, now) for t in transfers], lambda: table(
        ["ID", "CREATED", "EXPIRES", "STATE", "TENANT", "SENDER", "RECIPIENTS", "FILES", "BYTES"],
        [[t.id, timestamp(t.created), timestamp(t.expires), state(t, now), t.tenant, t.sender,
          len(t.recipients), len(t.files), sum(f.size for f in t.files)] for t in transfers]))
    return 0


async def showTransfer(args: argparse.Namespace, store: TransferStore, now: float) -> int:
    transfer = await store.transfer(args.id)
    if transfer is None:
        print(f"no transfer {args.id!r}", file=sys.stderr)
        return 1
    downloads = await store.audit(transferId=transfer.id)
    record = dict(transferRecord(transfer, now), downloads=[downloadRecord(d) for d in downloads])

    def text() -> str:
        lines = [f"{key}: {shown(str(record[key]))}" for key in
                 ("id", "state", "tenant", "sender", "subject", "created", "expires", "revoked", "purged",
                  "message_id")]
        lines.append(f"recipients: {', '.join(transfer.recipients)}")
        files = table(["N", "NAME", "TYPE", "BYTES", "SHA256", "SCAN"],
                      [[f.n, f.name, f.content_type, f.size, f.sha256, f.scan or "-"] for f in transfer.files])
        if transfer.withheld:  # SPEC 10: infected, withheld (on_malware = "strip")
            files += "\nwithheld:\n" + table(["NAME", "SCAN", "SIGNATURE"],
                                              [[w.name, "infected", w.signature] for w in transfer.withheld])
        return "\n".join(lines) + "\n\n" + files + f"\ndownloads: {len(downloads)}\n"

    _print(args, record, text)
    return 0


async def revokeTransfer(args: argparse.Namespace, store: TransferStore, now: float) -> int:
    if not await store.revoke(args.id, by=OPERATOR):
        print(f"no transfer {args.id!r}", file=sys.stderr)
        return 1
    return await showTransfer(args, store, now)


async def extendTransfer(args: argparse.Namespace, store: TransferStore, now: float) -> int:
    """A withdrawn or purged link stays so: extending it would bring back what the sender took back."""
    if not await store.extend(args.id, args.days, by=OPERATOR):
        transfer = await store.transfer(args.id)
        if transfer is None:
            print(f"no transfer {args.id!r}", file=sys.stderr)
        elif transfer.purged is not None:
            print(f"transfer {args.id} was purged at {timestamp(transfer.purged)}: its files are gone,"
                  " it cannot be extended", file=sys.stderr)
        elif transfer.revoked is not None:
            print(f"transfer {args.id} was revoked at {timestamp(transfer.revoked)}:"
                  " a revoked transfer cannot be extended", file=sys.stderr)
        else:
            print(f"transfer {args.id} is being purged: it cannot be extended", file=sys.stderr)
        return 1
    return await showTransfer(args, store, now)


async def audit(args: argparse.Namespace, store: TransferStore, now: float) -> int:
    downloads = await store.audit(transferId=args.transfer, since=args.since, limit=args.limit)
    _print(args, [downloadRecord(d) for d in downloads], lambda: table(
        ["AT", "TRANSFER", "TENANT", "FILE", "NAME", "RECIPIENT", "CLIENT", "USER AGENT"],
        [[timestamp(d.at), d.transfer_id, d.tenant, d.n, d.name, d.recipient or "-", d.client, d.user_agent]
         for d in downloads]))
    return 0


def addCommands(sub: Any, common: argparse.ArgumentParser, run: Callable[..., int]) -> None:
    """The ``transfers`` and ``audit`` subcommands; ``run(args, work)`` opens the store for ``work``."""
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("--json", action="store_true", help="print JSON for scripts instead of a table")
    transfers = sub.add_parser("transfers", help="list, show, revoke or extend transfers",
                               description="Transfers by their public id (X-SecuDoc-Transfer); no token needed.")
    transfers.add_argument("--config", default=argparse.SUPPRESS, metavar="PATH",
                           help="main configuration file (also after the verb)")
    verbs = transfers.add_subparsers(dest="verb", required=True)
    listing = verbs.add_parser("list", parents=[common, output], help="the newest transfers, newest first")
    listing.add_argument("--tenant", help="only this tenant's transfers (purged ones show as tombstones)")
    listing.add_argument("--sender", help="only this sender's transfers (any case)")
    listing.add_argument("--since", type=parseDate, metavar="DATE", help="only transfers created since DATE (UTC)")
    listing.add_argument("--limit", type=int, default=1000, help="at most this many (default 1000)")
    listing.set_defaults(work=listTransfers)
    for name, work, helptext in [
        ("show", showTransfer, "one transfer: files, recipients, state, downloads"),
        ("revoke", revokeTransfer, "withdraw the link now: downloads answer 410 from then on"),
        ("extend", extendTransfer, "keep the link DAYS longer (from now if it has expired);"
                                   " a revoked or purged transfer cannot be extended"),
    ]:
        verb = verbs.add_parser(name, parents=[common, output], help=helptext, description=helptext)
        verb.add_argument("id", help="the public transfer id")
        if name == "extend":
            verb.add_argument("days", type=extendDays,
                              help=f"whole days to add, from 1 to {MAX_EXTEND_DAYS}")
        verb.set_defaults(work=work)
    trail = sub.add_parser("audit", parents=[common, output], help="the download audit trail, oldest first",
                           description="The download audit trail, oldest first: when, which file, the verified"
                                       " recipient where the tenant verifies recipients (else -), client.")
    trail.add_argument("--transfer", help="only this transfer's downloads")
    trail.add_argument("--since", type=parseDate, metavar="DATE", help="only downloads since DATE (UTC)")
    trail.add_argument("--limit", type=int, default=10000, help="at most this many (default 10000)")
    trail.set_defaults(work=audit)
    for parser in (transfers, trail):
        parser.set_defaults(func=lambda args: run(args, args.work))


# ``tenants show``: every key of a tenant file, not the derived values.
_DERIVED = frozenset({"networks", "exchange_online", "source", "document"})
EXIT_NO_TENANT = 2


def settingRecords(fileTenant: Tenant, overrides: Sequence[Any]) -> list[dict[str, Any]]:
    """
    A tenant's effective settings, each with where it comes from: the
    portal (who, when), the tenant file, or the file's default.
    """
    import tomllib

    import attrs

    from secudoc_gateway.settings import effective, shownValue

    mine = [o for o in overrides if o.tenant == fileTenant.id]
    [tenant], _ = effective([fileTenant], mine)
    try:
        inFile = tomllib.loads(fileTenant.document)
    except tomllib.TOMLDecodeError:
        inFile = {}
    byKey = {o.key: o for o in mine}
    records = []
    for field in attrs.fields(Tenant):
        if field.name in _DERIVED:
            continue
        o = byKey.get(field.name)
        value = json.loads(shownValue(getattr(tenant, field.name)))
        source = "portal" if o is not None and field.name in _applied(tenant, fileTenant, o) else (
            "file" if field.name in inFile else "default")
        records.append({"key": field.name, "value": value, "source": source,
                        "who": o.who if source == "portal" and o is not None else None,
                        "when": timestamp(o.at) if source == "portal" and o is not None else None})
    return records


def _applied(tenant: Tenant, fileTenant: Tenant, override: Any) -> set[str]:
    """The override's key if the effective tenant holds its value (one left out for a problem does not)."""
    from secudoc_gateway.config.tenants import withOverrides

    alone, problems = withOverrides(fileTenant, {override.key: override.value})
    if problems or getattr(alone, override.key) != getattr(tenant, override.key):
        return set()
    return {override.key}


def showTenant(args: argparse.Namespace, config: Config, overrides: Sequence[Any]) -> int:
    fileTenant = next((t for t in config.tenants if t.id == args.id), None)
    if fileTenant is None:
        known = ", ".join(sorted(t.id for t in config.tenants)) or "none"
        print(f"{args.config}: no tenant {args.id!r} (tenants: {known})", file=sys.stderr)
        return EXIT_NO_TENANT
    records = settingRecords(fileTenant, overrides)

    def text() -> str:
        rows = [(r["key"], json.dumps(r["value"], ensure_ascii=False),
                 r["source"] + (f" ({r['who']}, {r['when']})" if r["source"] == "portal" else ""))
                for r in records]
        return f"tenant {fileTenant.id}: {fileTenant.source}\n" + table(("key", "value", "source"), rows)

    _print(args, {"tenant": fileTenant.id, "file": fileTenant.source, "settings": records}, text)
    return 0


def listTenants(args: argparse.Namespace, config: Config, overrides: Sequence[Any]) -> int:
    records = [{"id": t.id, "domains": list(t.domains), "file": t.source,
                "portal_settings": sum(o.tenant == t.id for o in overrides)} for t in config.tenants]

    def text() -> str:
        return table(("id", "domains", "portal settings", "file"),
                     [(r["id"], ", ".join(r["domains"]), r["portal_settings"], r["file"]) for r in records])

    _print(args, records, text)
    return 0


def addTenantCommands(sub: Any, common: argparse.ArgumentParser, run: Callable[..., int]) -> None:
    """``tenants list|show``; ``run(args, work)`` loads the config and the overrides for ``work``."""
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("--json", action="store_true", help="print JSON for scripts instead of a table")
    tenants = sub.add_parser("tenants", help="the tenants and their effective settings",
                             description="The tenants, and each one's effective settings: the tenant file with"
                                         " the values its admins set in the portal.")
    tenants.add_argument("--config", default=argparse.SUPPRESS, metavar="PATH",
                         help="main configuration file (also after the verb)")
    verbs = tenants.add_subparsers(dest="verb", required=True)
    listing = verbs.add_parser("list", parents=[common, output], help="every tenant, with its portal settings' count")
    listing.set_defaults(work=listTenants)
    show = verbs.add_parser("show", parents=[common, output],
                            help="a tenant's effective settings and where each comes from (file or portal, who, when)")
    show.add_argument("id", help="the tenant's id")
    show.set_defaults(work=showTenant)
    tenants.set_defaults(func=lambda args: run(args, args.work))

