"""``buildfleet artifacts lock``: fetch every host file the fleet can need and record its sha256."""

from __future__ import annotations

import argparse

from provisioning.cli.context import Fleet, download_progress
from provisioning.cli.options import add_config_options, default_cache_dir
from provisioning.errors import ConfigError


def cmd_artifacts(fleet: Fleet, args: argparse.Namespace) -> int:
    from provisioning.artifacts import LocalArtifacts
    from provisioning.artifacts.release import GITHUB, LOCK_FILE, LockFile, ReleaseArtifacts
    from provisioning.artifacts.source import user_cache

    if not args.project_dir.is_dir():
        raise ConfigError(f"--project-dir {args.project_dir} is not a directory")
    console = fleet.console
    settings = fleet.target("aws").settings()  # only artifactMirror is read
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


def add_artifacts(commands: argparse._SubParsersAction) -> None:
    """The artifacts lock: the release files' sha256 recorded."""
    artifacts = commands.add_parser(
        "artifacts",
        help="lock: fetch upstream's BuildKit and buildx release files and record their sha256 (commit the lock)",
        description="Fetch the release files the release artifact source uses (BuildKit's "
        "buildkit-vX.linux-ARCH.tar.gz, buildx's buildx-vX.linux-ARCH) for every ARCH into the per-user cache, "
        "from github.com or buildfleet:artifactMirror, and record each sha256 in buildfleet.lock.json in the "
        "project directory; a file already recorded must match. Commit the lock file: every later download is "
        "checked against it.",
    )
    artifacts.add_argument("action", choices=("lock",))
    artifacts.add_argument(
        "--arch", action="append", choices=("amd64", "arm64"), help="host CPU (repeatable; default: amd64 and arm64)"
    )
    add_config_options(artifacts)
    artifacts.set_defaults(handler=cmd_artifacts)
