"""What every target is to the rest of buildfleet: where hosts come from, behind one interface.

Like pyinfra's connectors or Molecule's drivers: each target makes (or finds) its hosts
and hands back the one inventory shape; the stages after it never ask which target it
was. A new target is one module plus one line in ``provisioning.targets.REGISTRY``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from provisioning.checks import Check
from provisioning.configfile import DEFAULT_FILE, config_layers, load_raw_config
from provisioning.inventory import Features, Inventory
from provisioning.plan import Plan
from provisioning.settings import Settings, settings_from_mapping
from provisioning.state import FleetState
from provisioning.targets.changes import ChangePreview, refuse_changes


@dataclass(frozen=True)
class ConfigSources:
    """Where the user's configuration comes from; later sources win (see configfile)."""

    project_dir: Path
    config_file: Path | None = None
    stack: str | None = None
    overrides: tuple[str, ...] = ()

    def raw(self) -> dict[str, Any]:
        """Every source, with the stack file of ``stack`` (when one was named)."""
        return self.raw_with_stack(self.stack)

    def raw_with_stack(self, stack: str | None) -> dict[str, Any]:
        return load_raw_config(self.project_dir, self.config_file, stack, self.overrides)

    def layers(self, stack: str | None) -> dict[str, dict[str, Any]]:
        """Each source read, by name, in the order it applies (see configfile.config_layers)."""
        return config_layers(self.project_dir, self.config_file, stack, self.overrides)

    def explicit(self) -> dict[str, Any]:
        """Only what the command line names (--stack, --config, --set): a file that merely lies in
        the directory is left out."""
        implicit = str(self.project_dir / DEFAULT_FILE) if self.config_file is None else None
        merged: dict[str, Any] = {}
        for name, layer in self.layers(self.stack).items():
            if name != implicit:
                merged.update(layer)
        return merged

    def read(self, stack: str | None) -> str:
        """One line naming the sources a command read its settings from."""
        named = stack == self.stack or (stack is not None and (self.project_dir / f"Pulumi.{stack}.yaml").exists())
        names = [name for name, values in self.layers(stack if named else None).items() if values]
        return "settings from " + (", ".join(names) + " over the defaults" if names else "the defaults")


@dataclass(frozen=True)
class TargetOptions:
    """Everything the operator said that a target may need; each target reads its own part."""

    fleet: str
    state: FleetState
    sources: ConfigSources
    cache_dir: Path
    inventory_file: Path | None = None  # static: the YAML host list
    ssh_key: Path | None = None  # aws: private half of a user-set buildfleet:sshPublicKey
    wait_timeout: float = 900  # aws: seconds for SSH and cloud-init on new hosts
    artifacts_dir: Path | None = None  # the files configure puts on hosts (buildx, buildkitd, QEMU)
    creating: bool = False  # the command may create what does not exist yet (up), e.g. a new stack
    on_output: Callable[[str], None] = field(default=lambda line: None, compare=False)  # the engine's lines
    # shown each previewed change; returns to go on, raises NotConfirmed to stop (default: stop at any change)
    confirm: Callable[[ChangePreview], None] = field(default=refuse_changes, compare=False)


@dataclass(frozen=True)
class HostState:
    """One host as its target sees it right now (a container's or instance's own state)."""

    host: str
    resource: str  # the container, VM or instance that is the host
    state: str  # in the target's own words (docker's, EC2's)
    asleep: bool = False  # powered off (idle stop, or by hand): wake starts it, and commands that use it wake it first


class Target(Protocol):
    """The verbs every target has; nothing else of a target is visible above it."""

    kind: ClassVar[str]
    defaults: ClassVar[Mapping[str, Any]]  # configuration defaults this kind of host source implies
    features: ClassVar[Features]  # what its hosts are like, stamped on every inventory it makes

    def settings(self) -> Settings:
        """The effective settings: the user's sources over this target's defaults."""
        ...

    def plan(self, settings: Settings) -> Plan:
        """Which host builds which platform, before any host exists (where that can be known)."""
        ...

    def up(self, settings: Settings) -> Inventory:
        """Make or find the hosts until each answers over SSH; save and return the inventory."""
        ...

    def wake(self, settings: Settings) -> Inventory:
        """Start every host that is off (idle stop powered it off) and return where each answers
        now: addresses and ports may have changed."""
        ...

    def status(self) -> list[HostState]: ...

    def preflight(self, settings: Settings) -> list[Check]:
        """What this machine needs for this target, checked without touching a host (doctor --preflight)."""
        ...

    def down(self) -> list[str]:
        """Remove what this target made for the fleet (never the fleet's local state); what went."""
        ...


class PoolMembers(Protocol):
    """A pool's balancer as a rolling restart steers it (hosts.rolling): members by pool and host."""

    def take_out(self, pool: str, host: str) -> None:
        """No new connection goes to ``host``; those it has go on."""
        ...

    def sessions(self, pool: str, host: str) -> int:
        """Connections the balancer holds to ``host`` now."""
        ...

    def put_back(self, pool: str, host: str, timeout: float) -> None:
        """``host`` takes new connections again, once the balancer's checks find it serving."""
        ...


@runtime_checkable
class SteersPools(Protocol):
    """A target whose pools' balancers buildfleet drives (HAProxy on this machine): a restart
    takes the member out of its pool first. Without it, a member only waits for its builds."""

    def pool_members(self, inventory: Inventory) -> PoolMembers: ...


@runtime_checkable
class SharesMachineBinfmt(Protocol):
    """A target whose fleets register QEMU in this machine's one binfmt table (local, vm): doctor
    drops the holds of fleets that are gone, so the last real fleet's down can put it back."""

    def drop_stale_holds(self) -> list[Check]: ...


@runtime_checkable
class KeepsIdentity(Protocol):
    """A target whose backend keeps the fleet identity for every operator (the aws target's
    stack): a command that would change it first checks this machine's copy is the backend's,
    one that changed it hands it over, and a teammate attaches from it."""

    def require_identity(self) -> None: ...

    def keep_identity(self) -> None: ...

    def attach(self) -> list[str]: ...


@runtime_checkable
class StackBacked(Protocol):
    """A target whose settings come from a Pulumi stack file too (the aws target): its stack's name."""

    stack: str


def settings_stack(target: Target, named: str | None) -> str | None:
    """The stack whose file a command's settings are read from: the target's own, else the one named."""
    return (target.stack if isinstance(target, StackBacked) else None) or named


def settings_with_defaults(raw: Mapping[str, Any], defaults: Mapping[str, Any]) -> Settings:
    return settings_from_mapping({**defaults, **raw})
