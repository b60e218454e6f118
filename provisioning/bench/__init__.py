"""``buildfleet bench``: the same workloads on native nodes and under QEMU, timed and priced."""
