"""The static target's inventory file: validated up front, every error naming host and key."""

import json

import paramiko
import pytest
import yaml

from provisioning.cli import main
from provisioning.errors import ConfigError
from provisioning.targets.static import StaticHost, parse_static_hosts, parse_static_pools, pinned_key

GOOD = {"name": "pi", "address": "192.0.2.10", "user": "pi", "role": "arm64"}


def test_a_minimal_entry_gets_defaults():
    (host,) = parse_static_hosts({"hosts": [GOOD]}, "inv.yaml")
    assert (host.port, host.buildkitd_port, host.key.name) == (22, 1234, "id_ed25519")


@pytest.mark.parametrize(
    ("document", "culprit"),
    [
        ({}, "'hosts:' list"),
        ({"hosts": ["pi"]}, "host #1"),
        ({"hosts": [{**GOOD, "user": ""}]}, "host 'pi': 'user' is required"),
        ({"hosts": [{**GOOD, "role": "gpu"}]}, "host 'pi': role 'gpu'"),
        ({"hosts": [{**GOOD, "arch": "arm64"}]}, "host 'pi': unknown key 'arch'"),
        ({"hosts": [{**GOOD, "port": "ssh"}]}, "host 'pi': 'port'"),
        ({"hosts": [GOOD, GOOD]}, "host 'pi': the name is used twice"),
        ({"hosts": [{**GOOD, "user": "pi\n  ProxyCommand sh -c id"}]}, "host 'pi': user 'pi\\n  ProxyCommand"),
        ({"hosts": [{**GOOD, "name": "../../etc"}]}, "name '../../etc' is not a valid name"),
        ({"hosts": [{**GOOD, "address": "192.0.2.10 -oProxyCommand=x"}]}, "address '192.0.2.10 -oProxyCommand"),
        ({"hosts": [{**GOOD, "port": 70000}]}, "host 'pi': port 70000 is not a TCP port"),
        ({"hosts": [{**GOOD, "buildkitdPort": 0}]}, "host 'pi': buildkitdPort 0 is not a TCP port"),
        ({"hosts": [GOOD], "pool": []}, "unknown top-level key 'pool' (did you mean 'pools'?)"),
        ({"hosts": [{**GOOD, "hostkey": "x"}]}, "host 'pi': unknown key 'hostkey' (did you mean 'hostKey'?)"),
    ],
)
def test_bad_entries_name_the_host_and_key(document, culprit):
    with pytest.raises(ConfigError) as error:
        parse_static_hosts(document, "inv.yaml")
    assert culprit in str(error.value) and "inv.yaml" in str(error.value)


def test_host_key_comes_from_the_file_or_known_hosts_never_from_the_host(tmp_path):
    host = StaticHost("pi", "192.0.2.10", "pi", "arm64", tmp_path / "key", 2222)
    known = tmp_path / "known_hosts"
    with pytest.raises(ConfigError, match="no pinned host key"):
        pinned_key(host, known)
    key = "AAAAC3NzaC1lZDI1NTE5AAAAIOu/kG5AWbCdh9M8puUW83ae90YbK6+i65j5XSt0kfMl"
    known.write_text(f"[192.0.2.10]:2222 ssh-ed25519 {key}\n")
    assert pinned_key(host, known) == f"ssh-ed25519 {key}"
    from dataclasses import replace

    assert pinned_key(replace(host, host_key=f"ssh-ed25519 {key} comment"), tmp_path / "none") == f"ssh-ed25519 {key}"


AMD = {"name": "a", "address": "192.0.2.11", "user": "u", "role": "amd64", "pool": "amd64-pool"}
BALANCER = {"name": "amd64-pool", "address": "builds.internal", "port": 1234}


def pools_of(document):
    return parse_static_pools(document, "inv.yaml", parse_static_hosts(document, "inv.yaml"))


def test_hosts_can_serve_in_a_pool_behind_a_balancer_the_user_runs():
    document = {"hosts": [AMD, {**AMD, "name": "b", "address": "192.0.2.12"}, GOOD], "pools": [BALANCER]}
    (pool,) = pools_of(document)
    assert (pool.name, pool.address, pool.port) == ("amd64-pool", "builds.internal", 1234)
    assert [h.pool for h in parse_static_hosts(document, "inv.yaml")] == ["amd64-pool", "amd64-pool", ""]
    assert pools_of({"hosts": [GOOD]}) == ()


@pytest.mark.parametrize(
    ("document", "culprit"),
    [
        ({"hosts": [AMD]}, "host 'a': pool 'amd64-pool' is not under 'pools:'"),
        (
            {"hosts": [AMD, {**GOOD, "pool": "amd64-pool"}], "pools": [BALANCER]},
            "pool 'amd64-pool' needs members of one role",
        ),
        ({"hosts": [GOOD], "pools": [BALANCER]}, "pool 'amd64-pool' needs members of one role (has: none)"),
        ({"hosts": [AMD], "pools": [{**BALANCER, "port": "x"}]}, "pool 'amd64-pool': 'port' must be a number"),
        ({"hosts": [AMD], "pools": [{**BALANCER, "address": "a b"}]}, "pool 'amd64-pool': address 'a b'"),
        (
            {"hosts": [AMD], "pools": [{"name": "amd64-pool"}]},
            "pool 'amd64-pool': expected exactly name, address, port",
        ),
        ({"hosts": [{**AMD, "pool": "x y"}]}, "host 'a': pool 'x y' is not a valid pool name"),
    ],
)
def test_bad_pools_name_the_pool_or_host(document, culprit):
    with pytest.raises(ConfigError) as error:
        pools_of(document)
    assert culprit in str(error.value)


KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOl5Hh3Xf0m8lq0n1u1v5l6xQm6b4f0nS3cU1oYt6V0z"


def write_inventory(tmp_path, hosts, pools=()):
    path = tmp_path / "hosts.yaml"
    path.write_text(yaml.safe_dump({"hosts": list(hosts), **({"pools": list(pools)} if pools else {})}))
    return path


def test_plan_checks_a_static_inventory_and_places_it_without_contacting_any_host(tmp_path, capsys):
    hosts = [
        {**GOOD, "name": "build-amd64", "role": "amd64", "hostKey": KEY, "address": "192.0.2.11"},
        {**GOOD, "hostKey": KEY},
        {**GOOD, "name": "qemu", "role": "emulation", "hostKey": KEY, "address": "192.0.2.12"},
    ]
    args = ["plan", "--target", "static", "--inventory", str(write_inventory(tmp_path, hosts)), "--json"]
    assert main([*args, "--project-dir", str(tmp_path)]) == 0
    plan = json.loads(capsys.readouterr().out)
    placed = {row["platform"]: row["host"] for row in plan["placement"]}
    assert placed["linux/amd64"] == "build-amd64" and placed["linux/arm64"] == "pi" and placed["linux/s390x"] == "qemu"
    assert "nothing was contacted" in plan["note"] and plan["target"] == "static"


def test_plan_names_a_static_host_without_a_pinned_key(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # an empty ~/.ssh/known_hosts
    path = write_inventory(tmp_path, [GOOD])
    assert main(["plan", "--target", "static", "--inventory", str(path), "--project-dir", str(tmp_path)]) == 2
    assert "host 'pi' (192.0.2.10): no pinned host key" in capsys.readouterr().err


def test_plan_of_a_static_target_without_a_file_says_what_it_needs(tmp_path, capsys):
    assert main(["plan", "--target", "static", "--project-dir", str(tmp_path)]) == 2
    assert "plan --target static needs --inventory FILE" in capsys.readouterr().err


SSH_CONFIG = """
Host bastion
    HostName 198.51.100.9
    User jumper
    Port 2200
Host builder
    HostName 10.0.5.7
    User ubuntu
    Port 2222
    IdentityFile ~/.ssh/builder_ed25519
    ProxyJump bastion
Host direct
    HostName 192.0.2.44
    ProxyJump none
"""


def test_hosts_take_what_the_file_leaves_out_from_the_operators_ssh_config(tmp_path):
    config = paramiko.SSHConfig.from_text(SSH_CONFIG)
    document = {"hosts": [{"name": "b", "address": "builder", "role": "arm64"}, {**GOOD, "address": "direct"}]}
    builder, direct = parse_static_hosts(document, "inv.yaml", config)
    assert (builder.address, builder.user, builder.port) == ("10.0.5.7", "ubuntu", 2222)
    assert builder.key.name == "builder_ed25519" and builder.jump == "jumper@198.51.100.9:2200"
    assert (direct.address, direct.user, direct.jump) == ("192.0.2.44", "pi", "")  # the file's user wins
    overridden = {
        "name": "b",
        "address": "builder",
        "role": "arm64",
        "user": "admin",
        "port": 22,
        "jump": "root@192.0.2.1",
    }
    (own,) = parse_static_hosts({"hosts": [overridden]}, "inv.yaml", config)
    assert (own.user, own.port, own.jump) == ("admin", 22, "root@192.0.2.1")


def test_a_host_without_a_user_anywhere_is_named(tmp_path):
    with pytest.raises(
        ConfigError, match="host 'pi': 'user' is required \\(or a User for 192.0.2.10 in ~/.ssh/config\\)"
    ):
        parse_static_hosts({"hosts": [{k: v for k, v in GOOD.items() if k != "user"}]}, "inv.yaml")
