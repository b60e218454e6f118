"""Before a build: every emulated platform must have its QEMU interpreter on its host.

Without it buildkitd would fail mid-build with "exec format error" on one platform after
the others ran; this names the platform and host first, before anything starts.
"""

from __future__ import annotations

from collections.abc import Callable

from provisioning.errors import BuildfleetError
from provisioning.inventory import Inventory, InventoryHost
from provisioning.platforms import parse_platform
from provisioning.remote import facts as f
from provisioning.remote.facts import gather
from provisioning.remote.fanout import fan_out
from provisioning.remote.ssh import Transport


def missing_interpreters(host: InventoryHost, binfmt: f.Binfmt) -> list[str]:
    """Problems, one line each, for the host's emulated platforms. Pure."""
    problems = []
    for assigned in host.platforms:
        if assigned.native:
            continue
        arch = parse_platform(assigned.platform).qemu_arch
        if not binfmt.registered(arch):
            problems.append(
                f"{assigned.platform} cannot be built on {host.name}: its QEMU interpreter "
                f"qemu-{arch} is not registered with the F flag (run buildfleet configure)"
            )
    return problems


def check_emulation(inventory: Inventory, connect: Callable[[InventoryHost], Transport]) -> None:
    emulating = [h for h in inventory.hosts if any(not p.native for p in h.platforms)]

    def one(host: InventoryHost) -> list[str]:
        transport = connect(host)
        try:
            return missing_interpreters(host, gather(transport, {"binfmt": f.BinfmtStatus()})["binfmt"])
        finally:
            transport.close()

    found = fan_out(emulating, one).raise_failures("reading binfmt_misc")
    problems = [line for lines in found.values() for line in lines]
    if problems:
        raise BuildfleetError("; ".join(problems))
