"""The vm target: the local fleet, except that the hosts of some roles (default: arm64) are
full-system VMs on this machine, so a real arm64 kernel runs arm64 and 32-bit ARM builds
natively and the cloud-init bootstrap EC2 hosts get (the same user data, the pinned host
key) runs for real.

The VMs run under QEMU's TCG: a correctness tier, not a speed figure. Each boots the cached
image (artifacts/debian/vm-image.sh) behind its own overlay, with a NoCloud seed holding the
user data the Pulumi program gives EC2 and the meta-data EC2's key pair would give.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from provisioning.checks import Check, passed
from provisioning.cloudinit import console_host_key_cloud_config, host_key_from_console, nocloud_meta_data
from provisioning.errors import BuildfleetError, tail
from provisioning.inventory import Endpoint, Features, Inventory, InventoryHost
from provisioning.placement import EMULATION, HostSpec, place
from provisioning.plan import Plan, plan_on_machine
from provisioning.remote.machine import free_port, machine_arch
from provisioning.remote.ssh import connect
from provisioning.remote.wait import wait_for_hosts
from provisioning.removal import unlink_inside
from provisioning.settings import Settings
from provisioning.state import FleetState
from provisioning.targets.base import ConfigSources, HostState, TargetOptions, settings_with_defaults
from provisioning.targets.detect import detect_all, placed
from provisioning.targets.local.balancer import LocalBalancer
from provisioning.targets.local.target import SSH_USER as CONTAINER_USER
from provisioning.targets.local.target import LocalTarget
from provisioning.targets.preflight import MACHINE, tool_check
from provisioning.targets.vm.qemu import LOOPBACK, VmImage, VmProcess, VmSpec

TARGET = "vm"
VM_USER = "admin"  # the Debian AMI's default user: the image's cloud-init makes it
GUEST_ADDRESS = "10.0.2.15"  # QEMU user networking gives every guest this address
BOOT_SECONDS = 900  # SSH and cloud-init under TCG: ~25 s measured; the rest is slack for a busy machine
# CPUs whose VM keeps AArch32 at EL0 (qemu.MACHINES picks neoverse-n1): the plan expects it, up detects it.
AARCH32_VMS = {"arm64"}


def vm_arch(role: str, machine: str) -> str:
    return machine if role == EMULATION else role


VM_IMAGE_SCRIPT = Path(__file__).resolve().parents[2] / "artifacts" / "debian" / "vm-image.sh"
# what vm-image.sh and the VMs need on this machine: tool -> the Debian package that has it
VM_TOOLS = {
    "mmdebstrap": "mmdebstrap",
    "arch-test": "arch-test",
    "qemu-img": "qemu-utils",
    "cloud-localds": "cloud-image-utils",
    "qemu-system-aarch64": "qemu-system-arm",
}


def newest_image(cache_dir: Path, arch: str) -> VmImage | None:
    """The most recently built image for ``arch`` (vm/<key>/<arch>/ with its checksums)."""
    found = sorted(cache_dir.glob(f"vm/*/{arch}/SHA256SUMS"), key=lambda p: p.stat().st_mtime)
    return VmImage(found[-1].parent) if found else None


def ensure_image(cache_dir: Path, arch: str, say: Callable[[str], None]) -> VmImage:
    """The cached image, or one built now: only the vm target needs it, so the local main job
    never waits for it. Building runs Debian's mmdebstrap as root, once per recipe."""
    image = newest_image(cache_dir, arch)
    if image is not None:
        return image
    missing = sorted({package for tool, package in VM_TOOLS.items() if shutil.which(tool) is None})
    if missing:
        raise BuildfleetError(
            f"no {arch} VM image in {cache_dir / 'vm'}, and this machine lacks what builds and runs one: "
            f"apt-get install {' '.join(missing)} (as root), then run this again"
        )
    say(
        f"no {arch} VM image in {cache_dir / 'vm'} yet: building it now with {VM_IMAGE_SCRIPT.name} "
        "(once; 13 to 18 minutes on a 2-core machine, its progress below)"
    )
    built = subprocess.run(["bash", str(VM_IMAGE_SCRIPT), str(cache_dir), arch], stdout=sys.stderr, check=False)
    image = newest_image(cache_dir, arch)
    if built.returncode != 0 or image is None:
        raise BuildfleetError(
            f"{VM_IMAGE_SCRIPT} {cache_dir} {arch} failed (exit {built.returncode}): see its output above"
        )
    return image


@dataclass(frozen=True)
class VmHost:
    """One VM's files in the fleet's state: <state>/vm/<host>/."""

    directory: Path

    def ports(self) -> tuple[int, int]:
        """SSH and buildkitd ports on 127.0.0.1, chosen once and kept, so a restart keeps its address."""
        path = self.directory / "ports.json"
        if not path.exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"ssh": free_port(LOOPBACK), "buildkitd": free_port(LOOPBACK)}))
        ports = json.loads(path.read_text())
        return int(ports["ssh"]), int(ports["buildkitd"])

    def exchange_port(self) -> int:
        """The token exchange's port on 127.0.0.1, chosen once beside the others (a VM started
        before it was chosen forwards it from its next start)."""
        self.ports()
        path = self.directory / "ports.json"
        ports = json.loads(path.read_text())
        if "exchange" not in ports:
            path.write_text(json.dumps({**ports, "exchange": free_port(LOOPBACK)}))
        return int(json.loads(path.read_text())["exchange"])

    def made_key(self) -> str | None:
        """The host key an older buildfleet made here and sent in the VM's user data (``type
        base64``), for a VM made then; None for one that made its own."""
        public = self.directory / "ssh_host_ed25519_key.pub"
        return " ".join(public.read_text().split()[:2]) if public.exists() else None


CONSOLE_POLL_SECONDS = 2.0


def host_key_on_console(spec: VmSpec, process: VmProcess, timeout: float) -> str:
    """The host key the VM printed on its serial console at its first boot (cloud-init's
    keys_to_console), waited for: pinned before the first SSH connection."""
    deadline = time.monotonic() + timeout
    while True:
        shown = spec.console.read_text(errors="replace") if spec.console.exists() else ""
        key = host_key_from_console(shown)
        if key:
            return key
        if process.pid() is None:
            raise BuildfleetError(f"VM {spec.name} stopped before it showed its SSH host key (console: {spec.console})")
        if time.monotonic() > deadline:
            raise BuildfleetError(
                f"VM {spec.name} showed no SSH host key on its serial console within {timeout:.0f} s (console: "
                f"{spec.console}): its cloud-init prints it late in the first boot; if the VM is still booting, "
                "run up again"
            )
        time.sleep(CONSOLE_POLL_SECONDS)


def make_seed(seed: Path, user_data: str, meta_data: str) -> None:
    """A NoCloud seed disk (cloud-localds: an ISO 9660 labelled cidata)."""
    with tempfile.TemporaryDirectory() as work:
        (Path(work) / "user-data").write_text(user_data)
        (Path(work) / "meta-data").write_text(meta_data)
        try:
            result = subprocess.run(
                ["cloud-localds", str(seed), str(Path(work) / "user-data"), str(Path(work) / "meta-data")],
                capture_output=True,
                text=True,
            )
        except FileNotFoundError:
            raise BuildfleetError("cloud-localds is not installed (apt install cloud-image-utils)") from None
    if result.returncode != 0:
        raise BuildfleetError(f"making the NoCloud seed {seed} failed: {tail(result.stderr)}")


@dataclass(frozen=True)
class VmTarget:
    fleet: str
    state: FleetState
    cache_dir: Path
    sources: ConfigSources | None = None
    say: Callable[[str], None] = field(default=lambda line: None, compare=False)  # lines for the operator

    kind: ClassVar[str] = TARGET
    # the default fleet: amd64, arm64 (a VM) and emulation hosts; idle stop only where asked
    defaults: ClassVar[Mapping[str, Any]] = {"idleStopMinutes": 0}
    features: ClassVar[Features] = Features(on_this_machine=True, balancers_here=True)

    @classmethod
    def from_options(cls, options: TargetOptions) -> VmTarget:
        return cls(options.fleet, options.state, options.cache_dir, options.sources, say=options.on_output)

    @property
    def local(self) -> LocalTarget:
        """The container hosts (every role not in vmRoles), the network and the registry."""
        return LocalTarget(self.fleet, self.state, self.cache_dir, say=self.say)

    def settings(self) -> Settings:
        return settings_with_defaults(self.sources.raw() if self.sources else {}, self.defaults)

    def plan(self, settings: Settings) -> Plan:
        """The expected placement; up places again from what each host's CPU reports."""
        machine = machine_arch()
        vms = {}
        for role in settings.vm_roles:
            arch = vm_arch(role, machine)
            vms[role] = (arch, arch in AARCH32_VMS)
        refusal = ": add {role} to buildfleet:vmRoles to run those hosts as VMs"
        return plan_on_machine(settings, machine, vms, refusal)

    def vm(self, host: HostSpec, settings: Settings) -> VmSpec:
        files = VmHost(self.state.root / "vm" / host.name)
        ssh_port, buildkitd_port = files.ports()
        image = ensure_image(self.cache_dir, host.arch, self.say)
        return VmSpec(
            host.name,
            host.arch,
            image,
            files.directory,
            ssh_port,
            buildkitd_port,
            settings.buildkitd_port,
            files.exchange_port(),
            settings.exchange_port,
        )

    def up(self, settings: Settings) -> Inventory:
        plan = self.plan(settings)
        vms = [h for h in plan.hosts if h.role in settings.vm_roles]
        specs = {h.name: self.vm(h, settings) for h in vms}  # a missing image is named before anything starts
        self.state.record_target(self.kind)
        containers = [h for h in plan.hosts if h.role not in settings.vm_roles]
        with self.local.holding_binfmt(plan, containers):
            started = self.local.start_hosts(containers, settings)
            endpoints, host_keys = dict(started.endpoints), dict(started.host_keys)
            public_key = self.state.ensure_ssh_key()
            pinned = self.state.known_host_keys()
            for host in vms:  # every VM boots before any console is read: they boot side by side
                spec = specs[host.name]
                if not spec.seed.exists():  # the VM makes its own host key and shows it on its serial console
                    meta = nocloud_meta_data(f"buildfleet-{self.fleet}-{host.name}", host.name, public_key)
                    make_seed(spec.seed, console_host_key_cloud_config(), meta)
                    unlink_inside(spec.console, spec.directory)  # only this boot's console is read
                process = VmProcess(spec)
                process.ensure_overlay()
                process.start()
                endpoints[host.name] = Endpoint(
                    LOOPBACK, GUEST_ADDRESS, spec.ssh_port, spec.buildkitd_port, spec.exchange_port
                )
            for spec in (specs[h.name] for h in vms):
                key = VmHost(spec.directory).made_key() or pinned.get((LOOPBACK, spec.ssh_port))  # older VM: its file
                host_keys[(LOOPBACK, spec.ssh_port)] = key or host_key_on_console(spec, VmProcess(spec), BOOT_SECONDS)
            self.state.write_known_hosts(host_keys)
            declared = [self._declared(h, endpoints[h.name], h.role in settings.vm_roles) for h in plan.hosts]
            wait_for_hosts(
                [h for h in declared if h.ssh_user == VM_USER], lambda h: connect(h, self.state), BOOT_SECONDS
            )
            pools = self.local.balance(plan.pools, endpoints)
            # each host keeps the pool its role forms; placement then checks the members agree
            detected = [
                replace(s, pool=h.pool) for s, h in zip(detect_all(declared, self.state), plan.hosts, strict=True)
            ]
            placement = place(settings.platforms, detected)
            hosts = tuple(placed(h, s, placement) for h, s in zip(declared, detected, strict=True))
            inventory = Inventory(TARGET, hosts, started.registry, pools, self.features)
            self.state.save_inventory(inventory)
        return inventory

    @staticmethod
    def _declared(host: HostSpec, endpoint: Endpoint, is_vm: bool) -> InventoryHost:
        return InventoryHost(
            name=host.name,
            role=host.role,
            arch=host.arch,
            address=endpoint.address,
            private_address=endpoint.private_address,
            ssh_user=VM_USER if is_vm else CONTAINER_USER,
            ssh_port=endpoint.ssh_port,
            buildkitd_port=endpoint.buildkitd_port,
            exchange_port=endpoint.exchange_port,
            full_system_emulation=is_vm,  # qemu-system under TCG here: no KVM on this kind of machine
        )

    def _vm_dirs(self) -> Sequence[Path]:
        root = self.state.root / "vm"
        return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []

    def _process(self, directory: Path) -> VmProcess:
        """A VM's process as its files describe it (enough to find and stop it)."""
        ssh_port, buildkitd_port = VmHost(directory).ports()
        spec = VmSpec(directory.name, "", VmImage(directory), directory, ssh_port, buildkitd_port, 0)
        return VmProcess(spec)

    def pool_members(self, inventory: Inventory) -> LocalBalancer:
        return self.local.pool_members(inventory)  # its pools' balancer is the local target's

    def wake(self, settings: Settings) -> Inventory:
        """Starting what is stopped and reading where it answers is what ``up`` does."""
        return self.up(settings)

    def preflight(self, settings: Settings) -> list[Check]:
        """The local target's needs, the tools VMs need, and each VM role's image (or its build time)."""
        checks = self.local.preflight(settings)
        checks += [tool_check(tool, package, "the vm target's VMs") for tool, package in VM_TOOLS.items()]
        for arch in sorted({vm_arch(role, machine_arch()) for role in settings.vm_roles}):
            image = newest_image(self.cache_dir, arch)
            checks.append(
                passed(MACHINE, f"{arch} VM image", str(image.directory))
                if image
                else Check(MACHINE, f"{arch} VM image", False, "not built yet", "up builds it (13 to 18 minutes)", True)
            )
        return checks

    def drop_stale_holds(self) -> list[Check]:
        return self.local.drop_stale_holds()  # its emulation host is a local container

    def status(self) -> list[HostState]:
        vms = []
        for directory in self._vm_dirs():
            pid = self._process(directory).pid()
            vms.append(
                HostState(directory.name, f"qemu pid {pid}" if pid else "qemu", "running" if pid else "off", not pid)
            )
        return self.local.status() + vms

    def down(self) -> list[str]:
        """Power off every VM of the fleet, then remove its containers, network and registry (the
        VMs' disks are in the fleet's state directory, which goes with it)."""
        removed = [f"vm {d.name}" for d in self._vm_dirs() if self._process(d).stop()]
        return removed + self.local.down()
