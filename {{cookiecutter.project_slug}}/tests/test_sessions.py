"""Device sessions: list, revoke one, revoke all; never another user's."""

import uuid
from contextlib import AbstractAsyncContextManager
from datetime import timedelta

from fastapi import FastAPI
from httpx import AsyncClient
from pydantic import TypeAdapter
from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from app.models import DeviceSession, User
from app.models.base import utcnow
from app.schemas.auth import SessionRead
from tests.helpers import Outbox, api_tokens, bearer, browser, create_user, login, refresh

CHROME_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)


def second_device(
    app: FastAPI, email: str = "alice@example.com"
) -> AbstractAsyncContextManager[AsyncClient]:
    """The same account signed in from a Mac, from another address."""
    return browser(app, email, user_agent=CHROME_MAC, ip="198.51.100.7")


async def test_sessions_list_devices_and_mark_the_current_one(
    app: FastAPI, signed_in: AsyncClient
) -> None:
    async with second_device(app):
        response = await signed_in.get("/api/v1/auth/sessions")
    assert response.status_code == 200
    sessions = {s["device"]: s for s in response.json()}
    assert set(sessions) == {"Firefox on Linux", "Chrome on Mac OS X"}
    assert sessions["Firefox on Linux"]["current"] is True
    assert sessions["Chrome on Mac OS X"]["current"] is False
    assert sessions["Chrome on Mac OS X"]["ip_address"] == "198.51.100.7"


async def test_the_list_the_database_renders_matches_the_rows(
    app: FastAPI, signed_in: AsyncClient, db: AsyncSession
) -> None:
    """The JSON comes from SQL (app/db/session_statements.py): every value, its type and the
    order match the rows, in the documented shape; ended sessions are left out."""
    for _ in range(3):
        await api_tokens(signed_in)
    rows = (await db.exec(select(DeviceSession).order_by(col(DeviceSession.created_at)))).all()
    ended, expired = rows[1], rows[2]
    await db.exec(
        update(DeviceSession).where(col(DeviceSession.id) == ended.id).values(revoked_at=utcnow())
    )
    await db.exec(
        update(DeviceSession)
        .where(col(DeviceSession.id) == expired.id)
        .values(expires_at=utcnow() - timedelta(seconds=1))
    )
    hostile = 'quote " backslash \\ newline \n tab \t NUL-free ünïcode </script>'
    await db.exec(
        update(DeviceSession)
        .where(col(DeviceSession.id) == rows[3].id)
        .values(device_label=hostile)
    )
    await db.commit()

    response = await signed_in.get("/api/v1/auth/sessions")
    assert response.headers["content-type"] == "application/json"
    listed = TypeAdapter(list[SessionRead]).validate_json(response.content)
    live = sorted(
        (
            row
            for row in (await db.exec(select(DeviceSession))).all()
            if row.id not in {ended.id, expired.id}
        ),
        key=lambda row: row.last_seen_at,
        reverse=True,
    )
    assert [s.id for s in listed] == [row.id for row in live]
    for item, row in zip(listed, live, strict=True):
        assert item.device == row.device_label
        assert item.ip_address == row.last_ip_address
        assert item.created_at == row.created_at
        assert item.last_seen_at == row.last_seen_at
    assert hostile in {s.device for s in listed}
    assert [s.current for s in listed].count(True) == 1
    assert all(isinstance(raw["current"], bool) for raw in response.json())


async def test_revoking_one_session_signs_that_device_out(
    app: FastAPI, signed_in: AsyncClient
) -> None:
    async with second_device(app) as phone:
        listed = (await signed_in.get("/api/v1/auth/sessions")).json()
        other = next(s for s in listed if not s["current"])
        response = await signed_in.delete(f"/api/v1/auth/sessions/{other['id']}")
        assert response.status_code == 204
        assert (await phone.get("/api/v1/users/me")).status_code == 401
    assert (await signed_in.get("/api/v1/users/me")).status_code == 200


async def test_another_users_session_is_a_404(app: FastAPI, signed_in: AsyncClient) -> None:
    await create_user(app, "bob@example.com")
    async with second_device(app, "bob@example.com") as bob:
        bobs = (await bob.get("/api/v1/auth/sessions")).json()
        response = await signed_in.delete(f"/api/v1/auth/sessions/{bobs[0]['id']}")
        assert response.status_code == 404
        assert (await bob.get("/api/v1/users/me")).status_code == 200
    unknown = await signed_in.delete(f"/api/v1/auth/sessions/{uuid.uuid4()}")
    assert unknown.status_code == 404


async def test_logout_all_ends_every_session(app: FastAPI, signed_in: AsyncClient) -> None:
    async with second_device(app) as phone:
        response = await signed_in.post("/api/v1/auth/logout-all")
        assert response.status_code == 204
        assert (await phone.get("/api/v1/users/me")).status_code == 401
    assert (await signed_in.get("/api/v1/users/me")).status_code == 401


async def test_new_device_sign_in_sends_a_notice(
    app: FastAPI, client: AsyncClient, alice: User, outbox: Outbox
) -> None:
    await login(client)
    await login(client)  # same browser: no second notice
    async with second_device(app):
        pass
    await app.state.context.mailer.wait_idle()
    notices = outbox.to("alice@example.com", "New sign-in")
    assert len(notices) == 2
    assert "Chrome on Mac OS X (198.51.100.7)" in notices[1].text


async def test_refresh_from_another_device_revokes_the_session(
    app: FastAPI, client: AsyncClient, alice: User
) -> None:
    tokens = await api_tokens(client)
    stolen = await refresh(client, tokens["refresh_token"], **{"User-Agent": CHROME_MAC})
    assert stolen.status_code == 401
    assert stolen.json()["code"] == "device_mismatch"
    me = await client.get("/api/v1/users/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 401
