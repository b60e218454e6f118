"""up --target aws checks the account's limits before anything is made: instance types offered
where the hosts go, Elastic IPs and vCPUs within quota. EC2 is moto's server (its Service Quotas
answers no EC2 quota, so the vCPU check shows as the warning a user without that permission sees)."""

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
