"""The vm target: hosts of chosen roles as full-system VMs under QEMU on this machine."""
