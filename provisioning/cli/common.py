"""What every buildfleet command shares: its options, configuration, the fleet's state,
inventory and builder."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Callable

from rich.console import Console

from provisioning.configfile import DEFAULT_FILE, load_raw_config
from provisioning.errors import BuildfleetError, ConfigError
from provisioning.names import check_builder_name, check_fleet_name
from provisioning.plan import Plan, plan_fleet, plan_on_machine
from provisioning.settings import Settings, settings_from_mapping
from provisioning.state import FleetState


# The local target has no native arm64 CPU: its fleet is an amd64 host and an emulation host.
LOCAL_DEFAULTS = {"arm64Count": 0}


def add_config_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("configuration (later sources win)")
    group.add_argument("--stack", metavar="NAME",
                       help="read the buildfleet: keys of Pulumi.NAME.yaml in the project directory")
    group.add_argument("--config", metavar="FILE", type=Path,
                       help=f"a YAML file of buildfleet keys (default: ./{DEFAULT_FILE} if present)")
    group.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="overrides",
                       help="override one key, e.g. --set arm64InstanceType=c8g.xlarge (repeatable)")
    group.add_argument("--project-dir", metavar="DIR", type=Path, default=Path.cwd(),
                       help="directory holding Pulumi.yaml and the stack files (default: current)")


def add_fleet_options(parser: argparse.ArgumentParser, configure_flags: bool = True) -> None:
    group = parser.add_argument_group("fleet")
    group.add_argument("--fleet", default="default", metavar="NAME", type=checked(check_fleet_name),
                       help="fleet name: keeps several fleets apart (default: default)")
    group.add_argument("--cache-dir", type=Path, default=default_cache_dir(), metavar="DIR",
                       help="where host images are cached (default: %(default)s)")
    if configure_flags:
        group.add_argument("--artifacts", type=Path, default=default_cache_dir(), metavar="DIR",
                           help="buildx/buildkit artifact directory (default: %(default)s)")
        group.add_argument("--no-docker-upgrade", action="store_true",
                           help="refuse, instead of upgrading, a Docker older than 19.03")
    group.add_argument("--builder", metavar="NAME", type=checked(check_builder_name), help="buildx builder name (default: buildfleet-FLEET)")
    group.add_argument("--json", action="store_true", help="print results as JSON")


def checked(check: Callable[[str], str]) -> Callable[[str], str]:
    """An argparse type from a domain check, so a bad value stops at parsing with its own message."""
    def parse(text: str) -> str:
        try:
            return check(text)
        except ConfigError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    return parse


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 0 and below 1, not {value}")
    return value


def load_settings(args: argparse.Namespace, target: str) -> Settings:
    raw = load_raw_config(args.project_dir, args.config, args.stack, args.overrides)
    if target in ("local", "static"):
        raw = {**LOCAL_DEFAULTS, **raw}
    return settings_from_mapping(raw)


def plan_for(settings: Settings, target: str) -> Plan:
    if target == "local":
        from provisioning.local.target import machine_arch
        return plan_on_machine(settings, machine_arch())
    return plan_fleet(settings)


def local_target(args: argparse.Namespace, settings: Settings | None = None):
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


def builder_name(args: argparse.Namespace) -> str:
    return args.builder or f"buildfleet-{args.fleet}"


def fleet_builder(args: argparse.Namespace, state: FleetState):
    from provisioning.builder.builder import Buildx, FleetBuilder
    # The docker-container driver reaches hosts through plain ssh: give it the fleet's config.
    env = {"PATH": f"{state.root / 'ssh-client'}:{os.environ.get('PATH', os.defpath)}"}
    return FleetBuilder(builder_name(args), state.root / "builders", Buildx(env=env))


def require_inventory(args: argparse.Namespace, state: FleetState):
    inventory = state.load_inventory()
    if inventory is None:
        raise BuildfleetError(f"fleet {args.fleet!r} has no inventory in {state.root}: run buildfleet up first")
    return inventory


def host_progress(console: Console):
    """A rich progress display with one line per host: its current step, steps done, elapsed time."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    return Progress(TextColumn("{task.fields[host]:<14}"), TextColumn("{task.description:<12}"), BarColumn(),
                    MofNCompleteColumn(), TimeElapsedColumn(), console=Console(stderr=True, width=console.width),
                    transient=False)
