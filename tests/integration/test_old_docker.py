"""A host whose Docker is older than 19.03: refused when upgrades are off, else upgraded.

The old Docker is a real dpkg package named docker.io at version 18.09.1 on the host
(its docker binary reports 18.09.1), so the upgrade goes through apt for real.
"""

import pytest

from provisioning.hosts.executor import CHANGED, FAILED

from .conftest import leftovers, make_fleet

pytestmark = pytest.mark.integration

FAKE_OLD_DOCKER = r"""
set -e
mkdir -p /root/old-docker/DEBIAN /root/old-docker/usr/bin
cat > /root/old-docker/DEBIAN/control <<'CONTROL'
Package: docker.io
Version: 18.09.1+buildfleet.test
Architecture: all
Maintainer: buildfleet tests <tests@buildfleet.invalid>
Description: stand-in for a Docker older than 19.03
CONTROL
printf '#!/bin/sh\necho "Docker version 18.09.1, build 4c52b90"\n' > /root/old-docker/usr/bin/docker
chmod 0755 /root/old-docker/usr/bin/docker
dpkg-deb --build /root/old-docker /root/old-docker.deb >/dev/null
dpkg -i /root/old-docker.deb >/dev/null
"""


@pytest.fixture(scope="module")
def old_host(tmp_path_factory, machine_ready):
    live = make_fleet(
        tmp_path_factory, machine_ready, {"emulationCount": 0, "platforms": ["linux/amd64"], "localInit": "none"}
    )
    try:
        live.exec("amd64-0", "sh", "-c", FAKE_OLD_DOCKER)
        assert "18.09.1" in live.exec("amd64-0", "docker", "--version")
        yield live
    finally:
        removed = live.target.down()
        live.state.remove()
    assert leftovers(live.target.fleet) == []
    assert any(r.startswith("container ") for r in removed) and not live.state.root.exists()


def test_old_docker_with_upgrades_disabled_is_one_clear_error(old_host):
    report = old_host.configure(allow_docker_upgrade=False)
    (host,) = report.hosts
    docker = host.steps[1]  # after the fleet check
    assert (host.host, docker.step, docker.status) == ("amd64-0", "docker", FAILED)
    assert "18.09.1 is older than 19.03" in docker.detail and "upgrades are disabled" in docker.detail
    assert all(s.status == "skipped" for s in host.steps[2:])
    assert "18.09.1" in old_host.exec("amd64-0", "docker", "--version")  # nothing half-done


def test_old_docker_is_upgraded_through_apt(old_host):
    report = old_host.configure()
    assert report.ok, [(f.step, f.detail, f.stderr_tail) for f in report.failures()]
    docker = report.hosts[0].steps[1]
    assert docker.status == CHANGED and "older than 19.03" in docker.detail
    server = old_host.exec("amd64-0", "docker", "version", "--format", "{{.Server.Version}}").strip()
    assert tuple(int(x) for x in server.split(".")[:2]) >= (19, 3)
