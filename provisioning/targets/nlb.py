"""A pool's Network Load Balancer as a rolling restart steers it, through the AWS SDK.

Taking a member out is deregistering it from the pool's target group: the NLB sends it no
new flow, and keeps the flows it has for the group's deregistration delay (30 s, set by the
program; `deregistration_delay.connection_termination` stays off, so even a longer build is
not cut). Its connections count as one while the target is ``draining`` (an NLB gives no
per-target flow count); the drain waits for buildkitd's own builds besides. Putting it back is
registering it again and waiting for ``healthy`` (two TCP checks, 10 s apart). Everything is
found from what configure already has, no Pulumi CLI needed: the target group behind the
pool's address (the NLB's DNS name) and each member's instance by the stack's tags. The
calls and states: Elastic Load Balancing API reference (DeregisterTargets, RegisterTargets,
DescribeTargetHealth), the NLB guide's "Deregistration delay".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from provisioning.errors import BuildfleetError
from provisioning.inventory import Inventory
from provisioning.targets.ec2power import aws_errors, stack_hosts

REGISTER_SECONDS = 300.0  # a registered target passes its checks in ~30 s; AWS may take minutes to start checking


@dataclass
class NlbMembers:
    elbv2: Any  # boto3 elbv2 client
    ec2: Any  # boto3 ec2 client
    inventory: Inventory
    stack: str
    fleet_id: str = ""
    poll: float = 5.0
    sdk_errors: tuple[type[Exception], ...] = ()  # botocore's, given by the target (this module imports no SDK)
    _groups: dict[str, str] = field(default_factory=dict, repr=False)
    _instances: dict[str, str] = field(default_factory=dict, repr=False)

    def take_out(self, pool: str, host: str) -> None:
        self._aws(f"taking {host} out of pool {pool}", self.elbv2.deregister_targets, **self._target(pool, host))

    def sessions(self, pool: str, host: str) -> int:
        return 1 if self._state(pool, host) == "draining" else 0

    def put_back(self, pool: str, host: str, timeout: float) -> None:
        self._aws(f"putting {host} back into pool {pool}", self.elbv2.register_targets, **self._target(pool, host))
        limit = max(timeout, REGISTER_SECONDS)
        deadline = time.monotonic() + limit
        while (state := self._state(pool, host)) != "healthy":
            if time.monotonic() > deadline:
                raise BuildfleetError(
                    f"pool {pool}: {host} is registered again but the NLB finds it {state} ({limit:.0f} s)"
                )
            time.sleep(self.poll)

    def _state(self, pool: str, host: str) -> str:
        what = f"reading {host}'s state in pool {pool}"
        found = self._aws(what, self.elbv2.describe_target_health, **self._target(pool, host))
        states = [d["TargetHealth"]["State"] for d in found.get("TargetHealthDescriptions", [])]
        return states[0] if states else "unused"

    def _target(self, pool: str, host: str) -> dict[str, Any]:
        port = self.inventory.pool(pool).port
        return {"TargetGroupArn": self._group(pool), "Targets": [{"Id": self._instance(host), "Port": port}]}

    def _group(self, pool: str) -> str:
        """The target group the pool's listener forwards to, found by the NLB's DNS name."""
        if pool not in self._groups:
            what = f"finding pool {pool}'s target group"
            self._groups[pool] = self._aws(what, self._group_of, self.inventory.pool(pool).address, pool)
        return self._groups[pool]

    def _group_of(self, address: str, pool: str) -> str:
        for page in self.elbv2.get_paginator("describe_load_balancers").paginate():
            for balancer in page["LoadBalancers"]:
                if balancer.get("DNSName") == address:
                    listeners = self.elbv2.describe_listeners(LoadBalancerArn=balancer["LoadBalancerArn"])["Listeners"]
                    for action in (a for listener in listeners for a in listener.get("DefaultActions", [])):
                        if action.get("TargetGroupArn"):
                            return str(action["TargetGroupArn"])
        raise BuildfleetError(f"pool {pool}: no load balancer with a listener answers at {address} (run buildfleet up)")

    def _instance(self, host: str) -> str:
        if host not in self._instances:
            found = self._aws("finding the stack's instances", stack_hosts, self.ec2, self.stack, self.fleet_id)
            self._instances.update({name: h.instance_id for name, h in found.items()})
        if host not in self._instances:
            raise BuildfleetError(f"{host}: stack {self.stack!r} has no instance of that name (run buildfleet up)")
        return self._instances[host]

    def _aws(self, what: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``call`` with an SDK error as one line naming what was being done."""
        with aws_errors(what, self.sdk_errors):
            return call(*args, **kwargs)
