import sys
from pathlib import Path

import pytest

# The tests import their helpers (pulumi_harness) as top-level modules.
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(autouse=True)
def private_state_dir(request, tmp_path_factory, monkeypatch):
    """Unit tests never read or write the operator's own fleets: commands that describe an existing
    fleet (plan, cost) would otherwise describe whatever ``default`` fleet this machine has."""
    if request.node.get_closest_marker("integration") is None:
        monkeypatch.setenv("BUILDFLEET_STATE_DIR", str(tmp_path_factory.mktemp("state")))
