"""An authenticator app (TOTP) as the second step of a sign-in (SPEC §8).

Codes come from `pyotp` with the secret the setup hands out, as a phone would compute them; the
service's clock is moved instead of waiting for the next 30 s step.
"""

import asyncio
import base64
import json
import secrets
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pyotp
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from httpx import AsyncClient
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.config import Settings
from app.main import create_app
from app.models import AuditEvent, DeviceSession, TotpFactor, User
from app.models.base import utcnow
from app.services import mfa as mfa_service
from app.utils.cookies import CookieNames
from tests.helpers import (
    ALICE,
    PASSWORD,
    Calls,
    Clock,
    Outbox,
    TotpApp,
    bearer,
    browser,
    count_calls,
    create_user,
    device,
    enable_totp,
    link_token,
    make_settings,
    second_step,
    start_login,
    start_token_login,
    wrong_code,
)

CHROME_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)


@pytest.fixture
def settings() -> Settings:
    """Room for the sign-ins a test makes from one address: the IP limit is not the subject."""
    return make_settings(rate_limit_login_ip="1000/minute")


@pytest.fixture
async def totp(signed_in: AsyncClient, clock: Clock) -> TotpApp:
    """Alice, signed in, with an authenticator app turned on."""
    return (await enable_totp(signed_in, clock))["app"]


async def audit_types(db: AsyncSession, user: User) -> list[str]:
    rows = await db.exec(
        select(AuditEvent.type)
        .where(AuditEvent.user_id == user.id)
        .order_by(col(AuditEvent.created_at))
    )
    return list(rows.all())


async def session_count(db: AsyncSession) -> int:
    return len((await db.exec(select(DeviceSession.id))).all())


# --- setup ------------------------------------------------------------------------------------


async def test_setup_gives_a_secret_an_otpauth_uri_and_a_qr_picture(
    signed_in: AsyncClient,
) -> None:
    response = await signed_in.post("/api/v1/auth/mfa/totp/setup")
    assert response.status_code == 200, response.text
    setup = response.json()
    assert len(base64.b32decode(setup["secret"])) >= 20  # 160 bits, as RFC 4226 recommends
    uri = pyotp.parse_uri(setup["otpauth_uri"])
    assert isinstance(uri, pyotp.TOTP)
    assert uri.secret == setup["secret"]
    assert (uri.digits, uri.interval, uri.digest().name) == (6, 30, "sha1")
    assert uri.name == ALICE
    svg = setup["qr_svg"]
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>"), svg[:80]


async def test_a_pending_setup_does_not_ask_for_a_code_at_login(
    app: FastAPI, signed_in: AsyncClient
) -> None:
    assert (await signed_in.post("/api/v1/auth/mfa/totp/setup")).status_code == 200
    async with browser(app, ALICE):  # signs in with the password alone, or fails
        pass
    assert (await signed_in.get("/api/v1/auth/mfa")).json()["totp"] is False


async def test_a_new_setup_replaces_a_pending_one(signed_in: AsyncClient, clock: Clock) -> None:
    first = TotpApp((await signed_in.post("/api/v1/auth/mfa/totp/setup")).json()["secret"], clock)
    second = TotpApp((await signed_in.post("/api/v1/auth/mfa/totp/setup")).json()["secret"], clock)
    enable = "/api/v1/auth/mfa/totp/enable"
    refused = await signed_in.post(enable, json={"code": first.next_code()})
    assert refused.status_code == 400
    assert refused.json()["code"] == "wrong_code"
    assert (await signed_in.post(enable, json={"code": second.code()})).status_code == 200


async def test_enable_refuses_a_wrong_code_and_stays_off(signed_in: AsyncClient) -> None:
    await signed_in.post("/api/v1/auth/mfa/totp/setup")
    refused = await signed_in.post("/api/v1/auth/mfa/totp/enable", json={"code": "000000"})
    assert refused.status_code == 400
    assert refused.json()["code"] == "wrong_code"
    assert (await signed_in.get("/api/v1/auth/mfa")).json()["totp"] is False


async def test_enable_without_setup_is_refused(signed_in: AsyncClient) -> None:
    response = await signed_in.post("/api/v1/auth/mfa/totp/enable", json={"code": "123456"})
    assert response.status_code == 409
    assert response.json()["code"] == "totp_setup_required"


async def test_setup_is_refused_while_totp_is_on(signed_in: AsyncClient, totp: TotpApp) -> None:
    response = await signed_in.post("/api/v1/auth/mfa/totp/setup")
    assert response.status_code == 409
    assert response.json()["code"] == "totp_already_enabled"


async def test_enabling_signs_out_every_other_session_and_keeps_this_one(
    app: FastAPI, signed_in: AsyncClient, clock: Clock, db: AsyncSession
) -> None:
    async with browser(app, ALICE, user_agent=CHROME_MAC) as other:
        await enable_totp(signed_in, clock)
        assert (await other.get("/api/v1/users/me")).status_code == 401
    assert (await signed_in.get("/api/v1/users/me")).status_code == 200
    reasons = (await db.exec(select(DeviceSession.revoked_reason))).all()
    assert Counter(reasons) == {"mfa_enabled": 1, None: 1}


# --- the second step of a sign-in -------------------------------------------------------------


async def test_login_asks_for_the_second_step_without_cookies_or_session(
    client: AsyncClient, totp: TotpApp, db: AsyncSession
) -> None:
    client.cookies.clear()
    sessions = await session_count(db)
    response = await client.post("/api/v1/auth/login", json={"email": ALICE, "password": PASSWORD})
    assert response.status_code == 200
    body = response.json()
    assert body["mfa_required"] is True
    assert body["methods"] == ["totp", "recovery_code"]
    assert len(body["mfa_token"]) >= 22  # >= 128 bits in base64url
    assert set(body) == {"mfa_required", "mfa_token", "methods"}
    assert "set-cookie" not in response.headers
    assert await session_count(db) == sessions


async def test_the_token_endpoint_asks_for_the_second_step_without_tokens(
    client: AsyncClient, totp: TotpApp, db: AsyncSession
) -> None:
    sessions = await session_count(db)
    form = {"username": ALICE, "password": PASSWORD}
    response = await client.post("/api/v1/auth/token", data=form)
    assert response.status_code == 200
    assert set(response.json()) == {"mfa_required", "mfa_token", "methods"}
    assert "set-cookie" not in response.headers
    assert await session_count(db) == sessions


async def test_the_second_step_after_login_answers_like_login(
    client: AsyncClient, totp: TotpApp, cookie: CookieNames
) -> None:
    client.cookies.clear()
    token = await start_login(client)
    response = await second_step(client, token, totp.next_code())
    assert response.status_code == 200, response.text
    assert set(response.json()) == {"user", "csrf_token"}
    assert response.json()["user"]["email"] == ALICE
    assert {cookie.access, cookie.refresh, cookie.csrf} <= set(response.cookies)
    assert (await client.get("/api/v1/users/me")).status_code == 200


async def test_the_second_step_after_the_token_endpoint_answers_with_tokens(
    app: FastAPI, totp: TotpApp
) -> None:
    async with device(app) as api:
        token = await start_token_login(api)
        response = await second_step(api, token, totp.next_code())
        assert response.status_code == 200, response.text
        tokens = response.json()
        assert set(tokens) == {"access_token", "refresh_token", "token_type"}
        assert "set-cookie" not in response.headers
        me = await api.get("/api/v1/users/me", headers=bearer(tokens["access_token"]))
        assert me.status_code == 200


async def test_a_wrong_code_is_refused(client: AsyncClient, totp: TotpApp) -> None:
    token = await start_login(client)
    response = await second_step(client, token, wrong_code(totp.next_code()))
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_mfa_code"
    assert "set-cookie" not in response.headers


async def test_a_wrong_code_leaves_the_step_open_for_the_right_one(
    client: AsyncClient, totp: TotpApp
) -> None:
    token = await start_login(client)
    code = totp.next_code()
    assert (await second_step(client, token, wrong_code(code))).status_code == 401
    assert (await second_step(client, token, code)).status_code == 200


@pytest.mark.parametrize("steps", [-1, 1], ids=["previous", "next"])
async def test_a_code_one_step_away_is_accepted(
    client: AsyncClient, totp: TotpApp, steps: int
) -> None:
    totp.next_code()
    totp.next_code()  # the previous step's code was never used
    token = await start_login(client)
    assert (await second_step(client, token, totp.code(steps))).status_code == 200


@pytest.mark.parametrize("steps", [-2, 2], ids=["two-behind", "two-ahead"])
async def test_a_code_two_steps_away_is_refused(
    client: AsyncClient, totp: TotpApp, steps: int
) -> None:
    totp.next_code()
    token = await start_login(client)
    response = await second_step(client, token, totp.code(steps))
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_mfa_code"


async def test_the_same_code_is_accepted_once(client: AsyncClient, totp: TotpApp) -> None:
    code = totp.next_code()
    first, second = await start_login(client), await start_login(client)
    assert (await second_step(client, first, code)).status_code == 200
    replayed = await second_step(client, second, code)
    assert replayed.status_code == 401
    assert replayed.json()["code"] == "invalid_mfa_code"


async def test_an_older_code_is_refused_after_a_newer_one(
    client: AsyncClient, totp: TotpApp
) -> None:
    totp.next_code()
    assert (await second_step(client, await start_login(client), totp.code())).status_code == 200
    older = await second_step(client, await start_login(client), totp.code(-1))
    assert older.status_code == 401


async def test_the_same_code_sent_twice_at_once_signs_in_once(
    client: AsyncClient, totp: TotpApp
) -> None:
    code = totp.next_code()
    tokens = [await start_login(client) for _ in range(2)]
    answers = await asyncio.gather(*(second_step(client, token, code) for token in tokens))
    assert sorted(a.status_code for a in answers) == [200, 401]


async def test_a_used_mfa_token_is_refused(client: AsyncClient, totp: TotpApp) -> None:
    token = await start_login(client)
    assert (await second_step(client, token, totp.next_code())).status_code == 200
    again = await second_step(client, token, totp.next_code())
    assert again.status_code == 401
    assert again.json()["code"] == "invalid_mfa_token"


async def test_an_unknown_mfa_token_is_refused(client: AsyncClient, totp: TotpApp) -> None:
    response = await second_step(client, "x" * 43, totp.next_code())
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_mfa_token"


async def test_the_step_expires_after_the_challenge_ttl(
    client: AsyncClient, totp: TotpApp, clock: Clock, settings: Settings
) -> None:
    token = await start_login(client)
    clock.advance(settings.mfa_challenge_ttl_seconds + 1)
    response = await second_step(client, token, totp.next_code())
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_mfa_token"


async def test_the_step_is_still_open_just_before_the_ttl(
    client: AsyncClient, totp: TotpApp, clock: Clock, settings: Settings
) -> None:
    totp.next_code()
    token = await start_login(client)
    clock.advance(settings.mfa_challenge_ttl_seconds - 20)
    assert (await second_step(client, token, totp.code())).status_code == 200


async def test_five_wrong_codes_end_the_step_even_for_the_right_code(
    client: AsyncClient, totp: TotpApp
) -> None:
    token = await start_login(client)
    code = totp.next_code()
    for _ in range(5):
        response = await second_step(client, token, wrong_code(code))
        assert response.json()["code"] == "invalid_mfa_code"
    last = await second_step(client, token, code)
    assert last.status_code == 401
    assert last.json()["code"] == "invalid_mfa_token"


class TestBurstOnOneStep:
    @pytest.fixture
    def settings(self) -> Settings:
        """An account limit well above five: the step's own count must stop the burst."""
        return make_settings(
            rate_limit_login_ip="1000/minute", rate_limit_login_account="50 per 15 minutes"
        )

    async def test_a_burst_of_wrong_codes_on_one_step_gets_five_checks(
        self, client: AsyncClient, totp: TotpApp, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        token = await start_login(client)
        checks = count_calls(monkeypatch, mfa_service, "matching_step")
        code = wrong_code(totp.next_code())
        answers = await asyncio.gather(*(second_step(client, token, code) for _ in range(20)))
        refused = Counter(a.json()["code"] for a in answers)
        assert len(checks) <= 5
        assert refused == {"invalid_mfa_code": 5, "invalid_mfa_token": 15}


async def test_a_wrong_code_is_audited_and_told_to_the_owner(
    app: FastAPI, client: AsyncClient, totp: TotpApp, alice: User, db: AsyncSession, outbox: Outbox
) -> None:
    await second_step(client, await start_login(client), wrong_code(totp.next_code()))
    await app.state.context.mailer.wait_idle()
    assert "mfa_failed" in await audit_types(db, alice)
    [notice] = outbox.to(ALICE, "Someone knows your password")
    assert "https://frontend.example/forgot-password" in notice.text


async def test_the_sign_in_is_audited_with_its_method(
    client: AsyncClient, totp: TotpApp, alice: User, db: AsyncSession
) -> None:
    await second_step(client, await start_login(client), totp.next_code())
    detail = await db.exec(
        select(AuditEvent.detail)
        .where(AuditEvent.type == "login_succeeded")
        .order_by(col(AuditEvent.created_at).desc())
    )
    assert detail.first() == "password+totp"


async def test_a_new_device_notice_names_the_authenticator_app(
    app: FastAPI, totp: TotpApp, outbox: Outbox
) -> None:
    async with device(app, user_agent=CHROME_MAC) as mac:
        token = await start_login(mac)
        assert (await second_step(mac, token, totp.next_code())).status_code == 200
    await app.state.context.mailer.wait_idle()
    notice = outbox.to(ALICE, "New sign-in")[-1]
    assert "Chrome on Mac OS X" in notice.text
    assert "with password and authenticator app" in notice.text


# --- the account's failure limit ----------------------------------------------------------------

LIMIT = 6


class TestAccountLimit:
    @pytest.fixture
    def settings(self) -> Settings:
        return make_settings(
            rate_limit_login_ip="1000/minute", rate_limit_login_account=f"{LIMIT} per 15 minutes"
        )

    async def test_wrong_codes_add_up_across_sign_ins_despite_the_right_password(
        self, client: AsyncClient, totp: TotpApp
    ) -> None:
        code = totp.next_code()
        limited = False
        for _ in range(LIMIT):
            first = await client.post(
                "/api/v1/auth/login", json={"email": ALICE, "password": PASSWORD}
            )
            if first.status_code == 429:
                limited = True
                break
            second = await second_step(client, first.json()["mfa_token"], wrong_code(code))
            if second.status_code == 429:
                limited = True
                break
            assert second.json()["code"] == "invalid_mfa_code"
        assert limited, "right password + wrong code, over and over, never hit the limit"

    async def test_once_limited_the_right_code_and_password_are_refused_too(
        self, app: FastAPI, client: AsyncClient, totp: TotpApp
    ) -> None:
        spare = await start_login(client)
        code = totp.next_code()
        for _ in range(LIMIT):
            token = await start_login(client)
            if (await second_step(client, token, wrong_code(code))).status_code == 429:
                break
        right = await second_step(client, spare, code)
        assert right.status_code == 429
        assert right.json()["code"] == "rate_limited"
        async with device(app, ip="203.0.113.9") as elsewhere:  # per account, not per address
            again = await elsewhere.post(
                "/api/v1/auth/login", json={"email": ALICE, "password": PASSWORD}
            )
            assert again.status_code == 429

    async def test_a_burst_of_wrong_codes_gets_no_more_checks_than_the_limit(
        self,
        client: AsyncClient,
        totp: TotpApp,
        alice: User,
        db: AsyncSession,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        tokens = [await start_login(client) for _ in range(3)]
        checks: Calls = count_calls(monkeypatch, mfa_service, "matching_step")
        code = wrong_code(totp.next_code())
        answers = await asyncio.gather(
            *(second_step(client, tokens[n % len(tokens)], code) for n in range(30))
        )
        refused = Counter(a.json()["code"] for a in answers)
        assert len(checks) <= LIMIT
        assert refused["invalid_mfa_code"] <= LIMIT
        assert refused["rate_limited"] > 0
        assert set(refused) <= {"invalid_mfa_code", "invalid_mfa_token", "rate_limited"}
        failed = (await audit_types(db, alice)).count("mfa_failed")
        assert failed == refused["invalid_mfa_code"]


# --- storage, and turning it off ----------------------------------------------------------------


async def test_the_secret_is_not_stored_in_clear(
    totp: TotpApp, alice: User, db: AsyncSession
) -> None:
    [row] = (await db.exec(select(TotpFactor).where(TotpFactor.user_id == alice.id))).all()
    stored = b"".join(
        bytes(value) if isinstance(value, bytes) else str(value).encode()
        for value in row.model_dump().values()
    )
    raw = base64.b32decode(totp.secret)
    for leak in (totp.secret.encode(), totp.secret.lower().encode(), raw, raw.hex().encode()):
        assert leak not in stored
    assert len(row.secret_encrypted) > len(raw)  # sealed: nonce and tag besides the ciphertext


async def test_disabling_makes_login_password_only_again(
    app: FastAPI, signed_in: AsyncClient, totp: TotpApp
) -> None:
    assert (await signed_in.delete("/api/v1/auth/mfa/totp")).status_code == 204
    status = (await signed_in.get("/api/v1/auth/mfa")).json()
    assert status == {"totp": False, "passkeys": [], "recovery_codes_left": 0}
    async with browser(app, ALICE):  # password alone signs in, or this fails
        pass


async def test_disabling_twice_is_not_found(signed_in: AsyncClient, totp: TotpApp) -> None:
    assert (await signed_in.delete("/api/v1/auth/mfa/totp")).status_code == 204
    again = await signed_in.delete("/api/v1/auth/mfa/totp")
    assert again.status_code == 404
    assert again.json()["code"] == "not_found"


async def test_disabling_ends_a_pending_step(
    client: AsyncClient, signed_in: AsyncClient, totp: TotpApp, app: FastAPI
) -> None:
    async with device(app) as other:
        token = await start_login(other)
        assert (await signed_in.delete("/api/v1/auth/mfa/totp")).status_code == 204
        response = await second_step(other, token, totp.next_code())
        assert response.status_code == 401


async def test_enabling_and_disabling_are_audited_and_told_to_the_owner(
    app: FastAPI,
    signed_in: AsyncClient,
    totp: TotpApp,
    alice: User,
    db: AsyncSession,
    outbox: Outbox,
) -> None:
    await signed_in.delete("/api/v1/auth/mfa/totp")
    await app.state.context.mailer.wait_idle()
    types = await audit_types(db, alice)
    assert types.index("totp_enabled") < types.index("totp_disabled")
    notices = [m.text for m in outbox.to(ALICE, "Your sign-in methods changed")]
    assert len(notices) == 2
    assert "authenticator app was set up" in notices[0]
    assert "authenticator app was removed" in notices[1]


async def test_a_secret_copied_onto_another_account_does_not_work(
    app: FastAPI, totp: TotpApp, alice: User, db: AsyncSession
) -> None:
    """The sealed secret is bound to its owner: an attacker who can write the table cannot
    move their own factor onto a victim's account."""
    bob = await create_user(app, "bob@example.com")
    alices = (await db.exec(select(TotpFactor).where(TotpFactor.user_id == alice.id))).one()
    db.add(
        TotpFactor(user_id=bob.id, secret_encrypted=alices.secret_encrypted, confirmed_at=utcnow())
    )
    await db.commit()
    async with device(app) as attacker:
        token = await start_login(attacker, "bob@example.com")
        response = await second_step(attacker, token, totp.next_code())
        assert response.status_code == 401
        assert response.json()["code"] == "invalid_mfa_code"


@asynccontextmanager
async def same_database(settings: Settings) -> AsyncIterator[AsyncClient]:
    """Another deployment on this database, with settings of its own."""
    other = create_app(settings)
    async with LifespanManager(other), device(other) as http:
        yield http


async def test_the_database_without_the_key_yields_no_usable_secret(totp: TotpApp) -> None:
    """A copy of the database served with another SECRET_KEY: the factor is still required,
    and no code from the real secret passes."""
    stolen_settings = make_settings(
        rate_limit_login_ip="1000/minute", secret_key=secrets.token_urlsafe(48)
    )
    async with same_database(stolen_settings) as stolen:
        token = await start_login(stolen)
        response = await second_step(stolen, token, totp.next_code())
        assert response.status_code == 401
        assert response.json()["code"] == "invalid_mfa_code"


class TestEncryptionKey:
    KEY = "an encryption key of its own, long and random enough 7f3a9c"

    @pytest.fixture
    def settings(self) -> Settings:
        return make_settings(rate_limit_login_ip="1000/minute", mfa_encryption_key=self.KEY)

    async def test_with_mfa_encryption_key_the_secret_survives_a_secret_key_rotation(
        self, totp: TotpApp
    ) -> None:
        rotated = make_settings(
            rate_limit_login_ip="1000/minute",
            mfa_encryption_key=self.KEY,
            secret_key=secrets.token_urlsafe(48),
        )
        async with same_database(rotated) as http:
            token = await start_login(http)
            assert (await second_step(http, token, totp.next_code())).status_code == 200


async def test_a_password_reset_keeps_the_second_factor(
    app: FastAPI, client: AsyncClient, totp: TotpApp, outbox: Outbox
) -> None:
    """Whoever controls the mailbox can set a new password, not skip the second step."""
    await client.post("/api/v1/auth/password/forgot", json={"email": ALICE})
    await app.state.context.mailer.wait_idle()
    token = link_token(outbox.to(ALICE, "Reset")[0])
    new_password = "a brand new and rather long passphrase"
    reset = await client.post(
        "/api/v1/auth/password/reset", json={"token": token, "new_password": new_password}
    )
    assert reset.status_code == 200, reset.text
    await start_login(client, ALICE, new_password)  # asks for the second step, or fails


async def test_notices_of_wrong_codes_are_limited(
    app: FastAPI, client: AsyncClient, totp: TotpApp, outbox: Outbox, settings: Settings
) -> None:
    code = totp.next_code()
    for _ in range(2):
        token = await start_login(client)
        for _ in range(4):
            await second_step(client, token, wrong_code(code))
    await app.state.context.mailer.wait_idle()
    limit = int(settings.rate_limit_notice.split("/")[0])
    assert 1 <= len(outbox.to(ALICE, "Someone knows your password")) <= limit < 8


@pytest.mark.parametrize(
    "code",
    [
        "١٢٣٤٥٦",
        "\uff11\uff12\uff13\uff14\uff15\uff16",
        "12345\x00",
        "123456\ud800",
        "12345",
        "1" * 33,
        "12;456",
    ],
    ids=["arabic-digits", "fullwidth", "nul", "surrogate", "short", "long", "punctuation"],
)
async def test_a_malformed_code_is_a_422(client: AsyncClient, totp: TotpApp, code: str) -> None:
    token = await start_login(client)
    body = json.dumps({"mfa_token": token, "code": code}).encode()
    response = await client.post(
        "/api/v1/auth/mfa/verify", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_failed"
