import gzip
import importlib.util
import json
import os
import sys
import tempfile
from pathlib import Path

import pytest

# The tests import their helpers (pulumi_harness) as top-level modules.
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _moto_amis() -> Path:
    """moto's own AMI list plus images from Debian's and Canonical's accounts as buildfleet looks
    them up (the pre-flight's image check, its RunInstances dry run): moto has none of those,
    and reads MOTO_AMIS_PATH once, when its EC2 models are first imported (after this)."""
    spec = importlib.util.find_spec("moto")  # found, not imported
    if spec is None or not spec.submodule_search_locations:
        return Path(os.devnull)
    listed = Path(spec.submodule_search_locations[0]) / "ec2" / "resources" / "amis.json.gz"
    images = json.loads(gzip.decompress(listed.read_bytes()))
    published = [
        ("136693071363", "debian-12-amd64-20261101-1920", "x86_64"),
        ("136693071363", "debian-12-arm64-20261101-1920", "arm64"),
        ("099720109477", "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20261101", "x86_64"),
        ("099720109477", "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-arm64-server-20261101", "arm64"),
    ]
    for number, (owner, name, arch) in enumerate(published):
        image = {"ami_id": f"ami-0bf1ee{number:02x}", "owner_id": owner, "name": name, "architecture": arch}
        image |= {"state": "available", "public": True, "virtualization_type": "hvm", "root_device_type": "ebs"}
        image |= {"root_device_name": "/dev/xvda", "image_type": "machine", "image_location": f"{owner}/{name}"}
        images.append(image | {"description": name, "hypervisor": "xen"})
    path = Path(tempfile.gettempdir()) / f"buildfleet-moto-amis-{os.getpid()}.json"
    path.write_text(json.dumps(images))
    return path


if "MOTO_AMIS_PATH" not in os.environ:
    _MOTO_AMIS = _moto_amis()
    os.environ["MOTO_AMIS_PATH"] = str(_MOTO_AMIS)

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


def pytest_unconfigure(config):
    if "_MOTO_AMIS" in globals() and _MOTO_AMIS.name.startswith("buildfleet-moto-amis-"):
        _MOTO_AMIS.unlink(missing_ok=True)  # the list this session wrote, and nothing else


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


@pytest.fixture
def github():
    """A stand-in GitHub OIDC provider (its own signing key) with its JWKS on 127.0.0.1."""
    from oidc_provider import Provider, serving

    from provisioning.exchange.service import GITHUB

    with serving(Provider(GITHUB)) as provider:
        yield provider
