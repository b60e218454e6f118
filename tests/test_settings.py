"""Configuration: one schema, validated up front, every error naming its key."""

import dataclasses
from pathlib import Path

import pytest
import yaml
from tools.render_settings import readme_with_table

from provisioning.errors import ConfigError
from provisioning.project import project_document
from provisioning.settings import KEYS, require_cloud_access, settings_from_mapping

PROJECT = Path(__file__).resolve().parent.parent
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB0gtjcjM8J7G9h2c0y9Fv0yS5oG3s3M3s3M3s3M3s3M ops@example"


def test_defaults_give_amd64_arm64_on_c7g_and_an_emulation_host():
    settings = settings_from_mapping({})
    assert [(r.role, r.instance_type.name, r.count) for r in settings.roles] == [
        ("amd64", "c7i.xlarge", 1),
        ("arm64", "c7g.xlarge", 1),
        ("emulation", "c7i.xlarge", 1),
    ]
    assert "linux/arm/v7" in [str(p) for p in settings.platforms]


def test_the_checkouts_pulumi_yaml_is_the_project_the_package_writes():
    """One declaration per key (a setting field of Settings): the pulumi-CLI copy may not drift."""
    assert yaml.safe_load((PROJECT / "Pulumi.yaml").read_text()) == project_document(), (
        "run python3 tests/tools/render_settings.py"
    )


def test_the_readmes_configuration_table_is_rendered_from_the_same_declarations():
    readme = (PROJECT / "README.md").read_text()
    assert readme_with_table(readme) == readme, "run python3 tests/tools/render_settings.py"
    assert all(f"| `{key}` |" in readme for key in KEYS)


def test_every_key_is_a_typed_field_of_settings_holding_its_checked_value():
    settings = settings_from_mapping({"vmRoles": "arm64,amd64", "buildkitdPort": "8443"})
    assert settings.vm_roles == ("arm64", "amd64") and settings.buildkitd_port == 8443
    assert len(KEYS) == len({f.name for f in dataclasses.fields(settings) if "key" in f.metadata})
    with pytest.raises(ConfigError, match=r"buildfleet:vmRoles: 'riscv' is not one of amd64, arm64, emulation"):
        settings_from_mapping({"vmRoles": ["riscv"]})  # an array key's choices hold for each item


def test_pulumi_string_forms_are_accepted():
    settings = settings_from_mapping(
        {
            "buildfleet:platforms": '["linux/amd64", "s390x"]',
            "buildfleet:arm64Count": "0",
            "buildfleet:spot": "true",
            "buildfleet:allowedCidrs": '["198.51.100.0/24", "2001:db8::/32"]',
        }
    )
    assert [str(p) for p in settings.platforms] == ["linux/amd64", "linux/s390x"]
    assert settings.role("arm64").count == 0
    assert settings.spot is True
    assert settings.allowed_cidrs == ("198.51.100.0/24", "2001:db8::/32")


@pytest.mark.parametrize(
    ("raw", "culprit"),
    [
        ({"platforms": ["linux/amd64", "linux/vax"]}, "buildfleet:platforms"),
        ({"arm64InstanceType": "c7i.xlarge"}, "buildfleet:arm64InstanceType"),
        ({"amd64InstanceType": "c7g.xlarge"}, "buildfleet:amd64InstanceType"),
        ({"emulationInstanceType": "c9z.huge"}, "buildfleet:emulationInstanceType"),
        ({"amd64Count": -1}, "buildfleet:amd64Count"),
        ({"amd64Count": "many"}, "buildfleet:amd64Count"),
        ({"spot": "maybe"}, "buildfleet:spot"),
        ({"buildkitGcMaxUsedSpace": "lots"}, "buildfleet:buildkitGcMaxUsedSpace"),
        ({"buildkitGcMinFreeSpace": "0%"}, "buildfleet:buildkitGcMinFreeSpace"),
        ({"buildkitGcReservedSpace": "150%"}, "buildfleet:buildkitGcReservedSpace"),
        ({"buildkitGcMaxUsedSpace": "90%", "buildkitGcMinFreeSpace": "20%"}, "buildfleet:buildkitGcMaxUsedSpace"),
        ({"buildkitMaxParallelism": -1}, "buildfleet:buildkitMaxParallelism"),
        ({"amd64count": 2}, "buildfleet:amd64count (did you mean 'amd64Count'?)"),
        ({"allowedCidrs": ["10.0.0.300/8"]}, "buildfleet:allowedCidrs"),
        ({"allowedCidrs": ["10.0.0.1/8"]}, "buildfleet:allowedCidrs"),
        ({"allowedCidrs": ["0.0.0.0/0"]}, "buildfleet:allowedCidrs"),
        ({"allowedCidrs": ["::/0"]}, "buildfleet:allowedCidrs"),
        ({"image": "windows-2022"}, "buildfleet:image"),
        ({"sshPublicKey": "-----BEGIN OPENSSH PRIVATE KEY-----"}, "buildfleet:sshPublicKey"),
        ({"buildkitdPort": 70000}, "buildfleet:buildkitdPort"),
        ({"rootVolumeGiB": 4}, "buildfleet:rootVolumeGiB"),
        ({"vpcCidr": "not-a-cidr"}, "buildfleet:vpcCidr"),
        ({"customInstanceTypes": ["broken"]}, "customInstanceTypes"),
        ({"alowedCidrs": ["198.51.100.0/24"]}, "buildfleet:alowedCidrs"),
        ({"amd64Count": 0, "arm64Count": 0, "emulationCount": 0}, "buildfleet:amd64Count"),
    ],
)
def test_bad_values_raise_one_error_naming_the_key(raw, culprit):
    with pytest.raises(ConfigError) as error:
        settings_from_mapping(raw)
    assert culprit in str(error.value)


def test_world_open_cidr_needs_allow_world():
    settings = settings_from_mapping({"allowedCidrs": ["0.0.0.0/0"], "allowWorld": True})
    assert settings.allowed_cidrs == ("0.0.0.0/0",)


def test_a_custom_type_can_fill_a_role():
    settings = settings_from_mapping(
        {
            "customInstanceTypes": ["c7gd.xlarge=arm64,4,8,0.1814,aarch32"],
            "arm64InstanceType": "c7gd.xlarge",
        }
    )
    assert settings.role("arm64").instance_type.aarch32 is True


def test_aws_needs_allowed_cidrs_and_a_key_but_a_plan_does_not():
    settings = settings_from_mapping({})
    with pytest.raises(ConfigError, match="buildfleet:allowedCidrs is empty"):
        require_cloud_access(settings)
    with pytest.raises(ConfigError, match="buildfleet:sshPublicKey is not set"):
        require_cloud_access(settings_from_mapping({"allowedCidrs": ["198.51.100.7/32"]}))
    require_cloud_access(settings_from_mapping({"allowedCidrs": ["198.51.100.7/32"], "sshPublicKey": KEY}))


@pytest.mark.parametrize(
    ("raw", "culprit"),
    [
        ({"wakeGithubRepositories": ["acme/*"]}, "wakeGithubRepositories: 'acme/\\*' is not OWNER/REPO"),
        ({"wakeGithubRepositories": ["acme"]}, "wakeGithubRepositories: 'acme' is not OWNER/REPO"),
        ({"githubOidcProviderArn": "arn:aws:iam::1:role/x"}, "githubOidcProviderArn: .* is not an IAM OIDC provider"),
        ({"wakeCircleciOrgId": "acme", "wakeCircleciProjectIds": ["x"]}, "wakeCircleciOrgId: 'acme' is not a CircleCI"),
        ({"wakeCircleciOrgId": "0b3f6c2e-1111-4222-8333-944455556666"}, "go together"),
    ],
)
def test_wake_trust_names_repositories_and_projects_never_a_wildcard(raw, culprit):
    with pytest.raises(ConfigError, match=culprit):
        settings_from_mapping(raw)
