import sys
from pathlib import Path

import pytest

# The tests import their helpers (pulumi_harness) as top-level modules.
sys.path.insert(0, str(Path(__file__).resolve().parent))

# Audit events that start another program (docs.python.org/3/library/audit_events.html).
_SPAWNS = frozenset({"subprocess.Popen", "os.system", "os.posix_spawn", "os.spawn", "os.exec", "os.fork"})


class _Quick:
    test: str | None = None  # the unit test running now (any thread of it): it may not start a program


_quick = _Quick()


# Programs a library starts once per machine to fill a cache of its own: matplotlib asks
# fontconfig for the fonts when it finds no font list in ~/.cache/matplotlib (a fresh machine).
_LIBRARY_CACHES = frozenset({"fc-list"})


# Audit events of a socket put to use: a server (moto's, a stand-in's) or a connection to one.
_NETWORK = frozenset({"socket.bind", "socket.connect"})


def _refuse_spawns_in_quick_tests(event: str, args: tuple) -> None:
    if not _quick.test or event not in _SPAWNS | _NETWORK:
        return
    if event == "subprocess.Popen" and args[0] in _LIBRARY_CACHES:
        return
    what = "starts another program" if event in _SPAWNS else "opens a network socket"
    raise RuntimeError(
        f"{_quick.test} {what} ({event} {args[:2]!r}): mark it "
        "@pytest.mark.process (or integration), the unit tier runs inside pytest alone"
    )


def pytest_configure(config):
    sys.addaudithook(_refuse_spawns_in_quick_tests)  # lives as long as the process: a no-op outside tests


@pytest.fixture(autouse=True)
def private_state_dir(request, tmp_path_factory, monkeypatch):
    """Unit tests never read or write the operator's own fleets: commands that describe an existing
    fleet (plan, cost) would otherwise describe whatever ``default`` fleet this machine has."""
    if request.node.get_closest_marker("integration") is None:
        monkeypatch.setenv("BUILDFLEET_STATE_DIR", str(tmp_path_factory.mktemp("state")))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """A test without the ``process`` or ``integration`` mark, fixtures included, runs in this process
    alone, so the unit tier takes seconds and never touches the machine; one that starts a program
    says so by its mark."""
    quick = not (item.get_closest_marker("integration") or item.get_closest_marker("process"))
    _quick.test = item.nodeid if quick else None
    try:
        return (yield)
    finally:
        _quick.test = None


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item, nextitem):
    """The last test's teardown also ends the session's fixtures (integration fleets taken down):
    that is theirs, not the test's."""
    if nextitem is None:
        _quick.test = None


@pytest.fixture(scope="session")
def moto_endpoint():
    """moto's server for the session, started when a test first asks (a start and stop per test
    would cost more than most AWS tests take)."""
    from moto_aws import moto_server

    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def aws_api(moto_endpoint):
    """The AWS account a test's SDK calls and stand-in pulumi's stacks live in: moto's server,
    emptied after the test."""
    from moto_aws import reset

    yield moto_endpoint
    reset(moto_endpoint)
