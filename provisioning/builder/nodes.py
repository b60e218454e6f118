"""Builder nodes as data, and the ``docker buildx create`` argument lists for them. Pure.

Two drivers behind one shape (as buildx has them):
- ``remote`` (default): each node is a host's buildkitd over mTLS — what CI jobs use
  too, no SSH keys there. buildx takes the CA, the client cert and key, and the server
  name to verify (the address the operator dials, which every server cert carries).
  A pool is one node too: its balancer's address, which every member's cert carries.
- ``docker-container``: each node is ``ssh://ALIAS``, the host's Docker reached through
  plain ssh, where buildx starts a BuildKit container. The alias, port, key and pinned
  host key come from the fleet's generated ssh config (see sshconfig).
"""

from __future__ import annotations

from dataclasses import dataclass

from provisioning.certs import TLSFiles
from provisioning.errors import BuildfleetError
from provisioning.inventory import Inventory, InventoryHost, Pool

REMOTE = "remote"
DOCKER_CONTAINER = "docker-container"


@dataclass(frozen=True)
class Node:
    name: str
    endpoint: str
    platforms: tuple[str, ...]
    driver_opts: tuple[tuple[str, str], ...]
    driver: str = REMOTE
    buildkitd_config: str = ""  # docker-container only: buildkitd.toml for the container

    def create_args(self, builder: str, append: bool) -> list[str]:
        opts = ",".join(f"{key}={value}" for key, value in self.driver_opts)
        return [
            "buildx",
            "create",
            "--name",
            builder,
            *(["--append"] if append else []),
            "--node",
            self.name,
            "--driver",
            self.driver,
            *(["--driver-opt", opts] if opts else []),
            *(["--buildkitd-config", self.buildkitd_config] if self.buildkitd_config else []),
            "--platform",
            ",".join(self.platforms),
            self.endpoint,
        ]


def node_name(builder: str, host: str) -> str:
    """The node's name in buildx, and the docker-container driver's ssh alias for the host."""
    return f"{builder}-{host}"


def _tls_node(name: str, address: str, port: int, platforms: tuple[str, ...], tls: TLSFiles) -> Node:
    return Node(
        name=name,
        endpoint=f"tcp://{address}:{port}",
        platforms=platforms,
        driver_opts=(("cacert", str(tls.ca)), ("cert", str(tls.cert)), ("key", str(tls.key)), ("servername", address)),
    )


def remote_node(builder: str, host: InventoryHost, tls: TLSFiles) -> Node:
    platforms = tuple(p.platform for p in host.platforms)
    return _tls_node(node_name(builder, host.name), host.address, host.buildkitd_port, platforms, tls)


def pool_node(builder: str, pool: Pool, members: tuple[InventoryHost, ...], tls: TLSFiles) -> Node:
    """The pool's balancer as one node; its members all build the same platforms."""
    platforms = tuple(p.platform for p in members[0].platforms)
    return _tls_node(node_name(builder, pool.name), pool.address, pool.port, platforms, tls)


def docker_container_node(builder: str, host: InventoryHost, image: str, buildkitd_config: str = "") -> Node:
    """The BuildKit container shares the host's network, so builds reach what the host
    reaches (the fleet's registry) and RUN --network=host sees the host's addresses."""
    return Node(
        name=node_name(builder, host.name),
        endpoint=f"ssh://{node_name(builder, host.name)}",
        platforms=tuple(p.platform for p in host.platforms),
        driver_opts=(("image", image), ("network", "host")),
        driver=DOCKER_CONTAINER,
        buildkitd_config=buildkitd_config,
    )


def building_hosts(inventory: Inventory) -> tuple[InventoryHost, ...]:
    """One node per host that builds something; a host with no platform is left out."""
    return tuple(h for h in inventory.hosts if h.platforms)


def remote_nodes(builder: str, inventory: Inventory, tls: TLSFiles) -> tuple[Node, ...]:
    """A node per building host outside a pool and per pool, in host order."""
    nodes: dict[str, Node] = {}
    for host in building_hosts(inventory):
        if host.node not in nodes:
            pool = host.pool
            nodes[host.node] = (
                pool_node(builder, inventory.pool(pool), inventory.members(pool), tls)
                if pool
                else remote_node(builder, host, tls)
            )
    return tuple(nodes.values())


def docker_container_nodes(
    builder: str, inventory: Inventory, image: str, buildkitd_config: str = ""
) -> tuple[Node, ...]:
    pooled = sorted({h.pool for h in inventory.hosts if h.pool})
    if pooled:
        raise BuildfleetError(
            f"pool {', '.join(pooled)}: the docker-container driver reaches each host over SSH, which no TCP "
            "balancer can share; use the remote driver (the default), or set that role's count to 1"
        )
    return tuple(docker_container_node(builder, h, image, buildkitd_config) for h in building_hosts(inventory))
