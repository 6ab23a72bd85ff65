"""The read behind every authenticated request, kept off the ORM.

Each request reads its session, user and grants afresh, so logout, revocation, deactivation and
role changes apply at once in every worker: nothing is cached between requests. The ORM made
that read the bulk of an authenticated request; here it is one statement, built with SQLAlchemy
and compiled once, run on a raw driver connection (benchmarks/README.md has the figures):

* SQLite: a connection used right on the event loop. The read is quicker than a hop to
  aiosqlite's thread, and in WAL mode readers never wait for writers.
* PostgreSQL: one round trip on a few asyncpg connections of its own, with no pre-ping (a
  connection the server dropped is replaced and the read tried once more).

Values go through the column types' own SQLAlchemy processors, so they match the ORM's.
"""

import asyncio
import sqlite3
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from functools import partial
from typing import Any, Protocol, cast

from sqlalchemy import ColumnElement, bindparam, exists, inspect, null, or_, select, union_all
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Mapped
from sqlmodel import col
from sqlmodel.sql.expression import Select

from app.domain import Principal
from app.models import (
    DeviceSession,
    Passkey,
    Permission,
    Role,
    RolePermission,
    TotpFactor,
    User,
    UserRole,
)


def grants_query(*leading: ColumnElement[Any] | Mapped[Any]) -> Select[*tuple[Any, ...]]:
    """What users hold: one row per (role, permission) of their roles, the permission NULL for
    a role without any. Every read of a user's roles and permissions starts here."""
    return (
        Select(*leading, col(Role.name), col(Permission.name))
        .select_from(UserRole)
        .join(Role, col(Role.id) == UserRole.role_id)
        .outerjoin(RolePermission, col(RolePermission.role_id) == Role.id)
        .outerjoin(Permission, col(Permission.id) == RolePermission.permission_id)
    )


MAX_POSTGRES_CONNECTIONS = 5  # per worker, besides the engine's pool; each read is one round trip

# Whether the user has a second factor (for MFA_REQUIRED_ROLES): two index lookups.
HAS_SECOND_FACTOR = or_(
    exists().where(
        col(TotpFactor.user_id) == bindparam("user_id"), col(TotpFactor.confirmed_at).is_not(None)
    ),
    exists().where(col(Passkey.user_id) == bindparam("user_id")),
).label("has_second_factor")
USER_COLUMNS: tuple[ColumnElement[Any], ...] = (
    *(
        inspect(User).columns[name]
        for name in ("id", "email", "is_verified", "created_at", "last_login_at")
    ),
    inspect(DeviceSession).columns["authenticated_at"],
    HAS_SECOND_FACTOR,
)
NO_USER = tuple(null() for _ in USER_COLUMNS)

# One row for the user, when the session is live, then one row per (role, permission) held.
# The user's columns come once, not on every grant row: decoding them was most of the read.
PRINCIPAL_QUERY = union_all(
    select(*USER_COLUMNS, null(), null())
    .select_from(DeviceSession)
    .join(User, col(User.id) == DeviceSession.user_id)
    .where(
        col(DeviceSession.id) == bindparam("session_id"),
        col(User.id) == bindparam("user_id"),
        col(DeviceSession.revoked_at).is_(None),
        col(DeviceSession.expires_at) > bindparam("now"),
        col(User.is_active).is_(True),
    ),
    grants_query(*NO_USER).where(col(UserRole.user_id) == bindparam("user_id")),
)


class _Connection(Protocol):
    async def fetch(self, sql: str, args: Sequence[Any]) -> Sequence[Sequence[Any]]: ...

    async def close(self) -> None: ...


class PrincipalReader:
    """Reads the principal of a live session with `PRINCIPAL_QUERY`, in one statement."""

    def __init__(self, engine: AsyncEngine) -> None:
        dialect = engine.dialect
        compiled = PRINCIPAL_QUERY.compile(dialect=dialect)
        self._sql = str(compiled)
        self._binds = [
            (name, compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect))
            for name in compiled.positiontup or ()
        ]
        self._results = [
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in USER_COLUMNS
        ]
        self._connection = _connect(engine)

    async def read(
        self, session_id: uuid.UUID, user_id: uuid.UUID, now: datetime
    ) -> Principal | None:
        """None when the session is revoked or expired, or the user inactive or gone."""
        params = {"session_id": session_id, "user_id": user_id, "now": now}
        rows = await self._connection.fetch(
            self._sql, [_apply(process, params[name]) for name, process in self._binds]
        )
        user_row = next((row for row in rows if row[0] is not None), None)
        if user_row is None:  # the session has ended: only grant rows came back
            return None
        user_id, email, is_verified, created_at, last_login_at, authenticated_at, has_factor = (
            _apply(process, value)
            for process, value in zip(self._results, user_row, strict=False)  # user columns
        )
        return Principal(
            id=user_id,
            session_id=session_id,
            email=email,
            is_verified=is_verified,
            created_at=created_at,
            last_login_at=last_login_at,
            authenticated_at=authenticated_at,
            has_second_factor=bool(has_factor),
            roles=tuple(sorted({row[-2] for row in rows if row[-2] is not None})),
            permissions=tuple(sorted({row[-1] for row in rows if row[-1] is not None})),
        )

    async def close(self) -> None:
        await self._connection.close()


def _apply(process: Callable[[Any], Any] | None, value: Any) -> Any:
    """A SQLAlchemy type processor, where the type has one (as the ORM would run it)."""
    return value if process is None else process(value)


def _connect(engine: AsyncEngine) -> _Connection:
    """The template generates SQLite (aiosqlite) or PostgreSQL (asyncpg) projects."""
    args, kwargs = engine.dialect.create_connect_args(engine.url)
    if engine.dialect.driver == "asyncpg":
        return _PostgresConnection(args, kwargs)
    return _SqliteConnection(engine, args, kwargs)


class _EngineConnection:
    """Through the engine's own pool: aiosqlite's thread, where waiting does no harm."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def fetch(self, sql: str, args: Sequence[Any]) -> Sequence[Sequence[Any]]:
        async with self.engine.connect() as connection:
            result = await connection.exec_driver_sql(sql, tuple(args))
            return result.all()


class _SqliteConnection:
    """A connection of our own, opened on first use and used only for this read."""

    def __init__(self, engine: AsyncEngine, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        self.args = args
        # Autocommit reads that never wait: a busy database goes to the fallback instead.
        self.kwargs = {**kwargs, "isolation_level": None, "check_same_thread": False, "timeout": 0}
        self.fallback = _EngineConnection(engine)
        self.connection: sqlite3.Connection | None = None

    async def fetch(self, sql: str, args: Sequence[Any]) -> Sequence[Sequence[Any]]:
        try:
            if self.connection is None:
                self.connection = sqlite3.connect(*self.args, **self.kwargs)
                self.connection.execute("PRAGMA query_only = ON")
            return self.connection.execute(sql, args).fetchall()
        except sqlite3.OperationalError:
            # Busy or locked (rare in WAL mode): wait in aiosqlite's thread, not on the loop.
            return await self.fallback.fetch(sql, args)

    async def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


class _PostgresConnection:
    """A few asyncpg connections of our own, opened on demand and reused last-in first-out.

    Not an asyncpg pool: its acquire and release (timers, proxies, a reset query) cost as much
    as the query itself. The read sets no session state, so there is nothing to reset.
    """

    def __init__(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        import asyncpg  # only installed in the PostgreSQL variant

        self.connect = partial(asyncpg.connect, *args, **kwargs)
        self.idle: list[Any] = []
        self.slots = asyncio.Semaphore(MAX_POSTGRES_CONNECTIONS)
        # What a connection the server dropped (a restart, a failover) raises on its next use.
        self.broken = (
            asyncpg.InterfaceError,
            asyncpg.InternalClientError,  # the server's goodbye arrived before our query
            asyncpg.PostgresConnectionError,
            asyncpg.exceptions.OperatorInterventionError,
            OSError,
        )

    async def fetch(self, sql: str, args: Sequence[Any]) -> Sequence[Sequence[Any]]:
        async with self.slots:
            connection = self.idle.pop() if self.idle else await self.connect()
            try:
                return await self._fetch_on(connection, sql, args)
            except self.broken:
                # The server dropped it (a restart, a failover), and likely the idle ones too.
                while self.idle:
                    self.idle.pop().terminate()
                return await self._fetch_on(await self.connect(), sql, args)

    async def _fetch_on(self, connection: Any, sql: str, args: Sequence[Any]) -> Sequence[Any]:
        try:
            rows = cast(Sequence[Any], await connection.fetch(sql, *args))
        except BaseException:
            connection.terminate()  # broken, or cancelled mid-query: never reused
            raise
        self.idle.append(connection)
        return rows

    async def close(self) -> None:
        while self.idle:
            await self.idle.pop().close()
