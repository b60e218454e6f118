"""Just enough of the OCI distribution API to read back what a build pushed.

Plain HTTP to the fleet's own registry; index, manifest and blob reads only.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import urllib.request
from dataclasses import dataclass

from provisioning.errors import BuildfleetError

INDEX_TYPES = ("application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json")
MANIFEST_TYPES = ("application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json")


@dataclass(frozen=True)
class RegistryClient:
    address: str  # host:port

    def _get(self, path: str, accept: tuple[str, ...] = ()) -> bytes:
        request = urllib.request.Request(
            f"http://{self.address}/v2/{path}", headers={"Accept": ", ".join(accept)} if accept else {}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.read()
        except OSError as error:
            raise BuildfleetError(f"registry {self.address}: GET /v2/{path} failed: {error}") from None

    def index(self, repository: str, reference: str) -> dict:
        document = json.loads(self._get(f"{repository}/manifests/{reference}", INDEX_TYPES + MANIFEST_TYPES))
        if document.get("mediaType") not in INDEX_TYPES and "manifests" not in document:
            raise BuildfleetError(f"{repository}:{reference} is a single-platform image, not a manifest list")
        return document

    def manifest(self, repository: str, digest: str) -> dict:
        return json.loads(self._get(f"{repository}/manifests/{digest}", MANIFEST_TYPES))

    def files(self, repository: str, digest: str, wanted_prefix: str) -> dict[str, bytes]:
        """Files under ``wanted_prefix`` in an image's layers (later layers win)."""
        found: dict[str, bytes] = {}
        for layer in self.manifest(repository, digest)["layers"]:
            blob = self._get(f"{repository}/blobs/{layer['digest']}")
            data = gzip.decompress(blob) if blob[:2] == b"\x1f\x8b" else blob
            with tarfile.open(fileobj=io.BytesIO(data)) as archive:
                for member in archive.getmembers():
                    name = member.name.lstrip("./")
                    if member.isfile() and name.startswith(wanted_prefix):
                        found[name] = archive.extractfile(member).read()  # type: ignore[union-attr]
        return found
