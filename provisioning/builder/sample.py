"""Build the sample through the fleet's builder, push it, and check where each part ran.

The check reads the pushed manifest list back from the registry: every requested
platform must be there with the right architecture/variant, its recorded ``uname -m``
must be that platform's, and the node addresses it recorded must be those of the host
the placement chose for it.
"""

from __future__ import annotations

import re
import shutil
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Sequence

from provisioning.builder.builder import Buildx
from provisioning.errors import BuildfleetError
from provisioning.inventory import Inventory
from provisioning.platforms import Platform
from provisioning.registry_client import RegistryClient

REPOSITORY = "buildfleet-sample"
# uname -m a step reports on each platform (an amd64 kernel reports x86_64 to 386 code,
# an arm64 kernel armv8l to 32-bit ARM code; QEMU reports the emulated CPU)
UNAME = {
    "linux/amd64": {"x86_64"}, "linux/386": {"i686", "i386", "x86_64"},
    "linux/arm64": {"aarch64"}, "linux/arm/v7": {"armv7l", "armv8l"}, "linux/arm/v6": {"armv6l", "armv7l", "armv8l"},
    "linux/ppc64le": {"ppc64le"}, "linux/s390x": {"s390x"}, "linux/riscv64": {"riscv64"},
}


def busybox_name(platform: Platform) -> str:
    return f"busybox-{platform.architecture}{platform.variant}"


def prepare_context(directory: Path, busybox_dir: Path, platforms: Sequence[Platform]) -> Path:
    """Dockerfile plus one static busybox per platform (from fetch-busybox.sh)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "Dockerfile").write_bytes(resources.files("provisioning.sample").joinpath("Dockerfile").read_bytes())
    for platform in platforms:
        source = busybox_dir / busybox_name(platform)
        if not source.exists():
            raise BuildfleetError(f"no static busybox for {platform} in {busybox_dir}: "
                                  "run provisioning/artifacts/debian/fetch-busybox.sh")
        shutil.copy2(source, directory / source.name)
    return directory


@dataclass(frozen=True)
class BuiltPlatform:
    platform: str
    host: str
    native: bool
    uname: str
    ran_on: str  # the host whose address the step recorded
    ok: bool
    problem: str = ""


def build_args(builder: str, platforms: Sequence[Platform], output: str, context: Path) -> list[str]:
    """``docker buildx build`` without the cache, so every step really runs where placed."""
    return ["buildx", "build", "--builder", builder, "--platform", ",".join(str(p) for p in platforms),
            "--allow", "network.host", "--provenance=false", "--no-cache", "--progress", "plain",
            "--output", output, str(context)]


def build_sample(buildx: Buildx, builder: str, inventory: Inventory, context: Path,
                 platforms: Sequence[Platform], tag: str) -> tuple[str, float]:
    """One multi-platform build, pushed as a manifest list; returns the image and seconds."""
    if not inventory.registry:
        raise BuildfleetError("the fleet has no registry to push to")
    image = f"{inventory.registry}/{REPOSITORY}:{tag}"
    start = time.monotonic()
    buildx.run(build_args(builder, platforms, f"type=image,name={image},push=true,registry.insecure=true", context))
    return image, round(time.monotonic() - start, 2)


def time_each(buildx: Buildx, builder: str, context: Path, platforms: Sequence[Platform]) -> dict[str, float]:
    """Seconds to build each platform alone (not pushed): what each node takes for it."""
    seconds = {}
    for platform in platforms:
        start = time.monotonic()
        buildx.run(build_args(builder, [platform], "type=cacheonly", context))
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
            results.append(BuiltPlatform(name, host, native, "", "", False, "missing from the manifest list"))
            continue
        files = registry.files(REPOSITORY, listed[name], "buildfleet/")
        uname = files.get("buildfleet/uname", "")
        ran_on = sorted({by_address[a] for a in _addresses(files.get("buildfleet/addresses", "")) if a in by_address})
        problems = []
        if uname not in UNAME.get(name, {uname}):
            problems.append(f"uname -m says {uname!r}")
        if ran_on != [host]:
            problems.append(f"ran on {', '.join(ran_on) or 'an unknown node'}, planned {host}")
        results.append(BuiltPlatform(name, host, native, uname, ", ".join(ran_on), not problems, "; ".join(problems)))
    return results
