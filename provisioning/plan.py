"""From settings to a plan: the fleet's hosts and the placement of every platform.

Needs no cloud account: ``buildfleet plan`` prints this before anything exists, and the
Pulumi program creates exactly these hosts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from provisioning.catalog import InstanceType
from provisioning.errors import ConfigError
from provisioning.placement import EMULATION, Assignment, HostSpec, Placement, place
from provisioning.settings import Settings


@dataclass(frozen=True)
class Plan:
    hosts: tuple[HostSpec, ...]
    instance_types: Mapping[str, InstanceType]  # host name -> its type; cloud hosts only
    placement: Placement
    note: str = ""  # what the plan had to assume (the static target's CPUs before detection)

    @property
    def pools(self) -> dict[str, tuple[str, ...]]:
        """pool -> its member hosts, in fleet order."""
        pools: dict[str, tuple[str, ...]] = {}
        for host in self.hosts:
            if host.pool:
                pools[host.pool] = (*pools.get(host.pool, ()), host.name)
        return pools

    def assignments_for(self, host: HostSpec) -> tuple[Assignment, ...]:
        """What a host builds: its own platforms, or its pool's."""
        return self.placement.for_host(host.pool or host.name)

    def to_dict(self) -> dict[str, object]:
        return {
            "hosts": [
                {
                    "name": host.name,
                    "role": host.role,
                    "arch": host.arch,
                    "instanceType": self.instance_types[host.name].name if host.name in self.instance_types else "",
                    "aarch32": host.aarch32,
                    "pool": host.pool,
                }
                for host in self.hosts
            ],
            "placement": self.placement.to_list(),
        } | ({"note": self.note} if self.note else {})


def host_name(role: str, index: int) -> str:
    return f"{role}-{index}"


def pool_of(role: str, count: int) -> str:
    """The pool a role's hosts form: a native role with more than one host shares its builds
    through a balancer; emulation hosts split the foreign platforms between them instead."""
    return f"{role}-pool" if count > 1 and role != EMULATION else ""


def plan_fleet(settings: Settings) -> Plan:
    """The cloud plan: each host's CPU is the one its instance type has."""
    hosts, types = [], {}
    for spec in settings.roles:
        for index in range(spec.count):
            name = host_name(spec.role, index)
            hosts.append(
                HostSpec(
                    name,
                    spec.role,
                    spec.instance_type.arch,
                    spec.instance_type.aarch32,
                    pool_of(spec.role, spec.count),
                )
            )
            types[name] = spec.instance_type
    return Plan(tuple(hosts), types, place(settings.platforms, hosts))


LOCAL_REFUSAL = " and the local target cannot make native {role} hosts; set {role}Count to 0 (QEMU builds {role} here)"


def plan_on_machine(
    settings: Settings,
    arch: str,
    vms: Mapping[str, tuple[str, bool]] | None = None,
    refusal: str = LOCAL_REFUSAL,
) -> Plan:
    """The plan for hosts that all run on one machine of CPU ``arch`` (the local target), or
    as VMs on it: ``vms`` maps a role whose hosts are VMs to their (CPU, AArch32).

    No other CPU exists here, so a role asking for one is refused by name (``refusal``, with
    ``{role}``, says what to do instead) rather than faked.
    """
    hosts: list[HostSpec] = []
    for spec in settings.roles:
        cpu, aarch32 = (vms or {}).get(spec.role, (arch, False))
        if spec.count and spec.role not in (EMULATION, cpu):
            raise ConfigError(
                f"buildfleet:{spec.role}Count is {spec.count}, but this machine is {arch}"
                + refusal.format(role=spec.role)
            )
        pool = pool_of(spec.role, spec.count)
        hosts.extend(HostSpec(host_name(spec.role, i), spec.role, cpu, aarch32, pool) for i in range(spec.count))
    return Plan(tuple(hosts), {}, place(settings.platforms, hosts))
