"""Pulumi entry point: read config, build the fleet, export what later stages consume."""

import pulumi

from provisioning.cloud.program import fleet_from_config

fleet = fleet_from_config(pulumi.Config("buildfleet"))
pulumi.export("inventory", fleet.inventory)
pulumi.export("placement", fleet.placement)
pulumi.export("hostKeys", fleet.host_keys)
pulumi.export("wakePolicyArn", fleet.wake_policy_arn)  # attach to the role or user that runs buildfleet wake
pulumi.export("wakePolicy", fleet.wake_policy)
