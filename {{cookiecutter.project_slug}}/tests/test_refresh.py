"""Refresh rotation, reuse detection, the grace window and the CSRF rule on cookies."""

import asyncio

import pytest
from sqlmodel import select

from app.models import AuditEvent, DeviceSession
from tests.conftest import PASSWORD, make_settings


async def api_tokens(client) -> dict:
    response = await client.post(
        "/api/v1/auth/token", data={"username": "alice@example.com", "password": PASSWORD}
    )
    return response.json()


async def refresh(client, token: str):
    return await client.post("/api/v1/auth/refresh", json={"refresh_token": token})


async def test_refresh_rotates_the_pair(client, alice):
    first = await api_tokens(client)
    response = await refresh(client, first["refresh_token"])
    assert response.status_code == 200
    second = response.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert (await refresh(client, second["refresh_token"])).status_code == 200


async def test_refresh_tokens_are_stored_only_as_hashes(client, alice, db):
    tokens = await api_tokens(client)
    [session] = (await db.exec(select(DeviceSession))).all()
    stored = session.model_dump_json()
    assert tokens["refresh_token"] not in stored
    assert tokens["refresh_token"].split(".")[2] not in stored


async def test_concurrent_refreshes_get_the_same_successor(client, alice):
    tokens = await api_tokens(client)
    responses = await asyncio.gather(*(refresh(client, tokens["refresh_token"]) for _ in range(5)))
    assert [r.status_code for r in responses] == [200] * 5
    successors = {r.json()["refresh_token"] for r in responses}
    assert len(successors) == 1
    assert (await refresh(client, successors.pop())).status_code == 200


class TestWithoutGraceWindow:
    @pytest.fixture
    def settings(self):
        return make_settings(refresh_grace_seconds=0)

    async def test_reusing_an_old_refresh_token_revokes_the_session(self, client, alice, db):
        tokens = await api_tokens(client)
        rotated = (await refresh(client, tokens["refresh_token"])).json()

        await asyncio.sleep(0.01)  # outside the (zero) grace window
        reused = await refresh(client, tokens["refresh_token"])
        assert reused.status_code == 401
        assert "revoked" in reused.json()["detail"]

        # The replay also kills the legitimate successor and its access token.
        assert (await refresh(client, rotated["refresh_token"])).status_code == 401
        headers = {"Authorization": f"Bearer {rotated['access_token']}"}
        assert (await client.get("/api/v1/users/me", headers=headers)).status_code == 401
        events = (await db.exec(select(AuditEvent.type))).all()
        assert "refresh_reuse_detected" in events


async def test_cookie_refresh_needs_the_csrf_header(signed_in, cookie):
    csrf = signed_in.headers.pop("X-CSRF-Token")
    refused = await signed_in.post("/api/v1/auth/refresh")
    assert refused.status_code == 403
    assert "X-CSRF-Token" in refused.json()["detail"]

    accepted = await signed_in.post("/api/v1/auth/refresh", headers={"X-CSRF-Token": csrf})
    assert accepted.status_code == 200
    assert set(accepted.json()) == {"csrf_token"}
    names = {c.split("=", 1)[0] for c in accepted.headers.get_list("set-cookie")}
    assert names == set(cookie.all())


async def test_refresh_without_any_token_is_a_401(client):
    response = await client.post("/api/v1/auth/refresh")
    assert response.status_code == 401
