"""Who can reach the hosts: a security group open to allowedCidrs (SSH and buildkitd) and
buildkitdCidrs (buildkitd only, mTLS), and the SSH key.

One ingress rule per CIDR and port, as resources of their own: the AWS provider docs
advise against inline rules, which handle multiple CIDRs badly and cannot be tagged.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

SSH_PORT = 22


@dataclass
class AccessArgs:
    vpc_id: pulumi.Input[str]
    allowed_cidrs: tuple[str, ...]
    buildkitd_port: int
    ssh_public_key: str
    tags: dict[str, str] = field(default_factory=dict)
    buildkitd_cidrs: tuple[str, ...] = ()  # buildkitd only, beside allowed_cidrs
    exchange_port: int = 0  # the token exchange (HTTPS), open to whoever may reach buildkitd; 0: none


def cidr_fields(cidr: str) -> tuple[str | None, str | None]:
    """(cidr_ipv4, cidr_ipv6): a rule names its source in the field of its address family."""
    return (None, cidr) if ipaddress.ip_network(cidr).version == 6 else (cidr, None)


class Access(pulumi.ComponentResource):
    security_group_id: pulumi.Output[str]
    key_name: pulumi.Output[str]

    def __init__(self, name: str, args: AccessArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("buildfleet:cloud:Access", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        group = aws.ec2.SecurityGroup(
            f"{name}-sg",
            vpc_id=args.vpc_id,
            # kept as first written: EC2 cannot change a group's description, Pulumi would replace it
            description="buildfleet build hosts: SSH and buildkitd (mTLS) from allowedCidrs only",
            tags={**args.tags, "Name": f"{name}-sg"},
            opts=child,
        )
        ports = {"ssh": SSH_PORT, "buildkitd": args.buildkitd_port}
        ports |= {"exchange": args.exchange_port} if args.exchange_port else {}  # CI jobs trade their tokens there
        rules = [
            (f"{service}-{index}", service, cidr) for index, cidr in enumerate(args.allowed_cidrs) for service in ports
        ]
        extra = [c for c in args.buildkitd_cidrs if c not in args.allowed_cidrs]
        for service in [s for s in ports if s != "ssh"]:
            rules += [(f"{service}-extra-{index}", service, cidr) for index, cidr in enumerate(extra)]
        for suffix, service, cidr in rules:
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-{suffix}",
                security_group_id=group.id,
                ip_protocol="tcp",
                from_port=ports[service],
                to_port=ports[service],
                description=f"{service} from {cidr}",
                tags=args.tags,
                opts=child,
                cidr_ipv4=cidr_fields(cidr)[0],
                cidr_ipv6=cidr_fields(cidr)[1],
            )
        # Hosts fetch packages and push images, so all egress is allowed.
        for family, cidr in (("ipv4", "0.0.0.0/0"), ("ipv6", "::/0")):
            aws.vpc.SecurityGroupEgressRule(
                f"{name}-egress-{family}",
                security_group_id=group.id,
                ip_protocol="-1",
                description=f"all {family} egress",
                tags=args.tags,
                opts=child,
                cidr_ipv4=cidr_fields(cidr)[0],
                cidr_ipv6=cidr_fields(cidr)[1],
            )
        key = aws.ec2.KeyPair(
            f"{name}-key", public_key=args.ssh_public_key, tags={**args.tags, "Name": f"{name}-key"}, opts=child
        )
        self.security_group_id = group.id
        self.key_name = key.key_name
        self.register_outputs({"securityGroupId": self.security_group_id, "keyName": self.key_name})
