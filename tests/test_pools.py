"""Pools: a native role with more than one host is one buildx node behind a balancer."""

import subprocess
from pathlib import Path

import pytest

from provisioning.bench.concurrency import Outcome, Wave, same_machine_note, speedup
from provisioning.builder.nodes import TLSFiles, docker_container_nodes, remote_nodes
from provisioning.certs import FleetCA
from provisioning.errors import BuildfleetError, ConfigError, PlacementError
from provisioning.hosts.configure import server_names
from provisioning.inventory import Endpoint, Inventory, Pool, inventory_from_plan
from provisioning.placement import EMULATION, NATIVE, QEMU, HostSpec, place
from provisioning.plan import plan_fleet, plan_on_machine
from provisioning.platforms import parse_platforms
from provisioning.settings import settings_from_mapping
from provisioning.targets.local.balancer import STICK_MS, Backend, PoolListener, haproxy_binary, haproxy_config
from provisioning.targets.local.target import LocalTarget

TLS = TLSFiles(Path("/s/ca.pem"), Path("/s/cert.pem"), Path("/s/key.pem"))


def local_settings(**config):
    return settings_from_mapping({"arm64Count": 0, **config})


def pooled_inventory() -> Inventory:
    plan = plan_on_machine(local_settings(amd64Count=2, platforms=["linux/amd64", "linux/386", "linux/s390x"]), "amd64")
    endpoints = {
        h.name: Endpoint("127.0.0.1", f"172.18.0.{i + 2}", 2200 + i, 3300 + i) for i, h in enumerate(plan.hosts)
    }
    pools = (Pool("amd64-pool", "127.0.0.1", 4400, STICK_MS),)
    return inventory_from_plan(plan, "local", endpoints, "root", "", pools, LocalTarget.features)


def test_two_amd64_hosts_form_one_pool_that_builds_every_amd64_platform():
    plan = plan_fleet(settings_from_mapping({"amd64Count": 2, "platforms": ["linux/amd64", "linux/386"]}))
    assert plan.pools == {"amd64-pool": ("amd64-0", "amd64-1")}
    assert {(str(a.platform), a.host) for a in plan.placement.assignments} == {
        ("linux/amd64", "amd64-pool"),
        ("linux/386", "amd64-pool"),
    }
    assert [h["pool"] for h in plan.to_dict()["hosts"]] == ["amd64-pool", "amd64-pool", "", ""]


def test_one_host_per_role_makes_no_pool_and_emulation_hosts_still_split_platforms():
    plan = plan_fleet(settings_from_mapping({"emulationCount": 2, "platforms": ["linux/s390x", "linux/ppc64le"]}))
    assert plan.pools == {}
    assert {a.host for a in plan.placement.assignments} == {"emulation-0", "emulation-1"}


def test_a_pool_is_placed_like_one_host_native_first():
    hosts = [HostSpec("a-0", "amd64", "amd64", pool="p"), HostSpec("a-1", "amd64", "amd64", pool="p")]
    hosts.append(HostSpec("emulation-0", EMULATION, "amd64"))
    placement = place(parse_platforms(["amd64", "s390x"]), hosts)
    assert [(a.host, a.mode) for a in placement.assignments] == [("p", NATIVE), ("emulation-0", QEMU)]


def test_a_pool_of_unlike_hosts_or_named_like_a_host_is_refused():
    with pytest.raises(PlacementError, match="pool p: host b-0 is not like"):
        place(
            parse_platforms(["amd64"]),
            [HostSpec("a-0", "amd64", "amd64", pool="p"), HostSpec("b-0", "arm64", "arm64", pool="p")],
        )
    with pytest.raises(PlacementError, match="repeated: a-0"):
        place(parse_platforms(["amd64"]), [HostSpec("a-0", "amd64", "amd64", pool="a-0")])


def test_the_inventory_keeps_pools_and_each_member_builds_the_pools_platforms():
    inventory = pooled_inventory()
    assert Inventory.from_dict(inventory.to_dict()) == inventory
    members = inventory.members("amd64-pool")
    assert [m.name for m in members] == ["amd64-0", "amd64-1"]
    assert [[p.platform for p in m.platforms] for m in members] == [["linux/amd64", "linux/386"]] * 2
    assert inventory.platforms == ("linux/amd64", "linux/386", "linux/s390x")  # each once


def test_a_fleet_less_its_powered_off_hosts_keeps_a_pool_while_one_member_is_left():
    inventory = pooled_inventory()  # amd64-0, amd64-1 in amd64-pool, emulation-0
    one_left = inventory.without(["amd64-0"])
    assert [h.name for h in one_left.hosts] == ["amd64-1", "emulation-0"] and one_left.pools == inventory.pools
    none_left = inventory.without(["amd64-0", "amd64-1"])
    assert [h.name for h in none_left.hosts] == ["emulation-0"] and none_left.pools == ()
    assert inventory.without([]) == inventory


def test_a_member_without_its_pools_balancer_is_named():
    data = pooled_inventory().to_dict()
    del data["pools"]
    with pytest.raises(ConfigError, match="pool 'amd64-pool' but no balancer"):
        Inventory.from_dict(data)


def test_the_builder_has_one_node_for_the_pool_at_its_balancer_verified_by_its_address():
    nodes = remote_nodes("bf", pooled_inventory(), TLS)
    assert [(n.name, n.endpoint, n.platforms) for n in nodes] == [
        ("bf-amd64-pool", "tcp://127.0.0.1:4400", ("linux/amd64", "linux/386")),
        ("bf-emulation-0", "tcp://127.0.0.1:3302", ("linux/s390x",)),
    ]
    assert dict(nodes[0].driver_opts)["servername"] == "127.0.0.1"


def test_the_docker_container_driver_refuses_a_pool_by_name():
    with pytest.raises(BuildfleetError, match="pool amd64-pool: the docker-container driver"):
        docker_container_nodes("bf", pooled_inventory(), "moby/buildkit")


def test_each_members_server_certificate_carries_the_balancers_name():
    inventory = pooled_inventory()
    member = inventory.host("amd64-1")
    pool = Pool("amd64-pool", "pool.example.elb.amazonaws.com", 1234)
    assert server_names(member, pool)[-2:] == ["pool.example.elb.amazonaws.com", "amd64-pool"]
    assert "pool.example.elb.amazonaws.com" not in server_names(inventory.host("emulation-0"), None)


@pytest.mark.process
def test_haproxy_accepts_the_rendered_configuration(tmp_path):
    """Checked by Debian's HAProxy itself (``haproxy -c``), with the fleet's real CA and client files."""
    ca = FleetCA(tmp_path / "tls")
    client = ca.client()
    pem = tmp_path / "client.pem"
    pem.write_bytes(client.cert + client.key)
    listener = PoolListener(
        "amd64-pool", 4400, (Backend("amd64-0", "127.0.0.1", 3300), Backend("amd64-1", "127.0.0.1", 3301))
    )
    text = haproxy_config([listener], tmp_path / "tls" / "ca" / "cert.pem", pem, tmp_path / "s.sock")
    assert "balance leastconn" in text and "stick on src" in text and "check-ssl verify required" in text
    (tmp_path / "haproxy.cfg").write_text(text)
    checked = subprocess.run(
        [haproxy_binary(), "-c", "-f", str(tmp_path / "haproxy.cfg")], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    pem.unlink()  # a check without the client certificate is refused, so the test can fail
    refused = subprocess.run(
        [haproxy_binary(), "-c", "-f", str(tmp_path / "haproxy.cfg")], capture_output=True, text=True
    )
    assert refused.returncode != 0


def test_a_concurrency_wave_counts_builds_per_host_and_throughput():
    fleet = Wave(
        "amd64-pool", (Outcome(0, "amd64-0", 4.0), Outcome(1, "amd64-1", 5.0), Outcome(2, "", 1.0, "exit 1")), 10.0
    )
    alone = Wave("amd64-0 alone", (Outcome(0, "amd64-0", 4.0), Outcome(1, "amd64-0", 6.0)), 20.0)
    assert fleet.per_host == {"amd64-0": 1, "amd64-1": 1} and len(fleet.failures) == 1
    assert (fleet.per_minute, alone.per_minute, fleet.median_seconds) == (12.0, 6.0, 4.5)
    assert speedup(fleet, alone) == 2.0


def test_a_local_fleet_says_its_hosts_share_this_machines_cpus():
    assert "share those CPUs" in same_machine_note(pooled_inventory(), 2)
    assert same_machine_note(Inventory("aws", ()), 2) == ""
