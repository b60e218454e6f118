"""Everything the docker-container driver needs before ``docker buildx create``:
the fleet's ssh config, the BuildKit image on every host, and buildkitd's config."""

from __future__ import annotations


from provisioning.artifacts import BUILDKIT_VERSION
from provisioning.builder.builder import Buildx
from provisioning.builder.image import ensure_local_image, ensure_on_host
from provisioning.builder.nodes import DOCKER_CONTAINER, Node, TLSFiles, desired_nodes, ssh_alias
from provisioning.builder.sshconfig import render_ssh_config, write_ssh_wrapper
from provisioning.errors import BuildfleetError
from provisioning.hosts.configure import ArtifactSource
from provisioning.inventory import Inventory
from provisioning.local.docker import Docker
from provisioning.state import FleetState


def buildkitd_toml(registry: str) -> str:
    if not registry:
        return "# managed by buildfleet\n"
    return f'# managed by buildfleet\n[registry."{registry}"]\n  http = true\n  insecure = true\n'


def prepare(builder: str, inventory: Inventory, state: FleetState, artifacts: ArtifactSource,
            buildx: Buildx, operator_arch: str) -> tuple[Node, ...]:
    write_ssh_wrapper(state.root / "ssh-client",
                      render_ssh_config(builder, inventory, state.ssh_key, state.known_hosts))
    foreign = sorted({h.arch for h in inventory.hosts if h.arch != operator_arch})
    if foreign:
        raise BuildfleetError(f"the docker-container driver's BuildKit image is made for this machine's CPU "
                              f"({operator_arch}); hosts of {', '.join(foreign)} need the remote driver for now")
    tag = ensure_local_image(Docker(buildx.docker), artifacts.buildkit(operator_arch), BUILDKIT_VERSION)
    for host in inventory.hosts:
        if host.platforms:
            ensure_on_host(buildx, ssh_alias(builder, host.name), tag)
    config = state.root / "buildkitd-docker-container.toml"
    config.write_text(buildkitd_toml(inventory.registry))
    return desired_nodes(builder, inventory, TLSFiles.in_state(state.root / "tls"), DOCKER_CONTAINER, tag,
                         str(config))
