"""The buildkitd step: pinned binaries, its config and mTLS files, restarted only when they change."""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from provisioning.artifacts import Artifact
from provisioning.hosts.actions import Decision, Run, Upload, WriteFile, disruptive, no_change
from provisioning.hosts.operations import Step, apt_install
from provisioning.hosts.services import Service, differing, init_system, service_paths
from provisioning.remote import facts as f

BUILDKIT_BIN = "/usr/local/bin"
BUILDKIT_ETC = "/etc/buildkit"


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
