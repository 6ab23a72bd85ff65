"""Step-up: sensitive changes need a session that proved who it is a moment ago (SPEC §8).

A session older than REAUTH_MAX_AGE_SECONDS (a stolen cookie, an unlocked laptop) gets 403
`reauthentication_required` on each sensitive route until it reauthenticates with the password
or a second factor's code; a wrong one changes nothing and counts like a wrong login.
"""

import asyncio
import uuid
from collections import Counter

import pytest
from fastapi import FastAPI
from httpx import AsyncClient, Response
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.config import Settings
from app.core.security import PasswordHasher
from app.models import AuditEvent, User
from tests.helpers import (
    ALICE,
    PASSWORD,
    Calls,
    Clock,
    TotpApp,
    api_tokens,
    bearer,
    count_calls,
    device,
    enable_totp,
    make_settings,
    second_step,
    start_login,
    wrong_code,
)

SOME_ID = uuid.UUID(int=1)
FAKE_CREDENTIAL = {
    "id": "AAAA",
    "rawId": "AAAA",
    "type": "public-key",
    "response": {"clientDataJSON": "AAAA", "attestationObject": "AAAA"},
}
NEW_PASSWORD = "a different horse, battery and staple"
REAUTHENTICATE = "/api/v1/auth/reauthenticate"

# (method, path, body, answer once reauthenticated: without a factor, with TOTP on)
SENSITIVE_ROUTES = [
    ("POST", "/api/v1/auth/mfa/totp/setup", None, (200, 409)),
    ("POST", "/api/v1/auth/mfa/totp/enable", {"code": "123456"}, (409, 409)),
    ("DELETE", "/api/v1/auth/mfa/totp", None, (404, 204)),
    ("POST", "/api/v1/auth/mfa/recovery-codes", None, (409, 200)),
    ("POST", "/api/v1/auth/passkeys/register/options", None, (200, 200)),
    (
        "POST",
        "/api/v1/auth/passkeys/register",
        {"credential": FAKE_CREDENTIAL, "name": "Laptop"},
        (400, 400),
    ),
    ("PATCH", f"/api/v1/auth/passkeys/{SOME_ID}", {"name": "Phone"}, (404, 404)),
    ("DELETE", f"/api/v1/auth/passkeys/{SOME_ID}", None, (404, 404)),
    (
        "POST",
        "/api/v1/auth/password/change",
        {"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        (204, 204),
    ),
    (
        "PATCH",
        "/api/v1/users/me",
        {"email": "alice@new.example", "current_password": PASSWORD},
        (200, 200),
    ),
    ("DELETE", "/api/v1/users/me", {"password": PASSWORD}, (204, 204)),
]
ROUTE_IDS = [f"{method} {path.removeprefix('/api/v1')}" for method, path, *_ in SENSITIVE_ROUTES]
Route = tuple[str, str, dict[str, object] | None, tuple[int, int]]


@pytest.fixture
def settings() -> Settings:
    """Room for the sign-ins a test makes from one address: the IP limit is not the subject."""
    return make_settings(rate_limit_login_ip="1000/minute")


def stale(clock: Clock, settings: Settings) -> None:
    """Let the session's sign-in grow older than REAUTH_MAX_AGE_SECONDS (its access token,
    15 minutes, is still good)."""
    clock.advance(settings.reauth_max_age_seconds + 1)


async def call(client: AsyncClient, route: Route) -> Response:
    method, path, body, _ = route
    return await client.request(method, path, json=body)


async def what_a_refusal_must_not_change(app: FastAPI, client: AsyncClient) -> object:
    async with app.state.sessionmaker() as db:
        user = (await db.exec(select(User).where(User.email == ALICE))).one()
        events = (await db.exec(select(AuditEvent.type))).all()
    return (user.password_hash, user.email, sorted(events), (await client.get(MFA)).json())


MFA = "/api/v1/auth/mfa"


def assert_needs_reauthentication(response: Response) -> None:
    assert response.status_code == 403, response.text
    assert response.json()["code"] == "reauthentication_required"


@pytest.mark.parametrize("route", SENSITIVE_ROUTES, ids=ROUTE_IDS)
async def test_a_stale_session_must_reauthenticate(
    app: FastAPI, signed_in: AsyncClient, clock: Clock, settings: Settings, route: Route
) -> None:
    stale(clock, settings)
    before = await what_a_refusal_must_not_change(app, signed_in)
    assert_needs_reauthentication(await call(signed_in, route))
    assert await what_a_refusal_must_not_change(app, signed_in) == before


@pytest.mark.parametrize("route", SENSITIVE_ROUTES, ids=ROUTE_IDS)
async def test_reauthenticating_with_the_password_lets_the_change_through(
    signed_in: AsyncClient, clock: Clock, settings: Settings, route: Route
) -> None:
    stale(clock, settings)
    reauthenticated = await signed_in.post(REAUTHENTICATE, json={"password": PASSWORD})
    assert reauthenticated.status_code == 204, reauthenticated.text
    response = await call(signed_in, route)
    assert response.status_code == route[3][0], response.text


@pytest.mark.parametrize("route", SENSITIVE_ROUTES, ids=ROUTE_IDS)
async def test_reauthenticating_with_a_totp_code_lets_the_change_through(
    signed_in: AsyncClient, clock: Clock, settings: Settings, route: Route
) -> None:
    totp = (await enable_totp(signed_in, clock))["app"]
    stale(clock, settings)
    assert_needs_reauthentication(await call(signed_in, route))
    reauthenticated = await signed_in.post(REAUTHENTICATE, json={"code": totp.next_code()})
    assert reauthenticated.status_code == 204, reauthenticated.text
    response = await call(signed_in, route)
    assert response.status_code == route[3][1], response.text


async def test_a_bearer_session_must_reauthenticate_too(
    client: AsyncClient, alice: User, clock: Clock, settings: Settings
) -> None:
    tokens = await api_tokens(client)
    stale(clock, settings)
    body = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    headers = bearer(tokens["access_token"])
    response = await client.post("/api/v1/auth/password/change", json=body, headers=headers)
    assert_needs_reauthentication(response)


class TestShortReauthAge:
    @pytest.fixture
    def settings(self) -> Settings:
        """Two stale periods within the access token's 15 minutes."""
        return make_settings(reauth_max_age_seconds=300)

    async def test_a_reauthentication_lasts_reauth_max_age(
        self, signed_in: AsyncClient, clock: Clock, settings: Settings
    ) -> None:
        stale(clock, settings)
        await signed_in.post(REAUTHENTICATE, json={"password": PASSWORD})
        clock.advance(settings.reauth_max_age_seconds - 10)
        assert (await signed_in.post("/api/v1/auth/mfa/totp/setup")).status_code == 200
        clock.advance(11)
        assert_needs_reauthentication(await signed_in.post("/api/v1/auth/mfa/totp/setup"))


async def test_refreshing_the_tokens_does_not_make_a_session_recent(
    signed_in: AsyncClient, clock: Clock, settings: Settings
) -> None:
    stale(clock, settings)
    refreshed = await signed_in.post("/api/v1/auth/refresh")
    assert refreshed.status_code == 200, refreshed.text
    signed_in.headers["X-CSRF-Token"] = refreshed.json()["csrf_token"]
    assert_needs_reauthentication(await signed_in.post("/api/v1/auth/mfa/totp/setup"))


async def test_the_second_step_of_a_sign_in_makes_the_session_recent(
    app: FastAPI, signed_in: AsyncClient, clock: Clock, settings: Settings
) -> None:
    totp = (await enable_totp(signed_in, clock))["app"]
    stale(clock, settings)
    async with device(app) as laptop:
        signed = await second_step(laptop, await start_login(laptop), totp.next_code())
        laptop.headers["X-CSRF-Token"] = signed.json()["csrf_token"]
        assert (await laptop.post("/api/v1/auth/mfa/recovery-codes")).status_code == 200


async def test_a_wrong_password_changes_nothing(
    app: FastAPI, signed_in: AsyncClient, clock: Clock, settings: Settings
) -> None:
    stale(clock, settings)
    before = await what_a_refusal_must_not_change(app, signed_in)
    response = await signed_in.post(REAUTHENTICATE, json={"password": "not the password at all"})
    assert response.status_code == 400
    assert response.json()["code"] == "wrong_password"
    assert await what_a_refusal_must_not_change(app, signed_in) == before
    assert_needs_reauthentication(await signed_in.post("/api/v1/auth/mfa/totp/setup"))


async def test_a_wrong_code_changes_nothing(
    signed_in: AsyncClient, clock: Clock, settings: Settings
) -> None:
    totp = (await enable_totp(signed_in, clock))["app"]
    stale(clock, settings)
    response = await signed_in.post(REAUTHENTICATE, json={"code": wrong_code(totp.next_code())})
    assert response.status_code == 400
    assert response.json()["code"] == "wrong_code"
    assert_needs_reauthentication(await signed_in.post("/api/v1/auth/mfa/recovery-codes"))


async def test_a_code_without_a_factor_is_wrong(
    signed_in: AsyncClient, clock: Clock, settings: Settings
) -> None:
    stale(clock, settings)
    response = await signed_in.post(REAUTHENTICATE, json={"code": "123456"})
    assert response.status_code == 400
    assert response.json()["code"] == "wrong_code"


async def test_a_code_used_to_reauthenticate_cannot_sign_in(
    client: AsyncClient, signed_in: AsyncClient, clock: Clock
) -> None:
    totp = (await enable_totp(signed_in, clock))["app"]
    code = totp.next_code()
    assert (await signed_in.post(REAUTHENTICATE, json={"code": code})).status_code == 204
    replayed = await second_step(client, await start_login(client), code)
    assert replayed.status_code == 401


async def test_reauthenticating_is_audited(
    signed_in: AsyncClient, alice: User, db: AsyncSession
) -> None:
    await signed_in.post(REAUTHENTICATE, json={"password": PASSWORD})
    types = (await db.exec(select(AuditEvent.type).where(AuditEvent.user_id == alice.id))).all()
    assert "reauthenticated" in types


@pytest.mark.parametrize(
    "body",
    [{}, {"password": PASSWORD, "code": "123456"}, {"password": None, "code": None}],
    ids=["neither", "both", "both-null"],
)
async def test_reauthenticate_takes_exactly_one_of_password_and_code(
    signed_in: AsyncClient, body: dict[str, object]
) -> None:
    response = await signed_in.post(REAUTHENTICATE, json=body)
    assert response.status_code == 422
    assert response.json()["code"] == "validation_failed"
    assert PASSWORD not in response.text


async def test_reauthenticate_needs_a_session(client: AsyncClient, alice: User) -> None:
    response = await client.post(REAUTHENTICATE, json={"password": PASSWORD})
    assert response.status_code == 401


LIMIT = 4


class TestAccountLimit:
    @pytest.fixture
    def settings(self) -> Settings:
        return make_settings(
            rate_limit_login_ip="1000/minute", rate_limit_login_account=f"{LIMIT} per 15 minutes"
        )

    async def test_wrong_passwords_count_against_the_account_limit(
        self, app: FastAPI, signed_in: AsyncClient
    ) -> None:
        for _ in range(LIMIT):
            wrong = await signed_in.post(REAUTHENTICATE, json={"password": "a wrong guess, again"})
            assert wrong.status_code == 400
        limited = await signed_in.post(REAUTHENTICATE, json={"password": PASSWORD})
        assert limited.status_code == 429
        assert limited.json()["code"] == "rate_limited"
        async with device(app, ip="203.0.113.9") as elsewhere:
            login = await elsewhere.post(
                "/api/v1/auth/login", json={"email": ALICE, "password": PASSWORD}
            )
            assert login.status_code == 429

    async def test_wrong_codes_count_against_the_account_limit(
        self, signed_in: AsyncClient, clock: Clock
    ) -> None:
        totp: TotpApp = (await enable_totp(signed_in, clock))["app"]
        code = totp.next_code()
        for _ in range(LIMIT):
            wrong = await signed_in.post(REAUTHENTICATE, json={"code": wrong_code(code)})
            assert wrong.status_code == 400
        limited = await signed_in.post(REAUTHENTICATE, json={"code": code})
        assert limited.status_code == 429

    async def test_a_burst_of_wrong_passwords_gets_no_more_checks_than_the_limit(
        self, signed_in: AsyncClient, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        checks: Calls = count_calls(monkeypatch, PasswordHasher, "verify")
        body = {"password": "a wrong guess, again"}
        answers = await asyncio.gather(
            *(signed_in.post(REAUTHENTICATE, json=body) for _ in range(20))
        )
        assert len(checks) <= LIMIT
        assert Counter(a.status_code for a in answers) == {400: LIMIT, 429: 20 - LIMIT}
