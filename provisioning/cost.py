"""What a planned fleet costs per hour and per month, beside hosted CI per-minute prices. Pure.

On-demand prices are catalog list prices. Spot is not a price at all but a discount the
caller states (spot prices move hourly), so every spot figure is labelled an estimate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from provisioning.catalog import HOSTED_RATES, HostedRate
from provisioning.plan import Plan

HOURS_PER_MONTH = 730  # AWS's own convention: 24 x 365 / 12


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


@dataclass(frozen=True)
class FleetCost:
    hosts: tuple[HostCost, ...]
    spot_discount: float
    hosted: tuple[HostedRate, ...]

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
        }


def fleet_cost(plan: Plan, spot_discount: float, hosted: Sequence[HostedRate] = HOSTED_RATES) -> FleetCost:
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
    return FleetCost(tuple(hosts), spot_discount, tuple(hosted))
