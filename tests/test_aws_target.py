"""up/down --target aws drive the Pulumi program through the Automation API. The engine
and AWS cannot run here, so the stack object at that boundary is a fake; everything
after it -- inventory, pinned host keys, state -- is real."""

from types import SimpleNamespace

import pytest
from fake_pulumi import FakeStack

from provisioning.errors import BuildfleetError
from provisioning.state import FleetState
from provisioning.targets.aws import AwsTarget

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOl5Hh3Xf0m8lq0n1u1v5l6xQm6b4f0nS3cU1oYt6V0z"


def stack_outputs(keys=None):
    inventory = {
        "target": "aws",
        "registry": "",
        "hosts": [
            {
                "name": "amd64-0",
                "role": "amd64",
                "arch": "amd64",
                "address": "203.0.113.5",
                "privateAddress": "10.0.0.5",
                "sshUser": "ubuntu",
                "sshPort": 22,
                "instanceType": "c7i.xlarge",
                "buildkitdPort": 1234,
                "sshKey": "",
                "platforms": [{"platform": "linux/amd64", "native": True}],
            },
            {
                "name": "emulation-0",
                "role": "emulation",
                "arch": "amd64",
                "address": "203.0.113.6",
                "privateAddress": "10.0.0.6",
                "sshUser": "ubuntu",
                "sshPort": 2222,
                "instanceType": "c7i.xlarge",
                "buildkitdPort": 1234,
                "sshKey": "",
                "platforms": [{"platform": "linux/arm64", "native": False}],
            },
        ],
    }
    keys = {"amd64-0": HOST_KEY + "\n", "emulation-0": HOST_KEY} if keys is None else keys
    return {"inventory": SimpleNamespace(value=inventory), "hostKeys": SimpleNamespace(value=keys)}


@pytest.fixture
def target(tmp_path):
    stack = FakeStack(stack_outputs())
    selected = []

    def select(name, project_dir):
        selected.append((name, project_dir))
        return stack

    lines = []
    aws = AwsTarget("dev", tmp_path / "project", FleetState(tmp_path / "state"), select=select, on_output=lines.append)
    return SimpleNamespace(aws=aws, stack=stack, selected=selected, lines=lines)


def test_up_sets_config_on_the_stack_and_records_inventory_and_pinned_keys(target):
    inventory = target.aws.apply(
        {"arm64Count": 0, "allowedCidrs": ["198.51.100.7/32"], "spot": True}, "/keys/id_ed25519"
    )
    assert target.stack.config == {
        "buildfleet:arm64Count": "0",
        "buildfleet:allowedCidrs": '["198.51.100.7/32"]',
        "buildfleet:spot": "true",
    }
    assert target.stack.calls == ["up"] and target.lines == ["Updating (dev)"]
    assert [(h.name, h.ssh_key) for h in inventory.hosts] == [
        ("amd64-0", "/keys/id_ed25519"),
        ("emulation-0", "/keys/id_ed25519"),
    ]
    state = target.aws.state
    assert state.known_hosts.read_text() == (f"203.0.113.5 {HOST_KEY}\n[203.0.113.6]:2222 {HOST_KEY}\n")
    assert state.load_inventory() == inventory and AwsTarget.recorded_stack(state) == "dev"


def test_a_host_without_an_exported_key_is_refused_by_name(target):
    target.stack.outputs = stack_outputs({"amd64-0": HOST_KEY})
    with pytest.raises(BuildfleetError, match="exports no host key for emulation-0"):
        target.aws.apply({})
    assert not target.aws.state.known_hosts.exists()


def test_an_engine_failure_is_one_line_naming_the_stack(target):
    def fail(on_output):
        raise RuntimeError("stderr: error: update failed\n  aws:ec2:Instance: UnauthorizedOperation\n")

    target.stack.up = fail
    with pytest.raises(BuildfleetError, match=r"^pulumi up on stack 'dev' failed: .*UnauthorizedOperation$"):
        target.aws.apply({})


def test_down_destroys_the_stack_up_used(target):
    target.aws.apply({})
    target.aws.down()
    assert target.stack.calls == ["up", "destroy"]
    assert [name for name, _ in target.selected] == ["dev", "dev"]


def test_without_the_pulumi_cli_the_error_says_what_to_install(tmp_path, monkeypatch):
    from provisioning.targets import aws as automation

    monkeypatch.setenv("PATH", str(tmp_path))  # no pulumi here
    with pytest.raises(BuildfleetError, match="the Pulumi CLI is not on PATH: install it"):
        automation.select_stack("dev", tmp_path)


def test_config_errors_stop_up_before_pulumi_is_touched(tmp_path, monkeypatch, capsys):
    from provisioning.cli import main
    from provisioning.targets import aws as automation

    monkeypatch.setenv("BUILDFLEET_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setattr(automation, "select_stack", lambda *a: pytest.fail("Pulumi must not be reached"))
    assert main(["up", "--target", "aws", "--project-dir", str(tmp_path), "--fleet", "f"]) == 2
    assert "buildfleet:allowedCidrs is empty" in capsys.readouterr().err
