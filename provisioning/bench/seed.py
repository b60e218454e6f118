"""bench --baseline seed: the fleet beside the way the CircleCI post this project started
from builds — one node, every foreign platform under the distribution's qemu-user-static
with its default CPU — in one run, so the report shows the fleet's speed-up.

The seed node is the fleet's emulation host, its interpreters switched to the
distribution's for the baseline and put back afterwards (hosts.configure.distro_qemu):
the post's VM ran amd64 natively and everything else under QEMU, as that host does.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from provisioning.artifacts import ArtifactSource
from provisioning.bench.report import Measured
from provisioning.bench.runner import bench
from provisioning.bench.runs import Run
from provisioning.bench.session import BenchFleet, Status
from provisioning.builder.builder import Buildx
from provisioning.builder.sample import SampleSources, build_args
from provisioning.errors import BuildfleetError
from provisioning.hosts.configure import ConfigureOptions, distro_qemu
from provisioning.inventory import Inventory, InventoryHost
from provisioning.jsonstyle import dumps
from provisioning.placement import EMULATION
from provisioning.platforms import Platform, native_platforms

SEED_NOTE = "seed: one node, the distribution's qemu-user-static, default CPU"


def seed_host(inventory: Inventory) -> InventoryHost:
    for host in inventory.hosts:
        if host.role == EMULATION:
            return host
    raise BuildfleetError(
        "--baseline seed runs the post's one-node build on the fleet's emulation host, and this fleet has "
        "none (set emulationCount to 1)"
    )


def seed_runs(host: InventoryHost, platforms: Sequence[Platform], workloads: Sequence[str]) -> list[Run]:
    """Every workload and platform on the one seed node: its own CPU's natively, the rest under QEMU."""
    native = native_platforms(host.arch)
    return [Run(w, str(p), host.name, p in native, False, SEED_NOTE) for w in workloads for p in platforms]


def foreign_arches(host: InventoryHost, platforms: Sequence[Platform]) -> tuple[str, ...]:
    """The QEMU interpreters the seed node needs for ``platforms``."""
    native = native_platforms(host.arch)
    return tuple(sorted({p.qemu_arch for p in platforms if p not in native}))


@dataclass(frozen=True)
class Speedup:
    workload: str
    platform: str
    fleet_host: str
    fleet_mode: str
    fleet_s: float  # the workload's own median seconds where the fleet placed it
    seed_s: float  # the same on the seed node
    speedup: float  # seed / fleet

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _median(m: Measured) -> float:
    return round(statistics.median(m.seconds), 2)


def speedups(fleet: Sequence[Measured], seed: Sequence[Measured]) -> list[Speedup]:
    """Per workload and platform: the fleet's placed run against the seed node's run."""
    placed = {(m.run.workload, m.run.platform): m for m in fleet if m.run.placed}
    rows = []
    for s in seed:
        f = placed.get((s.run.workload, s.run.platform))
        if f is None:
            continue
        fleet_s, seed_s = _median(f), _median(s)
        ratio = round(seed_s / fleet_s, 2) if fleet_s else 0.0
        rows.append(Speedup(s.run.workload, s.run.platform, f.run.host, f.run.mode, fleet_s, seed_s, ratio))
    return rows


@dataclass(frozen=True)
class WholeBuild:
    """The same multi-platform build (the sample, compile stage uncached) through each."""

    platforms: int
    fleet_s: float
    seed_s: float

    @property
    def speedup(self) -> float:
        return round(self.seed_s / self.fleet_s, 2) if self.fleet_s else 0.0

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "speedup": self.speedup}


@dataclass(frozen=True)
class SeedComparison:
    seed_node: str
    rows: tuple[Speedup, ...]
    whole: WholeBuild
    measured: tuple[Measured, ...]  # the seed node's own runs, raw
    interpreters: dict[str, str]  # what the seed node's kernel ran for each foreign platform, and QEMU's version

    def as_dict(self) -> dict[str, object]:
        return {
            "seed_node": self.seed_node,
            "how": SEED_NOTE,
            "interpreters": self.interpreters,
            "per_platform": [r.as_dict() for r in self.rows],
            "whole_build": self.whole.as_dict(),
            "seed_seconds": [
                {"workload": m.run.workload, "platform": m.run.platform, "seconds": list(m.seconds), "tool": m.tool}
                for m in self.measured
            ],
        }

    def markdown(self) -> str:
        lines = [
            f"# buildfleet vs the seed build ({SEED_NOTE}, on {self.seed_node})",
            "",
            "| workload | platform | fleet node | fleet s | seed s | speed-up |",
            "| --- | --- | --- | ---: | ---: | ---: |",
            *(
                f"| {r.workload} | {r.platform} | {r.fleet_host} ({r.fleet_mode}) | {r.fleet_s} | {r.seed_s} "
                f"| {r.speedup}× |"
                for r in self.rows
            ),
            "",
            "Seed interpreters: " + ", ".join(f"{k} {v}" for k, v in self.interpreters.items()) + ".",
            "",
            f"Whole {self.whole.platforms}-platform build (wall seconds, compile stage uncached): fleet "
            f"{self.whole.fleet_s}, seed {self.whole.seed_s}, speed-up {self.whole.speedup}×.",
        ]
        return "\n".join(lines) + "\n"

    def write(self, directory: Path) -> dict[str, Path]:
        directory.mkdir(parents=True, exist_ok=True)
        files = {"seed_md": directory / "baseline-seed.md", "seed_json": directory / "baseline-seed.json"}
        files["seed_md"].write_text(self.markdown())
        files["seed_json"].write_text(dumps(self.as_dict(), indent=2) + "\n")
        return files


def timed_build(buildx: Buildx, builder: str, sources: SampleSources, platforms: Sequence[Platform]) -> float:
    """Seconds for the sample's multi-platform build through ``builder``, after one untimed build
    that leaves every context and userland cached on its nodes (only the compile stage reruns)."""
    args = build_args(builder, platforms, "type=cacheonly", sources)
    buildx.run(args)
    start = time.monotonic()
    buildx.run(args)
    return round(time.monotonic() - start, 2)


def compare(
    fleet: BenchFleet,
    platforms: Sequence[Platform],
    workloads: Sequence[str],
    repeats: int,
    measured: Sequence[Measured],
    qemu: tuple[ArtifactSource, ConfigureOptions],
    status: Status,
) -> SeedComparison:
    """The seed's one-node build beside the fleet: the same workloads on the emulation host with
    the distribution's QEMU (``qemu``: what configure puts back afterwards), and the same
    multi-platform build through each."""
    host = seed_host(fleet.inventory)
    runs = seed_runs(host, platforms, workloads)
    sources = fleet.sources(platforms)
    with status("the multi-platform build through the fleet (a warm-up, then timed)"):
        fleet_s = timed_build(fleet.buildx, fleet.builder, sources, platforms)
    arches = foreign_arches(host, platforms)
    artifacts, options = qemu
    with (
        status(f"{host.name}: the distribution's QEMU for {', '.join(arches)}; the seed's runs"),
        distro_qemu(host, fleet.state, artifacts, options, arches) as interpreters,
        fleet.host_builders(runs) as builders,
    ):
        seed = bench(fleet.buildx, builders, runs, sources, repeats)
        seed_s = timed_build(fleet.buildx, builders[host.name], sources, platforms)
    whole = WholeBuild(len(platforms), fleet_s, seed_s)
    return SeedComparison(host.name, tuple(speedups(measured, seed)), whole, tuple(seed), interpreters)
