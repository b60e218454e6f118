"""From settings to a plan: the fleet's hosts and the placement of every platform.

Needs no cloud account: ``buildfleet plan`` prints this before anything exists, and the
Pulumi program creates exactly these hosts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from provisioning.catalog import InstanceType
from provisioning.placement import HostSpec, Placement, place
from provisioning.settings import Settings


@dataclass(frozen=True)
class Plan:
    hosts: tuple[HostSpec, ...]
    instance_types: Mapping[str, InstanceType]  # host name -> its instance type
    placement: Placement

    def to_dict(self) -> dict[str, object]:
        return {
            "hosts": [
                {
                    "name": host.name,
                    "role": host.role,
                    "arch": host.arch,
                    "instanceType": self.instance_types[host.name].name,
                    "aarch32": host.aarch32,
                }
                for host in self.hosts
            ],
            "placement": self.placement.to_list(),
        }


def host_name(role: str, index: int) -> str:
    return f"{role}-{index}"


def plan_fleet(settings: Settings) -> Plan:
    hosts, types = [], {}
    for spec in settings.roles:
        for index in range(spec.count):
            name = host_name(spec.role, index)
            hosts.append(HostSpec(name, spec.role, spec.instance_type.arch, spec.instance_type.aarch32))
            types[name] = spec.instance_type
    return Plan(tuple(hosts), types, place(settings.platforms, hosts))
