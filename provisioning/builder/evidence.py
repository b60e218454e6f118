"""What a sample image's records must say for a platform: no I/O, so tested as such.

A build step leaves three independent signs of the CPU it ran for: ``uname -m`` of the
step, the output of the program it compiled and ran, and that program's ELF header.
Any one of them disagreeing with the platform requested means the wrong code was built.
"""

from __future__ import annotations

import struct

# uname -m a step reports on each platform (an amd64 kernel reports x86_64 to 386 code,
# an arm64 kernel armv8l to 32-bit ARM code; QEMU reports the emulated CPU)
UNAME = {
    "linux/amd64": {"x86_64"},
    "linux/386": {"i686", "i386", "x86_64"},
    "linux/arm64": {"aarch64"},
    "linux/arm/v7": {"armv7l", "armv8l"},
    "linux/arm/v6": {"armv6l", "armv7l", "armv8l"},
    "linux/ppc64le": {"ppc64le"},
    "linux/s390x": {"s390x"},
    "linux/riscv64": {"riscv64"},
}

# What hello.c prints when compiled for the platform. Debian's armel, the userland for
# linux/arm/v6, targets ARMv5TE, which every v6 CPU runs.
PROGRAM_SAYS = {
    "linux/amd64": {"amd64 64-bit"},
    "linux/386": {"386 32-bit"},
    "linux/arm64": {"arm64 64-bit"},
    "linux/arm/v7": {"arm/v7 32-bit"},
    "linux/arm/v6": {"arm/v5 32-bit", "arm/v6 32-bit"},
    "linux/ppc64le": {"ppc64le 64-bit"},
    "linux/s390x": {"s390x 64-bit"},
    "linux/riscv64": {"riscv64 64-bit"},
}

# ELF identity of code for the platform: (bits, byte order, e_machine)
ELF_MACHINE = {
    "linux/amd64": (64, "little", 62),
    "linux/386": (32, "little", 3),
    "linux/arm64": (64, "little", 183),
    "linux/arm/v7": (32, "little", 40),
    "linux/arm/v6": (32, "little", 40),
    "linux/ppc64le": (64, "little", 21),
    "linux/s390x": (64, "big", 22),
    "linux/riscv64": (64, "little", 243),
}


def elf_identity(binary: bytes) -> tuple[int, str, int] | None:
    """(bits, byte order, e_machine) from an ELF header, or None for anything else."""
    if len(binary) < 20 or binary[:4] != b"\x7fELF" or binary[4] not in (1, 2) or binary[5] not in (1, 2):
        return None
    order = "little" if binary[5] == 1 else "big"
    (machine,) = struct.unpack("<H" if order == "little" else ">H", binary[18:20])
    return (32 if binary[4] == 1 else 64, order, machine)


# 32-bit ARM code run natively by an arm64 kernel: BuildKit sets no linux32 personality, so
# the step's uname -m is the kernel's own (seen on the vm target's neoverse-n1 VM,
# 2026-11-28). The program's output and its ELF header still prove 32-bit code ran.
NATIVE_ON_ARM64 = {"linux/arm/v7": {"aarch64"}, "linux/arm/v6": {"aarch64"}}


def problems(platform: str, uname: str, program_output: str, binary: bytes, native_on: str = "") -> list[str]:
    """Each way the records contradict ``platform``; empty when all three agree with it.
    ``native_on``: the CPU of the host that ran it natively ("" under QEMU). A platform
    without rules cannot be checked, so it fails."""
    if platform not in UNAME or platform not in PROGRAM_SAYS or platform not in ELF_MACHINE:
        return [f"buildfleet has no evidence rules for {platform}: it cannot be checked"]
    found = []
    if uname not in UNAME[platform] | (NATIVE_ON_ARM64.get(platform, set()) if native_on == "arm64" else set()):
        found.append(f"uname -m says {uname!r}")
    if program_output not in PROGRAM_SAYS[platform]:
        found.append(f"the compiled program says {program_output!r}")
    identity = elf_identity(binary)
    if identity is None:
        found.append("no compiled program in the image")
    elif identity != ELF_MACHINE[platform]:
        bits, order, machine = identity
        found.append(f"the compiled program is {bits}-bit {order}-endian ELF machine {machine}")
    return found
