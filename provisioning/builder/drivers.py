"""How the builder reaches each host: buildx drivers behind one interface, found by name.

Each driver turns the inventory into builder nodes, doing first whatever its nodes need
on the hosts (the docker-container driver loads its BuildKit image into each host's
Docker). A new driver is a class here plus one line in ``DRIVERS``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol

from provisioning.artifacts import ArtifactSource
from provisioning.builder import docker_container
from provisioning.builder.builder import Buildx
from provisioning.builder.nodes import DOCKER_CONTAINER, REMOTE, Node, TLSFiles, remote_nodes
from provisioning.errors import ConfigError
from provisioning.inventory import Inventory
from provisioning.remote.machine import machine_arch
from provisioning.state import FleetState


class Driver(Protocol):
    name: ClassVar[str]
    preparing: ClassVar[str]  # what ``nodes`` does on the hosts first, for a progress line ("" if nothing)

    def nodes(self, builder: str, inventory: Inventory, state: FleetState) -> tuple[Node, ...]: ...


@dataclass(frozen=True)
class RemoteDriver:
    """Each host's buildkitd over mTLS: nothing to prepare, the hosts' configure did it."""

    artifacts: ArtifactSource
    buildx: Buildx
    name: ClassVar[str] = REMOTE
    preparing: ClassVar[str] = ""

    def nodes(self, builder: str, inventory: Inventory, state: FleetState) -> tuple[Node, ...]:
        return remote_nodes(builder, inventory, TLSFiles.in_state(state.root / "tls"))


@dataclass(frozen=True)
class DockerContainerDriver:
    """Each host's Docker over ssh, running a BuildKit image made here from the pinned artifacts."""

    artifacts: ArtifactSource
    buildx: Buildx
    name: ClassVar[str] = DOCKER_CONTAINER
    preparing: ClassVar[str] = "loading the BuildKit image into each host's Docker over SSH"

    def nodes(self, builder: str, inventory: Inventory, state: FleetState) -> tuple[Node, ...]:
        return docker_container.prepare(builder, inventory, state, self.artifacts, self.buildx, machine_arch())


DRIVERS: dict[str, type[RemoteDriver] | type[DockerContainerDriver]] = {
    RemoteDriver.name: RemoteDriver,
    DockerContainerDriver.name: DockerContainerDriver,
}


def make_driver(name: str, artifacts: ArtifactSource, buildx: Buildx) -> Driver:
    try:
        return DRIVERS[name](artifacts, buildx)
    except KeyError:
        raise ConfigError(f"unknown builder driver {name!r}; known: {', '.join(DRIVERS)}") from None
