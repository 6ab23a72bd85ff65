"""Login limits per IP and per account, checked before any password hashing."""

import asyncio

import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from httpx import AsyncClient, Response
from limits.aio.storage import MemoryStorage

from app.core.config import Settings
from app.core.rate_limit import RateLimiter
from app.models import User
from tests.helpers import PASSWORD, count_calls, login, make_settings


async def attempt(
    client: AsyncClient, email: str = "alice@example.com", password: str = "wrong password here"
) -> Response:
    return await client.post("/api/v1/auth/login", json={"email": email, "password": password})


class TestPerAccount:
    @pytest.fixture
    def settings(self) -> Settings:
        return make_settings(rate_limit_login_account="3 per 15 minutes")

    async def test_failures_lock_the_account_with_retry_after(
        self, client: AsyncClient, alice: User
    ) -> None:
        for _ in range(3):
            assert (await attempt(client)).status_code == 401
        limited = await attempt(client, password=PASSWORD)
        assert limited.status_code == 429
        assert 0 < int(limited.headers["retry-after"]) <= 15 * 60

    async def test_identifiers_are_normalised(self, client: AsyncClient, alice: User) -> None:
        for email in ("alice@example.com", "ALICE@example.com", " Alice@Example.com"):
            await attempt(client, email=email)
        assert (await attempt(client)).status_code == 429

    async def test_success_resets_the_failure_count(self, client: AsyncClient, alice: User) -> None:
        for _ in range(2):
            await attempt(client)
        await login(client)
        for _ in range(2):
            assert (await attempt(client)).status_code == 401

    async def test_limited_requests_skip_password_hashing(
        self, client: AsyncClient, alice: User, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        for _ in range(3):
            await attempt(client)
        calls = count_calls(monkeypatch, PasswordHasher, "verify")
        assert (await attempt(client)).status_code == 429
        assert calls == []


class TestPerIp:
    @pytest.fixture
    def settings(self) -> Settings:
        return make_settings(rate_limit_login_ip="4/minute")

    async def test_one_address_is_limited_across_accounts(self, client: AsyncClient) -> None:
        for n in range(4):
            assert (await attempt(client, email=f"user{n}@example.com")).status_code == 401
        assert (await attempt(client, email="other@example.com")).status_code == 429

    async def test_the_token_endpoint_shares_the_login_limits(self, client: AsyncClient) -> None:
        for n in range(4):
            await attempt(client, email=f"user{n}@example.com")
        response = await client.post(
            "/api/v1/auth/token", data={"username": "x@example.com", "password": PASSWORD}
        )
        assert response.status_code == 429
        assert "retry-after" in response.headers

    async def test_forwarded_for_is_ignored_from_untrusted_peers(self, client: AsyncClient) -> None:
        for n in range(4):
            await attempt(client, email=f"user{n}@example.com")
        spoofed = await client.post(
            "/api/v1/auth/login",
            json={"email": "x@example.com", "password": PASSWORD},
            headers={"X-Forwarded-For": "203.0.113.9"},
        )
        assert spoofed.status_code == 429


class TestBehindTrustedProxy:
    @pytest.fixture
    def settings(self) -> Settings:
        # httpx's ASGI transport reports the peer as 127.0.0.1
        return make_settings(rate_limit_login_ip="2/minute", trusted_proxies=["127.0.0.1/32"])

    async def test_each_forwarded_client_has_its_own_counter(self, client: AsyncClient) -> None:
        async def from_ip(ip: str) -> Response:
            return await client.post(
                "/api/v1/auth/login",
                json={"email": "x@example.com", "password": PASSWORD},
                headers={"X-Forwarded-For": ip},
            )

        assert [(await from_ip("203.0.113.1")).status_code for _ in range(3)] == [401, 401, 429]
        assert (await from_ip("203.0.113.2")).status_code == 401


async def test_resets_during_the_memory_expiry_sweep_break_nothing(app: FastAPI) -> None:
    """Successes reset keys while the sweep walks them: the sweep must not die on a KeyError.

    The memory counters are what every variant uses while Redis is unset or down."""
    limiter = RateLimiter(secret="memory-only limiter of this test")
    limit = app.state.context.limits.login_account
    emails = [f"user{n}@example.com" for n in range(20)]
    for email in emails:
        await limiter.hit(limit, email)
    storage = limiter._memory.storage
    assert isinstance(storage, MemoryStorage)
    sweep = storage.timer  # the hits scheduled the storage's expiry sweep
    assert sweep is not None
    await asyncio.sleep(0)  # let it start: it is now waiting between two keys
    for email in emails:
        await limiter.reset(limit, email)
    await sweep
    await limiter.hit(limit, emails[0])  # reset keys count again from zero
