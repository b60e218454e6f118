"""An install without the ``aws``, ``charts`` and ``oidc`` extras: every local command works, and the ones
that need an extra say which one. The packages are made unimportable in a child interpreter,
as they are where they were never installed."""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from provisioning.extras import MissingExtra, require

TESTS = Path(__file__).resolve().parent
# A two-row table, as tests/test_bench.py makes one, written by bench's report.
WRITE_REPORT = textwrap.dedent(
    """
    from pathlib import Path
    from provisioning.bench.report import rows, write
    from provisioning.bench.runs import plan_runs
    from provisioning.platforms import parse_platforms
    from test_bench import LOCAL, measured
    runs = plan_runs(LOCAL, parse_platforms(["amd64", "arm64"]), ["c-compile"])
    results = [measured(r, (1.0, 2.0, 3.0), (2.0, 2.0, 2.0)) for r in runs]
    table = rows(results, {h.name: h.arch for h in LOCAL.hosts}, {})
    print(sorted(write(Path(sys.argv[1]), table, results, {}, "bench", "")))
    """
)
ABSENT = ("pulumi", "pulumi_aws", "pulumi_tls", "boto3", "botocore", "matplotlib", "jwt")

ABSENT_PACKAGES = textwrap.dedent(
    f"""
    import importlib.abc, sys

    class Absent(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in {ABSENT!r}:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
            return None

    sys.meta_path.insert(0, Absent())
    """
)
CLI = textwrap.dedent(
    f"""
    from provisioning.cli import main
    code = main(sys.argv[1:])
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in {ABSENT!r})
    print("LEAKED", leaked, file=sys.stderr)
    sys.exit(code)
    """
)


def python_without_extras(code: str, *args: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "400", "PYTHONPATH": str(TESTS)}  # wide tables; test_bench's helpers
    return subprocess.run(
        [sys.executable, "-c", ABSENT_PACKAGES + code, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=env,
    )


def without_extras(*args: str, cwd) -> subprocess.CompletedProcess:
    return python_without_extras(CLI, *args, cwd=cwd)


@pytest.mark.process
def test_plan_and_cost_of_a_local_fleet_need_no_extra(tmp_path):
    plan = without_extras("plan", "--target", "local", "--json", cwd=tmp_path)
    assert plan.returncode == 0, plan.stderr
    assert json.loads(plan.stdout)["placement"]
    assert "LEAKED []" in plan.stderr  # not even imported on the way
    help_ = without_extras("--help", cwd=tmp_path)
    assert help_.returncode == 0 and "LEAKED" not in help_.stderr.replace("LEAKED []", "")


@pytest.mark.process
def test_up_target_aws_names_the_extra_to_install(tmp_path):
    result = without_extras("up", "--target", "aws", "--set", "allowedCidrs=[198.51.100.7/32]", "--yes", cwd=tmp_path)
    assert result.returncode == 2
    assert re.search(
        r"error: the aws target needs \w+, which this install lacks: pip install 'buildfleet\[aws\]'", (result.stderr)
    )
    assert not (tmp_path / "Pulumi.yaml").exists()  # nothing written before the refusal


@pytest.mark.process
def test_preflight_for_aws_lists_the_missing_packages_with_the_extra(tmp_path):
    result = without_extras("doctor", "--preflight", "--target", "aws", cwd=tmp_path)
    assert result.returncode == 1
    assert "not checked: boto3 is not installed" in result.stdout
    assert "pip install 'buildfleet[aws]'" in result.stdout


def test_a_missing_extra_is_told_apart_from_a_broken_module():
    with pytest.raises(MissingExtra, match=r"^bench.png needs nosuchmodule, .*buildfleet\[charts\]"):
        require("nosuchmodule.sub", "charts", "bench.png")
    with pytest.raises(ModuleNotFoundError):
        require("provisioning.nosuchmodule", "charts", "bench.png")  # ours and missing: a bug, not an extra


@pytest.mark.process
def test_bench_writes_its_tables_without_matplotlib_and_its_chart_with_it(tmp_path):
    lean = python_without_extras(WRITE_REPORT, str(tmp_path / "lean"), cwd=tmp_path)
    assert lean.stdout.strip() == "['csv', 'json', 'markdown']", lean.stderr
    assert not (tmp_path / "lean" / "bench.png").exists()
    full = subprocess.run(
        [sys.executable, "-c", "import sys\n" + WRITE_REPORT, str(tmp_path / "full")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(TESTS)},
    )
    assert full.stdout.strip() == "['csv', 'json', 'markdown', 'png']", full.stderr
