"""Operations decide from facts alone: golden cases (facts, desired) -> actions or why not.

Facts come from outputs captured on real hosts (see test_facts), so idempotence is
checked here without a host; the integration tier runs the same steps on real ones.
"""

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest
import tomllib
from cryptography.x509.oid import ExtendedKeyUsageOID
from test_facts import parse

from provisioning.advisories import RUNC_NOV_2025
from provisioning.artifacts import Artifact, PinnedQemu
from provisioning.certs import issue, make_ca
from provisioning.errors import ConfigError
from provisioning.exchange import service as exchange_service
from provisioning.hosts.actions import Run, Upload, WriteFile
from provisioning.hosts.configure import buildkitd_config
from provisioning.hosts.operations.binfmt import (
    BINFMT_SCRIPT,
    BINFMT_SERVICE,
    QemuDesired,
    binfmt_step,
    with_interpreter,
)
from provisioning.hosts.operations.buildkitd import BuildkitdDesired, buildkitd_service, buildkitd_step
from provisioning.hosts.operations.buildx import BUILDX_PLUGIN, buildx_step
from provisioning.hosts.operations.cache import cache_step
from provisioning.hosts.operations.docker import DOCKERD, POLICY_RC_D, DockerDesired, docker_step
from provisioning.hosts.operations.exchange import CONFIG as EXCHANGE_CONFIG
from provisioning.hosts.operations.exchange import PACKAGES as EXCHANGE_PACKAGES
from provisioning.hosts.operations.exchange import SCRIPT as EXCHANGE_SCRIPT
from provisioning.hosts.operations.exchange import ExchangeDesired, exchange_daemon, exchange_step
from provisioning.hosts.operations.fleet import fleet_step
from provisioning.hosts.operations.idle import IDLE_SCRIPT, IdleDesired, idle_service, idle_step
from provisioning.hosts.operations.idle import SCRIPT as IDLE_SCRIPT_BYTES
from provisioning.hosts.operations.metadata import METADATA_SCRIPT, METADATA_SERVICE, metadata_step
from provisioning.hosts.operations.metadata import SCRIPT as METADATA_BYTES
from provisioning.hosts.operations.privileged import privileged_step
from provisioning.hosts.operations.versions import PinnedVersions, versions_step
from provisioning.hosts.services import SUPERVISE, SUPERVISE_SCRIPT, service_paths
from provisioning.inventory import HostPlatform, InventoryHost
from provisioning.remote import facts as f
from provisioning.settings import settings_from_mapping

DEBIAN = parse(f.OsRelease(), "fresh-os-release")
SHA = lambda data: hashlib.sha256(data).hexdigest()  # noqa: E731


def kinds(decision):
    return [(type(a).__name__, getattr(a, "dest", "") or " ".join(a.argv)[:40]) for a in decision.actions]


def docker_facts(**changes):
    facts = {
        "os": DEBIAN,
        "init": "none",
        "client": None,
        "server": None,
        "groups": frozenset({"root"}),
        "dpkg_interrupted": False,
        "files": {SUPERVISE: None, DOCKERD.definition_path("none"): None, DOCKERD.definition_path("systemd"): None},
    }
    facts.update(changes)
    return facts


def configured_supervision():
    return {
        SUPERVISE: SHA(SUPERVISE_SCRIPT),
        DOCKERD.definition_path("none"): SHA(DOCKERD.boot_script()),
        DOCKERD.definition_path("systemd"): None,
    }


def test_fresh_host_without_init_gets_docker_installed_supervised_and_started():
    decision = docker_step(DockerDesired("root")).decide(docker_facts())
    names = [a.dest if isinstance(a, WriteFile) else a.why for a in decision.actions]
    assert names == [
        POLICY_RC_D,
        "Docker is not installed: install docker.io",
        SUPERVISE,
        DOCKERD.definition_path("none"),
        "start the Docker engine and wait until it answers",
    ]


def test_configured_docker_host_needs_nothing():
    decision = docker_step(DockerDesired("root")).decide(
        docker_facts(client=f.Version((20, 10, 24)), server=f.Version((20, 10, 24)), files=configured_supervision())
    )
    assert not decision.changes and decision.reason.startswith("Docker 20.10.24 ≥ 19.03")


def test_systemd_host_uses_systemctl_not_the_supervisor():
    decision = docker_step(DockerDesired("root")).decide(docker_facts(init="systemd"))
    assert [type(a) for a in decision.actions] == [Run, Run]
    assert "systemctl enable docker" in decision.actions[1].argv[-1]


def test_old_docker_is_refused_when_upgrades_are_off_and_upgraded_otherwise():
    old = dict(client=f.Version.parse("18.09.1"), server=None, files=configured_supervision())
    refused = docker_step(DockerDesired("root", allow_upgrade=False)).decide(docker_facts(**old))
    assert refused.error.startswith("Docker 18.09.1 is older than 19.03 and upgrades are disabled")
    upgrade = docker_step(DockerDesired("root")).decide(docker_facts(**old))
    assert "older than 19.03: install docker.io" in upgrade.actions[1].why
    assert "buildfleet-supervise restart docker" in upgrade.actions[-1].argv[-1]


def test_a_non_root_ssh_user_joins_the_docker_group():
    decision = docker_step(DockerDesired("ubuntu")).decide(
        docker_facts(
            init="systemd", client=f.Version((24, 0, 7)), server=f.Version((24, 0, 7)), groups=frozenset({"ubuntu"})
        )
    )
    assert [a.argv for a in decision.actions] == [("usermod", "-aG", "docker", "ubuntu")]


def test_a_dpkg_run_an_earlier_run_left_interrupted_is_finished_before_installing():
    decision = docker_step(DockerDesired("root")).decide(docker_facts(dpkg_interrupted=True))
    names = [a.dest if isinstance(a, WriteFile) else a.why for a in decision.actions]
    assert names[:3] == [
        POLICY_RC_D,  # the repair configures docker.io: no daemon started behind the supervisor's back
        "finish the dpkg run an earlier run left interrupted",
        "Docker is not installed: install docker.io",
    ]
    repair = decision.actions[1].argv[-1]
    assert repair.startswith("export DEBIAN_FRONTEND=noninteractive; dpkg --configure -a; ")
    assert " install --reinstall -y $broken" in repair  # a package cut off mid-unpack first
    assert repair.endswith("dpkg --configure -a && apt-get -o DPkg::Lock::Timeout=600 -q -f install -y")


def test_docker_unpacked_but_never_configured_is_repaired_then_started():
    half = docker_facts(client=f.Version((20, 10, 24)), dpkg_interrupted=True, files=configured_supervision())
    whys = [getattr(a, "why", "") for a in docker_step(DockerDesired("root")).decide(half).actions]
    assert whys[1:] == [
        "finish the dpkg run an earlier run left interrupted",
        "start the Docker engine and wait until it answers",
    ]


def test_an_os_without_apt_is_refused_by_name():
    decision = docker_step(DockerDesired("root")).decide(
        docker_facts(os={"ID": "alpine", "PRETTY_NAME": "Alpine 3.20"})
    )
    assert "Alpine 3.20" in decision.error


def artifact(name, data=b"binary"):
    return Artifact(name, "1.0", Path(f"/cache/{name}"), SHA(data))


def test_buildx_is_uploaded_only_when_its_digest_differs():
    step = buildx_step(lambda arch: artifact(f"buildx-{arch}"))
    same = step.decide({"arch": "amd64", "files": {BUILDX_PLUGIN: SHA(b"binary")}})
    assert not same.changes and "sha256 matches" in same.reason
    other = step.decide({"arch": "arm64", "files": {BUILDX_PLUGIN: None}})
    (upload,) = other.actions
    assert isinstance(upload, Upload) and upload.source == Path("/cache/buildx-arm64") and upload.dest == BUILDX_PLUGIN


BINFMT_CONFIGURED = parse(f.BinfmtStatus(), "configured-binfmt")  # distro QEMU, /usr/libexec/qemu-binfmt


def binfmt_facts(**changes):
    facts = {
        "arch": "amd64",
        "init": "none",
        "qemu": None,
        "binfmt": parse(f.BinfmtStatus(), "fresh-binfmt"),
        "files": {},
    }
    facts.update(changes)
    return facts


def boot_files(desired, init):
    """Digests of the boot-time registration files as a previous run left them."""
    decision = binfmt_step(desired).decide(binfmt_facts(init=init))
    boot = (BINFMT_SCRIPT, *service_paths(BINFMT_SERVICE))
    return {a.dest: a.sha256 for a in decision.actions if isinstance(a, WriteFile) and a.dest in boot}


def whys(decision):
    return [a.why for a in decision.actions]


def test_fresh_emulation_host_installs_distro_qemu_mounts_registers_and_persists():
    decision = binfmt_step(QemuDesired(("aarch64", "s390x"))).decide(binfmt_facts())
    assert whys(decision)[:4] == [
        "install QEMU user-mode emulators",
        "mount binfmt_misc",
        "register aarch64, s390x with the F flag",
        "install the boot-time registration script",
    ]
    assert decision.actions[2].argv[-3:] == ("/usr/lib/binfmt.d", "aarch64", "s390x")
    at_boot = decision.actions[4]  # without systemd: a boot.d entry that runs the script
    assert at_boot.dest == BINFMT_SERVICE.definition_path("none") and at_boot.content.endswith(
        b"exec " + BINFMT_SCRIPT.encode() + b"\n"
    )
    assert len(decision.actions) == 5


def test_systemd_hosts_persist_with_an_enabled_oneshot_unit():
    decision = binfmt_step(QemuDesired(("aarch64",))).decide(binfmt_facts(init="systemd"))
    unit = next(a for a in decision.actions if getattr(a, "dest", "").endswith("buildfleet-binfmt.service"))
    assert b"Type=oneshot" in unit.content and b"WantedBy=multi-user.target" in unit.content
    assert "systemctl enable buildfleet-binfmt.service" in decision.actions[-1].argv[-1]  # runs at every boot


def test_registered_entries_without_f_are_registered_again():
    desired = QemuDesired(("aarch64", "s390x"))
    entries = dict(BINFMT_CONFIGURED.entries)
    entries["qemu-aarch64"] = f.BinfmtEntry("qemu-aarch64", True, "/usr/libexec/qemu-binfmt/aarch64-binfmt-P", "OC")
    decision = binfmt_step(desired).decide(
        binfmt_facts(init="systemd", qemu="1:7.2", binfmt=f.Binfmt(True, entries), files=boot_files(desired, "systemd"))
    )
    (register,) = decision.actions
    assert register.argv[-1] == "aarch64" and "s390x" not in register.argv


def test_distro_binfmt_already_right_needs_nothing():
    desired = QemuDesired(("aarch64",))
    decision = binfmt_step(desired).decide(
        binfmt_facts(qemu="1:7.2", binfmt=BINFMT_CONFIGURED, files=boot_files(desired, "none"))
    )
    assert not decision.changes and decision.reason.startswith("qemu-user-static (distro)")


LINE = (
    rb":qemu-aarch64:M::\x7f\x45\x4c\x46\x02:\xff\xff\xff\xff\xff:/usr/libexec/qemu-binfmt/aarch64-binfmt-P:OPF" + b"\n"
)
PINNED = PinnedQemu("10.0.13", {"aarch64": artifact("qemu-aarch64")}, {"aarch64": LINE})
PINNED_PATH = "/usr/local/lib/buildfleet/qemu/aarch64-binfmt-P"


def test_pinned_qemu_is_uploaded_persisted_and_registered_at_its_own_path():
    desired = QemuDesired(("aarch64",), lambda arch: PINNED)
    decision = binfmt_step(desired).decide(binfmt_facts(binfmt=BINFMT_CONFIGURED, files=boot_files(desired, "none")))
    upload, conf, register = decision.actions
    assert upload.dest == PINNED_PATH
    assert conf.dest == "/etc/binfmt.d/qemu-aarch64.conf"
    assert conf.content.split(b":")[6] == PINNED_PATH.encode()
    # the distro entry points elsewhere, so it is replaced
    assert register.argv[-2:] == ("/etc/binfmt.d", "aarch64")


def test_a_new_pinned_binary_is_registered_again_even_if_the_entry_looks_right():
    desired = QemuDesired(("aarch64",), lambda arch: PINNED)
    entries = {"qemu-aarch64": f.BinfmtEntry("qemu-aarch64", True, PINNED_PATH, "POF")}
    conf = {"/etc/binfmt.d/qemu-aarch64.conf": SHA(with_interpreter(LINE, PINNED_PATH))}
    facts = dict(binfmt=f.Binfmt(True, entries), init="systemd")
    stale = binfmt_step(desired).decide(
        binfmt_facts(**facts, files={PINNED_PATH: "old-digest", **conf, **boot_files(desired, "systemd")})
    )
    assert [type(a).__name__ for a in stale.actions] == ["Upload", "Run"]
    assert stale.actions[1].argv[-1] == "aarch64"
    same = binfmt_step(desired).decide(
        binfmt_facts(**facts, files={PINNED_PATH: SHA(b"binary"), **conf, **boot_files(desired, "systemd")})
    )
    assert not same.changes and "static QEMU 10.0.13" in same.reason


def test_qemu_for_the_hosts_own_cpu_is_refused():
    decision = binfmt_step(QemuDesired(("x86_64",))).decide(binfmt_facts())
    assert "own CPU (amd64)" in decision.error


FLEET_CA = make_ca("buildfleet CA")
SERVED = issue(FLEET_CA, "amd64-0", ExtendedKeyUsageOID.SERVER_AUTH)


def buildkitd_desired(config=b"config", trust=FLEET_CA.cert):
    return BuildkitdDesired(
        lambda arch: (artifact("buildkitd"), artifact("buildctl")),
        1234,
        trust,
        SERVED.cert,
        SERVED.key,
        lambda cpus: config,
    )


def buildkitd_files(desired, init="none"):
    service = buildkitd_service(desired.port)
    digests = {
        "/usr/local/bin/buildkitd": SHA(b"binary"),
        "/usr/local/bin/buildctl": SHA(b"binary"),
        "/etc/buildkit/buildkitd.toml": SHA(desired.config(2)),
        "/etc/buildkit/tls/ca.pem": SHA(desired.ca_pem),
        "/etc/buildkit/tls/cert.pem": SHA(desired.cert_pem),
        "/etc/buildkit/tls/key.pem": SHA(desired.key_pem),
        SUPERVISE: SHA(SUPERVISE_SCRIPT),
        service.definition_path("none"): SHA(service.boot_script()),
        service.definition_path("systemd"): SHA(service.unit()) if init == "systemd" else None,
    }
    return digests


@pytest.mark.parametrize("init", ["none", "systemd"])
def test_healthy_buildkitd_with_the_same_files_needs_nothing(init):
    desired = buildkitd_desired()
    decision = buildkitd_step(desired).decide(
        {
            "arch": "amd64",
            "init": init,
            "runc": "1.1",
            "workers": ("linux/amd64",),
            "files": buildkitd_files(desired, init),
            "cpus": 2,
        }
    )
    assert not decision.changes and "workers for linux/amd64" in decision.reason


def test_a_changed_config_is_written_and_buildkitd_restarted():
    old = buildkitd_desired(b"old")
    decision = buildkitd_step(buildkitd_desired(b"new")).decide(
        {
            "arch": "amd64",
            "init": "none",
            "runc": "1.1",
            "workers": ("linux/amd64",),
            "files": buildkitd_files(old),
            "cpus": 2,
        }
    )
    assert [getattr(a, "dest", a.why) for a in decision.actions] == [
        "/etc/buildkit/buildkitd.toml",
        "restart buildkitd (its files changed)",
    ]


def test_a_host_serving_a_certificate_of_a_ca_this_state_does_not_hold_is_never_taken_over():
    """A second operator without the fleet's state (its own new CA) is refused on the first one's
    hosts before any step changes anything; a new host, and one of this fleet, go on."""
    step = fleet_step(FLEET_CA.cert)
    theirs = issue(make_ca("buildfleet CA"), "amd64-0", ExtendedKeyUsageOID.SERVER_AUTH)
    refused = step.decide({"served": theirs.cert})
    assert not refused.changes and "serves a certificate of a fleet CA this state does not hold" in refused.error
    assert "buildfleet state import" in refused.error
    assert not step.decide({"served": SERVED.cert}).error
    assert step.decide({"served": None}).reason.startswith("no buildkitd certificate yet")
    rotating = fleet_step(make_ca("buildfleet CA").cert + FLEET_CA.cert)  # a rotation holds both CAs
    assert not rotating.decide({"served": SERVED.cert}).error


def test_the_fleet_check_comes_before_every_step_that_changes_a_host(tmp_path):
    from provisioning.certs import FleetCA
    from provisioning.hosts.configure import ConfigureOptions, steps_for

    class Files:
        def buildx(self, arch):
            return artifact("buildx")

        def buildkit(self, arch):
            return artifact("buildkitd"), artifact("buildctl")

    steps = steps_for(HOST, Files(), FleetCA(tmp_path / "tls"), ConfigureOptions())
    assert steps[0].name == "fleet" and [s.name for s in steps].count("fleet") == 1


def test_a_fresh_host_gets_runc_files_and_a_start():
    decision = buildkitd_step(buildkitd_desired()).decide(
        {"arch": "amd64", "init": "systemd", "runc": None, "workers": None, "files": {}, "cpus": 2}
    )
    whys = [a.why for a in decision.actions]
    assert whys[0].startswith("install runc") and whys[-1] == "start buildkitd"
    assert "/etc/buildkit/tls/key.pem" in [getattr(a, "dest", "") for a in decision.actions]
    key = next(a for a in decision.actions if getattr(a, "dest", "") == "/etc/buildkit/tls/key.pem")
    assert key.mode == "0600"


def test_docker_can_come_from_dockers_own_apt_repository():
    decision = docker_step(DockerDesired("ubuntu", source="docker")).decide(
        docker_facts(init="systemd", os={"ID": "ubuntu", "VERSION_CODENAME": "noble"}, groups=frozenset({"ubuntu"}))
    )
    install = decision.actions[0]
    assert install.why == "Docker is not installed: install docker-ce from Docker's apt repository"
    assert install.argv[-2:] == ("ubuntu", "noble")  # passed as arguments, never spliced into the script
    assert "download.docker.com/linux/$1" in install.argv[2] and "$2 stable" in install.argv[2]


def privileged_facts(**changes):
    facts = {"init": "systemd", "capable": False, "runtime": "runc", "files": {}}
    facts.update(changes)
    return facts


def test_a_host_with_cap_sys_resource_is_left_exactly_as_it_is():
    decision = privileged_step().decide(privileged_facts(capable=True))
    assert not decision.changes and "holds CAP_SYS_RESOURCE" in decision.reason


def test_a_container_host_gets_the_runc_wrapper_as_default_runtime_once():
    first = privileged_step().decide(privileged_facts())
    wrapper, daemon, restart = first.actions
    assert wrapper.dest == "/usr/local/lib/buildfleet/runc-nosysres" and b"CAP_SYS_RESOURCE" in wrapper.content
    assert json.loads(daemon.content) == {
        "runtimes": {"nosysres": {"path": wrapper.dest}},
        "default-runtime": "nosysres",
    }
    assert "systemctl restart docker" in restart.argv[-1]
    done = privileged_step().decide(
        privileged_facts(runtime="nosysres", files={wrapper.dest: wrapper.sha256, daemon.dest: daemon.sha256})
    )
    assert not done.changes


# --- idle stop ---------------------------------------------------------------------------

IDLE = idle_service(30, 1234)
NO_IDLE_FILES = {
    IDLE_SCRIPT: None,
    SUPERVISE: None,
    IDLE.definition_path("none"): None,
    IDLE.definition_path("systemd"): None,
}


def idle_facts(init="none", running=False, **files):
    return {"init": init, "running": running, "files": {**NO_IDLE_FILES, **files}}


def test_idle_stop_off_on_a_host_that_never_had_it_needs_nothing():
    assert idle_step(IdleDesired(0, 1234)).decide(idle_facts()).reason == "idle stop is off"


def test_idle_stop_turned_off_stops_the_watcher_and_removes_its_files():
    decision = idle_step(IdleDesired(0, 1234)).decide(
        idle_facts("systemd", True, **{IDLE_SCRIPT: SHA(IDLE_SCRIPT_BYTES)})
    )
    (action,) = decision.actions
    assert action.argv[-1].startswith(
        "systemctl disable --now buildfleet-idle; rm -f /usr/local/lib/buildfleet/idle-stop "
    )


def test_idle_stop_on_a_systemd_host_installs_the_watcher_and_its_unit_then_starts_it():
    decision = idle_step(IdleDesired(30, 1234)).decide(idle_facts("systemd"))
    assert kinds(decision)[:2] == [("WriteFile", IDLE_SCRIPT), ("WriteFile", IDLE.definition_path("systemd"))]
    assert "systemctl start buildfleet-idle" in decision.actions[-1].argv[-1]
    assert b"idle-stop 30 1234; sleep 20" in decision.actions[1].content


def test_idle_stop_without_init_runs_under_the_supervisor_and_a_new_limit_restarts_it_with_the_new_one():
    fresh = idle_step(IdleDesired(30, 1234)).decide(idle_facts())
    assert [a.dest for a in fresh.actions[:3]] == [IDLE_SCRIPT, SUPERVISE, IDLE.definition_path("none")]
    configured = {
        IDLE_SCRIPT: SHA(IDLE_SCRIPT_BYTES),
        SUPERVISE: SHA(SUPERVISE_SCRIPT),
        IDLE.definition_path("none"): SHA(IDLE.boot_script()),
    }
    assert not idle_step(IdleDesired(30, 1234)).decide(idle_facts("none", True, **configured)).changes
    shorter = idle_step(IdleDesired(5, 1234)).decide(idle_facts("none", True, **configured))
    boot_entry, stop, start = shorter.actions  # the new limit, the old loop stopped, the new one started
    assert boot_entry.dest == IDLE.definition_path("none") and b"idle-stop 5 1234" in boot_entry.content
    assert stop.argv == (SUPERVISE, "stop", "buildfleet-idle")
    assert start.argv[-1].startswith(IDLE.definition_path("none") + " && ")  # started, not restarted


# --- the OIDC token exchange, on its host -------------------------------------------------

EXCHANGE = ExchangeDesired.of(
    settings_from_mapping({"exchangeGithubRepositories": ["acme/app"], "exchangeGithubRefs": ["refs/heads/main"]}),
    ["emulation-0", "amd64-0"],
    "f",
)
DAEMON = exchange_daemon()
SERVICE_BYTES = Path(exchange_service.__file__).read_bytes()


def exchange_facts(init="none", running=False, ca=None, installed=True, **files):
    nothing = dict.fromkeys((EXCHANGE_SCRIPT, EXCHANGE_CONFIG, SUPERVISE, *DAEMON_PATHS))
    packages = dict.fromkeys(EXCHANGE_PACKAGES, "2.6.0-1" if installed else None)
    return {"init": init, "running": running, "ca": ca, "files": {**nothing, **files}, **packages}


DAEMON_PATHS = (DAEMON.definition_path("none"), DAEMON.definition_path("systemd"))


def test_the_exchange_runs_on_the_first_host_by_name_and_trusts_what_the_settings_name():
    assert EXCHANGE.host == "amd64-0" and EXCHANGE.port == 8443
    (github,) = EXCHANGE.issuers
    assert github.issuer == "https://token.actions.githubusercontent.com" and github.audience == "buildfleet"
    assert github.jwks_url == "https://token.actions.githubusercontent.com/.well-known/jwks"
    assert github.claims == {"repository": ("acme/app",), "ref": ("refs/heads/main",)}
    assert ExchangeDesired.of(settings_from_mapping({}), ["amd64-0"], "f") is None  # nobody trusted: no exchange
    with pytest.raises(ConfigError, match="buildfleet:exchangeHost: 'arm64-9' is not a host of the fleet"):
        ExchangeDesired.of(
            settings_from_mapping({"exchangeGithubRepositories": ["a/b"], "exchangeHost": "arm64-9"}), ["amd64-0"], "f"
        )


def test_a_new_exchange_installs_its_packages_and_file_makes_its_ca_on_the_host_then_starts():
    decision = exchange_step(EXCHANGE, b"server cert").decide(exchange_facts(installed=False))
    first, script, config, init = decision.actions[:4]
    assert "python3-jwt python3-cryptography" in first.argv[-1]
    assert (script.dest, script.content) == (EXCHANGE_SCRIPT, SERVICE_BYTES)
    written = json.loads(config.content)
    assert config.mode == "0600" and written["issuers"][0]["claims"] == {
        "repository": ["acme/app"],
        "ref": ["refs/heads/main"],
    }
    assert init.argv == ("python3", EXCHANGE_SCRIPT, "init", "--config", EXCHANGE_CONFIG)  # its key is made there
    assert decision.actions[-1].argv[-1].startswith(DAEMON.definition_path("none") + " && ")


def test_an_exchange_in_place_needs_nothing_and_a_new_server_certificate_restarts_it():
    config = EXCHANGE.config_file(b"server cert")
    configured = {
        EXCHANGE_SCRIPT: SHA(SERVICE_BYTES),
        EXCHANGE_CONFIG: SHA(config),
        SUPERVISE: SHA(SUPERVISE_SCRIPT),
        DAEMON.definition_path("none"): SHA(DAEMON.boot_script()),
    }
    facts = exchange_facts("none", True, b"ca", **configured)
    assert not exchange_step(EXCHANGE, b"server cert").decide(facts).changes
    rotated = exchange_step(EXCHANGE, b"new server cert").decide(facts)
    written, stop, start = rotated.actions  # the config names the new certificate's digest: a restart
    assert written.dest == EXCHANGE_CONFIG and stop.argv == (SUPERVISE, "stop", "buildfleet-exchange")


def test_a_revoked_exchange_ca_on_its_host_is_made_anew_and_its_config_names_it_retired():
    revoked = b"the revoked CA certificate"
    renewed = dataclasses.replace(EXCHANGE, retired=(SHA(revoked),))
    facts = exchange_facts("none", True, revoked)
    decision = exchange_step(renewed, b"server cert").decide(facts)
    init = next(a for a in decision.actions if getattr(a, "argv", ())[:3] == ("python3", EXCHANGE_SCRIPT, "init"))
    assert "make a new issuing CA" in init.why
    config = next(a for a in decision.actions if getattr(a, "dest", "") == EXCHANGE_CONFIG)
    assert json.loads(config.content)["retired_ca_sha256"] == [SHA(revoked)]  # init then makes a new one
    kept = exchange_step(renewed, b"server cert").decide(exchange_facts("none", True, b"the new CA"))
    assert not any(getattr(a, "argv", ())[2:3] == ("init",) for a in kept.actions)


def test_a_host_that_no_longer_runs_the_exchange_stops_it_and_keeps_its_ca():
    assert exchange_step(None).decide(exchange_facts()).reason == "no token exchange here"
    (action,) = exchange_step(None).decide(exchange_facts("systemd", True, **{EXCHANGE_SCRIPT: "x"})).actions
    assert action.argv[-1].startswith("systemctl disable --now buildfleet-exchange; rm -f ")
    assert "/var/lib/buildfleet/exchange" not in action.argv[-1]  # the CA stays: client revoke ends its trust


# --- the instance metadata service, closed after boot (AWS hosts) ------------------------


def metadata_facts(init="systemd", blocked=False, **files):
    paths = (METADATA_SCRIPT, METADATA_SERVICE.definition_path("none"), METADATA_SERVICE.definition_path("systemd"))
    return {"init": init, "blocked": blocked, "files": {**dict.fromkeys(paths), **files}}


def test_an_aws_host_gets_a_boot_task_ordered_after_cloud_init_and_before_buildkitd_then_the_rules_now():
    decision = metadata_step().decide(metadata_facts())
    assert kinds(decision)[:2] == [
        ("WriteFile", METADATA_SCRIPT),
        ("WriteFile", METADATA_SERVICE.definition_path("systemd")),
    ]
    unit = decision.actions[1].content.decode()
    assert "After=network-online.target" in unit and "Before=buildkitd.service" in unit
    assert "Type=oneshot" in unit
    assert "systemctl enable buildfleet-block-metadata.service" in decision.actions[2].argv[-1]
    assert decision.actions[3].argv == (METADATA_SCRIPT,)
    assert b'-d "$address" -j REJECT' in METADATA_BYTES and b"169.254.169.254/32" in METADATA_BYTES


def test_a_host_whose_rules_and_files_are_in_place_needs_nothing_and_lost_rules_are_put_back():
    done = {
        METADATA_SCRIPT: SHA(METADATA_BYTES),
        METADATA_SERVICE.definition_path("systemd"): SHA(METADATA_SERVICE.unit()),
    }
    assert not metadata_step().decide(metadata_facts("systemd", True, **done)).changes
    flushed = metadata_step().decide(metadata_facts("systemd", False, **done))  # e.g. someone ran iptables -F
    assert [a.argv for a in flushed.actions] == [(METADATA_SCRIPT,)]


def test_a_host_without_init_runs_the_rules_from_boot_d_before_buildkitds_entry():
    decision = metadata_step().decide(metadata_facts("none"))
    boot = METADATA_SERVICE.definition_path("none")
    assert [getattr(a, "dest", None) for a in decision.actions[:2]] == [METADATA_SCRIPT, boot]
    assert boot < buildkitd_service(1234).definition_path("none")  # boot.d runs in name order


def test_only_aws_hosts_get_the_metadata_step(tmp_path):
    from provisioning.artifacts import LocalArtifacts
    from provisioning.certs import FleetCA
    from provisioning.hosts.configure import ConfigureOptions, steps_for
    from provisioning.inventory import HostPlatform, InventoryHost

    host = InventoryHost(
        "amd64-0", "amd64", "amd64", "203.0.113.5", "10.0.0.5", "ubuntu", platforms=(HostPlatform("linux/amd64", True),)
    )
    artifacts = LocalArtifacts(tmp_path)  # the steps only name the files; none is read here
    names = lambda options: [s.name for s in steps_for(host, artifacts, FleetCA(tmp_path), options)]  # noqa: E731
    assert "metadata" not in names(ConfigureOptions())
    with_metadata = names(ConfigureOptions(block_metadata=True))
    assert with_metadata.index("metadata") == with_metadata.index("buildkitd") - 1


TOOLS = PinnedVersions("0.34.2", "0.38.2")
PATCHED = f.Runc("1.1.5+ds1", "runc", "1.1.5+ds1-1+deb99u1", frozenset(RUNC_NOV_2025.ids))


def versions(**got):
    return {"buildkitd": "0.34.2", "buildctl": "0.34.2", "buildx": "0.38.2", "runc": PATCHED} | got


def test_versions_as_pinned_with_a_patched_runc_need_nothing_and_say_so():
    decision = versions_step(TOOLS).decide(versions())
    assert not decision.changes and not decision.error and not decision.warning
    assert decision.reason == (
        "buildkitd, buildctl 0.34.2 and buildx 0.38.2 as pinned; runc 1.1.5+ds1 (runc 1.1.5+ds1-1+deb99u1)"
    )


def test_an_old_buildkitd_left_on_a_host_is_named_with_both_versions():
    decision = versions_step(TOOLS).decide(versions(buildkitd="0.13.2", buildx=None))
    assert decision.error == (
        "not the pinned versions: buildkitd 0.13.2 (pinned 0.34.2), buildx missing (pinned 0.38.2); "
        "buildfleet configure installs them"
    )


def test_an_open_runc_is_a_warning_with_the_fix_never_a_change():
    bookworm = f.Runc("1.1.5+ds1", "runc", "1.1.5+ds1-1+deb12u1", frozenset({"CVE-2024-21626"}))
    decision = versions_step(TOOLS).decide(versions(runc=bookworm))
    assert not decision.changes and not decision.error
    assert decision.warning.startswith("the runc package 1.1.5+ds1-1+deb12u1 names no fix for CVE-2025-31133")


def test_no_runc_at_all_is_an_error():
    assert "no runc on PATH" in versions_step(TOOLS).decide(versions(runc=None)).error


AMD64 = (HostPlatform("linux/amd64", True),)
HOST = InventoryHost("amd64-0", "amd64", "amd64", "127.0.0.1", "", "root", platforms=AMD64)


def test_buildkitd_toml_keeps_gc_within_disk_limits_and_runs_a_step_per_cpu():
    gc = settings_from_mapping({"buildkitGcMaxUsedSpace": "40GB"}).gc
    toml = tomllib.loads(buildkitd_config(HOST, "", gc)(8).decode())["worker"]["oci"]
    assert (toml["maxUsedSpace"], toml["minFreeSpace"], toml["reservedSpace"]) == ("40GB", "20%", "10%")
    assert toml["max-parallelism"] == 8 and toml["gc"] is True and toml["platforms"] == ["linux/amd64"]
    fixed = tomllib.loads(buildkitd_config(HOST, "", gc, parallelism=3)(8).decode())["worker"]["oci"]
    assert fixed["max-parallelism"] == 3


def test_a_host_that_gains_cpus_gets_its_buildkitd_toml_rewritten():
    desired = BuildkitdDesired(
        lambda arch: (artifact("buildkitd"), artifact("buildctl")),
        1234,
        FLEET_CA.cert,
        SERVED.cert,
        SERVED.key,
        buildkitd_config(HOST),
    )
    files = buildkitd_files(desired)  # written for 2 CPUs
    facts = {"arch": "amd64", "init": "none", "runc": "1.1", "workers": ("linux/amd64",), "files": files}
    assert not buildkitd_step(desired).decide({**facts, "cpus": 2}).changes
    assert [getattr(a, "dest", a.why) for a in buildkitd_step(desired).decide({**facts, "cpus": 4}).actions] == [
        "/etc/buildkit/buildkitd.toml",
        "restart buildkitd (its files changed)",
    ]


def test_the_cache_step_reports_use_limits_and_disk_and_warns_when_the_disk_is_fuller_than_gc_keeps_free():
    limits = f.GcLimits(30_000_000_000, 10_000_000_000, 5_000_000_000)
    fine = cache_step().decide(
        {"used": 2_500_000_000, "limits": limits, "disk": f.Disk(50_000_000_000, 20_000_000_000)}
    )
    assert fine.reason == (
        "cache 2.5 GB of at most 30.0 GB (GC keeps 10.0 GB free, never below 5.0 GB); disk 20.0 GB free of 50.0 GB"
    )
    assert not fine.changes and not fine.warning
    full = cache_step().decide({"used": 1_000_000_000, "limits": limits, "disk": f.Disk(50_000_000_000, 4_000_000_000)})
    assert full.warning.startswith("only 4.0 GB free on the cache's disk, below the 10.0 GB")
    assert "buildkitd does not answer" in cache_step().decide({"used": None, "limits": None, "disk": None}).error
