"""The privileged step: privileged containers (the docker-container driver) on hosts that lack CAP_SYS_RESOURCE."""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib import resources
from typing import Any

from provisioning.hosts.actions import Decision, WriteFile, no_change
from provisioning.hosts.operations import Step
from provisioning.hosts.operations.docker import DOCKERD
from provisioning.hosts.services import differing, init_system
from provisioning.remote import facts as f

RUNC_WRAPPER = "/usr/local/lib/buildfleet/runc-nosysres"
DAEMON_JSON = "/etc/docker/daemon.json"
NOSYSRES = "nosysres"


def privileged_step() -> Step:
    """Let Docker start privileged containers where the host itself may not hold
    CAP_SYS_RESOURCE (a host that is a container, as on the local target): a runc
    wrapper drops that one capability from each container's spec. A host that has the
    capability (any VM) needs nothing and is left exactly as it is."""
    facts: dict[str, f.Fact[Any]] = {
        "init": f.InitSystem(),
        "capable": f.SysResourceCapability(),
        "runtime": f.DockerRuntime(),
        "files": f.FileDigests((RUNC_WRAPPER, DAEMON_JSON)),
    }

    def decide(got: Mapping[str, Any]) -> Decision:
        if got["capable"]:
            return no_change("the host holds CAP_SYS_RESOURCE: privileged containers work as they are")
        wrapper = resources.files("provisioning.hosts").joinpath("files").joinpath("runc-nosysres").read_bytes()
        daemon = (
            json.dumps({"runtimes": {NOSYSRES: {"path": RUNC_WRAPPER}}, "default-runtime": NOSYSRES}, indent=2).encode()
            + b"\n"
        )
        wanted = [
            WriteFile(RUNC_WRAPPER, wrapper, "0755", "install runc without CAP_SYS_RESOURCE"),
            WriteFile(DAEMON_JSON, daemon, "0644", "make it Docker's default runtime"),
        ]
        changed: list = differing(wanted, got["files"])
        if changed or got["runtime"] != NOSYSRES:
            why = "restart Docker with that runtime"
            changed.append(init_system(got["init"]).start(DOCKERD, True, "docker version", why))
            return Decision(tuple(changed))
        return no_change("the host lacks CAP_SYS_RESOURCE; Docker runs containers through runc-nosysres")

    return Step("privileged", facts, decide)
