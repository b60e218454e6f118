"""What a fleet's stack cannot take back by itself when it is destroyed: the wake policy
attached, as the README suggests, to a CI user, group or role outside the stack. IAM refuses to
delete an attached policy (DeleteConflict), so ``down`` detaches it first, and says from whom."""

from __future__ import annotations

from typing import Any


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
