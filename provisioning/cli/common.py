"""What every buildfleet command shares: the fleet's state, its target, inventory and builder."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from provisioning.cli.options import default_cache_dir
from provisioning.errors import BuildfleetError, ConfigError, NotConfirmed
from provisioning.inventory import Inventory
from provisioning.settings import Settings, settings_from_mapping
from provisioning.state import FleetState

if TYPE_CHECKING:
    from provisioning.hosts.configure import ConfigureOptions
from provisioning.targets import Target, declared_features, make_target
from provisioning.targets.base import ConfigSources, TargetOptions
from provisioning.targets.changes import ChangePreview

if TYPE_CHECKING:
    from provisioning.artifacts import ArtifactSource
    from provisioning.artifacts.release import Progress


def config_sources(args: argparse.Namespace) -> ConfigSources:
    return ConfigSources(
        getattr(args, "project_dir", None) or Path.cwd(),
        getattr(args, "config", None),
        getattr(args, "stack", None),
        tuple(getattr(args, "overrides", ())),
    )


def made_with(state: FleetState) -> str | None:
    """The target that made this fleet (recorded before it made anything), or None for a new fleet."""
    recorded = state.recorded_target()
    if recorded:
        return recorded
    try:
        inventory = state.load_inventory(declared_features)  # a fleet from before the target was recorded
    except ConfigError:
        return None
    return inventory.target if inventory else None


def fleet_kind(args: argparse.Namespace, state: FleetState, default: str) -> str:
    """The target a command acts on: always the one the fleet was made with. A different
    ``--target`` is refused, so a plain ``up`` never turns an AWS fleet into a local one (and a
    later ``down`` never deletes its key while the instances run on); a new fleet takes
    ``--target``, else ``default``."""
    made = made_with(state)
    asked = getattr(args, "target", None)
    if made and asked and asked != made:
        raise ConfigError(
            f"fleet {args.fleet!r} was made with --target {made}, not {asked}: take it down first "
            f"(buildfleet down --fleet {args.fleet}), or give the {asked} fleet its own name (--fleet NAME)"
        )
    return made or asked or default


def explicit_config(args: argparse.Namespace) -> bool:
    """Whether the command line named configuration (--set, --config, --stack)."""
    return bool(getattr(args, "overrides", None) or getattr(args, "config", None) or getattr(args, "stack", None))


def described_settings(args: argparse.Namespace, state: FleetState, target: Target) -> Settings:
    """The settings plan and cost describe: an existing fleet's own (what up used), with what the
    command line names over them; a new fleet's from its configuration, as up would read it."""
    settings = saved_settings(state) if made_with(state) else None
    if settings is None:
        return target.settings()
    if not explicit_config(args):
        return settings
    return settings_from_mapping({**settings.values, **config_sources(args).explicit()})


def settings_note(args: argparse.Namespace, state: FleetState, target: Target) -> str:
    """Which sources a command read its settings from, in one line (stderr: --json stays clean)."""
    sources = config_sources(args)
    stack = getattr(target, "stack", None) or sources.stack
    if made_with(state) and state.settings_file.exists():
        kept = f"settings: what up kept for fleet {args.fleet!r} ({state.settings_file})"
        return kept + (f", under {sources.read(stack).removeprefix('settings from ')}" if explicit_config(args) else "")
    return sources.read(stack)


def target_for(args: argparse.Namespace, kind: str, console: Console | None = None, creating: bool = False) -> Target:
    """The ``kind`` target for this fleet, given every option the command line has."""
    fleet = getattr(args, "fleet", "default")
    options = TargetOptions(
        fleet=fleet,
        state=FleetState.for_fleet(fleet),
        sources=config_sources(args),
        cache_dir=getattr(args, "cache_dir", None) or default_cache_dir(),
        inventory_file=getattr(args, "inventory", None),
        ssh_key=getattr(args, "ssh_key", None),
        wait_timeout=getattr(args, "wait_timeout", 900),
        creating=creating,
        artifacts_dir=getattr(args, "artifacts", None),
        on_output=engine_output(console) if console is not None else (lambda line: None),
        confirm=confirmer(getattr(args, "yes", False)),
    )
    return make_target(kind, options)


def confirmer(yes: bool, ask: Callable[[str], str] = input) -> Callable[[ChangePreview], None]:
    """Show a preview and go on only on yes, as ``pulumi up`` and ``terraform apply`` do: --yes
    for scripts; no terminal and no --yes stops after the preview."""
    err = Console(stderr=True)

    def confirm(preview: ChangePreview) -> None:
        for line in preview.lines():
            err.print(line, markup=False, highlight=False, soft_wrap=True)
        if not preview.changes or yes:
            return
        if not sys.stdin.isatty():
            raise NotConfirmed(
                f"{preview.what} not run: there is no terminal to ask on and no --yes; nothing was changed "
                "(run again with --yes to apply the preview above)"
            )
        answer = ask(f"Do you want to run {preview.what} on stack {preview.stack!r}? Type yes to go on: ")
        if answer.strip().lower() not in ("y", "yes"):
            raise NotConfirmed(f"{preview.what} not run: declined; nothing was changed")

    return confirm


def engine_output(console: Console):
    """A target's own progress lines (Pulumi's among them), dimmed, on stderr so --json stays clean."""
    err = Console(stderr=True, width=console.width)
    return lambda line: err.print(line.rstrip("\n"), style="dim", markup=False, highlight=False)


def builder_name(args: argparse.Namespace) -> str:
    return args.builder or f"buildfleet-{args.fleet}"


def fleet_builder(args: argparse.Namespace, state: FleetState):
    from provisioning.builder.builder import Buildx, FleetBuilder

    # The docker-container driver reaches hosts through plain ssh: give it the fleet's config.
    env = {"PATH": f"{state.root / 'ssh-client'}:{os.environ.get('PATH', os.defpath)}"}
    return FleetBuilder(builder_name(args), state.root / "builders", Buildx(env=env))


def require_inventory(args: argparse.Namespace, state: FleetState) -> Inventory:
    inventory = state.load_inventory(declared_features)
    if inventory is None:
        raise BuildfleetError(f"fleet {args.fleet!r} has no inventory in {state.root}: run buildfleet up first")
    return inventory


def fleet_settings(args: argparse.Namespace, state: FleetState, inventory: Inventory) -> Settings:
    """The settings ``up`` used for this fleet; a fleet made before they were kept gets its
    target's settings from the configuration in reach now."""
    return saved_settings(state) or target_for(args, inventory.target).settings()


def saved_settings(state: FleetState) -> Settings | None:
    """The effective settings ``up`` kept in the fleet's state (None: it kept none)."""
    saved = state.saved_settings()
    if saved is None:
        return None
    try:
        return settings_from_mapping(saved)
    except ConfigError as error:
        raise ConfigError(f"{state.settings_file}: {error}; buildfleet up rewrites it") from None


def fleet_artifacts(args: argparse.Namespace, settings: Settings) -> ArtifactSource:
    """The files configure puts on hosts, from the source the settings name; the release files'
    lock lives in the project directory (the current one unless --project-dir)."""
    from provisioning.artifacts.source import artifact_source

    directory = getattr(args, "artifacts", None) or default_cache_dir()
    project = getattr(args, "project_dir", None) or Path.cwd()
    return artifact_source(settings.artifact_source, directory, project, settings.artifact_mirror, download_progress())


def download_progress() -> Progress:
    """One line per release file on stderr as it arrives (a download is seconds to minutes)."""
    err = Console(stderr=True)
    shown: dict[str, int] = {}

    def progress(what: str, done: int, total: int) -> None:
        step = done * 10 // total if total else 0
        if shown.get(what) != step:
            shown[what] = step
            err.print(f"downloading {what}: {done / 1e6:.1f} of {total / 1e6:.1f} MB", highlight=False)

    return progress


def configure_options(args: argparse.Namespace, settings: Settings) -> ConfigureOptions:
    """What configure gives each host, from the fleet's settings and the command line."""
    from provisioning.hosts.configure import ConfigureOptions  # paramiko and friends: only when needed

    return ConfigureOptions(
        buildkitd_port=settings.buildkitd_port,
        idle_stop_minutes=settings.idle_stop_minutes,
        allow_docker_upgrade=not getattr(args, "no_docker_upgrade", False),
        qemu_source=settings.qemu_source,
        docker_source=settings.docker_source,
        gc=settings.gc,
        max_parallelism=settings.max_parallelism,
    )
