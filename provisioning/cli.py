"""``buildfleet``: the one entry point. Each subcommand is a thin reader of one stage."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from provisioning.bench.runs import WORKLOADS
from provisioning.configfile import DEFAULT_FILE, load_raw_config
from provisioning.errors import BuildfleetError
from provisioning.hosts.executor import FAILED, FleetReport
from provisioning.plan import Plan, plan_fleet, plan_on_machine
from provisioning.platforms import parse_platform
from provisioning.settings import Settings, settings_from_mapping
from provisioning.state import FleetState

# The local target has no native arm64 CPU: its fleet is an amd64 host and an emulation host.
LOCAL_DEFAULTS = {"arm64Count": 0}
STATUS_STYLE = {"changed": "yellow", "unchanged": "green", "failed": "bold red", "skipped": "dim"}


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


def _settings(args: argparse.Namespace, target: str) -> Settings:
    raw = load_raw_config(args.project_dir, args.config, args.stack, args.overrides)
    if target in ("local", "static"):
        raw = {**LOCAL_DEFAULTS, **raw}
    return settings_from_mapping(raw)


def _plan_for(settings: Settings, target: str) -> Plan:
    if target == "local":
        from provisioning.local.target import machine_arch
        return plan_on_machine(settings, machine_arch())
    return plan_fleet(settings)


def report_table(report: FleetReport) -> Table:
    table = Table(title="buildfleet configure: per host, per step")
    for column in ("host", "step", "result", "s", "detail"):
        table.add_column(column, overflow="fold")
    for host in report.hosts:
        for step in host.steps:
            detail = step.detail
            if step.status == FAILED and step.command:
                detail += f"\n$ {step.command}\nexit {step.exit_code}: {step.stderr_tail}"
            table.add_row(step.host, step.step, f"[{STATUS_STYLE[step.status]}]{step.status}[/]",
                          f"{step.seconds:.1f}", escape(detail))
    return table


def _print_report(console: Console, report: FleetReport, as_json: bool) -> int:
    if as_json:
        console.print_json(json.dumps({"ok": report.ok, "changes": report.changes, "hosts": [
            {"host": h.host, "steps": [s.__dict__ for s in h.steps]} for h in report.hosts]}))
    else:
        console.print(report_table(report))
        summary = (f"{report.changes} step(s) changed" if report.changes
                   else "nothing to change: the fleet is configured")
        console.print(summary if report.ok else f"[bold red]{len(report.failures())} step(s) failed[/]")
    return 0 if report.ok else 1


def _local_target(args: argparse.Namespace, settings: Settings | None = None):
    from provisioning.local.target import LocalTarget
    if settings is None:
        return LocalTarget(args.fleet, FleetState.for_fleet(args.fleet), args.cache_dir)
    return LocalTarget(args.fleet, FleetState.for_fleet(args.fleet), args.cache_dir,
                       buildkitd_port=settings.buildkitd_port, init=settings.local_init)


def default_cache_dir() -> Path:
    """Slow artefacts (host image, buildx, buildkitd) outlive clones and fleets."""
    env = os.environ.get("BUILDFLEET_CACHE")
    if env:
        return Path(env)
    return Path("/var/cache/buildfleet") if os.geteuid() == 0 else Path.home() / ".cache" / "buildfleet"


def _run_configure(args: argparse.Namespace, state: FleetState, settings: Settings, check_only: bool = False,
                   progress=lambda host, step, done, total: None):
    from provisioning.artifacts import LocalArtifacts
    from provisioning.hosts.configure import ConfigureOptions, configure
    options = ConfigureOptions(buildkitd_port=settings.buildkitd_port,
                               allow_docker_upgrade=not getattr(args, "no_docker_upgrade", False),
                               qemu_source=settings.qemu_source, docker_source=settings.docker_source)
    return configure(_inventory(args, state), state, LocalArtifacts(args.artifacts), options, check_only, progress)


def host_progress(console: Console):
    """A rich progress display with one line per host: its current step, steps done, elapsed time."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    return Progress(TextColumn("{task.fields[host]:<14}"), TextColumn("{task.description:<12}"), BarColumn(),
                    MofNCompleteColumn(), TimeElapsedColumn(), console=Console(stderr=True, width=console.width),
                    transient=False)


def _configure(args: argparse.Namespace, console: Console, state: FleetState, settings: Settings) -> int:
    tasks: dict[str, int] = {}
    with host_progress(console) as shown:
        for host in _inventory(args, state).hosts:
            tasks[host.name] = shown.add_task("connect", host=host.name, total=None)

        def progress(host: str, step: str, done: int, total: int) -> None:
            shown.update(tasks[host], description=step or "done", completed=done, total=total)
            if not step:
                shown.stop_task(tasks[host])  # freeze its elapsed time at the host's own finish
        report = _run_configure(args, state, settings, progress=progress)
    return _print_report(console, report, args.json)


def _cmd_up(args: argparse.Namespace, console: Console) -> int:
    state = FleetState.for_fleet(args.fleet)
    if args.target == "aws":
        inventory, settings = _aws_up(args, console, state)
    else:
        settings = _settings(args, args.target)
    if args.target == "static":
        from provisioning.static import StaticTarget
        if args.inventory is None:
            raise BuildfleetError("up --target static needs --inventory FILE (a YAML list of existing hosts)")
        with console.status("reading the static inventory and detecting each host's CPU over SSH"):
            inventory = StaticTarget(args.inventory, state).up(settings.platforms)
    elif args.target == "local":
        plan = _plan_for(settings, "local")
        with console.status(f"creating {len(plan.hosts)} local host(s)"):
            inventory = _local_target(args, settings).up(plan)
    console.print(f"fleet {args.fleet!r} ({inventory.target}): {', '.join(h.name for h in inventory.hosts)} up")
    status = _configure(args, console, state, settings)
    if status == 0:
        _ensure_builder(args, console, state)
    return status


def _aws_target(args: argparse.Namespace, state: FleetState):
    from provisioning.cloud import automation
    stack = args.stack or automation.AwsTarget.recorded_stack(state) or args.fleet
    return automation.AwsTarget(stack, args.project_dir, state, select=automation.select_stack)


def _pulumi_output(console: Console):
    """Pulumi's own progress lines, passed through dimmed (to stderr, so --json stays clean)."""
    err = Console(stderr=True, width=console.width)
    return lambda line: err.print(line.rstrip("\n"), style="dim", markup=False, highlight=False)


def _aws_up(args: argparse.Namespace, console: Console, state: FleetState) -> tuple:
    """Pulumi up, then wait until every host answers over SSH with cloud-init done."""
    from provisioning.hosts.configure import connect
    from provisioning.hosts.wait import wait_for_hosts
    from provisioning.settings import require_cloud_access
    target = _aws_target(args, state)
    stack_file = args.project_dir / f"Pulumi.{target.stack}.yaml"
    raw = load_raw_config(args.project_dir, args.config, target.stack if stack_file.exists() else None,
                          args.overrides)
    to_set = load_raw_config(args.project_dir, args.config, None, args.overrides)  # what the stack lacks
    ssh_key = ""
    if raw.get("sshPublicKey"):
        if args.ssh_key is None or not args.ssh_key.expanduser().is_file():
            raise BuildfleetError("buildfleet:sshPublicKey is set, so buildfleet needs its private half: "
                                  "--ssh-key PATH (e.g. ~/.ssh/id_ed25519); or unset it to use the fleet's own key")
        ssh_key = str(args.ssh_key.expanduser())
    else:  # the fleet's own key pair, made once and kept in its state
        to_set["sshPublicKey"] = raw["sshPublicKey"] = state.ensure_ssh_key()
    settings = settings_from_mapping(raw)
    require_cloud_access(settings)  # every config error before Pulumi starts
    console.print(f"pulumi up: stack {target.stack!r} in {args.project_dir}")
    inventory = target.up(to_set, _pulumi_output(console), ssh_key)
    with console.status(f"waiting for {len(inventory.hosts)} host(s) to answer over SSH and finish cloud-init"):
        waited = wait_for_hosts(inventory.hosts, lambda host: connect(host, state), args.wait_timeout)
    console.print("hosts answer: " + ", ".join(f"{name} after {s:.0f} s" for name, s in waited.items()))
    return inventory, settings


def _cmd_configure(args: argparse.Namespace, console: Console) -> int:
    return _configure(args, console, FleetState.for_fleet(args.fleet), _settings(args, "local"))


def _cmd_status(args: argparse.Namespace, console: Console) -> int:
    if args.check or args.command == "doctor":
        return _doctor(args, console)
    state = FleetState.for_fleet(args.fleet)
    inventory = state.load_inventory()
    containers = _local_target(args).status() if inventory is None or inventory.target == "local" else []
    builder = _builder_name(args) if _fleet_builder(args, state).owned() else None
    if args.json:
        console.print_json(json.dumps({"fleet": args.fleet, "inventory": inventory.to_dict() if inventory else None,
                                       "registry": inventory.registry if inventory else None,
                                       "builder": builder, "containers": containers}))
        return 0
    if inventory is None:
        console.print(f"fleet {args.fleet!r} is not up")
        return 0
    table = Table(title=f"fleet {args.fleet!r} ({inventory.target})")
    for column in ("host", "role", "arch", "ssh", "buildkitd", "platforms"):
        table.add_column(column)
    for host in inventory.hosts:
        platforms = ", ".join(f"{p.platform}{'' if p.native else ' (QEMU)'}" for p in host.platforms)
        table.add_row(host.name, host.role, host.arch, f"{host.ssh_user}@{host.address}:{host.ssh_port}",
                      f"{host.address}:{host.buildkitd_port}", platforms)
    console.print(table)
    console.print(f"registry: {inventory.registry or '-'}    builder: {builder or '- (buildfleet builder create)'}")
    return 0


def _doctor(args: argparse.Namespace, console: Console) -> int:
    """Each host's steps checked (nothing changed) and each builder node's status, with the fix."""
    from provisioning.hosts.executor import DRIFT, UNCHANGED
    state = FleetState.for_fleet(args.fleet)
    inventory = _inventory(args, state)
    with console.status(f"checking {len(inventory.hosts)} host(s) and the builder"):
        report = _run_configure(args, state, _settings(args, inventory.target), check_only=True)
        inspected = _fleet_builder(args, state).inspect(bootstrap=True)
    checks = []
    for host in report.hosts:
        for step in host.steps:
            fix = {UNCHANGED: "", DRIFT: f"buildfleet configure (it would: {step.detail})"}.get(
                step.status, "see the detail; then buildfleet configure")
            checks.append({"node": step.host, "check": step.step, "ok": step.status == UNCHANGED,
                           "detail": step.detail, "fix": fix})
    wanted = {f"{_builder_name(args)}-{h.name}" for h in inventory.hosts if h.platforms}
    found = {n.name: n.status for n in inspected.nodes} if inspected else {}
    for node in sorted(wanted):
        status = found.get(node, "missing")
        checks.append({"node": node.removeprefix(f"{_builder_name(args)}-"), "check": "builder node",
                       "ok": status == "running", "detail": f"{node}: {status}",
                       "fix": "" if status == "running" else
                       "buildfleet builder create" if status == "missing" else "buildfleet configure, then buildfleet builder create"})
    ok = all(c["ok"] for c in checks)
    if args.json:
        console.print_json(json.dumps({"fleet": args.fleet, "ok": ok, "checks": checks}))
        return 0 if ok else 1
    table = Table(title=f"buildfleet doctor: fleet {args.fleet!r}")
    for column in ("node", "check", "", "detail", "fix"):
        table.add_column(column, overflow="fold")
    for c in checks:
        table.add_row(c["node"], c["check"], "[green]✓[/]" if c["ok"] else "[bold red]✗[/]", escape(c["detail"]),
                      escape(c["fix"]))
    console.print(table)
    console.print("all checks pass" if ok else f"[bold red]{sum(not c['ok'] for c in checks)} check(s) failed[/]")
    return 0 if ok else 1


def _builder_name(args: argparse.Namespace) -> str:
    return args.builder or f"buildfleet-{args.fleet}"


def _fleet_builder(args: argparse.Namespace, state: FleetState):
    from provisioning.builder.builder import Buildx, FleetBuilder
    # The docker-container driver reaches hosts through plain ssh: give it the fleet's config.
    env = {"PATH": f"{state.root / 'ssh-client'}:{os.environ.get('PATH', os.defpath)}"}
    return FleetBuilder(_builder_name(args), state.root / "builders", Buildx(env=env))


def _ensure_builder(args: argparse.Namespace, console: Console, state: FleetState) -> None:
    from provisioning.builder.nodes import DOCKER_CONTAINER, TLSFiles, desired_nodes
    inventory = _inventory(args, state)
    builder = _fleet_builder(args, state)
    if getattr(args, "driver", "remote") == DOCKER_CONTAINER:
        from provisioning.artifacts import LocalArtifacts
        from provisioning.builder import docker_container
        from provisioning.local.target import machine_arch
        with console.status("loading the BuildKit image into each host's Docker over SSH"):
            nodes = docker_container.prepare(builder.name, inventory, state, LocalArtifacts(args.artifacts),
                                             builder.buildx, machine_arch())
    else:
        nodes = desired_nodes(builder.name, inventory, TLSFiles.in_state(state.root / "tls"))
    changes = builder.ensure(nodes, use=getattr(args, "use", False))
    console.print(f"builder {builder.name!r}: " + ("; ".join(c.describe() for c in changes) if changes
                                                    else "no change: its nodes match the fleet"))


def _inventory(args: argparse.Namespace, state: FleetState):
    inventory = state.load_inventory()
    if inventory is None:
        raise BuildfleetError(f"fleet {args.fleet!r} has no inventory in {state.root}: run buildfleet up first")
    return inventory


def _cmd_builder(args: argparse.Namespace, console: Console) -> int:
    state = FleetState.for_fleet(args.fleet)
    builder = _fleet_builder(args, state)
    if args.action == "rm":
        removed = builder.remove()
        console.print(f"builder {builder.name!r} removed" if removed
                      else f"builder {builder.name!r}: buildfleet did not make it here; left as it is")
        return 0
    if args.action == "create":
        _ensure_builder(args, console, state)
    inventory = _inventory(args, state)
    inspected = builder.inspect(bootstrap=not args.no_bootstrap)
    if inspected is None:
        raise BuildfleetError(f"builder {builder.name!r} does not exist: run buildfleet builder create")
    modes = {p.platform: p.native for h in inventory.hosts for p in h.platforms}
    rows = [{"node": n.name, "endpoint": n.endpoint, "status": n.status, "buildkit": n.buildkit,
             "platforms": [{"platform": p, "native": modes.get(p, False)} for p in n.pinned]}
            for n in inspected.nodes]
    if args.json:
        console.print_json(json.dumps({"builder": builder.name, "driver": inspected.driver, "nodes": rows}))
        return 0
    table = Table(title=f"builder {builder.name!r} ({inspected.driver} driver)")
    for column in ("node", "endpoint", "status", "platforms"):
        table.add_column(column)
    for row in rows:
        platforms = ", ".join(f"{p['platform']} ({'native' if p['native'] else 'QEMU'})" for p in row["platforms"])
        table.add_row(row["node"], row["endpoint"], row["status"], platforms)
    console.print(table)
    return 0


def _cmd_sample(args: argparse.Namespace, console: Console) -> int:
    from provisioning.builder.preflight import check_emulation
    from provisioning.builder.sample import SampleSources, build_sample, time_each, verify_sample
    from provisioning.hosts.configure import connect
    state = FleetState.for_fleet(args.fleet)
    inventory = _inventory(args, state)
    platforms = [parse_platform(p.platform) for h in inventory.hosts for p in h.platforms]
    sources = SampleSources.from_artifacts(args.artifacts, platforms)
    check_emulation(inventory, lambda host: connect(host, state))
    tag = time.strftime("%Y%m%d-%H%M%S")
    buildx = _fleet_builder(args, state).buildx
    with console.status(f"building {len(platforms)} platforms through {_builder_name(args)}"):
        image, seconds = build_sample(buildx, _builder_name(args), inventory, sources, platforms, tag)
        each = time_each(buildx, _builder_name(args), sources, platforms) if args.time_each else {}
    results = verify_sample(inventory, tag, platforms)
    if args.json:
        console.print_json(json.dumps({"image": image, "seconds": seconds, "platforms": [
            {**r.__dict__, "seconds_alone": each.get(r.platform)} for r in results]}))
    else:
        table = Table(title=f"{image}: {len(platforms)} platforms in {seconds:.1f} s")
        for column in ("platform", "planned node", "runs", "uname -m", "program says", "ran on", "alone (s)", "check"):
            table.add_column(column)
        for r in results:
            table.add_row(r.platform, r.host, "native" if r.native else "QEMU", r.uname, r.program, r.ran_on,
                          f"{each[r.platform]:.2f}" if r.platform in each else "-",
                          "[green]ok[/]" if r.ok else f"[bold red]{escape(r.problem)}[/]")
        console.print(table)
    return 0 if all(r.ok for r in results) else 1


def _prices(settings: Settings, inventory) -> tuple[dict, str]:
    """host -> the catalog instance type it is priced as, and the note saying how."""
    from provisioning.catalog import PRICE_AS_OF, PRICE_SOURCE
    catalog = settings.catalog
    aws_plan = plan_fleet(settings)
    by_role = {h.role: aws_plan.instance_types[h.name] for h in aws_plan.hosts if h.name in aws_plan.instance_types}
    prices, stand_ins = {}, []
    for host in inventory.hosts:
        if host.instance_type:
            prices[host.name] = catalog.lookup(host.instance_type)
        elif host.role in by_role:
            prices[host.name] = by_role[host.role]
            stand_ins.append(f"{host.name} as {by_role[host.role].name}")
    note = f"Prices: {PRICE_SOURCE}, as of {PRICE_AS_OF}."
    if stand_ins:
        note += (" This fleet has no instance types, so each host is priced as the instance type the AWS plan "
                 f"gives its role ({', '.join(stand_ins)}): what these minutes would cost there, not a measurement "
                 "of those machines.")
    return prices, note


def _cmd_bench(args: argparse.Namespace, console: Console) -> int:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from provisioning.bench import report
    from provisioning.bench.runner import bench, host_builders
    from provisioning.bench.runs import WORKLOADS, plan_runs
    from provisioning.builder.nodes import TLSFiles
    from provisioning.builder.preflight import check_emulation
    from provisioning.builder.sample import SampleSources
    from provisioning.hosts.configure import connect
    from provisioning.platforms import parse_platforms
    state = FleetState.for_fleet(args.fleet)
    inventory = _inventory(args, state)
    placed = [p.platform for h in inventory.hosts for p in h.platforms]
    platforms = parse_platforms(args.platforms.split(",")) if args.platforms else parse_platforms(placed)
    for platform in platforms:
        if str(platform) not in placed:
            raise BuildfleetError(f"{platform} is not planned on fleet {args.fleet!r} (planned: {', '.join(placed)})")
    workloads = args.workload or list(WORKLOADS)
    runs = plan_runs(inventory, platforms, workloads)
    sources = SampleSources.from_artifacts(args.artifacts, parse_platforms(r.platform for r in runs))
    check_emulation(inventory, lambda host: connect(host, state))
    prices, price_note = _prices(_settings(args, inventory.target), inventory)
    buildx = _fleet_builder(args, state).buildx
    progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                        TimeElapsedColumn(), console=Console(stderr=True), transient=args.json)
    with progress, host_builders(_builder_name(args), inventory, TLSFiles.in_state(state.root / "tls"), runs,
                                 state.root / "builders", buildx) as builders:
        task = progress.add_task("bench", total=len(runs))

        def step(run, index):
            mode = "native" if run.native else "QEMU"
            progress.update(task, completed=index,
                            description=f"{run.workload} {run.platform} on {run.host} ({mode}) x{args.repeats}")
        measured = bench(buildx, builders, runs, sources, args.repeats, step)
        progress.update(task, completed=len(runs), description="bench done")
    table = report.rows(measured, {h.name: h.arch for h in inventory.hosts}, prices)
    title = (f"buildfleet bench: fleet {args.fleet!r} ({inventory.target}), {args.repeats} "
             f"run{'s' if args.repeats > 1 else ''} each")
    meta = {"fleet": args.fleet, "target": inventory.target, "repeats": args.repeats, "workloads": workloads,
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    files = report.write(args.output, table, measured, meta, title, price_note)
    wrong = report.disagreements(measured)
    if wrong:
        raise BuildfleetError("a workload computed a different result: " + "; ".join(wrong))
    if args.json:
        console.print_json(report.as_json(table, measured, {**meta, "price_note": price_note,
                                                            "files": {k: str(v) for k, v in files.items()}}))
        return 0
    console.print(bench_table(table, title))
    console.print("penalty: QEMU median / the native median it is compared with (measured). own CPU: the emulation "
                  "host runs this platform natively, binfmt cannot emulate it there. $ / build: catalog price. "
                  + price_note, highlight=False)
    console.print("written: " + ", ".join(str(f) for f in files.values()), highlight=False)
    return 0


def bench_table(rows, title: str) -> Table:
    table = Table(title=title)
    for column in ("workload", "platform", "node", "runs", "median s", "min s", "penalty", "vs native", "build s",
                   "$ / build"):
        table.add_column(column, justify="right" if column in ("median s", "min s", "penalty", "build s", "$ / build")
                         else "left")
    for r in rows:
        mode = r.mode + (" (own CPU)" if r.note.startswith("the emulation host's own") else
                         " (baseline)" if r.note else "")
        table.add_row(r.workload, r.platform, r.host if r.placed else f"{r.host} (extra)", mode, f"{r.median_s:.2f}",
                      f"{r.min_s:.2f}", f"{r.penalty}x" if r.penalty is not None else "-", r.baseline or "-",
                      f"{r.build_median_s:.2f}", f"${r.usd_per_build:.5f}" if r.usd_per_build is not None else "-")
    return table


def _cmd_cost(args: argparse.Namespace, console: Console) -> int:
    from provisioning.cost import HOURS_PER_MONTH, fleet_cost
    settings = _settings(args, "aws")
    cost = fleet_cost(plan_fleet(settings), args.spot_discount)
    if args.json:
        console.print_json(json.dumps(cost.to_dict()))
        return 0
    table = Table(title="buildfleet cost: the planned AWS fleet (catalog list prices)")
    for column in ("host", "instance type", "vCPU", "$/h on-demand", "$/month on-demand", "$/h spot (estimate)"):
        table.add_column(column, justify="left" if column in ("host", "instance type") else "right")
    for h in cost.hosts:
        table.add_row(h.host, h.instance_type, str(h.vcpu), f"{h.usd_per_hour:.4f}",
                      f"{cost.per_month(h.usd_per_hour):.2f}", f"{h.spot_usd_per_hour:.4f}")
    table.add_row("fleet", "", str(sum(h.vcpu for h in cost.hosts)), f"{cost.usd_per_hour:.4f}",
                  f"{cost.per_month(cost.usd_per_hour):.2f}", f"{cost.spot_usd_per_hour:.4f}", style="bold")
    console.print(table)
    sources = sorted({f"{h.price_source}, as of {h.price_as_of}" for h in cost.hosts})
    console.print(f"On-demand: {'; '.join(sources)}. A month is {HOURS_PER_MONTH} h. Spot: on-demand less "
                  f"{args.spot_discount:.0%} (--spot-discount), an estimate: spot prices move; "
                  f"{'the fleet is configured to run on spot' if settings.spot else 'set buildfleet:spot to use it'}.",
                  highlight=False)
    hosted = Table(title="hosted CI per-minute prices to compare with")
    for column in ("runner", "vCPU", "$/minute", "$/hour", "fleet hour = minutes of it", "source"):
        hosted.add_column(column)
    for rate in cost.hosted:
        hosted.add_row(rate.name, str(rate.vcpu), f"{rate.usd_per_minute:.3f}", f"{rate.usd_per_minute * 60:.2f}",
                       f"{cost.usd_per_hour / rate.usd_per_minute:.0f}", f"{rate.source} ({rate.as_of})")
    console.print(hosted)
    return 0


def _cmd_ci_config(args: argparse.Namespace, console: Console) -> int:
    from provisioning.builder import ciconfig
    from provisioning.builder.nodes import TLSFiles, desired_nodes
    state = FleetState.for_fleet(args.fleet)
    inventory = _inventory(args, state)
    tls = TLSFiles.in_state(state.root / "tls")
    nodes = desired_nodes(_builder_name(args), inventory, tls)
    platforms = [p.platform for h in inventory.hosts for p in h.platforms]
    secrets = ciconfig.secret_files(str(tls.ca), str(tls.cert), str(tls.key))
    rendered = {
        "github": lambda: ciconfig.github_actions(_builder_name(args), nodes),
        "circleci": lambda: ciconfig.circleci(_builder_name(args), nodes, platforms),
        "shell": lambda: ciconfig.shell_script(_builder_name(args), nodes, platforms),
    }[args.format]()
    if args.json:
        console.print_json(json.dumps({"format": args.format, "config": rendered, "secrets": secrets}))
        return 0
    print(rendered, end="")  # plain, so it can be piped into a file or a shell
    print("\n# secrets to create (name: file whose content is the value):", file=sys.stderr)
    for name, path in secrets.items():
        print(f"#   {name}: {path}", file=sys.stderr)
    return 0


def _cmd_down(args: argparse.Namespace, console: Console) -> int:
    state = FleetState.for_fleet(args.fleet)
    for record in sorted((state.root / "builders").glob("*.json")):  # every builder made for this fleet
        args.builder = record.stem
        if _fleet_builder(args, state).remove():
            console.print(f"builder {record.stem}")
    inventory = state.load_inventory()
    if (inventory is not None and inventory.target == "aws") or args.target == "aws":
        target = _aws_target(args, state)
        console.print(f"pulumi destroy: stack {target.stack!r}")
        target.down(_pulumi_output(console))
        shutil.rmtree(state.root, ignore_errors=True)
        console.print(f"stack {target.stack!r} destroyed; state {state.root} removed")
        return 0
    if inventory is not None and inventory.target == "static":
        # the hosts were there before buildfleet and stay; only its local files go
        shutil.rmtree(state.root)
        console.print(f"state {state.root} (the static hosts themselves are left as they are)")
        return 0
    removed = _local_target(args).down()
    console.print("\n".join(removed) if removed else f"fleet {args.fleet!r}: nothing to remove")
    return 0


def _cmd_plan(args: argparse.Namespace, console: Console) -> int:
    plan = _plan_for(_settings(args, args.target), args.target)
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
    plan.add_argument("--target", choices=("aws", "local"), default="aws",
                      help="plan for AWS instance types (default) or for hosts on this machine")
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")
    plan.set_defaults(handler=_cmd_plan)

    up = commands.add_parser("up", help="create the fleet's hosts and configure them",
                             description="Create the hosts (local: containers on this machine's Docker engine), "
                                         "then configure Docker, buildx, QEMU/binfmt and buildkitd on each.")
    up.add_argument("--target", choices=("local", "aws", "static"), default="local",
                    help="local: containers on this machine (default); aws: the Pulumi program through the "
                         "Automation API (stack --stack, default the fleet name; needs the Pulumi CLI and AWS "
                         "credentials); static: hosts listed in --inventory")
    up.add_argument("--inventory", type=Path, metavar="FILE", help="the static target's YAML host list")
    up.add_argument("--ssh-key", type=Path, metavar="FILE",
                    help="aws: private key matching buildfleet:sshPublicKey (unset: the fleet's own key is used)")
    up.add_argument("--wait-timeout", type=_positive, default=900, metavar="SECONDS",
                    help="aws: how long to wait for SSH and cloud-init on new hosts (default 900)")
    _add_config_options(up)
    _add_fleet_options(up)
    up.set_defaults(handler=_cmd_up)

    configure = commands.add_parser("configure", help="(re)configure the fleet's hosts; changes only what differs",
                                    description="Read each host's facts over SSH and apply only what differs from "
                                                "the desired state; a configured fleet reports no change.")
    _add_config_options(configure)
    _add_fleet_options(configure)
    configure.set_defaults(handler=_cmd_configure)

    status = commands.add_parser(
        "status", aliases=["doctor"], help="show the fleet's hosts, endpoints and platforms (doctor: check them)",
        description="Show the fleet's hosts, endpoints, platforms, registry and builder. With --check, or as "
                    "'buildfleet doctor': check every host's Docker, privileged runtime, buildx, binfmt/QEMU and "
                    "buildkitd against the desired state without changing anything, and every builder node's "
                    "status; each check is ✓ or ✗ with the fix. Exit 1 when a check fails.")
    status.add_argument("--check", action="store_true", help="check each host and builder node (as doctor)")
    _add_config_options(status)
    _add_fleet_options(status)
    status.set_defaults(handler=_cmd_status)

    builder = commands.add_parser(
        "builder", help="show (or create, or remove) the fleet's multi-node buildx builder",
        description="The fleet's buildx builder: one node per host (remote driver: its buildkitd over mTLS; "
                    "docker-container driver: its Docker over ssh), each pinned to the "
                    "platforms the placement gave it. Without an action: its nodes, endpoints, platforms "
                    "(native or QEMU) and status. create: make or update it (idempotent). rm: remove it, only "
                    "if buildfleet made it.")
    builder.add_argument("action", nargs="?", choices=("show", "create", "rm"), default="show")
    builder.add_argument("--use", action="store_true", help="with create: make it the default builder")
    builder.add_argument("--driver", choices=("remote", "docker-container"), default="remote",
                         help="with create: remote (buildkitd over mTLS, default) or docker-container over ssh")
    builder.add_argument("--artifacts", type=Path, default=default_cache_dir(), metavar="DIR",
                         help="buildkit artifacts for the docker-container driver's image (default: %(default)s)")
    builder.add_argument("--no-bootstrap", action="store_true", help="show the nodes without starting them")
    _add_fleet_options(builder, configure_flags=False)
    builder.set_defaults(handler=_cmd_builder)

    sample = commands.add_parser(
        "sample", help="build the sample image for every platform through the builder and check where each ran",
        description="Build the sample through the builder: on each platform's node, natively or under QEMU, "
                    "gcc compiles a small C program, runs it and records uname -m and the node's addresses. "
                    "The image is pushed to the fleet's registry, read back, and each platform checked: the "
                    "program's ELF header and output, uname -m, and that it ran on the node the placement chose.")
    sample.add_argument("--time-each", action="store_true", help="also time each platform built alone")
    _add_fleet_options(sample)
    sample.set_defaults(handler=_cmd_sample)

    bench = commands.add_parser(
        "bench", help="time reference workloads natively and under QEMU; emulation penalty and $ per build",
        description="Build each reference workload for each platform on its planned node, and natively placed "
                    "platforms also under QEMU on the emulation host, without the build cache, --repeats times. "
                    "Reports min/median seconds, the emulation penalty (QEMU time / the same workload on a native "
                    "node: the platform's own where the fleet has one, else the QEMU host's own architecture on "
                    "the same machine) and $ per build from catalog prices. Writes bench.md, bench.json, "
                    "timings.csv and bench.png to --output. Workloads: " +
                    "; ".join(f"{name}: {text}" for name, text in WORKLOADS.items()) + ".")
    bench.add_argument("--workload", action="append", choices=tuple(WORKLOADS), metavar="NAME",
                       help=f"a workload to run (repeatable; default: all of {', '.join(WORKLOADS)})")
    bench.add_argument("--platforms", metavar="LIST", help="comma-separated platforms (default: every planned one)")
    bench.add_argument("--repeats", type=_positive, default=3, help="runs per workload, platform and node (default 3)")
    bench.add_argument("--output", type=Path, default=Path("buildfleet-bench"), metavar="DIR",
                       help="where the report files go (default: ./buildfleet-bench)")
    _add_config_options(bench)
    _add_fleet_options(bench)
    bench.set_defaults(handler=_cmd_bench)

    cost = commands.add_parser(
        "cost", help="the planned AWS fleet's $/hour and $/month, on-demand and spot, beside hosted CI prices",
        description="Price the fleet the configuration plans for AWS from the instance catalog: per host and in "
                    "all, per hour and per month (730 h), on-demand and spot. Spot is on-demand less "
                    "--spot-discount and labelled an estimate. Hosted CI per-minute prices (with their source "
                    "and date) are shown beside it. Reads configuration only; no cloud account needed.")
    cost.add_argument("--spot-discount", type=_fraction, default=0.6, metavar="FRACTION",
                      help="assumed spot discount off on-demand, 0 to below 1 (default 0.6: an estimate)")
    cost.add_argument("--json", action="store_true", help="print the figures as JSON")
    _add_config_options(cost)
    cost.set_defaults(handler=_cmd_cost)

    ci = commands.add_parser(
        "ci-config", help="print what a CI job needs to use the builder (GitHub Actions, CircleCI, shell)",
        description="Render, from the live inventory, a docker/setup-buildx-action step, a CircleCI job or a "
                    "POSIX shell script that joins the fleet's builder with its remote nodes over mTLS, and list "
                    "the three secrets to create (CA, client certificate, client key) with the files holding them.")
    ci.add_argument("--format", choices=("github", "circleci", "shell"), default="github")
    _add_fleet_options(ci, configure_flags=False)
    ci.set_defaults(handler=_cmd_ci_config)

    down = commands.add_parser(
        "down", help="remove every host, volume, network, builder and key the fleet made",
        description="Remove the fleet's builders, then its hosts (local: containers, volumes, network, registry; "
                    "aws: pulumi destroy on its stack; static: nothing on the hosts) and its local state.")
    down.add_argument("--target", choices=("local", "aws", "static"), default=None,
                      help="only needed for aws when the fleet's state is gone (default: from the fleet's state)")
    down.add_argument("--stack", metavar="NAME", help="aws: the stack (default: the one up used, else the fleet name)")
    down.add_argument("--project-dir", metavar="DIR", type=Path, default=Path.cwd(),
                      help="aws: directory holding Pulumi.yaml (default: current)")
    _add_fleet_options(down, configure_flags=False)
    down.set_defaults(handler=_cmd_down)
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 0 and below 1, not {value}")
    return value


def _add_fleet_options(parser: argparse.ArgumentParser, configure_flags: bool = True) -> None:
    group = parser.add_argument_group("fleet")
    group.add_argument("--fleet", default="default", metavar="NAME",
                       help="fleet name: keeps several fleets apart (default: default)")
    group.add_argument("--cache-dir", type=Path, default=default_cache_dir(), metavar="DIR",
                       help="where host images are cached (default: %(default)s)")
    if configure_flags:
        group.add_argument("--artifacts", type=Path, default=default_cache_dir(), metavar="DIR",
                           help="buildx/buildkit artifact directory (default: %(default)s)")
        group.add_argument("--no-docker-upgrade", action="store_true",
                           help="refuse, instead of upgrading, a Docker older than 19.03")
    group.add_argument("--builder", metavar="NAME", help="buildx builder name (default: buildfleet-FLEET)")
    group.add_argument("--json", action="store_true", help="print results as JSON")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Piped output keeps full rows instead of folding at 80 columns.
    console = Console() if sys.stdout.isatty() else Console(width=int(os.environ.get("COLUMNS", "160")))
    try:
        return args.handler(args, console)
    except BuildfleetError as error:
        Console(stderr=True).print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
