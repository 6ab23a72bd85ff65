"""Password hashing, key derivation and CSRF tokens."""

import asyncio
import contextlib
import hashlib
import hmac
import os
import secrets
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TypeVar

from argon2 import PasswordHasher as Argon2Hasher
from argon2 import Type, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError

from app.core.config import Settings


def derive_key(secret: str, purpose: str) -> bytes:
    """One 64-byte key per purpose, so a token minted for one use never verifies for another."""
    return hmac.new(secret.encode(), purpose.encode(), hashlib.sha512).digest()


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


T = TypeVar("T")
# Hashing threads run at this lower CPU priority (Linux nice value): during a login storm the
# scheduler still serves every other request first, and hashing takes the cores left over.
HASHING_NICENESS = 10


def _lower_thread_priority() -> None:
    if sys.platform == "linux":  # per-thread nice values are a Linux feature
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASHING_NICENESS)


def _is_argon2(password_hash: str) -> bool:
    try:
        extract_parameters(password_hash)
    except InvalidHashError:
        return False
    return True


class PasswordHasher:
    """Argon2id off the event loop, in a small pool of low-priority threads.

    One thread per core, shared among the worker processes (WEB_CONCURRENCY): that bounds
    memory (each hash holds ARGON2_MEMORY_COST), keeps the cores from thrashing between more
    hashes than they can run, and keeps a login storm from starving the rest of the service.
    """

    def __init__(self, settings: Settings) -> None:
        self._argon2 = Argon2Hasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_cost,
            parallelism=settings.argon2_parallelism,
            type=Type.ID,
        )
        self.concurrency = max(1, (os.cpu_count() or 1) // settings.web_concurrency)
        self._threads = ThreadPoolExecutor(
            max_workers=self.concurrency,
            thread_name_prefix="argon2",
            initializer=_lower_thread_priority,
        )
        self._dummy_hash = self._argon2.hash(secrets.token_urlsafe(32))

    async def hash(self, password: str) -> str:
        return await self._run(self._argon2.hash, password)

    async def verify(self, password_hash: str, password: str) -> bool:
        """A stored value that is not an argon2 hash never matches, yet costs a full
        verification: an account without a usable password is not told apart by speed."""
        return await self._run(self._verify, password_hash, password)

    async def verify_dummy(self, password: str) -> None:
        """Spend what checking a real account costs, so unknown emails cannot be told apart."""
        await self._run(self._verify, None, password)

    def needs_rehash(self, password_hash: str) -> bool:
        return self._argon2.check_needs_rehash(password_hash)

    def _verify(self, password_hash: str | None, password: str) -> bool:
        if password_hash is None or not _is_argon2(password_hash):
            self._check(self._current_dummy(), password)
            return False
        return self._check(password_hash, password)

    def _check(self, password_hash: str, password: str) -> bool:
        try:
            return self._argon2.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def _current_dummy(self) -> str:
        """The dummy is made by the hasher in force, like every new hash: it encodes exactly
        the configured parameters, and follows them should they change."""
        if self._argon2.check_needs_rehash(self._dummy_hash):
            self._dummy_hash = self._argon2.hash(secrets.token_urlsafe(32))
        return self._dummy_hash

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)

    async def _run(self, func: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._threads, partial(func, *args))


CSRF_TOKEN_MAX_LENGTH = 128  # an issued token is 87 ASCII characters


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
        """Anything the client sends may reach here: non-ASCII, huge, missing parts."""
        if len(token) > CSRF_TOKEN_MAX_LENGTH or not token.isascii():
            return False
        nonce, _, signature = token.partition(".")
        if not nonce or not signature:
            return False
        return hmac.compare_digest(signature.encode(), self._sign(session_id, nonce).encode())

    def _sign(self, session_id: str, nonce: str) -> str:
        message = f"{session_id}:{nonce}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()
