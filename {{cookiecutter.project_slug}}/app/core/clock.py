"""The service's one reading of the current time.

Every expiry the service judges (tokens, sessions, one-time links, grace windows, the Redis
retry pause) reads this module, so a test can move time forward instead of waiting for it
(the `clock` fixture replaces these three functions together).
"""

import time
from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(UTC)


def timestamp() -> float:
    """Seconds since the epoch: what JWT `exp` claims are compared with."""
    return time.time()


def monotonic() -> float:
    """For pauses measured within this process, immune to wall-clock steps."""
    return time.monotonic()
