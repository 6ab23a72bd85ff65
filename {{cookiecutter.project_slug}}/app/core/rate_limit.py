"""Rate limiting on the `limits` package: Redis when configured, process memory otherwise.

Anything that checks a guessable secret goes through `RateLimiter.attempt` (reserve before
the work, release on success), never a check before and a count after.

When Redis is unreachable the limiter keeps counting in memory (and says so in the log)
instead of failing requests or letting them all through; it tries Redis again shortly after.
"""

import hashlib
import hmac
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string

from app.core import clock, metrics
from app.core.config import RATE_LIMITER, Settings
from app.core.security import derive_key

logger = logging.getLogger(__name__)

REDIS_RETRY_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Limit:
    """A configured limit and the name its counters live under."""

    name: str
    item: RateLimitItem

    @classmethod
    def parse(cls, name: str, spec: str) -> "Limit":
        return cls(name, parse(spec))


class RateLimitExceeded(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__(f"rate limited, retry after {retry_after}s")
        self.retry_after = retry_after


class SweepSafeMemoryStorage(MemoryStorage):
    """`limits`' memory storage, with a clear that cannot break its expiry sweep.

    The sweep lists the keys, then awaits between them; the stock `clear` deletes a key in
    that gap and the sweep dies on a KeyError (logged as an unretrieved task exception).
    Emptying the key's window instead resets it the same way, and the sweep drops it later.
    """

    async def clear(self, key: str) -> None:
        self.storage.pop(key, None)
        self.expirations.pop(key, None)
        if key in self.events:
            self.events[key] = []


class RateLimiter:
    """Counters per (limit, key), kept in Redis when configured and in process memory otherwise.

    Keys are normalised identifiers (an email, an IP key) and are stored only as a keyed
    digest of fixed size: a megabyte-long username costs 64 bytes, and neither memory nor
    Redis holds an address in clear (nor one an attacker could confirm by hashing a guess).
    """

    def __init__(self, redis_url: str | None = None, *, secret: str, enabled: bool = True) -> None:
        self.enabled = enabled
        self._key = derive_key(secret, "rate-limit-keys")
        self._memory = MovingWindowRateLimiter(SweepSafeMemoryStorage())
        self._redis_storage: Storage | None = None
        self._redis: MovingWindowRateLimiter | None = None
        self._redis_down_until = 0.0
        if redis_url:
            storage = storage_from_string(
                f"async+{redis_url}",
                implementation="redispy",
                wrap_exceptions=True,
                socket_connect_timeout=0.5,
                socket_timeout=0.5,
            )
            if not isinstance(storage, Storage):  # an async+ URL always gives an async one
                raise TypeError(f"not an asyncio storage: {type(storage).__name__}")
            self._redis_storage = storage
            self._redis = MovingWindowRateLimiter(storage)

    async def hit(self, limit: Limit, key: str) -> None:
        """Count one event; raise `RateLimitExceeded` when the limit is already used up.

        Consuming and checking are one atomic step (a lock in memory, a Lua script in
        Redis), so concurrent requests can never all see the last free unit.
        """
        if self.enabled and not await self._call("hit", limit, key):
            metrics.RATE_LIMITED.labels(limit.name).inc()
            raise RateLimitExceeded(await self._retry_after(limit, key))

    async def attempt(
        self,
        limit: Limit,
        key: str,
        verify: Callable[[], Awaitable[bool]],
        *,
        release: bool = True,
    ) -> bool:
        """Guard a guessable secret (password, MFA code, reauthentication): reserve, verify,
        release on success.

        One unit is consumed *before* `verify` runs, so a burst of N concurrent guesses gets
        at most the limit's worth of verifications however they interleave; the rest raise
        `RateLimitExceeded` without doing the work. A failed check keeps its unit (it is the
        failure being counted); a passed one resets the key, since a success clears the
        failure count. Checking first and counting after the work would let every guess of
        a burst pass the check before any of them is counted.

        `release=False` keeps the count after a success that is not the end of the story: a
        right password followed by a second step, whose wrong codes must add up across
        sign-ins rather than restart from zero with each one.
        """
        await self.hit(limit, key)
        if not await verify():
            return False
        if release:
            await self.reset(limit, key)
        return True

    async def reset(self, limit: Limit, key: str) -> None:
        if self.enabled:
            await self._call("clear", limit, key)

    async def redis_available(self) -> bool | None:
        """None when no Redis is configured."""
        if self._redis_storage is None:
            return None
        try:
            return await self._redis_storage.check()
        except StorageError:
            return False

    async def _retry_after(self, limit: Limit, key: str) -> int:
        stats = await self._call("get_window_stats", limit, key)
        reset_time: float = stats.reset_time
        return max(1, math.ceil(reset_time - time.time()))

    def _digest(self, key: str) -> str:
        # surrogatepass: a lone surrogate that slipped through input validation still counts
        encoded = key.encode("utf-8", "surrogatepass")
        return hmac.new(self._key, encoded, hashlib.sha256).hexdigest()

    async def _call(self, method: str, limit: Limit, key: str) -> Any:
        """The strategy's `method`, on Redis while it answers, else in memory."""
        key = self._digest(key)
        if self._redis is not None and clock.monotonic() >= self._redis_down_until:
            try:
                return await getattr(self._redis, method)(limit.item, limit.name, key)
            except StorageError as exc:
                self._redis_down_until = clock.monotonic() + REDIS_RETRY_SECONDS
                logger.warning("Redis unavailable for rate limiting, counting in memory: %s", exc)
        return await getattr(self._memory, method)(limit.item, limit.name, key)


@dataclass(frozen=True, slots=True)
class AuthLimits:
    login_ip: Limit
    login_account: Limit
    register_ip: Limit
    email: Limit
    email_ip: Limit
    # One bucket per purpose: hammering forgot-password for an address must not block its
    # owner's resend, and nobody but the account holder can use up its email changes.
    resend_email: Limit
    email_change: Limit
    notice: Limit

    @classmethod
    def from_settings(cls, settings: Settings) -> "AuthLimits":
        return cls(
            login_ip=Limit.parse("login-ip", settings.rate_limit_login_ip),
            login_account=Limit.parse("login-account", settings.rate_limit_login_account),
            register_ip=Limit.parse("register-ip", settings.rate_limit_register_ip),
            email=Limit.parse("email", settings.rate_limit_email),
            email_ip=Limit.parse("email-ip", settings.rate_limit_email_ip),
            resend_email=Limit.parse("resend-email", settings.rate_limit_resend_email),
            email_change=Limit.parse("email-change", settings.rate_limit_email_change),
            notice=Limit.parse("notice", settings.rate_limit_notice),
        )


def memory_counters_warning(settings: Settings) -> str | None:
    """Why this configuration's limits are looser than they read, or None when they are not.

    Counters in process memory are per worker: N workers let N times the configured attempts
    through, and a project generated for Redis without `REDIS_URL` is running unshared.
    """
    if settings.redis_url or not settings.rate_limit_enabled:
        return None
    if settings.web_concurrency > 1:
        return (
            f"WEB_CONCURRENCY={settings.web_concurrency} workers count rate limits each in its "
            f"own memory, so every limit allows {settings.web_concurrency} times its attempts: "
            "set REDIS_URL to share the counters, or run one worker"
        )
    if RATE_LIMITER == "redis":
        return "REDIS_URL is unset: rate limits are counted in this process's memory, not shared"
    return None
