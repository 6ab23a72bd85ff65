"""Raw driver connections for the statements on the hot paths, kept off the ORM.

The read behind every authenticated request (`principals.py`) and the write behind every
refresh (`session_statements.py`) are one statement each. Through the ORM, the session, the pool's
checkout and reset, and the transaction's BEGIN and COMMIT cost several times the statement;
here each is one call on a connection of their own (benchmarks/README.md has the figures):

* reads on SQLite: a connection used right on the event loop. The read is quicker than a hop to
  aiosqlite's thread, and in WAL mode readers never wait for writers;
* writes on SQLite: one aiosqlite connection in autocommit mode, so the write lock is held for
  the statement only, never across a wait for the event loop; this worker's writes queue on its
  thread instead of sleeping in SQLite's busy handler;
* PostgreSQL: a few asyncpg connections of their own, in autocommit mode (a statement is its own
  transaction), with no pre-ping (a connection the server dropped is replaced and the statement
  tried once more).

`Statement` compiles a SQLAlchemy statement once and runs values through the column types' own
processors, so they match the ORM's.
"""

import asyncio
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, Protocol, cast

from sqlalchemy import ColumnElement
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement

# Per worker, besides the engine's pool. A read is one quick round trip; a write also waits
# for its commit to reach the disk, and commits in flight together are flushed together.
POSTGRES_READERS = 5
POSTGRES_WRITERS = 8
# A SQLite writer that finds the lock taken tries again after this pause, doubled each time.
SQLITE_FIRST_PAUSE = 0.0005
SQLITE_LONGEST_PAUSE = 0.005


class DriverConnection(Protocol):
    async def fetch(self, sql: str, args: Sequence[Any]) -> Sequence[Sequence[Any]]: ...

    async def close(self) -> None: ...


class Statement:
    """A statement compiled once for a dialect, with its parameters' and columns' processors."""

    def __init__(
        self, statement: ClauseElement, dialect: Dialect, columns: Sequence[ColumnElement[Any]]
    ) -> None:
        compiled = cast(SQLCompiler, statement.compile(dialect=dialect))
        self.sql = str(compiled)
        # (name, processor, value): the value of a literal in the statement, else None
        self._binds = [
            (
                name,
                compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect),
                compiled.binds[name].value,
            )
            for name in compiled.positiontup or ()
        ]
        self._results = [
            column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns
        ]

    def args(self, values: Mapping[str, Any]) -> list[Any]:
        """The driver's positional parameters for these named values (and the literals')."""
        return [
            _apply(process, values.get(name, literal)) for name, process, literal in self._binds
        ]

    def row(self, row: Sequence[Any]) -> tuple[Any, ...]:
        """A row's leading columns (those given at compile time), as the ORM would read them."""
        return tuple(
            _apply(process, value) for process, value in zip(self._results, row, strict=False)
        )


def _apply(process: Callable[[Any], Any] | None, value: Any) -> Any:
    """A SQLAlchemy type processor, where the type has one (as the ORM would run it)."""
    return value if process is None else process(value)


def reader(engine: AsyncEngine) -> DriverConnection:
    """Connections for reads. The template generates SQLite (aiosqlite) or PostgreSQL
    (asyncpg) projects."""
    args, kwargs = engine.dialect.create_connect_args(engine.url)
    if engine.dialect.driver == "asyncpg":
        return _PostgresConnection(args, kwargs, POSTGRES_READERS)
    return _SqliteReader(engine, args, kwargs)


def writer(engine: AsyncEngine) -> DriverConnection:
    """Connections for single-statement writes, each committed as it runs."""
    args, kwargs = engine.dialect.create_connect_args(engine.url)
    if engine.dialect.driver == "asyncpg":
        return _PostgresConnection(args, kwargs, POSTGRES_WRITERS)
    return _SqliteWriter(args, kwargs)


class _EngineConnection:
    """Through the engine's own pool: aiosqlite's thread, where waiting does no harm."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def fetch(self, sql: str, args: Sequence[Any]) -> Sequence[Sequence[Any]]:
        async with self.engine.connect() as connection:
            result = await connection.exec_driver_sql(sql, tuple(args))
            return result.all()


class _SqliteReader:
    """A connection of our own, opened on first use and used only for reads."""

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


class _SqliteWriter:
    """One aiosqlite connection of our own in autocommit mode, opened on first use.

    A statement and its commit run in one call on the connection's thread: the write lock is
    never held while the event loop is busy elsewhere. When another connection holds the lock
    (another worker process, or an ORM transaction), the statement is tried again after a short
    sleep on the event loop, for up to the engine's busy timeout. SQLite's own busy handler
    sleeps longer and longer (up to 100 ms a turn) while the lock changes hands for
    microseconds at a time, which made the slowest refreshes wait for hundreds of milliseconds.
    """

    def __init__(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        import aiosqlite  # only installed in the SQLite variant

        self.busy_timeout = float(kwargs.get("timeout", 5.0))
        self.connect = partial(
            aiosqlite.connect, *args, **{**kwargs, "isolation_level": None, "timeout": 0}
        )
        self.connection: Any = None
        self.opening = asyncio.Lock()

    async def fetch(self, sql: str, args: Sequence[Any]) -> Sequence[Sequence[Any]]:
        connection = self.connection or await self._open()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.busy_timeout
        pause = SQLITE_FIRST_PAUSE
        while True:
            try:
                return cast(Sequence[Any], await connection.execute_fetchall(sql, args))
            except sqlite3.OperationalError as error:
                # Busy: nothing was written, so the statement can simply run again.
                if error.sqlite_errorcode != sqlite3.SQLITE_BUSY or loop.time() > deadline:
                    raise
            await asyncio.sleep(pause)
            pause = min(2 * pause, SQLITE_LONGEST_PAUSE)

    async def _open(self) -> Any:
        async with self.opening:
            if self.connection is None:
                connection = await self.connect()
                # The engine's connections set these too (app/db/session.py).
                await connection.execute("PRAGMA foreign_keys=ON")
                await connection.execute("PRAGMA synchronous=NORMAL")
                self.connection = connection
        return self.connection

    async def close(self) -> None:
        if self.connection is not None:
            await self.connection.close()
            self.connection = None


class _PostgresConnection:
    """A few asyncpg connections of our own, opened on demand and reused last-in first-out.

    Not an asyncpg pool: its acquire and release (timers, proxies, a reset query) cost as much
    as the query itself. The statements set no session state, so there is nothing to reset.
    """

    def __init__(self, args: Sequence[Any], kwargs: Mapping[str, Any], size: int) -> None:
        import asyncpg  # only installed in the PostgreSQL variant

        self.connect = partial(asyncpg.connect, *args, **kwargs)
        self.idle: list[Any] = []
        self.slots = asyncio.Semaphore(size)
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
                # Running the statement again is safe: a read, or a compare-and-swap that
                # finds itself done.
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
