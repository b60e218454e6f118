"""A stand-in for github.com's release downloads on 127.0.0.1: serves files under the upstream
layout (``/moby/buildkit/releases/download/vX/...``), counts requests, honours Range or not, and
can cut responses short, so the release source's download rules are tested over real HTTP."""

from __future__ import annotations

import io
import tarfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from provisioning.artifacts.release import buildkit_archive, buildx_binary, release_url


def buildkit_tarball(buildkitd: bytes, buildctl: bytes) -> bytes:
    """An archive shaped as BuildKit's releases are: bin/buildkitd, bin/buildctl."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in (("bin/buildkitd", buildkitd), ("bin/buildctl", buildctl)):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


@dataclass
class ReleaseServer:
    prefix: str = ""  # a mirror's own path before the github.com layout
    files: dict[str, bytes] = field(default_factory=dict)  # URL path -> content
    requests: list[tuple[str, str]] = field(default_factory=list)  # (path, Range header)
    ranges: bool = True  # answer a Range request with 206 and the rest
    cut: int = 0  # this many responses end half-way (the Content-Length promised more)

    def start(self) -> ReleaseServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 -- http.server's name
                server.requests.append((self.path, self.headers.get("Range", "")))
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                asked = self.headers.get("Range", "")
                if asked and server.ranges:
                    start = int(asked.removeprefix("bytes=").rstrip("-"))
                    if start >= len(data):  # as HTTP servers answer a range past the end
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut:
                    server.cut -= 1
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # polled every 50 ms, not 0.5 s: stop() waits for the next poll, once per test
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{self.prefix}"

    def publish(self, arch: str, buildkitd: bytes, buildctl: bytes, buildx: bytes) -> None:
        """One arch's release files, at the paths the release source asks for."""
        for name, data in (
            (buildkit_archive(arch), buildkit_tarball(buildkitd, buildctl)),
            (buildx_binary(arch), buildx),
        ):
            self.files[release_url(self.prefix, name)] = data

    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]
