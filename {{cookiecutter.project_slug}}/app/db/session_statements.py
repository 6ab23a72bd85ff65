"""The statements on the hot paths of device sessions, off the ORM (`driver.py`).

The rotation. Nearly every refresh presents the current token of a live session, from the
device and the address it was last used from. For those, the checks and the compare-and-swap
on the generation are one conditional UPDATE, committed as it runs: one round trip on
PostgreSQL, and on SQLite a write lock held for the statement only. Whatever it does not
rotate (an old token, a grace-window retry, an idle session, another device or address, a
lost race) is judged by `SessionService` through the ORM, as before: this statement only ever
does what that path would have done.

The session list. An account used by scripts can have hundreds of live sessions. Read into
Python, each row cost its parsing, a response model and its serialisation, so that a list of
200 cost over ten times a `/users/me`. Here the database renders the JSON array itself in the
same statement (`json_agg` on PostgreSQL, `json_group_array` on SQLite), and the text goes to
the client as it is, in the shape the API documents (`SessionRead`). Timestamps are RFC 3339
in UTC with microseconds.
"""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ColumnElement,
    Select,
    String,
    bindparam,
    case,
    cast,
    exists,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col

from app.db.driver import Statement, reader, writer
from app.domain import RenderedJson
from app.models import DeviceSession, User

UUID_GROUPS = ((1, 8), (9, 4), (13, 4), (17, 4), (21, 12))  # (start, length) in the hex form

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


def session_list(dialect: Dialect) -> Select[Any]:
    """A user's live sessions, most recently used first, as one JSON array (see above)."""
    live = (
        col(DeviceSession.user_id) == bindparam("user_id"),
        col(DeviceSession.revoked_at).is_(None),
        col(DeviceSession.expires_at) > bindparam("now"),
    )
    newest_first = col(DeviceSession.last_seen_at).desc()
    columns = (DeviceSession.id, DeviceSession.device_label, DeviceSession.last_ip_address,
               DeviceSession.created_at, DeviceSession.last_seen_at)  # fmt: skip
    if dialect.name == "postgresql":
        item = func.json_build_object(*_session_fields(*map(col, columns), on_postgres=True))
        items = func.json_agg(aggregate_order_by(item, newest_first))
        return select(cast(func.coalesce(items, cast("[]", JSON)), String)).where(*live)
    # SQLite aggregates in the order its subquery gives; the subquery sorts the bare columns.
    ordered = select(*map(col, columns)).where(*live).order_by(newest_first).subquery()
    item = func.json_object(*_session_fields(*ordered.c, on_postgres=False))
    return select(func.json_group_array(item))


def _session_fields(
    session_id: Any, device: Any, ip: Any, created_at: Any, last_seen_at: Any, *, on_postgres: bool
) -> list[Any]:
    """`SessionRead`'s fields, as the name, value pairs of a JSON object."""
    current = session_id == bindparam("current_session_id")
    fields = {
        "id": cast(session_id, String) if on_postgres else _hyphenated(session_id),
        "device": device,
        "ip_address": ip,
        "created_at": _rfc3339(created_at, on_postgres),
        "last_seen_at": _rfc3339(last_seen_at, on_postgres),
        # SQLite's JSON has no booleans of its own: json('true') is one
        "current": current if on_postgres else func.json(case((current, "true"), else_="false")),
    }
    return [part for name, value in fields.items() for part in (literal(name), value)]


def _hyphenated(column: Any) -> ColumnElement[Any]:
    """SQLite keeps a UUID as its 32 hex digits; the API shows the 8-4-4-4-12 form."""
    groups = [func.substr(column, start, length) for start, length in UUID_GROUPS]
    text: ColumnElement[Any] = groups[0]
    for group in groups[1:]:
        text = text.concat("-").concat(group)
    return text


def _rfc3339(column: Any, on_postgres: bool) -> ColumnElement[Any]:
    if on_postgres:
        return func.to_char(func.timezone("UTC", column), 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
    return func.replace(column, " ", "T").concat("Z")  # stored as YYYY-MM-DD HH:MM:SS.ffffff


class SessionStatements:
    """Runs `ROTATE_CURRENT` and the session list; one per app, like the principal reader."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._statement = Statement(ROTATE_CURRENT, engine.dialect, ())
        self._connection = writer(engine)
        self._list = Statement(session_list(engine.dialect), engine.dialect, ())
        self._reader = reader(engine)

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

    async def list_json(
        self, user_id: uuid.UUID, current_session_id: uuid.UUID | None, now: datetime
    ) -> RenderedJson:
        """The user's live sessions; `current` marks `current_session_id`."""
        values = {"user_id": user_id, "current_session_id": current_session_id, "now": now}
        [(document,)] = await self._reader.fetch(self._list.sql, self._list.args(values))
        return RenderedJson(document)

    async def close(self) -> None:
        await self._connection.close()
        await self._reader.close()
