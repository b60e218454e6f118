"""The whole AWS fleet: network, access, one BuildHost per planned host, and the inventory."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from provisioning.cloud.access import Access, AccessArgs
from provisioning.cloud.ami import IMAGE_SOURCES
from provisioning.cloud.host import BuildHost, BuildHostArgs
from provisioning.cloud.network import Network, NetworkArgs
from provisioning.cloud.pool import PoolBalancer, PoolBalancerArgs
from provisioning.cloud.wake_roles import WakeRoles, WakeRolesArgs
from provisioning.inventory import Endpoint, Pool, inventory_from_plan
from provisioning.plan import Plan
from provisioning.settings import Settings

TARGET = "aws"


@dataclass
class FleetArgs:
    settings: Settings
    plan: Plan
    tags: dict[str, str]


STACK_TAG = "buildfleet:stack"
FLEET_TAG = "buildfleet:fleet-id"


@dataclass(frozen=True)
class Scope:
    """Where the wake policy may start instances: this partition, account and region, and only
    instances tagged with this stack and (once up set one) this fleet's own id."""

    partition: str
    account: str
    region: str
    tags: dict[str, str]

    @property
    def instances(self) -> str:
        return f"arn:{self.partition}:ec2:{self.region}:{self.account}:instance/*"


def wake_policy(scope: Scope) -> str:
    """IAM policy for whoever wakes the fleet (a CI job): start only this fleet's instances, and
    see instances' state (DescribeInstances has no resource-level scope). Pure."""
    condition = {f"aws:ResourceTag/{key}": value for key, value in sorted(scope.tags.items())}
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "StartThisFleetsHosts",
                    "Effect": "Allow",
                    "Action": "ec2:StartInstances",
                    "Resource": scope.instances,
                    "Condition": {"StringEquals": condition},
                },
                {"Sid": "SeeTheirState", "Effect": "Allow", "Action": "ec2:DescribeInstances", "Resource": "*"},
            ],
        },
        indent=2,
    )


def where_this_runs(tags: dict[str, str], opts: pulumi.InvokeOptions) -> Scope:
    """The partition, account and region the provider runs in (plain invokes: the policy's text
    must be known when the program registers it)."""
    partition = aws.get_partition(opts=opts).partition
    account = aws.get_caller_identity(opts=opts).account_id
    return Scope(partition, account, aws.get_region(opts=opts).region, tags)


def exchange_port(settings: Settings) -> int:
    """The token exchange's port when the settings trust an OIDC provider (see hosts' exchange step), else 0."""
    return settings.exchange_port if settings.exchange_wanted() else 0


def _by_host(names: list[str], values: list[pulumi.Output[str]]) -> pulumi.Output[dict]:
    return pulumi.Output.all(*values).apply(lambda found: dict(zip(names, found, strict=True)))


class Fleet(pulumi.ComponentResource):
    inventory: pulumi.Output[dict]
    host_keys: pulumi.Output[dict]  # host name -> its OpenSSH public host key, to pin before connecting
    host_key_source: str  # "console" (each host made its own; up reads them there) or "stack"
    instance_ids: pulumi.Output[dict]  # host name -> its EC2 instance: whose console shows its key
    placement: list[dict[str, object]]

    def __init__(self, name: str, args: FleetArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("buildfleet:cloud:Fleet", name, None, opts)
        settings, plan, child = args.settings, args.plan, pulumi.ResourceOptions(parent=self)
        network = Network(
            f"{name}-net",
            NetworkArgs(
                settings.create_vpc,
                settings.vpc_cidr,
                settings.availability_zone,
                args.tags,
                tuple(sorted({t.name for t in plan.instance_types.values()})),
            ),
            opts=child,
        )
        self.availability_zone = network.availability_zone
        access = Access(
            f"{name}-access",
            AccessArgs(
                network.vpc_id,
                settings.allowed_cidrs,
                settings.buildkitd_port,
                settings.ssh_public_key,
                args.tags,
                settings.buildkitd_cidrs,
                exchange_port(settings),
            ),
            opts=child,
        )
        hosts = {
            spec.name: BuildHost(
                f"{name}-{spec.name}",
                BuildHostArgs(
                    role=spec.role,
                    instance_type=plan.instance_types[spec.name],
                    image=settings.image,
                    subnet_id=network.subnet_id,
                    security_group_id=access.security_group_id,
                    key_name=access.key_name,
                    root_volume_gib=settings.root_volume_gib,
                    spot=settings.spot,
                    tags=args.tags,
                    stops=settings.idle_stop_minutes > 0,
                    key_on_console=settings.host_keys == "console",
                ),
                opts=child,
            )
            for spec in plan.hosts
        }
        port = settings.buildkitd_port
        balancers = {
            pool: PoolBalancer(
                f"{name}-{pool}",
                PoolBalancerArgs(
                    vpc_id=network.vpc_id,
                    subnet_id=network.subnet_id,
                    host_security_group_id=access.security_group_id,
                    members={member: hosts[member].instance_id for member in members},
                    port=port,
                    cidrs=tuple(dict.fromkeys((*settings.allowed_cidrs, *settings.buildkitd_cidrs))),
                    tags=args.tags,
                ),
                opts=child,
            )
            for pool, members in plan.pools.items()
        }
        ssh_user = IMAGE_SOURCES[settings.image].ssh_user
        names, pools = list(hosts), list(balancers)
        addresses = pulumi.Output.all(
            *[hosts[n].public_ip for n in names],
            *[hosts[n].private_ip for n in names],
            *[balancers[p].dns_name for p in pools],
        )

        def inventory(found: list[str]) -> dict:
            public, private, dns = found[: len(names)], found[len(names) : 2 * len(names)], found[2 * len(names) :]
            return inventory_from_plan(
                plan,
                TARGET,
                {n: Endpoint(public[i], private[i], 22, port, exchange_port(settings)) for i, n in enumerate(names)},
                ssh_user,
                pools=tuple(Pool(p, dns[i], port) for i, p in enumerate(pools)),
            ).to_dict()

        self.inventory = addresses.apply(inventory)
        self.host_keys = _by_host(names, [hosts[n].host_key for n in names])
        self.host_key_source = settings.host_keys or "stack"
        self.instance_ids = _by_host(names, [hosts[n].instance_id for n in names])
        self.placement = plan.placement.to_list()
        scoped = {k: v for k, v in args.tags.items() if k in (STACK_TAG, FLEET_TAG)}
        self.wake_policy = wake_policy(where_this_runs(scoped, pulumi.InvokeOptions(parent=self)))
        policy = aws.iam.Policy(
            f"{name}-wake",
            description=f"buildfleet wake: start the stopped build hosts of stack {args.tags[STACK_TAG]}, nothing else",
            policy=self.wake_policy,
            tags=args.tags,
            opts=child,
        )
        self.wake_policy_arn = policy.arn
        self.wake_roles = WakeRoles(
            f"{name}-wake", WakeRolesArgs(settings.wake_trust, policy.arn, args.tags), opts=child
        )
        self.register_outputs(
            {
                "inventory": self.inventory,
                "placement": self.placement,
                "hostKeys": self.host_keys,
                "hostKeySource": self.host_key_source,
                "instanceIds": self.instance_ids,
                "wakePolicyArn": self.wake_policy_arn,
                "availabilityZone": self.availability_zone,
            }
        )
