"""The host keys an AWS host made itself, read where it prints them: its serial console.

cloud-init's keys_to_console module prints a new instance's public host keys between
``-----BEGIN SSH HOST KEY KEYS-----`` markers once, late in its first boot; EC2 keeps the
last 64 KB of the console (GetConsoleOutput; ``Latest`` asks a Nitro instance for now,
not for the buffered copy EC2 posts after each state change). A key read there is pinned
by the instance's id: a later start shows no new block, and an instance made again
(a reclaimed spot host, a replacement) has another id, so its new key is read anew.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from provisioning.cloudinit import host_key_from_console
from provisioning.errors import BuildfleetError
from provisioning.targets.ec2power import aws_error_code

CONSOLE_POLL_SECONDS = 10.0  # between two reads of a console that shows no key yet


def console_text(ec2: Any, instance_id: str, errors: tuple[type[Exception], ...]) -> str:
    """What the instance's console shows now (boto3 decodes EC2's base64); "" before it shows anything."""
    try:
        answer = ec2.get_console_output(InstanceId=instance_id, Latest=True)
    except errors as error:
        if aws_error_code(error) != "UnsupportedOperation":  # not Nitro: only the buffered copy
            raise
        answer = ec2.get_console_output(InstanceId=instance_id)
    return str(answer.get("Output") or "")


def read_console_keys(
    ec2: Any,
    instances: Mapping[str, str],
    timeout: float,
    errors: tuple[type[Exception], ...],
    poll: float | None = None,
    on_output: Callable[[str], None] = lambda line: None,
) -> dict[str, str]:
    """Each host's key (host -> ``ssh-ed25519 BASE64``) from its instance's console
    (``instances``: host -> instance id), every console asked in turn until all have shown one
    or ``timeout`` seconds have passed: then those found (see ``unread_error`` for the rest)."""
    found: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while True:
        for host, instance_id in instances.items():
            if host not in found and (key := host_key_from_console(console_text(ec2, instance_id, errors))):
                found[host] = key
                on_output(f"{host}: host key read from the console of {instance_id}: {key.split()[0]} …{key[-10:]}")
        if len(found) == len(instances) or time.monotonic() > deadline:
            return found
        time.sleep(CONSOLE_POLL_SECONDS if poll is None else poll)


def unread_error(instances: Mapping[str, str], timeout: float) -> BuildfleetError:
    """The hosts (host -> instance id) whose console showed no key within ``timeout`` seconds."""
    named = ", ".join(f"{host} ({instance})" for host, instance in instances.items())
    return BuildfleetError(
        f"the serial console of {named} has not shown its SSH host key after {timeout:.0f} s "
        "(cloud-init prints it once, late in an instance's first boot; see it with aws ec2 "
        "get-console-output --latest --instance-id ID): run buildfleet up again to read it once it is there"
    )
