"""Benchmark: how fast QEMU runs arm64 code, by QEMU build and emulated CPU model.

Run: python3 tests/bench_qemu.py [--iterations N]
A static arm64 busybox runs a shell loop under each QEMU (run directly: binfmt_misc
starts the same interpreter with no arguments, so this is what builds get), with the
default CPU and with QEMU_CPU=neoverse-n1, next to the native amd64 busybox. Prints
seconds and the slowdown against native; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

CACHE = Path(os.environ.get("BUILDFLEET_CACHE", "/var/cache/buildfleet"))
APT_HELPER = Path(__file__).resolve().parent.parent / "provisioning" / "artifacts" / "debian" / "trixie-apt.sh"


def static_busybox(arch: str, work: Path) -> Path:
    """busybox-static for ``arch`` from Debian, through the project's private apt config."""
    target = CACHE / "bench" / f"busybox-{arch}"
    if not target.exists():
        script = f'. "$1"; trixie_update "$2"; cd "$3" && trixie_apt "$2" download busybox-static:{arch}'
        subprocess.run(
            ["bash", "-c", script, "fetch", str(APT_HELPER), str(CACHE / "apt-trixie"), str(work)],
            check=True,
            capture_output=True,
        )
        deb = next(work.glob(f"busybox-static_*_{arch}.deb"))
        subprocess.run(["dpkg-deb", "-x", str(deb), str(work / arch)], check=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(work / arch / "usr" / "bin" / "busybox", target)
    return target


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.monotonic()
    subprocess.run(argv, check=True, env=env)
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=100_000)
    args = parser.parse_args()
    loop = f"i=0; while [ $i -lt {args.iterations} ]; do i=$((i+1)); done"
    with tempfile.TemporaryDirectory() as tmp:
        arm64, amd64 = static_busybox("arm64", Path(tmp)), static_busybox("amd64", Path(tmp))
    base_env = {k: v for k, v in os.environ.items() if k != "QEMU_CPU"}
    native = timed([str(amd64), "sh", "-c", loop], base_env)
    print(f"{'runner':56} {'seconds':>8} {'vs native':>10}")
    print(f"{'native amd64 busybox':56} {native:8.2f} {1:10.1f}x")
    qemus = [("Debian 12 qemu-user-static 7.2 (distro)", Path("/usr/bin/qemu-aarch64-static"))]
    qemus += [
        (f"static QEMU {p.parent.parent.name} (pinned)", p) for p in sorted(CACHE.glob("qemu/*/amd64/aarch64-binfmt-P"))
    ]
    for label, qemu in qemus:
        if not qemu.exists():
            print(f"{label:56} {'missing':>8}")
            continue
        for cpu in ("", "neoverse-n1"):
            env = dict(base_env, **({"QEMU_CPU": cpu} if cpu else {}))
            seconds = timed([str(qemu), str(arm64), "sh", "-c", loop], env)
            name = f"{label}, cpu {cpu or 'default'}"
            print(f"{name:56} {seconds:8.2f} {seconds / native:10.1f}x")


if __name__ == "__main__":
    main()
