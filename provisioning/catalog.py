"""EC2 instance types a builder fleet is made of: arch, size, AArch32 support and price.

Pure data plus look-ups. Prices are on-demand list prices (us-east-1, Linux, shared
tenancy) from the AWS EC2 on-demand pricing page; AArch32 support comes from the AWS
Graviton Technical Guide ("32bit Backward Compatibility": Graviton2 and Graviton3
userspace only, Graviton4 none). Both are facts about the world, so each entry carries
its source and date and users can add their own types through configuration.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from provisioning.errors import CatalogError

PRICE_SOURCE = "AWS EC2 on-demand pricing, us-east-1, Linux (aws.amazon.com/ec2/pricing/on-demand)"
PRICE_AS_OF = "2026-06"
PRICED_REGION = "us-east-1"  # every price here is this region's; others differ and are not guessed
ARCHES = ("amd64", "arm64")


@dataclass(frozen=True)
class InstanceType:
    """One EC2 instance type as the planner and the cost report see it."""

    name: str
    arch: str
    vcpu: int
    memory_gib: float
    aarch32: bool
    usd_per_hour: float
    processor: str
    price_source: str = PRICE_SOURCE
    price_as_of: str = PRICE_AS_OF

    @property
    def family(self) -> str:
        return self.name.split(".", 1)[0]


@dataclass(frozen=True)
class _Family:
    arch: str
    processor: str
    aarch32: bool
    gib_per_vcpu: float
    usd_xlarge: float  # price of the 4-vCPU size; sizes scale linearly within a family
    sizes: tuple[str, ...] = ("large", "xlarge", "2xlarge", "4xlarge")


_VCPU = {"large": 2, "xlarge": 4, "2xlarge": 8, "4xlarge": 16}

_FAMILIES: dict[str, _Family] = {
    "c6i": _Family("amd64", "Intel Xeon (Ice Lake)", False, 2, 0.17),
    "c7i": _Family("amd64", "Intel Xeon (Sapphire Rapids)", False, 2, 0.1785),
    "c7a": _Family("amd64", "AMD EPYC (Genoa)", False, 2, 0.20527),
    "m6i": _Family("amd64", "Intel Xeon (Ice Lake)", False, 4, 0.192),
    "m7i": _Family("amd64", "Intel Xeon (Sapphire Rapids)", False, 4, 0.2016),
    "c6g": _Family("arm64", "AWS Graviton2", True, 2, 0.136),
    "m6g": _Family("arm64", "AWS Graviton2", True, 4, 0.154),
    "t4g": _Family("arm64", "AWS Graviton2 (burstable)", True, 4, 0.1344, ("large", "xlarge", "2xlarge")),
    "c7g": _Family("arm64", "AWS Graviton3", True, 2, 0.145),
    "m7g": _Family("arm64", "AWS Graviton3", True, 4, 0.1632),
    "c8g": _Family("arm64", "AWS Graviton4", False, 2, 0.15952),
    "m8g": _Family("arm64", "AWS Graviton4", False, 4, 0.17952),
}


def _builtin_types() -> dict[str, InstanceType]:
    types = {}
    for family_name, family in _FAMILIES.items():
        for size in family.sizes:
            vcpu = _VCPU[size]
            name = f"{family_name}.{size}"
            types[name] = InstanceType(
                name=name,
                arch=family.arch,
                vcpu=vcpu,
                memory_gib=family.gib_per_vcpu * vcpu,
                aarch32=family.aarch32,
                usd_per_hour=round(family.usd_xlarge * vcpu / 4, 5),
                processor=family.processor,
            )
    return types


def parse_custom_type(spec: str) -> InstanceType:
    """Read ``NAME=ARCH,VCPU,MEMORY_GIB,USD_PER_HOUR[,aarch32]`` (config ``customInstanceTypes``)."""
    usage = "expected NAME=ARCH,VCPU,MEMORY_GIB,USD_PER_HOUR[,aarch32], e.g. c7gd.xlarge=arm64,4,8,0.1814,aarch32"
    name, sep, rest = str(spec).partition("=")
    fields = [f.strip() for f in rest.split(",")]
    if not sep or not name.strip() or len(fields) not in (4, 5):
        raise CatalogError(f"customInstanceTypes entry {spec!r}: {usage}")
    arch, vcpu, memory, price, *flag = fields
    if arch not in ARCHES:
        raise CatalogError(f"customInstanceTypes entry {spec!r}: arch must be one of {', '.join(ARCHES)}")
    if flag and flag != ["aarch32"]:
        raise CatalogError(f"customInstanceTypes entry {spec!r}: the optional fifth field can only be 'aarch32'")
    if flag and arch != "arm64":
        raise CatalogError(f"customInstanceTypes entry {spec!r}: only arm64 types can have aarch32")
    try:
        numbers = int(vcpu), float(memory), float(price)
    except ValueError:
        raise CatalogError(f"customInstanceTypes entry {spec!r}: {usage}") from None
    if min(numbers) <= 0:
        raise CatalogError(f"customInstanceTypes entry {spec!r}: vCPU, memory and price must be positive")
    return InstanceType(
        name=name.strip(),
        arch=arch,
        vcpu=numbers[0],
        memory_gib=numbers[1],
        aarch32=bool(flag),
        usd_per_hour=numbers[2],
        processor="custom",
        price_source="buildfleet:customInstanceTypes",
        price_as_of="as configured",
    )


@dataclass(frozen=True)
class Catalog:
    """Known instance types by name: the built-in list plus any declared in config."""

    types: Mapping[str, InstanceType] = field(default_factory=_builtin_types)

    def with_custom(self, specs: Iterable[str]) -> Catalog:
        merged = dict(self.types)
        for spec in specs:
            custom = parse_custom_type(spec)
            merged[custom.name] = custom
        return Catalog(merged)

    def lookup(self, name: str) -> InstanceType:
        try:
            return self.types[name]
        except KeyError:
            pass
        close = difflib.get_close_matches(str(name), list(self.types), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise CatalogError(
            f"unknown instance type {name!r}{hint}; known types: {', '.join(sorted(self.types))}. "
            "Declare others with buildfleet:customInstanceTypes "
            "(NAME=ARCH,VCPU,MEMORY_GIB,USD_PER_HOUR[,aarch32])"
        )


@dataclass(frozen=True)
class HostedRate:
    """A hosted CI per-minute price users compare a fleet with: data, with its source."""

    name: str
    arch: str
    vcpu: int
    usd_per_minute: float
    source: str
    as_of: str


# GitHub-hosted standard runners for private repositories (public repositories pay nothing);
# GitHub bills each job's minutes rounded up to a whole minute.
HOSTED_RATES = (
    HostedRate(
        "GitHub Actions Linux 2-core (x64)",
        "amd64",
        2,
        0.006,
        "docs.github.com/en/billing/reference/actions-runner-pricing",
        "read 2026-11-26",
    ),
    HostedRate(
        "GitHub Actions Linux 2-core (arm64)",
        "arm64",
        2,
        0.005,
        "docs.github.com/en/billing/reference/actions-runner-pricing",
        "read 2026-11-26",
    ),
)


@dataclass(frozen=True)
class UsagePrice:
    """A price that runs while a host exists or runs, beside its instance price."""

    usd: float
    per: str  # what the price is for
    source: str
    as_of: str


# Billed while the volume exists, running or stopped (us-east-1).
GP3_STORAGE = UsagePrice(0.08, "GiB-month of gp3", "aws.amazon.com/ebs/pricing", "read 2026-11-26")
# Billed while the instance runs: a stopped instance gives its auto-assigned address back.
PUBLIC_IPV4 = UsagePrice(0.005, "public IPv4 address-hour", "aws.amazon.com/vpc/pricing", "read 2026-11-26")
# An internet-facing Network Load Balancer per pool (aws pools): its hour, billed while it exists;
# traffic adds NLCU-hours ($0.006 each) that depend on use and are not priced here.
NLB_HOUR = UsagePrice(
    0.0225,
    "Network Load Balancer-hour",
    "aws.amazon.com/elasticloadbalancing/pricing (as summarised by third parties, read 2026-12-02)",
    "read 2026-12-02",
)
