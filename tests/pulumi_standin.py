"""The `pulumi` boundary for tests: tests/standin/pulumi on PATH, with a local (file://)
backend, a passphrase and a project directory of its own, so the real Automation API
library runs and every command line it builds is recorded."""

import hashlib
import json
import os
from pathlib import Path

import yaml
from moto_aws import point_sdk_at

from provisioning.artifacts import BUILDKIT_VERSION, BUILDX_VERSION
from provisioning.state import FleetState
from provisioning.targets.aws import AwsTarget
from provisioning.targets.base import ConfigSources

PROJECT = Path(__file__).resolve().parent.parent


def host_artifacts(root: Path, arches=("amd64", "arm64")) -> Path:
    """An artifact directory as go/build.sh lays it out (small files, real checksums)."""
    for arch in arches:
        for tool, version, names, listing in (
            ("buildx", BUILDX_VERSION, ("docker-buildx",), "docker-buildx.sha256"),
            ("buildkit", BUILDKIT_VERSION, ("buildkitd", "buildctl"), "SHA256SUMS"),
        ):
            directory = root / tool / version / arch
            directory.mkdir(parents=True, exist_ok=True)
            sums = []
            for name in names:
                data = f"{name} {arch}".encode()
                (directory / name).write_bytes(data)
                sums.append(f"{hashlib.sha256(data).hexdigest()}  {name}\n")
            (directory / listing).write_text("".join(sums))
    return root


STANDIN = Path(__file__).resolve().parent / "standin"


class StandInPulumi:
    """The stand-in's world: a local (file://) backend, a passphrase, a project directory."""

    def __init__(self, tmp_path: Path, monkeypatch, outputs: dict, aws_endpoint: str):
        """``aws_endpoint``: moto's server (the ``aws_api`` fixture), where every AWS SDK call of
        buildfleet's goes (wake, down's account checks): the stand-in's stacks live in that account."""
        point_sdk_at(monkeypatch, aws_endpoint)
        # the hostKeys the program would have been given to export these outputs: up sets it
        self.host_keys = outputs.get("hostKeySource", "")
        self.backend = tmp_path / "backend"
        self.project = tmp_path / "project"
        self.project.mkdir()  # empty, as a user's own directory: buildfleet writes its Pulumi.yaml
        outputs_file = tmp_path / "outputs.json"
        outputs_file.write_text(json.dumps(outputs))
        for name in [n for n in os.environ if n.startswith("PULUMI_")]:
            monkeypatch.delenv(name)
        monkeypatch.setenv("PATH", f"{STANDIN}{os.pathsep}{os.environ['PATH']}")
        monkeypatch.setenv("BUILDFLEET_STANDIN_DIR", str(self.backend))
        monkeypatch.setenv("BUILDFLEET_STANDIN_OUTPUTS", str(outputs_file))
        monkeypatch.setenv("PULUMI_HOME", str(tmp_path / "pulumi-home"))
        monkeypatch.setenv("PULUMI_BACKEND_URL", f"file://{self.backend}")
        monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "correct horse")
        monkeypatch.setenv("BUILDFLEET_STATE_DIR", str(tmp_path / "state"))

    def calls(self) -> list[dict]:
        log = self.backend / "calls.jsonl"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    def commands(self) -> list[str]:
        return [" ".join(a for a in call["argv"] if a != "--non-interactive") for call in self.calls()]

    def destroys(self, stack: str = "dev") -> list[str]:
        """The destroy commands run for ``stack`` (previews left out), each run as an inline program."""
        return [
            c
            for c in self.commands()
            if c.startswith("destroy --skip-preview --yes")
            and "--exec-kind auto.inline" in c
            and c.endswith(f"--stack {stack}")
        ]

    def stack_config(self, stack: str = "dev") -> dict:
        return yaml.safe_load((self.project / f"Pulumi.{stack}.yaml").read_text())["config"]

    def target(self, tmp_path: Path, *overrides: str, stack: str = "dev", **fields) -> AwsTarget:
        if self.host_keys and not any(o.startswith("hostKeys=") for o in overrides):
            overrides = (*overrides, f"hostKeys={self.host_keys}")
        sources = ConfigSources(self.project, None, stack, overrides)
        fields.setdefault("creating", True)  # as up: the stack file may not exist yet
        fields.setdefault("artifacts_dir", host_artifacts(tmp_path / "artifacts"))
        return AwsTarget(stack, self.project, FleetState(tmp_path / "state" / "f"), sources=sources, **fields)
