"""Run the bench: one single-node builder per host, each run repeated without the cache.

The fleet's builder sends a platform to the node the placement chose; the bench also
needs natively placed platforms on the emulation host, so it makes its own builder per
host (recorded like every builder buildfleet makes, so ``down`` removes a leftover one)
and removes them when done. Before timing, each (host, platform) builds the shared
userland stage once, so no repeat pays for unpacking it.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

from provisioning.bench.report import Measured
from provisioning.bench.runs import Run
from provisioning.builder.builder import Buildx, FleetBuilder
from provisioning.builder.nodes import TLSFiles, remote_node
from provisioning.builder.sample import SampleSources, context_args
from provisioning.errors import BuildfleetError
from provisioning.inventory import Inventory

# The bench's Dockerfile (on the sample's userland stage) and the workloads it runs.
WORKLOADS_DIR = Path(str(resources.files("provisioning.bench").joinpath("workloads")))


def bench_builder_name(builder: str, host: str) -> str:
    return f"{builder}-bench-{host}"


@contextmanager
def host_builders(
    builder: str, inventory: Inventory, tls: TLSFiles, runs: Sequence[Run], records: Path, buildx: Buildx
) -> Iterator[dict[str, str]]:
    """host -> the name of a builder whose one node is that host, pinned to the platforms run there."""
    made: list[FleetBuilder] = []
    try:
        names = {}
        for host in inventory.hosts:
            platforms = tuple(dict.fromkeys(r.platform for r in runs if r.host == host.name))
            if not platforms:
                continue
            fleet_builder = FleetBuilder(bench_builder_name(builder, host.name), records, buildx)
            made.append(fleet_builder)
            node = dataclasses.replace(remote_node(fleet_builder.name, host, tls), platforms=platforms)
            fleet_builder.ensure((node,))
            names[host.name] = fleet_builder.name
        yield names
    finally:
        for fleet_builder in made:
            fleet_builder.remove()


def build_args(
    builder: str, platform: str, target: str, sources: SampleSources, output: str, workload: str = ""
) -> list[str]:
    return [
        "buildx",
        "build",
        "--builder",
        builder,
        "--platform",
        platform,
        "--target",
        target,
        *(["--build-arg", f"WORKLOAD={workload}", "--no-cache-filter", "bench-run"] if workload else []),
        "--provenance=false",
        "--progress",
        "plain",
        *context_args(sources, WORKLOADS_DIR, "workloads"),
        "--output",
        output,
        str(sources.userland),
    ]


def parse_report(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def measure(buildx: Buildx, builder: str, run: Run, sources: SampleSources, repeats: int) -> Measured:
    """``repeats`` cache-less builds of one workload for one platform on one node."""
    buildx.run(build_args(builder, run.platform, "userland", sources, "type=cacheonly"))  # unpack once, untimed
    seconds, build_seconds, report = [], [], {}
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as out:
            start = time.monotonic()
            buildx.run(build_args(builder, run.platform, "bench", sources, f"type=local,dest={out}", run.workload))
            build_seconds.append(round(time.monotonic() - start, 2))
            report = parse_report((Path(out) / "report").read_text())
        if "seconds" not in report:
            raise BuildfleetError(f"bench {run.workload} on {run.platform} ({run.host}) reported no time: {report}")
        seconds.append(float(report["seconds"]))
    return Measured(
        run,
        tuple(seconds),
        tuple(build_seconds),
        report.get("tool", ""),
        report.get("output", ""),
        report.get("uname", ""),
    )


def bench(
    buildx: Buildx,
    builders: dict[str, str],
    runs: Sequence[Run],
    sources: SampleSources,
    repeats: int,
    progress: Callable[[Run, int], None] = lambda run, index: None,
) -> list[Measured]:
    measured = []
    for index, run in enumerate(runs):
        progress(run, index)
        measured.append(measure(buildx, builders[run.host], run, sources, repeats))
    return measured
