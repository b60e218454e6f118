"""Build the sample through the fleet's builder, push it, and check where each part ran.

The check reads the pushed manifest list back from the registry: every requested
platform must be there with the right architecture/variant, the program compiled in
its step and the step's ``uname -m`` must be that platform's (see evidence.py), and the
node addresses it recorded must be those of the host the placement chose for it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from provisioning.builder import evidence
from provisioning.builder.builder import Buildx
from provisioning.builder.registry_client import RegistryClient
from provisioning.errors import BuildfleetError
from provisioning.inventory import Inventory
from provisioning.platforms import Platform

REPOSITORY = "buildfleet-sample"


def _tar_name(platform: Platform) -> str:
    return f"{platform.architecture}{platform.variant}"


@dataclass(frozen=True)
class SampleSources:
    """Where the build reads from: nothing is copied, buildx sends each node only the
    files its platforms reference (one userland tar and one busybox per platform)."""

    userland: Path  # fetch-userland.sh output: userland-<arch><variant>.tar (the main context)
    busybox: Path  # fetch-busybox.sh output: busybox-<arch><variant>
    sample: Path  # the Dockerfile and hello.c shipped in provisioning/builder/files

    @classmethod
    def from_artifacts(cls, artifacts: Path, platforms: Sequence[Platform]) -> SampleSources:
        """The newest userland and busybox sets, refusing one that lacks a platform."""
        sources = cls(
            _newest(artifacts / "userland", "fetch-userland.sh"),
            _newest(artifacts / "busybox", "fetch-busybox.sh"),
            Path(str(resources.files("provisioning.builder").joinpath("files"))),
        )
        for platform in platforms:
            for path, script in (
                (sources.userland / f"userland-{_tar_name(platform)}.tar", "fetch-userland.sh"),
                (sources.busybox / f"busybox-{_tar_name(platform)}", "fetch-busybox.sh"),
            ):
                if not path.is_file():
                    raise BuildfleetError(
                        f"no {path.name} for {platform} in {path.parent}: run provisioning/artifacts/debian/{script}"
                    )
        return sources


def _newest(directory: Path, script: str) -> Path:
    sets = [d for d in directory.glob("*") if (d / "SHA256SUMS").is_file()]
    if not sets:
        raise BuildfleetError(
            f"nothing in {directory}: run provisioning/artifacts/debian/{script} {directory.parent} (or .ci/prepare)"
        )
    return max(sets, key=lambda d: (d / "SHA256SUMS").stat().st_mtime)


def context_args(sources: SampleSources, dockerfile_dir: Path | None = None, name: str = "sample") -> list[str]:
    """A Dockerfile on the userland stage and its named contexts: ``busybox``, and ``name`` for the
    directory holding the Dockerfile (the sample's unless another is given). The userland
    directory, the main context, goes last on the command line."""
    directory = dockerfile_dir or sources.sample
    return [
        "--build-context",
        f"busybox={sources.busybox}",
        "--build-context",
        f"{name}={directory}",
        "--file",
        str(directory / "Dockerfile"),
    ]


@dataclass(frozen=True)
class BuiltPlatform:
    platform: str
    host: str  # the host or pool the placement chose
    native: bool
    uname: str
    program: str  # what the program compiled in the step printed
    ran_on: str  # the host whose address the step recorded (a member, for a pool)
    ok: bool
    problem: str = ""


CACHE_REPOSITORY = "buildfleet-cache"


def cache_args(registry: str, node: str) -> list[str]:
    """Registry cache for the builds of one node (a pool, or a host): imported before the build
    and exported after it with every intermediate layer (mode=max), so a pool member that never
    built the sample reuses what another one did instead of unpacking the userland again. One
    ref per node: with one ref for a multi-node build each node's export replaces the others'
    (docker/buildx#1044). Uncompressed: the fleet's registry is on this machine."""
    ref = f"ref={registry}/{CACHE_REPOSITORY}:{node},registry.insecure=true"
    return [
        "--cache-from",
        f"type=registry,{ref}",
        "--cache-to",
        f"type=registry,{ref},mode=max,compression=uncompressed",
    ]


def node_groups(inventory: Inventory, platforms: Sequence[Platform]) -> dict[str, list[Platform]]:
    """node (a pool, or a host outside one) -> the requested platforms it builds, in host order."""
    wanted = {str(p): p for p in platforms}
    groups: dict[str, list[Platform]] = {}
    for host in inventory.hosts:
        for placed in host.platforms:
            group = groups.setdefault(host.node, [])
            if placed.platform in wanted and wanted[placed.platform] not in group:
                group.append(wanted[placed.platform])
    return {node: group for node, group in groups.items() if group}


def build_args(
    builder: str,
    platforms: Sequence[Platform],
    output: str,
    sources: SampleSources,
    build_id: str = "",
    cache: Sequence[str] = (),
) -> list[str]:
    """``docker buildx build`` with the compile stage uncached, so it really runs where placed
    (the unpacked userland stays cached on each node); ``build_id`` tells apart builds that
    are otherwise the same; ``cache``: cache import/export arguments."""
    return [
        "buildx",
        "build",
        "--builder",
        builder,
        "--platform",
        ",".join(str(p) for p in platforms),
        "--allow",
        "network.host",
        "--provenance=false",
        "--no-cache-filter",
        "compile",
        *(["--build-arg", f"BUILD_ID={build_id}"] if build_id else []),
        *cache,
        "--progress",
        "plain",
        *context_args(sources),
        "--output",
        output,
        str(sources.userland),
    ]


def _push(image: str) -> str:
    return f"type=image,name={image},push=true,registry.insecure=true"


def build_sample(
    buildx: Buildx,
    builder: str,
    inventory: Inventory,
    sources: SampleSources,
    platforms: Sequence[Platform],
    tag: str,
    registry_cache: bool = False,
) -> tuple[str, float]:
    """One multi-platform build, pushed as a manifest list; returns the image and seconds.
    With ``registry_cache``: one build per node at once, each with its node's cache, pushed
    under ``TAG-NODE``, then one manifest list of them all under ``TAG``."""
    if not inventory.registry:
        raise BuildfleetError("the fleet has no registry to push to")
    image = f"{inventory.registry}/{REPOSITORY}:{tag}"
    start = time.monotonic()
    if not registry_cache:
        buildx.run(build_args(builder, platforms, _push(image), sources))
        return image, round(time.monotonic() - start, 2)
    groups = node_groups(inventory, platforms)
    with ThreadPoolExecutor(len(groups)) as threads:
        builds = [
            threads.submit(
                buildx.run,
                build_args(
                    builder, group, _push(f"{image}-{node}"), sources, cache=cache_args(inventory.registry, node)
                ),
            )
            for node, group in groups.items()
        ]
        for build in builds:
            build.result()  # a failed build raises here, naming it
    RegistryClient(inventory.registry).merge(REPOSITORY, tag, [f"{tag}-{node}" for node in groups])
    return image, round(time.monotonic() - start, 2)


def time_each(buildx: Buildx, builder: str, sources: SampleSources, platforms: Sequence[Platform]) -> dict[str, float]:
    """Seconds to build each platform alone (not pushed): what each node takes for it."""
    seconds = {}
    for platform in platforms:
        start = time.monotonic()
        buildx.run(build_args(builder, [platform], "type=cacheonly", sources))
        seconds[str(platform)] = round(time.monotonic() - start, 2)
    return seconds


def ran_on(inventory: Inventory, addresses: str) -> list[str]:
    """The fleet's hosts whose private addresses a step's ``ip -4 addr`` output shows."""
    by_address = {h.private_address: h.name for h in inventory.hosts if h.private_address}
    return sorted({by_address[a] for a in re.findall(r"inet (\d+\.\d+\.\d+\.\d+)/", addresses) if a in by_address})


def verify_sample(inventory: Inventory, tag: str, platforms: Sequence[Platform]) -> list[BuiltPlatform]:
    registry = RegistryClient(inventory.registry)
    index = registry.index(REPOSITORY, tag)
    listed = {}
    for entry in index["manifests"]:
        p = entry.get("platform", {})
        key = "/".join(filter(None, [p.get("os"), p.get("architecture"), p.get("variant")]))
        listed[key] = entry["digest"]
    planned: dict[str, tuple[str, bool, set[str]]] = {}  # platform -> (host or pool, native, hosts that may run it)
    for h in inventory.hosts:
        for p in h.platforms:
            planned.setdefault(p.platform, (h.node, p.native, set()))[2].add(h.name)
    results = []
    for platform in platforms:
        name = str(platform)
        host, native, members = planned.get(name, ("?", False, set()))
        if name not in listed:
            results.append(BuiltPlatform(name, host, native, "", "", "", False, "missing from the manifest list"))
            continue
        files = registry.files(REPOSITORY, listed[name], "buildfleet/")
        uname, program = (files.get(f"buildfleet/{f}", b"").decode().strip() for f in ("uname", "hello.out"))
        hosts = ran_on(inventory, files.get("buildfleet/addresses", b"").decode())
        native_on = inventory.host(min(members)).arch if native else ""
        problems = evidence.problems(name, uname, program, files.get("buildfleet/hello", b""), native_on)
        if len(hosts) != 1 or hosts[0] not in members:
            problems.append(f"ran on {', '.join(hosts) or 'an unknown node'}, planned {host}")
        results.append(
            BuiltPlatform(name, host, native, uname, program, ", ".join(hosts), not problems, "; ".join(problems))
        )
    return results
