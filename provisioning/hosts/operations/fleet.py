"""The fleet step, first of all: a host another copy of the fleet configured is never taken over."""

from collections.abc import Mapping
from typing import Any

from provisioning.certs import issued_by_any
from provisioning.hosts.actions import Decision, no_change, refuse
from provisioning.hosts.operations import Step
from provisioning.hosts.operations.buildkitd import BUILDKIT_ETC
from provisioning.remote import facts as f


def fleet_step(fleet_cas: bytes) -> Step:
    """First of all: the host is this fleet's, or new. One whose buildkitd serves a certificate
    of a CA this state does not hold belongs to another copy of the fleet (a teammate's, or state
    made anew), and taking it over would lock its operator out: nothing is changed on it."""
    served = f"{BUILDKIT_ETC}/tls/cert.pem"

    def decide(got: Mapping[str, Any]) -> Decision:
        if got["served"] is None:
            return no_change("no buildkitd certificate yet: a host new to buildfleet")
        if issued_by_any(got["served"], fleet_cas):
            return no_change("buildkitd serves a certificate of this fleet's CA")
        return refuse(
            "buildkitd here serves a certificate of a fleet CA this state does not hold (another operator's "
            "fleet, or state made anew): import that fleet's state (buildfleet state import) rather than take "
            f"the host over; if that state is lost for good, remove {BUILDKIT_ETC}/tls on the host first"
        )

    return Step("fleet", {"served": f.PublicFile(served)}, decide)
