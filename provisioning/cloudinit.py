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


# What cloud-init's keys_to_console module prints around the host's public keys, on its first boot.
HOST_KEYS_BEGIN = "-----BEGIN SSH HOST KEY KEYS-----"
HOST_KEYS_END = "-----END SSH HOST KEY KEYS-----"


def console_host_key_cloud_config() -> str:
    """cloud-init user data that has the host make its own ed25519 host key (and no other) and
    print its public half on the serial console, where buildfleet reads and pins it: no private
    key ever travels in user data."""
    return "#cloud-config\n" + yaml.safe_dump(
        {"ssh_deletekeys": True, "ssh_genkeytypes": ["ed25519"], "ssh_key_console_blacklist": []}
    )


def host_key_from_console(console: str) -> str | None:
    """The ed25519 host key (``ssh-ed25519 BASE64``) of the last key block a console shows, or
    None while it shows none (cloud-init prints it late in the first boot)."""
    _, begun, rest = console.rpartition(HOST_KEYS_BEGIN)
    block, ended, _ = rest.partition(HOST_KEYS_END)
    if not (begun and ended):
        return None
    for line in block.splitlines():
        fields = line.strip().split()
        if len(fields) >= 2 and fields[0] == "ssh-ed25519":
            return f"{fields[0]} {fields[1]}"
    return None


def nocloud_meta_data(instance_id: str, hostname: str, authorized_key: str) -> str:
    """NoCloud meta-data: what EC2's metadata service tells cloud-init (the instance, its
    name, the key pair's public key, which cloud-init gives the image's default user)."""
    return yaml.safe_dump(
        {"instance-id": instance_id, "local-hostname": hostname, "public-keys": [authorized_key.strip()]}
    )
