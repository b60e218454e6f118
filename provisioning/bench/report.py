"""Bench results as rows, and the rows as markdown, JSON, CSV and a PNG chart.

Two kinds of number, kept apart in every output: measured seconds (from this run) and
catalog prices (recorded list prices with their source and date). The workload's own
seconds -- timed inside the build step with the kernel's clock -- drive the emulation
penalty; the whole build's wall time, which is what the node is paid for, drives the
dollars per build.
"""

from __future__ import annotations

import csv
import io
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from provisioning.bench.runs import FULL_SYSTEM_BASELINE, Run, baseline_for
from provisioning.catalog import InstanceType
from provisioning.extras import available
from provisioning.jsonstyle import dumps


@dataclass(frozen=True)
class Measured:
    run: Run
    seconds: tuple[float, ...]  # the workload's own time, one per repeat
    build_seconds: tuple[float, ...]  # docker buildx build wall time, one per repeat
    tool: str  # e.g. "gcc 12.2.0", "Python 3.11.2"
    output: str  # what the workload printed (the same for one tool on every platform)
    uname: str


@dataclass(frozen=True)
class Row:
    workload: str
    platform: str
    host: str
    mode: str  # native | QEMU
    placed: bool
    median_s: float
    min_s: float
    build_median_s: float
    repeats: int
    penalty: float | None  # QEMU time / baseline native time
    baseline: str
    instance_type: str
    usd_per_hour: float | None
    usd_per_build: float | None
    tool: str
    note: str


def rows(measured: Sequence[Measured], arch: Mapping[str, str], prices: Mapping[str, InstanceType]) -> list[Row]:
    """``arch``: host -> CPU architecture; ``prices``: host -> the instance type it is priced as."""
    by_run = {m.run: m for m in measured}
    result = []
    for m in measured:
        median = round(statistics.median(m.seconds), 2)
        build = round(statistics.median(m.build_seconds), 2)
        baseline = baseline_for(m.run, list(by_run), arch)
        penalty = None
        if baseline is not None and baseline.run in by_run:
            base = statistics.median(by_run[baseline.run].seconds)
            penalty = round(median / base, 1) if base > 0 else None
        price = prices.get(m.run.host)
        result.append(
            Row(
                workload=m.run.workload,
                platform=m.run.platform,
                host=m.run.host,
                mode=m.run.mode,
                placed=m.run.placed,
                median_s=median,
                min_s=round(min(m.seconds), 2),
                build_median_s=build,
                repeats=len(m.seconds),
                penalty=penalty,
                baseline=baseline.label if baseline else "",
                instance_type=price.name if price else "",
                usd_per_hour=price.usd_per_hour if price else None,
                usd_per_build=round(build / 60 * price.usd_per_hour / 60, 6) if price else None,
                tool=m.tool,
                note=m.run.note,
            )
        )
    return result


def disagreements(measured: Sequence[Measured]) -> list[str]:
    """Runs whose workload printed something other than the majority of its runs: the same
    program must compute the same result on every platform, emulated or not."""
    found = []
    for workload in dict.fromkeys(m.run.workload for m in measured):
        outputs = [m.output for m in measured if m.run.workload == workload]
        usual = max(set(outputs), key=outputs.count)
        found += [
            f"{workload} on {m.run.platform} ({m.run.host}) printed {m.output!r}, the others {usual!r}"
            for m in measured
            if m.run.workload == workload and m.output != usual
        ]
    return found


def _money(value: float | None) -> str:
    return "-" if value is None else f"${value:.5f}"


def markdown(table: Sequence[Row], title: str, price_note: str) -> str:
    lines = [
        f"# {title}",
        "",
        "| workload | platform | node | runs | median s | min s | emulation penalty | build s | $ / build | tool |",
        "|---|---|---|---|---:|---:|---|---:|---:|---|",
    ]
    for r in table:
        native = "" if r.baseline.endswith(FULL_SYSTEM_BASELINE) else "native "
        penalty = f"{r.penalty}x slower than {native}{r.baseline}" if r.penalty is not None else "-"
        node = r.host if r.placed else f"{r.host} (extra run)"
        mode = r.mode + (f" ({r.note})" if r.note else "")
        lines.append(
            f"| {r.workload} | {r.platform} | {node} | {mode} | {r.median_s:.2f} | {r.min_s:.2f} | "
            f"{penalty} | {r.build_median_s:.2f} | {_money(r.usd_per_build)} | {r.tool} |"
        )
    lines += [
        "",
        "Measured in this run: *median s* and *min s* (the workload's own time inside the build step, "
        f"over {max((r.repeats for r in table), default=0)} runs without the build cache), *build s* (median "
        "wall time of the whole `docker buildx build`) and the *emulation penalty* (QEMU median / the named "
        "native median).",
        "",
        f"From the catalog, not measured: *$ / build* = build s / 60 x the node's $/h / 60. {price_note}",
        "",
    ]
    if any(r.mode == "full-system emulation" for r in table):
        lines += [
            "*Full-system emulation*: the vm target's arm64 host is a whole arm64 machine emulated by "
            "qemu-system (TCG) on this machine. Its times are emulation too, never Graviton figures, and carry "
            "no price; the penalty against it compares user-mode QEMU (binfmt) with full-system QEMU.",
            "",
        ]
    return "\n".join(lines)


def as_json(table: Sequence[Row], measured: Sequence[Measured], meta: Mapping[str, object]) -> str:
    return dumps(
        {
            **meta,
            "rows": [asdict(r) for r in table],
            "raw": [
                {
                    **asdict(m.run),
                    "seconds": list(m.seconds),
                    "build_seconds": list(m.build_seconds),
                    "tool": m.tool,
                    "output": m.output,
                    "uname": m.uname,
                }
                for m in measured
            ],
        },
        indent=2,
    )


def as_csv(measured: Sequence[Measured]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["workload", "platform", "host", "mode", "repeat", "seconds", "build_seconds"])
    for m in measured:
        for i, (s, b) in enumerate(zip(m.seconds, m.build_seconds, strict=True), start=1):
            writer.writerow([m.run.workload, m.run.platform, m.run.host, m.run.mode, i, s, b])
    return out.getvalue()


def chart(table: Sequence[Row], path: Path, title: str) -> None:
    """One bar group per workload: median seconds per platform and node, QEMU in its own colour."""
    import matplotlib

    matplotlib.use("Agg")  # files only; no display here or on CI
    from matplotlib import pyplot

    workloads = sorted({r.workload for r in table})
    figure, axes = pyplot.subplots(len(workloads), 1, figsize=(10, 3.2 * len(workloads)), squeeze=False)
    for axis, workload in zip(axes[:, 0], workloads, strict=True):
        mine = [r for r in table if r.workload == workload]
        labels = [f"{r.platform.removeprefix('linux/')}\n{r.host}" for r in mine]
        colours = ["#d62728" if r.mode == "QEMU" else "#1f77b4" for r in mine]
        bars = axis.bar(range(len(mine)), [r.median_s for r in mine], color=colours)
        axis.bar_label(bars, labels=[f"{r.penalty}x" if r.penalty is not None else "" for r in mine], fontsize=8)
        axis.set_xticks(range(len(mine)), labels, fontsize=7)
        axis.set_ylabel("median s")
        axis.margins(y=0.15)
        axis.set_title(f"{workload} (blue native, red QEMU; label: emulation penalty)", fontsize=9)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)


def write(
    directory: Path,
    table: Sequence[Row],
    measured: Sequence[Measured],
    meta: Mapping[str, object],
    title: str,
    price_note: str,
) -> dict[str, Path]:
    """The report's files; bench.png only where matplotlib (the ``charts`` extra) is installed."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {
        "markdown": directory / "bench.md",
        "json": directory / "bench.json",
        "csv": directory / "timings.csv",
    }
    files["markdown"].write_text(markdown(table, title, price_note))
    files["json"].write_text(as_json(table, measured, {**meta, "price_note": price_note}))
    files["csv"].write_text(as_csv(measured))
    if available("matplotlib"):
        files["png"] = directory / "bench.png"
        chart(table, files["png"], title)
    return files
