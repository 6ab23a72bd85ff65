"""Every JWT this service issues is encoded and decoded here."""

import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, Literal

import jwt
from jwt.algorithms import HMACAlgorithm

from app.core import clock
from app.core.config import Settings
from app.core.security import derive_key

TokenType = Literal["access", "refresh"]
REQUIRED_CLAIMS = ("exp", "iat", "sub", "sid", "jti", "typ", "iss", "aud")
FORBIDDEN_HEADERS = {"jwk", "jku", "x5u", "x5c", "kid"}
HMAC_HASHES = {
    "HS256": HMACAlgorithm.SHA256,
    "HS384": HMACAlgorithm.SHA384,
    "HS512": HMACAlgorithm.SHA512,
}
VERIFIED_TOKENS_KEPT = 4096  # per worker; small claims objects, so little memory
# Tolerated clock difference between the hosts that issue and check tokens (as PyJWT's leeway).
ISSUED_AT_LEEWAY_SECONDS = 30


class TokenError(Exception):
    """The token is not one this service issued for this purpose, or it has expired."""


@dataclass(frozen=True, slots=True)
class TokenClaims:
    user_id: uuid.UUID
    session_id: uuid.UUID
    jti: str
    generation: int | None
    token_type: str
    issued_at: int
    expires_at: int


class _ServiceKeyHmac(HMACAlgorithm):
    """HMAC with the service's own key, checked once instead of on every token.

    PyJWT checks a key on each call (is it PEM, DER, SSH?) before it signs or verifies: a
    quarter of a verification, for a key that never changes. Any other key is checked as usual.
    """

    def __init__(self, algorithm: str, key: bytes) -> None:
        super().__init__(HMAC_HASHES[algorithm])
        self.key = super().prepare_key(key)

    def prepare_key(self, key: str | bytes) -> bytes:
        return self.key if key is self.key else super().prepare_key(key)


class TokenCodec:
    def __init__(self, settings: Settings) -> None:
        self._jti_key = derive_key(settings.secret_key.get_secret_value(), "refresh-jti")
        self._algorithm = settings.jwt_algorithm
        # PyJWT signs and verifies (header, algorithm pinned to ours); the claims are checked
        # here, on the service's clock.
        hmac_algorithm = _ServiceKeyHmac(
            self._algorithm, derive_key(settings.secret_key.get_secret_value(), "jwt")
        )
        self._key = hmac_algorithm.key
        self._jws = jwt.PyJWS(algorithms=[])
        self._jws.register_algorithm(self._algorithm, hmac_algorithm)
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._access_ttl = timedelta(seconds=settings.access_token_ttl_seconds)
        # Whether a token is genuine depends only on the token and the key, so the answer is
        # kept for tokens seen lately (as Envoy's jwt_cache does); only the clock and the
        # expected type are checked again. A client reuses its access token for its whole
        # life, and verifying the signature was a large share of an authenticated request.
        self._verified = lru_cache(maxsize=VERIFIED_TOKENS_KEPT)(self._verify)

    def access_token(self, user_id: uuid.UUID, session_id: uuid.UUID, now: datetime) -> str:
        return self._encode(
            {
                "sub": str(user_id),
                "sid": str(session_id),
                "jti": uuid.uuid4().hex,
                "typ": "access",
                "iat": int(now.timestamp()),
                "exp": int((now + self._access_ttl).timestamp()),
            }
        )

    def refresh_token(
        self,
        user_id: uuid.UUID,
        session_id: uuid.UUID,
        generation: int,
        issued_at: datetime,
        expires_at: datetime,
    ) -> str:
        """Deterministic for (session, generation, issued_at).

        That is what lets concurrent refreshes inside the grace window receive the very same
        successor without the database ever holding a usable token.
        """
        jti = hmac.new(
            self._jti_key, f"{session_id}:{generation}".encode(), hashlib.sha256
        ).hexdigest()[:32]
        return self._encode(
            {
                "sub": str(user_id),
                "sid": str(session_id),
                "gen": generation,
                "jti": jti,
                "typ": "refresh",
                "iat": int(issued_at.timestamp()),
                "exp": int(expires_at.timestamp()),
            }
        )

    def decode(self, token: str, expected_type: TokenType) -> TokenClaims:
        """Verify and read a token: genuine, unexpired and of the expected type."""
        claims = self._verified(token)
        now = clock.timestamp()
        if claims.expires_at <= now:
            raise TokenError("Signature has expired")
        if claims.issued_at > now + ISSUED_AT_LEEWAY_SECONDS:
            raise TokenError("The token is not yet valid (iat)")
        if claims.token_type != expected_type:
            raise TokenError("wrong token type")
        if expected_type == "refresh" and claims.generation is None:
            raise TokenError("refresh token without generation")
        return claims

    def _verify(self, token: str) -> TokenClaims:
        """Parsed once; the header is judged after the signature check, which already pins the
        algorithm and never trusts an embedded key. Raises, so only genuine tokens are kept."""
        try:
            decoded = self._jws.decode_complete(token, self._key, algorithms=[self._algorithm])
            if FORBIDDEN_HEADERS & decoded["header"].keys():
                raise TokenError("unexpected token header")
            payload = self._claims(decoded["payload"])
            generation = payload.get("gen")
            return TokenClaims(
                user_id=uuid.UUID(payload["sub"]),
                session_id=uuid.UUID(payload["sid"]),
                jti=payload["jti"],
                generation=generation if isinstance(generation, int) else None,
                token_type=payload["typ"],
                issued_at=int(payload["iat"]),
                expires_at=int(payload["exp"]),
            )
        except (jwt.PyJWTError, ValueError, TypeError, AttributeError) as exc:
            raise TokenError(str(exc)) from exc

    def _claims(self, payload: bytes) -> dict[str, Any]:
        """Every claim present; issuer and audience ours. Time is judged in decode() on the
        service's clock, for remembered tokens too."""
        claims = json.loads(payload)
        if not isinstance(claims, dict):
            raise TokenError("the payload is not a JSON object")
        missing = [name for name in REQUIRED_CLAIMS if claims.get(name) is None]
        if missing:
            raise TokenError(f"missing claims: {', '.join(missing)}")
        if claims["iss"] != self._issuer:
            raise TokenError("invalid issuer")
        if claims["aud"] != self._audience:
            raise TokenError("invalid audience")
        return claims

    def _encode(self, claims: dict[str, object]) -> str:
        payload = {**claims, "iss": self._issuer, "aud": self._audience}
        return self._jws.encode(
            json.dumps(payload, separators=(",", ":")).encode(), self._key, self._algorithm
        )
