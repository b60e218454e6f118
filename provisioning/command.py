"""Running a program on this machine: an argument list in, one result shape out (Invoke's:
command, exit code, stdout, stderr), the same a host's command over SSH gives. A program that
is not installed, or that fails when it must not, is one error naming what was being done."""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from provisioning.errors import BuildfleetError, tail


@dataclass(frozen=True)
class CommandResult:
    command: str
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def returncode(self) -> int:
        """subprocess's name for the exit code, for code written against CompletedProcess."""
        return self.exit_code


def run_command(
    argv: Sequence[str],
    what: str,
    check: bool = True,
    missing: str = "",
    env: Mapping[str, str] | None = None,
    input_bytes: bytes | None = None,
) -> CommandResult:
    """Run ``argv``; ``what`` names the work in an error, ``missing`` says how to install the program."""
    try:
        done = subprocess.run(list(argv), capture_output=True, input=input_bytes, env=env)
    except FileNotFoundError:
        raise BuildfleetError(f"{what}: {argv[0]} is not installed" + (f" ({missing})" if missing else "")) from None
    stdout, stderr = done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")
    result = CommandResult(shlex.join(argv), done.returncode, stdout, stderr)
    if check and not result.ok:
        raise BuildfleetError(f"{what} failed (exit {result.exit_code}): {tail(result.stderr) or tail(result.stdout)}")
    return result
