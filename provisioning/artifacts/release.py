"""The ``release`` artifact source: BuildKit's and buildx's official release files, fetched on
the operator's machine into a per-user cache and accepted only against a lock file.

The layout is GitHub's release downloads (``<base>/moby/buildkit/releases/download/vX/
buildkit-vX.linux-ARCH.tar.gz``, ``<base>/docker/buildx/releases/download/vY/buildx-vY.linux-ARCH``),
so an internal mirror of github.com (Artifactory's GitHub remote, a plain directory behind nginx)
works as ``artifactMirror``. Like Terraform's ``.terraform.lock.hcl`` the lock file records each
file's sha256 the first time it is fetched and refuses any later download that differs; commit
it. Downloads go to ``<name>.part``, resume where a server honours Range, restart where it does
not, and get their real name only once complete and checked, so a half-written file is never used.

Standard library only: nothing here needs more than Python to run, as any user, on any OS.
"""

from __future__ import annotations

import functools
import json
import os
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from provisioning.artifacts import (
    BUILDKIT_VERSION,
    BUILDX_VERSION,
    Artifact,
    ArtifactError,
    LocalArtifacts,
    PinnedQemu,
    sha256_file,
)
from provisioning.private import write_private

GITHUB = "https://github.com"
LOCK_FILE = "buildfleet.lock.json"
ATTEMPTS = 4
CHUNK = 1 << 16
# what, done bytes, total bytes (0: unknown)
Progress = Callable[[str, int, int], None]


def buildkit_archive(arch: str) -> str:
    return f"buildkit-v{BUILDKIT_VERSION}.linux-{arch}.tar.gz"


def buildx_binary(arch: str) -> str:
    return f"buildx-v{BUILDX_VERSION}.linux-{arch}"


def release_url(base: str, name: str) -> str:
    """Where ``name`` lies under ``base`` in GitHub's release-download layout."""
    if name.startswith("buildkit-"):
        path = f"moby/buildkit/releases/download/v{BUILDKIT_VERSION}/{name}"
    else:
        path = f"docker/buildx/releases/download/v{BUILDX_VERSION}/{name}"
    return f"{base.rstrip('/')}/{path}"


@dataclass
class LockFile:
    """File name -> sha256, recorded at first download; every later one must match."""

    path: Path
    files: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> LockFile:
        if not path.exists():
            return cls(path)
        try:
            document = json.loads(path.read_text())
            files = document["files"]
            if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
                raise TypeError("files is not a mapping of names to sha256")
        except (ValueError, KeyError, TypeError) as error:
            raise ArtifactError(
                f"{path} is not a buildfleet lock file ({error}): restore it from version control"
            ) from None
        return cls(path, dict(files))

    def record(self, name: str, sha256: str) -> None:
        self.files[name] = sha256
        document = {
            "comment": "sha256 of each release file buildfleet fetched (buildfleet artifacts lock): commit this file",
            "files": dict(sorted(self.files.items())),
        }
        self.path.write_text(json.dumps(document, indent=2) + "\n")


def fetch(url: str, dest: Path, progress: Progress = lambda what, done, total: None, attempts: int = ATTEMPTS) -> None:
    """``url`` into ``dest``: through ``dest.part``, resumed (Range) where the server allows and
    restarted where it does not, retried with backoff; ``dest`` exists only once complete."""
    part = dest.with_name(dest.name + ".part")
    last: Exception | None = None
    for attempt in range(attempts):
        if attempt:
            time.sleep(min(2**attempt, 10) / 10)
        try:
            _fetch_once(url, part, progress, dest.name)
            os.replace(part, dest)
            return
        except urllib.error.HTTPError as error:
            if error.code in (403, 404, 410):  # the file is not there: retrying will not bring it
                part.unlink(missing_ok=True)
                raise ArtifactError(f"{url}: {error.code} {error.reason}") from None
            if error.code == 416:  # the part is whole or longer than the file: start again
                part.unlink(missing_ok=True)
            last = error
        except (OSError, urllib.error.URLError) as error:  # refused, reset, cut short
            last = error
    raise ArtifactError(f"{url}: download failed {attempts} times (last: {last}); nothing was used")


def _fetch_once(url: str, part: Path, progress: Progress, what: str) -> None:
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    with urllib.request.urlopen(request, timeout=60) as response:
        resumed = have and response.status == 206
        total = int(response.headers.get("Content-Length") or 0) + (have if resumed else 0)
        done = have if resumed else 0
        with part.open("ab" if resumed else "wb") as out:
            while chunk := response.read(CHUNK):
                out.write(chunk)
                done += len(chunk)
                progress(what, done, total)
        if total and done != total:
            raise OSError(f"connection closed after {done} of {total} bytes")


@dataclass(eq=False)  # hashed by identity: its methods cache per instance
class ReleaseArtifacts:
    """buildkitd, buildctl and buildx from the upstream release files, cached per user; static
    QEMU still from ``local`` (upstream ships none that buildfleet uses)."""

    cache: Path  # <cache>/releases/<file>, and the unpacked binaries beside it
    lock: LockFile
    local: LocalArtifacts
    base: str = GITHUB
    progress: Progress = lambda what, done, total: None

    def _file(self, name: str) -> Path:
        """The release file, downloaded once and checked against the lock (recorded if new)."""
        directory = self.cache / "releases"
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / name
        if not path.exists():
            fetch(release_url(self.base, name), path, self.progress)
        actual = sha256_file(path)
        expected = self.lock.files.get(name)
        if expected is None:
            self.lock.record(name, actual)
        elif actual != expected:
            path.rename(path.with_name(path.name + ".rejected"))  # never used, kept to look at
            raise ArtifactError(
                f"{name}: sha256 {actual} does not match {expected} recorded in {self.lock.path} "
                f"(from {release_url(self.base, name)}); nothing was used"
            )
        return path

    @functools.cache  # noqa: B019 -- few instances, each lives as long as the command
    def buildx(self, arch: str) -> Artifact:
        path = self._file(buildx_binary(arch))
        path.chmod(0o755)
        return Artifact("docker-buildx", BUILDX_VERSION, path, sha256_file(path))

    @functools.cache  # noqa: B019 -- few instances, each lives as long as the command
    def buildkit(self, arch: str) -> tuple[Artifact, Artifact]:
        archive = self._file(buildkit_archive(arch))
        directory = self.cache / "buildkit" / BUILDKIT_VERSION / arch
        found = []
        for name in ("buildkitd", "buildctl"):
            binary = directory / name
            if not binary.exists():
                _extract(archive, f"bin/{name}", binary)
            found.append(Artifact(name, BUILDKIT_VERSION, binary, sha256_file(binary)))
        return found[0], found[1]

    def has_qemu(self, arch: str) -> bool:
        return self.local.has_qemu(arch)

    def qemu(self, arch: str) -> PinnedQemu:
        return self.local.qemu(arch)

    def cached(self, arch: str) -> bool:
        """Both release files for ``arch`` are in the cache already (nothing to download)."""
        return all((self.cache / "releases" / name).exists() for name in (buildx_binary(arch), buildkit_archive(arch)))

    def locked(self, arch: str) -> bool:
        return all(name in self.lock.files for name in (buildx_binary(arch), buildkit_archive(arch)))

    def lock_all(self, arches: Iterable[str]) -> list[str]:
        """Fetch and record every release file for ``arches`` (``buildfleet artifacts lock``)."""
        names = []
        for arch in sorted(set(arches)):
            self.buildx(arch)
            self.buildkit(arch)
            names += [buildx_binary(arch), buildkit_archive(arch)]
        return names


def _extract(archive: Path, member: str, dest: Path) -> None:
    """One member of a checked archive, written under a temporary name and then moved in place."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        try:
            source = tar.extractfile(member)
        except KeyError:
            source = None
        if source is None:
            raise ArtifactError(f"{archive.name} holds no {member}: not a BuildKit release archive")
        temporary = dest.with_name(dest.name + ".part")
        write_private(temporary, source.read())
    temporary.chmod(0o755)
    os.replace(temporary, dest)
