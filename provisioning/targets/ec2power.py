"""Starting a stack's stopped EC2 hosts (``buildfleet wake`` on AWS), through the AWS SDK.

Instances are found by the tags the Pulumi program gives each one (``buildfleet:stack``,
``Name`` = ``buildfleet-<stack>-<host>``); only DescribeInstances and StartInstances are
called, which is what the stack's wake policy (its ``wakePolicy`` output) allows a CI job.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from provisioning.errors import BuildfleetError
from provisioning.settings import NAMESPACE

LIVE_STATES = ("pending", "running", "stopping", "stopped")


@dataclass(frozen=True)
class Ec2Host:
    host: str
    instance_id: str
    state: str
    public_ip: str
    private_ip: str


def stack_hosts(ec2: Any, stack: str) -> dict[str, Ec2Host]:
    """The stack's instances that can run again (not terminated), by buildfleet host name."""
    prefix = f"{NAMESPACE}-{stack}-"
    filters = [
        {"Name": f"tag:{NAMESPACE}:stack", "Values": [stack]},
        {"Name": "instance-state-name", "Values": list(LIVE_STATES)},
    ]
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


def start_stack_hosts(ec2: Any, stack: str, timeout: float, poll: float = 5.0) -> dict[str, Ec2Host]:
    """Start every stopped host of the stack and wait until all run; where each is now."""
    hosts = stack_hosts(ec2, stack)
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
        hosts = stack_hosts(ec2, stack)
