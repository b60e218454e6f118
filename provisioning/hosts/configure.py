"""What each host should run, from the inventory alone: the steps ``configure`` applies."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace

from provisioning.artifacts import BUILDKIT_VERSION, BUILDX_VERSION, ArtifactSource
from provisioning.certs import FleetCA
from provisioning.consumers import Consumers
from provisioning.errors import BuildfleetError
from provisioning.hosts.executor import UNCHANGED, FleetReport, HostReport, Progress, run_fleet, run_host
from provisioning.hosts.operations import Step
from provisioning.hosts.operations.binfmt import QemuDesired, binfmt_step
from provisioning.hosts.operations.buildkitd import BuildkitdDesired, buildkitd_step
from provisioning.hosts.operations.buildx import buildx_step
from provisioning.hosts.operations.cache import cache_step
from provisioning.hosts.operations.docker import DockerDesired, docker_step
from provisioning.hosts.operations.exchange import CLIENT, ExchangeDesired, ca_fact, exchange_step
from provisioning.hosts.operations.fleet import fleet_step
from provisioning.hosts.operations.idle import IdleDesired, idle_step
from provisioning.hosts.operations.metadata import metadata_step
from provisioning.hosts.operations.privileged import privileged_step
from provisioning.hosts.operations.versions import PinnedVersions, versions_step
from provisioning.hosts.rolling import Rolling
from provisioning.inventory import Inventory, InventoryHost, Pool
from provisioning.placement import EMULATION
from provisioning.platforms import parse_platform
from provisioning.remote import facts as f
from provisioning.remote.facts import gather
from provisioning.remote.ssh import connect
from provisioning.settings import BuildkitGc, settings_from_mapping
from provisioning.state import FleetState

DEFAULT_GC = settings_from_mapping({}).gc


def buildkitd_config(
    host: InventoryHost, registry: str = "", gc: BuildkitGc = DEFAULT_GC, parallelism: int = 0
) -> Callable[[int], bytes]:
    """buildkitd.toml for a host of so many CPUs: the OCI worker advertises exactly what the
    placement gave this host, collects garbage within disk-sized limits, and runs as many build
    steps at once as ``parallelism`` (0: one per CPU).

    Listing platforms keeps buildkitd from guessing emulators with its own probe binaries
    and makes ``debug workers`` show them. The GC keys are shares of the disk or sizes, which
    buildkitd resolves against the disk it stores its cache on (BuildKit's own defaults work the
    same way, with a larger share: cmd/buildkitd/config/gcpolicy.go).
    """
    return lambda cpus: _buildkitd_toml(host, registry, gc, parallelism or cpus)


def _buildkitd_toml(host: InventoryHost, registry: str, gc: BuildkitGc, parallelism: int) -> bytes:
    platforms = ", ".join(f'"{p.platform}"' for p in host.platforms)
    return (
        "# managed by buildfleet\n"
        "# RUN --network=host is allowed only when a build asks for it (--allow network.host).\n"
        'insecure-entitlements = ["network.host"]\n\n'
        "[worker.oci]\n  enabled = true\n  gc = true\n"
        f'  reservedSpace = "{gc.reserved}"\n  maxUsedSpace = "{gc.max_used}"\n  minFreeSpace = "{gc.min_free}"\n'
        f"  max-parallelism = {parallelism}\n"
        f"  platforms = [{platforms}]\n\n"
        "[worker.containerd]\n  enabled = false\n"
        + (
            f'\n# the fleet\'s own registry, plain HTTP on the fleet network\n[registry."{registry}"]\n'
            "  http = true\n  insecure = true\n"
            if registry
            else ""
        )
    ).encode()


@dataclass(frozen=True)
class ConfigureOptions:
    buildkitd_port: int = 1234  # where buildkitd listens on the host itself
    idle_stop_minutes: int = 0  # power the host off after this long unused (0: never)
    allow_docker_upgrade: bool = True
    qemu_source: str = "auto"  # pinned (static QEMU 10) | distro (qemu-user-static) | auto
    docker_source: str = "distro"  # distro (docker.io) | docker (Docker's apt repository)
    block_metadata: bool = False  # close the instance metadata service to the host after boot (AWS hosts)
    gc: BuildkitGc = DEFAULT_GC  # BuildKit's garbage collection limits
    max_parallelism: int = 0  # build steps at once per buildkitd (0: the host's CPUs)
    exchange: ExchangeDesired | None = None  # the OIDC token exchange and the host it runs on


def qemu_arches(host: InventoryHost) -> tuple[str, ...]:
    """QEMU interpreters a host needs: one per platform the placement gave it to emulate."""
    return tuple(sorted({parse_platform(p.platform).qemu_arch for p in host.platforms if not p.native}))


def _qemu_source(host: InventoryHost, artifacts: ArtifactSource, options: ConfigureOptions):
    """The fastest QEMU available: the pinned static build unless told or forced otherwise."""
    if options.qemu_source == "distro":
        return None
    if options.qemu_source == "pinned" or artifacts.has_qemu(host.arch):
        return artifacts.qemu
    return None


def server_names(host: InventoryHost, pool: Pool | None) -> list[str]:
    """Every name a client may verify this host's buildkitd by: its own addresses, and its
    pool's balancer (TLS passes through the balancer to whichever member it picks)."""
    names = [host.address, host.private_address, "127.0.0.1", host.name]
    return names + ([pool.address, pool.name] if pool else [])


def steps_for(
    host: InventoryHost,
    artifacts: ArtifactSource,
    ca: FleetCA,
    options: ConfigureOptions,
    registry: str = "",
    pool: Pool | None = None,
) -> list[Step]:
    steps = [
        fleet_step(ca.held()),
        docker_step(DockerDesired(host.ssh_user, options.allow_docker_upgrade, options.docker_source)),
        privileged_step(),
        buildx_step(artifacts.buildx),
    ]
    arches = qemu_arches(host)
    if arches and host.role == EMULATION:
        steps.append(binfmt_step(QemuDesired(arches, _qemu_source(host, artifacts, options))))
    if options.block_metadata:
        steps.append(metadata_step())  # before buildkitd: no build step ever sees the metadata service
    server = ca.server(host.name, server_names(host, pool))
    # whom buildkitd lets in: the fleet's CA (and during a rotation the one it replaces), and each
    # consumer's own issuing CA not revoked (see consumers)
    client_trust = ca.trust() + Consumers(ca.directory).trust()
    steps.append(
        buildkitd_step(
            BuildkitdDesired(
                binaries=artifacts.buildkit,
                port=options.buildkitd_port,
                ca_pem=client_trust,
                cert_pem=server.cert,
                key_pem=server.key,
                config=buildkitd_config(host, registry, options.gc, options.max_parallelism),
            )
        )
    )
    here = options.exchange if options.exchange and options.exchange.host == host.name else None
    steps.append(exchange_step(here, server.cert))
    steps.append(idle_step(IdleDesired(options.idle_stop_minutes, options.buildkitd_port)))
    steps.append(versions_step(PinnedVersions(BUILDKIT_VERSION, BUILDX_VERSION)))
    steps.append(cache_step())
    return steps


def configure(
    inventory: Inventory,
    state: FleetState,
    artifacts: ArtifactSource,
    options: ConfigureOptions = ConfigureOptions(),
    check_only: bool = False,
    progress: Progress = lambda host, step, done, total: None,
    rolling: Rolling | None = None,
) -> FleetReport:
    """Bring every host to the desired state; ``check_only`` reports what differs instead.
    Restarts roll through the fleet as ``rolling`` lets them (see hosts.rolling)."""
    ca = FleetCA(state.root / "tls")
    ca.client()  # made before the hosts so the builder stage finds it
    if inventory.features.instance_metadata:
        options = replace(options, block_metadata=True)

    def run() -> FleetReport:
        return run_fleet(
            inventory.hosts,
            lambda host: connect(host, state),
            lambda host: steps_for(
                host, artifacts, ca, options, inventory.registry, inventory.pool(host.pool) if host.pool else None
            ),
            check_only,
            progress,
            rolling,
        )

    report = run()
    if options.exchange is None or check_only or not report.ok or not adopt_exchange_ca(inventory, state, options):
        return report
    return _followed(report, run())  # the hosts' bundle gains the exchange's CA: one more rolling pass


def adopt_exchange_ca(inventory: Inventory, state: FleetState, options: ConfigureOptions) -> bool:
    """Take the exchange's CA certificate (made on its host, its key staying there) into the
    fleet's consumers, so the hosts trust what it signs; True when that changed the bundle. A
    revoked exchange stays revoked: what it signs is trusted nowhere."""
    assert options.exchange is not None
    consumers = Consumers(state.root / "tls")
    if CLIENT in consumers.names() and consumers.revoked(CLIENT):
        return False
    found = [h for h in inventory.hosts if h.name == options.exchange.host]
    if not found:  # a part of the fleet configured alone (doctor's sleeping hosts left out)
        return False
    host = found[0]
    transport = connect(host, state)
    try:
        shown = gather(transport, {"ca": ca_fact()})["ca"]
    finally:
        transport.close()
    if shown is None:
        raise BuildfleetError(f"{host.name}: the token exchange made no CA (see its log): run configure again")
    if consumers.trust_of(CLIENT) == shown:
        return False
    consumers.adopt(CLIENT, shown)
    return True


def _followed(first: FleetReport, then: FleetReport) -> FleetReport:
    """Each host's steps of the first pass, and what the second one changed or failed."""
    later = {h.host: h.steps for h in then.hosts}
    return FleetReport(
        tuple(
            HostReport(h.host, h.steps + tuple(s for s in later.get(h.host, ()) if s.status != UNCHANGED))
            for h in first.hosts
        )
    )


def _apply(host: InventoryHost, state: FleetState, steps: Sequence[Step]) -> None:
    report = run_host(connect(host, state), steps)
    if not report.ok:
        raise BuildfleetError("; ".join(f"{host.name}: {r.step}: {r.detail}" for r in report.steps))


@contextmanager
def distro_qemu(
    host: InventoryHost,
    state: FleetState,
    artifacts: ArtifactSource,
    options: ConfigureOptions,
    arches: Sequence[str],
) -> Iterator[dict[str, str]]:
    """The host's QEMU for ``arches`` switched to the distribution's qemu-user-static with its
    default CPU (how the CircleCI post this project started from emulates), and put back to what
    configure gives the host afterwards, whether the body worked or not. Yields what the host's
    kernel then runs for each (``qemu-ARCH`` -> interpreter, and the package's version)."""
    _apply(host, state, [binfmt_step(QemuDesired(tuple(sorted(arches)), None))])
    try:
        transport = connect(host, state)
        try:
            found = gather(transport, {"binfmt": f.BinfmtStatus(), "qemu": f.PackageVersion("qemu-user-static")})
        finally:
            transport.close()
        registered = {f"qemu-{a}": found["binfmt"].entries[f"qemu-{a}"].interpreter for a in arches}
        yield {**registered, "qemu-user-static": found["qemu"] or ""}
    finally:
        own = qemu_arches(host)
        if own:
            _apply(host, state, [binfmt_step(QemuDesired(own, _qemu_source(host, artifacts, options)))])
