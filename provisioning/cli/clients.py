"""``buildfleet client add|list|renew|revoke``: a credential per consumer (see consumers)."""

from __future__ import annotations

import argparse
import datetime

from rich.table import Table

from provisioning.cli.context import Fleet
from provisioning.cli.fleet import configure_fleet
from provisioning.cli.options import add_fleet_options, checked, positive
from provisioning.consumers import CLIENT_DAYS, Consumers
from provisioning.errors import ConfigError
from provisioning.jsonstyle import dumps
from provisioning.names import check_client_name


def cmd_client(fleet: Fleet, args: argparse.Namespace) -> int:
    consumers = Consumers(fleet.state.root / "tls")
    console = fleet.console
    if args.action == "list":
        return list_clients(fleet, consumers)
    if args.name is None:
        raise ConfigError(f"client {args.action} needs the client's name: buildfleet client {args.action} NAME")
    if args.action == "renew" and not consumers.adopted(args.name):
        files = consumers.renew(args.name, args.days)
        console.print(f"client {args.name!r}: a new certificate ({args.days} days) under its own CA: {files.cert}")
        console.print("the hosts trust it already: nothing restarts; hand the consumer the new files (ci-config)")
        return 0
    if args.action == "renew":  # the token exchange's, whose CA lives on its host: a new CA there
        consumers.retire(args.name)
        console.print(
            f"client {args.name!r}: its CA is retired, trusted nowhere once the bundle rolls out; its host makes a "
            "new one now, which every host is given to trust, one at a time, drained"
        )
    elif args.action == "add":
        fleet.inventory()  # a fleet to add it to, before anything is made
        files = consumers.add(args.name, args.days)
        console.print(f"client {args.name!r}: its own CA and a certificate for {args.days} days: {files.cert}")
        console.print("every host is given the new CA to trust, one at a time, drained")
    else:
        consumers.revoke(args.name)
        console.print(f"client {args.name!r} revoked: its keys are gone here; every host drops its CA now")
    status = configure_fleet(fleet, fleet.settings())
    if status:
        console.print("[bold red]not every host has the new bundle yet[/]: fix what is named above, then configure")
    elif args.action == "add":
        console.print(f"its files for a CI job: buildfleet ci-config --client {args.name}")
    return status


def list_clients(fleet: Fleet, consumers: Consumers) -> int:
    now = datetime.datetime.now(datetime.timezone.utc)
    listed = consumers.listed()
    if fleet.options.json:
        rows = [{"name": c.name, "notAfter": c.not_after.isoformat(), "state": c.state(now)} for c in listed]
        fleet.console.print_json(dumps({"clients": rows}))
        return 0
    table = Table("client", "expires", "state")
    for consumer in listed:
        table.add_row(consumer.name, f"{consumer.not_after:%Y-%m-%d}", consumer.state(now))
    fleet.console.print(table if listed else "no clients: buildfleet client add NAME")
    return 0


def add_client(commands: argparse._SubParsersAction) -> None:
    """The client command: one credential per consumer, each revocable alone."""
    client = commands.add_parser(
        "client",
        help="add, list, renew or revoke a consumer's own client certificate (a CI system, a developer)",
        description="Each consumer gets a client certificate under an issuing CA of its own, which every host "
        "trusts until the consumer is revoked: add and revoke roll the hosts' trust out one host at a time, "
        "drained; renew issues a new certificate under the same CA and changes no host.",
    )
    client.add_argument("action", choices=("add", "list", "renew", "revoke"))
    client.add_argument("name", nargs="?", type=checked(check_client_name), help="the consumer (add, renew, revoke)")
    client.add_argument(
        "--days", type=positive, default=CLIENT_DAYS, help="how long the certificate is valid (default: %(default)s)"
    )
    add_fleet_options(client)
    client.set_defaults(handler=cmd_client)
