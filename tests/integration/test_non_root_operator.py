"""A fresh operator without root and without apt: buildfleet installed from its wheel into a venv
of Debian's own python3, ``artifacts lock`` against an internal mirror (the upstream layout on
127.0.0.1), then ``up --target static`` onto a host that exists -- run as uid 65534."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml
from release_server import ReleaseServer

from provisioning.artifacts import BUILDKIT_VERSION, BUILDX_VERSION
from provisioning.artifacts.release import LOCK_FILE, buildkit_archive, buildx_binary

from .conftest import CACHE, build_wheel, leftovers, make_fleet

pytestmark = pytest.mark.integration

NOBODY = 65534
WHEELS = CACHE / "wheels"  # the dependencies' wheels for /usr/bin/python3: .ci/prepare all makes them


@pytest.fixture(scope="module")
def host(tmp_path_factory, machine_ready):
    """One amd64 host that exists before the operator arrives (a local-target container, as root)."""
    live = make_fleet(
        tmp_path_factory, machine_ready, {"emulationCount": 0, "platforms": ["linux/amd64"], "localInit": "none"}
    )
    try:
        yield live
    finally:
        live.target.down()
        live.state.remove()
    assert leftovers(live.target.fleet) == []


@pytest.fixture(scope="module")
def home():
    """A home directory uid 65534 owns, under a directory of this test's own (removed afterwards)."""
    shared = Path(tempfile.mkdtemp(prefix="bf-operator-"))
    try:
        shared.chmod(0o755)
        home = shared / "home"
        home.mkdir()
        os.chown(home, NOBODY, NOBODY)
        yield home
    finally:
        shutil.rmtree(shared)


@pytest.fixture(scope="module")
def mirror(machine_ready):
    """An Artifactory-like mirror: the upstream release files under a path of its own, made from
    the binaries the go source built (so the hosts get real, runnable ones)."""
    serving = ReleaseServer(prefix="/artifactory/github").start()
    buildkitd, buildctl = machine_ready.buildkit("amd64")
    buildx = machine_ready.buildx("amd64")
    serving.publish("amd64", buildkitd.path.read_bytes(), buildctl.path.read_bytes(), buildx.path.read_bytes())
    yield serving
    serving.stop()


def as_operator(home: Path, *argv: str, cwd: Path | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    env = {
        "PATH": f"{home / 'venv' / 'bin'}:/usr/bin:/bin",
        "HOME": str(home),
        "USER": "operator",
        "LANG": "C.UTF-8",
        "COLUMNS": "200",
    }
    setpriv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    return subprocess.run([*setpriv, *argv], cwd=cwd or home, env=env, capture_output=True, text=True, timeout=timeout)


def install(home: Path) -> None:
    """As pipx installs it: the wheel into a venv of its own, dependencies from wheels, no index."""
    if not list(WHEELS.glob("fabric-*.whl")):
        pytest.fail(f"no dependency wheels in {WHEELS}: .ci/prepare all makes them")
    wheel = build_wheel(home.parent / "dist")
    venv = as_operator(home, "/usr/bin/python3", "-m", "venv", str(home / "venv"))
    assert venv.returncode == 0, venv.stderr
    pip = as_operator(
        home, str(home / "venv" / "bin" / "pip"), "install", "-q", "--no-index", "--find-links", str(WHEELS), str(wheel)
    )
    assert pip.returncode == 0, pip.stdout + pip.stderr


def static_inventory(host, home: Path) -> Path:
    """The operator's host list: the host's address, port, pinned host key and a key the operator owns."""
    (inventoried,) = host.inventory.hosts
    key = home / "id_ed25519"
    shutil.copyfile(host.state.ssh_key, key)
    key.chmod(0o600)
    os.chown(key, NOBODY, NOBODY)
    known = dict(line.split(" ", 1) for line in host.state.known_hosts.read_text().splitlines())
    entry = {
        "name": "build-amd64",
        "address": "127.0.0.1",
        "port": inventoried.ssh_port,
        "user": "root",
        "role": "amd64",
        "key": str(key),
        "hostKey": known[f"[127.0.0.1]:{inventoried.ssh_port}"],
        "buildkitdPort": inventoried.buildkitd_port,
    }
    path = home / "hosts.yaml"
    path.write_text(yaml.safe_dump({"hosts": [entry]}))
    return path


def test_a_user_without_root_locks_the_mirrors_release_files_and_brings_up_static_hosts_with_them(host, home, mirror):
    install(home)
    infra = home / "infra"
    as_operator(home, "mkdir", str(infra))
    config = infra / "buildfleet.yaml"
    config.write_text(
        yaml.safe_dump({"artifactSource": "release", "artifactMirror": mirror.base, "platforms": ["linux/amd64"]})
    )

    lock = as_operator(home, "buildfleet", "artifacts", "lock", "--arch", "amd64", cwd=infra)
    assert lock.returncode == 0, lock.stdout + lock.stderr
    recorded = json.loads((infra / LOCK_FILE).read_text())
    assert (infra / LOCK_FILE).stat().st_uid == NOBODY
    fetched = sorted(path for path, _ in mirror.requests)
    assert all(path.startswith(mirror.prefix + "/") for path in fetched), fetched
    assert {buildkit_archive("amd64"), buildx_binary("amd64")} <= set(json.dumps(recorded).split('"'))

    inventory = static_inventory(host, home)
    up = as_operator(home, "buildfleet", "up", "--target", "static", "--inventory", str(inventory), "--json", cwd=infra)
    assert up.returncode == 0, up.stdout + up.stderr
    assert len(mirror.requests) == len(fetched)  # up used the cache the lock filled, checked against the lock
    versions = host.exec("amd64-0", "sh", "-c", "buildkitd --version; docker buildx version")
    assert BUILDKIT_VERSION in versions and BUILDX_VERSION in versions, versions
    cache = home / ".cache" / "buildfleet"
    assert {p.stat().st_uid for p in cache.rglob("*")} == {NOBODY}  # nothing the user cannot own

    doctor = as_operator(home, "buildfleet", "doctor", "--json", cwd=infra)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    down = as_operator(home, "buildfleet", "down", "--yes", cwd=infra)
    assert down.returncode == 0, down.stdout + down.stderr
    assert not (home / ".local" / "state" / "buildfleet" / "default").exists()
