"""The operator's own machine: what runs buildfleet (and the local and vm targets' hosts)."""

from __future__ import annotations

import platform
import socket

from provisioning.errors import BuildfleetError
from provisioning.platforms import UNAME_TO_ARCH


def machine_arch() -> str:
    """This machine's CPU as amd64 or arm64: the only ones a local host or a BuildKit image is made for."""
    arch = UNAME_TO_ARCH.get(platform.machine())
    if arch not in ("amd64", "arm64"):
        raise BuildfleetError(f"buildfleet runs local hosts on amd64 or arm64 machines, not {platform.machine()}")
    return arch


def free_port(address: str) -> int:
    """A TCP port nothing listens on at ``address`` of this machine, for a service to take."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])
