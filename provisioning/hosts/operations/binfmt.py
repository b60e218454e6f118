"""The binfmt step: the QEMU interpreters the placement needs, registered with F, and again at every boot."""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from provisioning.artifacts import PinnedQemu
from provisioning.hosts.actions import Decision, Run, Upload, WriteFile, refuse
from provisioning.hosts.operations import Step, apt_install
from provisioning.hosts.services import InitSystem, Service, differing, init_system, service_paths
from provisioning.platforms import UNAME_TO_ARCH
from provisioning.remote import facts as f

DISTRO_CONF_DIR = "/usr/lib/binfmt.d"  # qemu-user-static's registration lines
DISTRO_INTERPRETER = "/usr/libexec/qemu-binfmt/{arch}-binfmt-P"
PINNED_DIR = "/usr/local/lib/buildfleet/qemu"  # pinned static QEMU, uploaded by buildfleet
PINNED_CONF_DIR = "/etc/binfmt.d"  # same names: they override /usr/lib/binfmt.d
REGISTER = (
    # $1: directory of qemu-<arch>.conf lines; $2..: qemu arch names (platform data).
    # An existing entry is removed first: with F the kernel keeps its old file open.
    'dir=$1; shift; cd /proc/sys/fs/binfmt_misc; for a in "$@"; do '
    'conf=$dir/qemu-$a.conf; [ -f "$conf" ] || { echo "no $conf: QEMU lacks $a" >&2; exit 1; }; '
    '[ -f qemu-$a ] && echo -1 > qemu-$a; cat "$conf" > register; done'
)
BINFMT_SCRIPT = "/usr/local/lib/buildfleet/register-binfmt"
BINFMT_SERVICE = Service(
    "buildfleet-binfmt",
    (BINFMT_SCRIPT,),
    "Register QEMU interpreters with binfmt_misc",
    after=("local-fs.target",),
    oneshot=True,
)


def with_interpreter(registration: bytes, interpreter: str) -> bytes:
    """A binfmt_misc line (:name:type:offset:magic:mask:interpreter:flags) pointing elsewhere."""
    fields = registration.decode().strip().split(":")
    if len(fields) != 8:
        raise ValueError(f"not a binfmt_misc registration line: {registration[:80]!r}")
    fields[6] = interpreter
    return (":".join(fields) + "\n").encode()


@dataclass(frozen=True)
class QemuDesired:
    arches: tuple[str, ...]  # QEMU names (aarch64, arm, s390x, ...)
    pinned: Callable[[str], PinnedQemu] | None = None  # host arch -> pinned QEMU; None: distro package

    def conf_dir(self) -> str:
        return PINNED_CONF_DIR if self.pinned else DISTRO_CONF_DIR

    def interpreter(self, arch: str) -> str:
        return f"{PINNED_DIR}/{arch}-binfmt-P" if self.pinned else DISTRO_INTERPRETER.format(arch=arch)


def binfmt_step(desired: QemuDesired) -> Step:
    arches = desired.arches
    boot_paths = (BINFMT_SCRIPT, *service_paths(BINFMT_SERVICE))
    paths = (
        *boot_paths,
        *(desired.interpreter(a) for a in arches),
        *(f"{PINNED_CONF_DIR}/qemu-{a}.conf" for a in arches),
    )
    facts: dict[str, f.Fact[Any]] = {
        "arch": f.Arch(),
        "init": f.InitSystem(),
        "qemu": f.PackageVersion("qemu-user-static"),
        "binfmt": f.BinfmtStatus(),
        "files": f.FileDigests(paths),
    }

    def decide(got: Mapping[str, Any]) -> Decision:
        if any(UNAME_TO_ARCH.get(a) == got["arch"] for a in arches):
            return refuse(
                f"refusing to register QEMU for this host's own CPU ({got['arch']}): "
                "it would run every native binary under emulation"
            )
        actions: list = []
        source = "qemu-user-static (distro)"
        if desired.pinned is None:
            if got["qemu"] is None:
                actions.append(Run(apt_install("qemu-user-static"), "install QEMU user-mode emulators"))
            replaced: set[str] = set()
        else:
            pinned = desired.pinned(got["arch"])
            source = f"static QEMU {pinned.version}"
            wanted: list[Upload | WriteFile] = []
            for a in arches:
                binary = pinned.binaries[a]
                wanted.append(
                    Upload(
                        binary.path,
                        desired.interpreter(a),
                        binary.sha256,
                        "0755",
                        f"install static QEMU {pinned.version} for {a}",
                    )
                )
                wanted.append(
                    WriteFile(
                        f"{PINNED_CONF_DIR}/qemu-{a}.conf",
                        with_interpreter(pinned.registrations[a], desired.interpreter(a)),
                        "0644",
                        f"persist the {a} registration",
                    )
                )
            changed = differing(wanted, got["files"])
            actions.extend(changed)
            replaced = {
                a for a in arches if any(isinstance(w, Upload) and w.dest == desired.interpreter(a) for w in changed)
            }
        binfmt: f.Binfmt = got["binfmt"]
        if not binfmt.mounted:
            actions.append(Run(("mount", "-t", "binfmt_misc", "binfmt_misc", f.BINFMT_DIR), "mount binfmt_misc"))
        stale = tuple(a for a in arches if a in replaced or not binfmt.registered(a, desired.interpreter(a)))
        if stale:
            actions.append(
                Run(
                    ("sh", "-c", REGISTER, "register", desired.conf_dir(), *stale),
                    f"register {', '.join(stale)} with the F flag",
                )
            )
        actions.extend(_binfmt_at_boot(desired, init_system(got["init"]), got["files"]))
        return Decision(tuple(actions), f"{source}; {', '.join(arches)} registered with F, again at boot")

    return Step("binfmt", facts, decide)


def _binfmt_at_boot(desired: QemuDesired, init: InitSystem, digests: Mapping[str, str | None]) -> list:
    """Register again at every boot, with buildfleet's own script: systemd-binfmt may be
    conditioned out (it is in containers), and tonistiigi/binfmt does not persist at all."""
    script = WriteFile(
        BINFMT_SCRIPT,
        (
            "#!/bin/sh\n# Register QEMU interpreters (managed by buildfleet)\nset -e\n"
            "[ -f /proc/sys/fs/binfmt_misc/status ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc\n"
            f"sh -c '{REGISTER}' register {desired.conf_dir()} {' '.join(desired.arches)}\n"
        ).encode(),
        "0755",
        "install the boot-time registration script",
    )
    changed: list = [*differing([script], digests), *init.files(BINFMT_SERVICE, digests)]
    return changed + init.enable(BINFMT_SERVICE) if changed else changed
