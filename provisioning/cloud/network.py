"""Where the hosts live: the account's default VPC, or a small VPC made for them."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws


@dataclass
class NetworkArgs:
    create_vpc: bool
    vpc_cidr: str
    availability_zone: str = ""  # only used with create_vpc; empty = first available
    tags: dict[str, str] = field(default_factory=dict)


class Network(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    subnet_id: pulumi.Output[str]

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("buildfleet:cloud:Network", name, None, opts)
        if args.create_vpc:
            self.vpc_id, self.subnet_id = self._create(name, args)
        else:
            self.vpc_id, self.subnet_id = self._default(args)
        self.register_outputs({"vpcId": self.vpc_id, "subnetId": self.subnet_id})

    def _default(self, args: NetworkArgs) -> tuple[pulumi.Output[str], pulumi.Output[str]]:
        invoke = pulumi.InvokeOptions(parent=self)
        vpc = aws.ec2.get_vpc_output(default=True, opts=invoke)

        def filters(vpc_id: str) -> list[aws.ec2.GetSubnetsFilterArgsDict]:
            return [{"name": "vpc-id", "values": [vpc_id]}, {"name": "default-for-az", "values": ["true"]}]

        subnets = aws.ec2.get_subnets_output(
            filters=vpc.id.apply(filters),
            opts=invoke,
        )
        # Sorted so the choice is stable between runs (the API does not promise an order).
        return vpc.id, subnets.ids.apply(lambda ids: sorted(ids)[0])

    def _create(self, name: str, args: NetworkArgs) -> tuple[pulumi.Output[str], pulumi.Output[str]]:
        child = pulumi.ResourceOptions(parent=self)
        zone: pulumi.Input[str] = (
            args.availability_zone
            or aws.get_availability_zones_output(state="available", opts=pulumi.InvokeOptions(parent=self)).names[0]
        )
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
            cidr_block=args.vpc_cidr,
            availability_zone=zone,
            map_public_ip_on_launch=True,
            tags={**args.tags, "Name": f"{name}-public"},
            opts=child,
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
