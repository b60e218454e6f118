"""What the account must allow before ``up --target aws`` creates anything: the plan's instance
types offered in the zone, Elastic IPs and vCPUs within the account's quotas. Without it, up
fails half-way with instances already running (and billed). One check each; a failed one names
the limit and the fix.

Quotas: vCPUs of running On-Demand (or Spot) standard instances, Service Quotas codes
L-1216C47A and L-34B43A08 (the EC2 guide's "On-Demand Instance quotas"); Elastic IPs, the
account attribute ``vpc-max-elastic-ips`` (DescribeAccountAttributes). What the fleet itself
already runs is not counted twice: an ``up`` of an existing fleet needs only what it adds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from provisioning.checks import Check, failed, passed
from provisioning.cloud.ami import IMAGE_SOURCES, describe_images_args
from provisioning.plan import Plan
from provisioning.settings import NAMESPACE, Settings
from provisioning.targets.ec2power import aws_error_code, stack_hosts

STANDARD_FAMILIES = ("a", "c", "d", "h", "i", "m", "r", "t", "z")  # the quota's instance families
VCPU_QUOTAS = {
    False: ("L-1216C47A", "Running On-Demand Standard instances"),
    True: ("L-34B43A08", "All Standard Spot Instance Requests"),
}
NODE = "aws"
QUOTA_READ = "allow servicequotas:GetServiceQuota to have it checked; up goes on without it"
RUNNING = ("pending", "running")


@dataclass(frozen=True)
class Needs:
    """What the plan asks of the account."""

    types: Mapping[str, int]  # instance type -> hosts of it
    vcpus: int
    spot: bool
    elastic_ips: int  # one per host with idle stop (it keeps the host's address across stops)
    zone: str  # the zone the stack is pinned to ("" before the first up)
    image: str = "debian-12"  # the image setting: whose AMIs the hosts boot
    arches: Mapping[str, str] = field(default_factory=dict)  # instance type -> its CPU (amd64, arm64)

    @classmethod
    def of(cls, plan: Plan, settings: Settings) -> Needs:
        types = Counter(t.name for t in plan.instance_types.values())
        vcpus = sum(t.vcpu for t in plan.instance_types.values())
        addresses = len(plan.instance_types) if settings.idle_stop_minutes > 0 else 0
        arches = {t.name: t.arch for t in plan.instance_types.values()}
        return cls(dict(types), vcpus, settings.spot, addresses, settings.availability_zone, settings.image, arches)


def account_checks(
    ec2: Any, quotas: Any, needs: Needs, stack: str, fleet_id: str, sdk_errors: tuple[type[Exception], ...]
) -> list[Check]:
    """Each of the account's limits against the plan; a failed one stops up before anything is made."""
    own = stack_hosts(ec2, stack, fleet_id) if fleet_id else {}
    images, amis = image_check(ec2, needs)
    return [
        offering_check(ec2, needs),
        address_check(ec2, needs, fleet_id),
        vcpu_check(ec2, quotas, needs, {h.instance_id for h in own.values()}, sdk_errors),
        images,
        permission_check(ec2, needs, amis, stack, sdk_errors),
    ]


def image_check(ec2: Any, needs: Needs) -> tuple[Check, dict[str, str]]:
    """The AMI each CPU of the plan boots, as the program looks it up (its publisher's account,
    name and architecture); none in the region would stop up after some resources were made."""
    found: dict[str, str] = {}
    for arch in sorted(set(needs.arches.values())):
        images = ec2.describe_images(**describe_images_args(needs.image, arch))["Images"]
        if images:
            found[arch] = max(images, key=lambda i: i.get("CreationDate", ""))["ImageId"]
    missing = sorted(set(needs.arches.values()) - set(found))
    if missing:
        owner = IMAGE_SOURCES[needs.image].owner
        detail = f"no {needs.image} image for {', '.join(missing)} from its publisher (account {owner}) in the region"
        return failed(
            NODE, "image", detail, "set image to one published here (debian-12, ubuntu-24.04) or use another region"
        ), found
    return passed(NODE, "image", ", ".join(f"{arch} boots {ami}" for arch, ami in found.items()) or "no host"), found


# Error codes of a call these credentials may not make; DryRunOperation: they may.
DENIED = frozenset({"UnauthorizedOperation", "AccessDenied", "AccessDeniedException", "AuthFailure"})


def permission_check(
    ec2: Any, needs: Needs, amis: Mapping[str, str], stack: str, sdk_errors: tuple[type[Exception], ...]
) -> Check:
    """The EC2 calls up makes, each as a DryRun (EC2 answers DryRunOperation when the credentials
    may make it, UnauthorizedOperation when not; nothing is made either way). IAM and the load
    balancer API have no dry run: their permissions are listed in the README."""
    tags = [{"ResourceType": "instance", "Tags": [{"Key": f"{NAMESPACE}:stack", "Value": stack}]}]
    name = f"buildfleet-{stack}-preflight"
    calls: list[tuple[str, Callable[[], object]]] = [
        (
            f"ec2:RunInstances ({kind})",
            partial(
                ec2.run_instances,
                ImageId=amis[arch],
                InstanceType=kind,
                MinCount=1,
                MaxCount=1,
                TagSpecifications=tags,
                DryRun=True,
            ),
        )
        for kind, arch in sorted(needs.arches.items())
        if arch in amis
    ]
    calls.append(
        (
            "ec2:CreateSecurityGroup",
            partial(ec2.create_security_group, GroupName=name, Description="dry run", DryRun=True),
        )
    )
    calls.append(
        (
            "ec2:ImportKeyPair",
            partial(ec2.import_key_pair, KeyName=name, PublicKeyMaterial=_a_public_key(), DryRun=True),
        )
    )
    if needs.elastic_ips:
        calls.append(("ec2:AllocateAddress", partial(ec2.allocate_address, Domain="vpc", DryRun=True)))
    denied, unchecked = [], []
    for action, call in calls:
        try:
            call()
            unchecked.append(f"{action} (answered as if made: the endpoint ignores DryRun)")
        except sdk_errors as error:
            code = aws_error_code(error) or type(error).__name__
            if code in DENIED:
                denied.append(action)
            elif code != "DryRunOperation":
                unchecked.append(f"{action} ({code})")
    if denied:
        fix = "allow them for these credentials (README: Quick start: AWS, what the account must allow)"
        return failed(NODE, "permissions", f"these credentials may not make {', '.join(denied)}", fix)
    checked = len(calls) - len(unchecked)
    if unchecked:
        detail = f"{checked} of {len(calls)} calls allowed (dry run); not checked: {'; '.join(unchecked)}"
        return Check(NODE, "permissions", False, detail, "see the detail: up may meet a refusal there", warning=True)
    return passed(NODE, "permissions", f"{checked} EC2 calls allowed (dry run): {', '.join(a for a, _ in calls)}")


def _a_public_key() -> bytes:
    """An OpenSSH public key made for the dry run alone (EC2 checks the key's format first)."""
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)


def offering_check(ec2: Any, needs: Needs) -> Check:
    """Each instance type must be offered in the pinned zone, or all of them in some zone."""
    offered: dict[str, set[str]] = {}
    pages = ec2.get_paginator("describe_instance_type_offerings").paginate(
        LocationType="availability-zone", Filters=[{"Name": "instance-type", "Values": sorted(needs.types)}]
    )
    for page in pages:
        for offering in page["InstanceTypeOfferings"]:
            offered.setdefault(offering["Location"], set()).add(offering["InstanceType"])
    types = ", ".join(sorted(needs.types))
    if needs.zone:
        missing = sorted(set(needs.types) - offered.get(needs.zone, set()))
        if not missing:
            return passed(NODE, "offerings", f"{types} offered in {needs.zone} (the stack's zone)")
        return failed(
            NODE,
            "offerings",
            f"{', '.join(missing)} not offered in {needs.zone}, the zone the stack's hosts are in",
            "choose another instance type for that role, or take the fleet down and up again in another zone",
        )
    zones = sorted(z for z, found in offered.items() if set(needs.types) <= found)
    if zones:
        return passed(NODE, "offerings", f"{types} offered together in {', '.join(zones)}")
    by_type = {t: sorted(z for z, found in offered.items() if t in found) for t in sorted(needs.types)}
    where = "; ".join(f"{t} in {', '.join(z) or 'no zone'}" for t, z in by_type.items())
    return failed(
        NODE, "offerings", f"no zone offers every instance type of the plan: {where}", "choose types offered together"
    )


def address_check(ec2: Any, needs: Needs, fleet_id: str) -> Check:
    if not needs.elastic_ips:
        return passed(NODE, "elastic IPs", "none needed (idle stop is off)")
    attributes = ec2.describe_account_attributes(AttributeNames=["vpc-max-elastic-ips"])["AccountAttributes"]
    quota = int(attributes[0]["AttributeValues"][0]["AttributeValue"])
    addresses = ec2.describe_addresses()["Addresses"]
    own = sum(1 for a in addresses if fleet_id and _tag(a, f"{NAMESPACE}:fleet-id") == fleet_id)
    wanted = needs.elastic_ips - own
    detail = f"{wanted} more needed (one per host, for idle stop); the region has {len(addresses)} of {quota}"
    if len(addresses) + wanted <= quota:
        return passed(NODE, "elastic IPs", detail)
    fix = "release some, ask for more (Service Quotas: EC2 L-0263D0A3), or set idleStopMinutes to 0"
    return failed(NODE, "elastic IPs", detail, fix)


def vcpu_check(ec2: Any, quotas: Any, needs: Needs, own: set[str], sdk_errors: tuple[type[Exception], ...]) -> Check:
    code, name = VCPU_QUOTAS[needs.spot]
    try:
        quota = float(quotas.get_service_quota(ServiceCode="ec2", QuotaCode=code)["Quota"]["Value"])
    except sdk_errors as error:  # the quota cannot be read (no servicequotas:GetServiceQuota): no verdict
        why = f"{type(error).__name__}: {str(error)[:160]}"
        return Check(NODE, "vCPU quota", False, f"{name} ({code}) not read: {why}", QUOTA_READ, warning=True)
    used, mine = _running_standard_vcpus(ec2, needs.spot, own)
    wanted = needs.vcpus - mine
    detail = f"{wanted} more vCPUs of '{name}' needed; the region runs {used} of {quota:g}"
    if used + wanted <= quota:
        return passed(NODE, "vCPU quota", detail)
    return failed(NODE, "vCPU quota", detail, f"ask for more (Service Quotas: EC2 {code}) or plan smaller instances")


def _running_standard_vcpus(ec2: Any, spot: bool, own: set[str]) -> tuple[int, int]:
    """vCPUs of the region's running standard instances of this market, and how many are the fleet's."""
    sizes: dict[str, int] = {}
    used = mine = 0
    filters = [{"Name": "instance-state-name", "Values": list(RUNNING)}]
    for page in ec2.get_paginator("describe_instances").paginate(Filters=filters):
        for instance in (i for r in page["Reservations"] for i in r["Instances"]):
            kind = instance["InstanceType"]
            if not kind.startswith(STANDARD_FAMILIES) or (instance.get("InstanceLifecycle") == "spot") != spot:
                continue
            if kind not in sizes:
                (found,) = ec2.describe_instance_types(InstanceTypes=[kind])["InstanceTypes"]
                sizes[kind] = int(found["VCpuInfo"]["DefaultVCpus"])
            used += sizes[kind]
            mine += sizes[kind] if instance["InstanceId"] in own else 0
    return used, mine


def _tag(resource: Mapping[str, Any], key: str) -> str:
    return next((t["Value"] for t in resource.get("Tags", []) if t["Key"] == key), "")
