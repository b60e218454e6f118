"""wake on AWS: the stack's stopped instances started through the AWS SDK, found by their tags.

AWS is out of reach here, so EC2 is moto's server: a real HTTP endpoint on 127.0.0.1 that
boto3 talks to as it would to AWS (the same requests, the same pagination and errors).
"""

import boto3
import pytest

from provisioning.errors import BuildfleetError
from provisioning.inventory import Inventory, InventoryHost
from provisioning.remote.machine import free_port
from provisioning.settings import settings_from_mapping
from provisioning.state import FleetState
from provisioning.targets.aws import AwsTarget
from provisioning.targets.ec2power import describe_aws_error, start_stack_hosts

pytestmark = pytest.mark.process  # moto's server on 127.0.0.1, and endpoints where nothing listens


@pytest.fixture
def ec2_endpoint(aws_api):
    return aws_api


@pytest.fixture
def ec2(ec2_endpoint, monkeypatch):
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
        monkeypatch.setenv(name, value)
    return boto3.client("ec2", region_name="us-east-1", endpoint_url=ec2_endpoint)


def launch(ec2, stack: str, host: str, fleet_id: str = "") -> str:
    tags = [{"Key": "buildfleet:stack", "Value": stack}, {"Key": "Name", "Value": f"buildfleet-{stack}-{host}"}]
    tags += [{"Key": "buildfleet:fleet-id", "Value": fleet_id}] if fleet_id else []
    (instance,) = ec2.run_instances(
        ImageId="ami-12c6146b",
        MinCount=1,
        MaxCount=1,
        InstanceType="c7i.xlarge",
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
    )["Instances"]
    return instance["InstanceId"]


def state_of(ec2, instance_id: str) -> str:
    (reservation,) = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    return reservation["Instances"][0]["State"]["Name"]


def test_wake_starts_exactly_the_stacks_stopped_hosts_and_says_where_each_runs(ec2):
    ours = {host: launch(ec2, "dev", host) for host in ("amd64-0", "arm64-0", "emulation-0")}
    theirs = launch(ec2, "prod", "amd64-0")
    ec2.stop_instances(InstanceIds=[ours["amd64-0"], ours["arm64-0"], theirs])
    running = start_stack_hosts(ec2, "dev", timeout=60, poll=0.2)
    assert sorted(running) == ["amd64-0", "arm64-0", "emulation-0"]
    assert {h.instance_id for h in running.values()} == set(ours.values())
    assert all(h.state == "running" and h.private_ip for h in running.values())
    assert state_of(ec2, theirs) == "stopped"  # another stack's host is never touched


def test_two_fleets_named_alike_in_one_account_never_wake_each_other(ec2):
    ours = launch(ec2, "default", "amd64-0", fleet_id="0123456789abcdef")
    theirs = launch(ec2, "default", "amd64-0", fleet_id="fedcba9876543210")
    ec2.stop_instances(InstanceIds=[ours, theirs])
    running = start_stack_hosts(ec2, "default", timeout=60, poll=0.2, fleet_id="0123456789abcdef")
    assert [h.instance_id for h in running.values()] == [ours]
    assert state_of(ec2, theirs) == "stopped"


def test_a_region_without_the_stacks_hosts_is_one_clear_error(ec2):
    launch(ec2, "dev", "amd64-0")
    with pytest.raises(BuildfleetError, match="no EC2 instance is tagged buildfleet:stack=staging"):
        start_stack_hosts(ec2, "staging", timeout=5, poll=0.2)


def test_hosts_that_came_back_elsewhere_take_their_pinned_keys_with_them(tmp_path):
    state = FleetState(tmp_path / "fleet")
    old = Inventory("aws", (InventoryHost("amd64-0", "amd64", "amd64", "198.51.100.1", "10.0.0.1", "ubuntu"),))
    state.save_inventory(old)
    state.write_known_hosts({("198.51.100.1", 22): "ssh-ed25519 AAAAkey"})
    target = AwsTarget("dev", tmp_path, state)
    moved = target.follow(old, {"amd64-0": ("198.51.100.9", "10.0.0.9")})
    assert (moved.hosts[0].address, moved.hosts[0].private_address) == ("198.51.100.9", "10.0.0.9")
    assert state.known_host_keys() == {("198.51.100.9", 22): "ssh-ed25519 AAAAkey"}
    assert state.load_inventory() == moved
    assert target.follow(moved, {"amd64-0": ("198.51.100.9", "10.0.0.9")}) == moved  # an Elastic IP: no change


def test_status_shows_each_hosts_power_state_as_ec2_sees_it(ec2, ec2_endpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", ec2_endpoint)  # what boto3 reads instead of AWS's own endpoint
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    ids = {host: launch(ec2, "dev", host) for host in ("amd64-0", "arm64-0")}
    ec2.stop_instances(InstanceIds=[ids["arm64-0"]])
    rows = AwsTarget("dev", tmp_path, FleetState(tmp_path / "fleet")).status()
    assert [(r.host, r.resource, r.state, r.asleep) for r in rows] == [
        ("amd64-0", ids["amd64-0"], "running", False),
        ("arm64-0", ids["arm64-0"], "stopped", True),  # what commands that use it wake first
    ]


def test_up_starts_the_hosts_idle_stop_powered_off_instead_of_waiting_for_their_ssh(
    ec2, ec2_endpoint, tmp_path, monkeypatch
):
    monkeypatch.setenv("AWS_ENDPOINT_URL", ec2_endpoint)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    ids = {host: launch(ec2, "dev", host, fleet_id="0123456789abcdef") for host in ("amd64-0", "arm64-0")}
    theirs = launch(ec2, "dev", "amd64-0", fleet_id="fedcba9876543210")
    ec2.stop_instances(InstanceIds=[ids["arm64-0"], theirs])
    target, said = aws_fleet(tmp_path), []
    target.on_output = said.append
    target.state.write_known_hosts({("198.51.100.1", 22): "ssh-ed25519 AAAAkey"})
    inventory = target.state.load_inventory()
    started = target.started(inventory, "0123456789abcdef")
    assert state_of(ec2, ids["arm64-0"]) == "running" and state_of(ec2, theirs) == "stopped"
    assert said == ["stopped (idle stop, or by hand): arm64-0; starting them"]
    (reservation,) = ec2.describe_instances(InstanceIds=[ids["amd64-0"]])["Reservations"]
    assert started.hosts[0].address == reservation["Instances"][0]["PublicIpAddress"]  # followed where it answers
    said.clear()
    assert target.started(started, "0123456789abcdef") == started and said == []  # all running: nothing done
    assert target.started(started, "no-such-fleet") == started and said == []  # none tagged (yet): nothing to start


def test_status_without_aws_access_shows_what_up_recorded_and_why(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port('127.0.0.1')}")  # nothing listens
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    state = FleetState(tmp_path / "fleet")
    state.save_inventory(Inventory("aws", (InventoryHost("amd64-0", "amd64", "amd64", "198.51.100.1", "", "ubuntu"),)))
    (row,) = AwsTarget("dev", tmp_path, state).status()
    assert row.state.startswith("recorded by up (EC2 not asked: ")


def aws_fleet(tmp_path) -> AwsTarget:
    state = FleetState(tmp_path / "fleet")
    state.save_inventory(Inventory("aws", (InventoryHost("amd64-0", "amd64", "amd64", "198.51.100.1", "", "ubuntu"),)))
    return AwsTarget("dev", tmp_path, state, wait_timeout=5)


def test_wake_that_cannot_reach_ec2_is_one_line_naming_the_stack(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port('127.0.0.1')}")  # nothing listens
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(BuildfleetError, match=r"^wake of stack 'dev': Could not connect to the endpoint URL") as error:
        aws_fleet(tmp_path).wake(settings_from_mapping({}))
    assert "\n" not in str(error.value)


def test_wake_without_a_region_says_where_to_set_one(tmp_path, monkeypatch):
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    with pytest.raises(BuildfleetError, match=r"^wake of stack 'dev': no AWS region: set AWS_REGION"):
        aws_fleet(tmp_path).wake(settings_from_mapping({}))


@pytest.mark.parametrize(
    ("code", "fix"),
    [
        ("InsufficientInstanceCapacity", "run wake again in a few minutes, or choose another instance type"),
        ("UnauthorizedOperation", "use ones the stack's wakePolicy is attached to"),
        ("InvalidInstanceID.Malformed", None),
    ],
)
def test_an_error_ec2_answers_with_is_one_line_with_its_code_and_the_fix_when_known(code, fix):
    from botocore.exceptions import ClientError  # botocore's own error value, as the SDK raises it

    error = ClientError({"Error": {"Code": code, "Message": "EC2 says no."}}, "StartInstances")
    line = describe_aws_error(error, "wake of stack 'dev'")
    assert line.startswith(f"wake of stack 'dev': AWS refused ({code}: EC2 says no.)")
    assert (fix in line) if fix else line.endswith("no.)")
