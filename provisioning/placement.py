"""Which host builds which platform, and whether natively or under QEMU.

Pure and deterministic. Rules: a host outside the emulation role that runs the platform
natively wins; else an emulation host that runs it natively; else an emulation host
under QEMU. Among equal candidates the least-loaded host wins, ties going to the first
in fleet order, so extra hosts of a role share the work.

Hosts that name a pool are placed as one: a platform goes to the pool, every member
builds it, and a load balancer in front of them shares the builds (buildx itself sends all
builds of a platform to one node).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from provisioning.errors import PlacementError
from provisioning.platforms import Platform, native_platforms

EMULATION = "emulation"
NATIVE = "native"
QEMU = "qemu"


@dataclass(frozen=True)
class HostSpec:
    """A host as placement sees it: its name, role and what its CPU runs natively."""

    name: str
    role: str
    arch: str
    aarch32: bool = False
    pool: str = ""  # the pool this host serves in ("" for none): placed as one with its members

    @property
    def native(self) -> frozenset[Platform]:
        return native_platforms(self.arch, self.aarch32)

    @property
    def emulates(self) -> bool:
        return self.role == EMULATION


@dataclass(frozen=True)
class Assignment:
    platform: Platform
    host: str
    mode: str  # NATIVE or QEMU

    @property
    def native(self) -> bool:
        return self.mode == NATIVE


@dataclass(frozen=True)
class Placement:
    """The answer for every requested platform, in request order."""

    assignments: tuple[Assignment, ...]

    def for_host(self, host: str) -> tuple[Assignment, ...]:
        return tuple(a for a in self.assignments if a.host == host)

    def to_list(self) -> list[dict[str, object]]:
        return [
            {"platform": str(a.platform), "host": a.host, "mode": a.mode, "native": a.native} for a in self.assignments
        ]


def _least_loaded(candidates: Sequence[HostSpec], load: dict[str, int]) -> HostSpec:
    return min(candidates, key=lambda host: load[host.name])  # min keeps the first on ties


def _choose(platform: Platform, hosts: Sequence[HostSpec], load: dict[str, int]) -> Assignment | None:
    tiers = (
        ([h for h in hosts if not h.emulates and platform in h.native], NATIVE),
        ([h for h in hosts if h.emulates and platform in h.native], NATIVE),
        ([h for h in hosts if h.emulates], QEMU),
    )
    for candidates, mode in tiers:
        if candidates:
            host = _least_loaded(candidates, load)
            load[host.name] += 1
            return Assignment(platform, host.name, mode)
    return None


def _units(hosts: Sequence[HostSpec]) -> list[HostSpec]:
    """What placement chooses among: each host outside a pool, and each pool once (as its
    first member, renamed to the pool). A pool's members must run the same CPU."""
    units: dict[str, HostSpec] = {}
    for host in hosts:
        if not host.pool:
            units[host.name] = host
            continue
        first = units.setdefault(host.pool, HostSpec(host.pool, host.role, host.arch, host.aarch32))
        if (first.role, first.arch, first.aarch32) != (host.role, host.arch, host.aarch32):
            raise PlacementError(f"pool {host.pool}: host {host.name} is not like the pool's other hosts")
    return list(units.values())


def place(platforms: Iterable[Platform], hosts: Sequence[HostSpec]) -> Placement:
    """Place each platform once; platforms no host can build are all named in one error."""
    names = [h.name for h in hosts] + sorted({h.pool for h in hosts if h.pool})
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise PlacementError(f"host and pool names must be unique; repeated: {', '.join(duplicates)}")
    units = _units(hosts)
    load = {unit.name: 0 for unit in units}
    assignments, homeless = [], []
    for platform in dict.fromkeys(platforms):
        assignment = _choose(platform, units, load)
        if assignment is None:
            homeless.append(str(platform))
        else:
            assignments.append(assignment)
    if homeless:
        raise PlacementError(
            f"no host can build {', '.join(homeless)}: no host runs it natively and the fleet has no "
            "emulation host (add one, e.g. buildfleet:emulationCount 1, or drop the platform)"
        )
    return Placement(tuple(assignments))
