"""doctor --preflight: what this machine needs for a target, checked before up and touching no
host. The AWS side runs the stand-in `pulumi` and asks moto's STS on 127.0.0.1 who the
credentials are (the one connection a pre-flight makes: to the AWS API configured)."""

import json

import pytest
import yaml
from pulumi_standin import StandInPulumi

from provisioning.cli import main

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOl5Hh3Xf0m8lq0n1u1v5l6xQm6b4f0nS3cU1oYt6V0z"


def preflight(capsys, *args) -> tuple[int, dict]:
    code = main(["doctor", "--preflight", "--json", *args])
    report = json.loads(capsys.readouterr().out)
    return code, {(c["node"], c["check"]): c for c in report["checks"]}


@pytest.fixture
def sts(monkeypatch, aws_api):
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws_api)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never ask 169.254.169.254 for credentials
    return aws_api


@pytest.mark.process
def test_aws_preflight_names_the_cli_its_login_the_project_and_who_the_credentials_are(
    tmp_path, monkeypatch, capsys, sts
):
    pulumi = StandInPulumi(tmp_path, monkeypatch, {}, sts)
    (pulumi.project / "Pulumi.dev.yaml").write_text(yaml.safe_dump({"config": {"aws:region": "us-east-1"}}))
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
        monkeypatch.setenv(name, value)
    code, checks = preflight(capsys, "--target", "aws", "--stack", "dev", "--project-dir", str(pulumi.project))
    assert checks[("this machine", "pulumi version")]["detail"] == "Pulumi CLI v3.200.0"
    assert checks[("this machine", "pulumi login")]["detail"].startswith("file://")
    assert checks[("dev", "project")]["ok"] and "stack 'dev'" in checks[("dev", "project")]["detail"]
    assert checks[("aws", "region")]["detail"] == "us-east-1"
    assert checks[("aws", "credentials")]["ok"] and "(account 123456789012)" in checks[("aws", "credentials")]["detail"]
    assert {("this machine", p) for p in ("pulumi", "pulumi-aws", "pulumi-tls", "boto3")} <= set(checks)
    assert checks[("aws", "offerings")]["ok"] and checks[("aws", "elastic IPs")]["ok"]  # the account's limits too


@pytest.mark.process
def test_aws_preflight_without_credentials_or_login_fails_with_the_fix(tmp_path, monkeypatch, capsys, sts):
    pulumi = StandInPulumi(tmp_path, monkeypatch, {}, sts)
    monkeypatch.delenv("PULUMI_BACKEND_URL")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    code, checks = preflight(capsys, "--target", "aws", "--project-dir", str(pulumi.project))
    assert code == 1
    assert (
        not checks[("this machine", "pulumi login")]["ok"]
        and "pulumi login" in checks[("this machine", "pulumi login")]["fix"]
    )
    credentials = checks[("aws", "credentials")]
    assert (
        not credentials["ok"] and "NoCredentialsError" in credentials["detail"] and "AWS_PROFILE" in credentials["fix"]
    )
    assert not checks[("aws", "region")]["ok"]


def test_static_preflight_checks_the_file_and_each_hosts_key_file(tmp_path, capsys):
    key = tmp_path / "id_ed25519"
    key.write_text("private")
    hosts = [
        {"name": "a", "address": "192.0.2.1", "user": "u", "role": "amd64", "key": str(key), "hostKey": KEY},
        {
            "name": "b",
            "address": "192.0.2.2",
            "user": "u",
            "role": "emulation",
            "key": str(tmp_path / "gone"),
            "hostKey": KEY,
        },
    ]
    inventory = tmp_path / "hosts.yaml"
    inventory.write_text(yaml.safe_dump({"hosts": hosts}))
    code, checks = preflight(
        capsys, "--target", "static", "--inventory", str(inventory), "--project-dir", str(tmp_path)
    )
    assert (
        checks[("this machine", "inventory")]["ok"]
        and "nothing was contacted" in checks[("this machine", "inventory")]["detail"]
    )
    assert checks[("a", "ssh key")]["ok"] and not checks[("b", "ssh key")]["ok"] and code == 1


@pytest.mark.process
def test_local_preflight_checks_the_engine_buildx_binfmt_and_host_files(tmp_path, capsys):
    code, checks = preflight(capsys, "--target", "local", "--project-dir", str(tmp_path))
    for check in ("python", "docker", "buildx", "binfmt_misc", "registry"):
        assert ("this machine", check) in checks, check
    assert any(name.startswith("host files ") for _, name in checks)
    assert code == (0 if all(c["ok"] or c["warning"] for c in checks.values()) else 1)
