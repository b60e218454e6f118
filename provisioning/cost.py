"""What a planned fleet costs per hour and per month, beside hosted CI per-minute prices. Pure.

On-demand prices are catalog list prices. Spot is not a price at all but a discount the
caller states (spot prices move hourly), so every spot figure is labelled an estimate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from provisioning.catalog import GP3_STORAGE, HOSTED_RATES, NLB_HOUR, PUBLIC_IPV4, HostedRate
from provisioning.jsonstyle import Keyed
from provisioning.plan import Plan

HOURS_PER_MONTH = 730  # AWS's own convention: 24 x 365 / 12
DAYS_PER_MONTH = HOURS_PER_MONTH / 24


@dataclass(frozen=True)
class HostCost:
    host: str
    instance_type: str
    arch: str
    vcpu: int
    usd_per_hour: float
    spot_usd_per_hour: float  # estimate: on-demand x (1 - discount)
    price_source: str
    price_as_of: str


def fixed_usd_per_month(hosts: int, pools: int, root_volume_gib: int) -> dict[str, float]:
    """What a fleet pays all month whether its hosts run or not: each host's gp3 disk and public
    IPv4 address (an Elastic IP with idle stop, billed while stopped too), each pool's NLB hour and
    its own public address."""
    return {
        "disks": round(hosts * root_volume_gib * GP3_STORAGE.usd, 2),
        "public_ipv4": round((hosts + pools) * PUBLIC_IPV4.usd * HOURS_PER_MONTH, 2),
        "load_balancers": round(pools * NLB_HOUR.usd * HOURS_PER_MONTH, 2),
    }


@dataclass(frozen=True)
class FleetCost:
    hosts: tuple[HostCost, ...]
    spot_discount: float
    hosted: tuple[HostedRate, ...]
    pools: int = 0
    root_volume_gib: int = 50
    spot: bool = False  # the fleet runs on spot: its headline is the spot estimate

    @property
    def fixed(self) -> dict[str, float]:
        return fixed_usd_per_month(len(self.hosts), self.pools, self.root_volume_gib)

    @property
    def priced_usd_per_hour(self) -> float:
        """The instances' rate the fleet is configured for: spot (estimate) or on-demand."""
        return self.spot_usd_per_hour if self.spot else self.usd_per_hour

    @property
    def total_usd_per_month(self) -> float:
        """The headline: instances as configured, all month, plus disks, addresses and balancers."""
        return round(self.priced_usd_per_hour * HOURS_PER_MONTH + sum(self.fixed.values()), 2)

    @property
    def usd_per_hour(self) -> float:
        return round(sum(h.usd_per_hour for h in self.hosts), 5)

    @property
    def spot_usd_per_hour(self) -> float:
        return round(sum(h.spot_usd_per_hour for h in self.hosts), 5)

    def per_month(self, per_hour: float) -> float:
        return round(per_hour * HOURS_PER_MONTH, 2)

    def to_dict(self) -> dict[str, object]:
        return {
            "hosts": [h.__dict__ for h in self.hosts],
            "usd_per_hour": self.usd_per_hour,
            "usd_per_month": self.per_month(self.usd_per_hour),
            "spot_discount": self.spot_discount,
            "spot_is_estimate": True,
            "spot_usd_per_hour": self.spot_usd_per_hour,
            "spot_usd_per_month": self.per_month(self.spot_usd_per_hour),
            "hours_per_month": HOURS_PER_MONTH,
            "hosted": [{**r.__dict__, "usd_per_hour": round(r.usd_per_minute * 60, 4)} for r in self.hosted],
            "spot": self.spot,
            "fixed_usd_per_month": self.fixed,
            "total_usd_per_month": self.total_usd_per_month,
        }


def fleet_cost(
    plan: Plan,
    spot_discount: float,
    hosted: Sequence[HostedRate] = HOSTED_RATES,
    root_volume_gib: int = 50,
    spot: bool = False,
) -> FleetCost:
    if not 0 <= spot_discount < 1:
        raise ValueError(f"spot discount must be at least 0 and below 1, not {spot_discount}")
    hosts = []
    for host in plan.hosts:
        t = plan.instance_types[host.name]
        hosts.append(
            HostCost(
                host.name,
                t.name,
                t.arch,
                t.vcpu,
                t.usd_per_hour,
                round(t.usd_per_hour * (1 - spot_discount), 5),
                t.price_source,
                t.price_as_of,
            )
        )
    return FleetCost(tuple(hosts), spot_discount, tuple(hosted), len(plan.pools), root_volume_gib, spot)


@dataclass(frozen=True)
class UsageCost:
    """A month of the fleet at a given use: always on, with idle stop, and on hosted runners.

    Idle stop assumes the day's builds come as one block: hosts run the build hours plus one
    idle tail a day (spread-out builds pay a tail per pause longer than the limit). Disks and
    public IPv4 addresses are paid all month either way: a fleet that stops keeps its
    addresses on Elastic IPs, which are billed while their instance is stopped too.
    """

    build_hours_per_day: float
    idle_stop_minutes: int
    running_hours_per_month: float
    always_on_usd_per_month: float
    idle_stop_usd_per_month: float
    hosted_usd_per_month: tuple[tuple[str, float], ...]  # one runner building for as many hours

    def to_dict(self) -> dict[str, object]:
        return {**self.__dict__, "hosted_usd_per_month": Keyed(self.hosted_usd_per_month)}  # by runner name


def usage_cost(cost: FleetCost, root_volume_gib: int, build_hours_per_day: float, idle_stop_minutes: int) -> UsageCost:
    if not 0 <= build_hours_per_day <= 24:
        raise ValueError(f"build hours per day must be between 0 and 24, not {build_hours_per_day}")
    all_month = sum(fixed_usd_per_month(len(cost.hosts), cost.pools, root_volume_gib).values())
    tail = idle_stop_minutes / 60 if build_hours_per_day else 0.0
    running = min(24.0, build_hours_per_day + tail) * DAYS_PER_MONTH
    build_minutes = build_hours_per_day * 60 * DAYS_PER_MONTH
    return UsageCost(
        build_hours_per_day,
        idle_stop_minutes,
        round(running, 1),
        round(cost.priced_usd_per_hour * HOURS_PER_MONTH + all_month, 2),
        round(cost.priced_usd_per_hour * running + all_month, 2),
        tuple((rate.name, round(rate.usd_per_minute * build_minutes, 2)) for rate in cost.hosted),
    )
