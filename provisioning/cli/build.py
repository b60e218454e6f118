"""The builder and what is built through it: builder, sample, ci-config."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.table import Table

from provisioning.builder.drivers import DRIVERS
from provisioning.cli.context import Fleet
from provisioning.cli.nodes import awake, ensure_builder
from provisioning.cli.options import add_fleet_options, checked, default_cache_dir
from provisioning.errors import BuildfleetError, ConfigError
from provisioning.exchange.service import PATH
from provisioning.inventory import Inventory
from provisioning.jsonstyle import Keyed, dumps
from provisioning.names import check_client_name
from provisioning.platforms import parse_platform
from provisioning.settings import Settings
from provisioning.state import FleetState

if TYPE_CHECKING:
    from provisioning.builder.ciconfig import Exchange


def cmd_builder(fleet: Fleet, args: argparse.Namespace) -> int:
    console = fleet.console
    builder = fleet.builder()
    if args.action == "rm":
        removed = builder.remove()
        console.print(
            f"builder {builder.name!r} removed"
            if removed
            else f"builder {builder.name!r}: buildfleet did not make it here; left as it is"
        )
        return 0
    if args.action == "create":
        ensure_builder(fleet)
    inventory = fleet.inventory()
    inspected = builder.inspect(bootstrap=not args.no_bootstrap)
    if inspected is None:
        raise BuildfleetError(f"builder {builder.name!r} does not exist: run buildfleet builder create")
    modes = {p.platform: p.native for h in inventory.hosts for p in h.platforms}
    rows: list[dict[str, Any]] = [
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


def cmd_sample(fleet: Fleet, args: argparse.Namespace) -> int:
    from provisioning.builder.preflight import check_emulation
    from provisioning.builder.sample import SampleSources, build_sample, time_each, verify_sample
    from provisioning.remote.ssh import connect

    console, name = fleet.console, fleet.builder_name
    awake(fleet, "to build the sample", lock=True)
    inventory = fleet.inventory()
    platforms = [parse_platform(p) for p in inventory.platforms]
    sources = SampleSources.from_artifacts(fleet.options.artifacts, platforms)
    check_emulation(inventory, lambda host: connect(host, fleet.state))
    tag = time.strftime("%Y%m%d-%H%M%S")
    buildx = fleet.builder().buildx
    with console.status(f"building {len(platforms)} platforms through {name}"):
        image, seconds = build_sample(buildx, name, inventory, sources, platforms, tag, args.registry_cache)
        each = time_each(buildx, name, sources, platforms) if args.time_each else {}
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
    endpoints = tuple((h.address, h.buildkitd_port) for h in inventory.hosts if h.platforms)
    return Wake(stack, endpoints, settings.fleet_id)


def ci_exchange(fleet: Fleet, inventory: Inventory, settings: Settings, ca: Path) -> Exchange:
    """Where the fleet's jobs trade their OIDC token (ci-config --oidc): refused, naming what to
    do, until configure has the exchange running and its CA in the hosts' bundle."""
    from provisioning.builder.ciconfig import Exchange
    from provisioning.consumers import Consumers
    from provisioning.hosts.operations.exchange import CLIENT, ExchangeDesired

    desired = ExchangeDesired.of(settings, [h.name for h in inventory.hosts], fleet.name)
    if desired is None:
        raise ConfigError(
            "ci-config --oidc needs the token exchange: set buildfleet:exchangeGithubRepositories (or "
            "exchangeCircleciOrgId and exchangeCircleciProjectIds), then buildfleet configure"
        )
    if Consumers(fleet.state.root / "tls").trust_of(CLIENT) is None:
        raise BuildfleetError(
            f"the token exchange's CA is not in the hosts' bundle (client {CLIENT!r} missing or revoked): "
            "run buildfleet configure"
        )
    (host,) = [h for h in inventory.hosts if h.name == desired.host]
    if not host.exchange_port:
        raise BuildfleetError(
            f"{host.name} was made before it published the token exchange's port: buildfleet down and up, "
            "or name another host with buildfleet:exchangeHost"
        )
    address = f"[{host.address}]" if ":" in host.address else host.address
    url = f"https://{address}:{host.exchange_port}{PATH}"
    return Exchange(url, ca.read_text(), settings.exchange_audience)


def cmd_ci_config(fleet: Fleet, args: argparse.Namespace) -> int:
    from provisioning.builder import ciconfig
    from provisioning.builder.nodes import TLSFiles, remote_nodes

    console, name = fleet.console, fleet.builder_name
    inventory = fleet.inventory()
    tls = TLSFiles.in_state(fleet.state.root / "tls")
    if args.client:  # that consumer's own certificate, revocable alone (buildfleet client)
        from provisioning.consumers import Consumers

        tls = Consumers(fleet.state.root / "tls").files(args.client)
    nodes = remote_nodes(name, inventory, tls)
    platforms = list(inventory.platforms)
    settings = fleet.settings()
    exchange = ci_exchange(fleet, inventory, settings, tls.ca) if args.oidc else None
    secrets = {} if exchange else ciconfig.secret_files(str(tls.ca), str(tls.cert), str(tls.key))
    wake = ci_wake(fleet.state, inventory, settings)
    cache = shlex.quote(args.cache_repository) if args.cache_repository else ""
    hosted = ciconfig.hosted_runners_reach(inventory.features, settings.buildkitd_cidrs)
    token = (exchange, ciconfig.ANY_TOKEN) if exchange else None
    rendered = {
        "github": lambda: ciconfig.github_actions(name, nodes, wake, cache, hosted, exchange, platforms),
        "circleci": lambda: ciconfig.circleci(name, nodes, platforms, wake, cache, exchange),
        "shell": lambda: ciconfig.shell_script(name, nodes, platforms, wake, exchange=token),
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
    if secrets:
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


def add_builder(commands: argparse._SubParsersAction) -> None:
    """The builder: the fleet's multi-node buildx builder."""
    builder = commands.add_parser(
        "builder",
        help="show (or create, or remove) the fleet's multi-node buildx builder",
        description="The fleet's buildx builder: one node per host (remote driver: its buildkitd over mTLS; "
        "docker-container driver: its Docker over ssh), each pinned to the "
        "platforms the placement gave it. Without an action: its nodes, endpoints, platforms "
        "(native or QEMU) and status. create: make or update it (idempotent). rm: remove it, only "
        "if buildfleet made it.",
    )
    builder.add_argument("action", nargs="?", choices=("show", "create", "rm"), default="show")
    builder.add_argument("--use", action="store_true", help="with create: make it the default builder")
    builder.add_argument(
        "--driver",
        choices=tuple(DRIVERS),
        default="remote",
        help="with create: remote (buildkitd over mTLS, default) or docker-container over ssh",
    )
    builder.add_argument(
        "--artifacts",
        type=Path,
        default=default_cache_dir(),
        metavar="DIR",
        help="buildkit artifacts for the docker-container driver's image (default: %(default)s)",
    )
    builder.add_argument("--no-bootstrap", action="store_true", help="show the nodes without starting them")
    add_fleet_options(builder, configure_flags=False)
    builder.set_defaults(handler=cmd_builder)


def add_sample(commands: argparse._SubParsersAction) -> None:
    """The sample: the sample image built through the builder and checked."""
    sample = commands.add_parser(
        "sample",
        help="build the sample image for every platform through the builder and check where each ran",
        description="Build the sample through the builder: on each platform's node, natively or under QEMU, "
        "gcc compiles a small C program, runs it and records uname -m and the node's addresses. "
        "The image is pushed to the fleet's registry, read back, and each platform checked: the "
        "program's ELF header and output, uname -m, and that it ran on the node the placement chose.",
    )
    sample.add_argument("--time-each", action="store_true", help="also time each platform built alone")
    sample.add_argument(
        "--registry-cache",
        action="store_true",
        help="import and export the build cache through the fleet's registry, one cache per node (a pool's "
        "members then share it); the first run exports every platform's userland layers",
    )
    add_fleet_options(sample)
    sample.set_defaults(handler=cmd_sample)


def add_ci_config(commands: argparse._SubParsersAction) -> None:
    """The ci-config: what a CI job needs to use the builder."""
    ci = commands.add_parser(
        "ci-config",
        help="print what a CI job needs to use the builder (GitHub Actions, CircleCI, shell)",
        description="Render, from the live inventory, a docker/setup-buildx-action step, a CircleCI job or a "
        "POSIX shell script that joins the fleet's builder with its remote nodes over mTLS, and list "
        "the three secrets to create (CA, client certificate, client key) with the files holding them.",
    )
    ci.add_argument("--format", choices=("github", "circleci", "shell"), default="github")
    ci.add_argument(
        "--cache-repository",
        metavar="REPO",
        help="registry repository for the build cache, one tag per node (default: the image's own repository)",
    )
    who = ci.add_mutually_exclusive_group()
    who.add_argument(
        "--client",
        metavar="NAME",
        type=checked(check_client_name),
        help="the secrets of that consumer's own certificate (buildfleet client add NAME), not the operator's",
    )
    who.add_argument(
        "--oidc",
        action="store_true",
        help="no secret: each job trades its OIDC token for an hour's certificate at the fleet's token exchange",
    )
    add_fleet_options(ci, configure_flags=False)
    ci.set_defaults(handler=cmd_ci_config)
