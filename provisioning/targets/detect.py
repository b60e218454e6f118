"""What a host's CPU runs natively, read over SSH, never assumed: for targets whose hosts
exist before buildfleet places platforms on them (static hosts, local VMs)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from provisioning.errors import ConfigError
from provisioning.inventory import HostPlatform, InventoryHost
from provisioning.placement import EMULATION, HostSpec, Placement
from provisioning.remote import facts as f
from provisioning.remote.facts import gather
from provisioning.remote.fanout import fan_out
from provisioning.remote.ssh import connect
from provisioning.state import FleetState


def detect(host: InventoryHost, state: FleetState) -> HostSpec:
    """The host's CPU (uname -m) and whether it runs 32-bit ARM at EL0 (lscpu's op-modes)."""
    transport = connect(host, state)
    try:
        found = gather(transport, {"arch": f.Arch(), "aarch32": f.Aarch32()})
    finally:
        transport.close()
    if host.role != EMULATION and found["arch"] != host.role:
        raise ConfigError(
            f"host {host.name!r} is declared role {host.role} but its CPU is {found['arch']} "
            "(detected over SSH); fix its role"
        )
    return HostSpec(host.name, host.role, found["arch"], found["aarch32"] and found["arch"] == "arm64")


def detect_all(hosts: Sequence[InventoryHost], state: FleetState) -> list[HostSpec]:
    """Every host at once; each one that fails is named."""
    return list(fan_out(hosts, lambda host: detect(host, state)).raise_failures("detecting the CPU over SSH").values())


def placed(host: InventoryHost, spec: HostSpec, placement: Placement) -> InventoryHost:
    """The host with its detected CPU and the platforms placement gave it (or its pool)."""
    platforms = tuple(HostPlatform(str(a.platform), a.native) for a in placement.for_host(spec.pool or host.name))
    return dataclasses.replace(host, arch=spec.arch, platforms=platforms, pool=spec.pool)
