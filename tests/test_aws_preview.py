"""up --target aws and down show Pulumi's preview first (creates, updates, replacements and
deletes, each replacement and deletion named) and go on only on yes: --yes for scripts; without a
terminal and without --yes they stop after the preview with exit 1, having changed nothing.
The real Automation API runs against the stand-in `pulumi`, which sends the engine's events
over both transports the library uses (an event-log file, or gRPC for CLIs after 3.205)."""

import json
import os
import pty
import subprocess

import pytest
from pulumi_standin import StandInPulumi, host_artifacts
from snapshot import snapshot
from test_sticky_target import CIDR, closed_port, outputs

from provisioning.state import FleetState

pytestmark = pytest.mark.process  # every test here starts another program

STACK = "urn:pulumi:dev::buildfleet"
STEPS = [
    {"op": "create", "urn": f"{STACK}::aws:ec2/instance:Instance::amd64-1"},
    {"op": "create-replacement", "urn": f"{STACK}::aws:ec2/instance:Instance::arm64-0"},
    {"op": "replace", "urn": f"{STACK}::aws:ec2/instance:Instance::arm64-0"},
    {"op": "delete-replaced", "urn": f"{STACK}::aws:ec2/instance:Instance::arm64-0"},
    {"op": "update", "urn": f"{STACK}::aws:ec2/securityGroup:SecurityGroup::fleet-sg"},
    {"op": "delete", "urn": f"{STACK}::aws:ec2/eip:Eip::emulation-0-ip"},
    {"op": "same", "urn": f"{STACK}::aws:ec2/vpc:Vpc::fleet-vpc"},
]


@pytest.fixture
def fleet(tmp_path, monkeypatch, aws_api):
    """An existing aws fleet ``f`` (stack ``dev``) whose next preview announces STEPS."""
    pulumi = StandInPulumi(tmp_path, monkeypatch, outputs(closed_port()), aws_api)
    target = pulumi.target(tmp_path, f"allowedCidrs=[{CIDR}]")
    target.apply(target.prepare(target.settings())[0])
    steps = tmp_path / "steps.json"
    steps.write_text(json.dumps(STEPS))
    monkeypatch.setenv("BUILDFLEET_STANDIN_STEPS", str(steps))
    pulumi.cli = ["buildfleet", "--fleet", "f", "--project-dir", str(pulumi.project)]
    pulumi.artifacts = str(host_artifacts(tmp_path / "artifacts"))
    return pulumi


def buildfleet(*args: str, answer: str | None = None) -> subprocess.CompletedProcess:
    """The CLI as a user runs it: without a terminal, or (answer given) on a pseudo-terminal
    that types ``answer`` at its prompt."""
    command, *rest = args
    argv = ["buildfleet", command, *rest]
    if answer is None:
        return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    leader, follower = pty.openpty()
    try:
        os.write(leader, answer.encode() + b"\n")
        return subprocess.run(argv, stdin=follower, capture_output=True, text=True, timeout=120)
    finally:
        os.close(leader)
        os.close(follower)


def up_args(fleet, *extra: str) -> list[str]:
    return ["up", *fleet.cli[1:], "--artifacts", fleet.artifacts, "--wait-timeout", "1", *extra]


def test_without_a_terminal_up_shows_the_preview_and_stops_with_exit_1_changing_nothing(fleet):
    state, stack_file = FleetState.for_fleet("f"), fleet.project / "Pulumi.dev.yaml"
    before, config_before = snapshot(state.root), stack_file.read_bytes()
    result = buildfleet(*up_args(fleet, "--set", "arm64InstanceType=c8g.xlarge"))
    assert result.returncode == 1, result.stderr
    assert "pulumi up on stack 'dev' would change: 1 to create, 1 to update, 1 to replace, 1 to delete" in result.stderr
    assert "  replace: aws:ec2/instance:Instance arm64-0" in result.stderr
    assert "  delete: aws:ec2/eip:Eip emulation-0-ip" in result.stderr
    assert "error: pulumi up not run: there is no terminal to ask on and no --yes" in result.stderr
    assert not [c for c in fleet.commands() if c.startswith("up ")][1:]  # only the fixture's own up
    assert any(c.startswith("preview ") and "--refresh" in c.split() for c in fleet.commands())
    assert snapshot(state.root) == before and stack_file.read_bytes() == config_before  # the new key put back


def test_with_yes_up_runs_after_the_preview(fleet):
    result = buildfleet(*up_args(fleet, "--yes"))
    assert "1 to replace" in result.stderr and "amd64-0 (admin@127.0.0.1:" in result.stderr  # went on to wait
    ups = [c for c in fleet.commands() if c.startswith("up ")]
    assert len(ups) == 2


@pytest.mark.parametrize(("answer", "ran"), [("yes", True), ("no", False), ("", False)])
def test_on_a_terminal_up_asks_and_goes_on_only_on_yes(fleet, answer, ran):
    result = buildfleet(*up_args(fleet), answer=answer)
    assert "Do you want to run pulumi up on stack 'dev'? Type yes to go on:" in result.stdout
    assert len([c for c in fleet.commands() if c.startswith("up ")]) == (2 if ran else 1)
    if not ran:
        assert result.returncode == 1 and "pulumi up not run: declined; nothing was changed" in result.stderr


def test_a_preview_without_changes_asks_nothing(fleet, monkeypatch):
    monkeypatch.delenv("BUILDFLEET_STANDIN_STEPS")
    result = buildfleet(*up_args(fleet))
    assert "would change: no resources" in result.stderr and "nothing to change" in result.stderr
    assert len([c for c in fleet.commands() if c.startswith("up ")]) == 2


def test_newer_clis_send_the_preview_over_grpc_and_it_is_read_the_same(fleet, monkeypatch):
    monkeypatch.setenv("BUILDFLEET_STANDIN_VERSION", "v3.272.0")
    result = buildfleet(*up_args(fleet))
    assert result.returncode == 1 and "  replace: aws:ec2/instance:Instance arm64-0" in result.stderr
    (preview,) = [call["argv"] for call in fleet.calls() if "preview" in call["argv"]]
    assert preview[preview.index("--event-log") + 1].startswith("tcp://127.0.0.1:")


def test_down_without_a_terminal_shows_what_it_would_delete_and_removes_nothing(fleet, monkeypatch, tmp_path):
    deletes = tmp_path / "deletes.json"
    deletes.write_text(json.dumps([{"op": "delete", "urn": s["urn"]} for s in STEPS[:1] + STEPS[4:]]))
    monkeypatch.setenv("BUILDFLEET_STANDIN_STEPS", str(deletes))
    state = FleetState.for_fleet("f")
    before = snapshot(state.root)
    result = buildfleet("down", *fleet.cli[1:])
    assert result.returncode == 1
    assert "pulumi destroy on stack 'dev' would change: 4 to delete" in result.stderr
    assert "  delete: aws:ec2/vpc:Vpc fleet-vpc" in result.stderr
    assert snapshot(state.root) == before
    assert not [c for c in fleet.commands() if c.startswith("destroy ") and "--preview-only" not in c]
    assert buildfleet("down", *fleet.cli[1:], "--yes").returncode == 0
    assert fleet.destroys()
    assert not state.root.exists()
