"""The versions step: what the tools report of themselves against the pins, and runc's advisories."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from provisioning.advisories import open_runc_cves, runc_fix
from provisioning.hosts.actions import Decision, no_change, refuse
from provisioning.hosts.operations import Step
from provisioning.hosts.operations.buildkitd import BUILDKIT_BIN
from provisioning.hosts.operations.buildx import BUILDX_PLUGIN
from provisioning.remote import facts as f


@dataclass(frozen=True)
class PinnedVersions:
    buildkit: str  # buildkitd and buildctl
    buildx: str


BUILDKIT_MODULE = "github.com/moby/buildkit"
BUILDX_MODULE = "github.com/docker/buildx"


def versions_step(pinned: PinnedVersions) -> Step:
    """What each tool reports of itself against the pinned versions, and runc against its known
    advisories. The install steps before it converge on the pinned files; this one reads what
    actually runs, so doctor shows a host left on old binaries by name and version."""
    facts: dict[str, f.Fact[Any]] = {
        "buildkitd": f.ToolVersion(f"{BUILDKIT_BIN}/buildkitd", ("--version",), BUILDKIT_MODULE),
        "buildctl": f.ToolVersion(f"{BUILDKIT_BIN}/buildctl", ("--version",), BUILDKIT_MODULE),
        "buildx": f.ToolVersion(BUILDX_PLUGIN, ("version",), BUILDX_MODULE),
        "runc": f.RuncInfo(),
    }
    wanted = {"buildkitd": pinned.buildkit, "buildctl": pinned.buildkit, "buildx": pinned.buildx}

    def decide(got: Mapping[str, Any]) -> Decision:
        stale = [
            f"{tool} {got[tool] or 'missing'} (pinned {want})" for tool, want in wanted.items() if got[tool] != want
        ]
        if stale:
            return refuse(f"not the pinned versions: {', '.join(stale)}; buildfleet configure installs them")
        runc = got["runc"]
        found = f"buildkitd, buildctl {pinned.buildkit} and buildx {pinned.buildx} as pinned"
        if runc is None:
            return refuse(f"{found}, but no runc on PATH: buildkitd has no OCI worker without it")
        owner = f" ({runc.package} {runc.package_version})" if runc.package else ""
        cves = open_runc_cves(runc.version, runc.package, runc.changelog_cves)
        warning = runc_fix(runc.version, runc.package, runc.package_version, cves) if cves else ""
        return no_change(f"{found}; runc {runc.version}{owner}", warning)

    return Step("versions", facts, decide)
