"""One full-system VM under QEMU (TCG) on this machine: its disk, seed and command line.

The command line is rendered purely from a ``VmSpec``; ``VmProcess`` starts it daemonized
and finds it again by its pidfile, checked against the process's own command line so a
recycled pid is never taken for ours.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from provisioning.command import run_command
from provisioning.errors import BuildfleetError
from provisioning.removal import unlink_inside
from provisioning.targets.process import OwnedProcess

LOOPBACK = "127.0.0.1"
# Per guest CPU: the QEMU binary, machine and CPU model. neoverse-n1 is Graviton2's core: it
# keeps AArch32 at EL0 (so arm/v7 and arm/v6 run natively, as on c6g/c7g), and under TCG it
# is far cheaper than `max`, whose pointer authentication QEMU emulates expensively.
MACHINES = {
    "arm64": ("qemu-system-aarch64", "virt", "neoverse-n1", "ttyAMA0"),
    "amd64": ("qemu-system-x86_64", "q35", "max", "ttyS0"),
}


@dataclass(frozen=True)
class VmImage:
    """A directory made by artifacts/debian/vm-image.sh: kernel, initramfs, root disk."""

    directory: Path

    @property
    def kernel(self) -> Path:
        return self.directory / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.directory / "initrd.img"

    @property
    def disk(self) -> Path:
        return self.directory / "rootfs.qcow2"


@dataclass(frozen=True)
class VmSpec:
    name: str
    arch: str
    image: VmImage
    directory: Path  # <state>/vm/<host>: overlay, seed, pidfile, console log
    ssh_port: int  # on 127.0.0.1, forwarded to the VM's 22
    buildkitd_port: int  # on 127.0.0.1, forwarded to guest_buildkitd_port
    guest_buildkitd_port: int
    exchange_port: int = 0  # on 127.0.0.1, forwarded to guest_exchange_port (0: none)
    guest_exchange_port: int = 0
    cpus: int = 2
    memory_mib: int = 2048

    @property
    def overlay(self) -> Path:
        return self.directory / "disk.qcow2"

    @property
    def seed(self) -> Path:
        return self.directory / "seed.img"

    @property
    def pidfile(self) -> Path:
        return self.directory / "qemu.pid"

    @property
    def console(self) -> Path:
        return self.directory / "console.log"


def qemu_args(spec: VmSpec) -> list[str]:
    """The QEMU command line: TCG, the base image behind a copy-on-write overlay, the NoCloud
    seed as a second disk, SSH and buildkitd forwarded on 127.0.0.1 only. Pure."""
    try:
        binary, machine, cpu, console = MACHINES[spec.arch]
    except KeyError:
        raise BuildfleetError(f"no VM for CPU {spec.arch!r}: the vm target runs {' or '.join(MACHINES)}") from None
    forwards = (
        f"hostfwd=tcp:{LOOPBACK}:{spec.ssh_port}-:22,"
        f"hostfwd=tcp:{LOOPBACK}:{spec.buildkitd_port}-:{spec.guest_buildkitd_port}"
    )
    if spec.exchange_port and spec.guest_exchange_port:  # the token exchange, should it run on this VM
        forwards += f",hostfwd=tcp:{LOOPBACK}:{spec.exchange_port}-:{spec.guest_exchange_port}"
    return [
        binary,
        "-name", spec.name,
        "-machine", machine,
        "-accel", "tcg,thread=multi",
        "-cpu", cpu,
        "-smp", str(spec.cpus),
        "-m", str(spec.memory_mib),
        "-kernel", str(spec.image.kernel),
        "-initrd", str(spec.image.initrd),
        "-append", f"root=/dev/vda rw console={console}",
        "-drive", f"file={spec.overlay},if=virtio,format=qcow2",
        "-drive", f"file={spec.seed},if=virtio,format=raw,readonly=on",
        "-netdev", f"user,id=net0,{forwards}",
        "-device", "virtio-net-pci,netdev=net0,romfile=",  # no PXE option ROM (ipxe-qemu) needed
        "-display", "none",
        "-serial", f"file:{spec.console}",
        "-daemonize",
        "-pidfile", str(spec.pidfile),
    ]  # fmt: skip


@dataclass(frozen=True)
class VmProcess:
    spec: VmSpec

    @property
    def process(self) -> OwnedProcess:
        """QEMU daemonizes itself and writes its own pidfile: ours when its command line holds this VM's disk."""
        marker = f"file={self.spec.overlay},if=virtio,format=qcow2"
        return OwnedProcess(self.spec.directory, marker, self.spec.pidfile.name, own_session=False)

    def pid(self) -> int | None:
        """The running QEMU of this VM, or None (a stale pidfile, or a pid reused by another process)."""
        return self.process.pid()

    def ensure_overlay(self) -> None:
        if self.spec.overlay.exists():
            return
        self.spec.directory.mkdir(parents=True, exist_ok=True)
        run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(self.spec.image.disk),
             str(self.spec.overlay), "20G"], "creating the VM's overlay disk")  # fmt: skip

    def start(self) -> None:
        if self.pid() is not None:
            return
        unlink_inside(self.spec.pidfile, self.spec.directory)
        run(qemu_args(self.spec), f"starting VM {self.spec.name}")

    def stop(self, timeout: float = 30) -> bool:
        """Power the VM off (QEMU ends on SIGTERM, SIGKILL after ``timeout``); False if it was not running."""
        return self.process.stop(timeout)


def run(argv: list[str], what: str) -> None:
    run_command(argv, what, missing="apt install qemu-system-arm qemu-utils")
