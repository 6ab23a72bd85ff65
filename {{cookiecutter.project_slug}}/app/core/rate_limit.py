"""Rate limiting on the `limits` package: Redis when configured, process memory otherwise.

When Redis is unreachable the limiter keeps counting in memory (and says so in the log)
instead of failing requests or letting them all through; it tries Redis again shortly after.
"""

import logging
import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string

from app.core.config import Settings

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


class RateLimiter:
    def __init__(self, redis_url: str | None = None, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self._memory = MovingWindowRateLimiter(MemoryStorage())
        self._redis_storage: Storage | None = None
        self._redis: MovingWindowRateLimiter | None = None
        self._redis_down_until = 0.0
        if redis_url:
            self._redis_storage = storage_from_string(
                f"async+{redis_url}",
                implementation="redispy",
                wrap_exceptions=True,
                socket_connect_timeout=0.5,
                socket_timeout=0.5,
            )
            self._redis = MovingWindowRateLimiter(self._redis_storage)

    async def hit(self, limit: Limit, key: str) -> None:
        """Count one event; raise `RateLimitExceeded` when the limit is already used up."""
        if self.enabled and not await self._call("hit", limit, key):
            raise RateLimitExceeded(await self._retry_after(limit, key))

    async def check(self, limit: Limit, key: str) -> None:
        """Raise `RateLimitExceeded` when one more event would exceed the limit; count nothing."""
        if self.enabled and not await self._call("test", limit, key):
            raise RateLimitExceeded(await self._retry_after(limit, key))

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
        return max(1, math.ceil(stats.reset_time - time.time()))

    async def _call(self, method: str, limit: Limit, key: str):  # type: ignore[no-untyped-def]
        if self._redis is not None and time.monotonic() >= self._redis_down_until:
            try:
                return await getattr(self._redis, method)(limit.item, limit.name, key)
            except StorageError as exc:
                self._redis_down_until = time.monotonic() + REDIS_RETRY_SECONDS
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
