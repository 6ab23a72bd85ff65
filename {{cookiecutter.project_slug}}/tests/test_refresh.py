"""Refresh rotation, reuse detection, the grace window and the CSRF rule on cookies."""

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import event, text
from sqlmodel import select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.config import Settings
from app.models import AuditEvent, DeviceSession, User
from app.utils.cookies import CookieNames
from tests.helpers import TEST_DATABASE_URL, Clock, api_tokens, bearer, count_calls, refresh


async def test_refresh_rotates_the_pair(client: AsyncClient, alice: User) -> None:
    first = await api_tokens(client)
    response = await refresh(client, first["refresh_token"])
    assert response.status_code == 200
    second = response.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert (await refresh(client, second["refresh_token"])).status_code == 200


async def test_refresh_tokens_are_stored_only_as_hashes(
    client: AsyncClient, alice: User, db: AsyncSession
) -> None:
    tokens = await api_tokens(client)
    [session] = (await db.exec(select(DeviceSession))).all()
    stored = session.model_dump_json()
    assert tokens["refresh_token"] not in stored
    assert tokens["refresh_token"].split(".")[2] not in stored


async def test_concurrent_refreshes_get_the_same_successor(
    client: AsyncClient, alice: User
) -> None:
    tokens = await api_tokens(client)
    responses = await asyncio.gather(*(refresh(client, tokens["refresh_token"]) for _ in range(5)))
    assert [r.status_code for r in responses] == [200] * 5
    successors = {r.json()["refresh_token"] for r in responses}
    assert len(successors) == 1
    assert (await refresh(client, successors.pop())).status_code == 200


async def test_reusing_an_old_refresh_token_after_the_grace_window_revokes_the_session(
    client: AsyncClient, alice: User, db: AsyncSession, settings: Settings, clock: Clock
) -> None:
    tokens = await api_tokens(client)
    rotated = (await refresh(client, tokens["refresh_token"])).json()

    clock.advance(settings.refresh_grace_seconds + 1)
    reused = await refresh(client, tokens["refresh_token"])
    assert reused.status_code == 401
    assert reused.json()["code"] == "refresh_token_reused"

    # The replay also kills the legitimate successor and its access token.
    assert (await refresh(client, rotated["refresh_token"])).status_code == 401
    me = await client.get("/api/v1/users/me", headers=bearer(rotated["access_token"]))
    assert me.status_code == 401
    events = (await db.exec(select(AuditEvent.type))).all()
    assert "refresh_reuse_detected" in events


async def test_cookie_refresh_needs_the_csrf_header(
    signed_in: AsyncClient, cookie: CookieNames
) -> None:
    csrf = signed_in.headers.pop("X-CSRF-Token")
    refused = await signed_in.post("/api/v1/auth/refresh")
    assert refused.status_code == 403
    assert refused.json()["code"] == "csrf_failed"

    accepted = await signed_in.post("/api/v1/auth/refresh", headers={"X-CSRF-Token": csrf})
    assert accepted.status_code == 200
    assert set(accepted.json()) == {"csrf_token"}
    names = {c.split("=", 1)[0] for c in accepted.headers.get_list("set-cookie")}
    assert names == set(cookie.all())


async def test_refresh_without_any_token_is_a_401(client: AsyncClient) -> None:
    response = await client.post("/api/v1/auth/refresh")
    assert response.status_code == 401


async def test_a_refresh_is_one_statement_beside_the_orm(
    app: FastAPI, client: AsyncClient, alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The current token rotates in one committed statement (app/db/session_statements.py): no ORM
    transaction, so no BEGIN and COMMIT round trips and, on SQLite, no write lock held
    across a wait for the event loop."""
    tokens = await api_tokens(client)
    await app.state.context.mailer.wait_idle()  # the sign-in's new-device notice
    statements = count_calls(monkeypatch, app.state.session_statements._connection, "fetch")
    orm: list[str] = []
    engine = app.state.engine.sync_engine
    listener = lambda *args: orm.append(args[2])  # noqa: E731 - (conn, cursor, statement, ...)
    event.listen(engine, "before_cursor_execute", listener)
    try:
        assert (await refresh(client, tokens["refresh_token"])).status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert len(statements) == 1
    assert [sql for sql in orm if "session" in sql] == []


@pytest.mark.parametrize(
    "end",
    [
        # Deactivation also revokes the sessions; here the user is judged on its own.
        pytest.param(update(User).values(is_active=False), id="user-deactivated"),
        pytest.param(
            update(DeviceSession).values(revoked_at=DeviceSession.created_at), id="session-revoked"
        ),
    ],
)
async def test_a_live_looking_token_of_an_ended_session_is_refused(
    client: AsyncClient, alice: User, db: AsyncSession, end: Any
) -> None:
    tokens = await api_tokens(client)
    await db.exec(end)
    await db.commit()
    response = await refresh(client, tokens["refresh_token"])
    assert response.status_code == 401
    assert response.json()["code"] == "session_revoked"


async def test_a_burst_of_refreshes_on_many_sessions_all_rotate(
    client: AsyncClient, alice: User, db: AsyncSession
) -> None:
    """Writers on every session at once: none waits long enough to fail, none is lost."""
    pool = [(await api_tokens(client))["refresh_token"] for _ in range(16)]
    for _ in range(3):
        responses = await asyncio.gather(*(refresh(client, token) for token in pool))
        assert [r.status_code for r in responses] == [200] * len(pool)
        pool = [r.json()["refresh_token"] for r in responses]
    generations = (await db.exec(select(DeviceSession.refresh_generation))).all()
    assert sorted(generations) == [3] * len(pool)


async def test_a_refresh_outlives_what_befalls_its_write_connection(
    app: FastAPI, client: AsyncClient, alice: User, db: AsyncSession
) -> None:
    """SQLite: another process's write transaction holds the file's lock for a while; the
    refresh waits for it without blocking the event loop. PostgreSQL: the server drops every
    connection, as in a restart or failover. Either way the refresh rotates, and so does the
    next one."""
    first = await refresh(client, (await api_tokens(client))["refresh_token"])
    tokens = first.json()  # the write connection is open now
    await app.state.context.mailer.wait_idle()  # the sign-in's notice, which writes too
    if TEST_DATABASE_URL.startswith("sqlite"):
        other = sqlite3.connect(Path(TEST_DATABASE_URL.split("///", 1)[1]), isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        pending = asyncio.create_task(refresh(client, tokens["refresh_token"]))
        await asyncio.sleep(0.2)
        assert not pending.done()  # still waiting for the lock, and the loop still runs
        other.execute("COMMIT")
        other.close()
        response = await asyncio.wait_for(pending, timeout=5)
        assert time.monotonic() - started >= 0.2
    else:
        await (await db.connection()).execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
        await db.commit()
        response = await refresh(client, tokens["refresh_token"])
    assert response.status_code == 200
    assert (await refresh(client, response.json()["refresh_token"])).status_code == 200
