"""What a fleet's stack cannot take back by itself when it is destroyed, and what ``down``
checks is gone after it. The wake policy attached, as the README suggests, to a CI user, group
or role outside the stack: IAM refuses to delete an attached policy (DeleteConflict), so
``down`` detaches it first, and says from whom. Persistent spot requests: cancelled first, or
they launch instances again. Then what of the fleet is still in the account, listed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from provisioning.settings import NAMESPACE
from provisioning.targets.ec2power import stack_hosts


def detach_policy(iam: Any, policy_arn: str, own_roles: str) -> list[str]:
    """Detach ``policy_arn`` from every user, group and role it is attached to, except the
    stack's own roles (names starting ``own_roles``: their attachments are stack resources)."""
    done = []
    for page in iam.get_paginator("list_entities_for_policy").paginate(PolicyArn=policy_arn):
        for user in page["PolicyUsers"]:
            iam.detach_user_policy(UserName=user["UserName"], PolicyArn=policy_arn)
            done.append(f"wake policy detached from user {user['UserName']}")
        for group in page["PolicyGroups"]:
            iam.detach_group_policy(GroupName=group["GroupName"], PolicyArn=policy_arn)
            done.append(f"wake policy detached from group {group['GroupName']}")
        for role in page["PolicyRoles"]:
            if role["RoleName"].startswith(own_roles):
                continue
            iam.detach_role_policy(RoleName=role["RoleName"], PolicyArn=policy_arn)
            done.append(f"wake policy detached from role {role['RoleName']}")
    return done


LIVE_SPOT_REQUESTS = ("open", "active", "disabled")  # a request that may still launch an instance


def cancel_spot_requests(ec2: Any, instance_ids: Sequence[str]) -> list[str]:
    """Cancel the spot requests behind the fleet's instances before they are terminated: a
    persistent request (idle stop on spot) would otherwise launch a new instance, one the stack
    no longer knows, as soon as destroy terminated its own (hashicorp/terraform-provider-aws#38142)."""
    requests = _live_spot_requests(ec2, instance_ids)
    if requests:
        ec2.cancel_spot_instance_requests(SpotInstanceRequestIds=requests)
    return [f"spot request {r} cancelled" for r in requests]


def _live_spot_requests(ec2: Any, instance_ids: Sequence[str]) -> list[str]:
    if not instance_ids:
        return []
    filters = [
        {"Name": "instance-id", "Values": list(instance_ids)},
        {"Name": "state", "Values": list(LIVE_SPOT_REQUESTS)},
    ]
    found = ec2.describe_spot_instance_requests(Filters=filters)["SpotInstanceRequests"]
    return sorted(r["SpotInstanceRequestId"] for r in found)


def fleet_leftovers(ec2: Any, elbv2: Any, stack: str, fleet_id: str, instance_ids: Sequence[str]) -> list[str]:
    """What of the fleet still exists after destroy, of the kinds that cost money or come back:
    instances that can run again, spot requests that can launch one, Elastic IPs, load balancers
    (by the fleet's id tag, or the stack's for a stack made before fleet ids)."""
    key, value = (f"{NAMESPACE}:fleet-id", fleet_id) if fleet_id else (f"{NAMESPACE}:stack", stack)
    left = [f"instance {h.instance_id} ({h.host}, {h.state})" for h in stack_hosts(ec2, stack, fleet_id).values()]
    left += [f"spot request {r}" for r in _live_spot_requests(ec2, instance_ids)]
    tagged = [{"Name": f"tag:{key}", "Values": [value]}]
    left += [
        f"Elastic IP {a.get('PublicIp', a.get('AllocationId'))}"
        for a in ec2.describe_addresses(Filters=tagged)["Addresses"]
    ]
    left += [f"load balancer {name}" for name in _tagged_balancers(elbv2, key, value)]
    return left


def _tagged_balancers(elbv2: Any, key: str, value: str) -> list[str]:
    arns = {
        b["LoadBalancerArn"]: b["LoadBalancerName"]
        for page in elbv2.get_paginator("describe_load_balancers").paginate()
        for b in page["LoadBalancers"]
    }
    found = []
    listed = list(arns)
    for start in range(0, len(listed), 20):  # DescribeTags takes at most 20 ARNs
        for description in elbv2.describe_tags(ResourceArns=listed[start : start + 20])["TagDescriptions"]:
            if {t["Key"]: t["Value"] for t in description.get("Tags", [])}.get(key) == value:
                found.append(arns[description["ResourceArn"]])
    return sorted(found)
