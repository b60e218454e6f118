"""bench --concurrency: N builds of one platform at once, through the fleet's node for it
(a pool's balancer, or a single host) and through one host alone, in the same run.

Each build is the sample's compile step, uncached, with its own BUILD_ID so BuildKit
cannot merge the N identical steps into one; each records the addresses of the host that
ran it (``RUN --network=host``), which is how builds are counted per host. The builds
start a little apart, as CI jobs arrive: the local balancer keeps the connections one
client opens within half a second on one member (see targets/local/balancer.py).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from provisioning.bench.runner import build_args as runner_build_args
from provisioning.bench.runs import Run as BenchRun
from provisioning.bench.session import BenchFleet, Status
from provisioning.builder.builder import Buildx
from provisioning.builder.sample import SampleSources, build_args, ran_on
from provisioning.errors import BuildfleetError
from provisioning.inventory import Inventory
from provisioning.jsonstyle import Keyed
from provisioning.platforms import Platform


@dataclass(frozen=True)
class Outcome:
    index: int
    host: str  # the host the build's step ran on ("" when the build failed)
    seconds: float
    error: str = ""


@dataclass(frozen=True)
class Wave:
    """N builds started together through one builder."""

    label: str  # what they went through: a pool, or one host
    outcomes: tuple[Outcome, ...]
    wall_seconds: float

    @property
    def per_host(self) -> dict[str, int]:
        return dict(sorted(Counter(o.host for o in self.outcomes if not o.error).items()))

    @property
    def failures(self) -> tuple[Outcome, ...]:
        return tuple(o for o in self.outcomes if o.error)

    @property
    def per_minute(self) -> float:
        """Builds finished per minute of the wave's wall time."""
        done = len(self.outcomes) - len(self.failures)
        return round(done * 60 / self.wall_seconds, 2) if self.wall_seconds else 0.0

    @property
    def median_seconds(self) -> float:
        times = [o.seconds for o in self.outcomes if not o.error]
        return round(statistics.median(times), 2) if times else 0.0

    def to_dict(self) -> dict[str, object]:
        return {
            "through": self.label,
            "builds": len(self.outcomes),
            "per_host": Keyed(self.per_host),
            "failed": [{"build": o.index, "error": o.error} for o in self.failures],
            "wall_seconds": self.wall_seconds,
            "builds_per_minute": self.per_minute,
            "median_build_seconds": self.median_seconds,
        }


@dataclass(frozen=True)
class Run:
    """One wave's shared facts: its id (in each build's tag), where builds write, the seconds between starts."""

    run_id: str
    out: Path
    apart: float


def start_apart(inventory: Inventory) -> float:
    """Seconds between two builds' starts: past the time a balancer keeps one client on one
    member, so each build is a new choice of member."""
    return max((p.stick_ms for p in inventory.pools), default=0) / 1000 + 0.1


def _one(buildx: Buildx, builder: str, platform: Platform, sources: SampleSources, index: int, run: Run):
    time.sleep(index * run.apart)
    run_id, out = run.run_id, run.out
    dest = out / str(index)
    args = build_args(builder, [platform], f"type=local,dest={dest}", sources, f"{run_id}-{index}")
    start = time.monotonic()
    result = buildx.run(args, check=False)
    seconds = round(time.monotonic() - start, 2)
    addresses = dest / "buildfleet" / "addresses"
    if result.returncode != 0 or not addresses.is_file():
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return seconds, "", f"exit {result.returncode}: {last}"
    return seconds, addresses.read_text(), ""


def wave(
    buildx: Buildx, builder: str, label: str, inventory: Inventory, platform: Platform, sources: SampleSources, n: int
) -> Wave:
    """Start ``n`` builds (``start_apart`` from each other) and wait for all of them; a failed
    build is recorded, not raised. Each build's seconds count from its own start."""
    run_id = time.strftime("%Y%m%d%H%M%S")
    with tempfile.TemporaryDirectory(prefix="buildfleet-concurrency.") as out, ThreadPoolExecutor(n) as threads:
        start = time.monotonic()
        run = Run(run_id, Path(out), start_apart(inventory))
        futures = [threads.submit(_one, buildx, builder, platform, sources, i, run) for i in range(n)]
        results = [f.result() for f in futures]
        wall = round(time.monotonic() - start, 2)
    outcomes = []
    for index, (seconds, addresses, error) in enumerate(results):
        hosts = ran_on(inventory, addresses) if not error else []
        if not error and len(hosts) != 1:
            error = f"its step recorded no single host of the fleet ({', '.join(hosts) or 'none'})"
        outcomes.append(Outcome(index, hosts[0] if not error else "", seconds, error))
    return Wave(label, tuple(outcomes), wall)


def speedup(fleet: Wave, single: Wave) -> float:
    """The fleet's throughput over one host's, for the same N builds."""
    return round(fleet.per_minute / single.per_minute, 2) if single.per_minute else 0.0


def same_machine_note(inventory: Inventory, cpus: int) -> str:
    """Why throughput may not grow: every host of a local or vm fleet shares this machine's CPUs."""
    if not inventory.features.on_this_machine:
        return ""
    return (
        f"every host of this {inventory.target} fleet runs on this one machine ({cpus} CPUs): the pool's members "
        "share those CPUs, so throughput cannot grow here; the spread across hosts is what this shows"
    )


def summary(waves: Sequence[Wave]) -> list[str]:
    return [
        f"{w.label}: {len(w.outcomes)} builds, per host {w.per_host or '{}'}, {len(w.failures)} failed, "
        f"{w.wall_seconds} s wall, {w.per_minute} builds/min, median build {w.median_seconds} s"
        for w in waves
    ]


MAX_BUILDS = 32  # a bench, not a load test: bounded


@dataclass(frozen=True)
class Comparison:
    """The same N builds through the fleet's node for a platform, then through one host alone."""

    platform: Platform
    node: str
    through_fleet: Wave
    alone: Wave
    note: str  # why throughput may not grow here ("" when nothing to say)

    @property
    def ratio(self) -> float:
        return speedup(self.through_fleet, self.alone)

    @property
    def failed(self) -> bool:
        return bool(self.through_fleet.failures or self.alone.failures)

    def to_dict(self, fleet: str) -> dict[str, object]:
        return {
            "fleet": fleet,
            "platform": str(self.platform),
            "concurrency": len(self.through_fleet.outcomes),
            "waves": [self.through_fleet.to_dict(), self.alone.to_dict()],
            "throughput_vs_one_host": self.ratio,
            "note": self.note,
        }


def bounded(n: int) -> int:
    if n > MAX_BUILDS:
        raise BuildfleetError(f"--concurrency {n}: at most {MAX_BUILDS} builds at once")
    return n


def busiest_platform(inventory: Inventory, platforms: Sequence[Platform], asked: bool) -> Platform:
    """The platform to load: the first asked for, else the first a pool builds (the case worth measuring)."""
    pooled = {x.platform for h in inventory.hosts if h.pool for x in h.platforms}
    return platforms[0] if asked else next((p for p in platforms if str(p) in pooled), platforms[0])


def compare(fleet: BenchFleet, platform: Platform, n: int, status: Status) -> Comparison:
    """``n`` builds of ``platform`` at once through the fleet's builder, then on the first host
    that builds it, alone; the userland is unpacked on each host first, untimed."""
    bounded(n)
    inventory = fleet.inventory
    hosts = [h for h in inventory.hosts if str(platform) in {p.platform for p in h.platforms}]
    node, first = hosts[0].node, hosts[0].name
    sources = fleet.sources([platform])
    runs = [BenchRun("concurrency", str(platform), h.name, True, True) for h in hosts]
    with fleet.host_builders(runs) as builders:
        with status(f"unpacking {platform}'s userland on {', '.join(builders)} (untimed)"):
            for builder in builders.values():
                fleet.buildx.run(runner_build_args(builder, str(platform), "userland", sources, "type=cacheonly"))
        with status(f"{n} builds of {platform} at once through {node}"):
            through_fleet = wave(fleet.buildx, fleet.builder, node, inventory, platform, sources, n)
        with status(f"{n} builds of {platform} at once on {first} alone"):
            alone = wave(fleet.buildx, builders[first], f"{first} alone", inventory, platform, sources, n)
    return Comparison(platform, node, through_fleet, alone, same_machine_note(inventory, os.cpu_count() or 1))
