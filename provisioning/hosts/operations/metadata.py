"""No build step reads the instance metadata service (AWS hosts).

buildkitd here has no CNI configuration, so its OCI worker runs every RUN step on the
host's own network (BuildKit's "auto" network mode falls back to host), not only those
that ask for ``--network=host``. On EC2 such a step reaches 169.254.169.254 with a hop
count of 0, so the IMDSv2 hop limit does not stop it, and it could read the user data —
the host's SSH private host key, which is how the fleet pins host keys before the first
connection. cloud-init reads the metadata early at boot (its local and network stages);
after that nothing on a build host needs it. So a boot task, ordered after cloud-init's
network stage (its units in canonical/cloud-init's systemd/ directory) and before
buildkitd, rejects connections to the metadata service from the
host (OUTPUT) and from containers it routes (FORWARD); REJECT, not DROP, so whatever
still asks (e.g. ec2-instance-connect's key lookup at SSH login) fails at once instead of
hanging.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from provisioning.hosts.actions import Decision, Run, WriteFile, no_change
from provisioning.hosts.operations import Step
from provisioning.hosts.services import Service, differing, init_system, service_paths
from provisioning.remote import facts as f

METADATA_SCRIPT = "/usr/local/lib/buildfleet/block-metadata"
METADATA_SERVICE = Service(
    "buildfleet-block-metadata",
    (METADATA_SCRIPT,),
    "Reject connections to the instance metadata service after cloud-init read it",
    # cloud-init's network stage, which reads the metadata (cloud-init.service; since 24.3
    # cloud-init-network.service, then cloud-network.service), orders itself before
    # network-online.target; its later stages use what it cached. Not after cloud-final:
    # on Ubuntu and Debian that runs after multi-user.target, which this unit is part of.
    after=("network-online.target",),
    oneshot=True,
    before=("buildkitd.service",),
)

SCRIPT = b"""#!/bin/sh
# buildfleet (managed): nothing on this host reaches the instance metadata service once
# cloud-init has read it at boot; build steps run on this host's network.
set -eu
block() {
    tool=$1 address=$2
    for chain in OUTPUT FORWARD; do
        "$tool" -C "$chain" -d "$address" -j REJECT 2>/dev/null || "$tool" -I "$chain" -d "$address" -j REJECT
    done
}
block iptables 169.254.169.254/32
if command -v ip6tables >/dev/null 2>&1 && ip6tables -L -n >/dev/null 2>&1; then
    block ip6tables fd00:ec2::254/128
fi
"""


def metadata_step() -> Step:
    facts: dict[str, f.Fact[Any]] = {
        "init": f.InitSystem(),
        "files": f.FileDigests((METADATA_SCRIPT, *service_paths(METADATA_SERVICE))),
        "blocked": f.MetadataBlocked(),
    }

    def decide(got: Mapping[str, Any]) -> Decision:
        init = init_system(got["init"])
        wanted = [WriteFile(METADATA_SCRIPT, SCRIPT, "0755", "install the metadata firewall script")]
        actions: list = [*differing(wanted, got["files"]), *init.files(METADATA_SERVICE, got["files"])]
        if actions:
            actions.extend(init.enable(METADATA_SERVICE))
        if not got["blocked"]:
            actions.append(Run((METADATA_SCRIPT,), "reject connections to 169.254.169.254 from now on"))
        if not actions:
            return no_change("the instance metadata service is closed to everything on the host after boot")
        return Decision(tuple(actions))

    return Step("metadata", facts, decide)
