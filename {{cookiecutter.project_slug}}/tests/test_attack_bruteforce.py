"""Password guessing as an attacker does it: bursts of guesses at once, each from its own address.

The per-account limit is only worth its number if a concurrent burst cannot outrun it, so
these tests count the password verifications a burst gets, not the requests it sends.
"""

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable

import pytest
from argon2 import PasswordHasher, extract_parameters
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient, Response

from app.core.config import RATE_LIMITER, Settings
from app.core.rate_limit import memory_counters_warning
from app.core.security import PasswordHasher as ServiceHasher
from app.main import create_app
from app.models import User
from app.services.context import ClientInfo
from tests.helpers import (
    BROWSER,
    PASSWORD,
    TEST_REDIS_URL,
    Calls,
    count_calls,
    create_user,
    make_settings,
)

LIMIT = 10
BURST = 120
WRONG = "not the password, just a guess"

Send = Callable[[AsyncClient], Awaitable[Response]]


def from_address(app: FastAPI, ip: str) -> AsyncClient:
    """A client whose requests reach the app from `ip` (the peer address, no proxy)."""
    return AsyncClient(
        transport=ASGITransport(app=app, client=(ip, 4000)),
        base_url="https://testserver",
        headers={"User-Agent": BROWSER},
    )


def address(n: int) -> str:
    return f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"


async def burst(app: FastAPI, send: Send, size: int = BURST) -> list[Response]:
    """`size` requests at once, each from an address of its own."""

    async def one(n: int) -> Response:
        async with from_address(app, address(n)) as http:
            return await send(http)

    return await asyncio.gather(*(one(n) for n in range(size)))


def login_with(password: str) -> Send:
    async def send(http: AsyncClient) -> Response:
        body = {"email": "alice@example.com", "password": password}
        return await http.post("/api/v1/auth/login", json=body)

    return send


def token_with(password: str) -> Send:
    async def send(http: AsyncClient) -> Response:
        form = {"username": "alice@example.com", "password": password}
        return await http.post("/api/v1/auth/token", data=form)

    return send


async def change_password(http: AsyncClient, password: str) -> Response:
    body = {"current_password": password, "new_password": "a brand new passphrase"}
    return await http.post("/api/v1/auth/password/change", json=body)


async def delete_account(http: AsyncClient, password: str) -> Response:
    return await http.request("DELETE", "/api/v1/users/me", json={"password": password})


# Routes that take the signed-in user's current password, as (http, password) -> answer.
CURRENT_PASSWORD_ROUTES: dict[str, Callable[[AsyncClient, str], Awaitable[Response]]] = {
    "password-change": change_password,
    "account-deletion": delete_account,
}


def assert_limited(response: Response) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["code"] == "rate_limited"
    assert 0 < int(response.headers["retry-after"]) <= 15 * 60


@pytest.fixture
def settings() -> Settings:
    return make_settings(rate_limit_login_account=f"{LIMIT} per 15 minutes")


@pytest.fixture
def verifications(monkeypatch: pytest.MonkeyPatch) -> Calls:
    """Every argon2 verification: (hasher, hash, password)."""
    return count_calls(monkeypatch, PasswordHasher, "verify")


class TestBurstOfGuesses:
    @pytest.mark.parametrize("send", [login_with, token_with], ids=["login", "token"])
    async def test_a_burst_of_wrong_guesses_is_hashed_at_most_limit_times(
        self, app: FastAPI, alice: User, verifications: Calls, send: Callable[[str], Send]
    ) -> None:
        responses = await burst(app, send(WRONG))
        assert len(verifications) <= LIMIT
        assert Counter(r.status_code for r in responses) == {401: LIMIT, 429: BURST - LIMIT}
        for response in responses:
            if response.status_code == 429:
                assert_limited(response)

    @pytest.mark.parametrize("send", [login_with, token_with], ids=["login", "token"])
    async def test_the_right_password_sent_during_a_burst_is_refused(
        self,
        app: FastAPI,
        alice: User,
        monkeypatch: pytest.MonkeyPatch,
        send: Callable[[str], Send],
    ) -> None:
        """The worst interleaving, forced: every wrong guess is still being verified when the
        right password arrives. It must find the allowance used up, not a clean counter.
        (A few more guesses than the limit: each held one keeps a database connection.)"""
        held = LIMIT + 3
        arrived, everyone_arrived, release = 0, asyncio.Event(), asyncio.Event()
        original = ServiceHasher.verify

        def arrive() -> None:
            nonlocal arrived
            arrived += 1
            if arrived == held:
                everyone_arrived.set()

        async def held_verify(hasher: ServiceHasher, password_hash: str, password: str) -> bool:
            if password == WRONG:
                arrive()
                await release.wait()
            return await original(hasher, password_hash, password)

        monkeypatch.setattr(ServiceHasher, "verify", held_verify)

        async def guess(n: int) -> Response:
            async with from_address(app, address(n)) as http:
                response = await send(WRONG)(http)
            if response.status_code == 429:  # refused before reaching the verifier
                arrive()
            return response

        guesses = [asyncio.create_task(guess(n)) for n in range(held)]
        await asyncio.wait_for(everyone_arrived.wait(), timeout=60)
        async with from_address(app, "192.0.2.77") as http:
            right = await send(PASSWORD)(http)
        release.set()
        await asyncio.gather(*guesses)
        assert_limited(right)

    @pytest.mark.parametrize("send", [login_with, token_with], ids=["login", "token"])
    async def test_the_right_password_after_a_burst_is_refused(
        self, app: FastAPI, alice: User, send: Callable[[str], Send]
    ) -> None:
        await burst(app, send(WRONG))
        async with from_address(app, "192.0.2.77") as http:
            assert_limited(await send(PASSWORD)(http))

    async def test_a_burst_against_an_unknown_email_is_limited_the_same(
        self, app: FastAPI, verifications: Calls
    ) -> None:
        responses = await burst(app, login_with(WRONG))
        assert len(verifications) <= LIMIT
        assert Counter(r.status_code for r in responses) == {401: LIMIT, 429: BURST - LIMIT}

    @pytest.mark.parametrize("route", CURRENT_PASSWORD_ROUTES, ids=CURRENT_PASSWORD_ROUTES)
    async def test_a_burst_of_current_password_guesses_is_hashed_at_most_limit_times(
        self, signed_in: AsyncClient, verifications: Calls, route: str
    ) -> None:
        """A stolen session guessing the password to take the account over, or to delete it,
        for good."""
        verifications.clear()  # signing in verified once
        send = CURRENT_PASSWORD_ROUTES[route]
        responses = await asyncio.gather(*(send(signed_in, WRONG) for _ in range(BURST)))
        assert len(verifications) <= LIMIT
        codes = Counter(r.json()["code"] for r in responses)
        assert codes == {"wrong_password": LIMIT, "rate_limited": BURST - LIMIT}
        assert_limited(await send(signed_in, PASSWORD))
        assert (await signed_in.get("/api/v1/users/me")).status_code == 200  # nothing changed

    async def test_a_correct_password_gives_its_reservation_back(
        self, app: FastAPI, alice: User
    ) -> None:
        """Signing in successfully, however often, never uses up the failure allowance."""
        for n in range(LIMIT + 5):
            async with from_address(app, address(n)) as http:
                assert (await login_with(PASSWORD)(http)).status_code == 200
        responses = await burst(app, login_with(WRONG), size=LIMIT)
        assert [r.status_code for r in responses] == [401] * LIMIT


class TestGuessesThroughAnEmailChange:
    @pytest.fixture
    def settings(self) -> Settings:
        # the email-change limit is looser here, so that the account limit is the one tested
        return make_settings(
            rate_limit_login_account=f"{LIMIT} per 15 minutes", rate_limit_email_change="1000/hour"
        )

    async def test_guesses_through_an_email_change_share_the_accounts_failure_budget(
        self, app: FastAPI, signed_in: AsyncClient, verifications: Calls
    ) -> None:
        """PATCH /users/me asks for the current password too: it is one more way to guess it,
        so its failures count against the same per-account limit as login."""
        verifications.clear()

        async def guess(password: str) -> Response:
            body = {"email": "new@example.com", "current_password": password}
            return await signed_in.patch("/api/v1/users/me", json=body)

        responses = await asyncio.gather(*(guess(WRONG) for _ in range(BURST)))
        assert len(verifications) <= LIMIT
        assert {r.status_code for r in responses} <= {400, 429}
        async with from_address(app, address(0)) as http:
            assert_limited(await login_with(PASSWORD)(http))


class TestLimiterKeys:
    """What reaches memory or Redis is a fixed-size digest, never the identifier itself."""

    async def stored_keys(self, app: FastAPI) -> list[str]:
        if TEST_REDIS_URL:
            from redis.asyncio import Redis

            redis = Redis.from_url(TEST_REDIS_URL)
            keys = [key.decode() async for key in redis.scan_iter()]
            await redis.aclose()
            return keys
        storage = app.state.context.limiter._memory.storage
        return [*storage.events, *storage.storage, *storage.expirations, *storage.locks]

    async def test_emails_and_usernames_are_not_stored_in_clear(
        self, app: FastAPI, client: AsyncClient, alice: User
    ) -> None:
        long_name = "attacker-" + "x" * 240
        await login_with(WRONG)(client)
        await client.post("/api/v1/auth/token", data={"username": long_name, "password": WRONG})
        keys = await self.stored_keys(app)
        assert keys
        for key in keys:
            assert "alice" not in key and "example.com" not in key
            assert "xxxxxxxx" not in key
            assert "127.0.0.1" not in key
            assert len(key) < 150

    async def test_a_megabyte_key_is_stored_as_a_digest(self, app: FastAPI) -> None:
        limiter, limit = app.state.context.limiter, app.state.context.limits.login_account
        await limiter.hit(limit, "y" * 1_000_000)
        assert all(len(key) < 150 for key in await self.stored_keys(app))

    async def test_a_lone_surrogate_key_does_not_break_the_limiter(self, app: FastAPI) -> None:
        limiter, limit = app.state.context.limiter, app.state.context.limits.login_account
        await limiter.hit(limit, "\ud800@example.com")
        await limiter.reset(limit, "\ud800@example.com")


class TestIpv6:
    @pytest.fixture
    def settings(self) -> Settings:
        return make_settings(rate_limit_login_ip="2/minute")

    async def attempt(self, app: FastAPI, ip: str) -> int:
        async with from_address(app, ip) as http:
            body = {"email": "nobody@example.com", "password": WRONG}
            return (await http.post("/api/v1/auth/login", json=body)).status_code

    async def test_addresses_in_one_64_share_the_per_ip_limit(self, app: FastAPI) -> None:
        """One customer line gets a whole /64: rotating inside it must not reset the count."""
        assert await self.attempt(app, "2001:db8:1:2::1") == 401
        assert await self.attempt(app, "2001:db8:1:2:ffff:ffff:ffff:ffff") == 401
        assert await self.attempt(app, "2001:db8:1:2:abcd::9") == 429

    async def test_different_64s_have_their_own_counters(self, app: FastAPI) -> None:
        for _ in range(2):
            assert await self.attempt(app, "2001:db8:1:2::1") == 401
        assert await self.attempt(app, "2001:db8:1:3::1") == 401

    @pytest.mark.parametrize(
        ("ip", "key"),
        [
            ("203.0.113.9", "203.0.113.9"),
            ("::ffff:203.0.113.9", "203.0.113.9"),
            ("2001:DB8:0:0:1::5", "2001:db8::/64"),
            ("fe80::1%eth0", "fe80::/64"),
            (None, "unknown"),
            ("not-an-address", "unknown"),
        ],
    )
    def test_the_ip_key_is_the_address_or_its_64(self, ip: str | None, key: str) -> None:
        assert ClientInfo(ip=ip, user_agent="").ip_key == key


class TestDummyHash:
    """An unknown email costs what a real account costs: the same verifications, same parameters."""

    @pytest.fixture
    def settings(self) -> Settings:
        # Parameters unlike the library defaults, so a hash made with anything else shows.
        return make_settings(argon2_time_cost=2, argon2_memory_cost=2048, argon2_parallelism=2)

    def work(self, verifications: Calls) -> list[tuple[int, int, int, int, int]]:
        """What each verification cost: the argon2 parameters encoded in the hash it used."""
        work = []
        for _hasher, password_hash, _password in verifications:
            p = extract_parameters(password_hash)
            work.append((p.time_cost, p.memory_cost, p.parallelism, p.hash_len, p.salt_len))
        return work

    async def login_work(
        self, client: AsyncClient, verifications: Calls, email: str, password: str = WRONG
    ) -> list[tuple[int, int, int, int, int]]:
        verifications.clear()
        await client.post("/api/v1/auth/login", json={"email": email, "password": password})
        return self.work(verifications)

    async def test_unknown_and_known_accounts_do_the_same_hashing_work(
        self, app: FastAPI, client: AsyncClient, verifications: Calls
    ) -> None:
        await create_user(app, "known@example.com")
        await create_user(app, "off@example.com", is_active=False)
        await create_user(app, "new@example.com", is_verified=False)
        configured = [(2, 2048, 2, 32, 16)]
        for password in (WRONG, "p" * 128, "ü" * 20):
            assert await self.login_work(client, verifications, "ghost@example.com", password) == (
                configured
            )
            for email in ("known@example.com", "off@example.com", "new@example.com"):
                assert await self.login_work(client, verifications, email, password) == configured

    async def test_inactive_and_unverified_accounts_cost_the_same_with_the_right_password(
        self, app: FastAPI, client: AsyncClient, verifications: Calls
    ) -> None:
        await create_user(app, "off@example.com", is_active=False)
        await create_user(app, "new@example.com", is_verified=False)
        ghost = await self.login_work(client, verifications, "ghost@example.com", PASSWORD)
        for email in ("off@example.com", "new@example.com"):
            assert await self.login_work(client, verifications, email, PASSWORD) == ghost

    async def test_an_account_without_a_usable_hash_costs_a_full_verification(
        self, app: FastAPI, client: AsyncClient, verifications: Calls
    ) -> None:
        """A hash that does not parse (imported, or cleared by an operator) is no shortcut."""
        await create_user(app, "nohash@example.com", password_hash="!")
        ghost = await self.login_work(client, verifications, "ghost@example.com")
        assert await self.login_work(client, verifications, "nohash@example.com") == ghost

    async def test_the_dummy_follows_the_parameters_in_force(
        self, app: FastAPI, client: AsyncClient, verifications: Calls
    ) -> None:
        """After ARGON2_* change, unknown emails cost the new parameters, as new hashes do."""
        app.state.context.hasher._argon2 = PasswordHasher(
            time_cost=3, memory_cost=1024, parallelism=1
        )
        assert await self.login_work(client, verifications, "ghost@example.com") == [
            (3, 1024, 1, 32, 16)
        ]

    async def test_an_account_with_old_parameters_does_one_verification_and_upgrades(
        self, app: FastAPI, client: AsyncClient, verifications: Calls
    ) -> None:
        """Before its next sign-in such an account costs its old parameters (nothing else can
        be done without the password); one verification, like everybody, and then upgraded."""
        await create_user(app, "old@example.com")
        app.state.context.hasher._argon2 = PasswordHasher(
            time_cost=3, memory_cost=1024, parallelism=1
        )
        assert len(await self.login_work(client, verifications, "old@example.com")) == 1
        await self.login_work(client, verifications, "old@example.com", PASSWORD)
        assert await self.login_work(client, verifications, "old@example.com") == [
            (3, 1024, 1, 32, 16)
        ]


class TestMemoryCountersWarning:
    def warnings(self, caplog: pytest.LogCaptureFixture, **settings: object) -> list[str]:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="app"):
            create_app(make_settings(**settings))
        return [r.getMessage() for r in caplog.records if "rate limit" in r.getMessage()]

    def test_several_workers_counting_in_memory_are_warned_about(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        [line] = self.warnings(caplog, web_concurrency=4, redis_url=None)
        assert "WEB_CONCURRENCY=4" in line and "REDIS_URL" in line

    def test_shared_counters_need_no_warning(self) -> None:
        # judged from the settings alone: the memory variant has no Redis client to start
        shared = make_settings(web_concurrency=4, redis_url="redis://127.0.0.1:1/0")
        assert memory_counters_warning(shared) is None

    def test_one_worker_in_memory_is_warned_about_only_when_redis_was_chosen(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        lines = self.warnings(caplog, web_concurrency=1, redis_url=None)
        if RATE_LIMITER == "redis":
            [line] = lines
            assert "REDIS_URL" in line
        else:
            assert lines == []
