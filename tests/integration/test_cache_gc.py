"""BuildKit's garbage collection within the limits buildfleet writes: real builds fill a host's
cache past a small limit and the collector brings it back under while builds keep passing.
BuildKit collects on a timer and after builds, not between every two: seen here, six 100 MB builds
in a row took the cache to 865 MB against a 300 MB limit, and within a minute it was at 234 MB."""

import re
import time

import pytest

from provisioning.settings import BuildkitGc

from .conftest import amd64_build, amd64_only_builder, buildctl, mtls_flags

pytestmark = pytest.mark.integration

LIMIT = 300 * 10**6  # maxUsedSpace: far below what the builds write
BLOB = 100  # MB of fresh data each build leaves in the cache
FILLER = (
    "FROM scratch\nCOPY --from=busybox busybox-amd64 /bin/busybox\nARG RUN_ID\n"
    'RUN ["/bin/busybox", "sh", "-c", "echo $RUN_ID > /id && '
    '/bin/busybox dd if=/dev/urandom of=/blob bs=1M count=%d"]\n'
)


def cache_bytes(fleet) -> int:
    du = buildctl(fleet.inventory.host("amd64-0"), *mtls_flags(fleet.state.root / "tls"), command=("du",))
    assert du.returncode == 0, du.stderr
    size, unit = re.search(r"^Total:\s*([0-9.]+)\s*([kMG]?)B", du.stdout, re.MULTILINE).groups()
    return round(float(size) * {"": 1, "k": 10**3, "M": 10**6, "G": 10**9}[unit])


def test_gc_keeps_the_cache_under_max_used_space_while_builds_keep_passing(fleet, tmp_path):
    report = fleet.configure(gc=BuildkitGc(max_used="300MB", min_free="1%", reserved="20MB"))
    assert report.ok, report.failures()
    toml = fleet.exec("amd64-0", "cat", "/etc/buildkit/buildkitd.toml")
    assert 'maxUsedSpace = "300MB"' in toml and re.search(r"max-parallelism = [1-9]", toml)
    buildx, builder = amd64_only_builder(fleet, tmp_path)
    try:
        context = tmp_path / "context"
        context.mkdir()
        (context / "Dockerfile").write_text(FILLER % BLOB)
        seen = []
        for run in range(6):  # 600 MB written in all: twice the limit
            build = buildx.run([*amd64_build(builder.name, context), "--build-arg", f"RUN_ID={run}"], check=False)
            assert build.returncode == 0, build.stderr[-2000:]
            seen.append(cache_bytes(fleet))
        deadline = time.monotonic() + 120  # buildkitd collects after builds and on its own timer
        while cache_bytes(fleet) > LIMIT:
            assert time.monotonic() < deadline, f"cache still above {LIMIT} bytes after 120 s: {seen}"
            time.sleep(3)
        print(f"cache after each {BLOB} MB build: {seen}; limit {LIMIT}; now {cache_bytes(fleet)}")
        assert max(seen) > LIMIT  # the builds did fill it past the limit: the collector brought it back
    finally:
        builder.remove()
        assert fleet.configure().ok  # the defaults back, for the tests after this one
