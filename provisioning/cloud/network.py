"""Where the hosts live: the account's default VPC, or a small VPC made for them."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws


@dataclass
class NetworkArgs:
    create_vpc: bool
    vpc_cidr: str
    availability_zone: str = ""  # empty: the first (in name order) that offers every instance type
    tags: dict[str, str] = field(default_factory=dict)
    instance_types: tuple[str, ...] = ()  # what the hosts run: the subnet's AZ must offer each


def zone_subnet(vpc_cidr: str, zone: str) -> str:
    """The subnet of ``zone`` in the VPC: the sixteenth of it the zone's letter picks (a: the
    first). A host moved to another zone gets a subnet beside the old one, never over it. Pure."""
    blocks = list(ipaddress.ip_network(vpc_cidr).subnets(prefixlen_diff=4))
    letter = zone[-1:].lower()
    if not ("a" <= letter <= "p"):
        raise ValueError(f"availability zone {zone!r} does not end in a letter a-p")
    return str(blocks[ord(letter) - ord("a")])


def choose_zone(locations: Sequence[str], offered: Sequence[str], wanted: Sequence[str], asked: str = "") -> str:
    """The AZ for the hosts' subnet, from EC2's per-AZ instance type offerings. Pure.

    Not every AZ offers every type (c7g is missing from some), and a host in an AZ without
    its type fails at create time after the others bill; so refuse with the reason first.
    """
    by_zone: dict[str, set[str]] = {}
    for zone, instance_type in zip(locations, offered, strict=True):
        by_zone.setdefault(zone, set()).add(instance_type)
    fitting = sorted(zone for zone, types in by_zone.items() if set(wanted) <= types)
    if asked:
        if asked not in fitting:
            lacking = sorted(set(wanted) - by_zone.get(asked, set()))
            raise pulumi.RunError(
                f"buildfleet:availabilityZone {asked} does not offer {', '.join(lacking)}; "
                f"zones that offer every planned type: {', '.join(fitting) or 'none'}"
            )
        return asked
    if not fitting:
        raise pulumi.RunError(
            f"no availability zone in this region offers all of {', '.join(sorted(wanted))}: "
            "change an instance type (buildfleet:*InstanceType) or the region"
        )
    return fitting[0]


class Network(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    subnet_id: pulumi.Output[str]
    availability_zone: str  # chosen once; up keeps it in the stack's config so hosts never move by themselves

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("buildfleet:cloud:Network", name, None, opts)
        self.availability_zone = self._zone(args)
        if args.create_vpc:
            self.vpc_id, self.subnet_id = self._create(name, args)
        else:
            self.vpc_id, self.subnet_id = self._default(args)
        self.register_outputs(
            {"vpcId": self.vpc_id, "subnetId": self.subnet_id, "availabilityZone": self.availability_zone}
        )

    def _zone(self, args: NetworkArgs) -> str:
        # Plain (blocking) invokes: their answers decide the layout, and a region that cannot hold
        # the fleet stops the program with one error before any resource is registered.
        offerings = aws.ec2.get_instance_type_offerings(
            location_type="availability-zone",
            filters=[{"name": "instance-type", "values": sorted(set(args.instance_types))}],
            opts=pulumi.InvokeOptions(parent=self),
        )
        return choose_zone(offerings.locations, offerings.instance_types, args.instance_types, args.availability_zone)

    def _default(self, args: NetworkArgs) -> tuple[pulumi.Output[str], pulumi.Output[str]]:
        invoke = pulumi.InvokeOptions(parent=self)
        vpcs = aws.ec2.get_vpcs(filters=[{"name": "is-default", "values": ["true"]}], opts=invoke).ids
        if not vpcs:
            raise pulumi.RunError(
                "this region has no default VPC: set buildfleet:createVpc true (buildfleet makes one)"
            )
        zone = self.availability_zone
        subnets = aws.ec2.get_subnets(
            filters=[
                {"name": "vpc-id", "values": [vpcs[0]]},
                {"name": "default-for-az", "values": ["true"]},
                {"name": "availability-zone", "values": [zone]},
            ],
            opts=invoke,
        ).ids
        if not subnets:
            raise pulumi.RunError(
                f"the default VPC has no default subnet in {zone}: set buildfleet:createVpc true, "
                "or buildfleet:availabilityZone to a zone that has one"
            )
        # Sorted: the API promises no order, and the choice must be stable between runs.
        return pulumi.Output.from_input(vpcs[0]), pulumi.Output.from_input(sorted(subnets)[0])

    def _create(self, name: str, args: NetworkArgs) -> tuple[pulumi.Output[str], pulumi.Output[str]]:
        child = pulumi.ResourceOptions(parent=self)
        zone = self.availability_zone
        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=args.vpc_cidr,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags={**args.tags, "Name": f"{name}-vpc"},
            opts=child,
        )
        gateway = aws.ec2.InternetGateway(
            f"{name}-igw", vpc_id=vpc.id, tags={**args.tags, "Name": f"{name}-igw"}, opts=child
        )
        subnet = aws.ec2.Subnet(
            f"{name}-public",
            vpc_id=vpc.id,
            cidr_block=zone_subnet(args.vpc_cidr, zone),
            availability_zone=zone,
            map_public_ip_on_launch=True,
            tags={**args.tags, "Name": f"{name}-public"},
            # a stack made when the subnet was the whole VPC keeps it: a new range would replace
            # the subnet, and with it every host
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["cidrBlock"]),
        )
        routes = aws.ec2.RouteTable(
            f"{name}-routes",
            vpc_id=vpc.id,
            routes=[{"cidr_block": "0.0.0.0/0", "gateway_id": gateway.id}],
            tags={**args.tags, "Name": f"{name}-routes"},
            opts=child,
        )
        aws.ec2.RouteTableAssociation(
            f"{name}-public-routes", subnet_id=subnet.id, route_table_id=routes.id, opts=child
        )
        return vpc.id, subnet.id
