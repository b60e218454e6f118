"""The multi-node buildx builder made from the inventory: one node per host, each pinned
to the platforms the placement gave it, so one ``docker buildx build --platform …``
builds every platform on native hardware where it exists and under QEMU elsewhere."""
