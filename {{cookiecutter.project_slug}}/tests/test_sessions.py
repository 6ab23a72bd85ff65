"""Device sessions: list, revoke one, revoke all; never another user's."""

import uuid
from contextlib import AbstractAsyncContextManager

from fastapi import FastAPI
from httpx import AsyncClient

from app.models import User
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
