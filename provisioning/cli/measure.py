"""What the fleet costs and how fast it builds: bench and cost (the work is in bench/ and cost;
this module reads the command line and renders)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from provisioning.bench.runs import WORKLOADS
from provisioning.cli.context import Fleet
from provisioning.cli.nodes import awake
from provisioning.cli.options import (
    add_config_options,
    add_fleet_name,
    add_fleet_options,
    add_project_dir,
    fraction,
    hours_per_day,
    positive,
)
from provisioning.errors import BuildfleetError, ConfigError
from provisioning.jsonstyle import dumps
from provisioning.plan import plan_fleet
from provisioning.targets import declared_features

if TYPE_CHECKING:
    from provisioning.bench.concurrency import Comparison
    from provisioning.bench.session import BenchFleet
    from provisioning.cost import FleetCost


def bench_fleet(fleet: Fleet) -> BenchFleet:
    from provisioning.bench.session import BenchFleet

    inventory = fleet.inventory()
    builder = fleet.builder()
    return BenchFleet(fleet.name, inventory, fleet.state, builder.name, builder.buildx, fleet.options.artifacts)


def cmd_bench(fleet: Fleet, args: argparse.Namespace) -> int:
    from provisioning.bench import report
    from provisioning.bench.runs import WORKLOADS, plan_runs
    from provisioning.bench.session import catalog_prices, chosen_platforms, measure_fleet

    console = fleet.console
    bench = bench_fleet(fleet)
    platforms = chosen_platforms(bench, args.platforms.split(",") if args.platforms else [])
    if args.concurrency:
        return bench_concurrency(fleet, args, platforms)
    if args.baseline:
        from provisioning.bench.seed import seed_host

        seed_host(bench.inventory)  # refused before the fleet's own runs, not after them
        fleet.existing_builder("--baseline seed times the whole build through it")
    bench = woken_bench(fleet)
    workloads = args.workload or list(WORKLOADS)
    settings = fleet.settings()
    prices, price_note = catalog_prices(settings, bench.inventory)
    progress = bench_progress(transient=args.json)
    runs = plan_runs(bench.inventory, platforms, workloads)
    with progress:
        task = progress.add_task("bench", total=len(runs))

        def step(run, index):
            description = f"{run.workload} {run.platform} on {run.host} ({run.mode}) x{args.repeats}"
            progress.update(task, completed=index, description=description)

        measured = measure_fleet(bench, runs, args.repeats, step)
        progress.update(task, completed=len(runs), description="bench done")
    against_seed = None
    if args.baseline:
        from provisioning.bench import seed

        qemu = (fleet.artifacts(settings), fleet.configure_options(settings))
        against_seed = seed.compare(bench, platforms, workloads, args.repeats, measured, qemu, console.status)
    table = report.rows(measured, {h.name: h.arch for h in bench.inventory.hosts}, prices)
    title = (
        f"buildfleet bench: fleet {fleet.name!r} ({bench.inventory.target}), {args.repeats} "
        f"run{'s' if args.repeats > 1 else ''} each"
    )
    meta = {
        "fleet": fleet.name,
        "target": bench.inventory.target,
        "repeats": args.repeats,
        "workloads": workloads,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    files = report.write(args.output, table, measured, meta, title, price_note)
    if against_seed is not None:
        files |= against_seed.write(args.output)
    wrong = report.disagreements(measured)
    if wrong:
        raise BuildfleetError("a workload computed a different result: " + "; ".join(wrong))
    if args.json:
        extra = {"baseline_seed": against_seed.as_dict()} if against_seed is not None else {}
        console.print_json(
            report.as_json(
                table,
                measured,
                {**meta, "price_note": price_note, "files": {k: str(v) for k, v in files.items()}, **extra},
            )
        )
        return 0
    console.print(bench_table(table, title))
    console.print(
        "penalty: QEMU median / the native median it is compared with (measured). own CPU: the emulation "
        "host runs this platform natively, binfmt cannot emulate it there. $ / build: catalog price. " + price_note,
        highlight=False,
    )
    if against_seed is not None:
        console.print(against_seed.markdown(), highlight=False)
    console.print("written: " + ", ".join(str(f) for f in files.values()), highlight=False)
    return 0


def bench_progress(transient: bool):
    """One bar for the whole bench on stderr (--json keeps stdout clean and the bar goes at the end)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"))
    return Progress(*columns, TimeElapsedColumn(), console=Console(stderr=True), transient=transient)


def woken_bench(fleet: Fleet) -> BenchFleet:
    """The fleet to measure, once bad input has been refused: its powered-off hosts woken first."""
    awake(fleet, "to measure it")
    return bench_fleet(fleet)  # where the hosts answer now


def bench_concurrency(fleet: Fleet, args: argparse.Namespace, platforms) -> int:
    """N builds at once through the fleet's node for the platform, then through one host."""
    from provisioning.bench import concurrency

    concurrency.bounded(args.concurrency)  # refused before anything is asked of Docker
    fleet.existing_builder("--concurrency builds through it")
    bench = woken_bench(fleet)
    platform = concurrency.busiest_platform(bench.inventory, platforms, asked=bool(args.platforms))
    compared = concurrency.compare(bench, platform, args.concurrency, fleet.console.status)
    if args.json:
        fleet.console.print_json(dumps(compared.to_dict(fleet.name)))
    else:
        print_comparison(fleet.console, compared)
    return 1 if compared.failed else 0


def print_comparison(console: Console, compared: Comparison) -> None:
    from provisioning.bench.concurrency import summary

    for line in summary([compared.through_fleet, compared.alone]):
        console.print(line, highlight=False)
    console.print(f"throughput through {compared.node} / one host alone: {compared.ratio}x", highlight=False)
    if compared.note:
        console.print(compared.note, highlight=False)


def bench_table(rows, title: str) -> Table:
    table = Table(title=title)
    for column in (
        "workload",
        "platform",
        "node",
        "runs",
        "median s",
        "min s",
        "penalty",
        "vs native",
        "build s",
        "$ / build",
    ):
        table.add_column(
            column, justify="right" if column in ("median s", "min s", "penalty", "build s", "$ / build") else "left"
        )
    for r in rows:
        mode = r.mode + (
            " (own CPU)" if r.note.startswith("the emulation host's own") else " (baseline)" if r.note else ""
        )
        table.add_row(
            r.workload,
            r.platform,
            r.host if r.placed else f"{r.host} (extra)",
            mode,
            f"{r.median_s:.2f}",
            f"{r.min_s:.2f}",
            f"{r.penalty}x" if r.penalty is not None else "-",
            r.baseline or "-",
            f"{r.build_median_s:.2f}",
            f"${r.usd_per_build:.5f}" if r.usd_per_build is not None else "-",
        )
    return table


FIXED_NAMES = {
    "disks": "disks (gp3, all month)",
    "public_ipv4": "public IPv4 addresses",
    "load_balancers": "pool load balancers (NLB hours)",
}


def priced_region(fleet: Fleet, asked: str | None) -> tuple[str, str]:
    """The region the fleet runs in (--region, else its stack's aws:region), and how it is known;
    the catalog holds one region's prices and pretends for no other."""
    from provisioning.catalog import PRICED_REGION
    from provisioning.configfile import stack_region

    stack = fleet.options.stack or fleet.state.recorded_stack()
    found = stack_region(fleet.options.project_dir, stack) if stack else None
    region, said = (
        (asked, "--region")
        if asked
        else (found, f"Pulumi.{stack}.yaml")
        if found
        else (
            PRICED_REGION,
            "no region named: the catalog's",
        )
    )
    if region != PRICED_REGION:
        raise ConfigError(
            f"cost: the catalog holds {PRICED_REGION} list prices only and {region} ({said}) is priced differently; "
            f"buildfleet does not guess them: see aws.amazon.com/ec2/pricing/on-demand for {region}, "
            f"or run cost --region {PRICED_REGION} for the {PRICED_REGION} figures"
        )
    return region, said


def cmd_cost(fleet: Fleet, args: argparse.Namespace) -> int:
    from provisioning.cost import fleet_cost, usage_cost

    console = fleet.console
    target = fleet.target(fleet.kind(default="aws"))
    settings = fleet.described_settings(target)
    Console(stderr=True).print(fleet.settings_note(target), highlight=False, soft_wrap=True)
    region, said = priced_region(fleet, args.region)
    cost = fleet_cost(
        plan_fleet(settings), args.spot_discount, root_volume_gib=settings.root_volume_gib, spot=settings.spot
    )
    usage = None
    if args.build_hours_per_day is not None:
        minutes = args.idle_minutes if args.idle_minutes is not None else settings.idle_stop_minutes or 30
        usage = usage_cost(cost, settings.root_volume_gib, args.build_hours_per_day, minutes)
    if args.json:
        console.print_json(dumps({**cost.to_dict(), "region": region, "usage": usage.to_dict() if usage else None}))
        return 0
    made = fleet.made_with()
    what = (
        "the planned AWS fleet"
        if made is None
        else f"fleet {fleet.name!r}"
        if declared_features(made).catalog_priced
        else f"fleet {fleet.name!r} ({made}) as it would run on AWS"
    )
    print_cost(console, cost, what, f"{region}'s ({said})", args.spot_discount)
    if usage:
        print_usage(console, usage)
    return 0


def print_cost(console: Console, cost: FleetCost, what: str, region: str, spot_discount: float) -> None:
    """The fleet's prices per host and in all, and hosted CI's per-minute prices beside them."""
    from provisioning.cost import HOURS_PER_MONTH

    table = Table(title=f"buildfleet cost: {what} (catalog list prices)")
    for column in ("host", "instance type", "vCPU", "$/h on-demand", "$/month on-demand", "$/h spot (estimate)"):
        table.add_column(column, justify="left" if column in ("host", "instance type") else "right")
    for h in cost.hosts:
        table.add_row(
            h.host,
            h.instance_type,
            str(h.vcpu),
            f"{h.usd_per_hour:.4f}",
            f"{cost.per_month(h.usd_per_hour):.2f}",
            f"{h.spot_usd_per_hour:.4f}",
        )
    table.add_row(
        "fleet",
        "",
        str(sum(h.vcpu for h in cost.hosts)),
        f"{cost.usd_per_hour:.4f}",
        f"{cost.per_month(cost.usd_per_hour):.2f}",
        f"{cost.spot_usd_per_hour:.4f}",
        style="bold",
    )
    for name, usd in cost.fixed.items():
        if usd:
            table.add_row(FIXED_NAMES[name], "", "", "", f"{usd:.2f}", "")
    pricing = "spot, estimated" if cost.spot else "on-demand"
    table.add_row(f"a month, all in ({pricing})", "", "", "", f"{cost.total_usd_per_month:.2f}", "", style="bold")
    console.print(table)
    console.print(
        f"Prices are {region}; a month all in: the instances {pricing} for {HOURS_PER_MONTH} h, "
        "disks, public IPv4 addresses"
        + (", the pools' load balancers (their NLCU-hours of traffic, $0.006 each, not included)" if cost.pools else "")
        + ".",
        highlight=False,
    )
    sources = sorted({f"{h.price_source}, as of {h.price_as_of}" for h in cost.hosts})
    console.print(
        f"On-demand: {'; '.join(sources)}. A month is {HOURS_PER_MONTH} h. Spot: on-demand less "
        f"{spot_discount:.0%} (--spot-discount), an estimate: spot prices move; "
        f"{'the fleet is configured to run on spot' if cost.spot else 'set buildfleet:spot to use it'}.",
        highlight=False,
    )
    hosted = Table(title="hosted CI per-minute prices to compare with")
    for column in ("runner", "vCPU", "$/minute", "$/hour", "fleet hour = minutes of it", "source"):
        hosted.add_column(column)
    for rate in cost.hosted:
        hosted.add_row(
            rate.name,
            str(rate.vcpu),
            f"{rate.usd_per_minute:.3f}",
            f"{rate.usd_per_minute * 60:.2f}",
            f"{cost.usd_per_hour / rate.usd_per_minute:.0f}",
            f"{rate.source} ({rate.as_of})",
        )
    console.print(hosted)


def print_usage(console: Console, usage) -> None:
    from provisioning.catalog import GP3_STORAGE, PUBLIC_IPV4

    table = Table(title=f"a month at {usage.build_hours_per_day:g} build-hours a day")
    for column in ("how", "hours running", "$/month"):
        table.add_column(column, justify="left" if column == "how" else "right")
    table.add_row("fleet always on", "730", f"{usage.always_on_usd_per_month:.2f}")
    table.add_row(
        f"fleet with idle stop after {usage.idle_stop_minutes} min",
        f"{usage.running_hours_per_month:.0f}",
        f"{usage.idle_stop_usd_per_month:.2f}",
    )
    for name, usd in usage.hosted_usd_per_month:
        table.add_row(f"{name}, one runner", "per build minute", f"{usd:.2f}")
    console.print(table)
    console.print(
        f"Disks ({GP3_STORAGE.usd} $/{GP3_STORAGE.per}, {GP3_STORAGE.source}) and public IPv4 addresses "
        f"({PUBLIC_IPV4.usd} $/{PUBLIC_IPV4.per}, {PUBLIC_IPV4.source}; Elastic IPs while stopped too) are paid all "
        "month. Idle stop assumes the day's builds come as one block (one idle tail a day). A fleet host builds "
        "several platforms at once on all its vCPUs; a hosted runner is one 2-vCPU job.",
        highlight=False,
    )


def add_bench(commands: argparse._SubParsersAction) -> None:
    """The bench: reference workloads timed natively and under QEMU."""
    bench = commands.add_parser(
        "bench",
        help="time reference workloads natively and under QEMU; emulation penalty and $ per build",
        description="Build each reference workload for each platform on its planned node, and natively placed "
        "platforms also under QEMU on the emulation host, without the build cache, --repeats times. "
        "Reports min/median seconds, the emulation penalty (QEMU time / the same workload on a native "
        "node: the platform's own where the fleet has one, else the QEMU host's own architecture on "
        "the same machine) and $ per build from catalog prices. Writes bench.md, bench.json, "
        "timings.csv and bench.png to --output. Workloads: "
        + "; ".join(f"{name}: {text}" for name, text in WORKLOADS.items())
        + ".",
    )
    bench.add_argument(
        "--workload",
        action="append",
        choices=tuple(WORKLOADS),
        metavar="NAME",
        help=f"a workload to run (repeatable; default: all of {', '.join(WORKLOADS)})",
    )
    bench.add_argument("--platforms", metavar="LIST", help="comma-separated platforms (default: every planned one)")
    bench.add_argument(
        "--baseline",
        choices=("seed",),
        help="seed: also run the same workloads and the same multi-platform build the way the CircleCI post "
        "does (one node, the distribution's qemu-user-static, default CPU) on the emulation host, and report the "
        "fleet's speed-up per platform and for the whole build",
    )
    bench.add_argument("--repeats", type=positive, default=3, help="runs per workload, platform and node (default 3)")
    bench.add_argument(
        "--concurrency",
        type=positive,
        metavar="N",
        help="instead: N builds of one platform at once (a pool's first, or the first of --platforms), through "
        "the fleet's builder and then on one host alone; builds per host and throughput",
    )
    bench.add_argument(
        "--output",
        type=Path,
        default=Path("buildfleet-bench"),
        metavar="DIR",
        help="where the report files go (default: ./buildfleet-bench)",
    )
    add_project_dir(bench)  # settings: the ones up kept for the fleet
    add_fleet_options(bench)
    bench.set_defaults(handler=cmd_bench)


def add_cost(commands: argparse._SubParsersAction) -> None:
    """The cost: the planned AWS fleet priced from the catalog."""
    cost = commands.add_parser(
        "cost",
        help="the planned AWS fleet's $/hour and $/month, on-demand and spot, beside hosted CI prices",
        description="Price the fleet the configuration plans for AWS from the instance catalog: per host and in "
        "all, per hour and per month (730 h), on-demand and spot. Spot is on-demand less "
        "--spot-discount and labelled an estimate. Hosted CI per-minute prices (with their source "
        "and date) are shown beside it. Reads configuration only; no cloud account needed.",
    )
    cost.add_argument(
        "--spot-discount",
        type=fraction,
        default=0.6,
        metavar="FRACTION",
        help="assumed spot discount off on-demand, 0 to below 1 (default 0.6: an estimate)",
    )
    cost.add_argument(
        "--build-hours-per-day",
        type=hours_per_day,
        metavar="H",
        help="also price a month at H hours of builds a day: always on, with idle stop, and on hosted runners",
    )
    cost.add_argument(
        "--idle-minutes",
        type=int,
        metavar="M",
        help="the idle stop limit to price (default: buildfleet:idleStopMinutes, or 30 where that is 0)",
    )
    cost.add_argument("--json", action="store_true", help="print the figures as JSON")
    add_fleet_name(cost, help="an existing fleet is priced with the settings it was made with (default: default)")
    cost.add_argument(
        "--region",
        metavar="REGION",
        help="the AWS region to price (default: the stack's aws:region, else us-east-1); the catalog has us-east-1's",
    )
    add_config_options(cost)
    cost.set_defaults(handler=cmd_cost)
