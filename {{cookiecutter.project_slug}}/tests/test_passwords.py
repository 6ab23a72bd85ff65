"""Forgot / reset / change password, and the password policy."""

import pytest
from fastapi import FastAPI
from httpx import AsyncClient, Response

from app.core.config import Settings
from app.models import User
from app.utils.cookies import CookieNames
from tests.helpers import PASSWORD, Outbox, bearer, create_user, link_token, login

NEW_PASSWORD = "a much better passphrase 2026"


async def forgot(client: AsyncClient, app: FastAPI, email: str = "alice@example.com") -> Response:
    response = await client.post("/api/v1/auth/password/forgot", json={"email": email})
    await app.state.context.mailer.wait_idle()
    return response


async def test_forgot_password_answers_the_same_for_unknown_addresses(
    client: AsyncClient, app: FastAPI, alice: User, outbox: Outbox
) -> None:
    known = await forgot(client, app)
    unknown = await forgot(client, app, "nobody@example.com")
    assert known.status_code == unknown.status_code == 202
    assert known.json() == unknown.json()
    assert len(outbox.to("alice@example.com", "Reset")) == 1
    assert outbox.to("nobody@example.com") == []


async def test_reset_sets_the_password_and_ends_every_session(
    client: AsyncClient, app: FastAPI, alice: User, outbox: Outbox, cookie: CookieNames
) -> None:
    await login(client)
    old_access = client.cookies[cookie.access]
    await forgot(client, app)
    token = link_token(outbox.to("alice@example.com", "Reset")[0], "reset-password")

    response = await client.post(
        "/api/v1/auth/password/reset", json={"token": token, "new_password": NEW_PASSWORD}
    )
    assert response.status_code == 200
    assert "set-cookie" not in response.headers  # no automatic sign-in
    client.cookies.clear()
    assert (await client.get("/api/v1/users/me", headers=bearer(old_access))).status_code == 401
    await login(client, password=NEW_PASSWORD)
    await app.state.context.mailer.wait_idle()
    assert outbox.to("alice@example.com", "password was changed")

    again = await client.post(
        "/api/v1/auth/password/reset", json={"token": token, "new_password": NEW_PASSWORD + "!"}
    )
    assert again.status_code == 400


async def test_a_weak_new_password_does_not_burn_the_reset_token(
    client: AsyncClient, app: FastAPI, alice: User, outbox: Outbox
) -> None:
    await forgot(client, app)
    token = link_token(outbox[0], "reset-password")
    weak = await client.post(
        "/api/v1/auth/password/reset", json={"token": token, "new_password": "password"}
    )
    assert weak.status_code == 400
    ok = await client.post(
        "/api/v1/auth/password/reset", json={"token": token, "new_password": NEW_PASSWORD}
    )
    assert ok.status_code == 200


async def test_reset_token_cannot_verify_an_email(
    client: AsyncClient, app: FastAPI, alice: User, outbox: Outbox
) -> None:
    await forgot(client, app)
    token = link_token(outbox[0], "reset-password")
    response = await client.post("/api/v1/auth/verify-email", json={"token": token})
    assert response.status_code == 400


async def test_change_password_keeps_this_session_and_ends_the_others(
    app: FastAPI, signed_in: AsyncClient, outbox: Outbox
) -> None:
    from tests.test_sessions import second_device

    async with second_device(app) as phone:
        response = await signed_in.post(
            "/api/v1/auth/password/change",
            json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        )
        assert response.status_code == 204
        assert (await phone.get("/api/v1/users/me")).status_code == 401
    assert (await signed_in.get("/api/v1/users/me")).status_code == 200
    await app.state.context.mailer.wait_idle()
    assert outbox.to("alice@example.com", "password was changed")


async def test_change_password_needs_the_current_one(signed_in: AsyncClient) -> None:
    response = await signed_in.post(
        "/api/v1/auth/password/change",
        json={"current_password": "not my password at all", "new_password": NEW_PASSWORD},
    )
    assert response.status_code == 400
    assert response.json()["code"] == "wrong_password"


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        pytest.param("fourteen chars", "at least 15 characters", id="too-short"),
        # 43 ligatures are 129 code points once NFKC-normalised: lengths count the normal form
        pytest.param("\ufb03" * 43, "at most 128 characters", id="too-long-after-nfkc"),
        pytest.param("alice-is-my-favourite-name", "email address", id="has-email-local-part"),
    ],
)
async def test_policy_rejections_say_why(
    signed_in: AsyncClient, password: str, reason: str
) -> None:
    response = await signed_in.post(
        "/api/v1/auth/password/change",
        json={"current_password": PASSWORD, "new_password": password},
    )
    assert response.status_code == 400
    assert response.json()["code"] == "password_rejected"
    assert reason in response.json()["detail"]  # the sentence is for the user to act on


async def test_length_counts_code_points_not_bytes(signed_in: AsyncClient) -> None:
    emoji = "🔑🚪🏠🌳🌊🔥🍎🎵🚲📚🐢🦊🌙🍋🎲"  # 15 code points, 60 bytes in UTF-8
    response = await signed_in.post(
        "/api/v1/auth/password/change", json={"current_password": PASSWORD, "new_password": emoji}
    )
    assert response.status_code == 204


def test_common_passwords_are_refused_even_when_long_enough() -> None:
    from app.core.passwords import common_passwords, password_problem

    assert len(common_passwords()) >= 10_000
    assert "too common" in (password_problem("password", "a@b.co", 8) or "")
    long_common = next(p for p in common_passwords() if len(p) >= 10)
    assert "too common" in (password_problem(long_common, "a@b.co", 8) or "")


class TestLimitedAccount:
    @pytest.fixture
    def settings(self) -> Settings:
        from tests.helpers import make_settings

        return make_settings(rate_limit_login_account="2 per 15 minutes")

    async def test_a_locked_account_can_still_reset_its_password(
        self, client: AsyncClient, app: FastAPI, alice: User, outbox: Outbox
    ) -> None:
        for _ in range(3):
            await client.post(
                "/api/v1/auth/login", json={"email": "alice@example.com", "password": "w" * 20}
            )
        await forgot(client, app)
        token = link_token(outbox.to("alice@example.com", "Reset")[0], "reset-password")
        response = await client.post(
            "/api/v1/auth/password/reset", json={"token": token, "new_password": NEW_PASSWORD}
        )
        assert response.status_code == 200
        await login(client, password=NEW_PASSWORD)


async def test_reset_tokens_die_when_the_password_changes(
    signed_in: AsyncClient, app: FastAPI, outbox: Outbox
) -> None:
    await forgot(signed_in, app)
    token = link_token(outbox.to("alice@example.com", "Reset")[0], "reset-password")
    await signed_in.post(
        "/api/v1/auth/password/change",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
    )
    response = await signed_in.post(
        "/api/v1/auth/password/reset", json={"token": token, "new_password": NEW_PASSWORD + "x"}
    )
    assert response.status_code == 400


async def test_reset_tokens_die_when_the_email_changes(
    signed_in: AsyncClient, app: FastAPI, outbox: Outbox
) -> None:
    await forgot(signed_in, app)
    token = link_token(outbox.to("alice@example.com", "Reset")[0], "reset-password")
    await signed_in.patch(
        "/api/v1/users/me", json={"email": "alice@new.example", "current_password": PASSWORD}
    )
    await app.state.context.mailer.wait_idle()
    [confirm] = outbox.to("alice@new.example", "Confirm")
    change_token = link_token(confirm)
    confirmed = await signed_in.post("/api/v1/auth/verify-email", json={"token": change_token})
    assert confirmed.status_code == 200  # the change takes effect only now
    response = await signed_in.post(
        "/api/v1/auth/password/reset", json={"token": token, "new_password": NEW_PASSWORD}
    )
    assert response.status_code == 400


async def test_long_passwords_are_never_truncated(client: AsyncClient, app: FastAPI) -> None:
    password = "correct horse " * 9  # 126 code points, well past bcrypt's 72-byte cut-off
    await create_user(app, "long@example.com", password=password)
    assert (await login_attempt(client, "long@example.com", password[:72])).status_code == 401
    assert (await login_attempt(client, "long@example.com", password)).status_code == 200


async def login_attempt(client: AsyncClient, email: str, password: str) -> Response:
    return await client.post("/api/v1/auth/login", json={"email": email, "password": password})
