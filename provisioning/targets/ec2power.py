"""Starting a stack's stopped EC2 hosts (``buildfleet wake`` on AWS), through the AWS SDK.

Instances are found by the tags the Pulumi program gives each one (``buildfleet:stack``,
``Name`` = ``buildfleet-<stack>-<host>``); only DescribeInstances and StartInstances are
called, which is what the stack's wake policy (its ``wakePolicy`` output) allows a CI job.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from provisioning.errors import BuildfleetError
from provisioning.settings import NAMESPACE

LIVE_STATES = ("pending", "running", "stopping", "stopped")


# An instance in these states is off (idle stop, or stopped by hand): start_stack_hosts starts it.
ASLEEP = frozenset({"stopping", "stopped"})


@dataclass(frozen=True)
class Ec2Host:
    host: str
    instance_id: str
    state: str
    public_ip: str
    private_ip: str


def stack_hosts(ec2: Any, stack: str, fleet_id: str = "") -> dict[str, Ec2Host]:
    """The stack's instances that can run again (not terminated), by buildfleet host name; with
    ``fleet_id``, only those of this fleet (another account's stack may be named alike)."""
    prefix = f"{NAMESPACE}-{stack}-"
    filters = [
        {"Name": f"tag:{NAMESPACE}:stack", "Values": [stack]},
        {"Name": "instance-state-name", "Values": list(LIVE_STATES)},
    ] + ([{"Name": f"tag:{NAMESPACE}:fleet-id", "Values": [fleet_id]}] if fleet_id else [])
    found = {}
    for page in ec2.get_paginator("describe_instances").paginate(Filters=filters):
        for reservation in page["Reservations"]:
            for instance in reservation["Instances"]:
                name = _tags(instance).get("Name", "")
                if name.startswith(prefix):
                    host = name.removeprefix(prefix)
                    found[host] = Ec2Host(
                        host,
                        instance["InstanceId"],
                        instance["State"]["Name"],
                        instance.get("PublicIpAddress", ""),
                        instance.get("PrivateIpAddress", ""),
                    )
    return found


def _tags(instance: Mapping[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in instance.get("Tags", [])}


def start_stack_hosts(
    ec2: Any, stack: str, timeout: float, poll: float = 5.0, fleet_id: str = ""
) -> dict[str, Ec2Host]:
    """Start every stopped host of the stack (of this fleet, with ``fleet_id``) and wait until all run."""
    hosts = stack_hosts(ec2, stack, fleet_id)
    if not hosts:
        raise BuildfleetError(
            f"no EC2 instance is tagged {NAMESPACE}:stack={stack} in this region: "
            "is AWS_REGION (or the stack's aws:region) the one the fleet runs in?"
        )
    deadline = time.monotonic() + timeout
    started: set[str] = set()
    while True:
        stopped = [h.instance_id for h in hosts.values() if h.state == "stopped" and h.instance_id not in started]
        if stopped:  # a host still stopping is started on a later round, once it has stopped
            ec2.start_instances(InstanceIds=stopped)
            started.update(stopped)
        if all(h.state == "running" for h in hosts.values()):
            return hosts
        if time.monotonic() > deadline:
            waiting = ", ".join(f"{h.host} ({h.state})" for h in hosts.values() if h.state != "running")
            raise BuildfleetError(f"EC2 hosts not running after {timeout:.0f} s: {waiting}")
        time.sleep(poll)
        hosts = stack_hosts(ec2, stack, fleet_id)


# What to do about the errors EC2 gives a wake most often
# (docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html).
FIXES = {
    "InsufficientInstanceCapacity": "AWS has no capacity for that instance type in the zone just now: "
    "run wake again in a few minutes, or choose another instance type",
    "UnauthorizedOperation": "these credentials may not do it: use ones the stack's wakePolicy is attached to "
    "(pulumi stack output wakePolicyArn)",
    "AuthFailure": "the credentials are not valid for this account and region",
    "IncorrectInstanceState": "a host is between states: run wake again in a minute",
    "RequestLimitExceeded": "EC2 throttled the requests: run wake again in a minute",
}


@contextmanager
def aws_errors(what: str, errors: tuple[type[Exception], ...]) -> Iterator[None]:
    """Inside, an AWS SDK error (``errors``: botocore's, given by the caller: this module imports no
    SDK) becomes one line naming ``what``, as a BuildfleetError."""
    try:
        yield
    except errors as error:
        raise BuildfleetError(describe_aws_error(error, what)) from None


def aws_error_code(error: Exception) -> str:
    """The code AWS answered an SDK call with (``UnauthorizedOperation``, ``DryRunOperation``), or
    "" for an error of the SDK's own (no answer at all)."""
    response = getattr(error, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, Mapping) else ""


def describe_aws_error(error: Exception, what: str) -> str:
    """One line for an AWS SDK error: what failed, the code and message AWS answered, and the fix when known."""
    response = getattr(error, "response", None)
    if isinstance(response, Mapping):  # botocore's ClientError: EC2 answered with an error
        code, message = aws_error_code(error), response.get("Error", {}).get("Message", "")
        fix = FIXES.get(code, "")
        return f"{what}: AWS refused ({code}: {message})" + (f"; {fix}" if fix else "")
    name = type(error).__name__
    if name == "NoRegionError":
        return f"{what}: no AWS region: set AWS_REGION, or the stack's aws:region (pulumi config set aws:region ...)"
    if name in ("NoCredentialsError", "PartialCredentialsError"):
        return f"{what}: no AWS credentials: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    return f"{what}: {error}"  # botocore's own errors say what happened (an endpoint not reached, ...)
