"""The AWS program, run for real under Pulumi's mock runtime (AWS and the engine are mocked).

Each assertion names the resource URN it is about.
"""

import json

import pulumi
import pytest
import yaml
from pulumi_harness import RecordingMocks, run_program

INSTANCE = "aws:ec2/instance:Instance"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB0gtjcjM8J7G9h2c0y9Fv0yS5oG3s3M3s3M3s3M3s3M ops@example"
BASE = {"allowedCidrs": ["198.51.100.0/24", "2001:db8::/48"], "sshPublicKey": KEY}
EC2_ARCH = {"c7i.xlarge": "x86_64", "c7g.xlarge": "arm64", "c8g.2xlarge": "arm64", "m7i.2xlarge": "x86_64"}


@pytest.fixture(scope="module")
def default_run():
    return run_program(BASE)


def test_one_instance_per_configured_host_with_the_right_type():
    run = run_program(
        {**BASE, "amd64Count": 2, "arm64InstanceType": "c8g.2xlarge", "emulationInstanceType": "m7i.2xlarge"}
    )
    types = sorted(r.inputs["instanceType"] for r in run.mocks.of_type(INSTANCE))
    assert types == ["c7i.xlarge", "c7i.xlarge", "c8g.2xlarge", "m7i.2xlarge"]


def test_every_instance_boots_an_ami_of_its_own_architecture(default_run):
    instances = default_run.mocks.of_type(INSTANCE)
    assert len(instances) == 3
    for r in instances:
        # the mock AMI id carries the architecture filter the program asked for
        assert r.inputs["ami"] == f"ami-{EC2_ARCH[r.inputs['instanceType']]}", r.urn


def test_ami_lookups_pin_the_publisher_and_filter_on_architecture(default_run):
    lookups = [args for token, args in default_run.mocks.calls if token == "aws:ec2/getAmi:getAmi"]
    assert len(lookups) == 3
    for args in lookups:
        filters = {f["name"]: f["values"] for f in args["filters"]}
        assert args["owners"] == ["099720109477"]
        assert args["mostRecent"] is True
        name_arch = "arm64" if filters["architecture"] == ["arm64"] else "amd64"
        assert filters["name"] == [f"ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-{name_arch}-server-*"]


def test_a_newer_image_never_replaces_a_running_host(default_run):
    """The lookup takes the newest AMI when a host is made; after that the AMI is ignored, so
    an up after a new image is published keeps every host (its address and build cache)."""
    for instance in default_run.mocks.of_type(INSTANCE):
        assert default_run.mocks.ignored[instance.name] == ["ami"], instance.urn


def test_debian_image_uses_debian_owner_and_admin_user():
    run = run_program({**BASE, "image": "debian-12"})
    owners = {tuple(a["owners"]) for t, a in run.mocks.calls if t == "aws:ec2/getAmi:getAmi"}
    assert owners == {("136693071363",)}
    assert {h["sshUser"] for h in run.outputs["inventory"]["hosts"]} == {"admin"}


def test_ingress_only_from_allowed_cidrs_on_ssh_and_buildkitd(default_run):
    rules = default_run.mocks.of_type(INGRESS)
    assert len(rules) == 4  # 2 CIDRs x (ssh, buildkitd)
    seen = set()
    for r in rules:
        cidr = r.inputs.get("cidrIpv4") or r.inputs.get("cidrIpv6")
        assert cidr in BASE["allowedCidrs"], r.urn
        assert r.inputs["fromPort"] == r.inputs["toPort"] and r.inputs["ipProtocol"] == "tcp", r.urn
        seen.add((cidr, r.inputs["fromPort"]))
    assert seen == {(c, p) for c in BASE["allowedCidrs"] for p in (22, 1234)}
    groups = default_run.mocks.of_type("aws:ec2/securityGroup:SecurityGroup")
    assert len(groups) == 1 and "ingress" not in groups[0].inputs, groups[0].urn


def test_buildkitd_can_be_opened_wider_than_ssh_which_stays_on_allowed_cidrs():
    run = run_program({**BASE, "buildkitdCidrs": ["0.0.0.0/0", "198.51.100.0/24"]})
    rules = {
        (r.inputs.get("cidrIpv4") or r.inputs.get("cidrIpv6"), r.inputs["fromPort"]) for r in run.mocks.of_type(INGRESS)
    }
    assert rules == {(c, p) for c in BASE["allowedCidrs"] for p in (22, 1234)} | {("0.0.0.0/0", 1234)}
    assert len(run.mocks.of_type(INGRESS)) == 5  # a CIDR in both lists is one rule, not two


def test_the_token_exchange_is_open_where_buildkitd_is_and_its_port_is_in_the_inventory(default_run):
    run = run_program({**BASE, "buildkitdCidrs": ["0.0.0.0/0"], "exchangeGithubRepositories": ["acme/app"]})
    rules = {
        (r.inputs.get("cidrIpv4") or r.inputs.get("cidrIpv6"), r.inputs["fromPort"]) for r in run.mocks.of_type(INGRESS)
    }
    assert rules == {(c, p) for c in BASE["allowedCidrs"] for p in (22, 1234, 8443)} | {
        ("0.0.0.0/0", 1234),
        ("0.0.0.0/0", 8443),
    }
    assert {h["exchangePort"] for h in run.outputs["inventory"]["hosts"]} == {8443}
    assert all("exchangePort" not in h for h in default_run.outputs["inventory"]["hosts"])  # off: no port, no rule


def test_imdsv2_required_and_root_volume_encrypted_gp3(default_run):
    for r in default_run.mocks.of_type(INSTANCE):
        assert r.inputs["metadataOptions"]["httpTokens"] == "required", r.urn
        assert r.inputs["metadataOptions"]["httpPutResponseHopLimit"] == 1, r.urn
        root = r.inputs["rootBlockDevice"]
        assert root["encrypted"] is True and root["volumeType"] == "gp3" and root["volumeSize"] == 50, r.urn
        assert "instanceMarketOptions" not in r.inputs, r.urn


def test_a_host_that_powers_itself_off_is_stopped_not_terminated(default_run):
    for r in default_run.mocks.of_type(INSTANCE):
        assert r.inputs["instanceInitiatedShutdownBehavior"] == "stop", r.urn


def test_spot_is_optional_and_one_time_unless_hosts_stop_when_idle():
    run = run_program({**BASE, "spot": True, "arm64Count": 0, "idleStopMinutes": 0})
    for r in run.mocks.of_type(INSTANCE):
        assert r.inputs["instanceMarketOptions"]["marketType"] == "spot", r.urn
        assert r.inputs["instanceMarketOptions"]["spotOptions"]["spotInstanceType"] == "one-time", r.urn
        assert "instanceInitiatedShutdownBehavior" not in r.inputs, r.urn  # one-time spot cannot stop
    idle = run_program({**BASE, "spot": True, "arm64Count": 0})  # idle stop on by default
    for r in idle.mocks.of_type(INSTANCE):
        spot = r.inputs["instanceMarketOptions"]["spotOptions"]
        assert (spot["spotInstanceType"], spot["instanceInterruptionBehavior"]) == ("persistent", "stop"), r.urn
        assert r.inputs["instanceInitiatedShutdownBehavior"] == "stop", r.urn


def test_hosts_that_stop_when_idle_keep_their_address_on_an_elastic_ip_and_others_do_not(default_run):
    ips = default_run.mocks.of_type("aws:ec2/eip:Eip")
    instances = {r.name: r for r in default_run.mocks.of_type(INSTANCE)}
    assert sorted(r.name for r in ips) == sorted(name.removesuffix("-vm") + "-ip" for name in instances)
    assert all(r.inputs["domain"] == "vpc" and r.inputs["instance"].endswith("-vm-id") for r in ips)
    addresses = {h["address"] for h in default_run.outputs["inventory"]["hosts"]}
    assert all(a.startswith("192.0.2.") for a in addresses)  # the Elastic IPs, not the instances' own
    always_on = run_program({**BASE, "idleStopMinutes": 0})
    assert always_on.mocks.of_type("aws:ec2/eip:Eip") == []


def test_the_wake_policy_may_start_only_this_stacks_instances(default_run):
    (policy,) = default_run.mocks.of_type("aws:iam/policy:Policy")
    document = json.loads(policy.inputs["policy"])
    start, describe = document["Statement"]
    # this account and region only (the provider's: the harness answers us-east-1, 123456789012)
    assert start["Action"] == "ec2:StartInstances"
    assert start["Resource"] == "arn:aws:ec2:us-east-1:123456789012:instance/*"
    assert start["Condition"] == {"StringEquals": {"aws:ResourceTag/buildfleet:stack": "test"}}, policy.urn
    assert describe["Action"] == "ec2:DescribeInstances"  # no resource-level scope exists for it
    assert not any("Stop" in s["Action"] or "Terminate" in s["Action"] for s in document["Statement"])
    assert default_run.outputs["wakePolicyArn"].endswith("/buildfleet-test-wake")
    assert json.loads(default_run.outputs["wakePolicy"]) == document


def test_a_fleet_id_tags_every_resource_and_scopes_the_wake_policy_to_this_fleet_alone():
    run = run_program({**BASE, "fleetId": "0123456789abcdef"})
    tagged = [r for r in run.mocks.resources if r.type.startswith("aws:") and "tags" in r.inputs]
    assert tagged and all(r.inputs["tags"]["buildfleet:fleet-id"] == "0123456789abcdef" for r in tagged)
    (policy,) = run.mocks.of_type("aws:iam/policy:Policy")
    start = json.loads(policy.inputs["policy"])["Statement"][0]
    assert start["Condition"] == {
        "StringEquals": {
            "aws:ResourceTag/buildfleet:fleet-id": "0123456789abcdef",
            "aws:ResourceTag/buildfleet:stack": "test",
        }
    }


def test_every_aws_resource_is_tagged(default_run):
    tagged = [r for r in default_run.mocks.resources if r.type.startswith("aws:")]
    assert tagged
    for r in tagged:
        assert r.inputs.get("tags", {}).get("managed-by") == "buildfleet", r.urn
        assert r.inputs["tags"]["buildfleet:stack"] == "test", r.urn


def test_every_resource_hangs_under_its_component(default_run):
    parents = default_run.mocks.parents
    assert parents["buildfleet-test"] == ""  # the Fleet sits directly under the stack
    for r in default_run.mocks.resources:
        assert r.name in parents, r.urn
        if r.type in ("buildfleet:cloud:Network", "buildfleet:cloud:Access", "buildfleet:cloud:BuildHost"):
            assert parents[r.name] == "Fleet", r.urn
        elif r.type == INSTANCE:
            assert parents[r.name] == "BuildHost", r.urn
        elif r.type.startswith("aws:ec2/securityGroup") or r.type.startswith("aws:vpc/") or "keyPair" in r.type:
            assert parents[r.name] == "Access", r.urn


def test_default_vpc_uses_a_stable_default_subnet_in_a_zone_offering_every_type(default_run):
    # us-east-1a offers no c7g (the harness's account): the first zone offering all three types is 1b
    subnets = {r.inputs["subnetId"] for r in default_run.mocks.of_type(INSTANCE)}
    assert subnets == {"subnet-us-east-1b-a"}
    assert not default_run.mocks.of_type("aws:ec2/vpc:Vpc")
    (offerings,) = [a for t, a in default_run.mocks.calls if t.endswith("getInstanceTypeOfferings")]
    assert offerings["locationType"] == "availability-zone"
    assert offerings["filters"] == [{"name": "instance-type", "values": ["c7g.xlarge", "c7i.xlarge"]}]
    assert default_run.outputs["availabilityZone"] == "us-east-1b"  # up keeps it in the stack's config


@pytest.mark.parametrize(
    ("config", "mocks", "message"),
    [
        (
            {"arm64InstanceType": "c8g.2xlarge", "amd64InstanceType": "c7i.2xlarge"},
            {"offerings": {"us-east-1a": ["c7i.2xlarge"], "us-east-1b": ["c8g.2xlarge"]}},
            "no availability zone in this region offers all of c7i.2xlarge, c7i.xlarge, c8g.2xlarge",
        ),
        ({"availabilityZone": "us-east-1a"}, {}, "buildfleet:availabilityZone us-east-1a does not offer c7g.xlarge"),
        ({}, {"default_vpcs": []}, "this region has no default VPC: set buildfleet:createVpc true"),
        ({}, {"subnet_zones": ("us-east-1a",)}, "the default VPC has no default subnet in us-east-1b"),
    ],
)
def test_a_region_that_cannot_hold_the_fleet_is_one_clear_error(config, mocks, message):
    with pytest.raises(Exception, match=message):
        run_program({**BASE, **config}, RecordingMocks(**mocks))


def test_create_vpc_makes_a_public_subnet_with_a_route_out():
    run = run_program({**BASE, "createVpc": True})
    (vpc,) = run.mocks.of_type("aws:ec2/vpc:Vpc")
    (subnet,) = run.mocks.of_type("aws:ec2/subnet:Subnet")
    (routes,) = run.mocks.of_type("aws:ec2/routeTable:RouteTable")
    assert vpc.inputs["cidrBlock"] == "10.42.0.0/16", vpc.urn
    assert subnet.inputs["mapPublicIpOnLaunch"] is True and subnet.inputs["availabilityZone"] == "us-east-1b", (
        subnet.urn
    )
    assert subnet.inputs["cidrBlock"] == "10.42.16.0/20"  # us-east-1b's sixteenth: a move to another zone fits beside
    assert routes.inputs["routes"][0]["cidrBlock"] == "0.0.0.0/0", routes.urn
    assert {r.inputs["subnetId"] for r in run.mocks.of_type(INSTANCE)} == {f"{subnet.name}-id"}


def test_outputs_have_the_inventory_shape(default_run):
    inventory = default_run.outputs["inventory"]
    assert inventory["target"] == "aws"
    hosts = {h["name"]: h for h in inventory["hosts"]}
    assert set(hosts) == {"amd64-0", "arm64-0", "emulation-0"}
    for host in hosts.values():
        assert set(host) == {
            "name",
            "role",
            "arch",
            "address",
            "privateAddress",
            "sshUser",
            "sshPort",
            "instanceType",
            "buildkitdPort",
            "sshKey",
            "platforms",
        }
        assert host["address"].startswith("192.0.2.") and host["sshUser"] == "ubuntu"  # Elastic IPs
    assert {p["platform"]: p["native"] for p in hosts["arm64-0"]["platforms"]} == {
        "linux/arm64": True,
        "linux/arm/v7": True,
        "linux/arm/v6": True,
    }
    assert all(not p["native"] for p in hosts["emulation-0"]["platforms"])
    placement = {row["platform"]: row["host"] for row in default_run.outputs["placement"]}
    assert placement["linux/riscv64"] == "emulation-0"


SECRET_SIG = "4dabf18193072939515e22adb298388d"  # Pulumi's marker for a secret value


def test_each_host_boots_with_a_host_key_pulumi_made_and_exports_its_public_half(default_run):
    keys = default_run.outputs["hostKeys"]
    assert set(keys) == {"amd64-0", "arm64-0", "emulation-0"} and len(set(keys.values())) == 3
    made = {r.name.removesuffix("-hostkey"): r for r in default_run.mocks.of_type("tls:index/privateKey:PrivateKey")}
    assert {r.inputs["algorithm"] for r in made.values()} == {"ED25519"}
    for instance in default_run.mocks.of_type(INSTANCE):
        name = instance.name.removeprefix("buildfleet-test-").removesuffix("-vm")
        secret = instance.inputs["userData"]  # the mock runtime hands a secret over wrapped, with its value
        assert set(secret) == {SECRET_SIG, "value"}
        assert secret["value"].startswith("#cloud-config\n")  # cloud-init's marker for cloud-config data
        user_data = yaml.safe_load(secret["value"])
        # The only keys, each of the type cloud-init's schema gives it; ssh_genkeytypes needs at
        # least one item (minItems 1: [] is "Invalid cloud-config provided" in 22.4 and 25.3) and
        # names only the type provided, so no other host key is generated.
        assert set(user_data) == {"ssh_deletekeys", "ssh_genkeytypes", "ssh_keys"}
        assert user_data["ssh_deletekeys"] is True and user_data["ssh_genkeytypes"] == ["ed25519"]
        assert set(user_data["ssh_keys"]) == {"ed25519_private", "ed25519_public"}
        assert user_data["ssh_keys"]["ed25519_public"] == keys[name]
        assert user_data["ssh_keys"]["ed25519_private"].startswith("-----BEGIN OPENSSH PRIVATE KEY-----")


def test_a_stack_made_before_hosts_made_their_own_keys_keeps_pulumis(default_run):
    assert default_run.outputs["hostKeySource"] == "stack"  # hostKeys unset: what such a stack has


def test_the_fleet_identity_up_sets_is_exported_as_a_secret_the_stacks_provider_encrypts(default_run):
    identity = "buildfleet-identity-1:H4sIAAAAAAAA"
    run = run_program({**BASE, "hostKeys": "console"}, secrets={"fleetIdentity": identity})
    assert run.outputs["fleetIdentity"] == identity and run.secret == {"fleetIdentity"}
    assert default_run.outputs["fleetIdentity"] is None and "fleetIdentity" not in default_run.secret
    assert not any(identity in str(r.inputs) for r in run.mocks.resources)  # in no resource: the output alone


def test_on_a_new_stack_each_host_makes_its_own_key_and_no_private_key_travels_in_user_data():
    run = run_program({**BASE, "hostKeys": "console"})
    assert run.mocks.of_type("tls:index/privateKey:PrivateKey") == []
    assert run.outputs["hostKeySource"] == "console"
    assert run.outputs["hostKeys"] == {"amd64-0": "", "arm64-0": "", "emulation-0": ""}  # up reads the consoles
    instances = {i.name.removeprefix("buildfleet-test-").removesuffix("-vm"): i for i in run.mocks.of_type(INSTANCE)}
    assert set(run.outputs["instanceIds"]) == set(instances)  # whose console shows which host's key
    for instance in instances.values():
        user_data = instance.inputs["userData"]
        assert isinstance(user_data, str)  # nothing secret in it
        assert yaml.safe_load(user_data) == {
            "ssh_deletekeys": True,
            "ssh_genkeytypes": ["ed25519"],  # the one key the host makes
            "ssh_key_console_blacklist": [],  # keys_to_console prints it on the serial console
        }


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({**BASE, "platforms": ["linux/amd64", "linux/vax"]}, "buildfleet:platforms"),
        ({**BASE, "arm64InstanceType": "c7i.xlarge"}, "buildfleet:arm64InstanceType"),
        ({**BASE, "allowedCidrs": []}, "buildfleet:allowedCidrs is empty"),
        ({**BASE, "allowedCidrs": ["0.0.0.0/0"]}, "allowWorld"),
        ({"allowedCidrs": BASE["allowedCidrs"]}, "buildfleet:sshPublicKey"),
        ({**BASE, "emulationCount": 0, "platforms": ["linux/s390x"]}, "linux/s390x"),
    ],
)
def test_config_errors_fail_before_any_resource_exists(config, message):
    mocks = RecordingMocks()
    with pytest.raises(pulumi.RunError) as error:
        run_program(config, mocks)
    assert message in str(error.value)
    assert mocks.resources == [] and mocks.calls == []


POOL = {**BASE, "amd64Count": 2, "buildkitdCidrs": ["192.0.2.0/24"]}


@pytest.fixture(scope="module")
def pool_run():
    return run_program(POOL)


def test_two_amd64_hosts_get_one_network_load_balancer_passing_tcp_through(pool_run):
    (nlb,) = pool_run.mocks.of_type("aws:lb/loadBalancer:LoadBalancer")
    assert nlb.inputs["loadBalancerType"] == "network" and nlb.inputs["internal"] is False, nlb.urn
    assert len(nlb.inputs["namePrefix"]) <= 6 and len(nlb.inputs["securityGroups"]) == 1, nlb.urn
    (listener,) = pool_run.mocks.of_type("aws:lb/listener:Listener")
    assert (listener.inputs["protocol"], listener.inputs["port"]) == ("TCP", 1234), listener.urn  # not TLS: mTLS passes
    (action,) = listener.inputs["defaultActions"]
    (group,) = pool_run.mocks.of_type("aws:lb/targetGroup:TargetGroup")
    assert action["type"] == "forward" and action["targetGroupArn"].endswith(group.name), listener.urn


def test_the_target_group_health_checks_each_member_and_holds_exactly_the_pool(pool_run):
    (group,) = pool_run.mocks.of_type("aws:lb/targetGroup:TargetGroup")
    assert (group.inputs["protocol"], group.inputs["targetType"], group.inputs["port"]) == ("TCP", "instance", 1234)
    check = group.inputs["healthCheck"]
    assert check["protocol"] == "TCP" and check["port"] == "traffic-port", group.urn
    assert check["unhealthyThreshold"] == 2 and check["interval"] == 10, group.urn
    assert group.inputs["preserveClientIp"] == "false", group.urn  # members admit the NLB's group, not clients
    attached = pool_run.mocks.of_type("aws:lb/targetGroupAttachment:TargetGroupAttachment")
    assert sorted(a.inputs["targetId"] for a in attached) == sorted(
        f"{i.name}-id" for i in pool_run.mocks.of_type(INSTANCE) if i.inputs["tags"]["buildfleet:role"] == "amd64"
    )


def test_the_balancer_is_open_to_buildkitds_cidrs_and_the_hosts_to_the_balancer(pool_run):
    rules = [r for r in pool_run.mocks.of_type(INGRESS) if "amd64-pool" in r.name]
    cidrs = sorted(
        r.inputs.get("cidrIpv4") or r.inputs.get("cidrIpv6")
        for r in rules
        if "referencedSecurityGroupId" not in r.inputs
    )
    assert cidrs == sorted([*BASE["allowedCidrs"], "192.0.2.0/24"])
    (members,) = [r for r in rules if "referencedSecurityGroupId" in r.inputs]
    assert members.inputs["fromPort"] == 1234 and members.inputs["referencedSecurityGroupId"].endswith("-sg-id")
    assert all(r.inputs["fromPort"] == 1234 for r in rules)  # never SSH through the balancer


def test_the_inventory_names_the_pool_at_the_balancers_dns_name(pool_run):
    inventory = pool_run.outputs["inventory"]
    (pool,) = inventory["pools"]
    assert pool["name"] == "amd64-pool" and pool["address"].endswith(".elb.us-east-1.amazonaws.com")
    assert [h["name"] for h in inventory["hosts"] if h.get("pool") == "amd64-pool"] == ["amd64-0", "amd64-1"]


def test_a_fleet_without_a_pool_has_no_load_balancer(default_run):
    assert default_run.mocks.of_type("aws:lb/loadBalancer:LoadBalancer") == []
    assert "pools" not in default_run.outputs["inventory"]


ROLE = "aws:iam/role:Role"
OIDC = "aws:iam/openIdConnectProvider:OpenIdConnectProvider"
ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
ORG, PROJECT = "0b3f6c2e-1111-4222-8333-944455556666", "7d9e0a1b-2222-4333-8444-a55566667777"


def trust(role) -> dict:
    (statement,) = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    return statement


def test_without_named_repositories_or_projects_no_wake_role_exists(default_run):
    assert default_run.mocks.of_type(ROLE) == [] and default_run.mocks.of_type(OIDC) == []
    assert default_run.outputs["wakeGithubRoleArn"] is None and default_run.outputs["wakeCircleciRoleArn"] is None


def test_the_github_wake_role_trusts_only_the_named_repositories_with_the_wake_policy_attached():
    run = run_program({**BASE, "wakeGithubRepositories": ["acme/app", "acme/infra:ref:refs/heads/main"]})
    (provider,) = run.mocks.of_type(OIDC)
    assert provider.inputs["url"] == "https://token.actions.githubusercontent.com"
    assert provider.inputs["clientIdLists"] == ["sts.amazonaws.com"]
    (role,) = run.mocks.of_type(ROLE)
    statement = trust(role)
    assert statement["Principal"] == {
        "Federated": "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"
    }
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Condition"] == {
        "StringEquals": {"token.actions.githubusercontent.com:aud": "sts.amazonaws.com"},
        "StringLike": {
            "token.actions.githubusercontent.com:sub": ["repo:acme/app:*", "repo:acme/infra:ref:refs/heads/main"]
        },
    }
    (attachment,) = run.mocks.of_type(ATTACHMENT)
    assert attachment.inputs["policyArn"] == run.outputs["wakePolicyArn"]
    assert run.outputs["wakeGithubRoleArn"] == "arn:aws:iam::123456789012:role/buildfleet-test-wake-github"


def test_an_accounts_own_github_provider_is_used_not_made_again():
    existing = "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"
    run = run_program({**BASE, "wakeGithubRepositories": ["acme/app"], "githubOidcProviderArn": existing})
    assert run.mocks.of_type(OIDC) == []
    (role,) = run.mocks.of_type(ROLE)
    assert trust(role)["Principal"] == {"Federated": existing}


def test_the_circleci_wake_role_trusts_only_the_named_projects_of_the_organization():
    run = run_program({**BASE, "wakeCircleciOrgId": ORG, "wakeCircleciProjectIds": [PROJECT]})
    (provider,) = run.mocks.of_type(OIDC)
    assert provider.inputs["url"] == f"https://oidc.circleci.com/org/{ORG}" and provider.inputs["clientIdLists"] == [
        ORG
    ]
    issuer = f"oidc.circleci.com/org/{ORG}"
    assert trust(run.mocks.of_type(ROLE)[0])["Condition"] == {
        "StringEquals": {f"{issuer}:aud": ORG},
        "StringLike": {f"{issuer}:sub": [f"org/{ORG}/project/{PROJECT}/user/*"]},
    }
    assert run.outputs["wakeCircleciRoleArn"].endswith(":role/buildfleet-test-wake-circleci")


def test_each_zone_has_a_subnet_of_its_own_in_the_created_vpc():
    from provisioning.cloud.network import zone_subnet

    subnets = {zone: zone_subnet("10.42.0.0/16", zone) for zone in ("us-east-1a", "us-east-1b", "us-east-1f")}
    assert subnets == {"us-east-1a": "10.42.0.0/20", "us-east-1b": "10.42.16.0/20", "us-east-1f": "10.42.80.0/20"}
    assert zone_subnet("192.168.7.0/24", "eu-west-1c") == "192.168.7.32/28"  # EC2's smallest subnet
