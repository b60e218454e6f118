"""Just enough of the OCI distribution API to read back what a build pushed.

Plain HTTP to the fleet's own registry: index, manifest and blob reads, and one write, an
index merging images pushed under several tags (the sample's per-node builds).
"""

from __future__ import annotations

import gzip
import hashlib
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
        """The image's manifest list; a single-platform image (what buildx pushes for one
        platform) as a list of that one manifest, its platform read from its config."""
        raw = self._get(f"{repository}/manifests/{reference}", INDEX_TYPES + MANIFEST_TYPES)
        document = json.loads(raw)
        if document.get("mediaType") in INDEX_TYPES or "manifests" in document:
            return document
        if "config" not in document:
            raise BuildfleetError(f"{repository}:{reference} is neither a manifest list nor an image manifest")
        config = json.loads(self._get(f"{repository}/blobs/{document['config']['digest']}"))
        platform = {key: config[key] for key in ("os", "architecture", "variant") if config.get(key)}
        descriptor = {
            "mediaType": document.get("mediaType", MANIFEST_TYPES[0]),
            "digest": f"sha256:{hashlib.sha256(raw).hexdigest()}",
            "size": len(raw),
            "platform": platform,
        }
        return {"manifests": [descriptor]}

    def merge(self, repository: str, tag: str, parts: list[str]) -> None:
        """Tag one OCI index of every image the ``parts`` tags hold (each a manifest list or a
        single image), as ``docker buildx imagetools create`` does; the manifests stay where
        they are, in the same repository."""
        manifests = [m for part in parts for m in self.index(repository, part)["manifests"]]
        body = json.dumps({"schemaVersion": 2, "mediaType": INDEX_TYPES[0], "manifests": manifests}).encode()
        request = urllib.request.Request(
            f"http://{self.address}/v2/{repository}/manifests/{tag}",
            data=body,
            method="PUT",
            headers={"Content-Type": INDEX_TYPES[0]},
        )
        try:
            with urllib.request.urlopen(request, timeout=30):
                pass
        except OSError as error:
            raise BuildfleetError(
                f"registry {self.address}: PUT /v2/{repository}/manifests/{tag} failed: {error}"
            ) from None

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
