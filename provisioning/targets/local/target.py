"""The local target: one container per planned host on this machine's Docker engine.

The containers are real SSH hosts (the same code path configures them as EC2 hosts).
They run without --privileged, which this machine refuses, but with every capability
except CAP_SYS_RESOURCE and unconfined seccomp/AppArmor so Docker and buildkitd can run
inside. Everything made carries the fleet's label, so ``down`` removes exactly that.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from provisioning.certs import FleetCA
from provisioning.checks import Check, failed, passed
from provisioning.errors import BuildfleetError
from provisioning.inventory import Endpoint, Features, Inventory, Pool, inventory_from_plan
from provisioning.placement import HostSpec
from provisioning.plan import Plan, plan_on_machine
from provisioning.remote.docker import Docker
from provisioning.remote.machine import machine_arch
from provisioning.settings import Settings
from provisioning.state import FleetState
from provisioning.targets.base import ConfigSources, HostState, TargetOptions, settings_with_defaults
from provisioning.targets.local.balancer import Backend, LocalBalancer
from provisioning.targets.local.binfmt import MachineBinfmt
from provisioning.targets.local.image import HostImageRecipe, debian_mirror, ensure_host_image
from provisioning.targets.local.registry import LocalRegistry, registry_binary
from provisioning.targets.preflight import MACHINE, attempt, binfmt_check, docker_checks, tool_check

TARGET = "local"
LABEL = "io.buildfleet.fleet"
HOST_LABEL = "io.buildfleet.host"
SSH_USER = "root"
LOOPBACK = "127.0.0.1"
SSH_WAIT_SECONDS = 60
STOPPED = frozenset({"created", "exited"})  # a host container docker start brings back (idle stop ends PID 1)
VOLUMES = ("docker", "buildkit")  # /var/lib/<name>: overlayfs cannot nest, so these are volumes


def run_flags(
    container: str,
    network: str,
    fleet: str,
    host: str,
    buildkitd_port: int,
    public_key: str,
    init: str = "none",
    exchange_port: int = 0,
) -> list[str]:
    """``docker run`` arguments for one host (everything but the image)."""
    systemd = (
        ["--env", "container=docker", "--tmpfs", "/run/lock", "--stop-signal", "SIGRTMIN+3"]
        if init == "systemd"
        else []
    )  # systemd's clean shutdown
    return [
        "--detach",
        "--name",
        container,
        "--hostname",
        host,
        "--label",
        f"{LABEL}={fleet}",
        "--label",
        f"{HOST_LABEL}={host}",
        "--network",
        network,
        "--publish",
        f"{LOOPBACK}::22",
        "--publish",
        f"{LOOPBACK}::{buildkitd_port}",
        *(
            ["--publish", f"{LOOPBACK}::{exchange_port}"] if exchange_port else []
        ),  # the token exchange, if it runs here
        "--cap-add",
        "ALL",
        "--cap-drop",
        "SYS_RESOURCE",
        "--security-opt",
        "seccomp=unconfined",
        "--security-opt",
        "apparmor=unconfined",
        "--security-opt",
        "systempaths=unconfined",
        "--device-cgroup-rule",
        "a *:* rwm",
        "--tmpfs",
        "/run",
        "--tmpfs",
        "/tmp",
        *[arg for name in VOLUMES for arg in ("--volume", f"{container}-{name}:/var/lib/{name}")],
        "--env",
        f"BUILDFLEET_AUTHORIZED_KEY={public_key}",
        "--env",
        f"BUILDFLEET_INIT={init}",
        *systemd,
    ]


def _published_port(info: dict, port: int, required: bool = True) -> int:
    bindings = (info.get("NetworkSettings", {}).get("Ports") or {}).get(f"{port}/tcp") or []
    for binding in bindings:
        if binding.get("HostIp") in (LOOPBACK, "") and binding.get("HostPort"):
            return int(binding["HostPort"])
    if not required:
        return 0
    raise BuildfleetError(f"container {info.get('Name', '?').lstrip('/')} does not publish port {port} on {LOOPBACK}")


def wait_for_ssh(port: int, deadline: float) -> None:
    """Until sshd sends its banner on 127.0.0.1:port (a TCP accept alone is Docker's proxy)."""
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((LOOPBACK, port), timeout=2) as sock:
                sock.settimeout(2)
                if sock.recv(4).startswith(b"SSH-"):
                    return
                last = "no SSH banner"
        except OSError as error:
            last = str(error)
        time.sleep(0.3)
    raise BuildfleetError(f"sshd on {LOOPBACK}:{port} did not answer within {SSH_WAIT_SECONDS}s ({last})")


@dataclass(frozen=True)
class Started:
    """What starting hosts gave: where each answers, its host key, the fleet's registry."""

    endpoints: dict[str, Endpoint]
    host_keys: dict[tuple[str, int], str]
    registry: str


def holder_alive(holder: str) -> bool:
    """A ledger holder (``FLEET (STATE_DIR)``) still exists while its fleet's state does; a holder
    in any other form is someone else's and left alone."""
    _, _, root = holder.partition(" (")
    if not root.endswith(")"):
        return True
    state = FleetState(Path(root[:-1]))
    try:
        return state.target_file.exists() or state.inventory_file.exists()
    except OSError:  # not ours to read: it may well be alive
        return True


@dataclass(frozen=True)
class LocalTarget:
    fleet: str
    state: FleetState
    cache_dir: Path
    sources: ConfigSources | None = None  # the user's configuration, for ``settings``
    docker: Docker = Docker()
    say: Callable[[str], None] = field(default=lambda line: None, compare=False)  # lines for the operator
    binfmt: MachineBinfmt = field(default_factory=MachineBinfmt)

    kind: ClassVar[str] = TARGET
    # This machine has no native arm64 CPU: its fleet is an amd64 host and an emulation host.
    # Idle stop only where asked: a container host powering itself off surprises more than it saves.
    defaults: ClassVar[Mapping[str, Any]] = {"arm64Count": 0, "idleStopMinutes": 0}
    features: ClassVar[Features] = Features(on_this_machine=True, balancers_here=True)

    @classmethod
    def from_options(cls, options: TargetOptions) -> LocalTarget:
        return cls(options.fleet, options.state, options.cache_dir, options.sources, say=options.on_output)

    def settings(self) -> Settings:
        raw = self.sources.raw() if self.sources else {}
        return settings_with_defaults(raw, self.defaults)

    def plan(self, settings: Settings) -> Plan:
        return plan_on_machine(settings, machine_arch())

    @property
    def network(self) -> str:
        return f"buildfleet-{self.fleet}"

    def container(self, host: str) -> str:
        return f"buildfleet-{self.fleet}-{host}"

    def up(self, settings: Settings) -> Inventory:
        """Create what is missing, start what is stopped, remove hosts the plan dropped."""
        plan = self.plan(settings)
        self.state.record_target(self.kind)
        with self.holding_binfmt(plan, plan.hosts):
            started = self.start_hosts(plan.hosts, settings)
            self.state.write_known_hosts(started.host_keys)
            pools = self.balance(plan.pools, started.endpoints)
            inventory = inventory_from_plan(
                plan, TARGET, started.endpoints, SSH_USER, started.registry, pools, self.features
            )
            self.state.save_inventory(inventory)
        return inventory

    @property
    def binfmt_holder(self) -> str:
        return f"{self.fleet} ({self.state.root})"

    @contextmanager
    def holding_binfmt(self, plan: Plan, containers: Sequence[HostSpec]) -> Iterator[None]:
        """The fleet holds the binfmt entries its emulation containers will register while the
        body brings them up; if the body fails on a fleet whose hosts were never configured (its
        first up), nothing was registered and nothing stays held."""
        configured_before = self.state.inventory_file.exists()
        self.claim_binfmt(plan, containers)
        try:
            yield
        except BaseException:
            if not configured_before:
                self.binfmt.release(self.binfmt_holder)
            raise

    def claim_binfmt(self, plan: Plan, containers: Sequence[HostSpec]) -> None:
        """Before any container registers QEMU in this machine's kernel: record what is there,
        and say so (binfmt_misc is machine-wide; ``down`` puts it back)."""
        self.binfmt.prune(holder_alive)  # holders a failed up of an older buildfleet left
        names = {h.name for h in containers}
        emulated = [a.platform for a in plan.placement.assignments if not a.native and a.host in names]
        entries = sorted({f"qemu-{platform.qemu_arch}" for platform in emulated})
        if not entries:
            return
        self.binfmt.claim(self.binfmt_holder, entries)
        self.say(
            f"{self.kind}: the emulation host registers {', '.join(entries)} in this machine's kernel "
            f"(binfmt_misc is machine-wide); buildfleet down puts back what is there now "
            f"(recorded in {self.binfmt.ledger})"
        )

    def start_hosts(self, hosts: Sequence[HostSpec], settings: Settings) -> Started:
        """One running container per host (and no other of this fleet's), and the registry;
        where each answers and its host key. Writes none of the fleet's files but its SSH key
        (another target, e.g. vm, may start some of its hosts here)."""
        self.docker.ping()
        image = ensure_host_image(self.docker, HostImageRecipe(debian_mirror()), self.cache_dir)
        public_key = self.state.ensure_ssh_key()
        if self.docker.inspect("network", self.network) is None:
            self.docker.run(["network", "create", "--label", f"{LABEL}={self.fleet}", self.network])
        wanted = {self.container(h.name): h.name for h in hosts}
        for stale in set(self.docker.names("container", f"{LABEL}={self.fleet}")) - set(wanted):
            self._remove_container(stale)
        for container, host in wanted.items():
            info = self.docker.inspect("container", container)
            if info is None:
                self._ensure_volumes(container)
                flags = run_flags(
                    container,
                    self.network,
                    self.fleet,
                    host,
                    settings.buildkitd_port,
                    public_key,
                    settings.local_init,
                    settings.exchange_port,  # published on every host: any may be named to run the exchange
                )
                self.docker.run(["run", *flags, image])
            elif not info["State"]["Running"]:
                self.docker.run(["start", container])
        endpoints, host_keys = self._endpoints(wanted, settings.buildkitd_port, settings.exchange_port)
        registry = self.registry.ensure(self._gateway(), registry_binary(self.cache_dir))
        return Started(endpoints, host_keys, registry)

    @property
    def registry(self) -> LocalRegistry:
        return LocalRegistry(self.state.root / "registry")

    @property
    def balancer(self) -> LocalBalancer:
        return LocalBalancer(self.state.root / "balancer")

    def pool_members(self, inventory: Inventory) -> LocalBalancer:
        return self.balancer

    def balance(self, pools: Mapping[str, Sequence[str]], endpoints: Mapping[str, Endpoint]) -> tuple[Pool, ...]:
        """HAProxy in front of each pool's members (as this machine reaches their buildkitd),
        health-checking them with the fleet's own client certificate."""
        if not pools:
            self.balancer.stop()  # the fleet may have had a pool before
            return ()
        ca = FleetCA(self.state.root / "tls")
        backends = {
            pool: [Backend(host, endpoints[host].address, endpoints[host].buildkitd_port) for host in members]
            for pool, members in pools.items()
        }
        return self.balancer.ensure(backends, ca.trust(), ca.client())

    def _gateway(self) -> str:
        """The operator's address on the fleet network: reachable from both sides."""
        info = self.docker.inspect("network", self.network) or {}
        try:
            return info["IPAM"]["Config"][0]["Gateway"]
        except (KeyError, IndexError, TypeError):
            raise BuildfleetError(f"network {self.network} has no gateway address for the registry") from None

    def _endpoints(
        self, wanted: dict[str, str], buildkitd_port: int, exchange_port: int
    ) -> tuple[dict[str, Endpoint], dict[tuple[str, int], str]]:
        deadline = time.monotonic() + SSH_WAIT_SECONDS
        endpoints, host_keys = {}, {}
        for container, host in wanted.items():
            info = self.docker.inspect("container", container) or {}
            ssh_port = _published_port(info, 22)
            wait_for_ssh(ssh_port, deadline)
            networks = info["NetworkSettings"]["Networks"]
            endpoints[host] = Endpoint(
                LOOPBACK,
                networks[self.network]["IPAddress"],
                ssh_port,
                _published_port(info, buildkitd_port),
                _published_port(info, exchange_port, required=False),  # 0: a container made before
            )
            host_keys[(LOOPBACK, ssh_port)] = self._host_key(container)
        return endpoints, host_keys

    def _host_key(self, container: str) -> str:
        """The host's own Ed25519 key, read through the Docker engine (a trusted channel)."""
        result = self.docker.run(["exec", container, "cat", "/etc/ssh/ssh_host_ed25519_key.pub"])
        key_type, key, *_ = result.stdout.split()
        return f"{key_type} {key}"

    def _ensure_volumes(self, container: str) -> None:
        for suffix in VOLUMES:
            if self.docker.inspect("volume", f"{container}-{suffix}") is None:
                self.docker.run(["volume", "create", "--label", f"{LABEL}={self.fleet}", f"{container}-{suffix}"])

    def _remove_container(self, container: str) -> None:
        self.docker.run(["rm", "--force", "--volumes", container])
        for suffix in VOLUMES:
            self.docker.run(["volume", "rm", "--force", f"{container}-{suffix}"], check=False)

    def wake(self, settings: Settings) -> Inventory:
        """Starting what is stopped and reading where it answers is what ``up`` does."""
        return self.up(settings)

    def preflight(self, settings: Settings) -> list[Check]:
        """The engine, buildx, binfmt_misc, the registry binary, HAProxy where a pool needs it."""
        checks = [*docker_checks(self.docker), binfmt_check()]
        checks.append(
            attempt(MACHINE, "registry", lambda: registry_binary(self.cache_dir), "run .ci/prepare (as root)")
        )
        if self.plan(settings).pools:
            checks.append(tool_check("haproxy", "haproxy (apt-get install haproxy)", "the pools' balancer"))
        return checks

    def drop_stale_holds(self) -> list[Check]:
        """The binfmt ledger's holders whose fleet state is gone (a failed up of an older
        buildfleet, a state directory removed by hand), dropped, and the table put back
        where no fleet holds an entry any more."""
        pruned = self.binfmt.prune(holder_alive)
        checks = [
            failed(MACHINE, "binfmt holders", problem, "see the detail, then doctor again") for problem in pruned.failed
        ]
        done = "; ".join(pruned.done) if pruned.done else "every holder is a fleet that exists"
        return checks or [passed(MACHINE, "binfmt holders", done)]

    def status(self) -> list[HostState]:
        rows = []
        for container in self.docker.names("container", f"{LABEL}={self.fleet}"):
            info = self.docker.inspect("container", container) or {}
            state = info.get("State", {}).get("Status", "missing")
            host = info.get("Config", {}).get("Labels", {}).get(HOST_LABEL, "")
            rows.append(HostState(host, container, state, state in STOPPED))
        return rows

    def down(self) -> list[str]:
        """Remove every container, volume and network of this fleet, and its registry; then, if a
        binfmt entry could not be put back, fail, so the fleet's state stays for a re-run."""
        released = self.binfmt.release(self.binfmt_holder)
        pruned = self.binfmt.prune(holder_alive)
        released.done += pruned.done
        released.failed += pruned.failed
        removed = released.done
        if self.balancer.running():
            self.balancer.stop()
            removed.append("balancer process")
        if self.registry.running():
            self.registry.stop()
            removed.append("registry process")
        for container in self.docker.names("container", f"{LABEL}={self.fleet}"):
            self._remove_container(container)
            removed.append(f"container {container}")
        for volume in self.docker.names("volume", f"{LABEL}={self.fleet}"):
            self.docker.run(["volume", "rm", "--force", volume])
            removed.append(f"volume {volume}")
        for network in self.docker.names("network", f"{LABEL}={self.fleet}"):
            self.docker.run(["network", "rm", network])
            removed.append(f"network {network}")
        if released.failed:
            for line in removed:
                self.say(line)
            raise BuildfleetError(
                "; ".join(released.failed) + f": the fleet's state is kept, so `buildfleet down --fleet {self.fleet}` "
                "run again as root puts it back"
            )
        return removed
