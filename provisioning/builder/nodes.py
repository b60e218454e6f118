"""Builder nodes as data, and the ``docker buildx create`` argument lists for them. Pure.

Driver: remote, i.e. each node is a host's buildkitd over mTLS (what CI jobs use too:
no SSH keys needed there). buildx's own remote driver takes the CA, the client cert and
key, and the server name to verify (the address the operator dials, which every server
certificate carries as a SAN).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from provisioning.inventory import Inventory, InventoryHost


@dataclass(frozen=True)
class TLSFiles:
    ca: Path
    cert: Path
    key: Path

    @classmethod
    def in_state(cls, tls_dir: Path) -> "TLSFiles":
        return cls(tls_dir / "ca" / "cert.pem", tls_dir / "client" / "cert.pem", tls_dir / "client" / "key.pem")


@dataclass(frozen=True)
class Node:
    name: str
    endpoint: str
    platforms: tuple[str, ...]
    driver_opts: tuple[tuple[str, str], ...]

    def create_args(self, builder: str, append: bool) -> list[str]:
        opts = ",".join(f"{key}={value}" for key, value in self.driver_opts)
        return ["buildx", "create", "--name", builder, *(["--append"] if append else []),
                "--node", self.name, "--driver", "remote", "--driver-opt", opts,
                "--platform", ",".join(self.platforms), self.endpoint]


def node_name(builder: str, host: str) -> str:
    return f"{builder}-{host}"


def remote_node(builder: str, host: InventoryHost, tls: TLSFiles) -> Node:
    return Node(
        name=node_name(builder, host.name),
        endpoint=f"tcp://{host.address}:{host.buildkitd_port}",
        platforms=tuple(p.platform for p in host.platforms),
        driver_opts=(("cacert", str(tls.ca)), ("cert", str(tls.cert)), ("key", str(tls.key)),
                     ("servername", host.address)),
    )


def desired_nodes(builder: str, inventory: Inventory, tls: TLSFiles) -> tuple[Node, ...]:
    """One node per host that builds something; a host with no platform is left out."""
    return tuple(remote_node(builder, h, tls) for h in inventory.hosts if h.platforms)
