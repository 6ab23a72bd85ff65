"""Refresh rotation, reuse detection, the grace window and the CSRF rule on cookies."""

import asyncio

from httpx import AsyncClient
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.config import Settings
from app.models import AuditEvent, DeviceSession, User
from app.utils.cookies import CookieNames
from tests.helpers import Clock, api_tokens, bearer, refresh


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
