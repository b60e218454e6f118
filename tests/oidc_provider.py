"""A stand-in OIDC provider on 127.0.0.1, as GitHub's and CircleCI's are to a CI job: a signing
key of its own, its JWKS served over HTTP, and tokens signed with it."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa


class Provider:
    def __init__(self, issuer: str, kid: str = "key-1"):
        self.issuer, self.kid = issuer, kid
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.jwks_url = ""

    def jwks(self) -> dict[str, Any]:
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [{**public, "kid": self.kid, "use": "sig", "alg": "RS256"}]}

    def token(self, audience: str, key=None, lifetime: float = 300, **claims: Any) -> str:
        """A token as the provider issues it (``key``: another signer, claiming this provider's key id)."""
        now = int(time.time())
        payload = {
            "iss": self.issuer,
            "aud": audience,
            "sub": "repo:acme/app:ref:refs/heads/main",
            "iat": now,
            "nbf": now,
            "exp": now + int(lifetime),
            "jti": uuid.uuid4().hex,
            **claims,
        }
        return jwt.encode(payload, key or self.key, algorithm="RS256", headers={"kid": self.kid})


@contextmanager
def serving(provider: Provider) -> Iterator[Provider]:
    """The provider's JWKS at http://127.0.0.1:PORT/jwks while the block runs."""
    body = json.dumps(provider.jwks()).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(200 if self.path == "/jwks" else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body if self.path == "/jwks" else b"{}")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()  # stop() waits a poll
    provider.jwks_url = f"http://127.0.0.1:{server.server_address[1]}/jwks"
    try:
        yield provider
    finally:
        server.shutdown()
        server.server_close()
