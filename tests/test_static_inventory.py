"""The static target's inventory file: validated up front, every error naming host and key."""

import pytest

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
