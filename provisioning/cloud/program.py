"""The Pulumi program's steps: read ``buildfleet:`` config, check it, build the Fleet.

Every config error is raised before the first resource is registered, as a
``pulumi.RunError`` so the CLI shows one line instead of a Python traceback.
"""

from __future__ import annotations

import pulumi

from provisioning.cloud.fleet import FLEET_TAG, STACK_TAG, Fleet, FleetArgs
from provisioning.errors import BuildfleetError
from provisioning.plan import plan_fleet
from provisioning.settings import IDENTITY_KEY, KEYS, NAMESPACE, Settings, require_cloud_access, settings_from_mapping


def settings_from_pulumi(config: pulumi.Config) -> Settings:
    """Pulumi hands every value over as a string; the shared schema parses and checks it."""
    return settings_from_mapping({key: config.get(key) for key in KEYS})


def fleet_from_config(config: pulumi.Config) -> Fleet:
    try:
        settings = settings_from_pulumi(config)
        require_cloud_access(settings)
        plan = plan_fleet(settings)
    except BuildfleetError as error:
        raise pulumi.RunError(str(error)) from None
    stack = pulumi.get_stack()
    tags = {"managed-by": NAMESPACE, STACK_TAG: stack} | ({FLEET_TAG: settings.fleet_id} if settings.fleet_id else {})
    return Fleet(f"{NAMESPACE}-{stack}", FleetArgs(settings, plan, tags))


def program() -> None:
    """The whole program: what ``__main__.py`` runs under the pulumi CLI, and what the aws target
    hands the Automation API as its inline program."""
    config = pulumi.Config(NAMESPACE)
    fleet = fleet_from_config(config)
    pulumi.export("inventory", fleet.inventory)
    pulumi.export("placement", fleet.placement)
    pulumi.export("hostKeys", fleet.host_keys)  # "" for a host that prints its own on the console
    pulumi.export("hostKeySource", fleet.host_key_source)  # what the hosts were made with: up keeps it
    pulumi.export("instanceIds", fleet.instance_ids)  # whose consoles up reads those keys from
    pulumi.export("availabilityZone", fleet.availability_zone)  # up pins it in the stack's config
    pulumi.export("wakePolicyArn", fleet.wake_policy_arn)  # attach to the role or user that runs buildfleet wake
    pulumi.export("wakePolicy", fleet.wake_policy)
    # what ci-config's wake steps assume with the job's OIDC token (None: no repository or project named)
    pulumi.export("wakeGithubRoleArn", fleet.wake_roles.github_role_arn)
    pulumi.export("wakeCircleciRoleArn", fleet.wake_roles.circleci_role_arn)
    # the fleet's CA, keys and settings, a secret the stack's secrets provider encrypts in its state:
    # buildfleet attach --stack NAME reads it on a teammate's machine (set by up, see handover)
    pulumi.export(IDENTITY_KEY, config.get_secret(IDENTITY_KEY))
