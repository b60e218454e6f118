"""up/down --target aws end to end against a stand-in `pulumi` CLI whose outputs point at the
live local fleet, so the Automation API library, waiting for SSH, configure and the builder
run for real; and the wait step against real hosts."""

import dataclasses
import shutil
import subprocess
import time
import uuid
from collections import Counter

import boto3
import pytest
from moto_aws import consoles_show, point_sdk_at
from pulumi_standin import StandInPulumi

from provisioning.cli import main
from provisioning.cloudinit import HOST_KEYS_BEGIN, HOST_KEYS_END
from provisioning.errors import BuildfleetError
from provisioning.remote.ssh import HostKeyRejected, connect
from provisioning.remote.wait import wait_for_host, wait_for_hosts
from provisioning.state import FleetState

from .conftest import CACHE, amd64_build, buildctl, mtls_flags

pytestmark = pytest.mark.integration


def pinned_keys(fleet) -> dict[str, str]:
    """host name -> the key the live fleet pinned for it, as the stack would export it."""
    by_port = {}
    for line in fleet.state.known_hosts.read_text().splitlines():
        where, key = line.split(" ", 1)
        by_port[int(where.rsplit(":", 1)[1]) if where.startswith("[") else 22] = key
    return {h.name: by_port[h.ssh_port] for h in fleet.inventory.hosts}


def console_stack(fleet, monkeypatch, aws_api) -> tuple[dict, Counter]:
    """A new stack's outputs for the live fleet's hosts, each an instance of moto's whose serial
    console shows that host's real key as cloud-init's keys_to_console prints it; and the reads."""
    point_sdk_at(monkeypatch, aws_api)
    ec2 = boto3.client("ec2")
    keys, instances = pinned_keys(fleet), {}
    for host in keys:
        (made,) = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)["Instances"]
        instances[host] = made["InstanceId"]
    by_instance = {instances[host]: key for host, key in keys.items()}
    reads = consoles_show(
        monkeypatch, lambda instance, n: f"{HOST_KEYS_BEGIN}\n{by_instance[instance]} root@host\n{HOST_KEYS_END}\n"
    )
    inventory = {**fleet.inventory.to_dict(), "target": "aws"}
    outputs = {"inventory": inventory, "hostKeys": dict.fromkeys(keys, ""), "hostKeySource": "console"}
    return {**outputs, "instanceIds": instances}, reads


def test_up_target_aws_twice_then_down_with_lists_from_buildfleet_yaml_and_set(
    fleet, tmp_path, monkeypatch, capsys, aws_api
):
    """The real Automation API library against the stand-in CLI, whose stack outputs point at
    the live local fleet: reading each host's key from its console, waiting for SSH, configure
    and the builder run for real."""
    name = f"aws{uuid.uuid4().hex[:6]}"
    outputs, reads = console_stack(fleet, monkeypatch, aws_api)
    pulumi = StandInPulumi(tmp_path, monkeypatch, outputs, aws_api)
    (pulumi.project / "buildfleet.yaml").write_text("platforms: [linux/amd64, linux/arm64, linux/s390x]\n")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    public = fleet.state.ssh_key.with_suffix(".pub").read_text().strip()
    args = [
        "--fleet",
        name,
        "--project-dir",
        str(pulumi.project),
        "--set",
        "allowedCidrs=[127.0.0.1/32]",
        "--set",
        "arm64Count=0",  # this machine's artifacts are amd64's; an arm64 host would need arm64 ones
        "--set",
        f"sshPublicKey={public}",
        "--ssh-key",
        str(fleet.state.ssh_key),
        "--artifacts",
        str(CACHE),
        "--wait-timeout",
        "60",
    ]
    # The stand-in cloud's hosts are the live fleet's: the new fleet gets that fleet's CA and client,
    # as state import would give them (configure's fleet step refuses a host of another CA).
    tls = FleetState.for_fleet(name).root / "tls"
    for part in ("ca", "client"):
        shutil.copytree(fleet.state.root / "tls" / part, tls / part)
    try:
        first = main(["up", "--target", "aws", *args])
        out, err = capsys.readouterr()
        assert first == 0, out + err
        assert "hosts answer: amd64-0 after" in err  # the target's progress lines go to stderr
        assert "amd64-0: host key read from the console of i-" in err and len(reads) == len(outputs["instanceIds"])
        assert out.count("install the server certificate") == 2  # this fleet's own certificate for each buildkitd
        assert f"create node buildfleet-{name}-amd64-0" in out
        config = pulumi.stack_config(name)  # the stack defaults to the fleet's name
        assert config["buildfleet:allowedCidrs"] == ["127.0.0.1/32"]
        assert config["buildfleet:platforms"] == ["linux/amd64", "linux/arm64", "linux/s390x"]

        second = main(["up", "--target", "aws", *args])
        out, err = capsys.readouterr()
        assert second == 0, out + err
        assert "nothing to change: the fleet is configured" in out
        assert "host key read" not in err and set(reads.values()) == {1}  # the keys were kept, not read again
        # the first up's own, then the update of no resource that handed the stack the identity configure
        # completed (the hosts' certificates); the second up changed nothing of it
        ups = [c.split()[0] for c in pulumi.commands() if c.split()[0] in ("up", "destroy")]
        assert ups == ["up", "up", "up"]

        a_teammate_attaches_and_has_the_same_fleet(fleet, name, tmp_path, monkeypatch, capsys, reads)

        assert main(["down", "--fleet", name, "--project-dir", str(pulumi.project)]) == 0
        out = capsys.readouterr().out
        assert f"builder buildfleet-{name}" in out and f"stack '{name}' destroyed" in out
        assert pulumi.commands()[-2].startswith("destroy ") and not FleetState.for_fleet(name).root.exists()
        assert fleet.exec("amd64-0", "true") == ""  # the stand-in "cloud" hosts are the fixture's, left running
    finally:
        FleetState.for_fleet(name).remove()  # what this test made, if down did not get to it
        assert fleet.configure().ok  # give the fixture's hosts their own certificates back


def a_teammate_attaches_and_has_the_same_fleet(fleet, name, tmp_path, monkeypatch, capsys, reads) -> None:
    """A second operator (another state directory, project directory and docker config) attaches
    to the stack: its configure changes nothing, its builder builds, and the first operator's
    client still gets in; no console is read again (the stack's identity carries the keys)."""
    first = FleetState.for_fleet(name)
    with monkeypatch.context() as teammate:
        teammate.setenv("BUILDFLEET_STATE_DIR", str(tmp_path / "teammate-state"))
        teammate.setenv("DOCKER_CONFIG", str(tmp_path / "teammate-docker"))
        project = tmp_path / "teammate-project"
        project.mkdir()
        key = ["--ssh-key", str(fleet.state.ssh_key)]  # the team's own sshPublicKey: its private half
        assert main(["attach", "--stack", name, "--fleet", name, "--project-dir", str(project), *key]) == 0
        second = FleetState.for_fleet(name)
        assert (second.root / "tls/ca/key.pem").read_bytes() == (first.root / "tls/ca/key.pem").read_bytes()
        assert set(reads.values()) == {1}
        assert main(["configure", "--fleet", name, "--project-dir", str(project), "--artifacts", str(CACHE)]) == 0
        out, _ = capsys.readouterr()
        assert "nothing to change: the fleet is configured" in out
        assert main(["builder", "create", "--fleet", name]) == 0
        context = tmp_path / "teammate-build"
        context.mkdir()
        (context / "Dockerfile").write_text("FROM scratch\nCOPY --from=busybox busybox-amd64 /bin/busybox\n")
        built = subprocess.run(
            ["docker", *amd64_build(f"buildfleet-{name}", context)], capture_output=True, text=True, timeout=600
        )
        assert built.returncode == 0, built.stderr[-2000:]
        assert main(["builder", "rm", "--fleet", name]) == 0
        second.remove()
    for host in fleet.inventory.hosts:  # the first operator's client, untouched by the teammate
        assert buildctl(host, *mtls_flags(first.root / "tls")).returncode == 0


def test_waiting_gives_up_on_a_silent_host_with_one_line_naming_it(fleet, tmp_path):
    silent = fleet.inventory.hosts[0].__class__(**{**fleet.inventory.hosts[0].__dict__, "ssh_port": 9})  # discard
    with pytest.raises(BuildfleetError, match=r"^amd64-0 did not answer over SSH within 2 s; last: .*cannot connect"):
        wait_for_host(silent, lambda host: connect(host, fleet.state), timeout=2, interval=0.5)


def test_a_wrong_host_key_is_refused_at_once_not_retried(fleet, tmp_path):
    state = FleetState(tmp_path / "state")
    state.ensure()
    host = fleet.inventory.hosts[0]
    other = pinned_keys(fleet)["emulation-0"]
    state.write_known_hosts({(host.address, host.ssh_port): other})
    (state.root / "ssh" / "id_ed25519").write_bytes(fleet.state.ssh_key.read_bytes())
    attempts = []

    def counted(h):
        attempts.append(h.name)
        return connect(h, state)

    with pytest.raises(HostKeyRejected, match="host key differs from the pinned one"):
        wait_for_host(host, counted, timeout=30, interval=0.5)
    assert attempts == ["amd64-0"]


def test_a_wrong_host_key_ends_the_other_hosts_waits_and_each_host_is_named(fleet, tmp_path):
    state = FleetState(tmp_path / "state")
    state.ensure()
    good, other = fleet.inventory.hosts[0], fleet.inventory.hosts[1]
    silent = dataclasses.replace(other, ssh_port=9)  # discard: refused on every attempt
    state.write_known_hosts({(good.address, good.ssh_port): pinned_keys(fleet)[other.name]})
    (state.root / "ssh" / "id_ed25519").write_bytes(fleet.state.ssh_key.read_bytes())
    start = time.monotonic()
    with pytest.raises(BuildfleetError) as error:
        wait_for_hosts([good, silent], lambda h: connect(h, state), timeout=120)
    assert time.monotonic() - start < 30  # not the silent host's whole timeout
    message = str(error.value)
    assert message.startswith("waiting for SSH and cloud-init failed on 2 of 2 host(s): ")
    assert f"{good.name}: " in message and "host key differs from the pinned one" in message
    assert f"{silent.name}: stopped waiting: another host's SSH key was rejected" in message
