"""The static target against hosts that already exist (the session fleet's, reached by SSH)."""

import shutil
import socket

import pytest
import yaml

from provisioning.errors import BuildfleetError, ConfigError
from provisioning.hosts.configure import configure
from provisioning.remote.ssh import connect
from provisioning.settings import settings_from_mapping
from provisioning.state import FleetState
from provisioning.targets.static import StaticTarget

pytestmark = pytest.mark.integration


def static_file(fleet, tmp_path, roles):
    known = dict(line.split(" ", 1) for line in fleet.state.known_hosts.read_text().splitlines())
    hosts = []
    for host in fleet.inventory.hosts:
        hosts.append(
            {
                "name": f"existing-{host.name}",
                "address": "127.0.0.1",
                "port": host.ssh_port,
                "user": "root",
                "role": roles[host.name],
                "key": str(fleet.state.ssh_key),
                "hostKey": known[f"[127.0.0.1]:{host.ssh_port}"],
                "buildkitdPort": host.buildkitd_port,
            }
        )
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump({"hosts": hosts}))
    return path


def test_static_hosts_get_arch_detected_placement_and_configure(fleet, tmp_path):
    path = static_file(fleet, tmp_path, {"amd64-0": "amd64", "emulation-0": "emulation"})
    state = FleetState(tmp_path / "static-state")
    shutil.copytree(fleet.state.root / "tls", state.root / "tls")  # the fleet's identity, as state import gives it
    settings = settings_from_mapping({"platforms": ["linux/amd64", "linux/arm64", "linux/s390x"]})
    inventory = StaticTarget(path, state, tmp_path / "no-known-hosts").up(settings)
    hosts = {h.name: h for h in inventory.hosts}
    assert {h.arch for h in hosts.values()} == {"amd64"}
    assert [(p.platform, p.native) for p in hosts["existing-amd64-0"].platforms] == [("linux/amd64", True)]
    assert [(p.platform, p.native) for p in hosts["existing-emulation-0"].platforms] == [
        ("linux/arm64", False),
        ("linux/s390x", False),
    ]
    report = configure(inventory, state, fleet.artifacts)
    assert report.ok, [(s.host, s.step, s.detail) for s in report.failures()]


def test_hosts_serving_another_fleet_ca_are_never_taken_over_by_state_made_anew(fleet, tmp_path):
    """An operator without the fleet's state would mint a second CA: each host refuses at its
    first step (fleet) and nothing on it is written."""
    path = static_file(fleet, tmp_path, {"amd64-0": "amd64", "emulation-0": "emulation"})
    state = FleetState(tmp_path / "anew")
    inventory = StaticTarget(path, state, tmp_path / "no-known-hosts").up(settings_from_mapping({}))
    report = configure(inventory, state, fleet.artifacts)
    refused = {s.host: s.detail for s in report.failures()}
    assert sorted(refused) == ["existing-amd64-0", "existing-emulation-0"]
    assert all("serves a certificate of a fleet CA this state does not hold" in d for d in refused.values())
    changed = [(s.host, s.step, s.detail) for h in report.hosts for s in h.steps if s.status == "changed"]
    assert {s.step for s in report.failures()} == {"fleet"} and changed == []  # the first step: nothing written


def test_a_declared_role_that_contradicts_the_cpu_is_refused(fleet, tmp_path):
    path = static_file(fleet, tmp_path, {"amd64-0": "arm64", "emulation-0": "emulation"})
    target = StaticTarget(path, FleetState(tmp_path / "s"), tmp_path / "none")
    with pytest.raises(ConfigError, match="'existing-amd64-0' is declared role arm64 but its CPU is amd64"):
        target.up(settings_from_mapping({"platforms": ["linux/amd64"]}))


def test_a_host_reachable_only_through_a_bastion_is_detected_and_reached_through_it(fleet, tmp_path):
    """The operator's ~/.ssh/config: a Host alias whose HostName only the bastion can resolve (the
    inner container's name on the fleet's Docker network) and a ProxyJump to the bastion, an alias
    of its own; both host keys pinned, neither taken on sight."""
    known = dict(line.split(" ", 1) for line in fleet.state.known_hosts.read_text().splitlines())
    bastion, inner = fleet.inventory.host("amd64-0"), fleet.inventory.host("emulation-0")
    hidden = fleet.target.container("emulation-0")
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo(hidden, 22)  # not from here: only through the bastion
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host jump\n  HostName 127.0.0.1\n  Port {bastion.ssh_port}\n  User root\n"
        f"  IdentityFile {fleet.state.ssh_key}\n"
        f"Host builder\n  HostName {hidden}\n  User root\n  IdentityFile {fleet.state.ssh_key}\n  ProxyJump jump\n"
    )
    entry = {
        "name": "builder",
        "address": "builder",
        "role": "emulation",
        "hostKey": known[f"[127.0.0.1]:{inner.ssh_port}"],
        "jumpHostKey": known[f"[127.0.0.1]:{bastion.ssh_port}"],
    }
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump({"hosts": [entry]}))
    state = FleetState(tmp_path / "bastion-state")
    target = StaticTarget(path, state, tmp_path / "no-known-hosts", ssh_config=config)
    (host,) = target.up(settings_from_mapping({"platforms": ["linux/s390x"]})).hosts
    assert (host.address, host.ssh_port, host.ssh_jump) == (hidden, 22, f"root@127.0.0.1:{bastion.ssh_port}")
    assert host.arch == "amd64" and [p.platform for p in host.platforms] == ["linux/s390x"]
    transport = connect(host, state)
    try:
        assert transport.run(["hostname"]).stdout.strip() == "emulation-0"
    finally:
        transport.close()
    another = " ".join(fleet.state.ssh_key.with_suffix(".pub").read_text().split()[:2])  # valid, not the bastion's
    wrong = {**entry, "jumpHostKey": another}
    path.write_text(yaml.safe_dump({"hosts": [wrong]}))
    with pytest.raises(BuildfleetError, match="host key"):
        StaticTarget(path, FleetState(tmp_path / "other"), tmp_path / "none", ssh_config=config).up(
            settings_from_mapping({"platforms": ["linux/s390x"]})
        )
