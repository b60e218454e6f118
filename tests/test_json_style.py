"""Every command's --json spells its keys one way: camelCase, as the settings keys and the stack
outputs are spelled; maps keyed by data (host names may hold underscores) keep their keys."""

import json

import pytest

from provisioning.cli import main
from provisioning.jsonstyle import SNAKE, Keyed, camel_keys, dumps


def keys(value, found: set[str]) -> set[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            found.add(key)
            keys(item, found)
    elif isinstance(value, list):
        for item in value:
            keys(item, found)
    return found


@pytest.mark.parametrize(
    "command",
    [
        ["plan", "--json"],
        ["plan", "--json", "--set", "amd64Count=2"],
        ["cost", "--json", "--build-hours-per-day", "4"],
        ["cost", "--json", "--set", "spot=true", "--set", "amd64Count=2"],
        ["doctor", "--preflight", "--target", "local", "--json"],
    ],
)
@pytest.mark.process
def test_every_key_a_command_prints_is_camel_case(capsys, tmp_path, command):
    main([*command, "--project-dir", str(tmp_path)] if command[0] != "doctor" else command)
    printed = json.loads(capsys.readouterr().out)
    assert [key for key in keys(printed, set()) if SNAKE.fullmatch(key)] == []  # runner names are data


def test_snake_case_becomes_camel_case_and_data_keys_stay_as_they_are():
    payload = {"idle_seconds": Keyed({"build_box": 3}), "per_platform": [{"fleet_s": 1.5, "linux/arm64": 2}]}
    assert camel_keys(payload) == {"idleSeconds": {"build_box": 3}, "perPlatform": [{"fleetS": 1.5, "linux/arm64": 2}]}
    assert json.loads(dumps({"usd_per_hour": 1})) == {"usdPerHour": 1}
