"""Single sign-on with OpenID Connect (authorization code flow with PKCE), through Authlib.

Loopline discovers the issuer's endpoints (``/.well-known/openid-configuration``), sends the
browser there with a fresh ``state``, ``nonce`` and PKCE verifier (kept in a signed,
short-lived cookie), exchanges the code at the token endpoint with its client secret, and
accepts the ID token only when its signature (the issuer's JWKS), issuer, audience, expiry
and nonce check out (joserfc, Authlib's JOSE library). Who may sign in is decided by the
users table (``models.users.user_for_oidc``): SSO proves who someone is, not their role.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from itsdangerous import BadSignature, URLSafeTimedSerializer
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

STATE_COOKIE = "loopline_oidc"
STATE_MAX_AGE_S = 600  # the time a person may spend at the IdP's sign-in page
DISCOVERY_TTL_S = 3600.0
CALLBACK_PATH = "/signin/oidc/callback"


class OidcError(Exception):
    """The sign-in cannot be accepted; the message says why (shown to the person)."""


@dataclass
class OidcClient:
    """One configured OpenID provider."""

    issuer: str
    client_id: str
    client_secret: str
    signing_key: bytes
    scopes: str = "openid profile email"
    timeout_s: float = 10.0
    _discovered: tuple[dict[str, Any], float] | None = field(default=None, repr=False)

    def _serializer(self) -> URLSafeTimedSerializer:
        return URLSafeTimedSerializer(self.signing_key, salt="loopline.oidc")

    def metadata(self) -> dict[str, Any]:
        """The issuer's discovery document (cached for an hour)."""
        if self._discovered and time.monotonic() - self._discovered[1] < DISCOVERY_TTL_S:
            return self._discovered[0]
        url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            doc = httpx.get(url, timeout=self.timeout_s).raise_for_status().json()
        except (httpx.HTTPError, ValueError) as exc:
            raise OidcError(f"the sign-in service cannot be reached ({exc})") from exc
        if doc.get("issuer") != self.issuer:
            raise OidcError("the sign-in service names another issuer")
        self._discovered = (doc, time.monotonic())
        return dict(doc)

    def _client(self, redirect_uri: str) -> OAuth2Session:
        # Authlib's requests client: its httpx one is deprecated in favour of httpx2.
        return OAuth2Session(
            self.client_id,
            self.client_secret,
            scope=self.scopes,
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
            token_endpoint_auth_method="client_secret_basic",
        )

    def start(self, *, redirect_uri: str, next_url: str) -> tuple[str, str]:
        """Where to send the browser, and the signed cookie value that remembers the try."""
        state, nonce, verifier = generate_token(32), generate_token(32), generate_token(48)
        with self._client(redirect_uri) as client:
            url, _ = client.create_authorization_url(
                self.metadata()["authorization_endpoint"],
                state=state,
                code_verifier=verifier,
                nonce=nonce,
            )
        cookie = self._serializer().dumps(
            {"state": state, "nonce": nonce, "verifier": verifier, "next": next_url}
        )
        return str(url), str(cookie)

    def finish(
        self, *, redirect_uri: str, code: str, state: str, cookie: str | None
    ) -> tuple[dict[str, Any], str]:
        """The ID token's checked claims, and where the person wanted to go."""
        try:
            saved = self._serializer().loads(cookie or "", max_age=STATE_MAX_AGE_S)
        except BadSignature as exc:
            raise OidcError("the sign-in took too long or did not start here") from exc
        if not isinstance(saved, dict) or saved.get("state") != state:
            raise OidcError("the sign-in did not start here (state)")
        meta = self.metadata()
        try:
            with self._client(redirect_uri) as client:
                token = client.fetch_token(
                    meta["token_endpoint"],
                    code=code,
                    code_verifier=saved["verifier"],
                    timeout=self.timeout_s,
                )
        except Exception as exc:  # noqa: BLE001 - Authlib raises several kinds
            raise OidcError(f"the sign-in service refused the code ({exc})") from exc
        id_token = token.get("id_token")
        if not id_token:
            raise OidcError("the sign-in service sent no ID token")
        return self._claims(str(id_token), meta, str(saved["nonce"])), str(saved.get("next"))

    def _claims(self, id_token: str, meta: dict[str, Any], nonce: str) -> dict[str, Any]:
        try:
            jwks = httpx.get(meta["jwks_uri"], timeout=self.timeout_s).raise_for_status().json()
            keys = KeySet.import_key_set(jwks)
            decoded = jwt.decode(id_token, keys, algorithms=["RS256", "ES256"])
            jwt.JWTClaimsRegistry(
                leeway=60,
                iss={"essential": True, "value": self.issuer},
                aud={"essential": True, "value": self.client_id},
                sub={"essential": True},
                exp={"essential": True},
                nonce={"essential": True, "value": nonce},
            ).validate(decoded.claims)
        except (httpx.HTTPError, ValueError, JoseError) as exc:
            raise OidcError(f"the ID token is not acceptable ({exc})") from exc
        return dict(decoded.claims)
