"""The multi-node builder over the live fleet, and a real multi-platform build through it."""

import subprocess
import uuid
from dataclasses import dataclass

import pytest

from provisioning.builder.builder import Buildx, FleetBuilder
from provisioning.builder.ciconfig import shell_script
from provisioning.builder.nodes import Node, TLSFiles, remote_nodes
from provisioning.builder.preflight import check_emulation
from provisioning.builder.registry_client import RegistryClient
from provisioning.builder.sample import SampleSources, build_sample, verify_sample
from provisioning.errors import BuildfleetError
from provisioning.platforms import parse_platforms
from provisioning.remote.ssh import connect

from .conftest import CACHE

pytestmark = pytest.mark.integration

ISSUE_PLATFORMS = parse_platforms(["amd64", "arm64", "riscv64", "ppc64le", "s390x", "386", "arm/v7"])


@pytest.fixture
def buildx(tmp_path):
    return Buildx(env={"DOCKER_CONFIG": str(tmp_path / "docker-config")})


@dataclass
class MadeBuilder:
    builder: FleetBuilder
    nodes: tuple
    created: list


@pytest.fixture
def made(fleet, buildx):
    builder = FleetBuilder(f"bf{uuid.uuid4().hex[:6]}", fleet.state.root / "builders", buildx)
    nodes = remote_nodes(builder.name, fleet.inventory, TLSFiles.in_state(fleet.state.root / "tls"))
    yield MadeBuilder(builder, nodes, builder.ensure(nodes))
    assert builder.remove() and buildx.inspect(builder.name) is None


def test_builder_has_a_node_per_host_pinned_to_its_platforms(fleet, made):
    assert [c.kind for c in made.created] == ["create", "append"]
    inspected = made.builder.inspect(bootstrap=True)
    assert {n.name: n.status for n in inspected.nodes} == {n.name: "running" for n in made.nodes}
    for node in inspected.nodes:
        host = fleet.inventory.host(node.name.removeprefix(f"{made.builder.name}-"))
        assert set(node.pinned) == {p.platform for p in host.platforms}


def test_making_the_builder_again_changes_nothing(made):
    assert made.builder.ensure(made.nodes) == []


def test_a_builder_buildfleet_did_not_make_is_never_clobbered(fleet, buildx, tmp_path):
    name = f"theirs{uuid.uuid4().hex[:6]}"
    host = fleet.inventory.hosts[0]
    buildx.run(["buildx", "create", "--name", name, "--driver", "remote", f"tcp://127.0.0.1:{host.buildkitd_port}"])
    try:
        ours = FleetBuilder(name, tmp_path / "builders", buildx)
        with pytest.raises(BuildfleetError, match="already exists and buildfleet did not make it"):
            ours.ensure(remote_nodes(name, fleet.inventory, TLSFiles.in_state(fleet.state.root / "tls")))
        assert ours.remove() is False
        assert buildx.inspect(name) is not None
    finally:
        buildx.run(["buildx", "rm", name])


def test_a_builder_whose_append_failed_is_still_ours_the_rerun_finishes_it_and_remove_takes_it(buildx, tmp_path):
    builder = FleetBuilder(f"bf{uuid.uuid4().hex[:6]}", tmp_path / "builders", buildx)
    first = Node(f"{builder.name}-a", "tcp://127.0.0.1:1", ("linux/amd64",), ())
    refused = Node(f"{builder.name}-b", "tcp://127.0.0.1:2", ("linux/arm64",), (), driver="no-such-driver")
    try:
        with pytest.raises(BuildfleetError, match="failed"):
            builder.ensure([first, refused])  # create works, the --append is refused
        assert [n.name for n in buildx.inspect(builder.name).nodes] == [first.name]
        assert builder.owned()
        second = Node(refused.name, refused.endpoint, refused.platforms, ())
        assert [c.kind for c in builder.ensure([first, second])] == ["append"]
    finally:
        assert builder.remove()
    assert buildx.inspect(builder.name) is None


def test_seven_platforms_build_each_where_the_placement_said(fleet, made, buildx):
    check_emulation(fleet.inventory, lambda host: connect(host, fleet.state))
    sources = SampleSources.from_artifacts(CACHE, ISSUE_PLATFORMS)
    image, seconds = build_sample(buildx, made.builder.name, fleet.inventory, sources, ISSUE_PLATFORMS, "it")
    results = verify_sample(fleet.inventory, "it", ISSUE_PLATFORMS)
    assert all(r.ok for r in results), [(r.platform, r.problem) for r in results]
    assert {r.platform: r.native for r in results} == {
        "linux/amd64": True,
        "linux/386": True,
        "linux/arm64": False,
        "linux/riscv64": False,
        "linux/ppc64le": False,
        "linux/s390x": False,
        "linux/arm/v7": False,
    }
    index = RegistryClient(fleet.inventory.registry).index("buildfleet-sample", "it")
    listed = {(m["platform"]["architecture"], m["platform"].get("variant", "")) for m in index["manifests"]}
    assert listed == {
        ("amd64", ""),
        ("arm64", ""),
        ("riscv64", ""),
        ("ppc64le", ""),
        ("s390x", ""),
        ("386", ""),
        ("arm", "v7"),
    }


def test_a_platform_whose_interpreter_is_missing_stops_before_any_build(fleet):
    emulation = fleet.inventory.host("emulation-0")
    transport = connect(emulation, fleet.state)
    try:
        assert transport.run(["sh", "-c", "echo -1 > /proc/sys/fs/binfmt_misc/qemu-riscv64"]).ok
    finally:
        transport.close()
    try:
        with pytest.raises(BuildfleetError) as error:
            check_emulation(fleet.inventory, lambda host: connect(host, fleet.state))
    finally:
        healed = fleet.configure()  # configure puts it back, whatever the check said
    assert str(error.value) == (
        "linux/riscv64 cannot be built on emulation-0: its QEMU interpreter qemu-riscv64 "
        "is not registered with the F flag (run buildfleet configure)"
    )
    assert healed.ok and "register riscv64" in next(
        s.detail for h in healed.hosts for s in h.steps if s.step == "binfmt"
    )


def test_the_emitted_shell_config_joins_a_real_shell_to_the_builder(fleet, tmp_path):
    name = f"ci{uuid.uuid4().hex[:6]}"
    tls = TLSFiles.in_state(fleet.state.root / "tls")
    platforms = [str(p) for p in ISSUE_PLATFORMS]
    script = shell_script(name, remote_nodes(name, fleet.inventory, tls), platforms)
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "DOCKER_CONFIG": str(tmp_path / "ci-docker"),
        "BUILDFLEET_CA": tls.ca.read_text(),
        "BUILDFLEET_CLIENT_CERT": tls.cert.read_text(),
        "BUILDFLEET_CLIENT_KEY": tls.key.read_text(),
    }
    joined = subprocess.run(
        ["sh", "-c", script + '\necho "builder=$BUILDFLEET_BUILDER"\n'],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert joined.returncode == 0, joined.stderr
    assert f"builder={name}" in joined.stdout and joined.stdout.count("Status:           running") == 2
    ci_buildx = Buildx(env={"DOCKER_CONFIG": env["DOCKER_CONFIG"]})
    try:
        sources = SampleSources.from_artifacts(CACHE, ISSUE_PLATFORMS)
        build_sample(ci_buildx, name, fleet.inventory, sources, ISSUE_PLATFORMS, "from-ci")
        results = verify_sample(fleet.inventory, "from-ci", ISSUE_PLATFORMS)
        assert all(r.ok for r in results), [(r.platform, r.problem) for r in results]
    finally:
        ci_buildx.run(["buildx", "rm", name])


def test_the_docker_container_driver_over_ssh_builds_each_platform_where_placed(fleet, tmp_path):
    from provisioning.builder import docker_container
    from provisioning.remote.machine import machine_arch

    name = f"dc{uuid.uuid4().hex[:6]}"
    buildx = Buildx(
        env={
            "DOCKER_CONFIG": str(tmp_path / "docker-config"),
            "PATH": f"{fleet.state.root / 'ssh-client'}:/usr/local/bin:/usr/bin:/bin",
        }
    )
    builder = FleetBuilder(name, tmp_path / "builders", buildx)
    nodes = docker_container.prepare(name, fleet.inventory, fleet.state, fleet.artifacts, buildx, machine_arch())
    try:
        assert [c.kind for c in builder.ensure(nodes)] == ["create", "append"]
        assert builder.ensure(nodes) == []
        inspected = builder.inspect(bootstrap=True)
        assert [(n.endpoint, n.status) for n in inspected.nodes] == [
            (f"ssh://{name}-amd64-0", "running"),
            (f"ssh://{name}-emulation-0", "running"),
        ]
        sources = SampleSources.from_artifacts(CACHE, ISSUE_PLATFORMS)
        build_sample(buildx, name, fleet.inventory, sources, ISSUE_PLATFORMS, "docker-container")
        results = verify_sample(fleet.inventory, "docker-container", ISSUE_PLATFORMS)
        assert all(r.ok for r in results), [(r.platform, r.problem) for r in results]
    finally:
        assert builder.remove()
    for host in ("amd64-0", "emulation-0"):  # buildx removed its BuildKit containers from the hosts
        assert "buildx_buildkit" not in fleet.exec(host, "docker", "ps", "-a", "--format", "{{.Names}}")
