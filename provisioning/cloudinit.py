"""cloud-init data for a new host, the same wherever it boots: EC2 user data, or the NoCloud
seed of a local VM, so the bootstrap AWS relies on also runs for real without a cloud. Pure."""

from __future__ import annotations

import yaml


def host_key_cloud_config(private_openssh: str, public_openssh: str) -> str:
    """cloud-init user data replacing the image's host keys with this one, and no others."""
    return "#cloud-config\n" + yaml.safe_dump(
        {
            "ssh_deletekeys": True,
            # Only the type provided below: cloud-init skips generating a key whose file exists,
            # so sshd serves this one key. ([] fails cloud-init's schema, minItems 1.)
            "ssh_genkeytypes": ["ed25519"],
            "ssh_keys": {"ed25519_private": private_openssh, "ed25519_public": public_openssh.strip()},
        }
    )


def nocloud_meta_data(instance_id: str, hostname: str, authorized_key: str) -> str:
    """NoCloud meta-data: what EC2's metadata service tells cloud-init (the instance, its
    name, the key pair's public key, which cloud-init gives the image's default user)."""
    return yaml.safe_dump(
        {"instance-id": instance_id, "local-hostname": hostname, "public-keys": [authorized_key.strip()]}
    )
