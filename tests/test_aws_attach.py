"""One fleet wherever its operators sit: up keeps the fleet identity (CA, keys, settings) in the
AWS stack as a secret, a teammate's ``buildfleet attach --stack`` rebuilds the state from it, and
no machine without it (or with a stale copy) ever acts on the stack. Against the stand-in
``pulumi`` (a shared file backend, a passphrase) and moto's server, as two operators would."""

import json

import pytest
import yaml
from pulumi_standin import StandInPulumi
from test_aws_target import CIDR, stack_outputs

from provisioning.certs import FleetCA
from provisioning.cli import main
from provisioning.consumers import Consumers
from provisioning.errors import ConfigError
from provisioning.handover import digest, identity_files, to_stack
from provisioning.state import FleetState
from provisioning.targets.aws import AwsTarget
from provisioning.targets.base import ConfigSources, TargetOptions

pytestmark = pytest.mark.process  # the stand-in pulumi and moto's server

IDENTITY = "buildfleet:fleetIdentity"


@pytest.fixture
def pulumi(tmp_path, monkeypatch, aws_api):
    return StandInPulumi(tmp_path, monkeypatch, stack_outputs(), aws_api)


def first_operator(pulumi, tmp_path) -> AwsTarget:
    """Operator one's up of stack dev, and what configure then makes: the client's and hosts'
    certificates, a consumer; the stack gets the identity as it is then."""
    target = pulumi.target(tmp_path, f"allowedCidrs=[{CIDR}]", on_output=print)
    target.apply(target.prepare(target.settings())[0])
    target.state.save_settings(target.settings().values)
    ca = FleetCA(target.state.root / "tls")
    ca.client()
    ca.server("amd64-0", ["203.0.113.5"])
    Consumers(target.state.root / "tls").add("ci")
    target.keep_identity()
    return target


def second_operator(tmp_path, name: str = "team") -> tuple[FleetState, list[str]]:
    """Another machine: its own project directory (empty) and state; the command line's fleet options."""
    project = tmp_path / "second-project"
    project.mkdir(exist_ok=True)
    return FleetState(tmp_path / "state" / name), ["--fleet", name, "--project-dir", str(project)]


def operator_target(tmp_path, state: FleetState, creating: bool = False) -> AwsTarget:
    """The second operator's aws target for stack dev, in its own project directory."""
    project = tmp_path / "second-project"
    return AwsTarget("dev", project, state, ConfigSources(project, None, "dev", ()), creating=creating)


def files_of(state: FleetState) -> dict[str, bytes]:
    return {name: (state.root / name).read_bytes() for name in identity_files(state)}


def test_a_teammate_attaches_to_the_stack_and_has_the_same_fleet_with_no_second_ca(pulumi, tmp_path, capsys):
    first = first_operator(pulumi, tmp_path)
    second, args = second_operator(tmp_path)
    assert main(["attach", "--stack", "dev", *args]) == 0
    mine, theirs = files_of(first.state), files_of(second)
    for name in ("tls/ca/key.pem", "tls/ca/cert.pem", "tls/client/key.pem", "ssh/id_ed25519", "settings.json"):
        assert theirs[name] == mine[name]
    assert "tls/consumers/ci/ca/key.pem" in theirs and "tls/hosts/amd64-0/cert.pem" in theirs
    assert second.load_inventory() == first.state.load_inventory()
    assert second.known_host_keys() == first.state.known_host_keys()
    assert (second.root / "tls" / "ca" / "key.pem").stat().st_mode & 0o777 == 0o600
    # the teammate's stack file comes from the stack's last update, under its own secrets provider
    written = yaml.safe_load((tmp_path / "second-project" / "Pulumi.dev.yaml").read_text())
    assert (
        written["encryptionsalt"] == yaml.safe_load((pulumi.project / "Pulumi.dev.yaml").read_text())["encryptionsalt"]
    )
    assert written["config"]["buildfleet:allowedCidrs"] == [CIDR]
    assert set(written["config"][IDENTITY]) == {"secure"}  # ciphertext only
    out = capsys.readouterr().out
    assert "identity files from stack 'dev'" in out and "builder create --fleet team" in out
    # from the teammate's machine: the same key (nothing replaced), the same identity (nothing handed over)
    again = operator_target(tmp_path, second)
    ups = len([c for c in pulumi.commands() if c.startswith("up ")])
    to_set, _ = again.prepare(again.settings())
    assert to_set["sshPublicKey"] == first.state.ssh_key.with_suffix(".pub").read_text().strip()
    again.keep_identity()
    assert len([c for c in pulumi.commands() if c.startswith("up ")]) == ups


def test_the_stack_keeps_the_identity_as_a_secret_never_in_the_clear(pulumi, tmp_path):
    first = first_operator(pulumi, tmp_path)
    stack_file = (pulumi.project / "Pulumi.dev.yaml").read_text()
    assert set(yaml.safe_load(stack_file)["config"][IDENTITY]) == {"secure"}
    assert b"PRIVATE KEY" not in stack_file.encode() and "H4sI" not in stack_file  # no key, no plain gzip
    sets = [c for c in pulumi.commands() if c.startswith("config set-all") and IDENTITY in c]
    assert sets and all(f"--secret {IDENTITY}=" in c for c in sets)
    assert "fleetIdentity" in json.loads(
        (pulumi.backend / "stacks" / "buildfleet" / "dev" / "secret-outputs.json").read_text()
    )
    assert (first.state.root / "stack-identity.sha256").exists()


def test_a_machine_without_the_fleets_identity_is_refused_naming_attach_and_writes_nothing(pulumi, tmp_path, capsys):
    first_operator(pulumi, tmp_path)
    second, args = second_operator(tmp_path)
    committed = (pulumi.project / "Pulumi.dev.yaml").read_text()  # the team's checkout has the stack file
    (tmp_path / "second-project" / "Pulumi.dev.yaml").write_text(committed)
    before = len(pulumi.calls())
    code = main(["up", "--target", "aws", "--stack", "dev", *args])
    assert code == 2
    err = capsys.readouterr().err
    assert "keeps a fleet's identity" in err and "buildfleet attach --stack dev --fleet team" in err
    assert not second.root.exists()  # no SSH key, no CA, nothing
    made = [c for c in pulumi.commands()[before:] if c.startswith(("config set", "up", "stack init"))]
    assert made == []  # the stack and its config as they were
    assert (tmp_path / "second-project" / "Pulumi.dev.yaml").read_text() == committed


def test_another_fleets_state_is_refused_and_attach_never_overwrites_it(pulumi, tmp_path, capsys):
    first_operator(pulumi, tmp_path)
    second, args = second_operator(tmp_path)
    second.ensure()
    FleetCA(second.root / "tls").ca()  # a fleet of the same name, its own CA
    other = operator_target(tmp_path, second, creating=True)  # as up would check it
    with pytest.raises(ConfigError, match="keeps another fleet's CA"):
        other.require_identity()
    held = files_of(second)
    assert main(["attach", "--stack", "dev", *args]) != 0
    assert "already has state here" in capsys.readouterr().err
    assert files_of(second) == held


def test_a_change_made_here_reaches_the_stack_once_and_a_stale_copy_elsewhere_is_refused(pulumi, tmp_path, capsys):
    first = first_operator(pulumi, tmp_path)
    second, args = second_operator(tmp_path)
    assert main(["attach", "--stack", "dev", *args]) == 0
    Consumers(first.state.root / "tls").add("laptop")  # operator one adds a consumer
    first.keep_identity()
    calls = len(pulumi.calls())
    first.keep_identity()  # unchanged: the stack is not even asked
    assert len(pulumi.calls()) == calls
    # operator two's copy lacks it: a command that would roll out bundles without it is refused
    again = operator_target(tmp_path, second)
    with pytest.raises(ConfigError, match="keeps a newer identity") as refused:
        again.require_identity()
    assert "buildfleet attach --stack dev --fleet team" in str(refused.value)
    # attach again takes the stack's over the stale copy
    assert main(["attach", "--stack", "dev", *args]) == 0
    assert "tls/consumers/laptop/ca/cert.pem" in files_of(second)
    again.require_identity()


def test_a_revoked_consumer_is_gone_from_a_teammates_copy_once_attached_again(pulumi, tmp_path):
    first = first_operator(pulumi, tmp_path)
    second, args = second_operator(tmp_path)
    assert main(["attach", "--stack", "dev", *args]) == 0
    consumers = Consumers(first.state.root / "tls")
    consumers.revoke("ci")
    first.keep_identity()
    assert main(["attach", "--stack", "dev", *args]) == 0
    assert files_of(second).keys() == files_of(first.state).keys()
    assert Consumers(second.root / "tls").revoked("ci")


def test_a_copy_with_changes_the_stack_never_got_is_not_overwritten(pulumi, tmp_path, capsys):
    first = first_operator(pulumi, tmp_path)
    second, args = second_operator(tmp_path)
    assert main(["attach", "--stack", "dev", *args]) == 0
    Consumers(second.root / "tls").add("unsent")  # made here, its hand-over never ran
    Consumers(first.state.root / "tls").add("laptop")
    first.keep_identity()
    held = files_of(second)
    assert main(["attach", "--stack", "dev", *args]) != 0
    assert "changes stack 'dev' never got" in capsys.readouterr().err
    assert files_of(second) == held


def test_pending_changes_of_the_stack_hold_the_hand_over_back_for_up(pulumi, tmp_path, monkeypatch, capsys):
    first = first_operator(pulumi, tmp_path)
    published = first.state.published_identity()
    steps = tmp_path / "steps.json"
    steps.write_text(
        json.dumps([{"op": "update", "urn": "urn:pulumi:dev::buildfleet::aws:ec2/instance:Instance::amd64-0-vm"}])
    )
    monkeypatch.setenv("BUILDFLEET_STANDIN_STEPS", str(steps))
    Consumers(first.state.root / "tls").add("laptop")
    ups = len([c for c in pulumi.commands() if c.startswith("up ")])
    first.keep_identity()
    assert "other changes pending" in capsys.readouterr().out
    assert len([c for c in pulumi.commands() if c.startswith("up ")]) == ups  # no resource changed unasked
    assert first.state.published_identity() == published


def test_a_stack_made_before_stacks_kept_the_identity_is_refused_to_a_stranger(pulumi, tmp_path, capsys):
    first_operator(pulumi, tmp_path)
    outputs = pulumi.backend / "stacks" / "buildfleet" / "dev" / "outputs.json"
    old = {k: v for k, v in json.loads(outputs.read_text()).items() if k != "fleetIdentity"}
    outputs.write_text(json.dumps(old))  # as an older buildfleet's up left it
    second, args = second_operator(tmp_path)
    stranger = operator_target(tmp_path, second, creating=True)  # as up would check it
    with pytest.raises(ConfigError, match="another machine's buildfleet made"):
        stranger.require_identity()
    assert main(["attach", "--stack", "dev", *args]) != 0
    assert "keeps no fleet identity" in capsys.readouterr().err
    assert not second.root.exists() or not any(second.root.iterdir())


def test_a_command_run_elsewhere_finds_the_fleets_project_and_hands_the_identity_over_from_there(pulumi, tmp_path):
    first = first_operator(pulumi, tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    options = TargetOptions("f", first.state, ConfigSources(elsewhere, None, None, ()), tmp_path / "cache")
    target = AwsTarget.from_options(options)
    assert target.project_dir == pulumi.project.resolve() and target.stack == "dev"
    Consumers(first.state.root / "tls").add("laptop")
    target.keep_identity()
    assert list(elsewhere.iterdir()) == []  # no Pulumi.yaml written where the command merely ran
    assert digest(to_stack(first.state)) == first.state.published_identity()
