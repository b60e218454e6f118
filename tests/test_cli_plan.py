"""`buildfleet plan`: the first command a new user runs, from configuration alone."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from provisioning.artifacts import BUILDKIT_VERSION, BUILDX_VERSION
from provisioning.cli import build_parser, main


def plan_json(capsys, *args):
    assert main(["plan", "--json", *args]) == 0
    return {row["platform"]: (row["host"], row["mode"]) for row in json.loads(capsys.readouterr().out)["placement"]}


def test_default_config_builds_arm_v7_and_v6_natively_on_the_c7g_host(capsys, tmp_path):
    placement = plan_json(capsys, "--project-dir", str(tmp_path))
    assert placement["linux/arm64"] == ("arm64-0", "native")
    assert placement["linux/arm/v7"] == ("arm64-0", "native")
    assert placement["linux/arm/v6"] == ("arm64-0", "native")
    assert placement["linux/amd64"] == ("amd64-0", "native")
    assert placement["linux/386"] == ("amd64-0", "native")
    assert placement["linux/s390x"] == ("emulation-0", "qemu")


def test_graviton4_arm64_role_sends_arm_v7_and_v6_to_qemu(capsys, tmp_path):
    placement = plan_json(capsys, "--project-dir", str(tmp_path), "--set", "arm64InstanceType=c8g.xlarge")
    assert placement["linux/arm64"] == ("arm64-0", "native")
    assert placement["linux/arm/v7"] == ("emulation-0", "qemu")
    assert placement["linux/arm/v6"] == ("emulation-0", "qemu")


def test_reads_buildfleet_yaml_and_pulumi_stack_files(capsys, tmp_path):
    (tmp_path / "Pulumi.dev.yaml").write_text(
        "config:\n  aws:region: eu-west-1\n  buildfleet:arm64InstanceType: m8g.2xlarge\n"
    )
    (tmp_path / "buildfleet.yaml").write_text("platforms: [linux/arm64, linux/arm/v7]\n")
    placement = plan_json(capsys, "--project-dir", str(tmp_path), "--stack", "dev")
    assert placement == {"linux/arm64": ("arm64-0", "native"), "linux/arm/v7": ("emulation-0", "qemu")}


def test_table_names_every_platform_and_says_native_or_qemu(capsys, tmp_path):
    assert main(["plan", "--project-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for platform in ("linux/amd64", "linux/arm64", "linux/arm/v7", "linux/s390x"):
        assert platform in out
    assert "native" in out and "QEMU" in out


@pytest.mark.parametrize(
    ("args", "culprit"),
    [
        (["--set", "platforms=linux/vax"], "buildfleet:platforms"),
        (["--set", "arm64InstanceType=c7i.xlarge"], "buildfleet:arm64InstanceType"),
        (["--set", "emulationCount=0", "--set", "platforms=s390x"], "linux/s390x"),
        (["--set", "novalue"], "novalue"),
        (["--stack", "missing"], "Pulumi.missing.yaml"),
    ],
)
def test_bad_input_is_one_line_naming_the_culprit_and_exit_2(capsys, tmp_path, args, culprit):
    assert main(["plan", "--project-dir", str(tmp_path), *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert culprit in captured.err
    assert len(captured.err.strip().splitlines()) == 1


@pytest.mark.process
def test_console_script_is_installed_and_runs(tmp_path):
    exe = shutil.which("buildfleet")
    assert exe, "pip install -e . installs the buildfleet console script"
    result = subprocess.run([exe, "plan", "--json"], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert json.loads(result.stdout)["hosts"][1]["instanceType"] == "c7g.xlarge"


def test_buildfleet_alone_prints_its_help_and_version_names_the_host_software(capsys):
    assert main([]) == 0
    assert "usage: buildfleet" in capsys.readouterr().out
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert f"BuildKit v{BUILDKIT_VERSION}, buildx v{BUILDX_VERSION}" in capsys.readouterr().out


def test_doctor_has_its_own_help(capsys):
    with pytest.raises(SystemExit):
        main(["doctor", "--help"])
    assert capsys.readouterr().out.startswith("usage: buildfleet doctor")
    assert build_parser().parse_args(["doctor"]).check is True


def test_the_project_carries_its_license_and_house_documents():
    root = Path(__file__).resolve().parent.parent
    assert "Apache License" in (root / "LICENSE").read_text() and "Version 2.0" in (root / "LICENSE").read_text()
    for name in ("CHANGELOG.md", "SECURITY.md", "CONTRIBUTING.md"):
        assert (root / name).read_text().startswith("#"), name


def test_an_explicit_stack_beats_a_stray_buildfleet_yaml_and_the_sources_read_are_named(capsys, tmp_path):
    (tmp_path / "buildfleet.yaml").write_text("amd64Count: 1\n")
    (tmp_path / "Pulumi.dev.yaml").write_text("config:\n  buildfleet:amd64Count: 2\n")
    assert main(["plan", "--json", "--project-dir", str(tmp_path), "--stack", "dev"]) == 0
    captured = capsys.readouterr()
    assert [h["name"] for h in json.loads(captured.out)["hosts"] if h["role"] == "amd64"] == ["amd64-0", "amd64-1"]
    assert captured.err.strip() == f"settings from {tmp_path / 'buildfleet.yaml'}, Pulumi.dev.yaml over the defaults"


def test_pulumis_path_syntax_sets_list_items(capsys, tmp_path):
    args = ["--set", "platforms[0]=linux/amd64", "--set", "platforms[1]=linux/s390x"]
    assert plan_json(capsys, "--project-dir", str(tmp_path), *args) == {
        "linux/amd64": ("amd64-0", "native"),
        "linux/s390x": ("emulation-0", "qemu"),
    }
    assert main(["plan", "--project-dir", str(tmp_path), "--set", "platforms[1]=linux/s390x"]) == 2
    assert "--set platforms[1]: set platforms[0] first" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["configure", "rotate-certs", "bench"])
def test_commands_that_use_the_fleets_kept_settings_offer_no_set(command, capsys):
    with pytest.raises(SystemExit) as refused:
        main([command, "--set", "amd64Count=2"])
    assert refused.value.code == 2 and "unrecognized arguments: --set" in capsys.readouterr().err


def test_doctor_says_set_is_read_only_by_the_preflight(capsys, tmp_path):
    assert main(["doctor", "--fleet", "none", "--set", "amd64Count=2"]) == 2  # no such fleet
    assert "read by doctor --preflight only" in capsys.readouterr().err
