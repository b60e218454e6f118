"""On a new AWS stack each host makes its own SSH host key; up reads the public half from the
instance's serial console (EC2's GetConsoleOutput, moto's server answering what each instance
printed) and pins it before the first connection. A stack made before keeps Pulumi's keys,
and a switch either way is refused: new user data would stop and start every host."""

import json

import boto3
import pytest
import yaml
from moto_aws import consoles_show, point_sdk_at
from pulumi_standin import StandInPulumi
from test_aws_target import CIDR, stack_outputs

from provisioning.cloudinit import HOST_KEYS_BEGIN, HOST_KEYS_END
from provisioning.errors import BuildfleetError, ConfigError
from provisioning.targets import ec2console

pytestmark = pytest.mark.process  # the stand-in pulumi and moto's server

KEYS = {
    "amd64-0": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBmRWqHJ1JmQ0b5rX8lFv2pU0m4f7CwWg1x9nq3b6kYa",
    "emulation-0": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH3x0cQ9y2sUuTt8VwYzAaBbCcDdEeFfGgHhIiJjKkLl",
}
BOOT = "[    0.000000] Linux version 6.8.0-1016-aws\ncloud-init[612]: Cloud-init v. 24.4 running 'init'\n"


def key_block(key: str, host: str) -> str:
    """What keys_to_console prints late in the first boot: the one key the host makes, ed25519."""
    return f"{HOST_KEYS_BEGIN}\n{key} root@{host}\n{HOST_KEYS_END}\n"


def launch(ec2) -> str:
    (made,) = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1, InstanceType="c7i.xlarge")["Instances"]
    return made["InstanceId"]


def console_outputs(instances: dict[str, str]) -> dict:
    """A new stack's outputs as the program exports them (test_pulumi_program): no key, the instances."""
    return {
        **stack_outputs(),
        "hostKeys": dict.fromkeys(instances, ""),
        "hostKeySource": "console",
        "instanceIds": instances,
    }


@pytest.fixture
def ec2(aws_api, monkeypatch):
    monkeypatch.setattr(ec2console, "CONSOLE_POLL_SECONDS", 0.05)
    point_sdk_at(monkeypatch, aws_api)
    return boto3.client("ec2")


def made_up(pulumi, tmp_path, *overrides, **fields):
    target = pulumi.target(tmp_path, f"allowedCidrs=[{CIDR}]", *overrides, **fields)
    inventory = target.apply(target.prepare(target.settings())[0])
    target.pin_console_keys(inventory)
    return target


def test_a_new_stacks_hosts_make_their_keys_and_up_pins_each_from_its_console_once_it_shows_it(
    tmp_path, monkeypatch, aws_api, ec2
):
    instances = {"amd64-0": launch(ec2), "emulation-0": launch(ec2)}
    by_instance = {instances[h]: (h, k) for h, k in KEYS.items()}

    def console(instance: str, n: int) -> str:
        host, key = by_instance[instance]
        late = host == "emulation-0" and n < 2  # its cloud-init gets there two reads later
        return BOOT if late else BOOT + key_block(key, host)

    reads = consoles_show(monkeypatch, console)
    pulumi = StandInPulumi(tmp_path, monkeypatch, console_outputs(instances), aws_api)
    said: list[str] = []
    target = made_up(pulumi, tmp_path, on_output=said.append)
    assert target.state.known_hosts.read_text() == (
        f"203.0.113.5 {KEYS['amd64-0']}\n[203.0.113.6]:2222 {KEYS['emulation-0']}\n"
    )
    assert reads == {instances["amd64-0"]: 1, instances["emulation-0"]: 3}
    assert (
        f"amd64-0: host key read from the console of {instances['amd64-0']}: ssh-ed25519 …{KEYS['amd64-0'][-10:]}"
        in said
    )
    assert pulumi.stack_config()["buildfleet:hostKeys"] == "console"


def test_a_key_once_read_is_kept_and_a_host_made_again_has_its_new_key_read(tmp_path, monkeypatch, aws_api, ec2):
    instances = {"amd64-0": launch(ec2), "emulation-0": launch(ec2)}
    keys = {instances["amd64-0"]: KEYS["amd64-0"], instances["emulation-0"]: KEYS["emulation-0"]}
    reads = consoles_show(monkeypatch, lambda instance, n: BOOT + key_block(keys[instance], "h"))
    pulumi = StandInPulumi(tmp_path, monkeypatch, console_outputs(instances), aws_api)
    made_up(pulumi, tmp_path)
    made_up(pulumi, tmp_path)  # a later up: a console shows the block only in the first boot
    assert sum(reads.values()) == 2
    replaced = launch(ec2)  # emulation-0 made again (a reclaimed spot host): another instance, another key
    new_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMmNnOoPpQqRrSsTtUuVvWwXxYyZz0011223344556677"
    keys[replaced] = new_key
    (tmp_path / "outputs.json").write_text(json.dumps(console_outputs({**instances, "emulation-0": replaced})))
    target = made_up(pulumi, tmp_path)
    assert reads[replaced] == 1 and sum(reads.values()) == 3
    assert target.state.known_host_keys()[("203.0.113.6", 2222)] == new_key
    assert target.state.known_host_keys()[("203.0.113.5", 22)] == KEYS["amd64-0"]


def test_a_console_that_shows_no_key_is_an_error_naming_the_host_and_its_instance(tmp_path, monkeypatch, aws_api, ec2):
    instances = {"amd64-0": launch(ec2), "emulation-0": launch(ec2)}
    shown = {instances["amd64-0"]: key_block(KEYS["amd64-0"], "amd64-0"), instances["emulation-0"]: ""}
    reads = consoles_show(monkeypatch, lambda instance, n: BOOT + shown[instance])
    pulumi = StandInPulumi(tmp_path, monkeypatch, console_outputs(instances), aws_api)
    with pytest.raises(BuildfleetError) as error:
        made_up(pulumi, tmp_path, wait_timeout=0.3)
    assert str(error.value).startswith(
        f"the serial console of emulation-0 ({instances['emulation-0']}) has not shown its SSH host key after 0 s"
    )
    assert "run buildfleet up again" in str(error.value)
    state = pulumi.target(tmp_path).state
    assert state.known_host_keys() == {("203.0.113.5", 22): KEYS["amd64-0"]}  # what was read is kept
    shown[instances["emulation-0"]] = key_block(KEYS["emulation-0"], "emulation-0")  # its boot got there
    amd64_reads = reads[instances["amd64-0"]]
    made_up(pulumi, tmp_path)  # the re-run the error asks for reads only that console
    assert reads[instances["amd64-0"]] == amd64_reads
    assert state.known_host_keys() == {("203.0.113.5", 22): KEYS["amd64-0"], ("203.0.113.6", 2222): KEYS["emulation-0"]}


def test_a_stack_made_before_keeps_pulumis_keys_and_a_switch_is_refused(tmp_path, monkeypatch, aws_api):
    made = {k: v for k, v in stack_outputs().items() if k != "hostKeySource"}  # an older program's outputs
    pulumi = StandInPulumi(tmp_path, monkeypatch, made, aws_api)
    first = pulumi.target(tmp_path, f"allowedCidrs=[{CIDR}]", "hostKeys=stack")
    first.apply(first.prepare(first.settings())[0])
    stack_file = pulumi.project / "Pulumi.dev.yaml"
    config = yaml.safe_load(stack_file.read_text())["config"]
    del config["buildfleet:hostKeys"]  # as such a stack's file has it: the key did not exist
    stack_file.write_text(yaml.safe_dump({"config": config}))
    again = pulumi.target(tmp_path, f"allowedCidrs=[{CIDR}]")
    again.apply(again.prepare(again.settings())[0])
    assert pulumi.stack_config()["buildfleet:hostKeys"] == "stack"  # written down, nothing switched
    before, calls = stack_file.read_bytes(), len(pulumi.commands())
    switched = pulumi.target(tmp_path, f"allowedCidrs=[{CIDR}]", "hostKeys=console")
    with pytest.raises(ConfigError) as error:
        switched.apply(switched.prepare(switched.settings())[0])
    assert str(error.value).startswith(
        "buildfleet:hostKeys is console, but the hosts of stack 'dev' were made with stack: "
    )
    assert "buildfleet down and then up" in str(error.value)
    assert stack_file.read_bytes() == before
    assert not [c for c in pulumi.commands()[calls:] if c.startswith(("up ", "config set"))]  # nothing run
