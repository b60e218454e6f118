"""The local fleet, brought up and configured for real, checked on the hosts over SSH."""

import dataclasses
import json
import uuid

import pytest
from elf import aarch64_exit
from test_secrets import loose, secrets_in

from provisioning.artifacts import BUILDX_VERSION
from provisioning.builder.builder import Buildx, FleetBuilder
from provisioning.builder.nodes import TLSFiles, remote_nodes
from provisioning.hosts.executor import FAILED, SKIPPED, UNCHANGED, run_host
from provisioning.hosts.operations.metadata import METADATA_SERVICE, metadata_step
from provisioning.inventory import InventoryHost
from provisioning.remote import facts as f
from provisioning.remote.facts import gather
from provisioning.remote.ssh import HostKeyRejected, SSHTransport, connect

from .conftest import amd64_build, buildctl, mtls_flags

pytestmark = pytest.mark.integration


def ssh(fleet, host_name, *argv):
    host = fleet.inventory.host(host_name)
    transport = SSHTransport(host, fleet.state.ssh_key, fleet.state.known_hosts)
    try:
        return transport.run(argv)
    finally:
        transport.close()


def test_up_gives_an_amd64_host_and_an_emulation_host_on_loopback(fleet):
    hosts = {h.name: h for h in fleet.inventory.hosts}
    assert set(hosts) == {"amd64-0", "emulation-0"}
    assert {h.address for h in hosts.values()} == {"127.0.0.1"}
    assert {p.platform: p.native for p in hosts["emulation-0"].platforms}["linux/arm64"] is False


def test_hosts_boot_the_init_system_asked_for(fleet):
    expected = "systemd" if fleet.settings.local_init == "systemd" else "sshd"
    assert ssh(fleet, "amd64-0", "cat", "/proc/1/comm").stdout.strip() == expected


def test_first_configure_succeeds_on_every_host(fleet):
    report = fleet.first_report
    assert report.ok, [(f.host, f.step, f.detail, f.stderr_tail) for f in report.failures()]
    steps = {(s.host, s.step) for h in report.hosts for s in h.steps}
    assert ("emulation-0", "binfmt") in steps and ("amd64-0", "binfmt") not in steps


def test_docker_is_at_least_19_03_and_answers(fleet):
    for host in ("amd64-0", "emulation-0"):
        result = ssh(fleet, host, "docker", "version", "--format", "{{.Server.Version}}")
        assert result.ok, result.stderr
        major, minor = (int(x) for x in result.stdout.strip().split(".")[:2])
        assert (major, minor) >= (19, 3)


def test_buildx_plugin_is_the_pinned_version(fleet):
    for host in ("amd64-0", "emulation-0"):
        result = ssh(fleet, host, "docker", "buildx", "version")
        assert result.ok and f" v{BUILDX_VERSION} " in result.stdout, result.stdout + result.stderr


def test_emulation_host_registers_its_platforms_with_the_f_flag(fleet):
    for arch in ("aarch64", "arm", "ppc64le", "s390x", "riscv64"):
        entry = ssh(fleet, "emulation-0", "cat", f"/proc/sys/fs/binfmt_misc/qemu-{arch}").stdout
        assert "enabled" in entry.splitlines()[0], arch
        flags = next(line for line in entry.splitlines() if line.startswith("flags:"))
        assert "F" in flags.split(":", 1)[1], (arch, flags)
        # the pinned static QEMU 10 (the default when its artifact exists, as .ci/prepare makes it)
        assert f"interpreter /usr/local/lib/buildfleet/qemu/{arch}-binfmt-P" in entry, entry


def test_a_foreign_binary_runs_through_qemu_on_the_emulation_host(fleet):
    host = fleet.inventory.host("emulation-0")
    transport = SSHTransport(host, fleet.state.ssh_key, fleet.state.known_hosts)
    try:
        transport.put_bytes(aarch64_exit(42), "/root/exit42-arm64")
        assert transport.run(["chmod", "+x", "/root/exit42-arm64"]).ok
        assert transport.run(["/root/exit42-arm64"]).exit_code == 42
    finally:
        transport.close()


def test_buildkitd_answers_over_mtls_with_the_planned_platforms(fleet):
    tls = fleet.state.root / "tls"
    for host in fleet.inventory.hosts:
        result = buildctl(host, *mtls_flags(tls))
        assert result.returncode == 0, result.stderr
        platforms = {
            f"{p['os']}/{p['architecture']}" + (f"/{p['variant']}" if p.get("variant") else "")
            for w in json.loads(result.stdout)
            for p in w["platforms"]
        }
        assert {p.platform for p in host.platforms} <= platforms, host.name


def test_buildkitd_refuses_a_client_without_a_certificate(fleet):
    tls = fleet.state.root / "tls"
    host = fleet.inventory.host("amd64-0")
    result = buildctl(host, "--tlscacert", str(tls / "ca" / "cert.pem"), "--tlsservername", "127.0.0.1")
    assert result.returncode != 0
    assert "certificate required" in result.stderr or "bad certificate" in result.stderr, result.stderr


def test_second_configure_changes_nothing_and_says_so(fleet):
    report = fleet.configure()
    assert report.ok and report.changes == 0
    for host in report.hosts:
        for step in host.steps:
            assert step.status == UNCHANGED and step.detail.startswith("no change: "), step


def test_a_crashed_buildkitd_is_restarted_by_systemd_or_the_supervisor(fleet):
    before = ssh(fleet, "amd64-0", "pgrep", "-x", "buildkitd").stdout.split()
    assert before
    assert ssh(fleet, "amd64-0", "pkill", "-x", "buildkitd").ok
    result = ssh(
        fleet,
        "amd64-0",
        "sh",
        "-c",
        'for i in $(seq 40); do p=$(pgrep -x buildkitd) && [ "$p" != "$1" ] && '
        "buildctl --addr unix:///run/buildkit/buildkitd.sock debug workers >/dev/null 2>&1 && exit 0; "
        "sleep 0.5; done; exit 1",
        "wait",
        before[0],
    )
    assert result.ok, "buildkitd did not come back within 20 s"


def test_services_come_back_when_the_host_restarts(fleet):
    fleet.target.docker.run(["restart", "--time", "2", fleet.target.container("emulation-0")])
    fleet.inventory = fleet.target.up(fleet.settings)  # re-reads the published ports
    report = fleet.configure()
    assert report.ok and report.changes == 0, [(s.step, s.status, s.detail) for h in report.hosts for s in h.steps]


def test_one_unreachable_host_does_not_hide_the_others(fleet):
    ghost = InventoryHost("ghost-0", "amd64", "amd64", "127.0.0.1", "", "root", ssh_port=1)
    fleet_with_ghost = type(fleet.inventory)(fleet.inventory.target, fleet.inventory.hosts + (ghost,))
    from provisioning.hosts.configure import configure

    report = configure(fleet_with_ghost, fleet.state, fleet.artifacts)
    by_host = {h.host: h for h in report.hosts}
    assert not by_host["ghost-0"].ok
    assert by_host["ghost-0"].steps[0].status == FAILED and "cannot connect" in by_host["ghost-0"].steps[0].detail
    assert all(s.status == SKIPPED for s in by_host["ghost-0"].steps[1:])
    assert by_host["amd64-0"].ok and by_host["emulation-0"].ok


def test_a_host_key_that_is_not_pinned_is_refused(fleet, tmp_path):
    host = fleet.inventory.host("amd64-0")
    other = fleet.inventory.host("emulation-0")
    wrong = tmp_path / "known_hosts"
    # pin the other host's key for this host's address: a man in the middle, as far as SSH knows
    line = next(
        pinned
        for pinned in fleet.state.known_hosts.read_text().splitlines()
        if pinned.startswith(f"[127.0.0.1]:{other.ssh_port} ")
    )
    wrong.write_text(line.replace(f":{other.ssh_port}]", f":{host.ssh_port}]") + "\n")
    transport = SSHTransport(host, fleet.state.ssh_key, wrong)
    with pytest.raises(HostKeyRejected, match="amd64-0 .*: host key (differs from the pinned one|is not pinned)"):
        transport.run(["true"])


def test_sshd_accepts_keys_only(fleet):
    for host in ("amd64-0", "emulation-0"):
        effective = fleet.exec(host, "/usr/sbin/sshd", "-T")
        assert "passwordauthentication no" in effective and "kbdinteractiveauthentication no" in effective, host
        assert "permitrootlogin without-password" in effective or "permitrootlogin prohibit-password" in effective


def test_every_secret_in_the_state_directory_is_0600_in_a_0700_directory(fleet):
    assert len(secrets_in(fleet.state.root)) >= 5  # ssh key, CA, client, a server key per host
    assert loose(fleet.state.root) == []


METADATA_PROBE = """\
FROM scratch AS probe
COPY --from=busybox busybox-amd64 /bin/busybox
ARG TRY
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox wget -T 3 -O- http://169.254.169.254/latest/ > /out 2>&1; true"]
FROM scratch
COPY --from=probe /out /out
"""


def test_an_aws_hosts_build_steps_cannot_reach_the_instance_metadata_service(fleet, tmp_path):
    """The metadata step (run on AWS hosts) on a real host: rules in place now and at boot,
    and a build step there is refused at once. The probe starts only after the rule is seen in
    place, so nothing leaves this machine."""
    host = fleet.inventory.host("amd64-0")
    report = run_host(connect(host, fleet.state), [metadata_step()])
    assert report.ok, report.steps
    transport = connect(host, fleet.state)
    try:
        assert gather(transport, {"blocked": f.MetadataBlocked()})["blocked"] is True
        if fleet.settings.local_init == "systemd":
            shown = transport.run(["systemctl", "show", "-p", "Before", "-p", "UnitFileState", METADATA_SERVICE.name])
            assert "buildkitd.service" in shown.stdout and "UnitFileState=enabled" in shown.stdout, shown.stdout
        assert run_host(connect(host, fleet.state), [metadata_step()]).steps[0].status == UNCHANGED  # idempotent
    finally:
        transport.close()
    builder = FleetBuilder(
        f"md{uuid.uuid4().hex[:6]}", fleet.state.root / "builders", Buildx(env={"DOCKER_CONFIG": str(tmp_path / "dc")})
    )
    builder.ensure(
        remote_nodes(
            builder.name,
            dataclasses.replace(fleet.inventory, hosts=(host,)),
            TLSFiles.in_state(fleet.state.root / "tls"),
        )
    )
    try:
        (tmp_path / "ctx").mkdir()
        (tmp_path / "ctx" / "Dockerfile").write_text(METADATA_PROBE)
        args = amd64_build(builder.name, tmp_path / "ctx")
        args[args.index("type=cacheonly")] = f"type=local,dest={tmp_path / 'out'}"
        builder.buildx.run([*args[:-1], "--build-arg", f"TRY={uuid.uuid4().hex}", args[-1]])
        probe = (tmp_path / "out" / "out").read_text()
        assert "Connection refused" in probe, probe
    finally:
        builder.remove()
