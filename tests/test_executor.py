"""The executor, step by step, against a real shell on this machine (tests/local_transport.py):
decide, act, decide again; a host's failure is that host's result, a bug in buildfleet is not."""

import pytest
from local_transport import LocalTransport

from provisioning.hosts.actions import Decision, Run, WriteFile, no_change
from provisioning.hosts.executor import CHANGED, FAILED, UNCHANGED, run_step
from provisioning.hosts.operations import Step
from provisioning.inventory import InventoryHost

pytestmark = pytest.mark.process  # every test here starts another program

HOST = InventoryHost("amd64-0", "amd64", "amd64", "127.0.0.1", "", "root")


def file_step(dest):
    """Write a config file unless it holds what it should."""

    def decide(facts):
        if dest.exists() and dest.read_bytes() == b"port = 1234\n":
            return no_change("in place")
        return Decision((WriteFile(str(dest), b"port = 1234\n", why="the config"),))

    return Step("config", {}, decide)


def test_a_step_acts_checks_again_and_reports_changed_then_nothing_to_do(tmp_path):
    dest = tmp_path / "etc" / "buildkit.toml"
    transport = LocalTransport(HOST)
    first = run_step(transport, file_step(dest))
    assert (first.status, first.detail) == (CHANGED, "the config")
    assert dest.read_bytes() == b"port = 1234\n" and oct(dest.stat().st_mode & 0o777) == "0o644"
    assert not list(tmp_path.glob("buildfleet-stage.*"))  # staging went to /tmp and was removed
    assert run_step(transport, file_step(dest)).status == UNCHANGED


def test_a_command_the_host_refuses_fails_that_step_with_its_exit_code_and_stderr(tmp_path):
    step = Step("fails", {}, lambda facts: Decision((Run(("sh", "-c", "echo no space left >&2; exit 3"), "x"),)))
    result = run_step(LocalTransport(HOST), step)
    assert (result.status, result.exit_code) == (FAILED, 3) and "no space left" in result.stderr_tail


def test_a_connection_lost_mid_upload_is_that_hosts_failure(tmp_path):
    result = run_step(LocalTransport(HOST, lose_on_put=True), file_step(tmp_path / "x.toml"))
    assert result.status == FAILED and "connection to the host was lost" in result.detail
    assert not (tmp_path / "x.toml").exists()


def test_a_bug_in_a_step_is_raised_not_reported_as_a_host_failure():
    def decide(facts):
        return facts["missing"]  # a programming error: KeyError

    with pytest.raises(KeyError):
        run_step(LocalTransport(HOST), Step("buggy", {}, decide))
