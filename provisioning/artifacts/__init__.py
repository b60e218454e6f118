"""The files buildfleet puts on hosts (buildx, buildkitd, buildctl, static QEMU), per CPU arch.

Made once on the operator's side, checked by sha256, then uploaded over SFTP, so hosts
without internet egress still work. They come from a directory laid out as
``<tool>/<version>/<arch>/`` with a checksum file: buildkitd, buildctl and buildx built
from their published Go modules by ``go/build.sh`` at the versions its go.mod files pin
(the one place they are named), static QEMU and the rest from Debian's packages by the
``debian/`` scripts (``.ci/prepare`` runs both).
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from provisioning.errors import BuildfleetError

GO_MODULES = Path(__file__).resolve().parent / "go"  # one go.mod + go.sum per tool: the pins


def pinned_version(tool: str, module: str) -> str:
    """The version ``go/<tool>/go.mod`` requires of ``module``, without its ``v``."""
    go_mod = GO_MODULES / tool / "go.mod"
    found = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+v(\S+)", go_mod.read_text(), re.MULTILINE)
    if found is None:
        raise BuildfleetError(f"{go_mod} does not require {module}: buildfleet's package is damaged")
    return found.group(1)


BUILDKIT_VERSION = pinned_version("buildkit", "github.com/moby/buildkit")
BUILDX_VERSION = pinned_version("buildx", "github.com/docker/buildx")
BUILD_SCRIPT = "provisioning/artifacts/go/build.sh"
QEMU_VERSION = "10.0.13"  # Debian trixie's static qemu-user (debian/fetch-qemu.sh)


@dataclass(frozen=True)
class Artifact:
    """A file buildfleet puts on hosts, fetched and checked on the operator's side."""

    name: str
    version: str
    path: Path
    sha256: str


@dataclass(frozen=True)
class PinnedQemu:
    """Static QEMU for one host arch: per emulated arch, the binary and its binfmt line."""

    version: str
    binaries: Mapping[str, Artifact]
    registrations: Mapping[str, bytes]


class ArtifactSource(Protocol):
    """Where configure and the builder get host files from."""

    def buildx(self, arch: str) -> Artifact: ...

    def buildkit(self, arch: str) -> tuple[Artifact, Artifact]: ...

    def has_qemu(self, arch: str) -> bool: ...

    def qemu(self, arch: str) -> PinnedQemu: ...


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ArtifactError(BuildfleetError):
    """An artifact is missing, unpinned, or does not match its checksum."""


class ArtifactMissing(ArtifactError):
    """An artifact is not in the directory at all (as opposed to there and wrong)."""


def _checked(path: Path, expected: str, what: str) -> str | None:
    if not path.exists():
        return None
    actual = sha256_file(path)
    if actual != expected:
        raise ArtifactError(f"{what}: {path} has sha256 {actual}, expected {expected}; remove it to fetch again")
    return actual


def _recorded_sums(directory: Path, listing: str) -> dict[str, str]:
    sums = {}
    file = directory / listing
    if file.exists():
        for line in file.read_text().splitlines():
            digest, _, name = line.partition("  ")
            sums[name.strip().lstrip("*")] = digest.strip()
    return sums


@dataclass(frozen=True)
class LocalArtifacts:
    """Artifacts already on disk, each next to the checksum recorded when it was made."""

    root: Path

    def _artifact(self, tool: str, version: str, arch: str, name: str, listing: str) -> Artifact:
        directory = self.root / tool / version / arch
        expected = _recorded_sums(directory, listing).get(name)
        if not expected or not (directory / name).exists():
            raise ArtifactMissing(
                f"no {name} {version} for {arch} in {directory}: make it with {BUILD_SCRIPT} {self.root} {arch} "
                "(needs Go; .ci/prepare runs it)"
            )
        _checked(directory / name, expected, f"{name} {version} {arch}")
        return Artifact(name, version, directory / name, expected)

    # Each artifact is hashed once per process: configure asks for it per host and step.
    @functools.cache  # noqa: B019 -- few instances, each lives as long as the command
    def buildx(self, arch: str) -> Artifact:
        return self._artifact("buildx", BUILDX_VERSION, arch, "docker-buildx", "docker-buildx.sha256")

    @functools.cache  # noqa: B019 -- few instances, each lives as long as the command
    def buildkit(self, arch: str) -> tuple[Artifact, Artifact]:
        return tuple(
            self._artifact("buildkit", BUILDKIT_VERSION, arch, name, "SHA256SUMS")  # type: ignore[return-value]
            for name in ("buildkitd", "buildctl")
        )

    def has_qemu(self, arch: str) -> bool:
        return (self.root / "qemu" / QEMU_VERSION / arch / "SHA256SUMS").exists()

    @functools.cache  # noqa: B019 -- few instances, each lives as long as the command
    def qemu(self, arch: str) -> PinnedQemu:
        """Static QEMU for hosts of CPU ``arch``: every emulator it has, with its binfmt line."""
        directory = self.root / "qemu" / QEMU_VERSION / arch
        sums = _recorded_sums(directory, "SHA256SUMS")
        if not sums:
            raise ArtifactError(
                f"no static QEMU {QEMU_VERSION} for {arch} hosts in {directory}: "
                "make it with provisioning/artifacts/debian/fetch-qemu.sh, or use qemuSource distro"
            )
        binaries, registrations = {}, {}
        for name, expected in sums.items():
            _checked(directory / name, expected, f"QEMU {name}")
            if name.endswith("-binfmt-P"):
                emulated = name.removesuffix("-binfmt-P")
                binaries[emulated] = Artifact(f"qemu-{emulated}", QEMU_VERSION, directory / name, expected)
            elif name.startswith("binfmt/"):
                registrations[name.removeprefix("binfmt/").removesuffix(".conf")] = (directory / name).read_bytes()
        return PinnedQemu(QEMU_VERSION, binaries, registrations)


def missing_for(artifacts: ArtifactSource, host_arches: Iterable[str], pinned_qemu_arches: Iterable[str]) -> list[str]:
    """What hosts of these CPUs would lack, one entry each ("buildkit for arm64"): checked
    before any host exists, so a missing file never meets a host that already bills."""
    missing = []
    for arch in sorted(set(host_arches)):
        for what, load in (("buildx", artifacts.buildx), ("buildkit", artifacts.buildkit)):
            try:
                load(arch)
            except ArtifactMissing:  # a wrong file, or a refused download, is its own error
                missing.append(f"{what} for {arch}")
    missing += [f"static QEMU for {arch}" for arch in sorted(set(pinned_qemu_arches)) if not artifacts.has_qemu(arch)]
    return missing


def missing_error(root: Path, missing: list[str], arches: Iterable[str]) -> ArtifactError:
    return ArtifactError(
        f"no {', '.join(missing)} in {root}: make them with provisioning/artifacts/host-artifacts.sh "
        f"{root} {' '.join(sorted(set(arches)))} (or pass --artifacts DIR where they are, e.g. /var/cache/buildfleet "
        "after .ci/prepare as root)"
    )
