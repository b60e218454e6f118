"""The builder, decided without buildx: node arguments, reading inspect, planning changes."""

import dataclasses
import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml
from fleet_parts import inventory_host
from test_facts import parse

from provisioning.builder.builder import plan_changes
from provisioning.builder.ciconfig import HOLD_SECONDS, held_connections
from provisioning.builder.inspect import InspectedBuilder, InspectedNode, parse_inspect
from provisioning.builder.nodes import TLSFiles, docker_container_nodes, remote_nodes
from provisioning.builder.preflight import missing_interpreters
from provisioning.errors import BuildfleetError
from provisioning.hosts.operations.idle import TICK_SECONDS
from provisioning.inventory import Inventory
from provisioning.remote import facts as f
from provisioning.targets import declared_features

DATA = Path(__file__).parent / "data" / "buildx"
TLS = TLSFiles(Path("/s/ca.pem"), Path("/s/cert.pem"), Path("/s/key.pem"))


def host(name, role, platforms, address="203.0.113.5", port=1234):
    marked = [p if native else f"{p}~" for p, native in platforms]
    return inventory_host(name, role, *marked, address=address, port=port, user="ubuntu")


PLATFORMS = ["linux/amd64", "linux/s390x"]
INVENTORY = Inventory(
    "aws",
    (
        host("amd64-0", "amd64", [("linux/amd64", True), ("linux/386", True)]),
        host("emulation-0", "emulation", [("linux/s390x", False)], address="203.0.113.6"),
        host("idle-0", "emulation", []),
    ),
    features=declared_features("aws"),
)


def test_each_host_with_platforms_is_a_remote_node_pinned_to_them():
    nodes = remote_nodes("ci", INVENTORY, TLS)
    assert [n.name for n in nodes] == ["ci-amd64-0", "ci-emulation-0"]  # idle hosts build nothing
    first = nodes[0].create_args("ci", append=False)
    assert first == [
        "buildx",
        "create",
        "--name",
        "ci",
        "--node",
        "ci-amd64-0",
        "--driver",
        "remote",
        "--driver-opt",
        "cacert=/s/ca.pem,cert=/s/cert.pem,key=/s/key.pem,servername=203.0.113.5",
        "--platform",
        "linux/amd64,linux/386",
        "tcp://203.0.113.5:1234",
    ]
    assert "--append" in nodes[1].create_args("ci", append=True)


def test_inspect_output_is_read_per_node():
    builder = parse_inspect((DATA / "inspect-two-nodes.txt").read_text())
    assert (builder.name, builder.driver) == ("bf-dev", "remote")
    amd64, emulation = builder.nodes
    assert amd64.status == "running" and amd64.buildkit == "v0.13.2"
    assert amd64.pinned == ("linux/amd64", "linux/386")
    assert "linux/amd64/v2" in amd64.platforms and "linux/amd64/v2" not in amd64.pinned
    assert emulation.pinned[0] == "linux/arm64" and emulation.endpoint.startswith("tcp://127.0.0.1:")
    assert set(amd64.driver_opts) == {"cacert", "cert", "key", "servername"}


def as_inspected(nodes):
    return InspectedBuilder(
        "ci",
        "remote",
        tuple(
            InspectedNode(n.name, n.endpoint, "running", dict(n.driver_opts), n.platforms, n.platforms) for n in nodes
        ),
    )


def test_a_new_builder_is_created_then_appended():
    changes = plan_changes("ci", remote_nodes("ci", INVENTORY, TLS), None)
    assert [(c.kind, c.node) for c in changes] == [("create", "ci-amd64-0"), ("append", "ci-emulation-0")]


def test_the_same_fleet_changes_nothing():
    nodes = remote_nodes("ci", INVENTORY, TLS)
    assert plan_changes("ci", nodes, as_inspected(nodes)) == []


def test_a_changed_fleet_touches_exactly_the_affected_nodes():
    before = remote_nodes("ci", INVENTORY, TLS)
    moved = Inventory(
        "aws",
        (
            INVENTORY.hosts[0],  # unchanged
            host("emulation-0", "emulation", [("linux/s390x", False), ("linux/riscv64", False)], address="203.0.113.6"),
            host("arm64-0", "arm64", [("linux/arm64", True)], address="203.0.113.7"),
        ),
    )
    changes = plan_changes("ci", remote_nodes("ci", moved, TLS), as_inspected(before))
    assert [(c.kind, c.node) for c in changes] == [("update", "ci-emulation-0"), ("append", "ci-arm64-0")]
    gone = Inventory("aws", INVENTORY.hosts[:1])
    assert [(c.kind, c.node) for c in plan_changes("ci", remote_nodes("ci", gone, TLS), as_inspected(before))] == [
        ("leave", "ci-emulation-0")
    ]


def test_a_fleet_that_builds_nothing_has_no_builder():
    with pytest.raises(BuildfleetError, match="nothing to make a builder of"):
        plan_changes("ci", (), None)


def test_preflight_names_platform_host_and_interpreter():
    configured = parse(f.BinfmtStatus(), "configured-binfmt")
    emulation = host("emulation-0", "emulation", [("linux/s390x", False), ("linux/riscv64", False)])
    assert missing_interpreters(emulation, configured) == []
    entries = {k: v for k, v in configured.entries.items() if k != "qemu-riscv64"}
    assert missing_interpreters(emulation, f.Binfmt(True, entries)) == [
        "linux/riscv64 cannot be built on emulation-0: its QEMU interpreter qemu-riscv64 is not registered "
        "with the F flag (run buildfleet configure)"
    ]
    assert len(missing_interpreters(emulation, f.Binfmt(False))) == 2


def test_preflight_and_configure_agree_an_entry_without_the_f_flag_is_not_usable():
    configured = parse(f.BinfmtStatus(), "configured-binfmt")
    emulation = host("emulation-0", "emulation", [("linux/s390x", False)])
    s390x = configured.entries["qemu-s390x"]
    no_f = f.Binfmt(True, {**configured.entries, "qemu-s390x": dataclasses.replace(s390x, flags="OC")})
    assert missing_interpreters(emulation, no_f) and not no_f.registered("s390x", s390x.interpreter)


def _workflow(tmp_path, text: str, name: str):
    import yaml

    (tmp_path / name).write_text(text)
    return yaml.safe_load(text)


@pytest.mark.process
def test_github_actions_is_a_whole_workflow_whose_builder_step_uses_the_documented_inputs(tmp_path):
    from provisioning.builder.ciconfig import github_actions

    workflow = _workflow(tmp_path, github_actions("ci", remote_nodes("ci", INVENTORY, TLS)), "gh.yml")
    checkout, step, login, build = workflow["jobs"]["build"]["steps"]
    assert checkout["uses"].startswith("actions/checkout@") and login["uses"].startswith("docker/login-action@")
    assert step["uses"].startswith("docker/setup-buildx-action@")
    assert (step["with"]["driver"], step["with"]["endpoint"]) == ("remote", "tcp://203.0.113.5:1234")
    assert step["with"]["platforms"] == "linux/amd64,linux/386"
    (appended,) = yaml.safe_load(step["with"]["append"])
    assert appended == {
        "endpoint": "tcp://203.0.113.6:1234",
        "platforms": "linux/s390x",
        "driver-opts": ["servername=203.0.113.6"],
    }
    assert step["env"]["BUILDER_NODE_1_AUTH_TLS_KEY"] == "${{ secrets.BUILDFLEET_CLIENT_KEY }}"
    assert set(step["env"]) == {f"BUILDER_NODE_{i}_AUTH_TLS_{k}" for i in (0, 1) for k in ("CACERT", "CERT", "KEY")}
    amd64, s390x, *waits, merge = build["run"].splitlines()
    cache = 'type=registry,ref="ghcr.io/${GITHUB_REPOSITORY,,}":buildcache-amd64-0'
    assert amd64 == (
        f"docker buildx build --builder ci --platform linux/amd64,linux/386 --cache-from {cache} "
        f'--cache-to {cache},mode=max --push -t "ghcr.io/${{GITHUB_REPOSITORY,,}}":"${{GITHUB_SHA}}"-amd64-0 . & p0=$!'
    )
    assert "--platform linux/s390x" in s390x and s390x.endswith('"${GITHUB_SHA}"-emulation-0 . & p1=$!')
    assert waits == ["wait $p0", "wait $p1"]
    assert merge == (
        'docker buildx imagetools create -t "ghcr.io/${GITHUB_REPOSITORY,,}":"${GITHUB_SHA}" '
        '"ghcr.io/${GITHUB_REPOSITORY,,}":"${GITHUB_SHA}"-amd64-0 '
        '"ghcr.io/${GITHUB_REPOSITORY,,}":"${GITHUB_SHA}"-emulation-0'
    )
    checked = subprocess.run(["bash", "-n"], input=build["run"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr


def test_circleci_is_a_whole_config_that_writes_the_certs_then_builds_every_platform(tmp_path):
    from provisioning.builder.ciconfig import circleci

    config = _workflow(tmp_path, circleci("ci", remote_nodes("ci", INVENTORY, TLS), PLATFORMS), "circle.yml")
    assert config["version"] == 2.1 and config["workflows"]["buildfleet"]["jobs"] == ["multiarch"]
    join, login, build = config["jobs"]["multiarch"]["steps"][1:]
    assert '"$BUILDFLEET_CLIENT_KEY" > "$tls/key.pem"' in join["run"]["command"]
    assert "--append --driver remote" in join["run"]["command"]
    assert "docker login" in login["run"]["command"]
    command = build["run"]["command"]
    assert command.startswith("docker buildx build --builder ci --platform linux/amd64,linux/386 --cache-from ")
    assert 'ref="${IMAGE%:*}":buildcache-emulation-0,mode=max' in command
    assert command.endswith(
        'imagetools create -t "${IMAGE%:*}":"${IMAGE##*:}" "${IMAGE%:*}":"${IMAGE##*:}"-amd64-0 '
        '"${IMAGE%:*}":"${IMAGE##*:}"-emulation-0\n'
    )


def test_a_one_node_fleet_builds_and_pushes_in_one_command_with_a_cache_the_user_names():
    from provisioning.builder.ciconfig import Image, build_command

    (node,) = remote_nodes("ci", INVENTORY, TLS)[:1]
    command = build_command("ci", [node], Image('"$REPO"', "v1", "'registry.example/team/cache'"))
    assert command == (
        "docker buildx build --builder ci --platform linux/amd64,linux/386 "
        "--cache-from type=registry,ref='registry.example/team/cache':buildcache-amd64-0 "
        "--cache-to type=registry,ref='registry.example/team/cache':buildcache-amd64-0,mode=max "
        '--push -t "$REPO":v1 .\n'
    )


@pytest.mark.parametrize(
    ("render", "schema"),
    [("github_actions", "vendor.github-workflows"), ("circleci", "vendor.circle-ci")],
    ids=["github", "circleci"],
)
@pytest.mark.process
def test_each_ci_file_passes_its_published_schema(tmp_path, render, schema):
    """check-jsonschema's own command, with the schema it vendors (SchemaStore's)."""
    from provisioning.builder import ciconfig

    config = tmp_path / "config.yml"
    nodes = remote_nodes("ci", INVENTORY, TLS)
    rendered = (
        ciconfig.github_actions("ci", nodes)
        if render == "github_actions"
        else ciconfig.circleci("ci", nodes, PLATFORMS)
    )
    config.write_text(rendered)
    checked = subprocess.run(
        ["check-jsonschema", "--builtin-schema", schema, str(config)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.process
def test_a_file_the_schema_refuses_is_refused(tmp_path):
    config = tmp_path / "config.yml"
    config.write_text("version: 2.1\njobs:\n  multiarch:\n    steps: 7\n")
    checked = subprocess.run(["check-jsonschema", "--builtin-schema", "vendor.circle-ci", str(config)])
    assert checked.returncode != 0


def test_docker_container_nodes_go_through_ssh_aliases_on_the_host_network():
    nodes = docker_container_nodes("ci", INVENTORY, "buildfleet/buildkit:x", "/s/buildkitd.toml")
    args = nodes[1].create_args("ci", append=True)
    assert args == [
        "buildx",
        "create",
        "--name",
        "ci",
        "--append",
        "--node",
        "ci-emulation-0",
        "--driver",
        "docker-container",
        "--driver-opt",
        "image=buildfleet/buildkit:x,network=host",
        "--buildkitd-config",
        "/s/buildkitd.toml",
        "--platform",
        "linux/s390x",
        "ssh://ci-emulation-0",
    ]


def test_ssh_config_pins_keys_and_host_keys_per_alias():
    from provisioning.builder.sshconfig import render_ssh_config

    text = render_ssh_config("ci", INVENTORY, Path("/state/ssh/id_ed25519"), Path("/state/ssh/known_hosts"))
    block = text.split("\n\n")[1]
    assert block.splitlines() == [
        "Host ci-emulation-0",
        "  HostName 203.0.113.6",
        "  Port 22",
        "  User ubuntu",
        "  IdentityFile /state/ssh/id_ed25519",
        "  IdentitiesOnly yes",
        "  UserKnownHostsFile /state/ssh/known_hosts",
        "  StrictHostKeyChecking yes",
        "  BatchMode yes",
    ]


@pytest.mark.parametrize(
    ("target", "buildkitd_only", "says"),
    [
        ("aws", (), "answers only 198.51.100.0/24 (allowedCidrs): run the job on a runner in those networks"),
        ("aws", ("0.0.0.0/0",), "buildkitd is open to the internet (buildfleet:buildkitdCidrs) for hosted runners"),
        ("aws", ("192.0.2.0/24",), "buildkitd answers 198.51.100.0/24, 192.0.2.0/24 (allowedCidrs + buildkitdCidrs)"),
        ("local", (), "a local fleet listens on 127.0.0.1"),
    ],
)
def test_ci_config_says_how_the_job_reaches_buildkitd_as_the_fleet_is_set_up(target, buildkitd_only, says):
    from provisioning.builder.ciconfig import reach_note, shell_script, with_note

    note = reach_note(declared_features(target), ("198.51.100.0/24",), buildkitd_only)
    assert says in note and note.startswith("# reach: ")
    script = with_note(shell_script("ci", remote_nodes("ci", INVENTORY, TLS), PLATFORMS), note)
    assert script.splitlines()[:2] == ["#!/bin/sh", note]


def fleet_in_state(tmp_path, monkeypatch, settings: dict, stack: str | None = None) -> None:
    """A fleet named ci in a temporary state root, as up leaves it (inventory, settings, stack)."""
    from provisioning.settings import settings_from_mapping
    from provisioning.state import FleetState

    monkeypatch.setenv("BUILDFLEET_STATE_DIR", str(tmp_path))
    state = FleetState(tmp_path / "ci")
    state.save_inventory(INVENTORY)
    state.save_settings(settings_from_mapping(settings).values)
    if stack:
        state.record_stack(stack)


def ci_config(capsys, form: str) -> dict:
    from provisioning.cli import main

    assert main(["ci-config", "--fleet", "ci", "--format", form, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_ci_config_from_a_fleets_state_says_the_route_its_saved_settings_open(tmp_path, monkeypatch, capsys):
    fleet_in_state(tmp_path, monkeypatch, {"allowedCidrs": ["198.51.100.0/24"], "buildkitdCidrs": ["0.0.0.0/0"]})
    emitted = ci_config(capsys, "circleci")
    assert emitted["reach"].startswith("reach: buildkitd is open to the internet")
    assert emitted["config"].startswith("# reach: buildkitd is open to the internet")
    assert yaml.safe_load(emitted["config"])["version"] == 2.1


@pytest.mark.process
def test_an_aws_fleet_that_stops_when_idle_is_woken_by_the_ci_job_before_it_joins_the_builder(
    tmp_path, monkeypatch, capsys
):
    fleet_in_state(
        tmp_path, monkeypatch, {"allowedCidrs": ["198.51.100.0/24"], "fleetId": "0123456789abcdef"}, stack="dev"
    )  # idle stop: 30 min
    emitted = {form: ci_config(capsys, form)["config"] for form in ("github", "circleci", "shell")}
    steps = yaml.safe_load(emitted["github"])["jobs"]["build"]["steps"]
    assert [s.get("name", s.get("uses")) for s in steps][1:4] == [
        "AWS credentials for the wake step (OIDC, no stored key)",
        "Wake the buildfleet hosts",
        "Set up the buildfleet builder",
    ]
    wake = steps[2]["run"]
    assert "Name=tag:buildfleet:stack,Values=dev Name=tag:buildfleet:fleet-id,Values=0123456789abcdef" in wake
    assert "aws ec2 wait instance-running" in wake  # this fleet's hosts only, even beside one named alike
    assert "</dev/tcp/203.0.113.5/1234" in wake and "</dev/tcp/203.0.113.6/1234" in wake
    assert wake.index("exec 3<>/dev/tcp/203.0.113.6/1234") > wake.index("</dev/tcp/203.0.113.6/1234")  # then held
    assert steps[1]["uses"].startswith("aws-actions/configure-aws-credentials@")
    assert steps[1]["with"]["role-to-assume"] == "${{ vars.BUILDFLEET_WAKE_ROLE_ARN }}"  # no long-lived key
    workflow = yaml.safe_load(emitted["github"])
    assert workflow["permissions"]["id-token"] == "write" and "AWS_SECRET_ACCESS_KEY" not in emitted["github"]
    assert "    run: |\n" in emitted["github"]  # scripts as block scalars, not one line full of \n
    circleci_join = yaml.safe_load(emitted["circleci"])["jobs"]["multiarch"]["steps"][1]["run"]["command"]
    # CircleCI: the job's OIDC token, through the AWS CLI's own web-identity credentials, before the wake
    assert circleci_join.index('printf %s "$CIRCLE_OIDC_TOKEN_V2" > "$AWS_WEB_IDENTITY_TOKEN_FILE"') < (
        circleci_join.index("aws ec2 start-instances")
    )
    assert (
        'AWS_ROLE_ARN="$BUILDFLEET_WAKE_ROLE_ARN"' in circleci_join
        and "AWS_SECRET_ACCESS_KEY" not in emitted["circleci"]
    )
    assert circleci_join.startswith("#!/bin/sh\n") and "CIRCLE_OIDC" not in emitted["shell"]
    for script in (emitted["shell"], circleci_join):
        assert script.index("aws ec2 start-instances") < script.index("docker buildx create")
        parsed = subprocess.run(["sh", "-n"], input=script, capture_output=True, text=True)
        assert parsed.returncode == 0, parsed.stderr  # the shell itself reads it
    (tmp_path / "gh.yml").write_text(emitted["github"])
    checked = subprocess.run(
        ["check-jsonschema", "--builtin-schema", "vendor.github-workflows", str(tmp_path / "gh.yml")]
    )
    assert checked.returncode == 0


@pytest.mark.process
def test_the_wake_step_holds_a_connection_to_each_host_until_its_idle_watcher_has_looked():
    """A host found running but about to power off must see the job as a client: the step keeps a
    connection open longer than the watcher's tick (here shortened to 2 s), to every host at once."""
    listeners = [socket.create_server(("127.0.0.1", 0)) for _ in range(2)]
    held: list[float] = []

    def serve(listener: socket.socket) -> None:
        connection, _ = listener.accept()
        opened = time.monotonic()
        connection.recv(1)  # returns at the client's close
        held.append(time.monotonic() - opened)

    threads = [threading.Thread(target=serve, args=(listener,), daemon=True) for listener in listeners]
    for thread in threads:
        thread.start()
    endpoints = [("127.0.0.1", listener.getsockname()[1]) for listener in listeners]
    started = time.monotonic()
    subprocess.run(["sh", "-c", "\n".join(held_connections(endpoints, seconds=2))], check=True, timeout=30)
    took = time.monotonic() - started
    for thread in threads:
        thread.join(timeout=5)
    assert len(held) == 2 and min(held) >= 1.9  # both held, for the whole time
    assert took < 4  # at once, not one after the other
    assert HOLD_SECONDS > TICK_SECONDS


def test_a_fleet_that_never_stops_gets_no_wake_step(tmp_path, monkeypatch, capsys):
    fleet_in_state(tmp_path, monkeypatch, {"allowedCidrs": ["198.51.100.0/24"], "idleStopMinutes": 0}, stack="dev")
    assert "start-instances" not in ci_config(capsys, "shell")["config"]


@pytest.mark.parametrize(
    ("buildkitd_cidrs", "runs_on"),
    [(["0.0.0.0/0"], "ubuntu-latest"), ([], ["self-hosted", "linux"]), (["192.0.2.0/24"], ["self-hosted", "linux"])],
)
def test_the_github_job_runs_where_the_fleet_is_reachable(tmp_path, monkeypatch, capsys, buildkitd_cidrs, runs_on):
    settings = {"allowedCidrs": ["198.51.100.0/24"], "buildkitdCidrs": buildkitd_cidrs, "idleStopMinutes": 0}
    fleet_in_state(tmp_path, monkeypatch, settings)
    assert yaml.safe_load(ci_config(capsys, "github")["config"])["jobs"]["build"]["runs-on"] == runs_on


ACTIONLINT = Path(os.environ.get("BUILDFLEET_CACHE", "/var/cache/buildfleet")) / "bin" / "actionlint"


@pytest.mark.parametrize("idle_minutes", [30, 0], ids=["with-wake", "without-wake"])
@pytest.mark.process
def test_actionlint_finds_nothing_wrong_in_the_github_workflow(tmp_path, monkeypatch, capsys, idle_minutes):
    assert ACTIONLINT.exists(), f"{ACTIONLINT}: .ci/prepare all builds it from tests/tools/actionlint/go.mod"
    fleet_in_state(tmp_path, monkeypatch, {"allowedCidrs": ["198.51.100.0/24"], "idleStopMinutes": idle_minutes}, "dev")
    workflow = tmp_path / ".github" / "workflows" / "buildfleet.yml"
    workflow.parent.mkdir(parents=True)
    workflow.write_text(ci_config(capsys, "github")["config"])
    linted = subprocess.run([str(ACTIONLINT), "-no-color", str(workflow)], capture_output=True, text=True, cwd=tmp_path)
    assert linted.returncode == 0, linted.stdout + linted.stderr


EXCHANGE_CA = "-----BEGIN CERTIFICATE-----\nMIIBfleetCA\n-----END CERTIFICATE-----\n"


def exchange():
    from provisioning.builder.ciconfig import Exchange

    return Exchange("https://203.0.113.5:8443/v1/certificate", EXCHANGE_CA, "buildfleet")


@pytest.mark.process
def test_with_the_token_exchange_a_github_job_holds_no_buildfleet_secret_and_trades_its_token(tmp_path):
    from provisioning.builder.ciconfig import github_actions

    text = github_actions("ci", remote_nodes("ci", INVENTORY, TLS), exchange=exchange(), platforms=PLATFORMS)
    workflow = _workflow(tmp_path, text, "gh.yml")
    assert "secrets.BUILDFLEET" not in text and "BUILDFLEET_CLIENT_KEY" not in text
    assert workflow["permissions"]["id-token"] == "write"  # the job may ask GitHub for its token
    checkout, join, login, build = workflow["jobs"]["build"]["steps"]
    script = join["run"]
    assert '"$ACTIONS_ID_TOKEN_REQUEST_URL&audience=buildfleet"' in script
    assert "MIIBfleetCA" in script  # the fleet's CA, public, checks the exchange and the hosts
    assert '--data-binary @"$tls/csr.pem"' in script and "https://203.0.113.5:8443/v1/certificate" in script
    assert '--driver-opt "cacert=$tls/ca.pem,cert=$tls/cert.pem,key=$tls/key.pem' in script
    assert build["run"].startswith("docker buildx build --builder ci ")
    assert subprocess.run(["sh", "-n"], input=script, text=True).returncode == 0
    schema = ["check-jsonschema", "--builtin-schema", "vendor.github-workflows", str(tmp_path / "gh.yml")]
    assert subprocess.run(schema, capture_output=True).returncode == 0


@pytest.mark.process
def test_with_the_token_exchange_a_circleci_job_trades_circle_oidc_token_v2(tmp_path):
    from provisioning.builder.ciconfig import circleci

    text = circleci("ci", remote_nodes("ci", INVENTORY, TLS), PLATFORMS, exchange=exchange())
    config = _workflow(tmp_path, text, "circle.yml")
    join = config["jobs"]["multiarch"]["steps"][1]["run"]["command"]
    assert 'token="$CIRCLE_OIDC_TOKEN_V2"' in join and "BUILDFLEET_CLIENT" not in text
    assert subprocess.run(["sh", "-n"], input=join, text=True).returncode == 0
    schema = ["check-jsonschema", "--builtin-schema", "vendor.circle-ci", str(tmp_path / "circle.yml")]
    assert subprocess.run(schema, capture_output=True).returncode == 0


def test_ci_config_oidc_without_an_exchange_says_what_to_set(tmp_path, monkeypatch, capsys):
    from provisioning.cli import main

    fleet_in_state(tmp_path, monkeypatch, {"allowedCidrs": ["198.51.100.0/24"]}, "dev")
    assert main(["ci-config", "--fleet", "ci", "--oidc"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "ci-config --oidc needs the token exchange: set buildfleet:exchangeGithubRepositories" in line


@pytest.mark.process
def test_actionlint_finds_nothing_wrong_in_the_token_exchange_workflow(tmp_path):
    from provisioning.builder.ciconfig import github_actions

    assert ACTIONLINT.exists(), f"{ACTIONLINT}: .ci/prepare all builds it from tests/tools/actionlint/go.mod"
    workflow = tmp_path / ".github" / "workflows" / "buildfleet.yml"
    workflow.parent.mkdir(parents=True)
    workflow.write_text(
        github_actions("ci", remote_nodes("ci", INVENTORY, TLS), exchange=exchange(), platforms=PLATFORMS)
    )
    linted = subprocess.run([str(ACTIONLINT), "-no-color", str(workflow)], capture_output=True, text=True, cwd=tmp_path)
    assert linted.returncode == 0, linted.stdout + linted.stderr
