"""Operations: compare a host's facts with the desired state, return only what is needed.

Each step names the facts it reads and a pure ``decide(facts) -> Decision``. The executor
applies the decision, reads the facts again and decides again: a step has converged
only when that second decision asks for nothing, which is how every step is verified.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from provisioning.advisories import open_runc_cves, runc_fix
from provisioning.artifacts import Artifact, PinnedQemu
from provisioning.certs import issued_by_any
from provisioning.hosts.actions import Decision, Run, Upload, WriteFile, disruptive, no_change, refuse
from provisioning.hosts.services import InitSystem, Service, differing, init_system, service_paths
from provisioning.platforms import UNAME_TO_ARCH
from provisioning.remote import facts as f

MIN_DOCKER = f.Version((19, 3), "19.03")
APT = "apt-get -o DPkg::Lock::Timeout=600 -q"  # wait for cloud-init's apt instead of failing
# DPkg::Lock::Timeout covers the dpkg lock only; `apt-get update` fails at once on the lists
# lock (/var/lib/apt/lists/lock) while cloud-init's apt holds it: retry that case for 10 min.
APT_UPDATE = (
    "i=0; until out=$(apt-get -q update 2>&1); do "
    'case "$out" in *"Could not get lock"*) ;; *) printf "%s\\n" "$out" >&2; exit 1;; esac; '
    'i=$((i+1)); [ $i -ge 300 ] && { printf "%s\\n" "$out" >&2; exit 1; }; sleep 2; done'
)
BUILDX_PLUGIN = "/usr/local/lib/docker/cli-plugins/docker-buildx"
BUILDKIT_BIN = "/usr/local/bin"
BUILDKIT_ETC = "/etc/buildkit"
DOCKERD = Service("docker", ("/usr/sbin/dockerd",), "Docker Engine")
POLICY_RC_D = "/usr/sbin/policy-rc.d"


@dataclass(frozen=True)
class Step:
    name: str
    facts: Mapping[str, f.Fact]
    decide: Callable[[Mapping[str, Any]], Decision]


def apt_install(*packages: str) -> tuple[str, ...]:
    names = " ".join(packages)  # constants of this module, never user input
    return (
        "sh",
        "-c",
        f"{APT_UPDATE} && DEBIAN_FRONTEND=noninteractive {APT} install -y --no-install-recommends {names}",
    )


# What dpkg itself says to run after an interruption, then let apt finish what was half done.
# A package cut off mid-unpack is left "half-installed, reinstall required" (dpkg-query's
# abbreviated status ``iHR``): ``dpkg --configure -a`` then fails on whatever depends on it
# ("very bad inconsistent state; you should reinstall it"), so apt reinstalls those first.
DPKG_REPAIR = (
    "export DEBIAN_FRONTEND=noninteractive; dpkg --configure -a; "
    "broken=$(dpkg-query -W -f='${db:Status-Abbrev} ${binary:Package}\\n' "
    "| awk '$1 ~ /R/ || substr($1, 2, 1) == \"H\" {print $2}'); "
    f'if [ -n "$broken" ]; then {APT_UPDATE} && {APT} install --reinstall -y $broken || exit 1; fi; '
    f"dpkg --configure -a && {APT} -f install -y"
)


# --- Docker --------------------------------------------------------------------------

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


# --- privileged containers on hosts that lack CAP_SYS_RESOURCE --------------------------

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


# --- buildx ---------------------------------------------------------------------------


def buildx_step(artifact_for: Callable[[str], Artifact]) -> Step:
    facts: dict[str, f.Fact[Any]] = {"arch": f.Arch(), "files": f.FileDigests((BUILDX_PLUGIN,))}

    def decide(got: Mapping[str, Any]) -> Decision:
        artifact = artifact_for(got["arch"])
        if got["files"][BUILDX_PLUGIN] == artifact.sha256:
            return no_change(f"buildx {artifact.version} installed (sha256 matches)")
        return Decision(
            (
                Upload(
                    artifact.path,
                    BUILDX_PLUGIN,
                    artifact.sha256,
                    "0755",
                    f"install buildx {artifact.version} for {got['arch']}",
                ),
            )
        )

    return Step("buildx", facts, decide)


# --- binfmt / QEMU ----------------------------------------------------------------------

DISTRO_CONF_DIR = "/usr/lib/binfmt.d"  # qemu-user-static's registration lines
DISTRO_INTERPRETER = "/usr/libexec/qemu-binfmt/{arch}-binfmt-P"
PINNED_DIR = "/usr/local/lib/buildfleet/qemu"  # pinned static QEMU, uploaded by buildfleet
PINNED_CONF_DIR = "/etc/binfmt.d"  # same names: they override /usr/lib/binfmt.d
REGISTER = (
    # $1: directory of qemu-<arch>.conf lines; $2..: qemu arch names (platform data).
    # An existing entry is removed first: with F the kernel keeps its old file open.
    'dir=$1; shift; cd /proc/sys/fs/binfmt_misc; for a in "$@"; do '
    'conf=$dir/qemu-$a.conf; [ -f "$conf" ] || { echo "no $conf: QEMU lacks $a" >&2; exit 1; }; '
    '[ -f qemu-$a ] && echo -1 > qemu-$a; cat "$conf" > register; done'
)
BINFMT_SCRIPT = "/usr/local/lib/buildfleet/register-binfmt"
BINFMT_SERVICE = Service(
    "buildfleet-binfmt",
    (BINFMT_SCRIPT,),
    "Register QEMU interpreters with binfmt_misc",
    after=("local-fs.target",),
    oneshot=True,
)


def with_interpreter(registration: bytes, interpreter: str) -> bytes:
    """A binfmt_misc line (:name:type:offset:magic:mask:interpreter:flags) pointing elsewhere."""
    fields = registration.decode().strip().split(":")
    if len(fields) != 8:
        raise ValueError(f"not a binfmt_misc registration line: {registration[:80]!r}")
    fields[6] = interpreter
    return (":".join(fields) + "\n").encode()


@dataclass(frozen=True)
class QemuDesired:
    arches: tuple[str, ...]  # QEMU names (aarch64, arm, s390x, ...)
    pinned: Callable[[str], PinnedQemu] | None = None  # host arch -> pinned QEMU; None: distro package

    def conf_dir(self) -> str:
        return PINNED_CONF_DIR if self.pinned else DISTRO_CONF_DIR

    def interpreter(self, arch: str) -> str:
        return f"{PINNED_DIR}/{arch}-binfmt-P" if self.pinned else DISTRO_INTERPRETER.format(arch=arch)


def binfmt_step(desired: QemuDesired) -> Step:
    arches = desired.arches
    boot_paths = (BINFMT_SCRIPT, *service_paths(BINFMT_SERVICE))
    paths = (
        *boot_paths,
        *(desired.interpreter(a) for a in arches),
        *(f"{PINNED_CONF_DIR}/qemu-{a}.conf" for a in arches),
    )
    facts: dict[str, f.Fact[Any]] = {
        "arch": f.Arch(),
        "init": f.InitSystem(),
        "qemu": f.PackageVersion("qemu-user-static"),
        "binfmt": f.BinfmtStatus(),
        "files": f.FileDigests(paths),
    }

    def decide(got: Mapping[str, Any]) -> Decision:
        if any(UNAME_TO_ARCH.get(a) == got["arch"] for a in arches):
            return refuse(
                f"refusing to register QEMU for this host's own CPU ({got['arch']}): "
                "it would run every native binary under emulation"
            )
        actions: list = []
        source = "qemu-user-static (distro)"
        if desired.pinned is None:
            if got["qemu"] is None:
                actions.append(Run(apt_install("qemu-user-static"), "install QEMU user-mode emulators"))
            replaced: set[str] = set()
        else:
            pinned = desired.pinned(got["arch"])
            source = f"static QEMU {pinned.version}"
            wanted: list[Upload | WriteFile] = []
            for a in arches:
                binary = pinned.binaries[a]
                wanted.append(
                    Upload(
                        binary.path,
                        desired.interpreter(a),
                        binary.sha256,
                        "0755",
                        f"install static QEMU {pinned.version} for {a}",
                    )
                )
                wanted.append(
                    WriteFile(
                        f"{PINNED_CONF_DIR}/qemu-{a}.conf",
                        with_interpreter(pinned.registrations[a], desired.interpreter(a)),
                        "0644",
                        f"persist the {a} registration",
                    )
                )
            changed = differing(wanted, got["files"])
            actions.extend(changed)
            replaced = {
                a for a in arches if any(isinstance(w, Upload) and w.dest == desired.interpreter(a) for w in changed)
            }
        binfmt: f.Binfmt = got["binfmt"]
        if not binfmt.mounted:
            actions.append(Run(("mount", "-t", "binfmt_misc", "binfmt_misc", f.BINFMT_DIR), "mount binfmt_misc"))
        stale = tuple(a for a in arches if a in replaced or not binfmt.registered(a, desired.interpreter(a)))
        if stale:
            actions.append(
                Run(
                    ("sh", "-c", REGISTER, "register", desired.conf_dir(), *stale),
                    f"register {', '.join(stale)} with the F flag",
                )
            )
        actions.extend(_binfmt_at_boot(desired, init_system(got["init"]), got["files"]))
        return Decision(tuple(actions), f"{source}; {', '.join(arches)} registered with F, again at boot")

    return Step("binfmt", facts, decide)


def _binfmt_at_boot(desired: QemuDesired, init: InitSystem, digests: Mapping[str, str | None]) -> list:
    """Register again at every boot, with buildfleet's own script: systemd-binfmt may be
    conditioned out (it is in containers), and tonistiigi/binfmt does not persist at all."""
    script = WriteFile(
        BINFMT_SCRIPT,
        (
            "#!/bin/sh\n# Register QEMU interpreters (managed by buildfleet)\nset -e\n"
            "[ -f /proc/sys/fs/binfmt_misc/status ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc\n"
            f"sh -c '{REGISTER}' register {desired.conf_dir()} {' '.join(desired.arches)}\n"
        ).encode(),
        "0755",
        "install the boot-time registration script",
    )
    changed: list = [*differing([script], digests), *init.files(BINFMT_SERVICE, digests)]
    return changed + init.enable(BINFMT_SERVICE) if changed else changed


# --- buildkitd --------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildkitdDesired:
    binaries: Callable[[str], tuple[Artifact, Artifact]]  # arch -> (buildkitd, buildctl)
    port: int
    ca_pem: bytes = field(repr=False)
    cert_pem: bytes = field(repr=False)
    key_pem: bytes = field(repr=False)
    config: Callable[[int], bytes] = field(repr=False)  # buildkitd.toml for a host of so many CPUs


def buildkitd_service(port: int) -> Service:
    return Service(
        "buildkitd",
        (
            f"{BUILDKIT_BIN}/buildkitd",
            "--config",
            f"{BUILDKIT_ETC}/buildkitd.toml",
            "--addr",
            f.BUILDKITD_SOCKET,
            "--addr",
            f"tcp://0.0.0.0:{port}",
            "--tlscacert",
            f"{BUILDKIT_ETC}/tls/ca.pem",
            "--tlscert",
            f"{BUILDKIT_ETC}/tls/cert.pem",
            "--tlskey",
            f"{BUILDKIT_ETC}/tls/key.pem",
        ),
        "BuildKit daemon (mTLS)",
    )


def fleet_step(fleet_cas: bytes) -> Step:
    """First of all: the host is this fleet's, or new. One whose buildkitd serves a certificate
    of a CA this state does not hold belongs to another copy of the fleet (a teammate's, or state
    made anew), and taking it over would lock its operator out: nothing is changed on it."""
    served = f"{BUILDKIT_ETC}/tls/cert.pem"

    def decide(got: Mapping[str, Any]) -> Decision:
        if got["served"] is None:
            return no_change("no buildkitd certificate yet: a host new to buildfleet")
        if issued_by_any(got["served"], fleet_cas):
            return no_change("buildkitd serves a certificate of this fleet's CA")
        return refuse(
            "buildkitd here serves a certificate of a fleet CA this state does not hold (another operator's "
            "fleet, or state made anew): import that fleet's state (buildfleet state import) rather than take "
            f"the host over; if that state is lost for good, remove {BUILDKIT_ETC}/tls on the host first"
        )

    return Step("fleet", {"served": f.PublicFile(served)}, decide)


def buildkitd_step(desired: BuildkitdDesired) -> Step:
    service = buildkitd_service(desired.port)
    paths = (
        f"{BUILDKIT_BIN}/buildkitd",
        f"{BUILDKIT_BIN}/buildctl",
        f"{BUILDKIT_ETC}/buildkitd.toml",
        f"{BUILDKIT_ETC}/tls/ca.pem",
        f"{BUILDKIT_ETC}/tls/cert.pem",
        f"{BUILDKIT_ETC}/tls/key.pem",
        *service_paths(service),
    )
    facts: dict[str, f.Fact[Any]] = {
        "arch": f.Arch(),
        "init": f.InitSystem(),
        "runc": f.RuncInfo(),
        "files": f.FileDigests(paths),
        "workers": f.BuildkitdWorkers(),
        "cpus": f.CpuCount(),
    }

    def decide(got: Mapping[str, Any]) -> Decision:
        buildkitd, buildctl = desired.binaries(got["arch"])
        digests = got["files"]
        actions: list = []
        if got["runc"] is None:
            actions.append(Run(apt_install("runc"), "install runc (buildkitd's OCI worker needs it; none on PATH)"))
        wanted: list[Upload | WriteFile] = [
            Upload(
                buildkitd.path,
                f"{BUILDKIT_BIN}/buildkitd",
                buildkitd.sha256,
                "0755",
                f"install buildkitd {buildkitd.version}",
            ),
            Upload(
                buildctl.path,
                f"{BUILDKIT_BIN}/buildctl",
                buildctl.sha256,
                "0755",
                f"install buildctl {buildctl.version}",
            ),
            WriteFile(f"{BUILDKIT_ETC}/buildkitd.toml", desired.config(got["cpus"]), "0644", "write buildkitd.toml"),
            WriteFile(f"{BUILDKIT_ETC}/tls/ca.pem", desired.ca_pem, "0644", "install the fleet CA"),
            WriteFile(f"{BUILDKIT_ETC}/tls/cert.pem", desired.cert_pem, "0644", "install the server certificate"),
            WriteFile(f"{BUILDKIT_ETC}/tls/key.pem", desired.key_pem, "0600", "install the server key"),
        ]
        init = init_system(got["init"])
        changed = [*differing(wanted, digests), *init.files(service, digests)]
        actions.extend(changed)
        healthy = got["workers"] is not None and len(got["workers"]) > 0
        if changed or not healthy:
            restart = bool(changed) and healthy
            why = "restart buildkitd (its files changed)" if restart else "start buildkitd"
            start = init.start(service, restart, f.BuildkitdWorkers.command[-1], why)
            actions.append(disruptive(start) if restart else start)
        if not actions:
            return no_change(f"buildkitd {buildkitd.version} up with workers for {' '.join(got['workers'])}")
        return Decision(tuple(actions))

    return Step("buildkitd", facts, decide)


# --- versions -------------------------------------------------------------------------


@dataclass(frozen=True)
class PinnedVersions:
    buildkit: str  # buildkitd and buildctl
    buildx: str


BUILDKIT_MODULE = "github.com/moby/buildkit"
BUILDX_MODULE = "github.com/docker/buildx"


def versions_step(pinned: PinnedVersions) -> Step:
    """What each tool reports of itself against the pinned versions, and runc against its known
    advisories. The install steps before it converge on the pinned files; this one reads what
    actually runs, so doctor shows a host left on old binaries by name and version."""
    facts: dict[str, f.Fact[Any]] = {
        "buildkitd": f.ToolVersion(f"{BUILDKIT_BIN}/buildkitd", ("--version",), BUILDKIT_MODULE),
        "buildctl": f.ToolVersion(f"{BUILDKIT_BIN}/buildctl", ("--version",), BUILDKIT_MODULE),
        "buildx": f.ToolVersion(BUILDX_PLUGIN, ("version",), BUILDX_MODULE),
        "runc": f.RuncInfo(),
    }
    wanted = {"buildkitd": pinned.buildkit, "buildctl": pinned.buildkit, "buildx": pinned.buildx}

    def decide(got: Mapping[str, Any]) -> Decision:
        stale = [
            f"{tool} {got[tool] or 'missing'} (pinned {want})" for tool, want in wanted.items() if got[tool] != want
        ]
        if stale:
            return refuse(f"not the pinned versions: {', '.join(stale)}; buildfleet configure installs them")
        runc = got["runc"]
        found = f"buildkitd, buildctl {pinned.buildkit} and buildx {pinned.buildx} as pinned"
        if runc is None:
            return refuse(f"{found}, but no runc on PATH: buildkitd has no OCI worker without it")
        owner = f" ({runc.package} {runc.package_version})" if runc.package else ""
        cves = open_runc_cves(runc.version, runc.package, runc.changelog_cves)
        warning = runc_fix(runc.version, runc.package, runc.package_version, cves) if cves else ""
        return no_change(f"{found}; runc {runc.version}{owner}", warning)

    return Step("versions", facts, decide)


# --- cache ------------------------------------------------------------------------------


def gigabytes(size: int) -> str:
    return f"{size / 1e9:.1f} GB"


def cache_step() -> Step:
    """BuildKit's cache against the limits buildkitd enforces and the disk it lives on: what the
    SRE of a long-lived fleet watches. Reads only; a disk fuller than the GC keeps free (something
    beside the cache fills it) is a warning, as the GC cannot help there."""
    facts: dict[str, f.Fact[Any]] = {
        "used": f.BuildkitCacheUsage(),
        "limits": f.BuildkitdGcLimits(),
        "disk": f.BuildkitDisk(),
    }

    def decide(got: Mapping[str, Any]) -> Decision:
        used, limits, disk = got["used"], got["limits"], got["disk"]
        if used is None or limits is None:
            return refuse("buildkitd does not answer on its socket: buildfleet configure starts it")
        found = (
            f"cache {gigabytes(used)} of at most {gigabytes(limits.max_used)} "
            f"(GC keeps {gigabytes(limits.min_free)} free, never below {gigabytes(limits.reserved)}); "
            f"disk {gigabytes(disk.free)} free of {gigabytes(disk.size)}"
        )
        warning = ""
        if disk.free < limits.min_free:
            warning = (
                f"only {gigabytes(disk.free)} free on the cache's disk, below the {gigabytes(limits.min_free)} "
                "BuildKit's GC keeps free: something beside the cache fills it "
                "(docker system df, journalctl --disk-usage), or give the host a larger disk (buildfleet:rootVolumeGiB)"
            )
        return no_change(found, warning)

    return Step("cache", facts, decide)
