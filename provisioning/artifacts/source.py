"""Which artifact source a fleet uses (``buildfleet:artifactSource``), behind the one
``ArtifactSource`` protocol: ``dir`` a directory laid out as go/build.sh lays it out, ``go`` that
directory filled by go/build.sh from the pinned Go modules when something is missing, ``release``
upstream's release files through the lock file, and ``auto`` the directory where it holds the
pinned files, else the release files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from provisioning.artifacts import (
    GO_MODULES,
    Artifact,
    ArtifactError,
    ArtifactMissing,
    ArtifactSource,
    LocalArtifacts,
    PinnedQemu,
)
from provisioning.artifacts.release import GITHUB, LOCK_FILE, LockFile, Progress, ReleaseArtifacts
from provisioning.checks import Check, failed, passed


def user_cache() -> Path:
    """Per user, no root: $XDG_CACHE_HOME/buildfleet, ~/Library/Caches/buildfleet on macOS."""
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "buildfleet"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "buildfleet"
    return Path.home() / ".cache" / "buildfleet"


@dataclass
class Fallback:
    """The first source that has a file: ``first`` where it holds it, else ``then``. A file that
    is in ``first`` but wrong is an error, never a reason to fetch another."""

    first: LocalArtifacts
    then: ArtifactSource

    def buildx(self, arch: str) -> Artifact:
        try:
            return self.first.buildx(arch)
        except ArtifactMissing:
            return self.then.buildx(arch)

    def buildkit(self, arch: str) -> tuple[Artifact, Artifact]:
        try:
            return self.first.buildkit(arch)
        except ArtifactMissing:
            return self.then.buildkit(arch)

    def has_qemu(self, arch: str) -> bool:
        return self.first.has_qemu(arch)

    def qemu(self, arch: str) -> PinnedQemu:
        return self.first.qemu(arch)


@dataclass
class GoBuild:
    """Host files built on demand: go/build.sh run into the directory for the arch asked for."""

    local: LocalArtifacts

    def _built(self, arch: str) -> LocalArtifacts:
        script = GO_MODULES / "build.sh"
        try:
            subprocess.run(["bash", str(script), str(self.local.root), arch], check=True, stdout=sys.stderr)
        except (OSError, subprocess.CalledProcessError) as error:
            raise ArtifactError(f"{script} {self.local.root} {arch} failed ({error}): see its output above") from None
        return LocalArtifacts(self.local.root)  # a fresh one: the old one cached the miss

    def buildx(self, arch: str) -> Artifact:
        return self._built(arch).buildx(arch)

    def buildkit(self, arch: str) -> tuple[Artifact, Artifact]:
        return self._built(arch).buildkit(arch)

    def has_qemu(self, arch: str) -> bool:
        return self.local.has_qemu(arch)

    def qemu(self, arch: str) -> PinnedQemu:
        return self.local.qemu(arch)


def artifact_source(
    kind: str,
    directory: Path,
    project_dir: Path,
    mirror: str = "",
    progress: Progress = lambda what, done, total: None,
) -> ArtifactSource:
    """The source ``kind`` names; the release files' lock lives in ``project_dir`` (commit it)."""
    local = LocalArtifacts(directory)
    if kind == "dir":
        return local
    if kind == "go":
        return Fallback(local, GoBuild(local))  # built only for an arch the directory lacks
    release = ReleaseArtifacts(user_cache(), LockFile.load(project_dir / LOCK_FILE), local, mirror or GITHUB, progress)
    return release if kind == "release" else Fallback(local, release)


def artifact_checks(kind: str, directory: Path, project_dir: Path, mirror: str, arches: Iterable[str]) -> list[Check]:
    """Whether each planned CPU's host files are here, or where they will come from, downloading
    and building nothing."""
    local = LocalArtifacts(directory)
    release = ReleaseArtifacts(user_cache(), LockFile.load(project_dir / LOCK_FILE), local, mirror or GITHUB)
    checks = []
    for arch in sorted(set(arches)):
        here, name = "this machine", f"host files {arch}"
        try:
            local.buildx(arch)
            local.buildkit(arch)
            checks.append(passed(here, name, f"in {directory}"))
            continue
        except ArtifactMissing as missing:
            absent = str(missing)
        except ArtifactError as wrong:  # there and not what was recorded: never used, whatever the source
            checks.append(failed(here, name, str(wrong), "remove the file it names, to make it again"))
            continue
        if kind in ("auto", "release"):
            where = "cached" if release.cached(arch) else f"fetched from {release.base} when first needed"
            lock = f"{'checked against' if release.locked(arch) else 'recorded in'} {release.lock.path}"
            checks.append(passed(here, name, f"upstream release files: {where}, {lock}"))
        elif kind == "go" and shutil.which("go"):
            checks.append(passed(here, name, f"built with {shutil.which('go')} when first needed"))
        else:
            checks.append(failed(here, name, absent, f"{GO_MODULES / 'build.sh'} {directory} {arch}"))
    return checks
