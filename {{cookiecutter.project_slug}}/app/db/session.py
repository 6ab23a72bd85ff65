"""The async engine, the per-request database session, and exclusive transactions."""

import contextlib
import os

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.config import Settings


def create_engine(settings: Settings) -> AsyncEngine:
    if settings.is_sqlite:
        create_private_sqlite_file(settings.database_url)
        engine = create_async_engine(settings.database_url, connect_args={"timeout": 30})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    # pre-ping: a restarted database costs one failed checkout, not a restart of the service
    return create_async_engine(settings.database_url, pool_pre_ping=True, pool_size=10)


def create_private_sqlite_file(database_url: str) -> None:
    """Create the database file readable by this user only, before SQLite opens it.

    It holds password hashes and session state; SQLite would create it (and its -wal and
    -shm files, which copy the main file's mode) with the umask's permissions, usually
    world-readable. An existing file is tightened too, when this user owns it.
    """
    url = make_url(database_url)
    path = url.database
    if (
        url.get_backend_name() != "sqlite"
        or not path
        or path == ":memory:"
        or path.startswith("file:")
    ):
        return
    # Never open an existing file: closing any descriptor of a SQLite file drops every lock
    # this process holds on it (POSIX advisory locks), corrupting live connections.
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    with contextlib.suppress(OSError):  # someone else's file: leave its mode alone
        if os.stat(path).st_mode & 0o077:
            os.chmod(path, 0o600)


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


async def begin_exclusive(db: AsyncSession) -> None:
    """Make this session's transaction the only writer now, before it reads what it checks.

    Check-then-act guards (the last admin, what a caller holds) must not see a state that a
    concurrent transaction is about to change. On SQLite this is `BEGIN IMMEDIATE`: the write
    lock is taken before the checks, and concurrent callers wait (up to the busy timeout) instead
    of all reading the same old state. Only callers that need it pay for it: the driver's default
    elsewhere starts a transaction at the first write, so a login never holds the write lock
    while it hashes a password. On PostgreSQL this does nothing; callers lock the rows their
    checks read with `with_for_update()`.
    """
    connection = await db.connection()
    if connection.dialect.name != "sqlite":
        return
    raw = await connection.get_raw_connection()
    # A transaction the driver already opened began with a write: it holds the lock.
    if not raw.driver_connection.in_transaction:  # type: ignore[union-attr]
        await connection.exec_driver_sql("BEGIN IMMEDIATE")
