"""The binaries buildfleet puts on hosts (buildx, buildkitd, buildctl), per CPU arch.

Fetched once on the operator's side, checked by sha256, then uploaded over SFTP, so
hosts without internet egress still work. Two sources:
- ``upstream``: the projects' release downloads, accepted only against checksums pinned
  here (buildx's from the docker-library "docker" image recipe for v0.13.1);
- ``local``: a directory laid out as ``<tool>/<version>/<arch>/`` with a checksum file,
  e.g. built offline by ``debian/fetch-buildx.sh`` and ``debian/build-buildkit.sh``.
"""

from __future__ import annotations

import functools
import tarfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from provisioning.errors import BuildfleetError
from provisioning.hosts.actions import Artifact, sha256_file
from provisioning.hosts.operations import PinnedQemu
from provisioning.removal import unlink_inside

BUILDX_VERSION = "0.13.1"
BUILDKIT_VERSION = "0.13.2"
QEMU_VERSION = "10.0.13"  # Debian trixie's static qemu-user (debian/fetch-qemu.sh)

UPSTREAM_BUILDX = "https://github.com/docker/buildx/releases/download/v{version}/buildx-v{version}.linux-{arch}"
UPSTREAM_BUILDKIT = "https://github.com/moby/buildkit/releases/download/v{version}/buildkit-v{version}.linux-{arch}.tar.gz"
PINNED = {
    ("buildx", "0.13.1", "amd64"): "3e2bc8ed25a9125d6aeec07df4e0211edea6288e075b524160ef3fd305d3d74c",
    ("buildx", "0.13.1", "arm64"): "3ba35a5d38361a64b62aeb9d20acc835ff6862a711cb438e610026b29c0ac489",
}


class ArtifactError(BuildfleetError):
    """An artifact is missing, unpinned, or does not match its checksum."""


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
            raise ArtifactError(f"no {name} {version} for {arch} in {directory}: "
                                f"make it with provisioning/artifacts/debian/ scripts or use the upstream source")
        _checked(directory / name, expected, f"{name} {version} {arch}")
        return Artifact(name, version, directory / name, expected)

    # Each artifact is hashed once per process: configure asks for it per host and step.
    @functools.lru_cache(maxsize=None)
    def buildx(self, arch: str) -> Artifact:
        return self._artifact("buildx", BUILDX_VERSION, arch, "docker-buildx", "docker-buildx.sha256")

    @functools.lru_cache(maxsize=None)
    def buildkit(self, arch: str) -> tuple[Artifact, Artifact]:
        return tuple(self._artifact("buildkit", BUILDKIT_VERSION, arch, name, "SHA256SUMS")  # type: ignore[return-value]
                     for name in ("buildkitd", "buildctl"))

    def has_qemu(self, arch: str) -> bool:
        return (self.root / "qemu" / QEMU_VERSION / arch / "SHA256SUMS").exists()

    @functools.lru_cache(maxsize=None)
    def qemu(self, arch: str) -> PinnedQemu:
        """Static QEMU for hosts of CPU ``arch``: every emulator it has, with its binfmt line."""
        directory = self.root / "qemu" / QEMU_VERSION / arch
        sums = _recorded_sums(directory, "SHA256SUMS")
        if not sums:
            raise ArtifactError(f"no static QEMU {QEMU_VERSION} for {arch} hosts in {directory}: "
                                "make it with provisioning/artifacts/debian/fetch-qemu.sh, or use qemuSource distro")
        binaries, registrations = {}, {}
        for name, expected in sums.items():
            _checked(directory / name, expected, f"QEMU {name}")
            if name.endswith("-binfmt-P"):
                emulated = name.removesuffix("-binfmt-P")
                binaries[emulated] = Artifact(f"qemu-{emulated}", QEMU_VERSION, directory / name, expected)
            elif name.startswith("binfmt/"):
                registrations[name.removeprefix("binfmt/").removesuffix(".conf")] = (directory / name).read_bytes()
        return PinnedQemu(QEMU_VERSION, binaries, registrations)


@dataclass(frozen=True)
class UpstreamArtifacts:
    """Release downloads, cached under ``cache`` and accepted only with a pinned checksum."""

    cache: Path
    pins: dict[tuple[str, str, str], str] = field(default_factory=lambda: dict(PINNED))

    def _pin(self, tool: str, version: str, arch: str) -> str:
        try:
            return self.pins[(tool, version, arch)]
        except KeyError:
            raise ArtifactError(f"no pinned sha256 for {tool} {version} linux/{arch}: pin one, or use a local "
                                "artifact directory (see provisioning/artifacts/debian/)") from None

    def _download(self, url: str, dest: Path, sha256: str, what: str) -> Path:
        if _checked(dest, sha256, what):
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_suffix(dest.suffix + ".partial")
        try:
            with urllib.request.urlopen(url, timeout=60) as response, partial.open("wb") as out:
                while block := response.read(1 << 20):
                    out.write(block)
        except OSError as error:
            unlink_inside(partial, self.cache)
            raise ArtifactError(f"{what}: cannot download {url}: {error}") from None
        actual = sha256_file(partial)
        if actual != sha256:
            unlink_inside(partial, self.cache)
            raise ArtifactError(f"{what}: {url} has sha256 {actual}, pinned {sha256}: refusing it")
        partial.rename(dest)
        return dest

    def buildx(self, arch: str) -> Artifact:
        sha = self._pin("buildx", BUILDX_VERSION, arch)
        url = UPSTREAM_BUILDX.format(version=BUILDX_VERSION, arch=arch)
        path = self._download(url, self.cache / "buildx" / BUILDX_VERSION / arch / "docker-buildx", sha, "buildx")
        return Artifact("docker-buildx", BUILDX_VERSION, path, sha)

    def buildkit(self, arch: str) -> tuple[Artifact, Artifact]:
        sha = self._pin("buildkit", BUILDKIT_VERSION, arch)
        directory = self.cache / "buildkit" / BUILDKIT_VERSION / arch
        tarball = self._download(UPSTREAM_BUILDKIT.format(version=BUILDKIT_VERSION, arch=arch),
                                 directory / "buildkit.tar.gz", sha, "buildkit")
        found = []
        with tarfile.open(tarball) as archive:
            for name in ("buildkitd", "buildctl"):
                member = archive.getmember(f"bin/{name}")
                data = archive.extractfile(member).read()  # type: ignore[union-attr]
                (directory / name).write_bytes(data)
                (directory / name).chmod(0o755)
                found.append(Artifact(name, BUILDKIT_VERSION, directory / name, sha256_file(directory / name)))
        return found[0], found[1]
