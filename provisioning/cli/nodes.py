"""The fleet's builder kept pointing at hosts that answer: made or brought up to date, moved
after a wake, and the hosts idle stop powered off woken before a command needs them."""

from __future__ import annotations

from provisioning.cli.context import Fleet
from provisioning.inventory import Inventory


def ensure_builder(fleet: Fleet, driver: str | None = None) -> None:
    """The fleet's builder made or brought up to date, with ``driver`` (default: the one the
    command line names)."""
    from provisioning.builder.drivers import make_driver

    console = fleet.console
    inventory = fleet.inventory()
    builder = fleet.builder()
    artifacts = fleet.artifacts(fleet.settings())
    made = make_driver(driver or fleet.options.driver, artifacts, builder.buildx)
    with console.status(made.preparing or f"{made.name} driver: one node per host"):
        nodes = made.nodes(builder.name, inventory, fleet.state)
    changes = builder.ensure(nodes, use=fleet.options.use)
    console.print(
        f"builder {builder.name!r}: "
        + ("; ".join(c.describe() for c in changes) if changes else "no change: its nodes match the fleet")
    )
    if inventory.pools:
        wait_for_pools(fleet, inventory)


POOL_WAIT_SECONDS = 60


def wait_for_pools(fleet: Fleet, inventory: Inventory) -> None:
    """Until each pool's balancer passes a build connection on: its health checks find a
    member only seconds after that member's buildkitd (re)started."""
    from provisioning.certs import TLSFiles
    from provisioning.remote.wait import BuildkitdEndpoint, wait_for_buildkitd

    pools = [BuildkitdEndpoint.of_pool(p) for p in inventory.pools]
    with fleet.console.status("waiting for the pools' balancers to find their members"):
        waited = wait_for_buildkitd(pools, TLSFiles.in_state(fleet.state.root / "tls"), POOL_WAIT_SECONDS)
    fleet.console.print("pools answer over mTLS: " + ", ".join(f"{name} ({s:.1f} s)" for name, s in waited.items()))


def refresh_builder(fleet: Fleet) -> None:
    """The fleet's builder, if buildfleet made it, pointed at where the hosts and files are now."""
    builder = fleet.builder()
    existing = builder.inspect() if builder.owned() else None
    if existing is not None:
        ensure_builder(fleet, driver=existing.driver)


def wake_fleet(fleet: Fleet) -> Inventory:
    """Start what idle stop powered off, point the builder at where the hosts answer now, and
    wait until every buildkitd serves the fleet's client certificate."""
    from provisioning.certs import TLSFiles
    from provisioning.remote.wait import BuildkitdEndpoint, wait_for_buildkitd

    inventory = fleet.inventory()
    fleet.console.print(f"{inventory.target}: starting the fleet's stopped hosts")
    woken = fleet.target(inventory.target, progress=True).wake(fleet.settings())
    refresh_builder(fleet)  # new ports or addresses: the same nodes, moved
    client = TLSFiles.in_state(fleet.state.root / "tls")
    endpoints = [BuildkitdEndpoint.of_host(h) for h in woken.hosts if h.platforms]
    pools = [BuildkitdEndpoint.of_pool(p) for p in woken.pools]
    wait_for_buildkitd(endpoints + pools, client, fleet.options.wait_timeout)
    return woken


def awake(fleet: Fleet, before: str, lock: bool = False) -> None:
    """The fleet woken first when a host of it is powered off (idle stop does that on its own):
    ``before`` says what needs the hosts; ``lock``: the command holds no fleet lock of its own,
    so the wake takes it (a wake changes the inventory and the builder)."""
    sleeping = fleet.sleeping(fleet.inventory())
    if not sleeping:
        return
    fleet.console.print(f"{', '.join(sleeping)}: powered off (idle stop, or by hand); waking the fleet {before}")
    if lock:
        with fleet.state.locked("wake"):
            wake_fleet(fleet)
    else:
        wake_fleet(fleet)
