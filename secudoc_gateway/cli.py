"""
``secudoc-gateway`` operator commands: ``check-config``, ``test-relay``,
``purge``, ``transfers``, ``audit``, ``trace``, ``tenants`` and ``exo-setup`` (SPEC section 2).
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from secudoc_gateway import __version__
from secudoc_gateway.config import DEFAULT_CONFIG_PATH
from secudoc_gateway.errors import ConfigError, RelayError
from secudoc_gateway.exo import DEFAULT_GROUP


EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2


def _load(path: str):
    from secudoc_gateway.config import loadUsableConfig

    try:
        return loadUsableConfig(path)
    except ConfigError as e:
        for problem in e.problems:
            print(problem, file=sys.stderr)
        return None


def checkConfig(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return EXIT_CONFIG
    from secudoc_gateway.tap import listenerProblems

    problems = listenerProblems(config)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return EXIT_CONFIG
    print(f"{args.config}: ok ({len(config.tenants)} tenant(s))")
    return EXIT_OK


def testRelay(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return EXIT_CONFIG
    tenant = next((t for t in config.tenants if t.id == args.tenant), None)
    if tenant is None:
        print(f"{args.config}: no tenant {args.tenant!r}", file=sys.stderr)
        return EXIT_CONFIG

    from twisted.internet import task

    from secudoc_gateway.relay.probe import probeRelay

    recipient = args.to or tenant.facility_sender

    def run(reactor):
        d = probeRelay(tenant, config.smtp.hostname, reactor, recipient)

        def ok(reply: str) -> None:
            print(f"relayed through {tenant.relay}: {reply}")

        def failed(f) -> None:
            f.trap(RelayError)
            e = f.value
            remote = f" (remote said: {e.reply.line})" if e.reply else ""
            print(f"relay through {tenant.relay} failed at {e.kind}: {e.message}{remote}",
                  file=sys.stderr)
            raise SystemExit(EXIT_FAILED)

        return d.addCallbacks(ok, failed)

    task.react(run, [])  # exits the process with 0, or with the SystemExit code
    return EXIT_OK


def exoSetup(args: argparse.Namespace) -> int:
    """Print the tenant's Exchange Online PowerShell (SPEC section 11)."""
    from secudoc_gateway import exo

    try:
        networks = exo.gatewayNetworks(args.gateway_ip)
    except ValueError as e:
        print(f"exo-setup: {e}", file=sys.stderr)
        return EXIT_CONFIG
    config = _load(args.config)
    if config is None:
        return EXIT_CONFIG
    tenant = next((t for t in config.tenants if t.id == args.tenant), None)
    if tenant is None:
        known = ", ".join(sorted(t.id for t in config.tenants)) or "none"
        print(f"{args.config}: no tenant {args.tenant!r} (tenants: {known})", file=sys.stderr)
        return EXIT_CONFIG
    certificate = None
    if tenant.relay_tls_certificate:
        try:
            with open(tenant.relay_tls_certificate, "rb") as f:
                certificate = exo.certificateName(f.read())
        except (OSError, ValueError) as e:
            print(f"{tenant.source}: relay_tls_certificate: cannot read a certificate from"
                  f" {tenant.relay_tls_certificate}: {e}", file=sys.stderr)
            return EXIT_CONFIG
    setup = exo.Setup(tenant=tenant, smartHost=args.smart_host or config.smtp.hostname,
                      certificate=certificate, group=args.group, gatewayIPs=networks)
    sys.stdout.write(exo.render(setup))
    return EXIT_OK


def purge(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return EXIT_CONFIG
    from twisted.internet import defer, task

    async def run(reactor) -> None:
        status = await purgeCommand(args, config, reactor)
        if status:
            raise SystemExit(status)

    task.react(lambda reactor: defer.ensureDeferred(run(reactor)), [])
    return EXIT_OK


async def purgeCommand(args: argparse.Namespace, config, reactor) -> int:
    """``purge``'s work and report on a running reactor; its exit status."""
    from secudoc_gateway.inventory import timestamp
    from secudoc_gateway.purge import PurgeIncomplete, purgeOnce, reason

    try:
        result = await purgeOnce(config, reactor, dryRun=args.dry_run)
    except PurgeIncomplete as e:
        print(str(e), file=sys.stderr)
        return EXIT_FAILED
    if not args.dry_run:
        print(f"purged {result}")
        return EXIT_OK
    for t in result:
        why = reason(t)
        print(f"would purge {t.id} (tenant {t.tenant}, {why} {timestamp(t.expires if why == 'expired' else t.revoked)},"
              f" {len(t.files)} file(s), {sum(f.size for f in t.files)} bytes)")
    revoked = sum(reason(t) == "revoked" for t in result)
    print(f"{len(result)} transfer(s) would be purged: {len(result) - revoked} expired, {revoked} revoked")
    return EXIT_OK


def withTransfers(args: argparse.Namespace, work) -> int:
    """Open the database, ``await work(args, store, now)`` for its exit status, close."""
    config = _load(args.config)
    if config is None:
        return EXIT_CONFIG
    from twisted.internet import defer, task

    async def run(reactor) -> None:
        status = await transfersCommand(args, work, config, reactor)
        if status:
            raise SystemExit(status)

    task.react(lambda reactor: defer.ensureDeferred(run(reactor)), [])
    return EXIT_OK


async def transfersCommand(args: argparse.Namespace, work, config, reactor) -> int:
    """``await work(args, store, now)`` on the database of ``config``, on a running reactor; its exit status."""
    from secudoc_gateway.db import Database
    from secudoc_gateway.transfers import TransferStore

    database = Database.fromConfig(config.database, reactor)  # password_env too
    await database.open()
    try:
        return await work(args, TransferStore(database, reactor), reactor.seconds())
    finally:
        database.close()


def trace(args: argparse.Namespace) -> int:
    """The message trace (``tracing``); with ``--follow`` until Ctrl-C, which ends it with status 0."""
    config = _load(args.config)
    if config is None:
        return EXIT_CONFIG
    from twisted.internet import defer, task

    from secudoc_gateway.tracing import traceCommand

    async def run(reactor) -> None:
        status = await traceCommand(args, config, reactor)
        if status:
            raise SystemExit(status)

    task.react(lambda reactor: defer.ensureDeferred(run(reactor)), [])
    return EXIT_OK


def withSettings(args: argparse.Namespace, work) -> int:
    """Load the config and the portal's overrides, ``work(args, config, overrides)`` for the exit status."""
    config = _load(args.config)
    if config is None:
        return EXIT_CONFIG
    from twisted.internet import defer, task

    async def run(reactor) -> None:
        from secudoc_gateway.db import Database
        from secudoc_gateway.settings import SettingsStore

        database = Database.fromConfig(config.database, reactor)
        await database.open()
        try:
            _, overrides = await SettingsStore(database, reactor).overrides()
        finally:
            database.close()
        status = work(args, config, overrides)
        if status:
            raise SystemExit(status)

    task.react(lambda reactor: defer.ensureDeferred(run(reactor)), [])
    return EXIT_OK


def commands() -> argparse.ArgumentParser:
    """The commands and their options (``main`` runs the one asked for)."""
    from secudoc_gateway.inventory import addCommands, addTenantCommands
    from secudoc_gateway.tracing import addCommand as addTrace

    parser = argparse.ArgumentParser(prog="secudoc-gateway", description="The gateway's operator commands.")
    parser.add_argument("--version", action="version", version=f"secudoc-gateway {__version__}",
                        help="print the version and exit")
    # --config before or after the verb (SPEC 2): no default on any
    # parser, or a subcommand's default would undo the one given before it.
    parser.add_argument("--config", default=argparse.SUPPRESS, metavar="PATH",
                        help=f"main configuration file (default: {DEFAULT_CONFIG_PATH}), before or after the command")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS, metavar="PATH",
                        help=f"main configuration file (default: {DEFAULT_CONFIG_PATH})")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func, helptext in [
        ("check-config", checkConfig, "validate the config and every tenant file"),
        ("test-relay", testRelay, "send a test message through a tenant's relay target"),
        ("purge", purge, "delete expired transfers' objects and rows"),
        ("exo-setup", exoSetup, "print the Exchange Online PowerShell that makes a tenant's connectors and rules"),
    ]:
        p = sub.add_parser(name, parents=[common], help=helptext, description=helptext)
        p.set_defaults(func=func)
        if name == "test-relay":
            p.add_argument("tenant", help="the tenant's id")
            p.add_argument("--to", default="", help="recipient (default: the tenant's facility_sender)")
        if name == "purge":
            p.add_argument("--dry-run", action="store_true", help="list what would be purged, delete nothing")
        if name == "exo-setup":
            p.add_argument("tenant", help="the tenant's id")
            p.add_argument("--smart-host", default="", metavar="NAME",
                           help="the name Exchange Online sends to (default: [smtp] hostname)")
            p.add_argument("--group", default=DEFAULT_GROUP, metavar="NAME",
                           help=f"the mail-enabled security group of the installation guide's step 3"
                                f" (default: {DEFAULT_GROUP!r})")
            p.add_argument("--gateway-ip", action="append", default=[], metavar="CIDR",
                           help="a public address (or CIDR) of the gateway, repeatable: with it the script"
                                " also exempts the gateway's returning mail from spam filtering")
    addCommands(sub, common, withTransfers)
    addTrace(sub, common, trace)
    addTenantCommands(sub, common, withSettings)
    return parser


def parse(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """The command line as ``commands`` reads it, ``config`` defaulted where no ``--config`` was given."""
    args = commands().parse_args(argv)
    if not hasattr(args, "config"):
        args.config = DEFAULT_CONFIG_PATH
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
