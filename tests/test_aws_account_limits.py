"""up --target aws checks the account's limits before anything is made: instance types offered
where the hosts go, Elastic IPs and vCPUs within quota. EC2 is moto's server (its Service Quotas
answers no EC2 quota, so the vCPU check shows as the warning a user without that permission sees)."""

import json
import os
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import boto3
import pytest
from pulumi_standin import StandInPulumi

from provisioning.errors import BuildfleetError

pytestmark = pytest.mark.process  # moto's server on 127.0.0.1

CIDR = "198.51.100.7/32"
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOl5Hh3Xf0m8lq0n1u1v5l6xQm6b4f0nS3cU1oYt6V0z"


@pytest.fixture
def account(tmp_path, monkeypatch, aws_api):
    pulumi = StandInPulumi(tmp_path, monkeypatch, {}, aws_api)
    return pulumi, boto3.client("ec2")


def checks_of(target) -> dict:
    return {c.check: c for c in target.account_checks(target.settings())}


def test_the_default_plan_passes_offerings_and_elastic_ips_and_the_unread_vcpu_quota_is_a_warning(account, tmp_path):
    pulumi, _ = account
    checks = checks_of(pulumi.target(tmp_path, f"allowedCidrs=[{CIDR}]"))
    assert checks["offerings"].ok and "offered together in us-east-1a" in checks["offerings"].detail
    assert checks["elastic IPs"].ok and checks["elastic IPs"].detail.startswith("3 more needed")  # idle stop's
    vcpu = checks["vCPU quota"]
    assert not vcpu.ok and vcpu.warning and "L-1216C47A" in vcpu.detail and "GetServiceQuota" in vcpu.fix
    assert (
        checks["image"].ok and checks["image"].detail == "amd64 boots ami-0bf1ee02, arm64 boots ami-0bf1ee03"
    )  # Ubuntu
    permissions = checks["permissions"]  # every call a DryRun: nothing was made
    assert permissions.ok and "ec2:RunInstances (c7g.xlarge)" in permissions.detail, permissions.detail
    assert "ec2:AllocateAddress" in permissions.detail and "ec2:ImportKeyPair" in permissions.detail
    ec2 = account[1]
    assert ec2.describe_instances()["Reservations"] == [] and ec2.describe_addresses()["Addresses"] == []


def test_calls_these_credentials_may_not_make_are_named_before_anything_is_made(account, tmp_path, aws_api):
    """moto enforces IAM once asked to (moto-api/reset-auth): a user allowed EC2's reads and
    RunInstances, nothing else, is refused the calls the plan needs, each named."""
    pulumi, _ = account
    iam = boto3.client("iam")
    iam.create_user(UserName="deployer")
    allowed = ["ec2:Describe*", "ec2:RunInstances", "ec2:CreateTags", "servicequotas:GetServiceQuota", "sts:*"]
    document = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": allowed, "Resource": "*"}]}
    iam.put_user_policy(UserName="deployer", PolicyName="some", PolicyDocument=json.dumps(document))
    key = iam.create_access_key(UserName="deployer")["AccessKey"]
    target = pulumi.target(tmp_path, f"allowedCidrs=[{CIDR}]")
    with enforced_iam(aws_api, key):
        permissions = checks_of(target)["permissions"]
        with pytest.raises(
            BuildfleetError, match=r"permissions: these credentials may not make ec2:CreateSecurityGroup"
        ):
            target.up(target.settings())
    assert not permissions.ok and not permissions.warning
    assert permissions.detail == (
        "these credentials may not make ec2:CreateSecurityGroup, ec2:ImportKeyPair, ec2:AllocateAddress"
    )
    assert not [c for c in pulumi.commands() if c.startswith("up ")]  # no host, no bill


@contextmanager
def enforced_iam(endpoint: str, key: dict) -> Iterator[None]:
    """moto checks every request's credentials against IAM while the block runs, these the SDK's."""
    before = {name: os.environ[name] for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    os.environ.update(AWS_ACCESS_KEY_ID=key["AccessKeyId"], AWS_SECRET_ACCESS_KEY=key["SecretAccessKey"])
    boto3.setup_default_session()  # the SDK's default session read the credentials once: read them again
    reset_auth(endpoint, "0")
    try:
        yield
    finally:
        reset_auth(endpoint, "inf")
        os.environ.update(before)
        boto3.setup_default_session()


def reset_auth(endpoint: str, count: str) -> None:
    headers = {"Content-Type": "text/plain"}  # a form body would leave moto's request.data empty
    request = urllib.request.Request(f"{endpoint}/moto-api/reset-auth", count.encode(), headers, method="POST")
    urllib.request.urlopen(request, timeout=10).close()


def test_a_region_without_the_images_publisher_has_for_a_cpu_is_named(account, tmp_path):
    pulumi, ec2 = account
    ec2.deregister_image(ImageId="ami-0bf1ee03")  # Ubuntu 24.04 for arm64: as if this region had none
    image = checks_of(pulumi.target(tmp_path, f"allowedCidrs=[{CIDR}]"))["image"]
    assert not image.ok and image.detail == (
        "no ubuntu-24.04 image for arm64 from its publisher (account 099720109477) in the region"
    )


def test_a_fleet_that_would_pass_the_elastic_ip_quota_is_stopped_before_pulumi_runs(account, tmp_path):
    pulumi, ec2 = account
    for _ in range(3):  # someone else's, in the same region: 3 of the 5 moto (as AWS) allows
        ec2.allocate_address(Domain="vpc")
    target = pulumi.target(tmp_path, f"allowedCidrs=[{CIDR}]")
    with pytest.raises(BuildfleetError) as stopped:
        target.up(target.settings())
    message = str(stopped.value)
    assert message.startswith("the account would stop up half-way, so nothing was made: elastic IPs: 3 more needed")
    assert "the region has 3 of 5" in message and "idleStopMinutes to 0" in message
    assert not [c for c in pulumi.commands() if c.startswith("up ")]  # no host, no bill
    assert checks_of(pulumi.target(tmp_path, f"allowedCidrs=[{CIDR}]", "idleStopMinutes=0"))["elastic IPs"].ok


def test_an_instance_type_the_pinned_zone_does_not_offer_is_named_with_the_zone(account, tmp_path):
    pulumi, ec2 = account
    offered = ec2.describe_instance_type_offerings(
        LocationType="availability-zone", Filters=[{"Name": "location", "Values": ["us-east-1e"]}]
    )["InstanceTypeOfferings"]
    assert "c7i.xlarge" not in {o["InstanceType"] for o in offered}  # what the test relies on
    target = pulumi.target(tmp_path, f"allowedCidrs=[{CIDR}]", "availabilityZone=us-east-1e")
    offerings = checks_of(target)["offerings"]
    assert not offerings.ok and "c7i.xlarge" in offerings.detail and "us-east-1e" in offerings.detail
