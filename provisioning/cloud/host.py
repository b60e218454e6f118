"""One build host: an EC2 instance whose AMI matches its CPU architecture.

Hardening that costs nothing is on by default: IMDSv2 only, with a hop limit of 1 so
build containers cannot reach instance metadata; an encrypted gp3 root volume. The operator
pins its SSH host key before the first connection instead of trusting whatever answers on
the new address. On a new stack the host makes that key itself and cloud-init prints the
public half on the serial console, which up reads (ec2:GetConsoleOutput): no private key in
user data, where anyone allowed ec2:DescribeInstanceAttribute could read it for the
instance's life. Stacks made before keep their Pulumi-made key (pulumi-tls; its private half
a secret in the stack's state, installed by cloud-init): new user data would stop and start
the instance.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws
import pulumi_tls as tls

from provisioning.catalog import InstanceType
from provisioning.cloud.ami import lookup_ami
from provisioning.cloudinit import console_host_key_cloud_config, host_key_cloud_config


@dataclass
class BuildHostArgs:
    role: str
    instance_type: InstanceType
    image: str
    subnet_id: pulumi.Input[str]
    security_group_id: pulumi.Input[str]
    key_name: pulumi.Input[str]
    root_volume_gib: int
    spot: bool = False
    tags: dict[str, str] = field(default_factory=dict)
    stops: bool = False  # idle stop: the host powers itself off and is started again (wake)
    key_on_console: bool = False  # the host makes its SSH host key (False: Pulumi does, see above)


def _market_options(spot: bool, stops: bool) -> aws.ec2.InstanceInstanceMarketOptionsArgsDict | None:
    if not spot:
        return None
    if stops:  # only a persistent request's instance can stop (and start again); EC2 refuses one-time
        return {
            "market_type": "spot",
            "spot_options": {"spot_instance_type": "persistent", "instance_interruption_behavior": "stop"},
        }
    return {"market_type": "spot", "spot_options": {"spot_instance_type": "one-time"}}


class BuildHost(pulumi.ComponentResource):
    instance_id: pulumi.Output[str]
    public_ip: pulumi.Output[str]
    private_ip: pulumi.Output[str]
    host_key: pulumi.Output[str]  # "" when the host makes its own: up reads it from the console

    def __init__(self, name: str, args: BuildHostArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("buildfleet:cloud:BuildHost", name, None, opts)
        tags = {**args.tags, "Name": name, "buildfleet:role": args.role}
        user_data, self.host_key = self._host_key(name, args.key_on_console)
        metadata: aws.ec2.InstanceMetadataOptionsArgsDict = {
            "http_endpoint": "enabled",
            "http_tokens": "required",
            "http_put_response_hop_limit": 1,
        }
        root: aws.ec2.InstanceRootBlockDeviceArgsDict = {
            "volume_type": "gp3",
            "volume_size": args.root_volume_gib,
            "encrypted": True,
            "delete_on_termination": True,
            "tags": tags,
        }
        instance = aws.ec2.Instance(
            f"{name}-vm",
            ami=lookup_ami(args.image, args.instance_type.arch, pulumi.InvokeOptions(parent=self)),
            instance_type=args.instance_type.name,
            subnet_id=args.subnet_id,
            vpc_security_group_ids=[args.security_group_id],
            key_name=args.key_name,
            associate_public_ip_address=True,
            metadata_options=metadata,
            # A host that powers itself off (idle stop, or by hand) is stopped, never terminated:
            # its disk and build cache stay for the next start. Not on one-time spot, which
            # cannot stop at all (idle stop makes spot requests persistent instead).
            instance_initiated_shutdown_behavior="stop" if args.stops or not args.spot else None,
            root_block_device=root,
            instance_market_options=_market_options(args.spot, args.stops),
            user_data=user_data,
            tags=tags,
            # The AMI is looked up (newest match) when a host is made; a newer image published
            # later must not replace running hosts (new addresses, build cache lost). To move a
            # host on purpose: pulumi up --replace <its urn>, or down and up.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["ami"]),
        )
        self.instance_id = instance.id
        self.public_ip = instance.public_ip
        if args.stops:
            # An instance's public address changes at every start; an Elastic IP keeps it, so the
            # builder, CI's endpoints and the pinned host keys stay right after a wake.
            address = aws.ec2.Eip(
                f"{name}-ip", domain="vpc", instance=instance.id, tags=tags, opts=pulumi.ResourceOptions(parent=self)
            )
            self.public_ip = address.public_ip
        self.private_ip = instance.private_ip
        self.register_outputs({"publicIp": self.public_ip, "privateIp": self.private_ip, "hostKey": self.host_key})

    def _host_key(self, name: str, on_console: bool) -> tuple[pulumi.Input[str], pulumi.Output[str]]:
        """The instance's user data and the public host key to pin ("": the console tells)."""
        if on_console:
            return console_host_key_cloud_config(), pulumi.Output.from_input("")
        host_key = tls.PrivateKey(f"{name}-hostkey", algorithm="ED25519", opts=pulumi.ResourceOptions(parent=self))
        cloud_config: pulumi.Output[str] = pulumi.Output.all(
            host_key.private_key_openssh, host_key.public_key_openssh
        ).apply(lambda keys: host_key_cloud_config(*keys))
        return pulumi.Output.secret(cloud_config), host_key.public_key_openssh.apply(lambda key: key.strip())
