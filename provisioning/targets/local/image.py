"""The local hosts' image: Debian bookworm from the Debian mirror, no Docker Hub needed.

mmdebstrap writes a minimal root filesystem (sshd, iptables and kmod for the inner
Docker, systemd for hosts that boot it), which ``docker import`` turns into an image.
The tarball is cached by a digest of everything that goes into it, so a second run
on the same machine imports in seconds and a change to the recipe rebuilds.
"""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from provisioning.errors import BuildfleetError
from provisioning.remote.docker import Docker
from provisioning.removal import unlink_inside

SUITE = "bookworm"
PACKAGES = (
    "openssh-server",
    "iproute2",
    "procps",
    "ca-certificates",
    "python3",
    "sudo",
    "iptables",
    "kmod",
    "curl",
    "gnupg",
    "xz-utils",
    "systemd-sysv",
    "dbus",  # hosts can boot systemd, as EC2 hosts do (localInit systemd)
)
INIT_PATH = "/usr/local/sbin/buildfleet-host-init"
REPOSITORY = "buildfleet/host"


@dataclass(frozen=True)
class HostImageRecipe:
    mirror: str
    suite: str = SUITE
    packages: tuple[str, ...] = PACKAGES

    def init_script(self) -> bytes:
        return resources.files("provisioning.targets.local").joinpath("host-init.sh").read_bytes()

    def digest(self) -> str:
        text = "\n".join([self.mirror, self.suite, *self.packages]).encode() + self.init_script()
        return hashlib.sha256(text).hexdigest()[:12]

    @property
    def tag(self) -> str:
        return f"{REPOSITORY}:{self.suite}-{self.digest()}"

    def mmdebstrap_args(self, init_file: Path, output: Path) -> list[str]:
        return [
            "mmdebstrap",
            "--variant=minbase",
            "--quiet",
            f"--include={','.join(self.packages)}",
            f"--customize-hook=upload {init_file} {INIT_PATH}",
            f'--customize-hook=chmod 0755 "$1{INIT_PATH}"',
            # every container makes its own host keys at start: none may ship in the image
            '--customize-hook=rm -f "$1"/etc/ssh/ssh_host_*',
            '--customize-hook=mkdir -p "$1/etc/buildfleet/boot.d"',
            self.suite,
            str(output),
            self.mirror,
        ]


def debian_mirror(sources: Path = Path("/etc/apt")) -> str:
    """The Debian mirror this machine already uses, so the hosts use the same one."""
    for path in sorted(sources.glob("sources.list.d/*.sources")):
        for line in path.read_text().splitlines():
            if line.startswith("URIs:"):
                for uri in line.split()[1:]:
                    if uri.rstrip("/").endswith("/debian"):
                        return uri.rstrip("/")
    legacy = sources / "sources.list"
    if legacy.exists():
        for line in legacy.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and "security" not in parts[2]:
                return parts[1].rstrip("/")
    raise BuildfleetError("no Debian mirror found in /etc/apt; the local target needs one to build host images")


def ensure_host_image(docker: Docker, recipe: HostImageRecipe, cache_dir: Path) -> str:
    """Return the image tag, building the rootfs and importing it only when missing."""
    if docker.image_exists(recipe.tag):
        return recipe.tag
    cache_dir.mkdir(parents=True, exist_ok=True)
    tarball = cache_dir / f"host-{recipe.suite}-{recipe.digest()}.tar"
    if not tarball.exists():
        init_file = cache_dir / f"host-init-{recipe.digest()}.sh"
        init_file.write_bytes(recipe.init_script())
        partial = tarball.with_suffix(".partial.tar")
        result = subprocess.run(recipe.mmdebstrap_args(init_file, partial), capture_output=True, text=True)
        if result.returncode != 0:
            unlink_inside(partial, cache_dir)
            tail = "\n".join(result.stderr.strip().splitlines()[-5:])
            raise BuildfleetError(f"building the host image with mmdebstrap failed (exit {result.returncode}):\n{tail}")
        partial.rename(tarball)
    docker.run(["import", "--change", f'CMD ["{INIT_PATH}"]', str(tarball), recipe.tag])
    return recipe.tag
