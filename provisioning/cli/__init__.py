"""``buildfleet``: the one entry point. Each subcommand is a thin reader of one stage;
the handlers live in the modules of this package, grouped by what they serve."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape

from provisioning import __version__
from provisioning.artifacts import BUILDKIT_VERSION, BUILDX_VERSION
from provisioning.cli import artifacts as artifacts_cli
from provisioning.cli import build as build_cli
from provisioning.cli import clients as clients_cli
from provisioning.cli import fleet as fleet_cli
from provisioning.cli import handover as handover_cli
from provisioning.cli import measure as measure_cli
from provisioning.cli.context import Fleet
from provisioning.errors import BuildfleetError

SHELLS = ("bash", "zsh", "fish")


def add_completion(commands: argparse._SubParsersAction) -> None:
    """completion: the shell script that completes buildfleet's commands and flags."""
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


def cmd_completion(fleet: Fleet, args: argparse.Namespace) -> int:
    import argcomplete

    print(argcomplete.shellcode(["buildfleet"], shell=args.shell), end="")
    return 0


# Each command's flags live beside its handler; this is the order --help lists them in.
COMMANDS = (
    fleet_cli.add_plan,
    fleet_cli.add_up,
    fleet_cli.add_configure,
    fleet_cli.add_rotate_certs,
    fleet_cli.add_wake,
    fleet_cli.add_status_doctor,
    build_cli.add_builder,
    build_cli.add_sample,
    measure_cli.add_bench,
    measure_cli.add_cost,
    build_cli.add_ci_config,
    clients_cli.add_client,
    handover_cli.add_state,
    handover_cli.add_attach,
    artifacts_cli.add_artifacts,
    fleet_cli.add_down,
    add_completion,
)


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
    for add in COMMANDS:
        add(commands)
    return parser


# Commands that change a fleet's hosts, builder or state: one at a time per fleet. bench among them:
# --baseline seed registers QEMU on a host, and its timings mean nothing while configure restarts one.
CHANGING = frozenset(
    {"up", "configure", "rotate-certs", "wake", "builder", "bench", "client", "state", "attach", "down"}
)


def changes_fleet(args: argparse.Namespace) -> bool:
    reads_only = args.command in ("builder", "client") and args.action in ("show", "list")
    return args.command in CHANGING and not reads_only


# Commands that may change the fleet's identity (certificates, consumers, the CA, up's first files).
IDENTITY = frozenset({"up", "configure", "rotate-certs", "client"})


def run_changing(fleet: Fleet, args: argparse.Namespace) -> int:
    """A changing command; where the target keeps the fleet identity for every operator, this
    machine's copy is checked to be the stack's first (up checks it itself, before it writes
    anything) and what the command changed in it is handed over after, even after a failed step."""
    keeper = fleet.identity_keeper() if args.command in IDENTITY else None
    if keeper is not None and args.command != "up":
        keeper.require_identity()
    status = args.handler(fleet, args)
    if keeper is not None:
        keeper.keep_identity()
    return int(status)


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
        fleet = Fleet.of(args, console)
        if changes_fleet(args):
            with fleet.state.locked(args.command):
                return run_changing(fleet, args)
        return args.handler(fleet, args)
    except BuildfleetError as error:
        Console(stderr=True).print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
        return error.exit_code
