"""What a target needs on the operator's machine, checked before ``up`` and without touching any
host: each target's ``preflight`` is built from these, every outcome a ``Check`` with its fix."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path

from provisioning.checks import Check, failed, passed
from provisioning.errors import BuildfleetError
from provisioning.extras import install_hint
from provisioning.remote.docker import Docker

MACHINE = "this machine"


CORE_PACKAGES = ("fabric", "paramiko", "cryptography", "PyYAML", "rich")
AWS_PACKAGES = ("pulumi", "pulumi-aws", "pulumi-tls", "boto3")


def python_checks(packages: Iterable[str] = CORE_PACKAGES) -> list[Check]:
    """Python itself and the distributions buildfleet imports, with their versions."""
    version = ".".join(str(part) for part in sys.version_info[:3])
    checks = [
        passed(MACHINE, "python", f"Python {version} ({sys.executable})")
        if sys.version_info >= (3, 10)
        else failed(MACHINE, "python", f"Python {version}", "buildfleet needs Python 3.10 or newer")
    ]
    return checks + package_checks(packages)


def package_checks(packages: Iterable[str], extra: str = "") -> list[Check]:
    checks = []
    for name in packages:
        try:
            checks.append(passed(MACHINE, name, f"{name} {metadata.version(name)}"))
        except metadata.PackageNotFoundError:
            fix = install_hint(extra) if extra else f"pip install {name}"
            checks.append(failed(MACHINE, name, f"{name} is not installed", fix))
    return checks


def tool_check(tool: str, package: str, why: str) -> Check:
    found = shutil.which(tool)
    if found:
        return passed(MACHINE, tool, f"{found}")
    return failed(MACHINE, tool, f"{tool} is not on PATH ({why})", f"install {package}")


def attempt(node: str, check: str, probe: Callable[[], str], fix: str) -> Check:
    """A check whose probe returns what it saw, or raises a BuildfleetError saying what is wrong."""
    try:
        return passed(node, check, probe())
    except BuildfleetError as error:
        return failed(node, check, str(error), fix)


def docker_checks(docker: Docker) -> list[Check]:
    """The local engine and this machine's buildx plugin, as the local and vm targets use them."""

    def engine() -> str:
        docker.ping()
        return "engine " + docker.run(["version", "--format", "{{.Server.Version}}"]).stdout.strip()

    def buildx() -> str:
        return docker.run(["buildx", "version"]).stdout.strip()

    return [
        attempt(MACHINE, "docker", engine, "install docker.io and start dockerd (.ci/prepare does both, as root)"),
        attempt(MACHINE, "buildx", buildx, "install the buildx plugin (.ci/prepare installs the pinned one)"),
    ]


def binfmt_check(table: Path = Path("/proc/sys/fs/binfmt_misc")) -> Check:
    if (table / "status").exists():
        return passed(MACHINE, "binfmt_misc", f"{table} mounted")
    return failed(
        MACHINE,
        "binfmt_misc",
        f"{table} is not mounted: the emulation host cannot register QEMU",
        "mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc (as root)",
    )
