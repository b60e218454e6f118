"""Real hosts for the integration tests: local-target fleets on this machine's Docker.

Needs what .ci/run prepares (a running Docker engine, mmdebstrap, the buildx and
buildkit artifacts in $BUILDFLEET_CACHE). Every fleet made here is removed afterwards,
and the removal itself is checked.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from provisioning.artifacts import BUILDKIT_VERSION, LocalArtifacts
from provisioning.builder.builder import Buildx, FleetBuilder
from provisioning.builder.nodes import TLSFiles, remote_nodes
from provisioning.builder.sample import SampleSources
from provisioning.hosts.configure import ConfigureOptions, configure
from provisioning.hosts.executor import FleetReport
from provisioning.inventory import Inventory, InventoryHost
from provisioning.platforms import parse_platforms
from provisioning.remote.docker import Docker
from provisioning.remote.machine import machine_arch
from provisioning.settings import Settings, settings_from_mapping
from provisioning.state import FleetState
from provisioning.targets.local.binfmt import TABLE, MachineBinfmt
from provisioning.targets.local.target import LABEL, LocalTarget

CACHE = Path(os.environ.get("BUILDFLEET_CACHE", "/var/cache/buildfleet"))


@dataclass
class LiveFleet:
    target: LocalTarget
    settings: Settings
    inventory: Inventory
    artifacts: LocalArtifacts

    @property
    def state(self) -> FleetState:
        return self.target.state

    def configure(self, **options) -> FleetReport:
        return configure(self.inventory, self.state, self.artifacts, ConfigureOptions(**options))

    def exec(self, host: str, *argv: str) -> str:
        result = self.target.docker.run(["exec", self.target.container(host), *argv])
        return result.stdout


def cli_env(root: Path) -> dict[str, str]:
    """The environment a test runs the buildfleet command in: its own state and docker config."""
    return {
        **os.environ,
        "BUILDFLEET_STATE_DIR": str(root),
        "COLUMNS": "200",
        "DOCKER_CONFIG": str(root / "docker-config"),
    }


def buildfleet(*args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    """The installed console script, as a user runs it."""
    return subprocess.run(["buildfleet", *args], capture_output=True, text=True, env=env, timeout=timeout)


def build_wheel(out: Path) -> Path:
    """buildfleet's wheel, built from this checkout as a release would be."""
    project = Path(__file__).resolve().parents[2]
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out)]
    subprocess.run([*pip, str(project)], check=True, timeout=300)
    (built,) = out.glob("buildfleet-*.whl")
    return built


def leftovers(fleet: str) -> list[str]:
    return _labelled(f"{LABEL}={fleet}")


def _labelled(label: str) -> list[str]:
    docker = Docker()
    return [f"{kind} {name}" for kind in ("container", "volume", "network") for name in docker.names(kind, label)]


@pytest.fixture(scope="session", autouse=True)
def no_fleet_outlives_the_tests():
    """Every fleet a test makes is gone when the tests end: a container left running holds the
    machine's binfmt entries and ports long after its state directory went with pytest's."""
    before = set(_labelled(LABEL))
    yield
    left = sorted(set(_labelled(LABEL)) - before)
    assert not left, f"fleets the tests made are still here: {left} (buildfleet down --fleet NAME --yes removes one)"


def qemu_entries() -> dict[str, str]:
    """This machine's QEMU registrations, as the kernel shows them."""
    return {p.name: p.read_text() for p in TABLE.glob("qemu-*")}


def binfmt_not_restored(target: LocalTarget, before: dict[str, str]) -> list[str]:
    """After ``down``: entries the fleet still holds, or that differ from before while no other
    fleet holds them."""
    ledger = MachineBinfmt().ledger
    held = json.loads(ledger.read_text()) if ledger.exists() else {}
    problems = [f"{name} still held" for name, record in held.items() if target.binfmt_holder in record["holders"]]
    now = qemu_entries()
    return problems + [
        f"{name}: {before.get(name)!r} became {now.get(name)!r}"
        for name in sorted(set(before) | set(now))
        if name not in held and before.get(name) != now.get(name)
    ]


@pytest.fixture(scope="session")
def machine_ready():
    Docker().ping()
    artifacts = LocalArtifacts(CACHE)
    artifacts.buildx(machine_arch())
    artifacts.buildkit(machine_arch())
    return artifacts


def make_fleet(tmp_path_factory, artifacts: LocalArtifacts, config: dict, say=lambda line: None) -> LiveFleet:
    name = f"it{uuid.uuid4().hex[:6]}"
    state = FleetState(tmp_path_factory.mktemp("state") / name)
    settings = settings_from_mapping({**LocalTarget.defaults, **config})
    target = LocalTarget(name, state, CACHE, say=say)
    return LiveFleet(target, settings, target.up(settings), artifacts)


@pytest.fixture(scope="session", params=["systemd", "none"], ids=["systemd-hosts", "init-less-hosts"])
def fleet(request, tmp_path_factory, machine_ready):
    """The default local fleet (amd64 host + emulation host), configured once per kind of
    host: booting systemd like an EC2 host, or with no init system at all (supervisor)."""
    before = qemu_entries()
    live = make_fleet(tmp_path_factory, machine_ready, {"localInit": request.param})
    try:
        live.first_report = live.configure()
        yield live
    finally:
        live.target.down()
    assert leftovers(live.target.fleet) == []
    assert binfmt_not_restored(live.target, before) == []  # the machine's table as the fleet found it


@pytest.fixture
def run(fleet, tmp_path):
    """``buildfleet ARGS --fleet <the live fleet>`` as a user runs it, with this test's docker config."""
    env = {
        **os.environ,
        "BUILDFLEET_STATE_DIR": str(fleet.state.root.parent),
        "COLUMNS": "200",
        "DOCKER_CONFIG": str(tmp_path / "docker-config"),
    }

    def buildfleet(*args):
        return subprocess.run(
            ["buildfleet", *args, "--fleet", fleet.target.fleet], capture_output=True, text=True, env=env, timeout=900
        )

    return buildfleet


def buildctl(
    host: InventoryHost, *tls: str, command: tuple[str, ...] = ("debug", "workers", "--format", "{{json .}}")
) -> subprocess.CompletedProcess:
    """buildctl (default: debug workers, as JSON) against a host's buildkitd, with the TLS flags given."""
    buildctl = CACHE / "buildkit" / BUILDKIT_VERSION / "amd64" / "buildctl"
    return subprocess.run(
        [
            str(buildctl),
            "--addr",
            f"tcp://127.0.0.1:{host.buildkitd_port}",
            *tls,
            *command,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def mtls_flags(tls: Path) -> list[str]:
    """buildctl's flags for the fleet's CA and client certificate in a ``tls`` directory."""
    return [
        "--tlscacert",
        str(tls / "ca" / "cert.pem"),
        "--tlscert",
        str(tls / "client" / "cert.pem"),
        "--tlskey",
        str(tls / "client" / "key.pem"),
        "--tlsservername",
        "127.0.0.1",
    ]


def amd64_build(builder: str, context: Path) -> list[str]:
    """``docker buildx build`` arguments for a linux/amd64 build of ``context`` whose Dockerfile
    may ``COPY --from=busybox busybox-amd64`` (the static busybox .ci/prepare fetched)."""
    busybox = SampleSources.from_artifacts(CACHE, parse_platforms(["linux/amd64"])).busybox
    return [
        *("buildx", "build", "--builder", builder, "--platform", "linux/amd64", "--progress", "plain"),
        *("--build-context", f"busybox={busybox}", "--output", "type=cacheonly", str(context)),
    ]


def amd64_only_builder(fleet: LiveFleet, tmp_path: Path) -> tuple[Buildx, FleetBuilder]:
    """A builder of the fleet's amd64 host alone (remote driver, mTLS), with this test's docker
    config; the caller removes it."""
    buildx = Buildx(env={"DOCKER_CONFIG": str(tmp_path / "docker-config")})
    builder = FleetBuilder(f"bf{uuid.uuid4().hex[:6]}", tmp_path / "builders", buildx)
    amd64 = dataclasses.replace(fleet.inventory, hosts=(fleet.inventory.host("amd64-0"),))
    builder.ensure(remote_nodes(builder.name, amd64, TLSFiles.in_state(fleet.state.root / "tls")))
    return buildx, builder
