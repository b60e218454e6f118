"""doctor's checks of the builder: each node's status as buildx sees it, and each pool member's
own buildkitd past the balancer."""

from __future__ import annotations

from provisioning.builder.inspect import InspectedBuilder
from provisioning.builder.nodes import node_name
from provisioning.certs import TLSFiles
from provisioning.checks import Check
from provisioning.inventory import Inventory
from provisioning.remote.wait import BuildkitdEndpoint, buildkitd_answers


def node_checks(builder: str, inventory: Inventory, inspected: InspectedBuilder | None) -> list[Check]:
    """One check per builder node (a pool is one node): running, or what to run."""
    found = {n.name: n.status for n in inspected.nodes} if inspected else {}
    checks = []
    for unit in sorted({h.node for h in inventory.hosts if h.platforms}):
        node = node_name(builder, unit)
        status = found.get(node, "missing")
        fix = (
            ""
            if status == "running"
            else "buildfleet builder create"
            if status == "missing"
            else "buildfleet configure, then buildfleet builder create"
        )
        checks.append(Check(unit, "builder node", status == "running", f"{node}: {status}", fix))
    return checks


def pool_member_checks(inventory: Inventory, tls: TLSFiles) -> list[Check]:
    """Each pool member's own buildkitd over mTLS, past the balancer: a member that does not
    answer is one the balancer has dropped, and the pool builds on fewer hosts."""
    checks = []
    for pool in inventory.pools:
        for member in inventory.members(pool.name):
            why = buildkitd_answers(BuildkitdEndpoint.of_host(member), tls)
            detail = why or f"buildkitd at {member.address}:{member.buildkitd_port} answers over mTLS"
            fix = "buildfleet up (a stopped host), then buildfleet configure" if why else ""
            checks.append(Check(member.name, f"{pool.name} member", not why, detail, fix))
    return checks
