"""Every `buildfleet …` the README shows — in its command table, its prose and its shell blocks —
names a command that exists, with flags that command takes and choices those flags accept."""

import argparse
import re
from collections.abc import Iterator
from pathlib import Path

from provisioning.cli import build_parser

README = Path(__file__).resolve().parent.parent / "README.md"
SHELL_BLOCKS = ("sh", "bash", "console", "shell", "")
FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)(?:[ =]([a-z0-9][a-z0-9.-]*))?")


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def shell_lines(text: str) -> Iterator[str]:
    language = None
    for line in text.splitlines():
        if line.startswith("```"):
            language = None if language is not None else line[3:].strip()
        elif language in SHELL_BLOCKS:
            yield line.split(" #")[0]


def invocations(text: str) -> list[str]:
    found = re.findall(r"`(buildfleet [^`\n]*)`", text)
    for line in shell_lines(text):
        found += re.findall(r"(?:^|&&|;|\|\||\$\()\s*(buildfleet [^&;|)]*)", line)
    return found


def problems(text: str, parser: argparse.ArgumentParser) -> list[str]:
    commands = subcommands(parser)
    found = []
    for shown in invocations(text):
        words = shown.split()[1:]
        if not words or words[0].startswith("-"):
            continue
        command = commands.get(words[0])
        if command is None:
            found.append(f"{shown}: no command {words[0]!r}")
            continue
        for flag, value in FLAG.findall(shown):
            action = command._option_string_actions.get(flag) or parser._option_string_actions.get(flag)
            if action is None:
                found.append(f"{shown}: {words[0]} has no {flag}")
            elif value and action.choices is not None and value not in action.choices:
                found.append(f"{shown}: {flag} takes {', '.join(map(str, action.choices))}, not {value!r}")
    return found


def test_every_command_and_flag_the_readme_shows_exists():
    text = README.read_text()
    assert len(invocations(text)) > 40  # the table, the quick starts and the sections
    assert problems(text, build_parser()) == []


def test_the_check_finds_a_missing_command_a_missing_flag_and_a_wrong_choice():
    text = "Run `buildfleet deploy`.\n```sh\nbuildfleet up --targte aws && buildfleet plan --target gcp\n```\n"
    assert problems(text, build_parser()) == [
        "buildfleet deploy: no command 'deploy'",
        "buildfleet up --targte aws : up has no --targte",
        "buildfleet plan --target gcp: --target takes local, aws, static, vm, not 'gcp'",
    ]
