"""Access tokens of the Dropbox emulator: fixed ones, and expiring ones from oauth2/token."""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
from collections.abc import Collection, Mapping
from typing import Any
from urllib.parse import parse_qs

import trio

# Issued tokens are forgotten this long after they expire (until then they
# still answer "expired" rather than "invalid", as the real API does).
_FORGET_AFTER = 3600.0


class Tokens:
    """Decides whether a bearer token is valid, and issues tokens for refresh tokens."""

    def __init__(
        self,
        access_tokens: Collection[str],
        apps: Mapping[str, str],
        refresh_tokens: Collection[str],
        lifetime: float,
    ) -> None:
        self._fixed = frozenset(access_tokens)
        self._apps = dict(apps)
        self._refresh_tokens = frozenset(refresh_tokens)
        self._lifetime = lifetime
        self._issued: dict[str, float] = {}  # token -> expiry (trio clock)

    def check(self, token: str) -> str | None:
        """Return None if ``token`` is valid, else the AuthError tag to answer with."""
        if token in self._fixed:
            return None
        expiry = self._issued.get(token)
        if expiry is None:
            return "invalid_access_token"
        return "expired_access_token" if trio.current_time() >= expiry else None

    def expire_all(self) -> None:
        """Make every issued token expired now."""
        now = trio.current_time()
        self._issued = dict.fromkeys(self._issued, now)

    def grant(self, body: bytes, authorization: str | None) -> tuple[int, dict[str, Any]]:
        """Answer an oauth2/token request: (status, JSON body).

        Accepts ``grant_type=refresh_token`` with the app key (and secret, unless
        the app uses PKCE) in the form fields or in HTTP basic auth, as the SDK
        sends them. Errors follow the OAuth2 form the SDK parses
        (``invalid_grant`` becomes an AuthError).
        """
        form = {key: values[0] for key, values in parse_qs(body.decode("latin-1")).items()}
        client_id, client_secret = _basic_credentials(authorization)
        client_id = form.get("client_id", client_id)
        client_secret = form.get("client_secret", client_secret)
        if form.get("grant_type") != "refresh_token":
            return 400, _oauth_error("unsupported_grant_type", "only refresh_token is supported")
        expected_secret = self._apps.get(client_id or "")
        if expected_secret is None or (
            client_secret is not None and not hmac.compare_digest(client_secret, expected_secret)
        ):
            return 400, _oauth_error("invalid_client", "Invalid client_id or client_secret")
        if form.get("refresh_token") not in self._refresh_tokens:
            return 400, _oauth_error("invalid_grant", "refresh token is invalid or revoked")
        now = trio.current_time()
        self._issued = {t: e for t, e in self._issued.items() if e + _FORGET_AFTER > now}
        token = "sl." + secrets.token_urlsafe(32)
        self._issued[token] = now + self._lifetime
        return 200, {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": int(self._lifetime),
        }


def _basic_credentials(authorization: str | None) -> tuple[str | None, str | None]:
    if not authorization or not authorization.startswith("Basic "):
        return None, None
    try:
        decoded = base64.b64decode(authorization[6:], validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    key, _, secret = decoded.partition(":")
    return key, secret


def _oauth_error(error: str, description: str) -> dict[str, Any]:
    return {"error": error, "error_description": description}
