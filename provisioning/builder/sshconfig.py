"""The ssh configuration the docker-container driver needs, kept in the fleet's state.

The docker CLI reaches ``ssh://HOST`` by running plain ``ssh`` with no way to pass
``-F`` (docker/cli#1301), so buildfleet writes its own config (alias, port, user, the
fleet's key, the pinned known_hosts, no host-key prompting) and a small ``ssh`` that
adds ``-F`` to it; buildx runs with that directory first on PATH. The user's ~/.ssh is
never touched.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from provisioning.builder.nodes import node_name
from provisioning.errors import BuildfleetError
from provisioning.inventory import Inventory


def render_ssh_config(builder: str, inventory: Inventory, default_key: Path, known_hosts: Path) -> str:
    """Pure: one ``Host`` block per host, keys and host keys pinned."""
    blocks = []
    for host in inventory.hosts:
        key = Path(host.ssh_key).expanduser() if host.ssh_key else default_key
        blocks.append(
            "\n".join(
                [
                    f"Host {node_name(builder, host.name)}",
                    f"  HostName {host.address}",
                    f"  Port {host.ssh_port}",
                    f"  User {host.ssh_user}",
                    f"  IdentityFile {key}",
                    "  IdentitiesOnly yes",
                    f"  UserKnownHostsFile {known_hosts}",
                    "  StrictHostKeyChecking yes",
                    "  BatchMode yes",
                ]
            )
        )
    return "\n\n".join(blocks) + "\n"


def write_ssh_wrapper(directory: Path, config_text: str) -> Path:
    """Write ``config`` and an ``ssh`` wrapper using it; return the directory for PATH."""
    real = shutil.which("ssh", path=os.defpath + ":/usr/local/bin")
    if real is None:
        raise BuildfleetError("ssh (the OpenSSH client) is not installed; the docker-container driver needs it")
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "config"
    config.write_text(config_text)
    wrapper = directory / "ssh"
    wrapper.write_text(
        f'#!/bin/sh\n# buildfleet: plain ssh with the fleet\'s own config\nexec {real} -F {config} "$@"\n'
    )
    wrapper.chmod(0o755)
    return directory
