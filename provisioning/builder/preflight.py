"""Before a build: every emulated platform must have its QEMU interpreter on its host.

Without it buildkitd would fail mid-build with "exec format error" on one platform after
the others ran; this names the platform and host first, before anything starts.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from provisioning.errors import BuildfleetError
from provisioning.hosts import facts as f
from provisioning.hosts.executor import gather
from provisioning.hosts.transport import Transport
from provisioning.inventory import Inventory, InventoryHost
from provisioning.platforms import parse_platform


def missing_interpreters(host: InventoryHost, binfmt: f.Binfmt) -> list[str]:
    """Problems, one line each, for the host's emulated platforms. Pure."""
    problems = []
    for assigned in host.platforms:
        if assigned.native:
            continue
        name = f"qemu-{parse_platform(assigned.platform).qemu_arch}"
        entry = binfmt.entries.get(name)
        if not binfmt.mounted or entry is None or not entry.enabled:
            problems.append(f"{assigned.platform} cannot be built on {host.name}: "
                            f"its QEMU interpreter {name} is not registered (run buildfleet configure)")
    return problems


def check_emulation(inventory: Inventory, connect: Callable[[InventoryHost], Transport]) -> None:
    emulating = [h for h in inventory.hosts if any(not p.native for p in h.platforms)]

    def one(host: InventoryHost) -> list[str]:
        transport = connect(host)
        try:
            return missing_interpreters(host, gather(transport, {"binfmt": f.BinfmtStatus()})["binfmt"])
        finally:
            transport.close()

    with ThreadPoolExecutor(max_workers=max(1, len(emulating))) as pool:
        problems = [line for lines in pool.map(one, emulating) for line in lines]
    if problems:
        raise BuildfleetError("; ".join(problems))
