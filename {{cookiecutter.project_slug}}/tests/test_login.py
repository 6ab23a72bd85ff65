import json
import os
import threading
from typing import Any

import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from httpx import AsyncClient
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.security import PasswordHasher as ServiceHasher
from app.models import User
from app.utils.cookies import CookieNames
from tests.helpers import PASSWORD, bearer, count_calls, create_user, login, make_settings


async def test_login_sets_hardened_cookies_and_returns_the_user(
    client: AsyncClient, alice: User, cookie: CookieNames
) -> None:
    response = await login(client)
    body = response.json()
    assert body["user"]["email"] == "alice@example.com"
    assert body["user"]["roles"] == ["user"]
    assert body["csrf_token"]

    cookies = {c.split("=", 1)[0]: c for c in response.headers.get_list("set-cookie")}
    access, refresh, csrf = (cookies[name] for name in cookie.all())
    for header in (access, refresh, csrf):
        assert "Secure" in header
        assert "SameSite=lax" in header
    assert "HttpOnly" in access and "Path=/;" in access
    assert "HttpOnly" in refresh and "Path=/api/v1/auth" in refresh
    assert "HttpOnly" not in csrf
    assert f"{cookie.csrf}={body['csrf_token']}" in csrf


async def test_cookie_session_reaches_users_me(signed_in: AsyncClient) -> None:
    response = await signed_in.get("/api/v1/users/me")
    assert response.status_code == 200
    me = response.json()
    assert me["email"] == "alice@example.com"
    assert me["is_verified"] is True
    assert me["permissions"] == []


async def test_wrong_password_and_unknown_email_look_the_same(
    client: AsyncClient, alice: User
) -> None:
    wrong = await client.post(
        "/api/v1/auth/login", json={"email": "alice@example.com", "password": "nope" * 5}
    )
    unknown = await client.post(
        "/api/v1/auth/login", json={"email": "bob@example.com", "password": PASSWORD}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert wrong.json()["code"] == "invalid_credentials"


async def test_unknown_email_still_runs_one_password_verification(
    client: AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No timing oracle: counted, not timed."""
    calls = count_calls(monkeypatch, PasswordHasher, "verify")
    await client.post("/api/v1/auth/login", json={"email": "ghost@example.com", "password": "x"})
    assert len(calls) == 1


async def test_inactive_account_is_refused_only_after_the_right_password(
    client: AsyncClient, app: FastAPI
) -> None:
    await create_user(app, "off@example.com", is_active=False)
    wrong = await client.post(
        "/api/v1/auth/login", json={"email": "off@example.com", "password": "bad" * 6}
    )
    right = await client.post(
        "/api/v1/auth/login", json={"email": "off@example.com", "password": PASSWORD}
    )
    assert wrong.status_code == 401
    assert right.status_code == 403


async def test_login_accepts_json_only(client: AsyncClient, alice: User) -> None:
    """Login CSRF: a foreign page can post a form or text/plain, never JSON."""
    form = await client.post(
        "/api/v1/auth/login", data={"email": "alice@example.com", "password": PASSWORD}
    )
    text = await client.post(
        "/api/v1/auth/login",
        content=json.dumps({"email": "alice@example.com", "password": PASSWORD}),
        headers={"Content-Type": "text/plain"},
    )
    assert form.status_code == text.status_code == 415
    assert form.json()["code"] == text.json()["code"] == "unsupported_media_type"


async def test_email_is_normalised_for_login(client: AsyncClient, alice: User) -> None:
    response = await client.post(
        "/api/v1/auth/login", json={"email": "  ALICE@Example.com ", "password": PASSWORD}
    )
    assert response.status_code == 200


async def test_token_endpoint_serves_api_clients_with_bearer_tokens(
    client: AsyncClient, alice: User
) -> None:
    response = await client.post(
        "/api/v1/auth/token", data={"username": "alice@example.com", "password": PASSWORD}
    )
    assert response.status_code == 200
    tokens = response.json()
    assert tokens["token_type"] == "bearer"
    assert "set-cookie" not in response.headers
    client.cookies.clear()
    me = await client.get("/api/v1/users/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 200


async def test_users_me_needs_authentication(client: AsyncClient) -> None:
    response = await client.get("/api/v1/users/me")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


async def test_login_rehashes_when_argon2_parameters_change(
    app: FastAPI, client: AsyncClient, alice: User, db: AsyncSession
) -> None:
    # As if ARGON2_TIME_COST changed between deployments.
    app.state.context.hasher._argon2 = PasswordHasher(time_cost=2, memory_cost=1024, parallelism=1)
    await login(client)
    user = await db.get(User, alice.id)
    assert user is not None
    assert "t=2" in user.password_hash


async def test_password_hashing_runs_off_the_event_loop(
    client: AsyncClient, alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop_thread = threading.get_ident()
    threads = []
    original = PasswordHasher.verify

    def recording(*args: Any) -> bool:
        threads.append(threading.get_ident())
        return original(*args)

    monkeypatch.setattr(PasswordHasher, "verify", recording)
    await login(client)
    assert threads and loop_thread not in threads


@pytest.mark.parametrize(("workers", "threads"), [(1, 4), (2, 2), (4, 1), (8, 1)])
def test_worker_processes_share_the_hashing_cores(
    monkeypatch: pytest.MonkeyPatch, workers: int, threads: int
) -> None:
    """On 4 cores, N workers together never run more hashes at once than there are cores."""
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    hasher = ServiceHasher(make_settings(web_concurrency=workers))
    assert hasher.concurrency == threads
    hasher.close()
