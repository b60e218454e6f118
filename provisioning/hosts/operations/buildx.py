"""The buildx step: the pinned plugin, uploaded and checked by sha256."""

from collections.abc import Callable, Mapping
from typing import Any

from provisioning.artifacts import Artifact
from provisioning.hosts.actions import Decision, Upload, no_change
from provisioning.hosts.operations import Step
from provisioning.remote import facts as f

BUILDX_PLUGIN = "/usr/local/lib/docker/cli-plugins/docker-buildx"


def buildx_step(artifact_for: Callable[[str], Artifact]) -> Step:
    facts: dict[str, f.Fact[Any]] = {"arch": f.Arch(), "files": f.FileDigests((BUILDX_PLUGIN,))}

    def decide(got: Mapping[str, Any]) -> Decision:
        artifact = artifact_for(got["arch"])
        if got["files"][BUILDX_PLUGIN] == artifact.sha256:
            return no_change(f"buildx {artifact.version} installed (sha256 matches)")
        return Decision(
            (
                Upload(
                    artifact.path,
                    BUILDX_PLUGIN,
                    artifact.sha256,
                    "0755",
                    f"install buildx {artifact.version} for {got['arch']}",
                ),
            )
        )

    return Step("buildx", facts, decide)
