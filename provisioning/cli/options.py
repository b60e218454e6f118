"""The command line's shared options and argument types: a bad value stops at parsing."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

from provisioning.configfile import DEFAULT_FILE
from provisioning.errors import ConfigError
from provisioning.names import check_builder_name, check_fleet_name

DRAIN_TIMEOUT = 3600  # seconds a host may take to finish its builds before a restart of its buildkitd


def add_config_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("configuration (later sources win)")
    group.add_argument(
        "--stack", metavar="NAME", help="read the buildfleet: keys of Pulumi.NAME.yaml in the project directory"
    )
    group.add_argument(
        "--config",
        metavar="FILE",
        type=Path,
        help=f"a YAML file of buildfleet keys (default: ./{DEFAULT_FILE} if present)",
    )
    group.add_argument(
        "--set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        dest="overrides",
        help="override one key, e.g. --set arm64InstanceType=c8g.xlarge (repeatable)",
    )
    add_project_dir(group)


def add_project_dir(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    help: str = "directory holding Pulumi.yaml, the stack files and buildfleet.lock.json (default: current)",
) -> None:
    parser.add_argument("--project-dir", metavar="DIR", type=Path, default=Path.cwd(), help=help)


def add_fleet_options(parser: argparse.ArgumentParser, configure_flags: bool = True) -> None:
    group = parser.add_argument_group("fleet")
    add_fleet_name(group)
    group.add_argument(
        "--cache-dir",
        type=Path,
        default=default_cache_dir(),
        metavar="DIR",
        help="where host images are cached (default: %(default)s)",
    )
    if configure_flags:
        group.add_argument(
            "--artifacts",
            type=Path,
            default=default_cache_dir(),
            metavar="DIR",
            help="buildx/buildkit artifact directory (default: %(default)s)",
        )
        group.add_argument(
            "--no-docker-upgrade", action="store_true", help="refuse, instead of upgrading, a Docker older than 19.03"
        )
        group.add_argument(
            "--drain-timeout",
            type=positive,
            default=DRAIN_TIMEOUT,
            metavar="SECONDS",
            help="how long a host may take to finish its builds before a restart of its buildkitd; "
            "one still busy then is left as it is (default: %(default)s)",
        )
    group.add_argument(
        "--builder",
        metavar="NAME",
        type=checked(check_builder_name),
        help="buildx builder name (default: buildfleet-FLEET)",
    )
    group.add_argument("--json", action="store_true", help="print results as JSON")


def add_fleet_name(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    help: str = "fleet name: keeps several fleets apart (default: default)",
) -> None:
    parser.add_argument("--fleet", default="default", metavar="NAME", type=checked(check_fleet_name), help=help)


def add_yes(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument(
        "--yes", "-y", action="store_true", help=help + " (without a terminal, and without --yes, it stops there)"
    )


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


def hours_per_day(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 24:
        raise argparse.ArgumentTypeError(f"must be between 0 and 24 hours, not {value}")
    return value


def default_cache_dir() -> Path:
    """Slow artefacts (host image, buildx, buildkitd) outlive clones and fleets."""
    env = os.environ.get("BUILDFLEET_CACHE")
    if env:
        return Path(env)
    return Path("/var/cache/buildfleet") if os.geteuid() == 0 else Path.home() / ".cache" / "buildfleet"
