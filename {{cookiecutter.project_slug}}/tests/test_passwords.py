"""Forgot / reset / change password, and the password policy."""

from urllib.parse import parse_qs, urlparse

import pytest

from tests.conftest import PASSWORD, create_user, login

NEW_PASSWORD = "a much better passphrase 2026"


def reset_token(message) -> str:
    link = next(word for word in message.text.split() if "token=" in word)
    assert link.startswith("https://frontend.example/reset-password?token=")
    return parse_qs(urlparse(link).query)["token"][0]


async def forgot(client, app, email="alice@example.com"):
    response = await client.post("/api/v1/auth/password/forgot", json={"email": email})
    await app.state.context.mailer.wait_idle()
    return response


async def test_forgot_password_answers_the_same_for_unknown_addresses(client, app, alice, outbox):
    known = await forgot(client, app)
    unknown = await forgot(client, app, "nobody@example.com")
    assert known.status_code == unknown.status_code == 202
    assert known.json() == unknown.json()
    assert len(outbox.to("alice@example.com", "Reset")) == 1
    assert outbox.to("nobody@example.com") == []


async def test_reset_sets_the_password_and_ends_every_session(client, app, alice, outbox, cookie):
    await login(client)
    old_access = client.cookies[cookie.access]
    await forgot(client, app)
    token = reset_token(outbox.to("alice@example.com", "Reset")[0])

    response = await client.post(
        "/api/v1/auth/password/reset", json={"token": token, "new_password": NEW_PASSWORD}
    )
    assert response.status_code == 200
    assert "set-cookie" not in response.headers  # no automatic sign-in
    client.cookies.clear()
    headers = {"Authorization": f"Bearer {old_access}"}
    assert (await client.get("/api/v1/users/me", headers=headers)).status_code == 401
    await login(client, password=NEW_PASSWORD)
    await app.state.context.mailer.wait_idle()
    assert outbox.to("alice@example.com", "password was changed")

    again = await client.post(
        "/api/v1/auth/password/reset", json={"token": token, "new_password": NEW_PASSWORD + "!"}
    )
    assert again.status_code == 400


async def test_a_weak_new_password_does_not_burn_the_reset_token(client, app, alice, outbox):
    await forgot(client, app)
    token = reset_token(outbox[0])
    weak = await client.post(
        "/api/v1/auth/password/reset", json={"token": token, "new_password": "password"}
    )
    assert weak.status_code == 400
    ok = await client.post(
        "/api/v1/auth/password/reset", json={"token": token, "new_password": NEW_PASSWORD}
    )
    assert ok.status_code == 200


async def test_reset_token_cannot_verify_an_email(client, app, alice, outbox):
    await forgot(client, app)
    token = reset_token(outbox[0])
    response = await client.post("/api/v1/auth/verify-email", json={"token": token})
    assert response.status_code == 400


async def test_change_password_keeps_this_session_and_ends_the_others(app, signed_in, outbox):
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


async def test_change_password_needs_the_current_one(signed_in):
    response = await signed_in.post(
        "/api/v1/auth/password/change",
        json={"current_password": "not my password at all", "new_password": NEW_PASSWORD},
    )
    assert response.status_code == 400
    assert response.json()["detail"] == "Current password is incorrect"


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        pytest.param("fourteen chars", "at least 15 characters", id="too-short"),
        # 43 ligatures are 129 code points once NFKC-normalised: lengths count the normal form
        pytest.param("\ufb03" * 43, "at most 128 characters", id="too-long-after-nfkc"),
        pytest.param("alice-is-my-favourite-name", "email address", id="has-email-local-part"),
    ],
)
async def test_policy_rejections_say_why(signed_in, password, reason):
    response = await signed_in.post(
        "/api/v1/auth/password/change",
        json={"current_password": PASSWORD, "new_password": password},
    )
    assert response.status_code == 400
    assert reason in response.json()["detail"]


async def test_length_counts_code_points_not_bytes(signed_in):
    emoji = "🔑🚪🏠🌳🌊🔥🍎🎵🚲📚🐢🦊🌙🍋🎲"  # 15 code points, 60 bytes in UTF-8
    response = await signed_in.post(
        "/api/v1/auth/password/change", json={"current_password": PASSWORD, "new_password": emoji}
    )
    assert response.status_code == 204


def test_common_passwords_are_refused_even_when_long_enough():
    from app.core.passwords import common_passwords, password_problem

    assert len(common_passwords()) >= 10_000
    assert "too common" in password_problem("password", "a@b.co", 8)
    long_common = next(p for p in common_passwords() if len(p) >= 10)
    assert "too common" in password_problem(long_common, "a@b.co", 8)


class TestLimitedAccount:
    @pytest.fixture
    def settings(self):
        from tests.conftest import make_settings

        return make_settings(rate_limit_login_account="2 per 15 minutes")

    async def test_a_locked_account_can_still_reset_its_password(self, client, app, alice, outbox):
        for _ in range(3):
            await client.post(
                "/api/v1/auth/login", json={"email": "alice@example.com", "password": "w" * 20}
            )
        await forgot(client, app)
        token = reset_token(outbox.to("alice@example.com", "Reset")[0])
        response = await client.post(
            "/api/v1/auth/password/reset", json={"token": token, "new_password": NEW_PASSWORD}
        )
        assert response.status_code == 200
        await login(client, password=NEW_PASSWORD)


async def test_reset_tokens_die_when_the_password_changes(signed_in, app, outbox):
    await forgot(signed_in, app)
    token = reset_token(outbox.to("alice@example.com", "Reset")[0])
    await signed_in.post(
        "/api/v1/auth/password/change",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
    )
    response = await signed_in.post(
        "/api/v1/auth/password/reset", json={"token": token, "new_password": NEW_PASSWORD + "x"}
    )
    assert response.status_code == 400


async def test_reset_tokens_die_when_the_email_changes(signed_in, app, outbox):
    await forgot(signed_in, app)
    token = reset_token(outbox.to("alice@example.com", "Reset")[0])
    await signed_in.patch(
        "/api/v1/users/me", json={"email": "alice@new.example", "current_password": PASSWORD}
    )
    await app.state.context.mailer.wait_idle()
    [confirm] = outbox.to("alice@new.example", "Confirm")
    change_token = confirm.text.split("token=")[1].split()[0]
    confirmed = await signed_in.post("/api/v1/auth/verify-email", json={"token": change_token})
    assert confirmed.status_code == 200  # the change takes effect only now
    response = await signed_in.post(
        "/api/v1/auth/password/reset", json={"token": token, "new_password": NEW_PASSWORD}
    )
    assert response.status_code == 400


async def test_long_passwords_are_never_truncated(client, app):
    password = "correct horse " * 9  # 126 code points, well past bcrypt's 72-byte cut-off
    await create_user(app, "long@example.com", password=password)
    assert (await login_attempt(client, "long@example.com", password[:72])).status_code == 401
    assert (await login_attempt(client, "long@example.com", password)).status_code == 200


async def login_attempt(client, email, password):
    return await client.post("/api/v1/auth/login", json={"email": email, "password": password})
