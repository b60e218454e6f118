"""A pool on AWS: a Network Load Balancer in front of one role's hosts, TCP passthrough.

TLS is not terminated: buildx's mTLS goes through to whichever member's buildkitd the NLB
picks, and every member's server certificate carries the NLB's DNS name (configure adds
it). An NLB balances by flow hash, not least connections (only ALBs offer least outstanding
requests, and an ALB would have to terminate TLS); each ``buildx build`` is its own TCP
flow, so concurrent builds still spread. Its TCP health check drops a stopped or dead host.

The NLB has a security group of its own, open on buildkitd's port to the CIDRs that may
reach buildkitd; the hosts accept buildkitd from that group (the NLB's health checks and the
flows it forwards), per the ELB user guide's "Security groups for your Network Load Balancer".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from provisioning.cloud.access import cidr_fields

HEALTH_INTERVAL_SECONDS = 10
NAME_PREFIX = "bfpl-"  # NLB and target group names are at most 32 characters: the provider adds a unique suffix


@dataclass
class PoolBalancerArgs:
    vpc_id: pulumi.Input[str]
    subnet_id: pulumi.Input[str]
    host_security_group_id: pulumi.Input[str]
    members: Mapping[str, pulumi.Input[str]]  # host name -> its instance id
    port: int  # buildkitd's, on the NLB and on each member
    cidrs: Sequence[str]  # who may reach buildkitd through it
    tags: dict[str, str] = field(default_factory=dict)


class PoolBalancer(pulumi.ComponentResource):
    dns_name: pulumi.Output[str]

    def __init__(self, name: str, args: PoolBalancerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("buildfleet:cloud:PoolBalancer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = {**args.tags, "Name": name}
        group = aws.ec2.SecurityGroup(
            f"{name}-sg",
            vpc_id=args.vpc_id,
            description="buildfleet pool balancer: buildkitd (mTLS passes through) from the allowed CIDRs",
            tags=tags,
            opts=child,
        )

        def buildkitd_rule(kind: type, suffix: str, group_id: pulumi.Input[str], why: str, **source: Any) -> None:
            kind(
                f"{name}-{suffix}",
                security_group_id=group_id,
                ip_protocol="tcp",
                from_port=args.port,
                to_port=args.port,
                description=why,
                tags=args.tags,
                opts=child,
                **source,
            )

        for index, cidr in enumerate(args.cidrs):
            ipv4, ipv6 = cidr_fields(cidr)
            rule = aws.vpc.SecurityGroupIngressRule
            buildkitd_rule(rule, f"in-{index}", group.id, f"buildkitd from {cidr}", cidr_ipv4=ipv4, cidr_ipv6=ipv6)
        members = args.host_security_group_id
        buildkitd_rule(
            aws.vpc.SecurityGroupEgressRule,
            "to-members",
            group.id,
            "to the members' buildkitd: forwarded flows and health checks",
            referenced_security_group_id=members,
        )
        buildkitd_rule(
            aws.vpc.SecurityGroupIngressRule,
            "members-from-nlb",
            members,
            f"buildkitd from the {name} balancer",
            referenced_security_group_id=group.id,
        )
        balancer = aws.lb.LoadBalancer(
            f"{name}-nlb",
            name_prefix=NAME_PREFIX,
            load_balancer_type="network",
            internal=False,
            subnets=[args.subnet_id],
            security_groups=[group.id],
            tags=tags,
            opts=child,
        )
        targets = aws.lb.TargetGroup(
            f"{name}-tg",
            name_prefix=NAME_PREFIX,
            port=args.port,
            protocol="TCP",
            target_type="instance",
            vpc_id=args.vpc_id,
            # a member that stops (idle stop, a crash) is drained quickly; a build in flight on it fails anyway
            deregistration_delay=30,
            # the members see the NLB's own addresses, which their rule for the NLB's group admits; who may
            # connect at all is the NLB's group (allowed CIDRs), as the ELB guide advises for NLBs with groups
            preserve_client_ip="false",
            health_check={
                "protocol": "TCP",
                "port": "traffic-port",
                "interval": HEALTH_INTERVAL_SECONDS,
                "healthy_threshold": 2,
                "unhealthy_threshold": 2,
            },
            tags=tags,
            opts=child,
        )
        for host, instance_id in args.members.items():
            aws.lb.TargetGroupAttachment(
                f"{name}-{host}",
                target_group_arn=targets.arn,
                target_id=instance_id,
                port=args.port,
                opts=child,
            )
        aws.lb.Listener(
            f"{name}-listener",
            load_balancer_arn=balancer.arn,
            port=args.port,
            protocol="TCP",
            default_actions=[{"type": "forward", "target_group_arn": targets.arn}],
            tags=args.tags,
            opts=child,
        )
        self.dns_name = balancer.dns_name
        self.register_outputs({"dnsName": self.dns_name})
