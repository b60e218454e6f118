"""Which bench runs happen where, and what each QEMU run is compared with. Pure.

Every platform runs on the node the placement gave it. A platform placed natively is
also run on the emulation host, because the question users ask is what QEMU costs
them; where the emulation host's own CPU runs that platform natively (binfmt cannot
emulate a host's own architecture) that run is native too, and says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from provisioning.inventory import Inventory, InventoryHost
from provisioning.platforms import Platform, native_platforms, parse_platform

WORKLOADS = {
    "c-compile": "gcc compiles a 150-line C program at -O0 and -O2 and runs it",
    "python": "Python byte-compiles 60 standard-library modules and sorts and groups 40,000 records",
}


FULL_SYSTEM_NOTE = "a qemu-system VM under TCG: emulation of a whole machine, not a Graviton figure"
FULL_SYSTEM_BASELINE = " (full-system emulation)"


@dataclass(frozen=True)
class Run:
    workload: str
    platform: str
    host: str
    native: bool
    placed: bool  # the placement's choice (False: the extra run on the emulation host)
    note: str = ""
    full_system: bool = False  # on a qemu-system VM: "native" to its guest, emulated all the same

    @property
    def mode(self) -> str:
        if self.full_system:
            return "full-system emulation"
        return "native" if self.native else "QEMU"


def plan_runs(inventory: Inventory, platforms: Sequence[Platform], workloads: Sequence[str]) -> list[Run]:
    placed: dict[str, tuple[InventoryHost, bool]] = {}
    for host in inventory.hosts:  # a pool's platforms run on its first member
        for p in host.platforms:
            placed.setdefault(p.platform, (host, p.native))
    emulation = next((h for h in inventory.hosts if h.role == "emulation"), None)
    runs = []
    for workload in workloads:
        for platform in platforms:
            name = str(platform)
            host, native = placed[name]
            vm = FULL_SYSTEM_NOTE if host.full_system_emulation else ""
            runs.append(Run(workload, name, host.name, native, True, vm, host.full_system_emulation))
            if native and emulation is not None and emulation.name != host.name:
                own = platform in native_platforms(emulation.arch)
                note = f"the emulation host's own {emulation.arch} CPU runs it natively" if own else ""
                runs.append(Run(workload, name, emulation.name, own, False, note))
        runs.extend(_missing_baselines(workload, runs, {h.name: h.arch for h in inventory.hosts}))
    return runs


def _missing_baselines(workload: str, runs: Sequence[Run], arch: dict[str, str]) -> list[Run]:
    """A native run of each QEMU host's own architecture where nothing else can be the baseline."""
    extra: list[Run] = []
    for run in runs:
        if run.workload == workload and baseline_for(run, [*runs, *extra], arch) is None and not run.native:
            own = str(parse_platform(arch[run.host]))
            extra.append(Run(workload, own, run.host, True, False, "baseline for the emulation penalty"))
    return extra


@dataclass(frozen=True)
class Baseline:
    run: Run
    label: str


def baseline_for(run: Run, runs: Sequence[Run], arch: Mapping[str, str]) -> Baseline | None:
    """The native run a QEMU run is compared with: the same platform on a native node
    if the fleet has one, else the QEMU host's own architecture on that same host
    (``arch``: host name -> its CPU architecture)."""
    if run.native:
        return None
    same = [r for r in runs if r.workload == run.workload and r.platform == run.platform and r.native]
    if same:
        kind = FULL_SYSTEM_BASELINE if same[0].full_system else ""
        return Baseline(same[0], f"{run.platform} on {same[0].host}{kind}")
    own = str(parse_platform(arch[run.host]))
    local = [r for r in runs if r.workload == run.workload and r.platform == own and r.native and r.host == run.host]
    if local:
        return Baseline(local[0], f"{own} on {run.host} (same machine)")
    return None
