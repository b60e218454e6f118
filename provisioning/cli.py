"""``buildfleet``: the one entry point. Each subcommand is a thin reader of one stage."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from provisioning.configfile import DEFAULT_FILE, load_raw_config
from provisioning.errors import BuildfleetError
from provisioning.plan import Plan, plan_fleet
from provisioning.settings import settings_from_mapping


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("configuration (later sources win)")
    group.add_argument("--stack", metavar="NAME",
                       help="read the buildfleet: keys of Pulumi.NAME.yaml in the project directory")
    group.add_argument("--config", metavar="FILE", type=Path,
                       help=f"a YAML file of buildfleet keys (default: ./{DEFAULT_FILE} if present)")
    group.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="overrides",
                       help="override one key, e.g. --set arm64InstanceType=c8g.xlarge (repeatable)")
    group.add_argument("--project-dir", metavar="DIR", type=Path, default=Path.cwd(),
                       help="directory holding Pulumi.yaml and the stack files (default: current)")


def plan_table(plan: Plan) -> Table:
    table = Table(title="buildfleet plan: which host builds each platform")
    for column in ("platform", "host", "role", "instance type", "runs"):
        table.add_column(column)
    roles = {host.name: host.role for host in plan.hosts}
    for a in plan.placement.assignments:
        runs = "native" if a.native else "QEMU (emulated)"
        instance_type = plan.instance_types.get(a.host)
        table.add_row(str(a.platform), a.host, roles[a.host], instance_type.name if instance_type else "-", runs)
    return table


def _cmd_plan(args: argparse.Namespace, console: Console) -> int:
    raw = load_raw_config(args.project_dir, args.config, args.stack, args.overrides)
    plan = plan_fleet(settings_from_mapping(raw))
    if args.json:
        console.print_json(json.dumps(plan.to_dict()))
    else:
        console.print(plan_table(plan))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="buildfleet",
        description="Multi-architecture Docker build hosts as code: plan a fleet, stand it up, "
                    "and join it into one docker buildx builder (native where possible, QEMU elsewhere).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    plan = commands.add_parser(
        "plan", help="show which host builds each platform, natively or under QEMU (no cloud account needed)",
        description="Print the placement the configuration leads to: for each platform, the host that "
                    "builds it and whether natively or under QEMU. Reads configuration only.",
    )
    _add_config_options(plan)
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")
    plan.set_defaults(handler=_cmd_plan)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console()
    try:
        return args.handler(args, console)
    except BuildfleetError as error:
        Console(stderr=True).print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
