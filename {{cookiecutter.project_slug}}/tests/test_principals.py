"""The read behind every authenticated request (app/db/principals.py), off the ORM."""

import asyncio
import sqlite3

from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import text
from sqlmodel import col, delete, update
from sqlmodel.ext.asyncio.session import AsyncSession

from app.models import User, UserRole
from tests.helpers import TEST_DATABASE_URL, find_user

ON_SQLITE = TEST_DATABASE_URL.startswith("sqlite")


async def test_me_matches_the_account_row(signed_in: AsyncClient, db: AsyncSession) -> None:
    """Values read on the raw driver connection equal what the ORM reads."""
    user = await find_user(db, "alice@example.com")
    assert user is not None and user.last_login_at is not None
    me = (await signed_in.get("/api/v1/users/me")).json()
    assert me == {
        "id": str(user.id),
        "email": "alice@example.com",
        "is_active": True,
        "is_verified": True,
        "roles": ["user"],
        "permissions": [],
        "created_at": user.created_at.isoformat().replace("+00:00", "Z"),
        "last_login_at": user.last_login_at.isoformat().replace("+00:00", "Z"),
    }


async def test_a_user_holding_no_role_is_signed_in_with_no_grants(
    signed_in: AsyncClient, db: AsyncSession
) -> None:
    """The user's row and the grant rows come from two halves of one statement."""
    user = await find_user(db, "alice@example.com")
    assert user is not None
    await db.exec(delete(UserRole).where(col(UserRole.user_id) == user.id))
    await db.commit()
    me = (await signed_in.get("/api/v1/users/me")).json()
    assert (me["email"], me["roles"], me["permissions"]) == ("alice@example.com", [], [])


async def test_an_open_write_transaction_neither_blocks_nor_leaks_into_the_read(
    app: FastAPI, signed_in: AsyncClient
) -> None:
    """On SQLite the read runs right on the event loop: only safe because it never waits."""
    async with app.state.engine.connect() as writer:
        await writer.execute(update(User).values(email="mallory@example.com"))
        response = await asyncio.wait_for(signed_in.get("/api/v1/users/me"), timeout=2)
        await writer.rollback()
    assert response.status_code == 200
    assert response.json()["email"] == "alice@example.com"


class BusyConnection:
    """Answers like a SQLite connection that finds the database busy."""

    def execute(self, *_args: object) -> None:
        raise sqlite3.OperationalError("database is locked")

    def close(self) -> None:
        pass


async def test_a_failing_read_connection_costs_no_failed_request(
    app: FastAPI, signed_in: AsyncClient, db: AsyncSession
) -> None:
    """PostgreSQL: the server drops every connection, as in a restart; the pool replaces them.
    SQLite: a busy database (which needs an exclusive-mode or recovering database, something
    a test cannot arrange beside open connections) sends the read to aiosqlite's thread."""
    warm_up = [signed_in.get("/api/v1/users/me") for _ in range(5)]  # several connections
    assert {r.status_code for r in await asyncio.gather(*warm_up)} == {200}
    if ON_SQLITE:
        app.state.principals._connection.connection = BusyConnection()
    else:
        await (await db.connection()).execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
    for _ in range(3):
        response = await signed_in.get("/api/v1/users/me")
        assert response.status_code == 200
        assert response.json()["email"] == "alice@example.com"
    await signed_in.post("/api/v1/auth/logout")
    assert (await signed_in.get("/api/v1/users/me")).status_code == 401
