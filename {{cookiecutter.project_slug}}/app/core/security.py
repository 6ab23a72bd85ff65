"""Password hashing, key derivation and CSRF tokens."""

import hashlib
import hmac
import os
import secrets
from functools import partial

import anyio
from argon2 import PasswordHasher as Argon2Hasher
from argon2 import Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from app.core.config import Settings


def derive_key(secret: str, purpose: str) -> bytes:
    """One 64-byte key per purpose, so a token minted for one use never verifies for another."""
    return hmac.new(secret.encode(), purpose.encode(), hashlib.sha512).digest()


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class PasswordHasher:
    """Argon2id off the event loop.

    Hashing is bounded by a capacity limiter (one per core) so a login storm cannot exhaust
    memory or starve the event loop; every other request keeps flowing.
    """

    def __init__(self, settings: Settings) -> None:
        self._argon2 = Argon2Hasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_cost,
            parallelism=settings.argon2_parallelism,
            type=Type.ID,
        )
        self._limiter = anyio.CapacityLimiter(os.cpu_count() or 1)
        self._dummy_hash = self._argon2.hash(secrets.token_urlsafe(32))

    async def hash(self, password: str) -> str:
        return await self._run(self._argon2.hash, password)

    def hash_sync(self, password: str) -> str:
        """For command-line tools that have no event loop to protect."""
        return self._argon2.hash(password)

    async def verify(self, password_hash: str, password: str) -> bool:
        return await self._run(self._verify, password_hash, password)

    async def verify_dummy(self, password: str) -> None:
        """Spend the same time as a real check, so unknown emails cannot be told apart."""
        await self.verify(self._dummy_hash, password)

    def needs_rehash(self, password_hash: str) -> bool:
        return self._argon2.check_needs_rehash(password_hash)

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._argon2.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    async def _run(self, func, *args):  # type: ignore[no-untyped-def]
        return await anyio.to_thread.run_sync(partial(func, *args), limiter=self._limiter)


class CsrfTokens:
    """Double-submit tokens signed with the session id.

    A token planted in the cookie jar from a sibling subdomain was not signed for this
    session, so it does not verify.
    """

    def __init__(self, secret: str) -> None:
        self._key = derive_key(secret, "csrf")

    def issue(self, session_id: str) -> str:
        nonce = secrets.token_urlsafe(16)
        return f"{nonce}.{self._sign(session_id, nonce)}"

    def is_valid(self, token: str, session_id: str) -> bool:
        nonce, _, signature = token.partition(".")
        if not nonce or not signature:
            return False
        return hmac.compare_digest(signature, self._sign(session_id, nonce))

    def _sign(self, session_id: str, nonce: str) -> str:
        message = f"{session_id}:{nonce}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()
