"""The BuildKit image the docker-container driver runs on each host, with no registry.

buildx would pull moby/buildkit from Docker Hub; hosts here (and in private subnets)
cannot. So buildfleet makes the image on the operator's side from the same pinned
buildkitd/buildctl artifacts the hosts use, plus this machine's runc and the libraries
it links, and loads it into each host's Docker over SSH (``docker save | docker load``)
when that host does not have it yet.
"""

from __future__ import annotations

import hashlib
import io
import re
import subprocess
import tarfile
from collections.abc import Sequence
from pathlib import Path

from provisioning.artifacts import Artifact
from provisioning.builder.builder import Buildx
from provisioning.errors import BuildfleetError
from provisioning.remote.docker import Docker

REPOSITORY = "buildfleet/buildkit"
RUNC = Path("/usr/sbin/runc")


def shared_libraries(binary: Path) -> list[Path]:
    """Libraries a dynamically linked binary loads, as ldd lists them."""
    result = subprocess.run(["ldd", str(binary)], capture_output=True, text=True)
    if result.returncode != 0:
        return []  # static
    return [Path(p) for p in re.findall(r"(/\S+) \(0x", result.stdout)]


def image_tar(buildkit: Sequence[Artifact], runc: Path = RUNC) -> bytes:
    """A root filesystem: buildkitd, buildctl and runc in /usr/bin, runc's libraries."""
    if not runc.exists():
        raise BuildfleetError(f"{runc} not found: the docker-container driver's image needs runc (apt install runc)")
    files = {f"usr/bin/{a.name}": a.path for a in buildkit}
    files["usr/bin/runc"] = runc
    for library in shared_libraries(runc):
        files[str(library).lstrip("/")] = library.resolve()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for directory, mode in (("tmp", 0o1777), ("run", 0o755), ("etc/buildkit", 0o755), ("var/lib/buildkit", 0o700)):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, mode
            archive.addfile(info)
        for name, source in sorted(files.items()):
            info = archive.gettarinfo(str(source), arcname=name)
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = 0  # the same inputs give the same bytes, hence the same tag
            with source.open("rb") as handle:
                archive.addfile(info, handle)
    return buffer.getvalue()


def ensure_local_image(docker: Docker, buildkit: Sequence[Artifact], version: str) -> str:
    data = image_tar(buildkit)
    tag = f"{REPOSITORY}:{version}-{hashlib.sha256(data).hexdigest()[:12]}"
    if not docker.image_exists(tag):
        docker.run(
            ["import", "--change", "ENV PATH=/usr/bin", "--change", 'ENTRYPOINT ["buildkitd"]', "-", tag],
            input_bytes=data,
        )
    return tag


def ensure_on_host(buildx: Buildx, alias: str, tag: str) -> bool:
    """Load ``tag`` into the host's Docker over SSH unless it is there; True if loaded."""
    remote = ["-H", f"ssh://{alias}"]
    if buildx.run([*remote, "image", "inspect", tag], check=False).returncode == 0:
        return False
    saved = subprocess.run([buildx.docker, "save", tag], capture_output=True, check=True)
    loaded = subprocess.run(
        [buildx.docker, *remote, "load"], input=saved.stdout, capture_output=True, env=buildx.full_env()
    )
    if loaded.returncode != 0:
        raise BuildfleetError(f"loading {tag} into {alias} failed: {loaded.stderr.decode()[-300:]}")
    return True
