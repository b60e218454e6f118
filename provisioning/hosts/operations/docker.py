"""The docker step: Docker ≥ 19.03 installed, upgraded or refused, running, and the SSH user in its group."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from provisioning.hosts.actions import Decision, Run, WriteFile, refuse
from provisioning.hosts.operations import APT, APT_UPDATE, DPKG_REPAIR, Step, apt_install
from provisioning.hosts.services import Service, init_system, service_paths
from provisioning.remote import facts as f

MIN_DOCKER = f.Version((19, 3), "19.03")
DOCKERD = Service("docker", ("/usr/sbin/dockerd",), "Docker Engine")
POLICY_RC_D = "/usr/sbin/policy-rc.d"

# Docker's own apt repository (docs.docker.com/engine/install/debian and /ubuntu): $1 is
# the distribution ID (debian|ubuntu), $2 its codename, both read from /etc/os-release.
DOCKER_REPO_INSTALL = (
    "set -e; install -m 0755 -d /etc/apt/keyrings; "
    'curl -fsSL "https://download.docker.com/linux/$1/gpg" -o /etc/apt/keyrings/docker.asc; '
    "chmod a+r /etc/apt/keyrings/docker.asc; "
    'echo "deb [arch=$(dpkg --print-architecture) signed-by=/etc/apt/keyrings/docker.asc] '
    'https://download.docker.com/linux/$1 $2 stable" > /etc/apt/sources.list.d/docker.list; '
    f"{APT_UPDATE} && DEBIAN_FRONTEND=noninteractive {APT} install -y docker-ce docker-ce-cli containerd.io"
)


@dataclass(frozen=True)
class DockerDesired:
    ssh_user: str
    allow_upgrade: bool = True
    source: str = "distro"  # distro: the OS's docker.io; docker: Docker's apt repository (docker-ce)

    def install(self, os_release: Mapping[str, str]) -> Run:
        if self.source == "docker":
            return Run(
                (
                    "sh",
                    "-c",
                    DOCKER_REPO_INSTALL,
                    "docker-repo",
                    os_release.get("ID", ""),
                    os_release.get("VERSION_CODENAME", ""),
                ),
                "install docker-ce from Docker's apt repository",
            )
        return Run(apt_install("docker.io"), "install docker.io")


def docker_step(desired: DockerDesired) -> Step:
    facts: dict[str, f.Fact[Any]] = {
        "os": f.OsRelease(),
        "init": f.InitSystem(),
        "client": f.DockerClient(),
        "server": f.DockerServer(),
        "groups": f.UserGroups(desired.ssh_user),
        "dpkg_interrupted": f.DpkgInterrupted(),
    }

    def decide(got: Mapping[str, Any]) -> Decision:
        os_id = got["os"].get("ID", "")
        if os_id not in ("debian", "ubuntu") and "debian" not in got["os"].get("ID_LIKE", ""):
            return refuse(
                f"unsupported OS {got['os'].get('PRETTY_NAME', os_id)!r}: buildfleet installs Docker with apt"
            )
        client: f.Version | None = got["client"]
        if client is not None and client < MIN_DOCKER and not desired.allow_upgrade:
            return refuse(
                f"Docker {client} is older than {MIN_DOCKER} and upgrades are disabled "
                "(allow them, or upgrade Docker by hand)"
            )
        init = init_system(got["init"])
        install = client is None or client < MIN_DOCKER
        repair = got["dpkg_interrupted"]
        actions: list = []
        if (install or repair) and not init.runs_package_daemons:
            actions.append(
                WriteFile(
                    POLICY_RC_D,
                    b"#!/bin/sh\nexit 101\n",
                    "0755",
                    "keep apt from starting daemons: there is no init system",
                )
            )
        if repair:
            # A host stopped during an earlier run's apt: apt refuses every install until this ran.
            actions.append(Run(("sh", "-c", DPKG_REPAIR), "finish the dpkg run an earlier run left interrupted"))
        if install:
            why = "Docker is not installed" if client is None else f"Docker {client} is older than {MIN_DOCKER}"
            package = desired.install(got["os"])
            actions.append(Run(package.argv, f"{why}: {package.why}"))
        # systemd: docker.io brings its own unit; without an init system buildfleet supervises dockerd
        files = [] if init.runs_package_daemons else init.files(DOCKERD, got["files"])
        actions.extend(files)
        if install or files or got["server"] is None:
            why = "start the Docker engine and wait until it answers"
            actions.append(init.start(DOCKERD, install and client is not None, "docker version", why))
        if desired.ssh_user != "root" and "docker" not in got["groups"]:
            actions.append(Run(("usermod", "-aG", "docker", desired.ssh_user), f"let {desired.ssh_user} use Docker"))
        return Decision(tuple(actions), f"Docker {client} ≥ {MIN_DOCKER}, engine {got['server']} running")

    return Step("docker", facts | {"files": f.FileDigests(service_paths(DOCKERD))}, decide)
