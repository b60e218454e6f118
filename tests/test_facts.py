"""Fact parsers, fed with outputs captured from real hosts (tests/data/facts).

fresh-*: a new local host before configure; configured-*: the emulation host after it;
machine-*: this development machine.
"""

from pathlib import Path

import pytest

from provisioning.hosts.operations.buildx import BUILDX_PLUGIN
from provisioning.remote import facts as f

DATA = Path(__file__).parent / "data" / "facts"


def captured(name: str) -> tuple[int, str]:
    text = (DATA / f"{name}.txt").read_text()
    first, _, rest = text.partition("\n")
    return int(first.removeprefix("# exit ")), rest


def parse(fact: f.Fact, name: str):
    return fact.parse(*captured(name))


def test_os_release():
    os = parse(f.OsRelease(), "fresh-os-release")
    assert (os["ID"], os["VERSION_ID"], os["VERSION_CODENAME"]) == ("debian", "12", "bookworm")


def test_arch_from_uname():
    assert parse(f.Arch(), "fresh-uname") == "amd64"
    assert f.Arch().parse(0, "aarch64\n") == "arm64"
    with pytest.raises(f.FactError, match="sparc64"):
        f.Arch().parse(0, "sparc64\n")


def test_init_system_is_systemd_only_when_pid_1_is_systemd():
    assert parse(f.InitSystem(), "configured-init") == "none"
    assert f.InitSystem().parse(0, "systemd\n") == "systemd"


def test_docker_client_absent_or_versioned():
    assert parse(f.DockerClient(), "fresh-docker-client") is None
    assert parse(f.DockerClient(), "configured-docker-client") == f.Version((20, 10, 24))
    assert parse(f.DockerClient(), "machine-docker-client") >= f.Version((28,))
    old = f.DockerClient().parse(0, "Docker version 18.09.1, build 4c52b90\n")
    assert old < f.Version((19, 3)) and str(old) == "18.09.1"


def test_docker_server_none_unless_it_answers_with_a_version():
    assert parse(f.DockerServer(), "fresh-docker-server") is None
    assert parse(f.DockerServer(), "configured-docker-server") == f.Version((20, 10, 24))
    assert f.DockerServer().parse(0, "Docker version 18.09.1, build 4c52b90\n") is None


def test_package_version():
    assert parse(f.PackageVersion("qemu-user-static"), "fresh-pkg-qemu") is None
    assert parse(f.PackageVersion("qemu-user-static"), "configured-pkg-qemu").startswith("1:7.2")
    assert f.PackageVersion("x").parse(0, "deinstall ok config-files\t1.0\n") is None


def test_user_groups():
    assert parse(f.UserGroups("root"), "fresh-groups-root") == {"root"}
    with pytest.raises(f.FactError, match="ubuntu"):
        f.UserGroups("ubuntu").parse(1, "")


def test_binfmt_unmounted_and_registered_entries_with_flags():
    assert parse(f.BinfmtStatus(), "fresh-binfmt") == f.Binfmt(False)
    binfmt = parse(f.BinfmtStatus(), "configured-binfmt")
    assert binfmt.mounted
    assert {"qemu-aarch64", "qemu-arm", "qemu-s390x"} <= set(binfmt.entries)
    aarch64 = binfmt.entries["qemu-aarch64"]
    assert aarch64.enabled and "F" in aarch64.flags
    assert aarch64.interpreter == "/usr/libexec/qemu-binfmt/aarch64-binfmt-P"


def test_file_digests_mark_missing_files():
    fact = f.FileDigests((BUILDX_PLUGIN, "/nonexistent"))
    assert parse(fact, "fresh-digests") == {BUILDX_PLUGIN: None, "/nonexistent": None}
    configured = parse(fact, "configured-digests")
    assert len(configured[BUILDX_PLUGIN]) == 64 and configured["/nonexistent"] is None


def test_buildkitd_workers():
    assert parse(f.BuildkitdWorkers(), "fresh-workers") is None
    assert "linux/arm64" in parse(f.BuildkitdWorkers(), "configured-workers")


def test_aarch32_from_lscpu_op_modes():
    assert parse(f.Aarch32(), "fresh-lscpu") is True
    graviton4 = "Architecture:        aarch64\nCPU op-mode(s):      64-bit\nByte Order:          Little Endian\n"
    assert f.Aarch32().parse(0, graviton4) is False
    with pytest.raises(f.FactError):
        f.Aarch32().parse(0, "Architecture: aarch64\n")


def test_sys_resource_capability_from_the_bounding_set():
    assert parse(f.SysResourceCapability(), "fresh-capbnd") is False  # a local host: a container without it
    assert parse(f.SysResourceCapability(), "vm-capbnd") is True  # a VM's full set


def test_dpkg_interrupted_by_a_journal_entry_or_a_half_installed_package():
    assert f.DpkgInterrupted().parse(0, "") is False
    assert f.DpkgInterrupted().parse(0, "tmp.i\n") is True  # /var/lib/dpkg/updates not empty
    audit = "The following packages are only half configured, probably due to problems\n docker.io  Linux containers\n"
    assert f.DpkgInterrupted().parse(0, audit) is True


def test_idle_seconds_from_the_watchers_mark_or_none_without_a_watcher():
    assert f.IdleSeconds().parse(0, "none\n") is None
    assert f.IdleSeconds().parse(0, "75\n") == 75
    assert f.IdleSeconds().parse(0, "-2\n") == 0  # a mark written a moment after uptime was read
    with pytest.raises(f.FactError):
        f.IdleSeconds().parse(0, "cat: permission denied\n")


def test_runc_with_its_package_and_the_cves_its_changelog_names():
    runc = parse(f.RuncInfo(), "machine-runc")
    assert (runc.version, runc.package, runc.package_version) == ("1.1.5+ds1", "runc", "1.1.5+ds1-1+deb12u1")
    assert "CVE-2024-21626" in runc.changelog_cves and "CVE-2025-31133" not in runc.changelog_cves
    assert f.RuncInfo().parse(127, "") is None
    upstream = f.RuncInfo().parse(0, "version=1.3.3\n")
    assert (upstream.version, upstream.package, upstream.changelog_cves) == ("1.3.3", "", frozenset())


def test_tool_versions_as_go_tools_stamp_them():
    buildkitd = f.ToolVersion("/usr/local/bin/buildkitd", ("--version",), "github.com/moby/buildkit")
    assert parse(buildkitd, "configured-buildkitd-version") == "0.34.2"
    buildx = f.ToolVersion(BUILDX_PLUGIN, ("version",), "github.com/docker/buildx")
    assert parse(buildx, "configured-buildx-version") == "0.38.2"
    assert buildx.parse(0, "github.com/docker/buildx 0.13.1 0.13.1-0ubuntu1~22.04.1\n") == "0.13.1"  # a distro build
    assert buildkitd.parse(127, "") is None and buildkitd.parse(0, "something else\n") is None


def test_gc_limits_as_buildkitd_resolved_them_for_its_disk():
    limits = parse(f.BuildkitdGcLimits(), "machine-gc-workers")  # 60% / 20% / 10% of a 270 GB disk
    assert (limits.max_used, limits.min_free, limits.reserved) == (152_000_000_000, 51_000_000_000, 26_000_000_000)
    assert f.BuildkitdGcLimits().parse(1, "") is None


def test_cache_usage_from_buildctl_du_total():
    assert parse(f.BuildkitCacheUsage(), "machine-du-empty") == 0
    assert (
        f.BuildkitCacheUsage().parse(0, "ID\tRECLAIMABLE\tSIZE\nabc\ttrue\t1.2GB\nTotal:\t\t1.234GB\n") == 1_234_000_000
    )
    assert f.BuildkitCacheUsage().parse(1, "") is None


def test_the_cache_disk_size_and_what_is_free():
    assert parse(f.BuildkitDisk(), "machine-df") == f.Disk(270553174016, 74857508864)


def test_host_output_no_parser_expects_is_that_hosts_failure_naming_the_fact():
    mark = "::buildfleet-fact::"
    stdout = f"{mark} 0\nCapBnd:\tnot-hex\n{mark} 0\n"
    with pytest.raises(f.FactsLost, match=r"fact caps: the host's output did not parse \(ValueError: "):
        f.parse_batch({"caps": f.SysResourceCapability()}, stdout)


def test_each_facts_stderr_is_kept_beside_its_value_and_named_when_it_fails():
    mark, err = "::buildfleet-fact::", "::buildfleet-stderr::"
    facts = {"arch": f.Arch(), "docker": f.DockerClient()}
    stdout = f"{mark} 0\nx86_64\n{mark} 0\n{mark} 1\n{mark} 127\n{err} sh: docker: not found\n"
    got = f.parse_batch(facts, stdout)
    assert got.of(facts["arch"]) == "amd64" and got["docker"] is None
    assert got.stderr == {"arch": "", "docker": "sh: docker: not found"}
    broken = f"{mark} 0\n{mark} 1\n{err} uname: cannot talk to the kernel\n{err} (twice)\n"
    with pytest.raises(f.FactError, match=r"unknown CPU architecture '' .*stderr: uname: cannot talk"):
        f.parse_batch({"arch": f.Arch()}, broken)


def test_a_public_file_as_it_is_or_none_when_missing():
    fact = f.PublicFile("/etc/buildkit/tls/cert.pem")
    assert fact.argv[-1] == "/etc/buildkit/tls/cert.pem" and fact.sudo
    assert fact.parse(3, "") is None
    assert fact.parse(0, "-----BEGIN CERTIFICATE-----\n") == b"-----BEGIN CERTIFICATE-----\n"
    with pytest.raises(f.FactError, match="cannot read /etc/buildkit/tls/cert.pem"):
        fact.parse(1, "")
