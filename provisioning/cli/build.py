"""The builder and what is built through it: builder, sample, ci-config."""

from __future__ import annotations

import argparse
import shlex
import sys
import time

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from provisioning.cli.common import builder_name, fleet_artifacts, fleet_builder, fleet_settings, require_inventory
from provisioning.errors import BuildfleetError
from provisioning.inventory import Inventory
from provisioning.jsonstyle import Keyed, dumps
from provisioning.platforms import parse_platform
from provisioning.state import FleetState


def ensure_builder(args: argparse.Namespace, console: Console, state: FleetState) -> None:
    from provisioning.builder.drivers import make_driver
    from provisioning.builder.nodes import REMOTE

    inventory = require_inventory(args, state)
    builder = fleet_builder(args, state)
    artifacts = fleet_artifacts(args, fleet_settings(args, state, inventory))
    driver = make_driver(getattr(args, "driver", REMOTE), artifacts, builder.buildx)
    with console.status(driver.preparing or f"{driver.name} driver: one node per host"):
        nodes = driver.nodes(builder.name, inventory, state)
    changes = builder.ensure(nodes, use=getattr(args, "use", False))
    console.print(
        f"builder {builder.name!r}: "
        + ("; ".join(c.describe() for c in changes) if changes else "no change: its nodes match the fleet")
    )
    if inventory.pools:
        wait_for_pools(console, state, inventory)


POOL_WAIT_SECONDS = 60


def wait_for_pools(console: Console, state: FleetState, inventory: Inventory) -> None:
    """Until each pool's balancer passes a build connection on: its health checks find a
    member only seconds after that member's buildkitd (re)started."""
    from provisioning.certs import TLSFiles
    from provisioning.remote.wait import BuildkitdEndpoint, wait_for_buildkitd

    pools = [BuildkitdEndpoint.of_pool(p) for p in inventory.pools]
    with console.status("waiting for the pools' balancers to find their members"):
        waited = wait_for_buildkitd(pools, TLSFiles.in_state(state.root / "tls"), POOL_WAIT_SECONDS)
    console.print("pools answer over mTLS: " + ", ".join(f"{name} ({s:.1f} s)" for name, s in waited.items()))


def cmd_builder(args: argparse.Namespace, console: Console) -> int:
    state = FleetState.for_fleet(args.fleet)
    builder = fleet_builder(args, state)
    if args.action == "rm":
        removed = builder.remove()
        console.print(
            f"builder {builder.name!r} removed"
            if removed
            else f"builder {builder.name!r}: buildfleet did not make it here; left as it is"
        )
        return 0
    if args.action == "create":
        ensure_builder(args, console, state)
    inventory = require_inventory(args, state)
    inspected = builder.inspect(bootstrap=not args.no_bootstrap)
    if inspected is None:
        raise BuildfleetError(f"builder {builder.name!r} does not exist: run buildfleet builder create")
    modes = {p.platform: p.native for h in inventory.hosts for p in h.platforms}
    rows = [
        {
            "node": n.name,
            "endpoint": n.endpoint,
            "status": n.status,
            "buildkit": n.buildkit,
            "platforms": [{"platform": p, "native": modes.get(p, False)} for p in n.pinned],
        }
        for n in inspected.nodes
    ]
    if args.json:
        console.print_json(dumps({"builder": builder.name, "driver": inspected.driver, "nodes": rows}))
        return 0
    table = Table(title=f"builder {builder.name!r} ({inspected.driver} driver)")
    for column in ("node", "endpoint", "status", "platforms"):
        table.add_column(column)
    for row in rows:
        platforms = ", ".join(f"{p['platform']} ({'native' if p['native'] else 'QEMU'})" for p in row["platforms"])
        table.add_row(row["node"], row["endpoint"], row["status"], platforms)
    console.print(table)
    return 0


def cmd_sample(args: argparse.Namespace, console: Console) -> int:
    from provisioning.builder.preflight import check_emulation
    from provisioning.builder.sample import SampleSources, build_sample, time_each, verify_sample
    from provisioning.remote.ssh import connect

    state = FleetState.for_fleet(args.fleet)
    inventory = require_inventory(args, state)
    platforms = [parse_platform(p) for p in inventory.platforms]
    sources = SampleSources.from_artifacts(args.artifacts, platforms)
    check_emulation(inventory, lambda host: connect(host, state))
    tag = time.strftime("%Y%m%d-%H%M%S")
    buildx = fleet_builder(args, state).buildx
    with console.status(f"building {len(platforms)} platforms through {builder_name(args)}"):
        image, seconds = build_sample(
            buildx, builder_name(args), inventory, sources, platforms, tag, args.registry_cache
        )
        each = time_each(buildx, builder_name(args), sources, platforms) if args.time_each else {}
    results = verify_sample(inventory, tag, platforms)
    if args.json:
        console.print_json(
            dumps(
                {
                    "image": image,
                    "seconds": seconds,
                    "platforms": [{**r.__dict__, "seconds_alone": each.get(r.platform)} for r in results],
                }
            )
        )
    else:
        table = Table(title=f"{image}: {len(platforms)} platforms in {seconds:.1f} s")
        for column in ("platform", "planned node", "runs", "uname -m", "program says", "ran on", "alone (s)", "check"):
            table.add_column(column)
        for r in results:
            table.add_row(
                r.platform,
                r.host,
                "native" if r.native else "QEMU",
                r.uname,
                r.program,
                r.ran_on,
                f"{each[r.platform]:.2f}" if r.platform in each else "-",
                "[green]ok[/]" if r.ok else f"[bold red]{escape(r.problem)}[/]",
            )
        console.print(table)
    return 0 if all(r.ok for r in results) else 1


def ci_wake(state: FleetState, inventory, settings):
    """What a CI job needs to wake an AWS fleet whose hosts stop when idle (None otherwise:
    local hosts are started where they run, static ones by their owner)."""
    from provisioning.builder.ciconfig import Wake

    stack = state.recorded_stack()
    if not inventory.features.wakes or not settings.idle_stop_minutes or stack is None:
        return None
    return Wake(stack, tuple((h.address, h.buildkitd_port) for h in inventory.hosts if h.platforms))


def cmd_ci_config(args: argparse.Namespace, console: Console) -> int:
    from provisioning.builder import ciconfig
    from provisioning.builder.nodes import TLSFiles, remote_nodes

    state = FleetState.for_fleet(args.fleet)
    inventory = require_inventory(args, state)
    tls = TLSFiles.in_state(state.root / "tls")
    nodes = remote_nodes(builder_name(args), inventory, tls)
    platforms = list(inventory.platforms)
    secrets = ciconfig.secret_files(str(tls.ca), str(tls.cert), str(tls.key))
    settings = fleet_settings(args, state, inventory)
    wake = ci_wake(state, inventory, settings)
    cache = shlex.quote(args.cache_repository) if args.cache_repository else ""
    hosted = ciconfig.hosted_runners_reach(inventory.features, settings.buildkitd_cidrs)
    rendered = {
        "github": lambda: ciconfig.github_actions(builder_name(args), nodes, wake, cache, hosted),
        "circleci": lambda: ciconfig.circleci(builder_name(args), nodes, platforms, wake, cache),
        "shell": lambda: ciconfig.shell_script(builder_name(args), nodes, platforms, wake),
    }[args.format]()
    note = ciconfig.reach_note(inventory.features, settings.allowed_cidrs, settings.buildkitd_cidrs)
    rendered = ciconfig.with_note(rendered, note)
    if args.json:
        payload = {
            "format": args.format,
            "config": rendered,
            "secrets": Keyed(secrets),
            "reach": note.removeprefix("# "),
        }
        console.print_json(dumps(payload))
        return 0
    print(rendered, end="")  # plain, so it can be piped into a file or a shell
    print("\n# secrets to create (name: file whose content is the value):", file=sys.stderr)
    for name, path in secrets.items():
        print(f"#   {name}: {path}", file=sys.stderr)
    if wake is not None:
        print(
            "# the wake step's AWS credentials: "
            + {
                "github": f"repository variables AWS_REGION and {ciconfig.WAKE_ROLE} (pulumi stack output "
                "wakeGithubRoleArn, made for buildfleet:wakeGithubRepositories)",
                "circleci": f"AWS_REGION and {ciconfig.WAKE_ROLE} (pulumi stack output wakeCircleciRoleArn, made "
                "for buildfleet:wakeCircleciProjectIds); the job's OIDC token does the rest",
            }.get(
                args.format,
                "AWS_REGION and credentials the stack's wakePolicy allows (for a CI with OIDC: "
                "AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE)",
            ),
            file=sys.stderr,
        )
    return 0
