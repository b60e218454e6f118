"""Which AMI a host boots: pinned publisher accounts, and an architecture that must match.

The filter is pure data so tests can check it; the look-up is one data-source call.
Owner IDs: Canonical publishes Ubuntu from 099720109477, the Debian cloud team from
136693071363; pinning them stops a look-alike AMI from another account being picked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the pre-flight reads the filters without Pulumi's SDK
    import pulumi
    import pulumi_aws as aws

EC2_ARCH = {"amd64": "x86_64", "arm64": "arm64"}


@dataclass(frozen=True)
class ImageSource:
    owner: str
    name_pattern: str  # {arch} is the Debian/Ubuntu architecture name
    ssh_user: str


IMAGE_SOURCES = {
    "ubuntu-24.04": ImageSource(
        "099720109477", "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-{arch}-server-*", "ubuntu"
    ),
    "debian-12": ImageSource("136693071363", "debian-12-{arch}-*", "admin"),
}


def ami_filters(image: str, arch: str) -> list[aws.ec2.GetAmiFilterArgsDict]:
    """EC2 DescribeImages filters for ``image`` on CPU ``arch`` (amd64 or arm64)."""
    source = IMAGE_SOURCES[image]
    return [
        {"name": "name", "values": [source.name_pattern.format(arch=arch)]},
        {"name": "architecture", "values": [EC2_ARCH[arch]]},
        {"name": "virtualization-type", "values": ["hvm"]},
        {"name": "root-device-type", "values": ["ebs"]},
    ]


def describe_images_args(image: str, arch: str) -> dict[str, Any]:
    """The same look-up as EC2 DescribeImages arguments (the AWS SDK's spelling), for the pre-flight."""
    filters = [{"Name": f["name"], "Values": list(f["values"])} for f in ami_filters(image, arch)]
    return {"Owners": [IMAGE_SOURCES[image].owner], "Filters": filters}


def lookup_ami(image: str, arch: str, opts: pulumi.InvokeOptions | None = None) -> pulumi.Output[str]:
    """The newest matching AMI's id."""
    import pulumi_aws as aws

    result = aws.ec2.get_ami_output(
        most_recent=True,
        owners=[IMAGE_SOURCES[image].owner],
        filters=ami_filters(image, arch),
        opts=opts,
    )
    return result.id
