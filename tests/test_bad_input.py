"""Bad input, as a new user gives it: every case exits 2 with one `error:` line naming the
culprit, prints no traceback, and leaves the state directory byte for byte as it was.
Nothing here reaches a host or the Pulumi CLI: each is refused before that."""

import json

import pytest
import yaml
from snapshot import snapshot

from provisioning.cli import main
from provisioning.inventory import HostPlatform, Inventory, InventoryHost
from provisioning.state import FleetState

ECDSA = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTY= me"
ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOl5Hh3Xf0m8lq0n1u1v5l6xQm6b4f0nS3cU1oYt6V0z me"

STATIC_INVENTORY = json.dumps(
    Inventory("static", (InventoryHost("pi", "arm64", "arm64", "192.0.2.1", "", "pi"),)).to_dict()
)
AMD64_ONLY = json.dumps(
    Inventory(
        "local",
        (
            InventoryHost(
                "amd64-0", "amd64", "amd64", "127.0.0.1", "", "root", platforms=(HostPlatform("linux/amd64", True),)
            ),
        ),
    ).to_dict()
)

# (id, command line, files to write in the project directory, the culprit the error must name)
CASES = [
    ("fleet-empty", ["status", "--fleet="], {}, "fleet name ''"),
    ("fleet-dotdot", ["status", "--fleet", "../x"], {}, "fleet name '../x'"),
    ("fleet-upper", ["down", "--fleet", "Prod"], {}, "fleet name 'Prod'"),
    ("builder-path", ["builder", "rm", "--builder", "../../etc/passwd"], {}, "builder name '../../etc/passwd'"),
    ("repeats-zero", ["bench", "--repeats", "0"], {}, "--repeats: must be at least 1"),
    ("spot-discount", ["cost", "--spot-discount", "1.5"], {}, "--spot-discount: must be at least 0 and below 1"),
    ("wait-timeout", ["up", "--target", "aws", "--wait-timeout", "-3"], {}, "--wait-timeout"),
    ("target-unknown", ["up", "--target", "gcp"], {}, "invalid choice: 'gcp'"),
    ("set-no-value", ["plan", "--set", "novalue"], {}, "--set 'novalue': expected KEY=VALUE"),
    ("set-unknown-key", ["plan", "--set", "arm64Size=big"], {}, "unknown configuration key buildfleet:arm64Size"),
    ("count-negative-text", ["plan", "--set", "amd64Count=--5"], {}, "buildfleet:amd64Count: expected integer"),
    ("count-negative", ["plan", "--set", "amd64Count=-1"], {}, "buildfleet:amd64Count: must be 0 or more"),
    ("platforms-empty-entry", ["plan", "--set", "platforms=linux/amd64,,"], {}, "buildfleet:platforms"),
    ("platform-unknown", ["plan", "--set", "platforms=linux/vax"], {}, "buildfleet:platforms"),
    ("port-too-high", ["plan", "--set", "buildkitdPort=70000"], {}, "buildfleet:buildkitdPort: 70000"),
    ("local-init", ["plan", "--set", "localInit=maybe"], {}, "buildfleet:localInit: 'maybe'"),
    ("vm-role", ["plan", "--set", "vmRoles=[gpu]"], {}, "buildfleet:vmRoles: 'gpu'"),
    ("arm64-on-amd64-type", ["plan", "--set", "arm64InstanceType=c7i.xlarge"], {}, "buildfleet:arm64InstanceType"),
    (
        "no-hosts",
        ["plan", "--set", "amd64Count=0", "--set", "arm64Count=0", "--set", "emulationCount=0"],
        {},
        "the fleet has no hosts",
    ),
    ("config-file-list", ["plan"], {"buildfleet.yaml": "- amd64Count: 1\n"}, "buildfleet.yaml must be a mapping"),
    ("config-file-yaml", ["plan"], {"buildfleet.yaml": "amd64Count: [\n"}, "buildfleet.yaml is not valid YAML"),
    ("config-file-missing", ["plan", "--config", "nope.yaml"], {}, "nope.yaml does not exist"),
    (
        "stack-file-list",
        ["plan", "--stack", "dev"],
        {"Pulumi.dev.yaml": "- 1\n"},
        "Pulumi.dev.yaml: expected a mapping",
    ),
    (
        "stack-config-not-mapping",
        ["plan", "--stack", "dev"],
        {"Pulumi.dev.yaml": "config: [1]\n"},
        "Pulumi.dev.yaml: 'config' must be a mapping",
    ),
    ("stack-missing", ["plan", "--stack", "missing"], {}, "Pulumi.missing.yaml does not exist"),
    ("aws-no-cidrs", ["up", "--target", "aws"], {}, "buildfleet:allowedCidrs is empty"),
    ("vpc-cidr-small", ["plan", "--set", "vpcCidr=10.0.0.0/26"], {}, "buildfleet:vpcCidr: 10.0.0.0/26 is too small"),
    ("client-name", ["client", "add", "../ci"], {}, "client name '../ci'"),
    ("aws-world-open", ["up", "--target", "aws", "--set", "allowedCidrs=[0.0.0.0/0]"], {}, "allowWorld"),
    (
        "aws-ecdsa-key",
        [
            "up",
            "--target",
            "aws",
            "--set",
            "allowedCidrs=[198.51.100.7/32]",
            "--set",
            f"sshPublicKey={ECDSA}",
            "--ssh-key",
            "/dev/null",
        ],
        {},
        "EC2 cannot import",
    ),
    (
        "aws-key-without-private",
        ["up", "--target", "aws", "--set", "allowedCidrs=[198.51.100.7/32]", "--set", f"sshPublicKey={ED25519}"],
        {},
        "--ssh-key PATH",
    ),
    ("static-no-file", ["up", "--target", "static"], {}, "needs --inventory FILE"),
    ("static-missing-file", ["up", "--target", "static", "--inventory", "none.yaml"], {}, "none.yaml does not exist"),
    (
        "static-proxycommand",
        ["up", "--target", "static", "--inventory", "hosts.yaml"],
        {
            "hosts.yaml": yaml.safe_dump(
                {
                    "hosts": [
                        {"name": "pi", "address": "192.0.2.1", "role": "arm64", "user": "pi\nProxyCommand sh -c id"}
                    ]
                }
            )
        },
        "user 'pi\\nProxyCommand",
    ),
    (
        "static-port",
        ["up", "--target", "static", "--inventory", "hosts.yaml"],
        {
            "hosts.yaml": yaml.safe_dump(
                {"hosts": [{"name": "pi", "address": "192.0.2.1", "role": "arm64", "user": "pi", "port": 70000}]}
            )
        },
        "port 70000 is not a TCP port",
    ),
    (
        "inventory-damaged",
        ["status", "--fleet", "dmg"],
        {"state/dmg/inventory.json": "{not json"},
        "dmg/inventory.json is damaged",
    ),
    (
        "inventory-wrong-shape",
        ["configure", "--fleet", "dmg"],
        {"state/dmg/inventory.json": "[1, 2]"},
        "dmg/inventory.json is damaged",
    ),
    (
        "builder-record-damaged",
        ["status", "--fleet", "rec"],
        {"state/rec/builders/buildfleet-rec.json": "{oops", "state/rec/inventory.json": STATIC_INVENTORY},
        "buildfleet-rec.json (buildfleet's record of builder 'buildfleet-rec') is damaged",
    ),
    (
        "idle-negative",
        ["plan", "--set", "idleStopMinutes=-1"],
        {},
        "buildfleet:idleStopMinutes: must be 0 (never) or more, got -1",
    ),
    (
        "settings-damaged",
        ["configure", "--fleet", "kept"],
        {"state/kept/settings.json": "{oops", "state/kept/inventory.json": STATIC_INVENTORY},
        "kept/settings.json is damaged (not a JSON object of settings)",
    ),
    (
        "concurrency-unbounded",
        ["bench", "--fleet", "kept", "--concurrency", "33"],
        {"state/kept/inventory.json": AMD64_ONLY},
        "--concurrency 33: at most 32 builds at once",
    ),
    (
        "seed-without-emulation-host",
        ["bench", "--fleet", "kept", "--baseline", "seed"],
        {"state/kept/inventory.json": AMD64_ONLY},
        "this fleet has none (set emulationCount to 1)",
    ),
    (
        "static-pool-unlisted",
        ["up", "--target", "static", "--inventory", "hosts.yaml"],
        {"hosts.yaml": "hosts:\n- {name: a, address: 192.0.2.1, user: u, role: amd64, pool: p}\n"},
        "host 'a': pool 'p' is not under 'pools:'",
    ),
    (
        "settings-key-edited",
        ["doctor", "--fleet", "kept"],
        {"state/kept/settings.json": '{"buildkitdPort": 22}', "state/kept/inventory.json": STATIC_INVENTORY},
        "kept/settings.json: buildfleet:buildkitdPort: 22 is not a usable TCP port",
    ),
]


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project directory, and a state root with a healthy fleet beside the ones a case damages."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BUILDFLEET_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))  # no docker, no pulumi: nothing may need them
    healthy = FleetState(tmp_path / "state" / "healthy")
    healthy.ensure_ssh_key()
    healthy.save_inventory(Inventory("static", (InventoryHost("pi", "arm64", "arm64", "192.0.2.1", "", "pi"),)))
    return tmp_path


@pytest.mark.parametrize(("argv", "files", "culprit"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_error_line_naming_the_culprit_and_changes_nothing(project, capsys, argv, files, culprit):
    for name, text in files.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)
    before = snapshot(project)
    try:
        status = main([*argv, "--project-dir", str(project)] if argv[0] in ("plan", "up") else argv)
    except SystemExit as exit_:  # argparse refuses at parsing
        status = exit_.code
    err = capsys.readouterr().err
    assert status == 2, err
    assert "Traceback" not in err and err.count("error:") == 1, err
    assert culprit in err.replace("\n", "\\n" if "\\n" in culprit else " "), err
    assert snapshot(project) == before


def test_there_are_at_least_thirty_cases():
    assert len(CASES) >= 30 and len({c[0] for c in CASES}) == len(CASES)


def test_the_healthy_fleet_beside_them_still_reads(project):
    assert json.loads((project / "state" / "healthy" / "inventory.json").read_text())["hosts"][0]["name"] == "pi"
