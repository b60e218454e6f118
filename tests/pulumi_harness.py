"""Runs the real Pulumi program (``__main__.py``) under Pulumi's mock runtime.

The official unit-test method: ``pulumi.runtime.set_mocks`` replaces the engine and the
AWS provider, so every resource registration and data-source call is recorded here.
Mocks echo inputs back as outputs and fake the few values AWS would compute.
"""

from __future__ import annotations

import runpy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi

from provisioning.settings import pulumi_config_value

PROJECT_DIR = Path(__file__).resolve().parent.parent
MAIN = PROJECT_DIR / "__main__.py"
STACK = "test"


@dataclass
class Registered:
    type: str
    name: str
    inputs: dict[str, Any]
    urn: str


def _openssh_ed25519() -> dict[str, str]:
    """What pulumi-tls computes for an ED25519 key: a real pair, in OpenSSH form."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return {"privateKeyOpenssh": private, "publicKeyOpenssh": public.decode() + "\n"}


@dataclass
class RecordingMocks(pulumi.runtime.Mocks):
    resources: list[Registered] = field(default_factory=list)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    parents: dict[str, str] = field(default_factory=dict)  # resource name -> parent's type
    ignored: dict[str, list[str]] = field(default_factory=dict)  # resource name -> its ignore_changes
    # The "account": a default VPC with default subnets in us-east-1a..c; us-east-1a lacks
    # Graviton c7g (as some real AZs lack a type), so the first AZ by name does not fit.
    default_vpcs: list[str] = field(default_factory=lambda: ["vpc-default"])
    subnet_zones: tuple[str, ...] = ("us-east-1a", "us-east-1b", "us-east-1c")
    offerings: dict[str, list[str]] = field(
        default_factory=lambda: {
            "us-east-1a": ["c7i.xlarge", "c7i.2xlarge", "m7i.2xlarge"],
            "us-east-1b": ["c7i.xlarge", "c7g.xlarge", "c8g.2xlarge", "c7i.2xlarge", "m7i.2xlarge"],
            "us-east-1c": ["c7i.xlarge", "c7g.xlarge", "c8g.2xlarge", "m7i.2xlarge"],
        }
    )

    def record_options(self, args: pulumi.ResourceTransformationArgs) -> None:
        """What the engine gets beside the inputs: each resource's parent and ignore_changes."""
        parent = args.opts.parent if args.opts else None
        self.parents[args.name] = type(parent).__name__ if parent is not None else ""
        self.ignored[args.name] = list(args.opts.ignore_changes or []) if args.opts else []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        urn = f"urn:pulumi:{STACK}::buildfleet::{args.typ}::{args.name}"
        self.resources.append(Registered(args.typ, args.name, dict(args.inputs), urn))
        outputs = dict(args.inputs)
        index = len(self.resources)
        if args.typ == "aws:ec2/instance:Instance":
            # Documentation ranges (RFC 5737): never contacted, only reported.
            outputs.update(publicIp=f"203.0.113.{index}", privateIp=f"10.0.0.{index}")
        if args.typ == "aws:ec2/eip:Eip":
            outputs.update(publicIp=f"192.0.2.{index}")  # another documentation range: an Elastic IP
        if args.typ == "tls:index/privateKey:PrivateKey":
            outputs.update(_openssh_ed25519())
        if args.typ == "aws:ec2/keyPair:KeyPair":
            outputs.setdefault("keyName", args.name)
        if args.typ in ("aws:lb/loadBalancer:LoadBalancer", "aws:lb/targetGroup:TargetGroup"):
            outputs.setdefault("arn", f"arn:aws:elasticloadbalancing:us-east-1:123456789012:{args.name}")
        if args.typ == "aws:lb/loadBalancer:LoadBalancer":
            outputs.setdefault("dnsName", f"{args.name}-0123456789.elb.us-east-1.amazonaws.com")
        if args.typ == "aws:iam/policy:Policy":
            outputs.setdefault("arn", f"arn:aws:iam::123456789012:policy/{args.name}")
        if args.typ == "aws:iam/role:Role":
            outputs.update(arn=f"arn:aws:iam::123456789012:role/{args.name}", name=args.name)
        if args.typ == "aws:iam/openIdConnectProvider:OpenIdConnectProvider":
            issuer = args.inputs["url"].removeprefix("https://")
            outputs.setdefault("arn", f"arn:aws:iam::123456789012:oidc-provider/{issuer}")
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs):
        self.calls.append((args.token, dict(args.args)))
        if args.token == "aws:ec2/getAmi:getAmi":
            arch = next(f["values"][0] for f in args.args["filters"] if f["name"] == "architecture")
            return {"id": f"ami-{arch}", "architecture": arch}
        if args.token == "aws:ec2/getVpcs:getVpcs":
            return {"ids": self.default_vpcs}
        if args.token == "aws:ec2/getSubnets:getSubnets":
            zone = next(f["values"][0] for f in args.args["filters"] if f["name"] == "availability-zone")
            return {"ids": [f"subnet-{zone}-b", f"subnet-{zone}-a"] if zone in self.subnet_zones else []}
        if args.token == "aws:ec2/getInstanceTypeOfferings:getInstanceTypeOfferings":
            wanted = next(f["values"] for f in args.args["filters"] if f["name"] == "instance-type")
            pairs = [(zone, t) for zone, types in self.offerings.items() for t in types if t in wanted]
            return {
                "locations": [z for z, _ in pairs],
                "instanceTypes": [t for _, t in pairs],
                "locationTypes": ["availability-zone"] * len(pairs),
            }
        if args.token == "aws:index/getPartition:getPartition":
            return {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws", "reverseDnsPrefix": "com.amazonaws"}
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": "123456789012", "arn": "arn:aws:iam::123456789012:user/ops", "id": "123456789012",
                    "userId": "AIDAEXAMPLE"}  # fmt: skip
        if args.token == "aws:index/getRegion:getRegion":
            endpoint = "ec2.us-east-1.amazonaws.com"
            return {"region": "us-east-1", "name": "us-east-1", "id": "us-east-1", "endpoint": endpoint,
                    "description": "US East (N. Virginia)"}  # fmt: skip
        if args.token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            return {"names": ["us-east-1a", "us-east-1b"]}
        return {}

    def of_type(self, typ: str) -> list[Registered]:
        return [r for r in self.resources if r.type == typ]


@dataclass
class ProgramRun:
    mocks: RecordingMocks
    outputs: dict[str, Any]
    secret: set[str] = field(default_factory=set)  # the outputs the program marked secret


def run_program(
    config: dict[str, Any], mocks: RecordingMocks | None = None, secrets: dict[str, str] | None = None
) -> ProgramRun:
    """Run ``__main__.py`` with ``buildfleet:`` config (``secrets``: keys set as ``config set
    --secret`` sets them); return what it registered and exported, and which exports are secret."""
    mocks = mocks if mocks is not None else RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project="buildfleet", stack=STACK, preview=False)
    values = {f"buildfleet:{k}": pulumi_config_value(v) for k, v in {**config, **(secrets or {})}.items()}
    pulumi.runtime.set_all_config(values, [f"buildfleet:{k}" for k in secrets or {}])
    exported: dict[str, Any] = {}
    secret: set[str] = set()

    @pulumi.runtime.test
    def program():
        pulumi.runtime.register_stack_transformation(mocks.record_options)
        runpy.run_path(str(MAIN), run_name="__main__")
        stack_outputs = pulumi.runtime.get_root_resource().outputs
        flags = {k: pulumi.Output.from_input(pulumi.Output.from_input(v).is_secret()) for k, v in stack_outputs.items()}
        marked = pulumi.Output.from_input(flags).apply(lambda f: secret.update(k for k, on in f.items() if on))
        return pulumi.Output.all(pulumi.Output.from_input(stack_outputs).apply(exported.update), marked)

    program()
    return ProgramRun(mocks, exported, secret)
