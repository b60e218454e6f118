"""Create, update and remove the fleet's buildx builder, idempotently and only if ours.

buildfleet records each builder it makes in the fleet's state (one file per builder
name); a builder of the same name without that record belongs to someone else and is
never touched. Changes are
decided from ``docker buildx inspect`` first, then applied with argument lists:
create the first node, ``--append`` new or changed ones (buildx updates a node of the
same name in place), ``--leave`` the ones no host wants any more.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from provisioning.builder.inspect import InspectedBuilder, parse_inspect
from provisioning.builder.nodes import Node
from provisioning.command import CommandResult, run_command
from provisioning.errors import BuildfleetError
from provisioning.removal import unlink_inside


@dataclass(frozen=True)
class Change:
    kind: str  # create | append | update | leave
    node: str
    args: tuple[str, ...]

    def describe(self) -> str:
        return f"{self.kind} node {self.node}"


@dataclass(frozen=True)
class Buildx:
    """The operator's ``docker buildx``; ``env`` can point DOCKER_CONFIG elsewhere (tests)."""

    docker: str = "docker"
    env: Mapping[str, str] = field(default_factory=dict)

    def full_env(self) -> dict[str, str]:
        return {**os.environ, **self.env}

    def run(self, args: Sequence[str], check: bool = True) -> CommandResult:
        return run_command([self.docker, *args], f"docker {' '.join(args[:3])}", check, env=self.full_env())

    def inspect(self, name: str, bootstrap: bool = False) -> InspectedBuilder | None:
        result = self.run(["buildx", "inspect", *(["--bootstrap"] if bootstrap else []), name], check=False)
        if result.returncode != 0:
            if "no builder" in result.stderr or "not found" in result.stderr:
                return None
            raise BuildfleetError(f"docker buildx inspect {name} failed: {result.stderr.strip()}")
        return parse_inspect(result.stdout)


def plan_changes(builder: str, desired: Sequence[Node], existing: InspectedBuilder | None) -> list[Change]:
    """What turns ``existing`` into ``desired``: nothing, when they already match."""
    if not desired:
        raise BuildfleetError("no host builds any platform: there is nothing to make a builder of")
    current = {n.name: n for n in existing.nodes} if existing else {}
    changes = []
    for index, node in enumerate(desired):
        have = current.get(node.name)
        if existing is None:
            kind = "create" if index == 0 else "append"
        elif have is None:
            kind = "append"
        elif (have.endpoint, set(have.pinned), have.driver_opts) != (
            node.endpoint,
            set(node.platforms),
            dict(node.driver_opts),
        ):
            kind = "update"
        else:
            continue
        changes.append(Change(kind, node.name, tuple(node.create_args(builder, append=kind != "create"))))
    wanted = {n.name for n in desired}
    for name in current:
        if name not in wanted:
            changes.append(Change("leave", name, ("buildx", "create", "--name", builder, "--leave", "--node", name)))
    return changes


@dataclass(frozen=True)
class FleetBuilder:
    name: str
    records: Path  # <state>/builders: one <name>.json per builder buildfleet made
    buildx: Buildx = Buildx()

    @property
    def record(self) -> Path:
        return self.records / f"{self.name}.json"

    def owned(self) -> bool:
        if not self.record.exists():
            return False
        try:
            return json.loads(self.record.read_text()).get("name") == self.name
        except (ValueError, AttributeError):
            raise BuildfleetError(
                f"{self.record} (buildfleet's record of builder {self.name!r}) is damaged: if buildfleet made "
                f'that builder, write {{"name": "{self.name}"}} into it; else remove the file'
            ) from None

    def ensure(self, desired: Sequence[Node], use: bool = False) -> list[Change]:
        existing = self.buildx.inspect(self.name)
        if existing is not None and not self.owned():
            raise BuildfleetError(
                f"a buildx builder named {self.name!r} already exists and buildfleet did not make it; "
                f"choose another name (--builder) or remove it yourself (docker buildx rm {self.name})"
            )
        changes = plan_changes(self.name, desired, existing)
        # Recorded before the first create: a run that fails half-way (an --append refused)
        # leaves a builder the next run finishes and ``down`` removes, never a foreign one.
        self.record.parent.mkdir(parents=True, exist_ok=True)
        self.record.write_text(json.dumps({"name": self.name, "nodes": [n.name for n in desired]}, indent=2) + "\n")
        for change in changes:
            self.buildx.run(change.args)
        if use:
            self.buildx.run(["buildx", "use", self.name])
        return changes

    def inspect(self, bootstrap: bool = False) -> InspectedBuilder | None:
        return self.buildx.inspect(self.name, bootstrap)

    def remove(self) -> bool:
        """Remove the builder if buildfleet made it; another one of that name stays."""
        if not self.owned():
            return False
        if self.buildx.inspect(self.name) is not None:
            self.buildx.run(["buildx", "rm", self.name])
        unlink_inside(self.record, self.records)
        return True
