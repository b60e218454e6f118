"""A rolling restart on AWS steers the pool's NLB: the member restarting is deregistered from
the pool's target group and registered again, found from the inventory and the stack's tags
alone. EC2 and ELBv2 are moto's server on 127.0.0.1."""

import dataclasses

import boto3
import pytest
from fleet_parts import inventory_host
from moto_aws import point_sdk_at

from provisioning.errors import BuildfleetError
from provisioning.inventory import Inventory, Pool
from provisioning.state import FleetState
from provisioning.targets.aws import AwsTarget
from provisioning.targets.base import ConfigSources, SteersPools

pytestmark = pytest.mark.process  # moto's server on 127.0.0.1

STACK, FLEET_ID, PORT = "dev", "f1e2d3c4b5a69788", 1234


@pytest.fixture
def aws(monkeypatch, aws_api):
    point_sdk_at(monkeypatch, aws_api)
    return boto3.client("ec2"), boto3.client("elbv2")


def pool_fleet(ec2, elbv2) -> tuple[Inventory, str, dict[str, str]]:
    """Two members behind an NLB as the program makes them: the inventory, the target group,
    and each member's instance id."""
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/24")["Subnet"]["SubnetId"]
    instances = {h: instance(ec2, subnet, FLEET_ID, h) for h in ("amd64-0", "amd64-1")}
    instance(ec2, subnet, "0123456789abcdef", "amd64-0")  # another account's fleet of that stack name: never steered
    balancer = elbv2.create_load_balancer(Name="bfpl-one", Subnets=[subnet], Type="network")["LoadBalancers"][0]
    elbv2.create_load_balancer(Name="bfpl-other", Subnets=[subnet], Type="network")  # another fleet's pool
    group = elbv2.create_target_group(Name="bfpl-tg", Protocol="TCP", Port=PORT, VpcId=vpc, TargetType="instance")
    arn = group["TargetGroups"][0]["TargetGroupArn"]
    elbv2.create_listener(
        LoadBalancerArn=balancer["LoadBalancerArn"],
        Protocol="TCP",
        Port=PORT,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": arn}],
    )
    elbv2.register_targets(TargetGroupArn=arn, Targets=[{"Id": i, "Port": PORT} for i in instances.values()])
    hosts = tuple(dataclasses.replace(inventory_host(h, "amd64", "linux/amd64"), pool="amd64-pool") for h in instances)
    inventory = Inventory("aws", hosts, pools=(Pool("amd64-pool", balancer["DNSName"], PORT),))
    return inventory, arn, instances


def instance(ec2, subnet: str, fleet_id: str, host: str) -> str:
    tags = {"buildfleet:stack": STACK, "buildfleet:fleet-id": fleet_id, "Name": f"buildfleet-{STACK}-{host}"}
    (made,) = ec2.run_instances(
        ImageId="ami-12c6146b",
        MinCount=1,
        MaxCount=1,
        SubnetId=subnet,
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}],
    )["Instances"]
    return made["InstanceId"]


def health(elbv2, arn: str) -> dict[str, str]:
    found = elbv2.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
    return {d["Target"]["Id"]: d["TargetHealth"]["State"] for d in found if d["TargetHealth"]["State"] != "unused"}


def target(tmp_path, stack: str = STACK) -> AwsTarget:
    """The aws target of stack ``stack`` as a command in ``tmp_path`` makes it (its fleet id in the stack file)."""
    (tmp_path / f"Pulumi.{stack}.yaml").write_text(f"config:\n  buildfleet:fleetId: {FLEET_ID}\n")
    return AwsTarget(stack, tmp_path, FleetState(tmp_path / "state"), ConfigSources(tmp_path, stack=stack))


def test_the_aws_target_steers_its_pools_and_a_member_out_takes_no_flow_until_it_is_healthy_again(
    aws, tmp_path, monkeypatch
):
    ec2, elbv2 = aws
    inventory, arn, instances = pool_fleet(ec2, elbv2)
    aws_target = target(tmp_path)
    assert isinstance(aws_target, SteersPools) and aws_target.settings().fleet_id == FLEET_ID
    members = aws_target.pool_members(inventory)
    members.take_out("amd64-pool", "amd64-0")
    assert health(elbv2, arn) == {instances["amd64-1"]: "healthy"}  # the other member takes every new flow
    assert members.sessions("amd64-pool", "amd64-0") == 0  # deregistered: no flow of its own left (moto skips draining)
    members.put_back("amd64-pool", "amd64-0", timeout=30)
    assert health(elbv2, arn) == {instances["amd64-0"]: "healthy", instances["amd64-1"]: "healthy"}


def test_a_pool_whose_balancer_is_gone_is_one_error_naming_it(aws, tmp_path):
    ec2, elbv2 = aws
    inventory, _, _ = pool_fleet(ec2, elbv2)
    gone = dataclasses.replace(inventory, pools=(Pool("amd64-pool", "bfpl-gone.elb.amazonaws.com", PORT),))
    members = target(tmp_path).pool_members(gone)
    with pytest.raises(BuildfleetError, match=r"pool amd64-pool: no load balancer .* at bfpl-gone\.elb"):
        members.take_out("amd64-pool", "amd64-0")


def test_a_member_the_stack_has_no_instance_for_is_named(aws, tmp_path):
    ec2, elbv2 = aws
    inventory, _, _ = pool_fleet(ec2, elbv2)
    members = target(tmp_path, "prod").pool_members(inventory)
    with pytest.raises(BuildfleetError, match=r"amd64-0: stack 'prod' has no instance of that name"):
        members.take_out("amd64-pool", "amd64-0")


def test_an_sdk_error_is_one_line_naming_what_was_being_done(aws, tmp_path, monkeypatch):
    ec2, elbv2 = aws
    inventory, _, _ = pool_fleet(ec2, elbv2)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there: botocore's own error
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # at once, not after botocore's retries
    members = target(tmp_path).pool_members(inventory)
    with pytest.raises(BuildfleetError, match=r"^finding pool amd64-pool's target group: Could not connect"):
        members.take_out("amd64-pool", "amd64-0")
