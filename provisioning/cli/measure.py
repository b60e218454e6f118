"""What the fleet costs and how fast it builds: bench and cost."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from provisioning.cli.common import (
    builder_name,
    configure_options,
    described_settings,
    fleet_artifacts,
    fleet_builder,
    fleet_kind,
    fleet_settings,
    made_with,
    require_inventory,
    settings_note,
    target_for,
)
from provisioning.errors import BuildfleetError, ConfigError
from provisioning.inventory import Inventory
from provisioning.jsonstyle import dumps
from provisioning.plan import plan_fleet
from provisioning.platforms import Platform
from provisioning.settings import Settings
from provisioning.state import FleetState
from provisioning.targets import declared_features

if TYPE_CHECKING:
    from provisioning.bench.report import Measured
    from provisioning.bench.seed import SeedComparison
    from provisioning.builder.builder import FleetBuilder


def catalog_prices(settings: Settings, inventory) -> tuple[dict, str]:
    """host -> the catalog instance type it is priced as, and the note saying how."""
    from provisioning.catalog import PRICE_AS_OF, PRICE_SOURCE

    catalog = settings.catalog
    aws_plan = plan_fleet(settings)
    by_role = {h.role: aws_plan.instance_types[h.name] for h in aws_plan.hosts if h.name in aws_plan.instance_types}
    prices, stand_ins = {}, []
    for host in inventory.hosts:
        if host.full_system_emulation:
            continue  # an emulated machine is no instance type: it is never priced as one
        if host.instance_type:
            prices[host.name] = catalog.lookup(host.instance_type)
        elif host.role in by_role:
            prices[host.name] = by_role[host.role]
            stand_ins.append(f"{host.name} as {by_role[host.role].name}")
    note = f"Prices: {PRICE_SOURCE}, as of {PRICE_AS_OF}."
    if stand_ins:
        note += (
            " This fleet has no instance types, so each host is priced as the instance type the AWS plan "
            f"gives its role ({', '.join(stand_ins)}): what these minutes would cost there, not a measurement "
            "of those machines."
        )
    return prices, note


def cmd_bench(args: argparse.Namespace, console: Console) -> int:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from provisioning.bench import report
    from provisioning.bench.runner import bench, host_builders
    from provisioning.bench.runs import WORKLOADS, plan_runs
    from provisioning.builder.nodes import TLSFiles
    from provisioning.builder.preflight import check_emulation
    from provisioning.builder.sample import SampleSources
    from provisioning.platforms import parse_platforms
    from provisioning.remote.ssh import connect

    state = FleetState.for_fleet(args.fleet)
    inventory = require_inventory(args, state)
    placed = inventory.platforms
    platforms = parse_platforms(args.platforms.split(",")) if args.platforms else parse_platforms(placed)
    for platform in platforms:
        if str(platform) not in placed:
            raise BuildfleetError(f"{platform} is not planned on fleet {args.fleet!r} (planned: {', '.join(placed)})")
    if args.concurrency:
        return bench_concurrency(args, console, state, inventory, platforms)
    if args.baseline:
        from provisioning.bench.seed import seed_host

        seed_host(inventory)  # refused before the fleet's own runs, not after them
    workloads = args.workload or list(WORKLOADS)
    runs = plan_runs(inventory, platforms, workloads)
    sources = SampleSources.from_artifacts(args.artifacts, parse_platforms(r.platform for r in runs))
    check_emulation(inventory, lambda host: connect(host, state))
    prices, price_note = catalog_prices(fleet_settings(args, state, inventory), inventory)
    buildx = fleet_builder(args, state).buildx
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=args.json,
    )
    with (
        progress,
        host_builders(
            builder_name(args), inventory, TLSFiles.in_state(state.root / "tls"), runs, state.root / "builders", buildx
        ) as builders,
    ):
        task = progress.add_task("bench", total=len(runs))

        def step(run, index):
            progress.update(
                task,
                completed=index,
                description=f"{run.workload} {run.platform} on {run.host} ({run.mode}) x{args.repeats}",
            )

        measured = bench(buildx, builders, runs, sources, args.repeats, step)
        progress.update(task, completed=len(runs), description="bench done")
    against_seed = (
        seed_baseline(args, console, state, inventory, platforms, workloads, measured) if args.baseline else None
    )
    table = report.rows(measured, {h.name: h.arch for h in inventory.hosts}, prices)
    title = (
        f"buildfleet bench: fleet {args.fleet!r} ({inventory.target}), {args.repeats} "
        f"run{'s' if args.repeats > 1 else ''} each"
    )
    meta = {
        "fleet": args.fleet,
        "target": inventory.target,
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


def seed_baseline(
    args: argparse.Namespace,
    console: Console,
    state: FleetState,
    inventory: Inventory,
    platforms: Sequence[Platform],
    workloads: Sequence[str],
    fleet: Sequence[Measured],
) -> SeedComparison:
    """The seed's one-node build beside the fleet: the same workloads on the emulation host with
    the distribution's QEMU, and the same multi-platform build through each."""
    from provisioning.bench import seed
    from provisioning.bench.runner import bench, host_builders
    from provisioning.builder.nodes import TLSFiles
    from provisioning.builder.sample import SampleSources
    from provisioning.hosts.configure import distro_qemu

    host = seed.seed_host(inventory)
    runs = seed.seed_runs(host, platforms, workloads)
    sources = SampleSources.from_artifacts(args.artifacts, platforms)
    fleet_builder_ = existing_builder(args, state, "--baseline seed times the whole build through it")
    buildx = fleet_builder_.buildx
    settings = fleet_settings(args, state, inventory)
    options = configure_options(args, settings)
    tls = TLSFiles.in_state(state.root / "tls")
    with console.status("the multi-platform build through the fleet (a warm-up, then timed)"):
        fleet_s = seed.timed_build(buildx, fleet_builder_.name, sources, platforms)
    arches = seed.foreign_arches(host, platforms)
    with (
        console.status(f"{host.name}: the distribution's QEMU for {', '.join(arches)}; the seed's runs"),
        distro_qemu(host, state, fleet_artifacts(args, settings), options, arches) as interpreters,
        host_builders(builder_name(args), inventory, tls, runs, state.root / "builders", buildx) as builders,
    ):
        measured = bench(buildx, builders, runs, sources, args.repeats)
        seed_s = seed.timed_build(buildx, builders[host.name], sources, platforms)
    whole = seed.WholeBuild(len(platforms), fleet_s, seed_s)
    return seed.SeedComparison(host.name, tuple(seed.speedups(fleet, measured)), whole, tuple(measured), interpreters)


def existing_builder(args: argparse.Namespace, state: FleetState, why: str) -> FleetBuilder:
    """The fleet's builder, which must exist in this docker configuration."""
    builder = fleet_builder(args, state)
    if builder.inspect() is None:
        raise BuildfleetError(
            f"the fleet's builder {builder.name!r} does not exist here ({why}): run buildfleet builder create first"
        )
    return builder


MAX_CONCURRENCY = 32  # a bench, not a load test: bounded


def bench_concurrency(
    args: argparse.Namespace, console: Console, state: FleetState, inventory: Inventory, platforms: Sequence[Platform]
) -> int:
    """N builds at once through the fleet's node for the platform, then through one host."""
    import os

    from provisioning.bench import concurrency
    from provisioning.bench.runner import build_args, host_builders
    from provisioning.bench.runs import Run
    from provisioning.builder.nodes import TLSFiles
    from provisioning.builder.sample import SampleSources

    if args.concurrency > MAX_CONCURRENCY:
        raise BuildfleetError(f"--concurrency {args.concurrency}: at most {MAX_CONCURRENCY} builds at once")
    pooled = {x.platform for h in inventory.hosts if h.pool for x in h.platforms}
    platform = next((p for p in platforms if str(p) in pooled), platforms[0]) if not args.platforms else platforms[0]
    hosts = [h for h in inventory.hosts if str(platform) in {p.platform for p in h.platforms}]
    node = hosts[0].node
    sources = SampleSources.from_artifacts(args.artifacts, [platform])
    fleet = existing_builder(args, state, "--concurrency builds through it")
    n = args.concurrency
    runs = [Run("concurrency", str(platform), h.name, True, True) for h in hosts]
    tls = TLSFiles.in_state(state.root / "tls")
    with host_builders(builder_name(args), inventory, tls, runs, state.root / "builders", fleet.buildx) as builders:
        with console.status(f"unpacking {platform}'s userland on {', '.join(builders)} (untimed)"):
            for builder in builders.values():
                fleet.buildx.run(build_args(builder, str(platform), "userland", sources, "type=cacheonly"))
        with console.status(f"{n} builds of {platform} at once through {node}"):
            through_fleet = concurrency.wave(fleet.buildx, fleet.name, node, inventory, platform, sources, n)
        with console.status(f"{n} builds of {platform} at once on {hosts[0].name} alone"):
            alone = concurrency.wave(
                fleet.buildx, builders[hosts[0].name], f"{hosts[0].name} alone", inventory, platform, sources, n
            )
    note = concurrency.same_machine_note(inventory, os.cpu_count() or 1)
    ratio = concurrency.speedup(through_fleet, alone)
    result = {
        "fleet": args.fleet,
        "platform": str(platform),
        "concurrency": n,
        "waves": [through_fleet.to_dict(), alone.to_dict()],
        "throughput_vs_one_host": ratio,
        "note": note,
    }
    if args.json:
        console.print_json(dumps(result))
    else:
        for line in concurrency.summary([through_fleet, alone]):
            console.print(line, highlight=False)
        console.print(f"throughput through {node} / one host alone: {ratio}x", highlight=False)
        if note:
            console.print(note, highlight=False)
    failed = through_fleet.failures + alone.failures
    return 1 if failed else 0


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


def priced_region(args: argparse.Namespace, state: FleetState) -> tuple[str, str]:
    """The region the fleet runs in (--region, else its stack's aws:region), and how it is known;
    the catalog holds one region's prices and pretends for no other."""
    from provisioning.catalog import PRICED_REGION
    from provisioning.configfile import stack_region

    stack = getattr(args, "stack", None) or state.recorded_stack()
    found = stack_region(args.project_dir, stack) if stack else None
    region, said = (
        (args.region, "--region")
        if args.region
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


def cmd_cost(args: argparse.Namespace, console: Console) -> int:
    from provisioning.cost import HOURS_PER_MONTH, fleet_cost, usage_cost

    state = FleetState.for_fleet(args.fleet)
    kind = fleet_kind(args, state, default="aws")
    target = target_for(args, kind)
    settings = described_settings(args, state, target)
    Console(stderr=True).print(settings_note(args, state, target), highlight=False, soft_wrap=True)
    region, said = priced_region(args, state)
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
    made = made_with(state)
    what = (
        "the planned AWS fleet"
        if made is None
        else f"fleet {args.fleet!r}"
        if declared_features(made).catalog_priced
        else f"fleet {args.fleet!r} ({made}) as it would run on AWS"
    )
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
        f"Prices are {region}'s ({said}); a month all in: the instances {pricing} for {HOURS_PER_MONTH} h, "
        "disks, public IPv4 addresses"
        + (", the pools' load balancers (their NLCU-hours of traffic, $0.006 each, not included)" if cost.pools else "")
        + ".",
        highlight=False,
    )
    sources = sorted({f"{h.price_source}, as of {h.price_as_of}" for h in cost.hosts})
    console.print(
        f"On-demand: {'; '.join(sources)}. A month is {HOURS_PER_MONTH} h. Spot: on-demand less "
        f"{args.spot_discount:.0%} (--spot-discount), an estimate: spot prices move; "
        f"{'the fleet is configured to run on spot' if settings.spot else 'set buildfleet:spot to use it'}.",
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
    if usage:
        print_usage(console, usage)
    return 0


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
