"""down on AWS ends with nothing of the fleet left in the account, and says so: the fleet's
persistent spot requests are cancelled before destroy (else they launch instances again), and
what the account still holds afterwards is named. EC2 and ELBv2 are moto's server."""

import boto3
import pytest
from fleet_parts import inventory_host
from moto_aws import point_sdk_at
from pulumi_standin import StandInPulumi

from provisioning.errors import BuildfleetError
from provisioning.inventory import Inventory
from provisioning.targets import aws as aws_target
from provisioning.targets.account import cancel_spot_requests, fleet_leftovers

pytestmark = pytest.mark.process  # moto's server on 127.0.0.1

FLEET_ID, OTHER_ID = "f1e2d3c4b5a69788", "0123456789abcdef"
CIDR = "203.0.113.7/32"


@pytest.fixture
def aws(monkeypatch, aws_api):
    point_sdk_at(monkeypatch, aws_api)
    return aws_api, boto3.client("ec2"), boto3.client("elbv2")


def tags(fleet_id: str, host: str, stack: str = "dev") -> list[dict[str, str]]:
    made = {"buildfleet:stack": stack, "buildfleet:fleet-id": fleet_id, "Name": f"buildfleet-{stack}-{host}"}
    return [{"Key": k, "Value": v} for k, v in made.items()]


def spot_host(ec2, fleet_id: str, host: str) -> tuple[str, str]:
    """A host on a persistent spot request, as idle stop on spot makes them: (request, instance)."""
    (request,) = ec2.request_spot_instances(
        Type="persistent", LaunchSpecification={"ImageId": "ami-12c6146b", "InstanceType": "c7i.xlarge"}
    )["SpotInstanceRequests"]
    found = ec2.describe_spot_instance_requests(SpotInstanceRequestIds=[request["SpotInstanceRequestId"]])
    instance = found["SpotInstanceRequests"][0]["InstanceId"]
    ec2.create_tags(Resources=[instance], Tags=tags(fleet_id, host))
    return request["SpotInstanceRequestId"], instance


def live_requests(ec2) -> set[str]:
    """Spot requests that may still launch an instance (moto forgets a cancelled one; AWS shows it cancelled)."""
    found = ec2.describe_spot_instance_requests()["SpotInstanceRequests"]
    return {r["SpotInstanceRequestId"] for r in found if r["State"] in ("open", "active", "disabled")}


def test_the_fleets_spot_requests_are_cancelled_and_anothers_are_left_alone(aws):
    _, ec2, _ = aws
    ours, instance = spot_host(ec2, FLEET_ID, "amd64-0")
    theirs, _ = spot_host(ec2, OTHER_ID, "amd64-0")
    assert cancel_spot_requests(ec2, [instance]) == [f"spot request {ours} cancelled"]
    assert live_requests(ec2) == {theirs}
    assert cancel_spot_requests(ec2, [instance]) == []  # a second down has nothing more to cancel


def test_what_the_fleet_left_in_the_account_is_listed_by_kind_and_nothing_of_another_fleet(aws):
    _, ec2, elbv2 = aws
    request, instance = spot_host(ec2, FLEET_ID, "amd64-0")
    spot_host(ec2, OTHER_ID, "amd64-0")
    ours = [{"ResourceType": "elastic-ip", "Tags": tags(FLEET_ID, "amd64-0")}]
    address = ec2.allocate_address(Domain="vpc", TagSpecifications=ours)
    ec2.allocate_address(Domain="vpc", TagSpecifications=[{"ResourceType": "elastic-ip", "Tags": tags(OTHER_ID, "x")}])
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/24")["Subnet"]["SubnetId"]
    balancer = elbv2.create_load_balancer(
        Name="bfpl-ours", Subnets=[subnet], Type="network", Tags=tags(FLEET_ID, "amd64-pool")
    )["LoadBalancers"][0]
    elbv2.create_load_balancer(Name="bfpl-theirs", Subnets=[subnet], Type="network", Tags=tags(OTHER_ID, "p"))

    left = fleet_leftovers(ec2, elbv2, "dev", FLEET_ID, [instance])
    assert left == [
        f"instance {instance} (amd64-0, running)",
        f"spot request {request}",
        f"Elastic IP {address['PublicIp']}",
        "load balancer bfpl-ours",
    ]
    cancel_spot_requests(ec2, [instance])
    ec2.terminate_instances(InstanceIds=[instance])
    ec2.release_address(AllocationId=address["AllocationId"])
    elbv2.delete_load_balancer(LoadBalancerArn=balancer["LoadBalancerArn"])
    assert fleet_leftovers(ec2, elbv2, "dev", FLEET_ID, [instance]) == []


def test_down_cancels_spot_requests_first_and_names_what_destroy_left_behind(aws, tmp_path, monkeypatch):
    endpoint, ec2, _ = aws
    inventory = Inventory("aws", (inventory_host("amd64-0", "amd64", "linux/amd64"),))
    outputs = {"inventory": inventory.to_dict(), "hostKeys": {"amd64-0": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOl5"}}
    pulumi = StandInPulumi(tmp_path, monkeypatch, outputs, endpoint)
    target = pulumi.target(tmp_path, f"allowedCidrs=[{CIDR}]", f"fleetId={FLEET_ID}")
    target.apply(target.prepare(target.settings())[0])
    request, instance = spot_host(ec2, FLEET_ID, "amd64-0")  # the stand-in's destroy leaves moto's instances
    monkeypatch.setattr(aws_target, "LEFTOVER_SECONDS", 0)  # ask once: nothing here goes away by itself
    with pytest.raises(BuildfleetError) as left:
        target.down()
    assert request not in live_requests(ec2)  # cancelled before destroy: it cannot launch the host again
    assert pulumi.destroys()
    assert str(left.value).startswith("pulumi destroy finished, but region us-east-1 still holds what the fleet made: ")
    assert f"instance {instance} (amd64-0, running)" in str(left.value) and "spot request" not in str(left.value)
