"""The write behind a refresh: the current token's rotation, in one statement.

Nearly every refresh presents the current token of a live session, from the device and the
address it was last used from. For those, the checks and the compare-and-swap on the
generation are one conditional UPDATE, committed as it runs on a raw driver connection
(`driver.py`): one round trip on PostgreSQL, and on SQLite a write lock held for the statement
only. Whatever it does not rotate (an old token, a grace-window retry, an idle session,
another device or address, a lost race) is judged by `SessionService` through the ORM, as
before: this statement only ever does what that path would have done.
"""

import uuid
from datetime import datetime

from sqlalchemy import Boolean, bindparam, exists, or_, update
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col

from app.db.driver import Statement, writer
from app.models import DeviceSession, User

ROTATE_CURRENT = (
    update(DeviceSession)
    .where(
        col(DeviceSession.id) == bindparam("session_id"),
        col(DeviceSession.user_id) == bindparam("user_id"),
        # The current token: its generation and hash (a sha256, so comparing it leaks nothing)
        col(DeviceSession.refresh_generation) == bindparam("generation"),
        col(DeviceSession.refresh_token_hash) == bindparam("presented"),
        # A live session, used within the idle timeout, of an active user
        col(DeviceSession.revoked_at).is_(None),
        col(DeviceSession.expires_at) > bindparam("now"),
        col(DeviceSession.last_seen_at) >= bindparam("idle_since"),
        exists().where(col(User.id) == DeviceSession.user_id, col(User.is_active).is_(True)),
        # The same device, unless binding is off; the same address (a change is audited)
        or_(
            bindparam("any_device", type_=Boolean),
            col(DeviceSession.fingerprint) == bindparam("fingerprint"),
        ),
        or_(
            bindparam("no_address", type_=Boolean),
            col(DeviceSession.last_ip_address).is_(None),
            col(DeviceSession.last_ip_address) == bindparam("ip"),
        ),
    )
    .values(
        refresh_generation=bindparam("next_generation"),
        refresh_token_hash=bindparam("successor"),
        previous_refresh_token_hash=bindparam("presented"),
        refresh_issued_at=bindparam("now"),
        last_seen_at=bindparam("now"),
        last_ip_address=bindparam("ip"),
    )
    .returning(col(DeviceSession.id))
)


class RefreshRotation:
    """Runs `ROTATE_CURRENT`; one per app, like the principal reader."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._statement = Statement(ROTATE_CURRENT, engine.dialect, ())
        self._connection = writer(engine)

    async def rotate_current(
        self,
        *,
        session_id: uuid.UUID,
        user_id: uuid.UUID,
        generation: int,
        presented: str,
        successor: str,
        now: datetime,
        idle_since: datetime,
        fingerprint: str | None,
        ip: str | None,
    ) -> bool:
        """Whether the session moved from `presented` (its current token's hash) to `successor`.
        `fingerprint` None accepts any device."""
        values = {
            "session_id": session_id,
            "user_id": user_id,
            "generation": generation,
            "next_generation": generation + 1,
            "presented": presented,
            "successor": successor,
            "now": now,
            "idle_since": idle_since,
            "any_device": fingerprint is None,
            "fingerprint": fingerprint or "",
            "no_address": ip is None,
            "ip": ip,
        }
        rows = await self._connection.fetch(self._statement.sql, self._statement.args(values))
        return len(rows) == 1

    async def close(self) -> None:
        await self._connection.close()
