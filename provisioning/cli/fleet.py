"""The fleet's life: plan, up (local, aws, static), configure, status and doctor, down."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from provisioning.checks import Check
from provisioning.cli.context import Fleet
from provisioning.cli.nodes import awake, ensure_builder, refresh_builder, wait_for_pools, wake_fleet
from provisioning.cli.options import (
    add_config_options,
    add_fleet_name,
    add_fleet_options,
    add_project_dir,
    add_yes,
    positive,
)
from provisioning.cli.progress import host_progress
from provisioning.errors import BuildfleetError, ConfigError
from provisioning.hosts.executor import FAILED, FleetReport
from provisioning.inventory import Inventory, InventoryHost
from provisioning.jsonstyle import Keyed, dumps
from provisioning.plan import Plan
from provisioning.settings import Settings
from provisioning.state import FleetState
from provisioning.targets import KINDS, declared_features
from provisioning.targets.base import HostState, SharesMachineBinfmt, settings_stack

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
    fleet: Fleet,
    settings: Settings,
    check_only: bool = False,
    progress=lambda host, step, done, total: None,
    waiting=lambda host, what: None,
    inventory: Inventory | None = None,
):
    """Configure (or only check) the fleet's hosts, or the ``inventory`` given, one part of it."""
    from provisioning.hosts.configure import configure

    options = fleet.configure_options(settings)
    inventory = inventory or fleet.inventory()
    rolling = fleet.rolling(inventory, waiting)
    return configure(inventory, fleet.state, fleet.artifacts(settings), options, check_only, progress, rolling)


def configure_fleet(fleet: Fleet, settings: Settings) -> int:
    awake(fleet, "to configure it")
    tasks: dict[str, int] = {}
    with host_progress(fleet.console) as shown:
        for host in fleet.inventory().hosts:
            tasks[host.name] = shown.add_task("connect", host=host.name, total=None)

        def progress(host: str, step: str, done: int, total: int) -> None:
            finished = "done" if done == total else "failed"
            shown.update(tasks[host], description=step or finished, completed=done, total=total)
            if not step:
                shown.stop_task(tasks[host])  # freeze its elapsed time at the host's own finish

        def waiting(host: str, what: str) -> None:  # a restart's turn and drain (see hosts.rolling)
            shown.update(tasks[host], description=f"buildkitd: {what}")

        report = run_configure(fleet, settings, progress=progress, waiting=waiting)
    return print_report(fleet.console, report, fleet.options.json)


def cmd_plan(fleet: Fleet, args: argparse.Namespace) -> int:
    console = fleet.console
    target = fleet.target(fleet.kind(default="aws"))
    plan = target.plan(fleet.described_settings(target))
    Console(stderr=True).print(fleet.settings_note(target), highlight=False, soft_wrap=True)
    if args.json:
        console.print_json(dumps({**plan.to_dict(), "target": target.kind}))
    else:
        console.print(plan_table(plan, target.kind))
        if plan.note:
            console.print(plan.note, highlight=False)
    return 0


def cmd_up(fleet: Fleet, args: argparse.Namespace) -> int:
    console = fleet.console
    kind = fleet.kind(default="local")
    target = fleet.target(kind, creating=True, progress=True)
    settings = target.settings()
    read = fleet.sources.read(settings_stack(target, fleet.sources.stack))
    Console(stderr=True).print(read, highlight=False, soft_wrap=True)
    # A line, not a spinner: targets stream their own progress (Pulumi's among it) meanwhile.
    console.print(f"{kind}: bringing up the fleet's hosts")
    inventory = target.up(settings)
    # what configure, doctor and bench use from now on: the settings as up left them (the aws
    # target writes some into the stack: the fleet's id, the zone it chose)
    fleet.state.save_settings(target.settings().values)
    console.print(f"fleet {fleet.name!r} ({inventory.target}): {', '.join(h.name for h in inventory.hosts)} up")
    status = configure_fleet(fleet, settings)
    if status == 0:
        ensure_builder(fleet)
    return status


def cmd_configure(fleet: Fleet, args: argparse.Namespace) -> int:
    return configure_fleet(fleet, fleet.settings())


def cmd_rotate_certs(fleet: Fleet, args: argparse.Namespace) -> int:
    """A new fleet CA, rolled out so that no client and host ever disagree (see FleetCA): a
    failed run leaves the rotation under way, and the next run goes on from there."""
    from provisioning.certs import FleetCA

    console, settings = fleet.console, fleet.settings()
    ca = FleetCA(fleet.state.root / "tls")
    refresh_builder(fleet)  # nodes of an older buildfleet point at the CA's own file, not trust.pem
    if not ca.retiring():
        began = ca.begin_rotation()
        console.print(
            "new fleet CA: clients and hosts trust the old and the new one while each host gets a certificate "
            "of the new one, one host at a time"
            if began
            else "a rotation is under way: going on from where it stopped"
        )
        if roll_out(fleet, settings):
            return rotation_stopped(console)
        ca.switch_client()
        ca.retire_previous()
        console.print("the client presents a certificate of the new CA; the old CA is trusted no more")
    if roll_out(fleet, settings):
        return rotation_stopped(console)
    ca.end_rotation()
    console.print(
        "every host serves and trusts only the new CA; the builder reads the new client files on its next "
        "command. CI jobs hold copies of the old ones: run buildfleet ci-config again and update their secrets."
    )
    return 0


def roll_out(fleet: Fleet, settings: Settings) -> int:
    """A rotation phase: the balancers here load the files as they are now, then every host
    gets them, one at a time, drained; configure's status."""
    refresh_balancers(fleet, settings)
    return configure_fleet(fleet, settings)


def rotation_stopped(console: Console) -> int:
    console.print(
        "[bold red]the rotation stopped half-way[/] (every host still takes the client's certificate): fix "
        "what is named above, then run buildfleet rotate-certs again to go on"
    )
    return 1


def refresh_balancers(fleet: Fleet, settings: Settings) -> None:
    """The pools' balancers on this machine handed over to ones that load the certificates as
    they are now (they read them only at start; an NLB's TCP checks hold none)."""
    inventory = fleet.inventory()
    if inventory.pools and inventory.features.balancers_here:
        fleet.target(inventory.target, progress=True).up(settings)
        wait_for_pools(fleet, inventory)


def cmd_wake(fleet: Fleet, args: argparse.Namespace) -> int:
    console, start = fleet.console, time.monotonic()
    woken = wake_fleet(fleet)
    console.print(f"woke {len(woken.hosts)} host(s) in {time.monotonic() - start:.1f} s: buildkitd answers on each")
    return 0


def cmd_status(fleet: Fleet, args: argparse.Namespace) -> int:
    console = fleet.console
    if args.preflight:
        return preflight(fleet)
    if fleet.explicit_config():
        Console(stderr=True).print(
            "note: --set, --config and --stack are read by doctor --preflight only; the fleet is checked against "
            "the settings up kept (run up with them to change it)",
            highlight=False,
        )
    if args.check or args.command == "doctor":
        return doctor(fleet)
    inventory = fleet.state.load_inventory(declared_features)
    resources = fleet.target(fleet.kind(default="local")).status()
    builder = fleet.builder_name if fleet.builder().owned() else None
    idle = idle_times(fleet.state, inventory, resources) if inventory else {}
    if args.json:
        console.print_json(
            dumps(
                {
                    "fleet": fleet.name,
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
        console.print(f"fleet {fleet.name!r} is not up")
        return 0
    power = {r.host: r.state for r in resources}
    table = Table(title=f"fleet {fleet.name!r} ({inventory.target})")
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


def doctor(fleet: Fleet) -> int:
    """Each host's steps checked (nothing changed), each builder node's status, each pool member
    and certificate: the checks come from the stages they check, with the fix."""
    import datetime

    from provisioning.builder.checks import node_checks, pool_member_checks
    from provisioning.certs import TLSFiles, certificate_checks
    from provisioning.hosts.executor import report_checks

    console, tls = fleet.console, fleet.state.root / "tls"
    whole = fleet.inventory()
    sleeping = fleet.sleeping(whole)
    inventory = whole.without(sleeping)  # powered off is a state to report, not a failure
    with console.status(f"checking {len(inventory.hosts)} host(s) and the builder"):
        report = run_configure(fleet, fleet.settings(), check_only=True, inventory=inventory)
        inspected = fleet.builder().inspect(bootstrap=not sleeping)  # a bootstrap waits on every node, off ones too
    target = fleet.target(inventory.target)
    checks = [
        *(target.drop_stale_holds() if isinstance(target, SharesMachineBinfmt) else []),
        *(asleep_check(host) for host in sleeping),
        *report_checks(report),
        *node_checks(fleet.builder_name, inventory, inspected),
        *pool_member_checks(inventory, TLSFiles.in_state(tls)),
        *certificate_checks(tls, datetime.datetime.now(datetime.timezone.utc)),
    ]
    title = f"buildfleet doctor: fleet {fleet.name!r}"
    return show_checks(console, title, {"fleet": fleet.name}, checks, fleet.options.json)


def asleep_check(host: str) -> Check:
    return Check(
        host,
        "power",
        False,
        "stopped (idle): powered off, by idle stop or by hand; its other checks wait until it runs",
        "buildfleet wake (configure, sample and bench wake it themselves)",
        warning=True,
    )


def show_checks(console: Console, title: str, about: dict, checks: list[Check], as_json: bool) -> int:
    """Checks as a ✓/✗/! table (or JSON): exit 1 when one failed; a warning does not fail."""
    failed = [c for c in checks if not c.ok and not c.warning]
    warnings = [c for c in checks if c.warning]
    ok = not failed
    if as_json:
        console.print_json(dumps({**about, "ok": ok, "checks": [c.to_dict() for c in checks]}))
        return 0 if ok else 1
    table = Table(title=title)
    for column in ("node", "check", "", "detail", "fix"):
        table.add_column(column, overflow="fold")
    for c in checks:
        mark = "[green]✓[/]" if c.ok else "[yellow]![/]" if c.warning else "[bold red]✗[/]"
        table.add_row(c.node, c.check, mark, escape(c.detail), escape(c.fix))
    console.print(table)
    console.print(
        ("all checks pass" if ok else f"[bold red]{len(failed)} check(s) failed[/]")
        + (f"; [yellow]{len(warnings)} warning(s)[/]" if warnings else "")
    )
    return 0 if ok else 1


def preflight(fleet: Fleet) -> int:
    """What this machine needs before up, for the target the fleet has (or --target names),
    touching no host: Python and packages, the target's own tools and credentials, the host files."""
    from provisioning.artifacts.source import artifact_checks
    from provisioning.checks import failed
    from provisioning.targets.preflight import python_checks

    o = fleet.options
    kind = fleet.kind(default="local")
    target = fleet.target(kind)
    settings = fleet.described_settings(target)
    checks = [*python_checks(), *target.preflight(settings)]
    try:
        arches = [h.arch for h in target.plan(settings).hosts]
    except BuildfleetError as error:
        checks.append(failed("this machine", "plan", str(error), "fix the configuration it names"))
        arches = []
    checks += artifact_checks(settings.artifact_source, o.artifacts, o.project_dir, settings.artifact_mirror, arches)
    title = f"buildfleet doctor --preflight: target {kind} on this machine"
    about = {"fleet": fleet.name, "target": kind}
    return show_checks(fleet.console, title, about, checks, o.json)


def cmd_down(fleet: Fleet, args: argparse.Namespace) -> int:
    console, state = fleet.console, fleet.state
    kind = fleet.kind(default="local")  # a wrong --target is refused before anything goes
    try:
        state.load_inventory(declared_features)
    except ConfigError as damaged:  # down must still take away what up made
        console.print(f"[yellow]warning:[/] {escape(str(damaged))}; taking the fleet down by its recorded target")
    for record in sorted((state.root / "builders").glob("*.json")):  # every builder made for this fleet
        if fleet.builder(record.stem).remove():
            console.print(f"builder {record.stem}")
    removed = fleet.target(kind, progress=True).down()
    if state.remove():
        removed.append(f"state {state.root}")
    console.print("\n".join(removed) if removed else f"fleet {fleet.name!r}: nothing to remove")
    return 0


def add_plan(commands: argparse._SubParsersAction) -> None:
    """The plan: the placement a configuration leads to."""
    plan = commands.add_parser(
        "plan",
        help="show which host builds each platform, natively or under QEMU (no cloud account needed)",
        description="Print the placement the configuration leads to: for each platform, the host that "
        "builds it and whether natively or under QEMU. Reads configuration only.",
    )
    add_config_options(plan)
    plan.add_argument(
        "--target",
        choices=KINDS,
        default=None,
        help="a new fleet: plan for AWS instance types (default) or for hosts on this machine; "
        "an existing fleet is described as it was made (its target and settings)",
    )
    add_fleet_name(plan, help="the fleet to describe, if it exists (default: default)")
    plan.add_argument(
        "--inventory", type=Path, metavar="FILE", help="static: the YAML host list to check (nothing is contacted)"
    )
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")
    plan.set_defaults(handler=cmd_plan)


def add_up(commands: argparse._SubParsersAction) -> None:
    """The up: hosts made, configured and joined into the builder."""
    up = commands.add_parser(
        "up",
        help="create the fleet's hosts, configure them and make the builder",
        description="Create the hosts (local: containers on this machine's Docker engine; "
        "aws: pulumi up through the Automation API, then wait for SSH and "
        "cloud-init; static: hosts that exist), configure Docker, buildx, "
        "QEMU/binfmt and buildkitd on each, and make the fleet's buildx builder. "
        "Re-running finishes what a failed run left.",
    )
    up.add_argument(
        "--target",
        choices=KINDS,
        default=None,
        help="for a new fleet (an existing one keeps the target it was made with) -- local: containers "
        "on this machine (default); aws: the Pulumi program through the "
        "Automation API (stack --stack, default the fleet name; needs the Pulumi CLI and AWS "
        "credentials); static: hosts listed in --inventory; vm: the roles in buildfleet:vmRoles (default "
        "arm64) as full-system QEMU VMs on this machine, the rest containers",
    )
    up.add_argument("--inventory", type=Path, metavar="FILE", help="the static target's YAML host list")
    up.add_argument(
        "--ssh-key",
        type=Path,
        metavar="FILE",
        help="aws: private key matching buildfleet:sshPublicKey (unset: the fleet's own key is used)",
    )
    up.add_argument(
        "--wait-timeout",
        type=positive,
        default=900,
        metavar="SECONDS",
        help="aws: how long to wait for SSH and cloud-init on new hosts (default 900)",
    )
    add_yes(up, "aws: run pulumi up without asking after its preview")
    add_config_options(up)
    add_fleet_options(up)
    up.set_defaults(handler=cmd_up)


def add_configure(commands: argparse._SubParsersAction) -> None:
    """The configure: each host brought to the desired state."""
    configure = commands.add_parser(
        "configure",
        help="(re)configure the fleet's hosts; changes only what differs",
        description="Read each host's facts over SSH and apply only what differs from "
        "the desired state; a configured fleet reports no change.",
    )
    add_project_dir(configure)  # settings: the ones up kept for the fleet
    add_fleet_options(configure)
    configure.set_defaults(handler=cmd_configure)


def add_rotate_certs(commands: argparse._SubParsersAction) -> None:
    """The rotate-certs: new certificates for every host and client."""
    rotate = commands.add_parser(
        "rotate-certs",
        help="renew the fleet's CA, client and server certificates; hosts restart buildkitd once",
        description="Make a new fleet CA and client certificate, issue every host a new server certificate "
        "and restart its buildkitd with them (the only interruption). The builder reads the client "
        "files afresh on its next command; CI jobs hold copies: emit them again with ci-config.",
    )
    add_project_dir(rotate)  # settings: the ones up kept for the fleet
    add_fleet_options(rotate)
    rotate.set_defaults(handler=cmd_rotate_certs)


def add_wake(commands: argparse._SubParsersAction) -> None:
    """The wake: hosts idle stop powered off, started again."""
    wake = commands.add_parser(
        "wake",
        help="start the hosts idle stop powered off and wait until each buildkitd answers",
        description="Start every stopped host of the fleet (local: its container; vm: its VM), update the "
        "builder's nodes to where the hosts answer now, and wait until each buildkitd serves the fleet's "
        "client certificate; prints how long that took. CI runs it before a build (see ci-config).",
    )
    wake.add_argument(
        "--wait-timeout", type=positive, default=300, metavar="SECONDS", help="how long to wait (default: %(default)s)"
    )
    add_fleet_options(wake)
    wake.set_defaults(handler=cmd_wake)


def add_status_doctor(commands: argparse._SubParsersAction) -> None:
    """The status and doctor (one handler: doctor is status --check)."""
    status = commands.add_parser(
        "status",
        help="show the fleet's hosts, endpoints and platforms (--check, or doctor: check them)",
        description="Show the fleet's hosts, endpoints, platforms, registry and builder. With --check: as doctor.",
    )
    status.add_argument("--check", action="store_true", help="check each host and builder node (as doctor)")
    status.set_defaults(preflight=False)
    doctor = commands.add_parser(
        "doctor",
        help="check every host and builder node against the desired state, changing nothing",
        description="Check every host's Docker, privileged runtime, buildx, binfmt/QEMU, buildkitd, versions and "
        "cache against the desired state without changing anything, every builder node's status and each "
        "certificate's expiry; each check is ✓ or ✗ with the fix (! a warning). Exit 1 when a check fails.",
    )
    doctor.add_argument(
        "--preflight",
        action="store_true",
        help="instead: check this machine before up (Python, packages, the target's tools and credentials, host "
        "files), touching no host",
    )
    doctor.add_argument("--target", choices=KINDS, default=None, help="with --preflight, for a new fleet")
    doctor.add_argument("--inventory", type=Path, metavar="FILE", help="with --preflight --target static")
    doctor.set_defaults(check=True)
    for parser_ in (status, doctor):
        add_config_options(parser_)
        add_fleet_options(parser_)
        parser_.set_defaults(handler=cmd_status)


def add_down(commands: argparse._SubParsersAction) -> None:
    """The down: everything the fleet made, removed."""
    down = commands.add_parser(
        "down",
        help="remove every host, volume, network, builder and key the fleet made",
        description="Remove the fleet's builders, then its hosts (local: containers, volumes, network, registry; "
        "aws: pulumi destroy on its stack; static: nothing on the hosts) and its local state.",
    )
    down.add_argument(
        "--target",
        choices=KINDS,
        default=None,
        help="only needed for aws when the fleet's state is gone (default: the target the fleet was made with; "
        "another is refused)",
    )
    down.add_argument("--stack", metavar="NAME", help="aws: the stack (default: the one up used, else the fleet name)")
    add_project_dir(down, help="aws: directory holding Pulumi.yaml (default: current)")
    add_yes(down, "aws: run pulumi destroy without asking after its preview")
    add_fleet_options(down, configure_flags=False)
    down.set_defaults(handler=cmd_down)
