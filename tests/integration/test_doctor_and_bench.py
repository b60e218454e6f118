"""doctor and bench through the buildfleet command, against the live local fleet."""

import json
import os
import re
import shutil
import subprocess

import pytest

from provisioning.targets.local.binfmt import TABLE

from .conftest import buildctl, mtls_flags

pytestmark = pytest.mark.integration


def checks(result):
    return {(c["node"], c["check"]): c for c in json.loads(result.stdout)["checks"]}


def test_doctor_checks_every_host_and_node_and_names_the_fix(fleet, run):
    missing = checks(run("doctor", "--json"))
    assert not missing[("emulation-0", "builder node")]["ok"]
    assert missing[("emulation-0", "builder node")]["fix"] == "buildfleet builder create"
    assert run("builder", "create", "--no-bootstrap").returncode == 0
    try:
        healthy = run("doctor", "--json")
        assert healthy.returncode == 0, healthy.stdout + healthy.stderr
        found = checks(healthy)
        assert {check for _, check in found} == {
            "binfmt holders",  # none of a fleet that is gone (the ledger on this machine)
            "fleet",
            "docker",
            "privileged",
            "buildx",
            "binfmt",
            "buildkitd",
            "token-exchange",  # none on this fleet: the step finds none to remove
            "idle-stop",
            "versions",
            "cache",
            "advisory",  # Debian bookworm's runc: open to runc's November 2025 CVEs, flagged, not failed
            "builder node",
            "certificate",
        }
        assert all(c["ok"] or c.get("warning") for c in found.values())
        certificates = {node for node, check in found if check == "certificate"}
        assert certificates == {"ca", "client", "amd64-0", "emulation-0"}
        assert re.fullmatch(r"ca expires \d{4}-\d\d-\d\d \(82[45] days\)", found[("ca", "certificate")]["detail"])
        assert fleet.exec("emulation-0", "sh", "-c", "echo -1 > /proc/sys/fs/binfmt_misc/qemu-s390x") == ""
        broken = run("doctor")
        assert broken.returncode == 1 and "✗" in broken.stdout and "1 check(s) failed" in broken.stdout
        binfmt = checks(run("doctor", "--json"))[("emulation-0", "binfmt")]
        assert not binfmt["ok"] and binfmt["fix"].startswith("buildfleet configure (it would: register s390x")
    finally:
        assert fleet.configure().ok
        assert run("builder", "rm").returncode == 0


def test_bench_times_each_platform_natively_and_under_qemu_and_writes_the_report(fleet, run, tmp_path):
    out = tmp_path / "report"
    result = run(
        "bench",
        "--platforms",
        "amd64,arm64",
        "--workload",
        "c-compile",
        "--repeats",
        "2",
        "--output",
        str(out),
        "--json",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(result.stdout)
    assert [(r["platform"], r["host"], r["mode"], r["placed"]) for r in data["rows"]] == [
        ("linux/amd64", "amd64-0", "native", True),
        ("linux/amd64", "emulation-0", "native", False),
        ("linux/arm64", "emulation-0", "QEMU", True),
    ]
    arm64 = data["rows"][2]
    assert arm64["baseline"] == "linux/amd64 on emulation-0 (same machine)" and arm64["penalty"] > 1
    assert all(len(r["seconds"]) == 2 for r in data["raw"])
    assert len({r["output"] for r in data["raw"]}) == 1  # the same result computed on every platform
    assert {r["uname"] for r in data["raw"]} == {"x86_64", "aarch64"}
    assert (out / "bench.png").read_bytes()[:4] == b"\x89PNG"
    assert "| c-compile | linux/arm64 | emulation-0 | QEMU |" in (out / "bench.md").read_text()
    assert len((out / "timings.csv").read_text().splitlines()) == 1 + 3 * 2
    builders = subprocess.run(
        ["docker", "buildx", "ls"],
        capture_output=True,
        text=True,
        env={**os.environ, "DOCKER_CONFIG": str(tmp_path / "docker-config")},
    ).stdout
    assert "-bench-" not in builders  # its single-node builders are gone again


def test_bench_refuses_a_platform_the_fleet_does_not_build(run):
    result = run("bench", "--platforms", "mips64le")
    assert result.returncode != 0 and "mips64le" in result.stderr


def test_configure_reports_each_hosts_steps_as_they_start_and_when_it_is_done(fleet):
    from provisioning.hosts.configure import ConfigureOptions, configure

    seen = []
    report = configure(
        fleet.inventory,
        fleet.state,
        fleet.artifacts,
        ConfigureOptions(),
        progress=lambda host, step, done, total: seen.append((host, step, done, total)),
    )
    assert report.ok
    assert [s[1:] for s in seen if s[0] == "emulation-0"] == [
        ("fleet", 0, 10),
        ("docker", 1, 10),
        ("privileged", 2, 10),
        ("buildx", 3, 10),
        ("binfmt", 4, 10),
        ("buildkitd", 5, 10),
        ("token-exchange", 6, 10),
        ("idle-stop", 7, 10),
        ("versions", 8, 10),
        ("cache", 9, 10),
        ("", 10, 10),
    ]
    assert [s[1] for s in seen if s[0] == "amd64-0"][-1] == ""


def test_rotate_certs_renews_every_certificate_and_the_builder_made_before_keeps_working(fleet, run, tmp_path):
    tls = fleet.state.root / "tls"
    old = tmp_path / "old-tls"
    shutil.copytree(tls, old)
    assert run("builder", "create", "--no-bootstrap").returncode == 0  # made with the old certificates
    try:
        rotated = run("rotate-certs")
        assert rotated.returncode == 0, rotated.stdout + rotated.stderr
        assert "run buildfleet ci-config again" in rotated.stdout
        new_ca = (tls / "ca" / "cert.pem").read_text()
        assert new_ca != (old / "ca" / "cert.pem").read_text()
        for host in fleet.inventory.hosts:
            assert fleet.exec(host.name, "cat", "/etc/buildkit/tls/ca.pem") == new_ca
            assert buildctl(host, *mtls_flags(tls)).returncode == 0
            refused = buildctl(host, *mtls_flags(old))  # the old client (and CA) no longer get in
            assert refused.returncode != 0
        healthy = run("doctor", "--json")  # builder nodes running (bootstrapped) and certificates ok
        assert healthy.returncode == 0, healthy.stdout + healthy.stderr
        assert all(c["ok"] or c.get("warning") for c in checks(healthy).values())
    finally:
        assert run("builder", "rm").returncode == 0


def test_bench_baseline_seed_runs_the_posts_one_node_build_beside_the_fleet_and_puts_qemu_back(fleet, run, tmp_path):
    if fleet.settings.local_init != "systemd":
        pytest.skip("once is enough: the seed phase does not depend on the hosts' init")
    before = (TABLE / "qemu-s390x").read_text()
    assert run("builder", "create", "--no-bootstrap").returncode == 0
    out = tmp_path / "report"
    result = run(
        *("bench", "--platforms", "amd64,s390x", "--workload", "c-compile", "--repeats", "1"),
        *("--baseline", "seed", "--output", str(out), "--json"),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    seed = json.loads(result.stdout)["baselineSeed"]
    assert seed["seedNode"] == "emulation-0"
    assert [(r["platform"], r["fleetHost"]) for r in seed["perPlatform"]] == [
        ("linux/amd64", "amd64-0"),
        ("linux/s390x", "emulation-0"),
    ]
    assert all(r["fleetS"] > 0 and r["seedS"] > 0 for r in seed["perPlatform"])
    # the seed's runs went through the distribution's QEMU, and the fleet's came back afterwards
    assert seed["interpreters"]["qemu-s390x"] == "/usr/libexec/qemu-binfmt/s390x-binfmt-P"
    assert seed["interpreters"]["qemu-user-static"].startswith("1:")
    assert (TABLE / "qemu-s390x").read_text() == before
    whole = seed["wholeBuild"]
    assert whole["platforms"] == 2 and whole["fleetS"] > 0 and whole["seedS"] > 0
    assert "| c-compile | linux/s390x | emulation-0 (QEMU) |" in (out / "baseline-seed.md").read_text()
    print(f"bench --baseline seed: {seed['perPlatform']} {whole}")
