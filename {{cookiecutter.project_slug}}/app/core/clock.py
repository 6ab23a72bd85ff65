"""The service's one reading of the current time.

Every expiry the service judges (tokens, sessions, one-time links, grace windows, the Redis
retry pause) reads this module, so a test can move time forward instead of waiting for it.
"""

import time
from datetime import UTC, datetime


def timestamp() -> float:
    """Seconds since the epoch; `now` derives from it, so patching this moves both."""
    return time.time()


def now() -> datetime:
    return datetime.fromtimestamp(timestamp(), UTC)


def monotonic() -> float:
    """For pauses measured within this process, immune to wall-clock steps."""
    return time.monotonic()
