"""Everything the docker-container driver needs before ``docker buildx create``:
the fleet's ssh config, the BuildKit image on every host, and buildkitd's config."""

from __future__ import annotations

from provisioning.artifacts import BUILDKIT_VERSION, ArtifactSource
from provisioning.builder.builder import Buildx
from provisioning.builder.image import ensure_local_image, ensure_on_host
from provisioning.builder.nodes import Node, building_hosts, docker_container_nodes, node_name
from provisioning.builder.sshconfig import render_ssh_config, write_ssh_wrapper
from provisioning.errors import BuildfleetError
from provisioning.inventory import Inventory
from provisioning.remote.docker import Docker
from provisioning.state import FleetState


def buildkitd_toml(registry: str) -> str:
    if not registry:
        return "# managed by buildfleet\n"
    return f'# managed by buildfleet\n[registry."{registry}"]\n  http = true\n  insecure = true\n'


def prepare(
    builder: str, inventory: Inventory, state: FleetState, artifacts: ArtifactSource, buildx: Buildx, operator_arch: str
) -> tuple[Node, ...]:
    write_ssh_wrapper(
        state.root / "ssh-client", render_ssh_config(builder, inventory, state.ssh_key, state.known_hosts)
    )
    foreign = sorted({h.arch for h in inventory.hosts if h.arch != operator_arch})
    if foreign:
        raise BuildfleetError(
            f"the docker-container driver's BuildKit image is made for this machine's CPU "
            f"({operator_arch}); hosts of {', '.join(foreign)} need the remote driver for now"
        )
    tag = ensure_local_image(Docker(buildx.docker), artifacts.buildkit(operator_arch), BUILDKIT_VERSION)
    for host in building_hosts(inventory):
        ensure_on_host(buildx, node_name(builder, host.name), tag)
    config = state.root / "buildkitd-docker-container.toml"
    config.write_text(buildkitd_toml(inventory.registry))
    return docker_container_nodes(builder, inventory, tag, str(config))
