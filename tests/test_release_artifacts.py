"""The release artifact source over real HTTP (a stand-in for github.com on 127.0.0.1): the first
download records the lock, later ones use the cache, a tampered file or an edited lock is refused
with one line naming the file, expected and actual, the mirror setting is honoured, an
interrupted download is resumed or restarted and never used half-written, and it all runs as a
user without root."""

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from release_server import ReleaseServer

from provisioning.artifacts import BUILDKIT_VERSION, BUILDX_VERSION, ArtifactError, LocalArtifacts
from provisioning.artifacts.release import LOCK_FILE, LockFile, ReleaseArtifacts, buildkit_archive, buildx_binary
from provisioning.cli import main

pytestmark = pytest.mark.process  # a release server on 127.0.0.1

PROJECT = Path(__file__).resolve().parent.parent
BINARIES = {
    "buildkitd": b"\x7fELF buildkitd " * 5000,
    "buildctl": b"\x7fELF buildctl " * 3000,
    "buildx": b"buildx " * 9000,
}


@pytest.fixture
def server():
    serving = ReleaseServer().start()
    for arch in ("amd64", "arm64"):
        serving.publish(arch, *(BINARIES[name] + arch.encode() for name in ("buildkitd", "buildctl", "buildx")))
    yield serving
    serving.stop()


def source(tmp_path, server, cache="cache") -> ReleaseArtifacts:
    lock = LockFile.load(tmp_path / LOCK_FILE)
    return ReleaseArtifacts(tmp_path / cache, lock, LocalArtifacts(tmp_path / "none"), server.base)


def test_the_first_download_records_the_lock_and_the_next_uses_the_cache(tmp_path, server):
    buildkitd, buildctl = source(tmp_path, server).buildkit("amd64")
    assert buildkitd.path.read_bytes() == BINARIES["buildkitd"] + b"amd64" and buildkitd.version == BUILDKIT_VERSION
    assert buildctl.path.read_bytes() == BINARIES["buildctl"] + b"amd64"
    assert source(tmp_path, server).buildx("amd64").version == BUILDX_VERSION
    locked = json.loads((tmp_path / LOCK_FILE).read_text())["files"]
    assert set(locked) == {buildkit_archive("amd64"), buildx_binary("amd64")}
    before = len(server.requests)
    again = source(tmp_path, server)
    assert again.buildkit("amd64")[0].sha256 == buildkitd.sha256 and again.buildx("amd64")
    assert len(server.requests) == before  # nothing fetched twice


def test_a_file_that_differs_from_the_lock_is_refused_and_never_used(tmp_path, server):
    source(tmp_path, server).buildx("amd64")  # recorded
    recorded = json.loads((tmp_path / LOCK_FILE).read_text())["files"][buildx_binary("amd64")]
    path = next(p for p in server.files if p.endswith(buildx_binary("amd64")))
    server.files[path] = b"something else"
    with pytest.raises(ArtifactError) as refused:
        source(tmp_path, server, cache="other-machine").buildx("amd64")
    message = str(refused.value)
    assert message.startswith(f"{buildx_binary('amd64')}: sha256 ") and f"does not match {recorded}" in message
    assert "nothing was used" in message and "\n" not in message
    assert not (tmp_path / "other-machine" / "releases" / buildx_binary("amd64")).exists()


def test_an_edited_lock_is_refused(tmp_path, server):
    source(tmp_path, server).buildkit("arm64")
    document = json.loads((tmp_path / LOCK_FILE).read_text())
    document["files"][buildkit_archive("arm64")] = "0" * 64
    (tmp_path / LOCK_FILE).write_text(json.dumps(document))
    with pytest.raises(
        ArtifactError, match=f"{buildkit_archive('arm64')}: sha256 [0-9a-f]{{64}} does not match 0{{64}}"
    ):
        source(tmp_path, server, cache="fresh").buildkit("arm64")


@pytest.mark.parametrize("ranges", [True, False], ids=["resumed", "restarted"])
def test_an_interrupted_download_is_resumed_or_restarted_and_only_then_used(tmp_path, server, ranges):
    server.ranges, server.cut = ranges, 1
    artifact = source(tmp_path, server).buildx("amd64")
    assert artifact.path.read_bytes() == BINARIES["buildx"] + b"amd64"
    asked = [r for p, r in server.requests if p.endswith(buildx_binary("amd64"))]
    assert len(asked) == 2 and asked[0] == "" and asked[1].startswith("bytes=")  # the second asks for the rest


def test_a_download_that_never_completes_is_an_error_and_leaves_no_file_to_use(tmp_path, server):
    server.cut = 100
    with pytest.raises(ArtifactError, match="download failed 4 times .*nothing was used"):
        source(tmp_path, server).buildx("amd64")
    assert not (tmp_path / "cache" / "releases" / buildx_binary("amd64")).exists()
    assert LockFile.load(tmp_path / LOCK_FILE).files == {}  # nothing recorded either


def test_artifacts_lock_fetches_every_arch_from_the_mirror_and_records_it(tmp_path, monkeypatch, capsys):
    mirror = ReleaseServer(prefix="/artifactory/github").start()
    try:
        for arch in ("amd64", "arm64"):
            mirror.publish(arch, b"bkd" + arch.encode(), b"ctl" + arch.encode(), b"bx" + arch.encode())
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
        args = ["artifacts", "lock", "--project-dir", str(tmp_path), "--set", f"artifactMirror={mirror.base}"]
        assert main(args) == 0
        assert all(path.startswith("/artifactory/github/") for path in mirror.paths()) and len(mirror.paths()) == 4
        assert len(json.loads((tmp_path / LOCK_FILE).read_text())["files"]) == 4
        assert "4 file(s) for amd64, arm64" in capsys.readouterr().out
        assert (tmp_path / "xdg" / "buildfleet" / "releases" / buildx_binary("arm64")).exists()
        assert main(args) == 0 and "matches the lock" in capsys.readouterr().out
    finally:
        mirror.stop()


def test_a_user_without_root_fetches_into_their_own_cache(tmp_path, server):
    """With Debian's own python3 and only the standard library, as uid 65534 when the tests run as root."""
    shared = Path(tempfile.mkdtemp(prefix="bf-release-"))
    try:
        shared.chmod(0o755)
        shutil.copytree(PROJECT / "provisioning", shared / "provisioning")
        home = shared / "home"
        home.mkdir()
        os.chown(home, 65534, 65534) if os.geteuid() == 0 else None
        as_user = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []
        script = (
            "from pathlib import Path; from provisioning.artifacts import LocalArtifacts; "
            "from provisioning.artifacts.release import LockFile, ReleaseArtifacts; "
            f"home = Path('{home}'); "
            "r = ReleaseArtifacts(home / '.cache/buildfleet', LockFile.load(home / 'lock.json'), "
            f"LocalArtifacts(home / 'none'), '{server.base}'); "
            "print(r.buildkit('amd64')[0].path, r.buildx('amd64').path)"
        )
        env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "PYTHONPATH": str(shared)}
        run = subprocess.run([*as_user, "/usr/bin/python3", "-c", script], env=env, capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        buildkitd, buildx = (Path(p) for p in run.stdout.split())
        assert buildkitd.is_relative_to(home / ".cache" / "buildfleet") and buildx.stat().st_uid == os.stat(home).st_uid
        assert (home / "lock.json").exists()
    finally:
        shutil.rmtree(shared)


def test_a_part_file_left_whole_by_a_crash_is_fetched_again(tmp_path, server):
    releases = tmp_path / "cache" / "releases"
    releases.mkdir(parents=True)
    whole = next(data for path, data in server.files.items() if path.endswith(buildx_binary("amd64")))
    (releases / (buildx_binary("amd64") + ".part")).write_bytes(whole + b"extra")  # longer than the file
    assert source(tmp_path, server).buildx("amd64").path.read_bytes() == whole
