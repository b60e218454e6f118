"""Two operators, one fleet: the second imports the state the first sealed for the second's SSH
key and has the same fleet (its configure changes nothing, its builder builds), and the first's
keeps working; a passphrase bundle and a key it was not sealed for open nothing."""

import subprocess
import uuid

import pytest

from .conftest import amd64_build, buildfleet, cli_env, leftovers

pytestmark = pytest.mark.integration

PASSPHRASE = "two operators, one fleet CA"
DOCKERFILE = 'FROM scratch\nCOPY --from=busybox busybox-amd64 /bin/busybox\nRUN ["/bin/busybox", "true"]\n'


def builds(builder: str, env: dict, context) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["docker", *amd64_build(builder, context)], capture_output=True, text=True, env=env, timeout=600
    )


def ssh_keygen(path) -> None:
    """An operator's own key, as they have one in ~/.ssh."""
    path.parent.mkdir(parents=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


def test_a_second_operator_with_the_imported_state_has_the_same_fleet_and_the_first_keeps_it(tmp_path, machine_ready):
    fleet = f"team{uuid.uuid4().hex[:6]}"
    first = cli_env(tmp_path / "first")
    second = {**cli_env(tmp_path / "second"), "BUILDFLEET_STATE_PASSPHRASE": PASSPHRASE}
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(DOCKERFILE)
    bundle, for_key = tmp_path / "handover" / "team.bundle", tmp_path / "handover" / "team.age"
    bundle.parent.mkdir(mode=0o755)
    bundle.parent.chmod(0o755)  # the user's own directory: export leaves its mode as it is
    second_key, other_key = tmp_path / "second-home" / "id_ed25519", tmp_path / "mallory-home" / "id_ed25519"
    ssh_keygen(second_key)
    ssh_keygen(other_key)
    args = ["--fleet", fleet, "--project-dir", str(tmp_path)]
    try:
        up = buildfleet("up", *args, "--set", "emulationCount=0", "--set", "platforms=linux/amd64", env=first)
        assert up.returncode == 0, up.stdout + up.stderr
        export = ("state", "export", str(bundle), "--fleet", fleet)
        exported = buildfleet(*export, env={**first, "BUILDFLEET_STATE_PASSPHRASE": PASSPHRASE})
        assert exported.returncode == 0, exported.stdout + exported.stderr
        assert bundle.stat().st_mode & 0o777 == 0o600 and bundle.parent.stat().st_mode & 0o777 == 0o755
        twice = buildfleet(*export, env={**first, "BUILDFLEET_STATE_PASSPHRASE": PASSPHRASE})
        assert twice.returncode != 0 and "exists: export writes a new file only" in twice.stderr

        wrong = buildfleet(
            "state",
            "import",
            str(bundle),
            "--fleet",
            fleet,
            env={**second, "BUILDFLEET_STATE_PASSPHRASE": "not the passphrase at all"},
        )
        assert wrong.returncode != 0 and "does not open with this passphrase" in wrong.stderr
        assert not (tmp_path / "second" / fleet).exists()  # nothing half-written

        sealed = ("state", "export", str(for_key), "--fleet", fleet, "--recipients-file", f"{second_key}.pub")
        exported = buildfleet(*sealed, env=first)  # no passphrase: the second operator's public key
        assert exported.returncode == 0, exported.stdout + exported.stderr
        not_theirs = ("state", "import", str(for_key), "--fleet", fleet, "--identity", str(other_key))
        refused = buildfleet(*not_theirs, env=second)
        assert refused.returncode != 0 and "sealed for other keys" in refused.stderr, refused.stderr
        assert not (tmp_path / "second" / fleet).exists()

        importing = ("state", "import", str(for_key), "--fleet", fleet, "--identity", str(second_key))
        imported = buildfleet(*importing, env=second)
        assert imported.returncode == 0, imported.stdout + imported.stderr
        configure = buildfleet("configure", "--fleet", fleet, env=second)
        assert configure.returncode == 0, configure.stdout + configure.stderr
        assert "nothing to change: the fleet is configured" in configure.stdout  # no second CA, no new certificates
        made = buildfleet("builder", "create", "--fleet", fleet, env=second)
        assert made.returncode == 0, made.stdout + made.stderr

        for env in (second, first):  # each operator's own builder, in its own docker configuration
            built = builds(f"buildfleet-{fleet}", env, context)
            assert built.returncode == 0, built.stderr[-3000:]

        again = buildfleet("state", "import", str(bundle), "--fleet", fleet, env=second)  # the passphrase's copy
        assert again.returncode != 0 and "already has state here" in again.stderr

        # An operator without the state is refused by the hosts at configure's first step (the fleet
        # step, tested on real hosts in test_static_target): a local target's up by a third state here
        # would start a registry of its own and name containers like this fleet's, so it is not run here.
    finally:
        removed = buildfleet("builder", "rm", "--fleet", fleet, env=second)
        down = buildfleet("down", "--fleet", fleet, "--yes", env=first)
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert down.returncode == 0, down.stdout + down.stderr
    assert leftovers(fleet) == []
