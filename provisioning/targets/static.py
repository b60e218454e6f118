"""The static target: hosts that already exist, listed in a YAML inventory file.

For an on-prem Graviton box, a Raspberry Pi, or EC2 made elsewhere. The file says how to
reach each host and its role; the CPU (and whether it runs 32-bit ARM natively) is
detected over SSH, never taken from the file. Host keys must be pinned, either in the
file (``hostKey``) or in the operator's ~/.ssh/known_hosts; none is accepted on sight.

    hosts:
      - name: graviton
        address: 203.0.113.20
        user: ubuntu
        role: arm64                # amd64 | arm64 | emulation
        key: ~/.ssh/id_ed25519     # optional (default: ~/.ssh/id_ed25519)
        port: 22                   # optional
        hostKey: ssh-ed25519 AAAA… # optional if ~/.ssh/known_hosts knows the host
        buildkitdPort: 1234        # optional
        pool: amd64-pool           # optional: this host serves in a pool (see pools)
    pools:                         # optional: a TCP balancer you run per pool
      - name: amd64-pool
        address: builds.internal   # what buildx and CI dial; TLS must pass through to the members
        port: 1234

A pool is one builder node at its balancer's address, which every member's server
certificate then carries; its members must share one role.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import paramiko
import yaml

from provisioning.checks import Check, failed, passed
from provisioning.errors import ConfigError, did_you_mean
from provisioning.inventory import Features, Inventory, InventoryHost, Pool
from provisioning.placement import HostSpec, place
from provisioning.plan import Plan
from provisioning.remote.ssh import split_jump
from provisioning.settings import ROLES, Settings
from provisioning.state import FleetState, known_hosts_name
from provisioning.targets.base import ConfigSources, HostState, TargetOptions, settings_with_defaults
from provisioning.targets.detect import detect_all, placed
from provisioning.targets.preflight import MACHINE, attempt

TARGET = "static"
REQUIRED = ("name", "address", "role")
OPTIONAL = ("user", "key", "port", "hostKey", "buildkitdPort", "pool", "jump", "jumpHostKey")
POOL_KEYS = ("name", "address", "port")
TOP_LEVEL = ("hosts", "pools")
ASSUMED_ARCH = {"amd64": "amd64", "arm64": "arm64"}


@dataclass(frozen=True)
class StaticHost:
    name: str
    address: str
    user: str
    role: str
    key: Path
    port: int = 22
    host_key: str = ""
    buildkitd_port: int = 1234
    pool: str = ""
    jump: str = ""  # user@address:port of the jump host (ProxyJump), "" for none
    jump_host_key: str = ""


def ssh_options(entry: Mapping[str, Any], config: paramiko.SSHConfig | None) -> dict[str, Any]:
    """The entry's address, user, port, key and jump host, the operator's ~/.ssh/config filling
    what the file leaves out, as OpenSSH does (a Host alias as address; HostName, User, Port,
    IdentityFile, ProxyJump); the file's own values win."""
    looked = config.lookup(str(entry["address"])) if config else {}
    jump = str(entry.get("jump") or looked.get("proxyjump", ""))
    jump = "" if jump.lower() == "none" else jump  # ProxyJump none: connect directly
    if jump and config and "@" not in jump and ":" not in jump:  # an alias of its own
        hop = config.lookup(jump)
        jump = f"{hop.get('user', 'root')}@{hop.get('hostname', jump)}:{hop.get('port', 22)}"
    identity = (looked.get("identityfile") or ["~/.ssh/id_ed25519"])[0]
    return {
        "address": str(looked.get("hostname", entry["address"])),
        "user": entry.get("user") or looked.get("user"),
        "port": entry.get("port", looked.get("port", 22)),
        "key": str(entry.get("key", identity)),
        "jump": jump,
    }


def parse_static_hosts(
    document: Any, source: str, ssh_config: paramiko.SSHConfig | None = None
) -> tuple[StaticHost, ...]:
    """Validate the file's entries; each error names the host and the key."""
    stray = sorted(set(document) - set(TOP_LEVEL)) if isinstance(document, Mapping) else []
    if stray:
        raise ConfigError(
            f"{source}: unknown top-level key {stray[0]!r}{did_you_mean(str(stray[0]), TOP_LEVEL)} "
            f"(known: {', '.join(TOP_LEVEL)})"
        )
    entries = document.get("hosts") if isinstance(document, Mapping) else None
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{source}: expected a non-empty 'hosts:' list")
    hosts, names = [], set()
    for position, entry in enumerate(entries):
        label = f"{source}: host #{position + 1}"
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{label}: expected a mapping of {', '.join(REQUIRED)}")
        label = f"{source}: host {entry.get('name', f'#{position + 1}')!r}"
        unknown = sorted(set(entry) - set(REQUIRED) - set(OPTIONAL))
        if unknown:
            raise ConfigError(
                f"{label}: unknown key {unknown[0]!r}{did_you_mean(str(unknown[0]), REQUIRED + OPTIONAL)} "
                f"(known: {', '.join(REQUIRED + OPTIONAL)})"
            )
        for key in REQUIRED:
            if not entry.get(key):
                raise ConfigError(f"{label}: '{key}' is required")
        entry = {**entry, **ssh_options(entry, ssh_config)}
        if not entry.get("user"):
            raise ConfigError(f"{label}: 'user' is required (or a User for {entry['address']} in ~/.ssh/config)")
        if entry["jump"] and not JUMP.fullmatch(entry["jump"]):
            raise ConfigError(f"{label}: jump {entry['jump']!r} is not [user@]host[:port]")
        if entry["role"] not in ROLES:
            raise ConfigError(f"{label}: role {entry['role']!r} is not one of {', '.join(ROLES)}")
        if entry["name"] in names:
            raise ConfigError(f"{label}: the name is used twice")
        names.add(entry["name"])
        try:
            port, buildkitd_port = int(entry.get("port", 22)), int(entry.get("buildkitdPort", 1234))
        except (TypeError, ValueError):
            raise ConfigError(f"{label}: 'port' and 'buildkitdPort' must be numbers") from None
        _check_values(label, entry, port, buildkitd_port)
        if "pool" in entry and not SAFE["name"].fullmatch(str(entry["pool"])):
            raise ConfigError(f"{label}: pool {str(entry['pool'])!r} is not a valid pool name")
        hosts.append(
            StaticHost(
                str(entry["name"]),
                str(entry["address"]),
                str(entry["user"]),
                str(entry["role"]),
                Path(entry["key"]).expanduser(),
                port,
                str(entry.get("hostKey", "")).strip(),
                buildkitd_port,
                str(entry.get("pool", "")),
                entry["jump"],
                str(entry.get("jumpHostKey", "")).strip(),
            )
        )
    return tuple(hosts)


def parse_static_pools(document: Any, source: str, hosts: tuple[StaticHost, ...]) -> tuple[Pool, ...]:
    """The file's ``pools:``: each named by its members, each member's pool listed, one role per pool."""
    entries = (document.get("pools") or []) if isinstance(document, Mapping) else []
    if not isinstance(entries, list):
        raise ConfigError(f"{source}: 'pools' must be a list of {', '.join(POOL_KEYS)}")
    pools: dict[str, Pool] = {}
    for position, entry in enumerate(entries):
        name = entry.get("name") if isinstance(entry, Mapping) else None
        label = f"{source}: pool {name!r}" if name else f"{source}: pool #{position + 1}"
        if not isinstance(entry, Mapping) or sorted(entry) != sorted(POOL_KEYS):
            raise ConfigError(f"{label}: expected exactly {', '.join(POOL_KEYS)}")
        try:
            port = int(entry["port"])
        except (TypeError, ValueError):
            raise ConfigError(f"{label}: 'port' must be a number") from None
        _check_values(label, {"name": entry["name"], "address": entry["address"]}, port, port)
        pools[str(entry["name"])] = Pool(str(entry["name"]), str(entry["address"]), port)
    for host in hosts:
        if host.pool and host.pool not in pools:
            raise ConfigError(f"{source}: host {host.name!r}: pool {host.pool!r} is not under 'pools:'")
    for name in pools:
        roles = {h.role for h in hosts if h.pool == name}
        if len(roles) != 1:
            raise ConfigError(
                f"{source}: pool {name!r} needs members of one role (has: {', '.join(sorted(roles)) or 'none'})"
            )
    return tuple(pools.values())


# What may reach an ssh_config line, a certificate's file name or a command line: no spaces,
# newlines or quotes (a `user` holding "\nProxyCommand ..." would become a config line).
SAFE = {
    "name": re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}"),
    "user": re.compile(r"[a-z_][a-z0-9_.-]{0,31}"),
    "address": re.compile(r"[A-Za-z0-9][A-Za-z0-9.:-]{0,252}"),
}
JUMP = re.compile(r"(?:[a-z_][a-z0-9_.-]{0,31}@)?[A-Za-z0-9][A-Za-z0-9.-]{0,252}(?::[0-9]{1,5})?")


def _check_values(label: str, entry: Mapping[str, Any], port: int, buildkitd_port: int) -> None:
    for key, pattern in SAFE.items():
        if key in entry and not pattern.fullmatch(str(entry[key])):
            raise ConfigError(f"{label}: {key} {str(entry[key])!r} is not a valid {key} (allowed: {pattern.pattern})")
    for key, value in (("port", port), ("buildkitdPort", buildkitd_port)):
        if not 1 <= value <= 65535:
            raise ConfigError(f"{label}: {key} {value} is not a TCP port (1-65535)")


def load_static_hosts(path: Path, ssh_config: Path | None = None) -> tuple[tuple[StaticHost, ...], tuple[Pool, ...]]:
    try:
        document = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"static inventory {path} does not exist") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"static inventory {path} is not valid YAML: {error}") from None
    config = paramiko.SSHConfig.from_path(str(ssh_config)) if ssh_config and ssh_config.is_file() else None
    hosts = parse_static_hosts(document, str(path), config)
    return hosts, parse_static_pools(document, str(path), hosts)


def pinned_key(host: StaticHost, user_known_hosts: Path, field: str = "hostKey") -> str:
    """'type base64' for the host, from the file or the operator's known_hosts."""
    if host.host_key:
        parts = host.host_key.split()
        if len(parts) < 2:
            raise ConfigError(f"host {host.name!r}: hostKey must be 'TYPE BASE64' as in known_hosts")
        return f"{parts[0]} {parts[1]}"
    lookup = known_hosts_name(host.address, host.port)
    known = paramiko.HostKeys(str(user_known_hosts)) if user_known_hosts.exists() else paramiko.HostKeys()
    entry = known.lookup(lookup)
    if entry:
        key_type = sorted(entry.keys())[0]
        return f"{key_type} {entry[key_type].get_base64()}"
    raise ConfigError(
        f"host {host.name!r} ({lookup}): no pinned host key; add {field}: to the inventory "
        f"(the host's /etc/ssh/ssh_host_ed25519_key.pub, read over a channel you trust)"
    )


@dataclass(frozen=True)
class StaticTarget:
    path: Path | None  # the YAML host list (needed by up only)
    state: FleetState
    user_known_hosts: Path = Path("~/.ssh/known_hosts").expanduser()
    ssh_config: Path = Path("~/.ssh/config").expanduser()  # Host aliases, User, Port, IdentityFile, ProxyJump
    sources: ConfigSources | None = None

    kind: ClassVar[str] = TARGET
    # the user's own machines: never powered off unless asked
    defaults: ClassVar[Mapping[str, Any]] = {"arm64Count": 0, "idleStopMinutes": 0}
    features: ClassVar[Features] = Features()  # hosts someone else runs, reached where the network routes

    @classmethod
    def from_options(cls, options: TargetOptions) -> StaticTarget:
        return cls(options.inventory_file, options.state, sources=options.sources)

    def settings(self) -> Settings:
        return settings_with_defaults(self.sources.raw() if self.sources else {}, self.defaults)

    def plan(self, settings: Settings) -> Plan:
        """The file checked as up checks it (hosts, pools, a pinned key for each), without
        connecting, and the placement if each host's CPU is its role's: up detects the real ones."""
        if self.path is None:
            raise ConfigError("plan --target static needs --inventory FILE (the YAML list of existing hosts)")
        hosts, _ = load_static_hosts(self.path, self.ssh_config)
        for host in hosts:
            self._pins(host)
        specs = [HostSpec(h.name, h.role, ASSUMED_ARCH.get(h.role, "amd64"), False, h.pool) for h in hosts]
        note = (
            f"{self.path}: valid, every host key pinned; nothing was contacted. Placement assumes each host's CPU "
            "is its role's (emulation hosts amd64) and no 32-bit ARM at EL0: up detects the real CPUs over SSH "
            "and places again (an arm64 host that runs 32-bit ARM builds arm/v7 and arm/v6 natively)."
        )
        return Plan(tuple(specs), {}, place(settings.platforms, specs), note)

    def up(self, settings: Settings) -> Inventory:
        if self.path is None:
            raise ConfigError("up --target static needs --inventory FILE (a YAML list of existing hosts)")
        hosts, pools = load_static_hosts(self.path, self.ssh_config)
        pins = {where: key for h in hosts for where, key in self._pins(h).items()}  # every key found before a write
        self.state.record_target(self.kind)
        self.state.write_known_hosts(pins)
        probes = [self._probe(h, settings.exchange_port) for h in hosts]
        specs = [replace(s, pool=h.pool) for s, h in zip(detect_all(probes, self.state), hosts, strict=True)]
        placement = place(settings.platforms, specs)
        placed_hosts = tuple(placed(p, s, placement) for p, s in zip(probes, specs, strict=True))
        inventory = Inventory(TARGET, placed_hosts, pools=pools, features=self.features)
        self.state.save_inventory(inventory)
        return inventory

    def wake(self, settings: Settings) -> Inventory:
        """Static hosts are the user's to start: this only finds them again over SSH."""
        return self.up(settings)

    def preflight(self, settings: Settings) -> list[Check]:
        """The file as plan checks it, and each host's SSH key readable here."""
        checks = [attempt(MACHINE, "inventory", lambda: self.plan(settings).note, "fix the file as the detail says")]
        if checks[0].ok and self.path is not None:
            for host in load_static_hosts(self.path, self.ssh_config)[0]:
                readable = host.key.is_file() and os.access(host.key, os.R_OK)
                checks.append(
                    passed(host.name, "ssh key", str(host.key))
                    if readable
                    else failed(host.name, "ssh key", f"{host.key} is not a readable file", "set key: in the inventory")
                )
        return checks

    def status(self) -> list[HostState]:
        return []  # the hosts were there before buildfleet; it neither starts nor stops them

    def down(self) -> list[str]:
        return []  # and they stay: only the fleet's local files go (the CLI removes those)

    def _pins(self, host: StaticHost) -> dict[tuple[str, int], str]:
        """The host's pinned key and its jump host's: neither is ever accepted on sight."""
        pins = {(host.address, host.port): pinned_key(host, self.user_known_hosts)}
        if host.jump:
            _, address, port = split_jump(host.jump)
            hop = StaticHost(f"{host.name}'s jump host", address, "", host.role, host.key, port, host.jump_host_key)
            pins[(address, port)] = pinned_key(hop, self.user_known_hosts, "jumpHostKey")
        return pins

    @staticmethod
    def _probe(host: StaticHost, exchange_port: int) -> InventoryHost:
        """The host as the file declares it (the token exchange, should it run there, at
        exchangePort on its address); its CPU and platforms come from detection."""
        return InventoryHost(
            name=host.name,
            role=host.role,
            arch="",
            address=host.address,
            private_address=host.address,
            ssh_user=host.user,
            ssh_port=host.port,
            buildkitd_port=host.buildkitd_port,
            ssh_key=str(host.key),
            ssh_jump=host.jump,
            exchange_port=exchange_port,
        )
