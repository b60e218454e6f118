"""``buildfleet artifacts lock``: fetch every host file the fleet can need and record its sha256."""

from __future__ import annotations

import argparse

from rich.console import Console

from provisioning.cli.common import download_progress, target_for
from provisioning.cli.options import default_cache_dir
from provisioning.errors import ConfigError


def cmd_artifacts(args: argparse.Namespace, console: Console) -> int:
    from provisioning.artifacts import LocalArtifacts
    from provisioning.artifacts.release import GITHUB, LOCK_FILE, LockFile, ReleaseArtifacts
    from provisioning.artifacts.source import user_cache

    if not args.project_dir.is_dir():
        raise ConfigError(f"--project-dir {args.project_dir} is not a directory")
    settings = target_for(args, "aws").settings()  # only artifactMirror is read
    lock = LockFile.load(args.project_dir / LOCK_FILE)
    local = LocalArtifacts(default_cache_dir())  # QEMU only: not fetched here
    release = ReleaseArtifacts(user_cache(), lock, local, settings.artifact_mirror or GITHUB, download_progress())
    before = dict(lock.files)
    names = release.lock_all(args.arch or ("amd64", "arm64"))
    for name in names:
        state = "recorded" if name not in before else "matches the lock"
        console.print(f"{name}  {lock.files[name]}  {state}", highlight=False)
    console.print(f"{lock.path}: {len(names)} file(s) for {', '.join(sorted(set(args.arch or ('amd64', 'arm64'))))}")
    return 0
