"""``buildfleet``: the one entry point. Each subcommand is a thin reader of one stage;
the handlers live in the modules of this package, grouped by what they serve."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from provisioning import __version__
from provisioning.artifacts import BUILDKIT_VERSION, BUILDX_VERSION
from provisioning.bench.runs import WORKLOADS
from provisioning.builder.drivers import DRIVERS
from provisioning.cli.artifacts import cmd_artifacts
from provisioning.cli.build import cmd_builder, cmd_ci_config, cmd_sample
from provisioning.cli.fleet import (
    cmd_configure,
    cmd_down,
    cmd_plan,
    cmd_rotate_certs,
    cmd_status,
    cmd_up,
    cmd_wake,
)
from provisioning.cli.measure import cmd_bench, cmd_cost
from provisioning.cli.options import (
    add_config_options,
    add_fleet_name,
    add_fleet_options,
    add_project_dir,
    add_yes,
    default_cache_dir,
    fraction,
    hours_per_day,
    positive,
)
from provisioning.errors import BuildfleetError
from provisioning.state import FleetState
from provisioning.targets import KINDS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="buildfleet",
        description="Multi-architecture Docker build hosts as code: plan a fleet, stand it up, "
        "and join it into one docker buildx builder (native where possible, QEMU elsewhere).",
        epilog="Typical run: buildfleet up && buildfleet sample && buildfleet bench; buildfleet doctor when "
        "something is off; buildfleet down to remove it all. 'buildfleet COMMAND --help' for each.",
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"buildfleet {__version__} (hosts get BuildKit v{BUILDKIT_VERSION}, buildx v{BUILDX_VERSION})",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
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

    configure = commands.add_parser(
        "configure",
        help="(re)configure the fleet's hosts; changes only what differs",
        description="Read each host's facts over SSH and apply only what differs from "
        "the desired state; a configured fleet reports no change.",
    )
    add_project_dir(configure)  # settings: the ones up kept for the fleet
    add_fleet_options(configure)
    configure.set_defaults(handler=cmd_configure)

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

    status = commands.add_parser(
        "status",
        help="show the fleet's hosts, endpoints and platforms (--check, or doctor: check them)",
        description="Show the fleet's hosts, endpoints, platforms, registry and builder. With --check: as doctor.",
    )
    status.add_argument("--check", action="store_true", help="check each host and builder node (as doctor)")
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
    add_fleet_options(ci, configure_flags=False)
    ci.set_defaults(handler=cmd_ci_config)

    artifacts = commands.add_parser(
        "artifacts",
        help="lock: fetch upstream's BuildKit and buildx release files and record their sha256 (commit the lock)",
        description="Fetch the release files the release artifact source uses (BuildKit's "
        "buildkit-vX.linux-ARCH.tar.gz, buildx's buildx-vX.linux-ARCH) for every ARCH into the per-user cache, "
        "from github.com or buildfleet:artifactMirror, and record each sha256 in buildfleet.lock.json in the "
        "project directory; a file already recorded must match. Commit the lock file: every later download is "
        "checked against it.",
    )
    artifacts.add_argument("action", choices=("lock",))
    artifacts.add_argument(
        "--arch", action="append", choices=("amd64", "arm64"), help="host CPU (repeatable; default: amd64 and arm64)"
    )
    add_config_options(artifacts)
    artifacts.set_defaults(handler=cmd_artifacts)

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
    down.add_argument(
        "--project-dir",
        metavar="DIR",
        type=Path,
        default=Path.cwd(),
        help="aws: directory holding Pulumi.yaml (default: current)",
    )
    add_yes(down, "aws: run pulumi destroy without asking after its preview")
    add_fleet_options(down, configure_flags=False)
    down.set_defaults(handler=cmd_down)

    completion = commands.add_parser(
        "completion",
        help="print the shell completion script for bash, zsh or fish",
        description="Print a script that completes buildfleet's commands, flags and their choices (argcomplete). "
        "bash: buildfleet completion bash > ~/.local/share/bash-completion/completions/buildfleet; "
        'zsh: buildfleet completion zsh > "${fpath[1]}/_buildfleet"; '
        "fish: buildfleet completion fish > ~/.config/fish/completions/buildfleet.fish.",
    )
    completion.add_argument("shell", choices=SHELLS)
    completion.set_defaults(handler=cmd_completion)
    return parser


SHELLS = ("bash", "zsh", "fish")


def cmd_completion(args: argparse.Namespace, console: Console) -> int:
    import argcomplete

    print(argcomplete.shellcode(["buildfleet"], shell=args.shell), end="")
    return 0


# Commands that change a fleet's hosts, builder or state: one at a time per fleet. bench among them:
# --baseline seed registers QEMU on a host, and its timings mean nothing while configure restarts one.
CHANGING = frozenset({"up", "configure", "rotate-certs", "wake", "builder", "bench", "down"})


def changes_fleet(args: argparse.Namespace) -> bool:
    reads_only = args.command == "builder" and args.action == "show"
    return args.command in CHANGING and not reads_only


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    if "_ARGCOMPLETE" in os.environ:  # a shell asking for completions (the completion command's script)
        import argcomplete

        argcomplete.autocomplete(parser)  # answers and exits
    args = parser.parse_args(argv)
    if args.command is None:  # buildfleet alone: what it can do, not an error
        parser.print_help()
        return 0
    # Piped output keeps full rows instead of folding at 80 columns.
    console = Console() if sys.stdout.isatty() else Console(width=int(os.environ.get("COLUMNS", "160")))
    try:
        if changes_fleet(args):
            with FleetState.for_fleet(args.fleet).locked(args.command):
                return args.handler(args, console)
        return args.handler(args, console)
    except BuildfleetError as error:
        Console(stderr=True).print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
        return error.exit_code
