"""A fleet keeps the target it was made with: every command acts on it, another --target is
refused before anything changes, and plan/cost describe the fleet that exists. The AWS side
runs the real Automation API against the stand-in `pulumi`; state lives in a temp directory
(the stand-in fixture points BUILDFLEET_STATE_DIR there)."""

import json
import socket

import pytest
from pulumi_standin import StandInPulumi, host_artifacts
from snapshot import snapshot

from provisioning.cli import main
from provisioning.settings import settings_from_mapping
from provisioning.state import FleetState

CIDR = "198.51.100.7/32"


def closed_port() -> int:
    """A loopback port nothing listens on: the hosts of the stand-in's stack never answer."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def outputs(port: int) -> dict:
    host = {
        "name": "amd64-0",
        "role": "amd64",
        "arch": "amd64",
        "address": "127.0.0.1",
        "sshUser": "admin",
        "sshPort": port,
        "instanceType": "c7i.xlarge",
        "platforms": [{"platform": "linux/amd64", "native": True}],
    }
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOl5Hh3Xf0m8lq0n1u1v5l6xQm6b4f0nS3cU1oYt6V0z"
    inventory = {"target": "aws", "registry": "", "hosts": [host]}
    return {"inventory": inventory, "hostKeys": {"amd64-0": key}, "hostKeySource": "stack"}


@pytest.fixture
def aws_fleet(tmp_path, monkeypatch, aws_api):
    """Fleet ``f`` made by ``up --target aws`` on stack ``dev`` (the stand-in's engine)."""
    pulumi = StandInPulumi(tmp_path, monkeypatch, outputs(closed_port()), aws_api)
    target = pulumi.target(tmp_path, f"allowedCidrs=[{CIDR}]", "amd64Count=2")
    settings = target.settings()
    target.apply(target.prepare(settings)[0])
    state = FleetState.for_fleet("f")
    state.save_settings(settings.values)  # as up does once its hosts answer
    assert state.recorded_target() == "aws"
    return pulumi


def project_args(pulumi, tmp_path) -> list[str]:
    return ["--fleet", "f", "--project-dir", str(pulumi.project), "--artifacts", str(host_artifacts(tmp_path / "a"))]


@pytest.mark.parametrize(
    "command",
    [
        ["up", "--target", "local"],
        ["up", "--target", "static", "--inventory", "hosts.yaml"],
        ["down", "--target", "local"],
        ["plan", "--target", "local"],
    ],
)
@pytest.mark.process
def test_another_target_for_an_aws_fleet_is_refused_and_changes_nothing(aws_fleet, tmp_path, capsys, command):
    state = FleetState.for_fleet("f")
    before, calls = snapshot(state.root), len(aws_fleet.calls())
    assert main([*command, "--fleet", "f", "--project-dir", str(aws_fleet.project)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"fleet 'f' was made with --target aws, not {command[2]}" in err
    assert "take it down first (buildfleet down --fleet f)" in err
    assert snapshot(state.root) == before and state.ssh_key.exists()
    assert len(aws_fleet.calls()) == calls  # not even a pulumi call


@pytest.mark.process
def test_a_plain_up_of_an_aws_fleet_runs_pulumi_up_on_its_stack_never_a_local_fleet(aws_fleet, tmp_path, capsys):
    args = [*project_args(aws_fleet, tmp_path), "--wait-timeout", "1"]
    assert main(["up", *args]) == 2  # its host (a closed port here) never answers
    captured = capsys.readouterr()
    assert captured.out.startswith("aws: bringing up the fleet's hosts")
    assert "amd64-0 (admin@127.0.0.1:" in captured.err and "cannot connect" in captured.err
    ups = [c for c in aws_fleet.commands() if c.startswith("up ")]
    assert len(ups) == 2 and ups[-1].endswith("--stack dev")
    state = FleetState.for_fleet("f")
    assert state.recorded_target() == "aws" and state.ssh_key.exists()
    assert not (state.root / "registry").exists()  # nothing of a local fleet was made


@pytest.mark.process
def test_a_plain_down_of_an_aws_fleet_destroys_its_stack(aws_fleet, tmp_path, capsys):
    assert main(["down", "--fleet", "f", "--project-dir", str(aws_fleet.project)]) == 0
    assert aws_fleet.destroys()
    assert not FleetState.for_fleet("f").root.exists()


@pytest.mark.process
def test_plan_of_an_aws_fleet_describes_its_stack_not_a_stray_buildfleet_yaml(aws_fleet, capsys):
    (aws_fleet.project / "buildfleet.yaml").write_text("amd64Count: 1\n")
    assert main(["plan", "--fleet", "f", "--json", "--project-dir", str(aws_fleet.project)]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["target"] == "aws"
    assert [(h["name"], h["pool"]) for h in plan["hosts"] if h["role"] == "amd64"] == [
        ("amd64-0", "amd64-pool"),
        ("amd64-1", "amd64-pool"),
    ]


@pytest.fixture
def local_fleet(tmp_path, monkeypatch):
    """Fleet ``g`` as a local ``up`` leaves it: its target and its effective settings recorded."""
    monkeypatch.setenv("BUILDFLEET_STATE_DIR", str(tmp_path / "state"))
    state = FleetState.for_fleet("g")
    state.record_target("local")
    settings = settings_from_mapping({"arm64Count": 0, "platforms": ["linux/amd64", "linux/s390x"]})
    state.save_settings(settings.values)
    return state


def test_plan_of_a_local_fleet_uses_its_own_target_and_settings(local_fleet, tmp_path, capsys):
    (tmp_path / "buildfleet.yaml").write_text("platforms: [linux/riscv64]\n")  # another directory's config
    assert main(["plan", "--fleet", "g", "--json", "--project-dir", str(tmp_path)]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["target"] == "local"
    assert [row["platform"] for row in plan["placement"]] == ["linux/amd64", "linux/s390x"]
    assert all(h["instanceType"] == "" for h in plan["hosts"])  # containers, not instance types


def test_plan_with_set_on_an_existing_fleet_shows_its_settings_with_that_change(local_fleet, tmp_path, capsys):
    args = ["--fleet", "g", "--json", "--project-dir", str(tmp_path), "--set", "platforms=[linux/amd64]"]
    assert main(["plan", *args]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["target"] == "local" and [row["platform"] for row in plan["placement"]] == ["linux/amd64"]


def test_cost_of_a_local_fleet_prices_its_own_settings_and_says_so(local_fleet, tmp_path, capsys):
    assert main(["cost", "--fleet", "g", "--project-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "fleet 'g' (local) as it would run on AWS" in out
    assert "arm64-0" not in out  # its settings have no arm64 host; a new AWS plan would


def test_a_new_fleet_still_takes_target_from_the_command_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BUILDFLEET_STATE_DIR", str(tmp_path / "state"))
    assert main(["plan", "--fleet", "new", "--target", "local", "--json", "--project-dir", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out)["target"] == "local"
    assert main(["plan", "--fleet", "new", "--json", "--project-dir", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out)["target"] == "aws"  # no fleet yet: the AWS plan, as before
    assert not (tmp_path / "state" / "new").exists()
