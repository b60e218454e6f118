"""A preview's summary: counts per operation, each replacement and deletion named once."""

from provisioning.targets.changes import ChangePreview, resource_name


def test_resource_names_come_from_the_urn_with_their_type():
    assert resource_name("urn:pulumi:dev::buildfleet::aws:ec2/instance:Instance::amd64-0") == (
        "aws:ec2/instance:Instance amd64-0"
    )
    parented = "urn:pulumi:dev::buildfleet::buildfleet:fleet:Fleet$aws:ec2/eip:Eip::amd64-0-ip"
    assert resource_name(parented) == "aws:ec2/eip:Eip amd64-0-ip"


def test_a_replacement_is_named_once_whatever_steps_announce_it():
    preview = ChangePreview("pulumi up", "dev")
    urn = "urn:pulumi:dev::buildfleet::aws:ec2/instance:Instance::arm64-0"
    for op in ("create-replacement", "replace", "delete-replaced"):
        preview.add_step(op, urn)
    preview.add_summary({"replace": 1, "same": 7})
    assert preview.replaced == ["aws:ec2/instance:Instance arm64-0"] and preview.changes
    assert preview.lines() == [
        "pulumi up on stack 'dev' would change: 1 to replace, 7 to same",
        "  replace: aws:ec2/instance:Instance arm64-0",
    ]


def test_only_unchanged_resources_is_no_change():
    preview = ChangePreview("pulumi up", "dev")
    preview.add_summary({"same": 12, "refresh": 12})
    assert not preview.changes and preview.lines()[-1] == "  nothing to change"
