"""IAM roles CI jobs assume with their OIDC token to wake the fleet, so no CI system stores an
AWS key: one for GitHub Actions, one for CircleCI, each trusting only the repositories or
projects the stack names, each with the stack's wake policy attached (the stack owns the
attachment, so ``down`` removes it before the policy).

Trust conditions as GitHub ("Configuring OpenID Connect in Amazon Web Services": audience
sts.amazonaws.com, a condition on ``sub``) and CircleCI (issuer oidc.circleci.com/org/ORG,
audience the organization ID, ``sub`` org/ORG/project/PROJECT/user/USER) document them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from provisioning.settings import WakeTrust

GITHUB_ISSUER = "token.actions.githubusercontent.com"
CIRCLECI_ISSUER = "oidc.circleci.com/org/"


@dataclass
class WakeRolesArgs:
    trust: WakeTrust
    policy_arn: pulumi.Input[str]
    tags: dict[str, str]


def github_subjects(repositories: tuple[str, ...]) -> list[str]:
    """``sub`` patterns: any ref of OWNER/REPO, or exactly OWNER/REPO:CLAIM (a branch, an environment)."""
    return [f"repo:{r}" if ":" in r else f"repo:{r}:*" for r in repositories]


def circleci_subjects(org: str, projects: tuple[str, ...]) -> list[str]:
    return [f"org/{org}/project/{project}/user/*" for project in projects]


def trust_policy(provider_arn: str, issuer: str, audience: str, subjects: list[str]) -> str:
    """Assume-role by web identity for this issuer's tokens with this audience and these subjects only."""
    condition = {"StringEquals": {f"{issuer}:aud": audience}, "StringLike": {f"{issuer}:sub": subjects}}
    statement = {
        "Effect": "Allow",
        "Principal": {"Federated": provider_arn},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": condition,
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


class WakeRoles(pulumi.ComponentResource):
    github_role_arn: pulumi.Output[str] | None = None
    circleci_role_arn: pulumi.Output[str] | None = None

    def __init__(self, name: str, args: WakeRolesArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("buildfleet:cloud:WakeRoles", name, None, opts)
        trust, child = args.trust, pulumi.ResourceOptions(parent=self)
        if trust.github_repositories:
            subjects = github_subjects(trust.github_repositories)
            self.github_role_arn = trusted_role(
                f"{name}-github", GITHUB_ISSUER, "sts.amazonaws.com", subjects, args, child, trust.github_provider_arn
            )
        if trust.circleci_org:
            subjects = circleci_subjects(trust.circleci_org, trust.circleci_projects)
            issuer = CIRCLECI_ISSUER + trust.circleci_org
            self.circleci_role_arn = trusted_role(f"{name}-circleci", issuer, trust.circleci_org, subjects, args, child)
        self.register_outputs({"githubRoleArn": self.github_role_arn, "circleciRoleArn": self.circleci_role_arn})


def trusted_role(
    name: str,
    issuer: str,
    audience: str,
    subjects: list[str],
    args: WakeRolesArgs,
    opts: pulumi.ResourceOptions,
    provider_arn: str = "",
) -> pulumi.Output[str]:
    """The issuer's IAM OIDC provider (the account's own when ``provider_arn`` names it) and a wake
    role trusting its tokens for ``audience`` and ``subjects`` alone."""
    provider = pulumi.Output.from_input(
        provider_arn or oidc_provider(name, f"https://{issuer}", audience, args.tags, opts)
    )
    policy = provider.apply(lambda arn: trust_policy(arn, issuer, audience, subjects))
    return wake_role(name, policy, args, opts)


def oidc_provider(
    name: str, url: str, audience: str, tags: dict[str, str], opts: pulumi.ResourceOptions
) -> pulumi.Output[str]:
    # No thumbprints: IAM trusts GitHub's certificates through its own root CAs, and for other issuers
    # fetches the chain's top intermediate itself when none is given (pulumi-aws OpenIdConnectProvider docs).
    return aws.iam.OpenIdConnectProvider(name, url=url, client_id_lists=[audience], tags=tags, opts=opts).arn


def wake_role(
    name: str, policy: pulumi.Input[str], args: WakeRolesArgs, opts: pulumi.ResourceOptions
) -> pulumi.Output[str]:
    role = aws.iam.Role(
        name,
        description="buildfleet wake: CI jobs start this fleet's stopped hosts with their OIDC token",
        assume_role_policy=policy,
        max_session_duration=3600,
        tags=args.tags,
        opts=opts,
    )
    aws.iam.RolePolicyAttachment(name, role=role.name, policy_arn=args.policy_arn, opts=opts)
    return role.arn
