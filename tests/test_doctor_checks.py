"""doctor's checks, as the stages make them: what failed, on what, and the fix for each."""

import datetime

from test_builder import INVENTORY

from provisioning.builder.checks import node_checks
from provisioning.builder.inspect import InspectedBuilder, InspectedNode
from provisioning.certs import FleetCA, certificate_checks
from provisioning.hosts.executor import DRIFT, FAILED, UNCHANGED, FleetReport, HostReport, StepResult, report_checks


def test_a_running_node_passes_a_missing_one_says_builder_create_a_stopped_one_configure_first():
    inspected = InspectedBuilder("fleet", "remote", (InspectedNode("fleet-amd64-0", status="running"),))
    checks = {c.node: c for c in node_checks("fleet", INVENTORY, inspected)}
    assert set(checks) == {"amd64-0", "emulation-0"}  # idle-0 builds nothing: no node
    assert checks["amd64-0"].ok and checks["amd64-0"].fix == ""
    assert not checks["emulation-0"].ok and checks["emulation-0"].fix == "buildfleet builder create"
    stopped = InspectedBuilder("fleet", "remote", (InspectedNode("fleet-emulation-0", status="stopped"),))
    (check,) = [c for c in node_checks("fleet", INVENTORY, stopped) if c.node == "emulation-0"]
    assert check.detail == "fleet-emulation-0: stopped"
    assert check.fix == "buildfleet configure, then buildfleet builder create"


def test_a_builder_that_does_not_exist_fails_every_node():
    assert [c.ok for c in node_checks("fleet", INVENTORY, None)] == [False, False]


def test_drift_says_what_configure_would_do_and_an_advisory_is_a_warning_beside_its_step():
    steps = (
        StepResult("amd64-0", "docker", UNCHANGED, "no change: Docker 26", 0.1, warning="runc 1.1.5 is open to CVE-x"),
        StepResult("amd64-0", "buildkitd", DRIFT, "write /etc/buildkit/buildkitd.toml", 0.1),
        StepResult("amd64-0", "versions", FAILED, "cannot read buildctl --version", 0.1),
    )
    checks = report_checks(FleetReport((HostReport("amd64-0", steps),)))
    assert [(c.check, c.ok, c.warning) for c in checks] == [
        ("docker", True, False),
        ("advisory", False, True),
        ("buildkitd", False, False),
        ("versions", False, False),
    ]
    assert checks[2].fix == "buildfleet configure (it would: write /etc/buildkit/buildkitd.toml)"
    assert checks[3].fix == "see the detail; then buildfleet configure"


def test_certificates_pass_until_they_expire_and_then_say_what_to_remove(tmp_path):
    tls = tmp_path / "tls"
    ca = FleetCA(tls)
    ca.client()
    ca.server("amd64-0", ["amd64-0"])
    now = datetime.datetime.now(datetime.timezone.utc)
    assert {(c.node, c.ok) for c in certificate_checks(tls, now)} == {("ca", True), ("client", True), ("amd64-0", True)}
    later = {c.node: c for c in certificate_checks(tls, now + datetime.timedelta(days=900))}
    assert not later["amd64-0"].ok and later["amd64-0"].fix.startswith(f"remove {tls / 'hosts' / 'amd64-0'}, then")
    assert later["ca"].fix.startswith(f"remove {tls}, then buildfleet configure, buildfleet builder rm")
