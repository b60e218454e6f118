"""OCI platforms buildfleet knows, how to read them, and what runs natively where.

Pure: no I/O. The spellings accepted mirror containerd's normalisation (``aarch64`` and
``arm64/v8`` are ``linux/arm64``, ``x86_64`` is ``linux/amd64``, bare ``arm`` is v7).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from provisioning.errors import PlatformError


@dataclass(frozen=True, order=True)
class Platform:
    """An OCI platform such as ``linux/arm/v7``; ``str()`` gives the canonical form."""

    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        parts = [self.os, self.architecture] + ([self.variant] if self.variant else [])
        return "/".join(parts)

    @property
    def qemu_arch(self) -> str:
        """Name of the QEMU user-mode interpreter (``qemu-<name>`` in binfmt_misc)."""
        return _QEMU_ARCH[self.architecture]


# Canonical order: the order a table lists them in, and the default build order.
KNOWN: tuple[Platform, ...] = (
    Platform("linux", "amd64"),
    Platform("linux", "arm64"),
    Platform("linux", "arm", "v7"),
    Platform("linux", "arm", "v6"),
    Platform("linux", "386"),
    Platform("linux", "ppc64le"),
    Platform("linux", "s390x"),
    Platform("linux", "riscv64"),
    Platform("linux", "mips64le"),
    Platform("linux", "loong64"),
)

_QEMU_ARCH = {
    "amd64": "x86_64",
    "386": "i386",
    "arm64": "aarch64",
    "arm": "arm",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
    "mips64le": "mips64el",
    "loong64": "loongarch64",
}

# Alternative spellings of "arch[/variant]" (after an optional "linux/" prefix).
_ALIASES = {
    "x86_64": "amd64",
    "x86-64": "amd64",
    "aarch64": "arm64",
    "arm64/v8": "arm64",
    "arm": "arm/v7",
    "armhf": "arm/v7",
    "armv7": "arm/v7",
    "armv7l": "arm/v7",
    "armel": "arm/v6",
    "armv6": "arm/v6",
    "armv6l": "arm/v6",
    "i386": "386",
    "i686": "386",
    "x86": "386",
    "riscv": "riscv64",
    "mips64el": "mips64le",
    "loongarch64": "loong64",
}

_BY_NAME = {str(p).removeprefix("linux/"): p for p in KNOWN}


def valid_names() -> str:
    """The accepted canonical names, comma-separated, for error messages."""
    return ", ".join(str(p) for p in KNOWN)


def parse_platform(text: str) -> Platform:
    """Read one platform string; anything unknown raises one error listing the valid ones."""
    if not isinstance(text, str):
        raise PlatformError(f"platform {text!r} is not a string; valid platforms: {valid_names()}")
    spelled = text.strip().lower()
    rest = spelled.removeprefix("linux/")
    rest = _ALIASES.get(rest, rest)
    platform = _BY_NAME.get(rest)
    if platform is None or not spelled:
        raise PlatformError(f"unknown platform {text!r}; valid platforms: {valid_names()}")
    return platform


def parse_platforms(items: Iterable[str]) -> tuple[Platform, ...]:
    """Read a list of platforms, dropping repeats but keeping the first-seen order."""
    seen: dict[Platform, None] = {}
    for item in items:
        seen.setdefault(parse_platform(item), None)
    if not seen:
        raise PlatformError(f"no platforms requested; valid platforms: {valid_names()}")
    return tuple(seen)


def native_platforms(arch: str, aarch32: bool = False) -> frozenset[Platform]:
    """Platforms a CPU of ``arch`` runs without QEMU.

    amd64 CPUs run 32-bit x86 code. arm64 CPUs run linux/arm/v7 and v6 only when they
    keep AArch32 at EL0 (Graviton2/3 do, Graviton4 does not), hence ``aarch32``.
    """
    own = parse_platform(arch)
    native = {own}
    if own.architecture == "amd64":
        native.add(Platform("linux", "386"))
    if own.architecture == "arm64" and aarch32:
        native.update({Platform("linux", "arm", "v7"), Platform("linux", "arm", "v6")})
    if own == Platform("linux", "arm", "v7"):
        native.add(Platform("linux", "arm", "v6"))
    return frozenset(native)


# ``uname -m`` -> the architecture name buildfleet (and Docker) uses.
UNAME_TO_ARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "armv6l": "arm",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
    "i686": "386",
    "i386": "386",
}
