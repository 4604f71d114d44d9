"""JWT issuing and checking (HS256 only), with a small cache of verified signatures.

The cache holds only signature-checked claims; expiry and revocation are re-checked on every use, so
caching never extends a token's life. It spares the proxy path a JSON parse + HMAC per request.
"""

from __future__ import annotations

import secrets
import sys
import time
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any

from nekzus.auth.principal import AuthError


def _import_jwt() -> ModuleType:
    """PyJWT, imported without `cryptography` when nothing has loaded it yet.

    `jwt.algorithms` imports `cryptography` (~10 MiB) whenever it is installed, for the RSA/EC/EdDSA
    algorithms; tokens here are HS256 only, which PyJWT implements with `hmac` and supports without
    `cryptography`. Hiding the package while `jwt` is first imported keeps it out of the process (it is
    loaded normally later by whatever needs it; PyJWT then still offers HMAC only, all we use).
    """
    if "jwt" in sys.modules or "cryptography" in sys.modules:
        import jwt

        return jwt
    sys.modules["cryptography"] = None  # type: ignore[assignment]  # import of it raises ModuleNotFoundError
    try:
        import jwt

        return jwt
    finally:
        if sys.modules.get("cryptography", ...) is None:
            del sys.modules["cryptography"]


jwt = _import_jwt()

CACHE_MAX = 4096


class TokenCodec:
    def __init__(
        self, secret: str, issuer: str, audience: str, ttl: float, clock: Callable[[], float] = time.time
    ) -> None:
        self.clock = clock  # injectable so expiry is testable without waiting real seconds
        self._secret = secret
        self.issuer = issuer
        self.audience = audience
        self.ttl = ttl
        self._cache: dict[str, dict[str, Any]] = {}

    def issue(
        self, subject: str, scopes: Iterable[str], *, kind: str, session_id: str = ""
    ) -> tuple[str, dict[str, Any]]:
        now = int(self.clock())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "scopes": sorted(set(scopes)),
            "iat": now,
            "exp": now + max(1, round(self.ttl)),
            "jti": secrets.token_hex(16),
            "typ": kind,
        }
        if session_id:
            claims["sid"] = session_id
        return jwt.encode(claims, self._secret, algorithm="HS256"), claims

    def verify(self, token: str, *, allow_expired: bool = False) -> dict[str, Any]:
        """Signature, issuer, audience and claim shapes; expiry unless `allow_expired`."""
        claims = self._cache.get(token)
        if claims is None:
            claims = self._decode(token)
            if len(self._cache) >= CACHE_MAX:
                self._cache.clear()
            self._cache[token] = claims
        if not allow_expired and claims["exp"] <= self.clock():
            raise AuthError(401, "TOKEN_EXPIRED", "JWT token has expired")
        return claims

    def peek(self, token: str) -> dict[str, Any] | None:
        """Signature-valid claims (expired allowed) or None; never raises."""
        try:
            return self.verify(token, allow_expired=True)
        except AuthError:
            return None

    def _decode(self, token: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._secret,
                algorithms=["HS256"],
                audience=self.audience,
                issuer=self.issuer,
                options={
                    "require": ["iss", "aud", "sub", "iat", "exp", "jti"],
                    "verify_exp": False,
                },
            )
        except jwt.PyJWTError:
            raise AuthError(401, "UNAUTHORIZED", "Invalid token") from None
        scopes = claims.get("scopes", [])
        if (
            not isinstance(claims.get("sub"), str)
            or not claims["sub"]
            or not isinstance(claims.get("jti"), str)
            or not isinstance(claims.get("exp"), int | float)
            or not isinstance(scopes, list)
            or not all(isinstance(s, str) for s in scopes)
            or claims.get("typ") not in ("device", "user")
        ):
            raise AuthError(401, "UNAUTHORIZED", "Invalid token")
        return claims
