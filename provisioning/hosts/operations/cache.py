"""The cache step: BuildKit's cache against the limits buildkitd enforces and the disk's free space (reads only)."""

from collections.abc import Mapping
from typing import Any

from provisioning.hosts.actions import Decision, no_change, refuse
from provisioning.hosts.operations import Step
from provisioning.remote import facts as f


def gigabytes(size: int) -> str:
    return f"{size / 1e9:.1f} GB"


def cache_step() -> Step:
    """BuildKit's cache against the limits buildkitd enforces and the disk it lives on: what the
    SRE of a long-lived fleet watches. Reads only; a disk fuller than the GC keeps free (something
    beside the cache fills it) is a warning, as the GC cannot help there."""
    facts: dict[str, f.Fact[Any]] = {
        "used": f.BuildkitCacheUsage(),
        "limits": f.BuildkitdGcLimits(),
        "disk": f.BuildkitDisk(),
    }

    def decide(got: Mapping[str, Any]) -> Decision:
        used, limits, disk = got["used"], got["limits"], got["disk"]
        if used is None or limits is None:
            return refuse("buildkitd does not answer on its socket: buildfleet configure starts it")
        found = (
            f"cache {gigabytes(used)} of at most {gigabytes(limits.max_used)} "
            f"(GC keeps {gigabytes(limits.min_free)} free, never below {gigabytes(limits.reserved)}); "
            f"disk {gigabytes(disk.free)} free of {gigabytes(disk.size)}"
        )
        warning = ""
        if disk.free < limits.min_free:
            warning = (
                f"only {gigabytes(disk.free)} free on the cache's disk, below the {gigabytes(limits.min_free)} "
                "BuildKit's GC keeps free: something beside the cache fills it "
                "(docker system df, journalctl --disk-usage), or give the host a larger disk (buildfleet:rootVolumeGiB)"
            )
        return no_change(found, warning)

    return Step("cache", facts, decide)
