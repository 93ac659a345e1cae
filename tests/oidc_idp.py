"""A small OpenID Connect provider on a real local HTTP server, playing a company's SSO
for the tests: discovery, an authorization endpoint that signs in a chosen person at once,
a token endpoint checking the client's secret, the code and its PKCE verifier, and a JWKS.
It signs ID tokens with RS256 (joserfc). ``misbehave`` makes it send bad tokens."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey


class FakeIdP:
    def __init__(self, client_id: str, client_secret: str) -> None:
        self.client_id, self.client_secret = client_id, client_secret
        self.key = RSAKey.generate_key(2048, parameters={"kid": "k1"})
        self.other_key = RSAKey.generate_key(2048, parameters={"kid": "k1"})
        self.person: dict[str, Any] = {"sub": "u-1"}
        self.misbehave: str | None = None  # "wrong_key" | "wrong_nonce" | "wrong_aud"
        self.codes: dict[str, dict[str, Any]] = {}
        self.token_requests = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeIdP:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _id_token(self, grant: dict[str, Any]) -> str:
        now = int(time.time())
        claims = {
            "iss": self.url,
            "aud": "someone-else" if self.misbehave == "wrong_aud" else self.client_id,
            "iat": now,
            "exp": now + 300,
            "nonce": "not-yours" if self.misbehave == "wrong_nonce" else grant["nonce"],
            **grant["person"],
        }
        key = self.other_key if self.misbehave == "wrong_key" else self.key
        return jwt.encode({"alg": "RS256", "kid": "k1"}, claims, key)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _json(self, status: int, body: dict[str, Any]) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                parts = urlsplit(self.path)
                q = {k: v[0] for k, v in parse_qs(parts.query).items()}
                if parts.path == "/.well-known/openid-configuration":
                    self._json(
                        200,
                        {
                            "issuer": idp.url,
                            "authorization_endpoint": idp.url + "/authorize",
                            "token_endpoint": idp.url + "/token",
                            "jwks_uri": idp.url + "/jwks",
                            "response_types_supported": ["code"],
                            "id_token_signing_alg_values_supported": ["RS256"],
                            "code_challenge_methods_supported": ["S256"],
                        },
                    )
                elif parts.path == "/jwks":
                    self._json(200, KeySet([idp.key]).as_dict(private=False))
                elif parts.path == "/authorize":
                    ok = (
                        q.get("response_type") == "code"
                        and q.get("client_id") == idp.client_id
                        and q.get("code_challenge_method") == "S256"
                        and q.get("code_challenge")
                        and q.get("nonce")
                        and "openid" in q.get("scope", "").split()
                    )
                    if not ok:
                        self._json(400, {"error": "invalid_request", "got": q})
                        return
                    code = secrets.token_urlsafe(16)
                    idp.codes[code] = {**q, "person": dict(idp.person)}
                    target = (
                        q["redirect_uri"] + "?" + urlencode({"code": code, "state": q["state"]})
                    )
                    self.send_response(302)
                    self.send_header("location", target)
                    self.end_headers()
                else:
                    self._json(404, {"error": "not_found"})

            def do_POST(self) -> None:  # noqa: N802
                idp.token_requests += 1
                body = self.rfile.read(int(self.headers.get("content-length", "0"))).decode()
                form = {k: v[0] for k, v in parse_qs(body).items()}
                expected = (
                    "Basic "
                    + base64.b64encode(f"{idp.client_id}:{idp.client_secret}".encode()).decode()
                )
                if self.headers.get("authorization") != expected:
                    self._json(401, {"error": "invalid_client"})
                    return
                grant = idp.codes.pop(form.get("code", ""), None)
                verifier = form.get("code_verifier", "")
                challenge = (
                    base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
                    .rstrip(b"=")
                    .decode()
                )
                if (
                    grant is None
                    or form.get("grant_type") != "authorization_code"
                    or form.get("redirect_uri") != grant["redirect_uri"]
                    or challenge != grant["code_challenge"]
                ):
                    self._json(400, {"error": "invalid_grant"})
                    return
                self._json(
                    200,
                    {
                        "access_token": secrets.token_urlsafe(16),
                        "token_type": "Bearer",
                        "expires_in": 300,
                        "id_token": idp._id_token(grant),
                    },
                )

        return Handler
