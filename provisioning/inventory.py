"""The inventory: the one shape every target (aws, local, static) hands to later stages.

Later stages read only this, never a target's internals. It round-trips through plain
dicts so it can be a Pulumi stack output, a JSON file, or YAML written by hand.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from provisioning.errors import ConfigError
from provisioning.jsonstyle import camel
from provisioning.plan import Plan


@dataclass(frozen=True)
class HostPlatform:
    platform: str
    native: bool


@dataclass(frozen=True)
class InventoryHost:
    name: str
    role: str
    arch: str
    address: str  # where the operator connects (public IP on AWS, 127.0.0.1 locally)
    private_address: str
    ssh_user: str
    ssh_port: int = 22
    instance_type: str = ""
    platforms: tuple[HostPlatform, ...] = ()
    buildkitd_port: int = 1234  # where the operator reaches this host's buildkitd
    ssh_key: str = ""  # operator-side private key for this host; empty: the fleet's own key
    # a whole machine emulated by qemu-system (TCG; the vm target): its "native" times are
    # emulation too, and never stand for the CPU it imitates (a Graviton)
    full_system_emulation: bool = False
    pool: str = ""  # the pool whose balancer sends builds here ("" for none)
    ssh_jump: str = ""  # user@address:port of the jump host SSH goes through (ProxyJump), "" for none
    exchange_port: int = 0  # where CI jobs reach the token exchange at ``address``, if it runs here (0: unknown)

    @property
    def node(self) -> str:
        """What the builder has a node for: the host's pool, or the host itself."""
        return self.pool or self.name

    def to_dict(self) -> dict[str, Any]:
        return (
            {
                "name": self.name,
                "role": self.role,
                "arch": self.arch,
                "address": self.address,
                "privateAddress": self.private_address,
                "sshUser": self.ssh_user,
                "sshPort": self.ssh_port,
                "instanceType": self.instance_type,
                "buildkitdPort": self.buildkitd_port,
                "sshKey": self.ssh_key,
                "platforms": [{"platform": p.platform, "native": p.native} for p in self.platforms],
            }
            | ({"fullSystemEmulation": True} if self.full_system_emulation else {})
            | ({"pool": self.pool} if self.pool else {})
            | ({"sshJump": self.ssh_jump} if self.ssh_jump else {})
            | ({"exchangePort": self.exchange_port} if self.exchange_port else {})
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InventoryHost:
        try:
            return cls(
                name=str(data["name"]),
                role=str(data["role"]),
                arch=str(data["arch"]),
                address=str(data["address"]),
                private_address=str(data.get("privateAddress", "")),
                ssh_user=str(data["sshUser"]),
                ssh_port=int(data.get("sshPort", 22)),
                instance_type=str(data.get("instanceType", "")),
                buildkitd_port=int(data.get("buildkitdPort", 1234)),
                ssh_key=str(data.get("sshKey", "")),
                platforms=tuple(HostPlatform(str(p["platform"]), bool(p["native"])) for p in data.get("platforms", [])),
                full_system_emulation=bool(data.get("fullSystemEmulation", False)),
                pool=str(data.get("pool", "")),
                ssh_jump=str(data.get("sshJump", "")),
                exchange_port=int(data.get("exchangePort", 0)),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ConfigError(f"inventory host {data.get('name', '?')!r}: missing or bad field {error}") from None


@dataclass(frozen=True)
class Pool:
    """Hosts of one role behind a TCP balancer (TLS passes through to each buildkitd): one
    buildx node whose builds the balancer spreads, least connections first."""

    name: str
    address: str  # where the operator and CI reach the balancer
    port: int
    stick_ms: int = 0  # how long the balancer keeps sending one client's connections to one member

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "address": self.address, "port": self.port, "stickMs": self.stick_ms}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Pool:
        try:
            return cls(str(data["name"]), str(data["address"]), int(data["port"]), int(data.get("stickMs", 0)))
        except (KeyError, TypeError, ValueError) as error:
            raise ConfigError(f"inventory pool {data.get('name', '?')!r}: missing or bad field {error}") from None


@dataclass(frozen=True)
class Features:
    """What the target that made the hosts declares about them, as buildx drivers declare
    Features: the stages after it ask for one of these, never for the target's name."""

    on_this_machine: bool = False  # every host runs on the operator's machine: they share its CPUs, CI must run here
    cidr_firewall: bool = False  # buildkitd answers the networks allowedCidrs/buildkitdCidrs open (hosted runners too)
    instance_metadata: bool = False  # a cloud metadata endpoint builds must not reach
    wakes: bool = False  # hosts stopped when idle that a CI job can start again
    balancers_here: bool = False  # pools' balancers run on this machine and load the certificates when up starts them
    catalog_priced: bool = False  # hosts are the instance types the catalog prices: cost is what they cost

    def to_dict(self) -> dict[str, bool]:
        return {camel(f.name): getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Features:
        names = {camel(f.name): f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ConfigError(f"inventory features: unknown {', '.join(unknown)}")
        return cls(**{names[key]: bool(value) for key, value in data.items()})


# How a reader finds the features of an inventory saved before they were recorded: by its target.
Declared = Callable[[str], Features]


@dataclass(frozen=True)
class Inventory:
    target: str  # which target made it: for the operator and for making that target again, never for branching
    hosts: tuple[InventoryHost, ...]
    registry: str = ""  # host:port of a registry every node and the operator reach ("" if none)
    pools: tuple[Pool, ...] = ()
    features: Features = Features()

    def pool(self, name: str) -> Pool:
        for pool in self.pools:
            if pool.name == name:
                return pool
        raise ConfigError(f"inventory: host(s) of pool {name!r} but no balancer address for it")

    def members(self, pool: str) -> tuple[InventoryHost, ...]:
        return tuple(h for h in self.hosts if h.pool == pool)

    @property
    def platforms(self) -> tuple[str, ...]:
        """Every planned platform once, in host order: what the fleet builds (a pool's members
        all build the pool's)."""
        return tuple(dict.fromkeys(p.platform for h in self.hosts for p in h.platforms))

    def with_addresses(self, addresses: Mapping[str, tuple[str, str]]) -> Inventory:
        """The same hosts at new (public, private) addresses, e.g. EC2 hosts after a start."""
        moved = tuple(
            dataclasses.replace(h, address=addresses[h.name][0], private_address=addresses[h.name][1])
            if h.name in addresses
            else h
            for h in self.hosts
        )
        return dataclasses.replace(self, hosts=moved)

    def without(self, names: Iterable[str]) -> Inventory:
        """The fleet less the named hosts (and any pool left with no member), e.g. those powered off."""
        gone = set(names)
        hosts = tuple(h for h in self.hosts if h.name not in gone)
        pools = tuple(p for p in self.pools if any(h.pool == p.name for h in hosts))
        return dataclasses.replace(self, hosts=hosts, pools=pools)

    def host(self, name: str) -> InventoryHost:
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "hosts": [h.to_dict() for h in self.hosts],
            "registry": self.registry,
            "features": self.features.to_dict(),
        } | ({"pools": [p.to_dict() for p in self.pools]} if self.pools else {})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], declared: Declared | None = None) -> Inventory:
        """``declared`` gives the features of an inventory written before they were recorded;
        without it such an inventory is refused, never read as a target that declares nothing."""
        if "features" in data:
            features = Features.from_dict(data["features"])
        elif declared is not None:
            features = declared(str(data["target"]))
        else:
            raise ConfigError("inventory: no features recorded (an older buildfleet wrote it); up rewrites it")
        inventory = cls(
            str(data["target"]),
            tuple(InventoryHost.from_dict(h) for h in data["hosts"]),
            str(data.get("registry", "")),
            tuple(Pool.from_dict(p) for p in data.get("pools", [])),
            features,
        )
        for host in inventory.hosts:
            if host.pool:
                inventory.pool(host.pool)  # a pool member without its balancer is named now
        return inventory


@dataclass(frozen=True)
class Endpoint:
    """Where a target put one host: how the operator reaches its SSH and buildkitd."""

    address: str
    private_address: str
    ssh_port: int = 22
    buildkitd_port: int = 1234
    exchange_port: int = 0  # where the host's token exchange is reached, if it may run there


def inventory_from_plan(
    plan: Plan,
    target: str,
    endpoints: Mapping[str, Endpoint],
    ssh_user: str,
    registry: str = "",
    pools: tuple[Pool, ...] = (),
    features: Features = Features(),
) -> Inventory:
    """Join the plan with the endpoint a target gave each host (and each pool's balancer)."""
    hosts = []
    for spec in plan.hosts:
        endpoint = endpoints[spec.name]
        instance_type = plan.instance_types.get(spec.name)
        hosts.append(
            InventoryHost(
                name=spec.name,
                role=spec.role,
                arch=spec.arch,
                address=endpoint.address,
                private_address=endpoint.private_address,
                ssh_user=ssh_user,
                ssh_port=endpoint.ssh_port,
                instance_type=instance_type.name if instance_type else "",
                platforms=tuple(HostPlatform(str(a.platform), a.native) for a in plan.assignments_for(spec)),
                buildkitd_port=endpoint.buildkitd_port,
                pool=spec.pool,
                exchange_port=endpoint.exchange_port,
            )
        )
    return Inventory(target, tuple(hosts), registry, pools, features)
