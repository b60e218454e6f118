"""One bench on a fleet: which platforms, the runs planned for them, each host's own builder,
the measured runs and what they cost. The CLI hands a ``BenchFleet`` down and renders what
comes back; nothing here prints."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from provisioning.bench.report import Measured
from provisioning.bench.runner import bench, host_builders
from provisioning.bench.runs import Run
from provisioning.builder.builder import Buildx
from provisioning.builder.nodes import TLSFiles
from provisioning.builder.preflight import check_emulation
from provisioning.builder.sample import SampleSources
from provisioning.catalog import PRICE_AS_OF, PRICE_SOURCE, InstanceType
from provisioning.errors import BuildfleetError
from provisioning.inventory import Inventory
from provisioning.plan import plan_fleet
from provisioning.platforms import Platform, parse_platforms
from provisioning.remote.ssh import connect
from provisioning.settings import Settings
from provisioning.state import FleetState

Status = Callable[[str], AbstractContextManager]  # "what runs now", shown while the body runs
Step = Callable[[Run, int], None]  # a run starting, and how many ran before it


@dataclass(frozen=True)
class BenchFleet:
    """What a bench reads of the fleet: its hosts, state, builder and the sample's sources."""

    name: str
    inventory: Inventory
    state: FleetState
    builder: str  # the fleet builder's name: the bench's own builders are named after it
    buildx: Buildx
    samples: Path  # the directory holding the sample's userlands and busybox

    def sources(self, platforms: Sequence[Platform]) -> SampleSources:
        return SampleSources.from_artifacts(self.samples, platforms)

    @contextmanager
    def host_builders(self, runs: Sequence[Run]) -> Iterator[dict[str, str]]:
        """host -> a builder whose one node is that host, removed when the bench is done."""
        tls = TLSFiles.in_state(self.state.root / "tls")
        with host_builders(self.builder, self.inventory, tls, runs, self.state.root / "builders", self.buildx) as made:
            yield made


def chosen_platforms(fleet: BenchFleet, asked: Sequence[str]) -> tuple[Platform, ...]:
    """The platforms asked for (default: every planned one); one the fleet does not plan is refused."""
    placed = fleet.inventory.platforms
    platforms = parse_platforms(asked) if asked else parse_platforms(placed)
    for platform in platforms:
        if str(platform) not in placed:
            raise BuildfleetError(f"{platform} is not planned on fleet {fleet.name!r} (planned: {', '.join(placed)})")
    return platforms


def measure_fleet(fleet: BenchFleet, runs: Sequence[Run], repeats: int, step: Step) -> list[Measured]:
    """Each planned run (bench.runs.plan_runs) on its host's own builder, ``repeats`` times
    without the cache."""
    sources = fleet.sources(parse_platforms(r.platform for r in runs))
    check_emulation(fleet.inventory, lambda host: connect(host, fleet.state))
    with fleet.host_builders(runs) as builders:
        return bench(fleet.buildx, builders, runs, sources, repeats, step)


def catalog_prices(settings: Settings, inventory: Inventory) -> tuple[dict[str, InstanceType], str]:
    """host -> the catalog instance type it is priced as, and the note saying how."""
    catalog = settings.catalog
    aws_plan = plan_fleet(settings)
    by_role = {h.role: aws_plan.instance_types[h.name] for h in aws_plan.hosts if h.name in aws_plan.instance_types}
    prices, stand_ins = {}, []
    for host in inventory.hosts:
        if host.full_system_emulation:
            continue  # an emulated machine is no instance type: it is never priced as one
        if host.instance_type:
            prices[host.name] = catalog.lookup(host.instance_type)
        elif host.role in by_role:
            prices[host.name] = by_role[host.role]
            stand_ins.append(f"{host.name} as {by_role[host.role].name}")
    note = f"Prices: {PRICE_SOURCE}, as of {PRICE_AS_OF}."
    if stand_ins:
        note += (
            " This fleet has no instance types, so each host is priced as the instance type the AWS plan "
            f"gives its role ({', '.join(stand_ins)}): what these minutes would cost there, not a measurement "
            "of those machines."
        )
    return prices, note
