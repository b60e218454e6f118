"""buildfleet installed as users install CLIs: a wheel in a virtual environment of its own
(what pipx makes), run from a directory that is not buildfleet's checkout."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from moto_aws import sdk_env
from pulumi_standin import STANDIN, host_artifacts

from .conftest import build_wheel

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


def test_the_wheel_carries_the_pulumi_program_and_every_file_the_hosts_get(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "provisioning/cloud/program.py",
        "provisioning/project.py",
        "provisioning/artifacts/go/buildkit/go.mod",
        "provisioning/artifacts/go/buildkit/go.sum",
        "provisioning/artifacts/go/build.sh",
        "provisioning/artifacts/host-artifacts.sh",
    ):
        assert needed in names, needed
    assert not [n for n in names if n.startswith("tests/")]
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "Provides-Extra: aws" in metadata and "Provides-Extra: charts" in metadata
    assert 'Requires-Dist: pulumi-aws<8,>=7; extra == "aws"' in metadata


def test_installed_from_the_wheel_it_plans_and_writes_the_project_into_the_users_directory(wheel, tmp_path, aws_api):
    venv = tmp_path / "venv"
    # Dependencies come from this interpreter's site-packages (no index here); buildfleet from the wheel.
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True, timeout=300)
    infra = tmp_path / "infra"
    infra.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["BUILDFLEET_STATE_DIR"] = str(tmp_path / "state")
    where = subprocess.run(
        [str(python), "-c", "import provisioning; print(provisioning.__file__)"],
        cwd=infra,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.startswith(str(venv)), where.stdout  # the wheel's copy, not the checkout's
    plan = subprocess.run(
        [str(venv / "bin" / "buildfleet"), "plan", "--target", "local", "--json"],
        cwd=infra,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert plan.returncode == 0, plan.stderr
    assert json.loads(plan.stdout)["placement"]
    # up's preview runs the wheel's program (inline, through the stand-in pulumi) and announces a
    # change; no terminal and no --yes: it stops there with exit 1, so no host is waited for.
    backend = tmp_path / "backend"
    steps = tmp_path / "steps.json"
    steps.write_text(
        json.dumps([{"op": "create", "urn": "urn:pulumi:default::buildfleet::aws:ec2/vpc:Vpc::fleet-vpc"}])
    )
    env |= {
        "BUILDFLEET_STANDIN_STEPS": str(steps),
        "PATH": f"{STANDIN}{os.pathsep}{env['PATH']}",
        "BUILDFLEET_STANDIN_DIR": str(backend),
        "PULUMI_HOME": str(tmp_path / "pulumi-home"),
        "PULUMI_BACKEND_URL": f"file://{backend}",
        "PULUMI_CONFIG_PASSPHRASE": "correct horse",
        **sdk_env(aws_api),  # the account up checks its limits in first: moto's
    }
    artifacts = host_artifacts(tmp_path / "artifacts")
    up = [str(venv / "bin" / "buildfleet"), "up", "--target", "aws", "--artifacts", str(artifacts)]
    up += ["--set", "allowedCidrs=[198.51.100.7/32]", "--set", "arm64Count=2"]
    preview = subprocess.run(
        up, cwd=infra, env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL
    )
    assert preview.returncode == 1, preview.stderr
    assert "no terminal" in preview.stderr
    assert (infra / "Pulumi.yaml").read_text().startswith("# Written by buildfleet")
    assert sorted(p.name for p in infra.iterdir()) == ["Pulumi.default.yaml", "Pulumi.yaml"]  # no program copied in
    registered = json.loads((backend / "stacks" / "buildfleet" / "default" / "resources.json").read_text())
    assert len([r for r in registered if r["type"] == "aws:ec2/instance:Instance"]) == 4
