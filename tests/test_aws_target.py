"""up/down --target aws drive the Pulumi program through the Automation API. Neither the
Pulumi engine nor AWS runs here, so the boundary is the `pulumi` executable: a stand-in
(tests/standin/pulumi) on PATH. The real `pulumi.automation` library builds every command
line; the stand-in records them and behaves as the CLI does where buildfleet depends on it."""

import json
import os
import subprocess
from importlib.metadata import version

import pytest
import yaml
from pulumi_standin import PROJECT, StandInPulumi, host_artifacts

from provisioning.artifacts import ArtifactError
from provisioning.cli import main
from provisioning.errors import BuildfleetError, ConfigError
from provisioning.project import WRITTEN_MARK, project_document
from provisioning.remote.wait import CloudInitFailed, cloud_init_outcome
from provisioning.settings import settings_from_mapping
from provisioning.state import FleetState

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOl5Hh3Xf0m8lq0n1u1v5l6xQm6b4f0nS3cU1oYt6V0z"
CIDR = "198.51.100.7/32"


def stack_outputs() -> dict:
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
    return {
        "inventory": inventory,
        "hostKeys": {"amd64-0": HOST_KEY + "\n", "emulation-0": HOST_KEY},
        "hostKeySource": "stack",  # the hosts of a stack made before they made their own keys
    }


@pytest.fixture
def pulumi(tmp_path, monkeypatch, aws_api):
    return StandInPulumi(tmp_path, monkeypatch, stack_outputs(), aws_api)


@pytest.mark.process
def test_list_settings_are_set_path_wise_so_the_cli_accepts_them_as_arrays(pulumi, tmp_path):
    target = pulumi.target(tmp_path, f"allowedCidrs=[{CIDR}, 203.0.113.0/24]", "platforms=[linux/amd64, linux/arm64]")
    to_set, _ = target.prepare(target.settings())
    target.apply(to_set)  # the stand-in validates the stack config against Pulumi.yaml's types, as the CLI does
    config = pulumi.stack_config()
    assert config["buildfleet:allowedCidrs"] == [CIDR, "203.0.113.0/24"]
    assert config["buildfleet:platforms"] == ["linux/amd64", "linux/arm64"]
    assert "config rm-all --stack dev buildfleet:allowedCidrs buildfleet:platforms" in pulumi.commands()
    shorter = pulumi.target(tmp_path, f"allowedCidrs=[{CIDR}]")
    shorter.apply(shorter.prepare(shorter.settings())[0])
    assert pulumi.stack_config()["buildfleet:allowedCidrs"] == [CIDR]  # no stale second item


@pytest.mark.process
def test_a_list_set_as_one_json_string_is_refused_by_the_cli_as_it_was_before(pulumi, tmp_path):
    target = pulumi.target(tmp_path, f"allowedCidrs=[{CIDR}]")
    target.apply(target.prepare(target.settings())[0])
    env = {**os.environ}
    subprocess.run(
        [
            "pulumi",
            "config",
            "set",
            "buildfleet:allowedCidrs",
            "--plaintext",
            "--stack",
            "dev",
            "--",
            json.dumps([CIDR]),
        ],
        cwd=pulumi.project,
        env=env,
        check=True,
    )
    up = subprocess.run(
        ["pulumi", "up", "--yes", "--stack", "dev"], cwd=pulumi.project, env=env, capture_output=True, text=True
    )
    assert (
        up.returncode != 0
        and ("Stack 'dev' with configuration key 'buildfleet:allowedCidrs' must be of type 'array<string>'")
        in up.stderr
    )


@pytest.mark.process
def test_a_second_up_takes_the_fleets_own_key_back_from_the_stack_file(pulumi, tmp_path):
    first = pulumi.target(tmp_path, f"allowedCidrs=[{CIDR}]")
    to_set, private = first.prepare(first.settings())
    first.apply(to_set, private)
    assert pulumi.stack_config()["buildfleet:sshPublicKey"] == to_set["sshPublicKey"] and private == ""
    again = pulumi.target(tmp_path, f"allowedCidrs=[{CIDR}]")
    first_time = {k: v for k, v in to_set.items() if k != "fleetId"}  # the id is set once, by the first up
    assert again.prepare(again.settings()) == (first_time, "")  # no --ssh-key demanded


@pytest.mark.process
def test_up_records_inventory_and_pinned_keys_and_refreshes_first(pulumi, tmp_path):
    lines = []
    target = pulumi.target(tmp_path, f"allowedCidrs=[{CIDR}]", on_output=lines.append)
    inventory = target.apply(target.prepare(target.settings())[0], "/keys/id_ed25519")
    assert [(h.name, h.ssh_key) for h in inventory.hosts] == [
        ("amd64-0", "/keys/id_ed25519"),
        ("emulation-0", "/keys/id_ed25519"),
    ]
    state = target.state
    assert state.known_hosts.read_text() == f"203.0.113.5 {HOST_KEY}\n[203.0.113.6]:2222 {HOST_KEY}\n"
    assert state.load_inventory() == inventory and state.recorded_stack() == "dev"
    assert state.recorded_target() == "aws" and "Up (dev):" in lines
    (up,) = [c for c in pulumi.commands() if c.startswith("up ")]
    assert "--refresh" in up.split()  # a reclaimed spot instance is noticed and made again


@pytest.mark.process
def test_the_program_runs_from_the_installed_package_as_an_inline_program(pulumi, tmp_path):
    target = pulumi.target(tmp_path, f"allowedCidrs=[{CIDR}]", "amd64Count=2")
    target.apply(target.prepare(target.settings())[0])
    (up,) = [c for c in pulumi.commands() if c.startswith("up ")]
    assert "--client=127.0.0.1:" in up and "--exec-kind auto.inline" in up
    registered = json.loads((pulumi.backend / "stacks" / "buildfleet" / "dev" / "resources.json").read_text())
    instances = [r for r in registered if r["type"] == "aws:ec2/instance:Instance"]
    assert len(instances) == 4  # amd64Count=2 reached the program through the stack's config
    assert not (pulumi.project / "__main__.py").exists()


@pytest.mark.process
def test_the_providers_plugins_are_installed_at_their_packages_versions(pulumi, tmp_path):
    target = pulumi.target(tmp_path, f"allowedCidrs=[{CIDR}]")
    target.apply(target.prepare(target.settings())[0])
    installed = sorted(p.name for p in (pulumi.backend / "plugins").iterdir())
    assert installed == [f"resource-aws-v{version('pulumi-aws')}", f"resource-tls-v{version('pulumi-tls')}"]


@pytest.mark.process
def test_an_empty_directory_gets_buildfleets_pulumi_yaml_beside_the_stack_file(pulumi, tmp_path):
    target = pulumi.target(tmp_path, f"allowedCidrs=[{CIDR}]")
    target.apply(target.prepare(target.settings())[0])
    written = (pulumi.project / "Pulumi.yaml").read_text()
    assert written.startswith(WRITTEN_MARK) and yaml.safe_load(written) == project_document()
    assert (pulumi.project / "Pulumi.dev.yaml").is_file()


@pytest.mark.process  # the stand-in pulumi's account: moto's server
def test_another_projects_pulumi_yaml_is_refused_and_left_as_it_was(pulumi, tmp_path):
    theirs = "name: website\nruntime: nodejs\n"
    (pulumi.project / "Pulumi.yaml").write_text(theirs)
    target = pulumi.target(tmp_path, f"allowedCidrs=[{CIDR}]")
    with pytest.raises(ConfigError, match="belongs to Pulumi project 'website'.*--project-dir"):
        target.prepare(target.settings())
    assert (pulumi.project / "Pulumi.yaml").read_text() == theirs and pulumi.calls() == []


@pytest.mark.process
def test_a_pulumi_yaml_an_older_buildfleet_wrote_is_brought_up_to_date(pulumi, tmp_path):
    old = project_document()
    old["config"].pop("buildfleet:artifactMirror")
    (pulumi.project / "Pulumi.yaml").write_text(WRITTEN_MARK + " 0.0.1\n" + yaml.safe_dump(old))
    target = pulumi.target(tmp_path, f"allowedCidrs=[{CIDR}]")
    target.apply(target.prepare(target.settings())[0])
    assert yaml.safe_load((pulumi.project / "Pulumi.yaml").read_text()) == project_document()


@pytest.mark.process
def test_the_checkouts_own_pulumi_yaml_is_used_as_it_is(pulumi, tmp_path):
    checkout = (PROJECT / "Pulumi.yaml").read_text()
    (pulumi.project / "Pulumi.yaml").write_text(checkout)
    target = pulumi.target(tmp_path, f"allowedCidrs=[{CIDR}]")
    target.apply(target.prepare(target.settings())[0])
    assert (pulumi.project / "Pulumi.yaml").read_text() == checkout


@pytest.mark.process
def test_an_engine_failure_is_one_line_naming_the_stack(pulumi, tmp_path, monkeypatch):
    monkeypatch.setenv("BUILDFLEET_STANDIN_FAIL", "up")
    target = pulumi.target(tmp_path, f"allowedCidrs=[{CIDR}]")
    with pytest.raises(BuildfleetError, match=r"^pulumi up on stack 'dev' failed: up failed$"):
        target.apply(target.prepare(target.settings())[0])


@pytest.mark.process
def test_not_logged_in_says_how_to_log_in(pulumi, tmp_path, monkeypatch):
    monkeypatch.delenv("PULUMI_BACKEND_URL")
    target = pulumi.target(tmp_path, f"allowedCidrs=[{CIDR}]")
    with pytest.raises(BuildfleetError, match="the Pulumi CLI is not logged in: run `pulumi login`"):
        target.apply(target.prepare(target.settings())[0])


@pytest.mark.process
def test_a_passphrase_stack_without_a_passphrase_is_refused_before_pulumi_runs(pulumi, tmp_path, monkeypatch):
    target = pulumi.target(tmp_path, f"allowedCidrs=[{CIDR}]")
    target.apply(target.prepare(target.settings())[0])  # made with a passphrase: the stack file has a salt
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE")
    before = len(pulumi.calls())
    again = pulumi.target(tmp_path, f"allowedCidrs=[{CIDR}]")
    with pytest.raises(ConfigError, match="export PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE"):
        again.prepare(again.settings())
    assert len(pulumi.calls()) == before


@pytest.mark.process  # the stand-in pulumi's account: moto's server
def test_a_new_stack_on_a_local_backend_needs_a_passphrase_too(pulumi, tmp_path, monkeypatch):
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE")
    target = pulumi.target(tmp_path, f"allowedCidrs=[{CIDR}]")
    with pytest.raises(ConfigError, match="passphrase"):
        target.prepare(target.settings())
    assert pulumi.calls() == [] and not target.state.root.exists()


@pytest.mark.process
def test_an_old_pulumi_cli_is_named(pulumi, tmp_path, monkeypatch):
    monkeypatch.setenv("BUILDFLEET_STANDIN_VERSION", "v2.25.0")
    target = pulumi.target(tmp_path, f"allowedCidrs=[{CIDR}]")
    with pytest.raises(BuildfleetError, match="not one the Automation API accepts .*Minimum version"):
        target.apply(target.prepare(target.settings())[0])


@pytest.mark.process  # the stand-in pulumi's account: moto's server
def test_a_missing_project_dir_is_named(pulumi, tmp_path):
    target = pulumi.target(tmp_path, f"allowedCidrs=[{CIDR}]")
    target.project_dir = tmp_path / "nowhere"
    with pytest.raises(ConfigError, match=f"--project-dir {tmp_path / 'nowhere'} is not a directory"):
        target.prepare(target.settings())


@pytest.mark.process
def test_without_the_pulumi_cli_the_error_says_what_to_install(pulumi, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    target = pulumi.target(tmp_path, f"allowedCidrs=[{CIDR}]")
    with pytest.raises(BuildfleetError, match="the Pulumi CLI is not on PATH: install it"):
        target.apply(target.prepare(target.settings())[0])


@pytest.mark.process
def test_down_of_an_unknown_stack_selects_never_creates_and_keeps_the_state(pulumi, tmp_path, capsys):
    state = FleetState.for_fleet("f")
    state.ensure_ssh_key()
    assert (
        main(["down", "--target", "aws", "--fleet", "f", "--stack", "typo", "--project-dir", str(pulumi.project)]) == 2
    )
    assert "stack 'typo' does not exist" in capsys.readouterr().err
    assert not any(c.startswith("stack init") for c in pulumi.commands()) and state.ssh_key.exists()


@pytest.mark.process
def test_down_after_a_failed_up_destroys_the_stack_it_made(pulumi, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BUILDFLEET_STANDIN_FAIL", "up")
    artifacts = host_artifacts(tmp_path / "artifacts")
    args = [
        "--fleet",
        "f",
        "--project-dir",
        str(pulumi.project),
        "--set",
        f"allowedCidrs=[{CIDR}]",
        "--artifacts",
        str(artifacts),
    ]
    assert main(["up", "--target", "aws", *args]) == 2
    monkeypatch.delenv("BUILDFLEET_STANDIN_FAIL")
    assert main(["down", "--fleet", "f", "--project-dir", str(pulumi.project)]) == 0  # no --target needed
    assert pulumi.destroys("f")
    assert not FleetState.for_fleet("f").root.exists()


@pytest.mark.process  # the stand-in pulumi's account: moto's server
def test_config_errors_stop_up_before_pulumi_is_touched(pulumi, tmp_path, capsys):
    assert main(["up", "--target", "aws", "--project-dir", str(pulumi.project), "--fleet", "f"]) == 2
    assert "buildfleet:allowedCidrs is empty" in capsys.readouterr().err
    assert pulumi.calls() == [] and not FleetState.for_fleet("f").root.exists()


@pytest.mark.process  # the stand-in pulumi's account: moto's server
@pytest.mark.parametrize("key", ["ecdsa-sha2-nistp256 AAAAE2VjZHNh", "sk-ssh-ed25519@openssh.com AAAAGnNr"])
def test_keys_ec2_cannot_import_are_refused_before_pulumi_runs(pulumi, tmp_path, key):
    target = pulumi.target(tmp_path, f"allowedCidrs=[{CIDR}]", f"sshPublicKey={key}", ssh_key=tmp_path)
    with pytest.raises(ConfigError, match="which EC2 cannot import"):
        target.prepare(target.settings())
    assert pulumi.calls() == []


def test_cloud_init_degraded_is_a_warning_and_an_error_status_an_error():
    assert cloud_init_outcome("arm64-0", "cloud-init=0\n") == ""
    assert cloud_init_outcome("arm64-0", "cloud-init=absent\n") == ""
    warning = cloud_init_outcome("arm64-0", "cloud-init=2\nstatus: degraded done\nrecoverable_errors: locale\n")
    assert warning.startswith("arm64-0: cloud-init finished degraded") and "locale" in warning
    with pytest.raises(CloudInitFailed, match="arm64-0: cloud-init reported an error .*status: error"):
        cloud_init_outcome("arm64-0", "cloud-init=1\nstatus: error\n")


@pytest.mark.process  # the stand-in pulumi's account: moto's server
def test_settings_ignore_a_missing_stack_file_and_read_an_existing_one(pulumi, tmp_path):
    (pulumi.project / "Pulumi.dev.yaml").write_text(yaml.safe_dump({"config": {"buildfleet:amd64Count": "2"}}))
    assert [r.count for r in pulumi.target(tmp_path).settings().roles if r.role == "amd64"] == [2]
    assert settings_from_mapping({}).roles  # and without one, Pulumi.yaml's defaults


@pytest.mark.process  # the stand-in pulumi's account: moto's server
def test_missing_graviton_artifacts_are_named_with_the_command_before_pulumi_runs(pulumi, tmp_path):
    amd64_only = host_artifacts(tmp_path / "amd64-only", arches=("amd64",))
    target = pulumi.target(tmp_path, f"allowedCidrs=[{CIDR}]", "artifactSource=dir", artifacts_dir=amd64_only)
    with pytest.raises(ArtifactError) as error:
        target.prepare(target.settings())
    assert str(error.value).startswith(
        f"no buildx for arm64, buildkit for arm64 in {amd64_only}: make them with "
        f"provisioning/artifacts/host-artifacts.sh {amd64_only} amd64 arm64"
    )
    assert pulumi.calls() == [] and not target.state.root.exists()
    no_arm64_host = pulumi.target(
        tmp_path, f"allowedCidrs=[{CIDR}]", "arm64Count=0", "artifactSource=dir", artifacts_dir=amd64_only
    )
    no_arm64_host.prepare(no_arm64_host.settings())  # nothing missing for an amd64-only fleet


@pytest.mark.process
def test_the_zone_the_first_up_chose_is_kept_in_the_stack_so_later_ups_never_move_the_hosts(
    tmp_path, monkeypatch, aws_api
):
    pulumi = StandInPulumi(tmp_path, monkeypatch, {**stack_outputs(), "availabilityZone": "us-east-1b"}, aws_api)
    said: list[str] = []
    target = pulumi.target(tmp_path, f"allowedCidrs=[{CIDR}]", on_output=said.append)
    target.apply(target.prepare(target.settings())[0])
    assert pulumi.stack_config()["buildfleet:availabilityZone"] == "us-east-1b"
    assert "buildfleet:availabilityZone us-east-1b kept in Pulumi.dev.yaml: the hosts stay in that zone" in said
    # later: EC2 offers the types in us-east-1a too, which the program would choose afresh
    (tmp_path / "outputs.json").write_text(json.dumps({**stack_outputs(), "availabilityZone": "us-east-1a"}))
    again = pulumi.target(tmp_path, f"allowedCidrs=[{CIDR}]")
    assert again.settings().availability_zone == "us-east-1b"  # what the program is given from now on
    again.apply(again.prepare(again.settings())[0])
    assert pulumi.stack_config()["buildfleet:availabilityZone"] == "us-east-1b"


@pytest.mark.process
def test_a_zone_the_user_named_is_theirs_and_left_alone(tmp_path, monkeypatch, aws_api):
    pulumi = StandInPulumi(tmp_path, monkeypatch, {**stack_outputs(), "availabilityZone": "us-east-1c"}, aws_api)
    target = pulumi.target(tmp_path, f"allowedCidrs=[{CIDR}]", "availabilityZone=us-east-1c")
    target.apply(target.prepare(target.settings())[0])
    assert pulumi.stack_config()["buildfleet:availabilityZone"] == "us-east-1c"
    assert len([c for c in pulumi.commands() if "availabilityZone" in c]) == 1  # from --set; the pin sets nothing


USER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB0gtjcjM8J7G9h2c0y9Fv0yS5oG3s3M3s3M3s3M3s3M ops@example"


@pytest.mark.process
@pytest.mark.parametrize(
    ("change", "culprit"),
    [
        ("image=debian-12", "buildfleet:image is debian-12, but the hosts of stack 'dev' were made with ubuntu-24.04"),
        (
            f"sshPublicKey={USER_KEY}",
            "buildfleet:sshPublicKey is ssh-ed25519 …3M3s3M3s3M, but the hosts of stack 'dev'",
        ),
    ],
)
def test_a_change_that_would_replace_or_lock_out_every_host_is_refused_with_the_safe_way(
    pulumi, tmp_path, change, culprit
):
    made = pulumi.target(tmp_path, f"allowedCidrs=[{CIDR}]")
    settings = made.settings()
    made.apply(made.prepare(settings)[0])
    made.state.save_settings(made.settings().values)  # as up does once the fleet is up
    stack_file = pulumi.project / "Pulumi.dev.yaml"
    before, commands = stack_file.read_bytes(), len(pulumi.commands())
    changed = pulumi.target(tmp_path, f"allowedCidrs=[{CIDR}]", change, ssh_key=tmp_path / "id")
    (tmp_path / "id").write_text("private half")
    with pytest.raises(ConfigError, match="buildfleet down and then up with the new value") as error:
        changed.prepare(changed.settings())
    assert str(error.value).startswith(culprit)
    assert stack_file.read_bytes() == before and len(pulumi.commands()) == commands  # nothing written or run
    same = pulumi.target(tmp_path, f"allowedCidrs=[{CIDR}]")
    same.prepare(same.settings())  # the same key and image go on as before


@pytest.mark.process
def test_the_first_up_gives_the_fleet_an_id_of_its_own_and_later_ups_keep_it(pulumi, tmp_path):
    first = pulumi.target(tmp_path, f"allowedCidrs=[{CIDR}]")
    to_set, _ = first.prepare(first.settings())
    assert len(to_set["fleetId"]) == 16
    first.apply(to_set)
    assert pulumi.stack_config()["buildfleet:fleetId"] == to_set["fleetId"]
    again = pulumi.target(tmp_path, f"allowedCidrs=[{CIDR}]")
    assert again.settings().fleet_id == to_set["fleetId"]
    assert "fleetId" not in again.prepare(again.settings())[0]  # the stack keeps the one it has


@pytest.mark.process
def test_down_detaches_the_wake_policy_from_whoever_holds_it_then_destroys(tmp_path, monkeypatch):
    """As the README suggests, a CI user holds the wake policy: IAM would refuse to delete it
    (DeleteConflict) and destroy would fail half-way. IAM is moto's server on 127.0.0.1."""
    import boto3
    from moto_aws import moto_server, point_sdk_at

    with moto_server() as endpoint:
        point_sdk_at(monkeypatch, endpoint)
        iam = boto3.client("iam", region_name="us-east-1")
        document = json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ec2:*", "Resource": "*"}]}
        )
        arn = iam.create_policy(PolicyName="buildfleet-dev-wake-1a2b3c", PolicyDocument=document)["Policy"]["Arn"]
        iam.create_user(UserName="ci")
        iam.attach_user_policy(UserName="ci", PolicyArn=arn)
        trust = json.dumps({"Version": "2012-10-17", "Statement": []})
        for role in ("buildfleet-dev-wake-github-9f8e7d", "deploy"):
            iam.create_role(RoleName=role, AssumeRolePolicyDocument=trust)
            iam.attach_role_policy(RoleName=role, PolicyArn=arn)
        pulumi = StandInPulumi(tmp_path, monkeypatch, {**stack_outputs(), "wakePolicyArn": arn}, endpoint)
        target = pulumi.target(tmp_path, f"allowedCidrs=[{CIDR}]")
        target.apply(target.prepare(target.settings())[0])
        said = target.down()
        assert said == [
            "wake policy detached from user ci",
            "wake policy detached from role deploy",
            "nothing of the fleet is left in region us-east-1: no instance, spot request, Elastic IP or load balancer",
            "stack 'dev' destroyed",
        ]
        left = iam.list_entities_for_policy(PolicyArn=arn)
        assert (left["PolicyUsers"], [r["RoleName"] for r in left["PolicyRoles"]]) == (
            [],
            ["buildfleet-dev-wake-github-9f8e7d"],  # the stack's own role: its attachment is a stack resource
        )
        assert pulumi.destroys()
