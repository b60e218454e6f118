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
    host: str
    native: bool
    uname: str
    program: str  # what the program compiled in the step printed
    ran_on: str  # the host whose address the step recorded
    ok: bool
    problem: str = ""


def build_args(builder: str, platforms: Sequence[Platform], output: str, sources: SampleSources) -> list[str]:
    """``docker buildx build`` with the compile stage uncached, so it really runs where placed
    (the unpacked userland stays cached on each node)."""
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
        "--progress",
        "plain",
        *context_args(sources),
        "--output",
        output,
        str(sources.userland),
    ]


def build_sample(
    buildx: Buildx, builder: str, inventory: Inventory, sources: SampleSources, platforms: Sequence[Platform], tag: str
) -> tuple[str, float]:
    """One multi-platform build, pushed as a manifest list; returns the image and seconds."""
    if not inventory.registry:
        raise BuildfleetError("the fleet has no registry to push to")
    image = f"{inventory.registry}/{REPOSITORY}:{tag}"
    start = time.monotonic()
    buildx.run(build_args(builder, platforms, f"type=image,name={image},push=true,registry.insecure=true", sources))
    return image, round(time.monotonic() - start, 2)


def time_each(buildx: Buildx, builder: str, sources: SampleSources, platforms: Sequence[Platform]) -> dict[str, float]:
    """Seconds to build each platform alone (not pushed): what each node takes for it."""
    seconds = {}
    for platform in platforms:
        start = time.monotonic()
        buildx.run(build_args(builder, [platform], "type=cacheonly", sources))
        seconds[str(platform)] = round(time.monotonic() - start, 2)
    return seconds


def _addresses(text: str) -> set[str]:
    return set(re.findall(r"inet (\d+\.\d+\.\d+\.\d+)/", text))


def verify_sample(inventory: Inventory, tag: str, platforms: Sequence[Platform]) -> list[BuiltPlatform]:
    registry = RegistryClient(inventory.registry)
    index = registry.index(REPOSITORY, tag)
    listed = {}
    for entry in index["manifests"]:
        p = entry.get("platform", {})
        key = "/".join(filter(None, [p.get("os"), p.get("architecture"), p.get("variant")]))
        listed[key] = entry["digest"]
    planned = {p.platform: (h.name, p.native) for h in inventory.hosts for p in h.platforms}
    by_address = {h.private_address: h.name for h in inventory.hosts if h.private_address}
    results = []
    for platform in platforms:
        name = str(platform)
        host, native = planned.get(name, ("?", False))
        if name not in listed:
            results.append(BuiltPlatform(name, host, native, "", "", "", False, "missing from the manifest list"))
            continue
        files = registry.files(REPOSITORY, listed[name], "buildfleet/")
        uname, program = (files.get(f"buildfleet/{f}", b"").decode().strip() for f in ("uname", "hello.out"))
        addresses = files.get("buildfleet/addresses", b"").decode()
        ran_on = sorted({by_address[a] for a in _addresses(addresses) if a in by_address})
        native_on = inventory.host(host).arch if native else ""
        problems = evidence.problems(name, uname, program, files.get("buildfleet/hello", b""), native_on)
        if ran_on != [host]:
            problems.append(f"ran on {', '.join(ran_on) or 'an unknown node'}, planned {host}")
        results.append(
            BuiltPlatform(name, host, native, uname, program, ", ".join(ran_on), not problems, "; ".join(problems))
        )
    return results
