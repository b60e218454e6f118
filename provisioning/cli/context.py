"""One command's fleet, built once from the command line: its options (typed, one declaration),
its state, and from them the target, settings, inventory, artifacts and builder a handler asks for.
Handlers read it and never change the parsed arguments."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from provisioning.cli.options import DRAIN_TIMEOUT, default_cache_dir
from provisioning.consumers import Consumers
from provisioning.errors import BuildfleetError, ConfigError, NotConfirmed
from provisioning.inventory import Inventory
from provisioning.settings import Settings, settings_from_mapping
from provisioning.state import FleetState
from provisioning.targets import Target, declared_features, make_target
from provisioning.targets.base import ConfigSources, KeepsIdentity, SteersPools, TargetOptions, settings_stack
from provisioning.targets.changes import ChangePreview

if TYPE_CHECKING:
    from provisioning.artifacts import ArtifactSource
    from provisioning.artifacts.release import Progress
    from provisioning.builder.builder import FleetBuilder
    from provisioning.hosts.configure import ConfigureOptions
    from provisioning.hosts.rolling import Rolling


@dataclass(frozen=True)
class Invocation:
    """The options fleet commands share, named as the parser's destinations; a command without
    one (``plan`` has no ``--ssh-key``) gets the default written here, the only place it is."""

    fleet: str = "default"
    project_dir: Path = field(default_factory=Path.cwd)
    config: Path | None = None
    stack: str | None = None
    overrides: tuple[str, ...] = ()
    target: str | None = None  # a new fleet's target; an existing fleet keeps its own
    cache_dir: Path = field(default_factory=default_cache_dir)
    inventory: Path | None = None  # the static target's host list
    ssh_key: Path | None = None
    wait_timeout: int = 900
    artifacts: Path = field(default_factory=default_cache_dir)
    yes: bool = False
    no_docker_upgrade: bool = False
    drain_timeout: int = DRAIN_TIMEOUT
    builder: str | None = None
    driver: str = "remote"
    use: bool = False
    json: bool = False

    @classmethod
    def of(cls, args: argparse.Namespace) -> Invocation:
        given = vars(args)
        values = {f.name: given[f.name] for f in fields(cls) if given.get(f.name) is not None}
        return cls(**{**values, "overrides": tuple(values.get("overrides", ()))})


@dataclass(frozen=True)
class Fleet:
    """The fleet a command acts on. Inventory and settings are read from the state each time
    they are asked for: ``up`` and ``wake`` rewrite them during the command."""

    options: Invocation
    console: Console
    state: FleetState

    @classmethod
    def of(cls, args: argparse.Namespace, console: Console) -> Fleet:
        options = Invocation.of(args)
        return cls(options, console, FleetState.for_fleet(options.fleet))

    @property
    def name(self) -> str:
        return self.options.fleet

    @property
    def sources(self) -> ConfigSources:
        o = self.options
        return ConfigSources(o.project_dir, o.config, o.stack, o.overrides)

    def made_with(self) -> str | None:
        """The target that made this fleet (recorded before it made anything), or None for a new fleet."""
        recorded = self.state.recorded_target()
        if recorded:
            return recorded
        try:
            inventory = self.state.load_inventory(declared_features)  # a fleet from before the target was recorded
        except ConfigError:
            return None
        return inventory.target if inventory else None

    def kind(self, default: str) -> str:
        """The target a command acts on: always the one the fleet was made with. A different
        ``--target`` is refused, so a plain ``up`` never turns an AWS fleet into a local one (and a
        later ``down`` never deletes its key while the instances run on); a new fleet takes
        ``--target``, else ``default``."""
        made, asked = self.made_with(), self.options.target
        if made and asked and asked != made:
            raise ConfigError(
                f"fleet {self.name!r} was made with --target {made}, not {asked}: take it down first "
                f"(buildfleet down --fleet {self.name}), or give the {asked} fleet its own name (--fleet NAME)"
            )
        return made or asked or default

    def target(self, kind: str, creating: bool = False, progress: bool = False) -> Target:
        """The ``kind`` target for this fleet, given every option the command line has; ``progress``
        shows the target's own lines (Pulumi's among them)."""
        o = self.options
        options = TargetOptions(
            fleet=o.fleet,
            state=self.state,
            sources=self.sources,
            cache_dir=o.cache_dir,
            inventory_file=o.inventory,
            ssh_key=o.ssh_key,
            wait_timeout=o.wait_timeout,
            creating=creating,
            artifacts_dir=o.artifacts,
            on_output=engine_output(self.console) if progress else (lambda line: None),
            confirm=confirmer(o.yes),
        )
        return make_target(kind, options)

    def explicit_config(self) -> bool:
        """Whether the command line named configuration (--set, --config, --stack)."""
        return bool(self.options.overrides or self.options.config or self.options.stack)

    def described_settings(self, target: Target) -> Settings:
        """The settings plan and cost describe: an existing fleet's own (what up used), with what the
        command line names over them; a new fleet's from its configuration, as up would read it."""
        settings = self.saved_settings() if self.made_with() else None
        if settings is None:
            return target.settings()
        if not self.explicit_config():
            return settings
        return settings_from_mapping({**settings.values, **self.sources.explicit()})

    def settings_note(self, target: Target) -> str:
        """Which sources a command read its settings from, in one line (stderr: --json stays clean)."""
        stack = settings_stack(target, self.sources.stack)
        if self.made_with() and self.state.settings_file.exists():
            kept = f"settings: what up kept for fleet {self.name!r} ({self.state.settings_file})"
            under = self.sources.read(stack).removeprefix("settings from ")
            return kept + (f", under {under}" if self.explicit_config() else "")
        return self.sources.read(stack)

    def inventory(self) -> Inventory:
        inventory = self.state.load_inventory(declared_features)
        if inventory is None:
            raise BuildfleetError(f"fleet {self.name!r} has no inventory in {self.state.root}: run buildfleet up first")
        return inventory

    def sleeping(self, inventory: Inventory) -> list[str]:
        """The fleet's hosts its target finds powered off now (idle stop, or by hand), by name."""
        names = {h.name for h in inventory.hosts}
        return sorted(s.host for s in self.target(inventory.target).status() if s.asleep and s.host in names)

    def settings(self) -> Settings:
        """The settings ``up`` used for this fleet; a fleet made before they were kept gets its
        target's settings from the configuration in reach now."""
        return self.saved_settings() or self.target(self.inventory().target).settings()

    def saved_settings(self) -> Settings | None:
        """The effective settings ``up`` kept in the fleet's state (None: it kept none)."""
        saved = self.state.saved_settings()
        if saved is None:
            return None
        try:
            return settings_from_mapping(saved)
        except ConfigError as error:
            raise ConfigError(f"{self.state.settings_file}: {error}; buildfleet up rewrites it") from None

    def artifacts(self, settings: Settings) -> ArtifactSource:
        """The files configure puts on hosts, from the source the settings name; the release files'
        lock lives in the project directory (the current one unless --project-dir)."""
        from provisioning.artifacts.source import artifact_source

        o = self.options
        return artifact_source(
            settings.artifact_source, o.artifacts, o.project_dir, settings.artifact_mirror, download_progress()
        )

    def configure_options(self, settings: Settings) -> ConfigureOptions:
        """What configure gives each host, from the fleet's settings and the command line."""
        from provisioning.hosts.configure import ConfigureOptions  # paramiko and friends: only when needed
        from provisioning.hosts.operations.exchange import CLIENT, ExchangeDesired

        exchange = None
        if settings.exchange_wanted():  # the token exchange, on the host the settings name, never with a retired CA
            retired = Consumers(self.state.root / "tls").retired(CLIENT)
            exchange = ExchangeDesired.of(settings, [h.name for h in self.inventory().hosts], self.name, retired)
        return ConfigureOptions(
            buildkitd_port=settings.buildkitd_port,
            idle_stop_minutes=settings.idle_stop_minutes,
            allow_docker_upgrade=not self.options.no_docker_upgrade,
            qemu_source=settings.qemu_source,
            docker_source=settings.docker_source,
            gc=settings.gc,
            max_parallelism=settings.max_parallelism,
            exchange=exchange,
        )

    def rolling(self, inventory: Inventory, waiting: Callable[[str, str], None] = lambda host, what: None) -> Rolling:
        """How restarts roll through this fleet: drained for ``--drain-timeout`` at most, each pool
        member taken out of its balancer first where the target steers it; ``waiting`` hears
        what a host waits for."""
        from provisioning.hosts.rolling import Rolling

        target = self.target(inventory.target) if inventory.pools else None
        members = target.pool_members(inventory) if isinstance(target, SteersPools) else None
        return Rolling(self.options.drain_timeout, members, waiting=waiting)

    def identity_keeper(self) -> KeepsIdentity | None:
        """The target that keeps this fleet's identity for every operator (the aws target's
        stack), for a fleet made here or one ``up --target`` makes now; None for the others."""
        kind = self.made_with() or self.options.target
        if kind is None:
            return None
        target = self.target(kind, progress=True)
        return target if isinstance(target, KeepsIdentity) else None

    @property
    def builder_name(self) -> str:
        return self.options.builder or f"buildfleet-{self.name}"

    def builder(self, name: str | None = None) -> FleetBuilder:
        """The fleet's builder (or another one made for it, by name) in this docker configuration."""
        from provisioning.builder.builder import Buildx, FleetBuilder

        # The docker-container driver reaches hosts through plain ssh: give it the fleet's config.
        env = {"PATH": f"{self.state.root / 'ssh-client'}:{os.environ.get('PATH', os.defpath)}"}
        return FleetBuilder(name or self.builder_name, self.state.root / "builders", Buildx(env=env))

    def existing_builder(self, why: str) -> FleetBuilder:
        """The fleet's builder, which must exist in this docker configuration."""
        builder = self.builder()
        if builder.inspect() is None:
            raise BuildfleetError(
                f"the fleet's builder {builder.name!r} does not exist here ({why}): run buildfleet builder create first"
            )
        return builder


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
