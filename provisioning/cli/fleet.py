"""The fleet's life: plan, up (local, aws, static), configure, status and doctor, down."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from provisioning.cli.build import ensure_builder, wait_for_pools
from provisioning.cli.common import (
    builder_name,
    config_sources,
    configure_options,
    described_settings,
    explicit_config,
    fleet_artifacts,
    fleet_builder,
    fleet_kind,
    fleet_settings,
    require_inventory,
    settings_note,
    target_for,
)
from provisioning.cli.progress import host_progress
from provisioning.errors import BuildfleetError, ConfigError
from provisioning.hosts.executor import FAILED, FleetReport
from provisioning.inventory import Inventory, InventoryHost
from provisioning.jsonstyle import Keyed, dumps
from provisioning.plan import Plan
from provisioning.settings import Settings
from provisioning.state import FleetState
from provisioning.targets import declared_features
from provisioning.targets.base import HostState

STATUS_STYLE = {"changed": "yellow", "unchanged": "green", "failed": "bold red", "skipped": "dim"}


def plan_table(plan: Plan, kind: str) -> Table:
    table = Table(title=f"buildfleet plan ({kind}): which host builds each platform")
    for column in ("platform", "host", "role", "instance type", "runs"):
        table.add_column(column)
    members = {**{h.name: (h.name,) for h in plan.hosts}, **plan.pools}  # a pool builds as one unit
    by_name = {h.name: h for h in plan.hosts}
    for a in plan.placement.assignments:
        first = by_name[members[a.host][0]]
        host = a.host if a.host == first.name else f"{a.host} ({', '.join(members[a.host])})"
        runs = "native" if a.native else "QEMU (emulated)"
        instance_type = plan.instance_types.get(first.name)
        table.add_row(str(a.platform), host, first.role, instance_type.name if instance_type else "-", runs)
    return table


def report_table(report: FleetReport) -> Table:
    table = Table(title="buildfleet configure: per host, per step")
    for column in ("host", "step", "result", "s", "detail"):
        table.add_column(column, overflow="fold")
    for host in report.hosts:
        for step in host.steps:
            detail = step.detail
            if step.status == FAILED and step.command:
                detail += f"\n$ {step.command}\nexit {step.exit_code}: {step.stderr_tail}"
            table.add_row(
                step.host,
                step.step,
                f"[{STATUS_STYLE[step.status]}]{step.status}[/]",
                f"{step.seconds:.1f}",
                escape(detail),
            )
    return table


def print_report(console: Console, report: FleetReport, as_json: bool) -> int:
    if as_json:
        console.print_json(
            dumps(
                {
                    "ok": report.ok,
                    "changes": report.changes,
                    "hosts": [{"host": h.host, "steps": [s.__dict__ for s in h.steps]} for h in report.hosts],
                }
            )
        )
    else:
        console.print(report_table(report))
        summary = (
            f"{report.changes} step(s) changed" if report.changes else "nothing to change: the fleet is configured"
        )
        console.print(summary if report.ok else f"[bold red]{len(report.failures())} step(s) failed[/]")
    return 0 if report.ok else 1


def run_configure(
    args: argparse.Namespace,
    state: FleetState,
    settings: Settings,
    check_only: bool = False,
    progress=lambda host, step, done, total: None,
):
    from provisioning.hosts.configure import configure

    options = configure_options(args, settings)
    artifacts = fleet_artifacts(args, settings)
    return configure(require_inventory(args, state), state, artifacts, options, check_only, progress)


def configure_fleet(args: argparse.Namespace, console: Console, state: FleetState, settings: Settings) -> int:
    tasks: dict[str, int] = {}
    with host_progress(console) as shown:
        for host in require_inventory(args, state).hosts:
            tasks[host.name] = shown.add_task("connect", host=host.name, total=None)

        def progress(host: str, step: str, done: int, total: int) -> None:
            finished = "done" if done == total else "failed"
            shown.update(tasks[host], description=step or finished, completed=done, total=total)
            if not step:
                shown.stop_task(tasks[host])  # freeze its elapsed time at the host's own finish

        report = run_configure(args, state, settings, progress=progress)
    return print_report(console, report, args.json)


def cmd_plan(args: argparse.Namespace, console: Console) -> int:
    state = FleetState.for_fleet(args.fleet)
    target = target_for(args, fleet_kind(args, state, default="aws"))
    plan = target.plan(described_settings(args, state, target))
    Console(stderr=True).print(settings_note(args, state, target), highlight=False, soft_wrap=True)
    if args.json:
        console.print_json(dumps({**plan.to_dict(), "target": target.kind}))
    else:
        console.print(plan_table(plan, target.kind))
        if plan.note:
            console.print(plan.note, highlight=False)
    return 0


def cmd_up(args: argparse.Namespace, console: Console) -> int:
    state = FleetState.for_fleet(args.fleet)
    kind = fleet_kind(args, state, default="local")
    target = target_for(args, kind, console, creating=True)
    settings = target.settings()
    read = config_sources(args).read(getattr(target, "stack", None) or args.stack)
    Console(stderr=True).print(read, highlight=False, soft_wrap=True)
    # A line, not a spinner: targets stream their own progress (Pulumi's among it) meanwhile.
    console.print(f"{kind}: bringing up the fleet's hosts")
    inventory = target.up(settings)
    state.save_settings(settings.values)  # what configure, doctor and bench use from now on
    console.print(f"fleet {args.fleet!r} ({inventory.target}): {', '.join(h.name for h in inventory.hosts)} up")
    status = configure_fleet(args, console, state, settings)
    if status == 0:
        ensure_builder(args, console, state)
    return status


def cmd_configure(args: argparse.Namespace, console: Console) -> int:
    state = FleetState.for_fleet(args.fleet)
    return configure_fleet(args, console, state, fleet_settings(args, state, require_inventory(args, state)))


def cmd_rotate_certs(args: argparse.Namespace, console: Console) -> int:
    from provisioning.certs import FleetCA

    state = FleetState.for_fleet(args.fleet)
    inventory = require_inventory(args, state)
    settings = fleet_settings(args, state, inventory)
    FleetCA(state.root / "tls").renew_authority()
    console.print("new fleet CA and client certificate; each host gets a new server certificate and restarts buildkitd")
    status = configure_fleet(args, console, state, settings)
    if status == 0 and inventory.pools and inventory.features.balancers_here:
        # HAProxy checks the members with the CA and client certificate it loaded at start:
        # up starts it again with the new ones (an NLB's TCP checks hold no certificate)
        target_for(args, inventory.target, console).up(settings)
        wait_for_pools(console, state, inventory)
    console.print(
        "every host serves the new certificates; the builder reads the new client files on its next command. "
        "CI jobs hold copies of the old ones: run buildfleet ci-config again and update their secrets."
        if status == 0
        else "[bold red]some hosts still have the old certificates:[/] fix what is named above, then configure"
    )
    return status


def cmd_wake(args: argparse.Namespace, console: Console) -> int:
    """Start what idle stop powered off, point the builder at where the hosts answer now, and
    wait until every buildkitd serves the fleet's client certificate."""
    from provisioning.certs import TLSFiles
    from provisioning.remote.wait import BuildkitdEndpoint, wait_for_buildkitd

    state = FleetState.for_fleet(args.fleet)
    inventory = require_inventory(args, state)
    target = target_for(args, inventory.target, console)
    start = time.monotonic()
    console.print(f"{inventory.target}: starting the fleet's stopped hosts")
    woken = target.wake(fleet_settings(args, state, inventory))
    builder = fleet_builder(args, state)
    existing = builder.inspect() if builder.owned() else None
    if existing is not None:  # new ports or addresses: the same nodes, moved
        args.driver = existing.driver
        ensure_builder(args, console, state)
    client = TLSFiles.in_state(state.root / "tls")
    endpoints = [BuildkitdEndpoint.of_host(h) for h in woken.hosts if h.platforms]
    wait_for_buildkitd(endpoints + [BuildkitdEndpoint.of_pool(p) for p in woken.pools], client, args.wait_timeout)
    console.print(f"woke {len(woken.hosts)} host(s) in {time.monotonic() - start:.1f} s: buildkitd answers on each")
    return 0


def cmd_status(args: argparse.Namespace, console: Console) -> int:
    if getattr(args, "preflight", False):
        return preflight(args, console)
    if explicit_config(args):
        Console(stderr=True).print(
            "note: --set, --config and --stack are read by doctor --preflight only; the fleet is checked against "
            "the settings up kept (run up with them to change it)",
            highlight=False,
        )
    if args.check or args.command == "doctor":
        return doctor(args, console)
    state = FleetState.for_fleet(args.fleet)
    inventory = state.load_inventory(declared_features)
    resources = target_for(args, fleet_kind(args, state, default="local")).status()
    builder = builder_name(args) if fleet_builder(args, state).owned() else None
    idle = idle_times(state, inventory, resources) if inventory else {}
    if args.json:
        console.print_json(
            dumps(
                {
                    "fleet": args.fleet,
                    "inventory": inventory.to_dict() if inventory else None,
                    "registry": inventory.registry if inventory else None,
                    "builder": builder,
                    "resources": [r.__dict__ for r in resources],
                    "idle_seconds": Keyed(idle),
                }
            )
        )
        return 0
    if inventory is None:
        console.print(f"fleet {args.fleet!r} is not up")
        return 0
    power = {r.host: r.state for r in resources}
    table = Table(title=f"fleet {args.fleet!r} ({inventory.target})")
    for column in ("host", "role", "arch", "power", "idle", "ssh", "buildkitd", "platforms"):
        table.add_column(column)
    for host in inventory.hosts:
        platforms = ", ".join(f"{p.platform}{'' if p.native else ' (QEMU)'}" for p in host.platforms)
        seconds = idle.get(host.name)
        table.add_row(
            host.name,
            host.role,
            host.arch,
            power.get(host.name, "?"),
            "-" if seconds is None else f"{seconds // 60} min {seconds % 60} s",
            f"{host.ssh_user}@{host.address}:{host.ssh_port}",
            f"{host.address}:{host.buildkitd_port}",
            platforms,
        )
    console.print(table)
    console.print(f"registry: {inventory.registry or '-'}    builder: {builder or '- (buildfleet builder create)'}")
    return 0


def idle_times(state: FleetState, inventory: Inventory, resources: list[HostState]) -> dict[str, int | None]:
    """Seconds each running host has gone unused, as its idle watcher counts them (None: the
    host is off, has no watcher, or did not answer)."""
    from provisioning.remote.facts import IdleSeconds, gather
    from provisioning.remote.fanout import fan_out
    from provisioning.remote.ssh import connect

    running = {r.host for r in resources if r.state == "running"}

    def one(host: InventoryHost) -> int | None:
        transport = connect(host, state)
        try:
            return gather(transport, {"idle": IdleSeconds()})["idle"]
        finally:
            transport.close()

    answered = fan_out([h for h in inventory.hosts if h.name in running], one).succeeded
    return {h.name: answered.get(h.name) for h in inventory.hosts}


def pool_member_checks(state: FleetState, inventory: Inventory) -> list[dict]:
    """Each pool member's own buildkitd over mTLS, past the balancer: a member that does not
    answer is one the balancer has dropped, and the pool builds on fewer hosts."""
    from provisioning.certs import TLSFiles
    from provisioning.remote.wait import BuildkitdEndpoint, buildkitd_answers

    tls = TLSFiles.in_state(state.root / "tls")
    checks = []
    for pool in inventory.pools:
        for member in inventory.members(pool.name):
            why = buildkitd_answers(BuildkitdEndpoint.of_host(member), tls)
            checks.append(
                {
                    "node": member.name,
                    "check": f"{pool.name} member",
                    "ok": not why,
                    "detail": why or f"buildkitd at {member.address}:{member.buildkitd_port} answers over mTLS",
                    "fix": "buildfleet up (a stopped host), then buildfleet configure" if why else "",
                }
            )
    return checks


def doctor(args: argparse.Namespace, console: Console) -> int:
    """Each host's steps checked (nothing changed) and each builder node's status, with the fix."""
    from provisioning.builder.nodes import node_name
    from provisioning.hosts.executor import DRIFT, UNCHANGED

    state = FleetState.for_fleet(args.fleet)
    inventory = require_inventory(args, state)
    with console.status(f"checking {len(inventory.hosts)} host(s) and the builder"):
        report = run_configure(args, state, fleet_settings(args, state, inventory), check_only=True)
        inspected = fleet_builder(args, state).inspect(bootstrap=True)
    checks = []
    for host in report.hosts:
        for step in host.steps:
            fix = {UNCHANGED: "", DRIFT: f"buildfleet configure (it would: {step.detail})"}.get(
                step.status, "see the detail; then buildfleet configure"
            )
            checks.append(
                {
                    "node": step.host,
                    "check": step.step,
                    "ok": step.status == UNCHANGED,
                    "detail": step.detail,
                    "fix": fix,
                }
            )
            if step.warning:  # as configured, but the host has something to act on that configure cannot change
                checks.append(
                    {"node": step.host, "check": "advisory", "ok": False, "warning": True, "detail": step.warning}
                    | {"fix": "the detail says how; buildfleet configure does not change it"}
                )
    found = {n.name: n.status for n in inspected.nodes} if inspected else {}
    for unit in sorted({h.node for h in inventory.hosts if h.platforms}):  # a pool is one node
        node = node_name(builder_name(args), unit)
        status = found.get(node, "missing")
        checks.append(
            {
                "node": unit,
                "check": "builder node",
                "ok": status == "running",
                "detail": f"{node}: {status}",
                "fix": ""
                if status == "running"
                else "buildfleet builder create"
                if status == "missing"
                else "buildfleet configure, then buildfleet builder create",
            }
        )
    checks.extend(pool_member_checks(state, inventory))
    checks.extend(certificate_checks(state))
    return show_checks(console, f"buildfleet doctor: fleet {args.fleet!r}", {"fleet": args.fleet}, checks, args.json)


def show_checks(console: Console, title: str, about: dict, checks: list[dict], as_json: bool) -> int:
    """Checks as a ✓/✗/! table (or JSON): exit 1 when one failed; a warning does not fail."""
    failed = [c for c in checks if not c["ok"] and not c.get("warning")]
    warnings = [c for c in checks if c.get("warning")]
    ok = not failed
    if as_json:
        console.print_json(dumps({**about, "ok": ok, "checks": checks}))
        return 0 if ok else 1
    table = Table(title=title)
    for column in ("node", "check", "", "detail", "fix"):
        table.add_column(column, overflow="fold")
    for c in checks:
        mark = "[green]✓[/]" if c["ok"] else "[yellow]![/]" if c.get("warning") else "[bold red]✗[/]"
        table.add_row(c["node"], c["check"], mark, escape(c["detail"]), escape(c["fix"]))
    console.print(table)
    console.print(
        ("all checks pass" if ok else f"[bold red]{len(failed)} check(s) failed[/]")
        + (f"; [yellow]{len(warnings)} warning(s)[/]" if warnings else "")
    )
    return 0 if ok else 1


def preflight(args: argparse.Namespace, console: Console) -> int:
    """What this machine needs before up, for the target the fleet has (or --target names),
    touching no host: Python and packages, the target's own tools and credentials, the host files."""
    from provisioning.artifacts.source import artifact_checks
    from provisioning.checks import failed
    from provisioning.targets.preflight import python_checks

    state = FleetState.for_fleet(args.fleet)
    kind = fleet_kind(args, state, default="local")
    target = target_for(args, kind)
    settings = described_settings(args, state, target)
    checks = [*python_checks(), *target.preflight(settings)]
    try:
        arches = [h.arch for h in target.plan(settings).hosts]
    except BuildfleetError as error:
        checks.append(failed("this machine", "plan", str(error), "fix the configuration it names"))
        arches = []
    project = getattr(args, "project_dir", None) or Path.cwd()
    checks += artifact_checks(settings.artifact_source, args.artifacts, project, settings.artifact_mirror, arches)
    title = f"buildfleet doctor --preflight: target {kind} on this machine"
    return show_checks(console, title, {"fleet": args.fleet, "target": kind}, [c.to_dict() for c in checks], args.json)


def certificate_checks(state: FleetState) -> list[dict]:
    """Each certificate's expiry and issuer, with how to renew it."""
    import datetime

    from provisioning.certs import certificate_status

    tls = state.root / "tls"
    checks = []
    for cert in certificate_status(tls, datetime.datetime.now(datetime.timezone.utc)):
        if cert.name.startswith("hosts/"):
            fix = f"remove {tls / cert.name}, then buildfleet configure (issues it again, restarts that buildkitd)"
        else:  # the CA or the client: every certificate goes with it
            fix = f"remove {tls}, then buildfleet configure, buildfleet builder rm and buildfleet builder create"
        node = cert.name.removeprefix("hosts/")  # ca, client, or the host's name
        fix = "" if cert.ok else fix
        checks.append({"node": node, "check": "certificate", "ok": cert.ok, "detail": cert.describe(), "fix": fix})
    return checks


def cmd_down(args: argparse.Namespace, console: Console) -> int:
    state = FleetState.for_fleet(args.fleet)
    kind = fleet_kind(args, state, default="local")  # a wrong --target is refused before anything goes
    try:
        state.load_inventory(declared_features)
    except ConfigError as damaged:  # down must still take away what up made
        console.print(f"[yellow]warning:[/] {escape(str(damaged))}; taking the fleet down by its recorded target")
    for record in sorted((state.root / "builders").glob("*.json")):  # every builder made for this fleet
        args.builder = record.stem
        if fleet_builder(args, state).remove():
            console.print(f"builder {record.stem}")
    removed = target_for(args, kind, console).down()
    if state.remove():
        removed.append(f"state {state.root}")
    console.print("\n".join(removed) if removed else f"fleet {args.fleet!r}: nothing to remove")
    return 0
