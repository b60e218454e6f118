"""`buildfleet completion bash|zsh|fish`: the script a shell loads, and the answers buildfleet
gives it. bash runs here for real; zsh and fish are not installed, so their side is shown by
buildfleet answering the protocol their scripts speak (argcomplete's environment variables)."""

import os
import shutil
import subprocess

import pytest

BUILDFLEET = shutil.which("buildfleet")
pytestmark = [
    pytest.mark.process,  # every test here starts the console script
    pytest.mark.skipif(BUILDFLEET is None, reason="buildfleet is not installed (pip install -e .)"),
]

BASH = r"""
source <(buildfleet completion bash)
COMP_LINE="$1"; COMP_POINT=${#COMP_LINE}; read -r -a COMP_WORDS <<< "$1"
[[ "$1" == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
_python_argcomplete buildfleet "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\n' "${COMPREPLY[@]}"
"""


def bash_completes(line: str) -> list[str]:
    result = subprocess.run(["bash", "-c", BASH, "bash", line], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [word.strip() for word in result.stdout.splitlines() if word.strip()]


def test_bash_completes_commands_flags_and_their_choices():
    assert bash_completes("buildfleet rot") == ["rotate-certs"]
    assert "--target" in bash_completes("buildfleet up --ta")
    assert bash_completes("buildfleet up --target ") == ["local", "aws", "static", "vm"]
    assert [w for w in bash_completes("buildfleet completion ") if not w.startswith("-")] == ["bash", "zsh", "fish"]


def test_fish_and_zsh_scripts_hook_buildfleet_and_buildfleet_answers_their_protocol(tmp_path):
    fish = subprocess.run([BUILDFLEET, "completion", "fish"], capture_output=True, text=True, check=True).stdout
    assert "complete --command buildfleet" in fish and "_ARGCOMPLETE_SHELL fish" in fish
    zsh = subprocess.run([BUILDFLEET, "completion", "zsh"], capture_output=True, text=True, check=True).stdout
    assert zsh.startswith("#compdef buildfleet")
    answers = tmp_path / "answers"
    line = "buildfleet doctor --pre"
    env = {
        **os.environ,
        "_ARGCOMPLETE": "1",
        "_ARGCOMPLETE_SHELL": "fish",
        "_ARGCOMPLETE_DFS": "\t",
        "_ARGCOMPLETE_IFS": "\n",
        "COMP_LINE": line,
        "COMP_POINT": str(len(line)),
        "_ARGCOMPLETE_STDOUT_FILENAME": str(answers),
    }
    subprocess.run([BUILDFLEET], env=env, capture_output=True, timeout=60, check=True)
    assert [a.split("\t")[0].strip() for a in answers.read_text().splitlines()] == ["--preflight"]
