from urllib.parse import parse_qs, urlparse

from tests.conftest import PASSWORD, create_user, find_user

NEW_EMAIL = "  New.Person@Example.COM "


def token_from(email) -> str:
    link = next(word for word in email.text.split() if "token=" in word)
    assert link.startswith("https://frontend.example/verify-email?token=")
    return parse_qs(urlparse(link).query)["token"][0]


async def register(client, email=NEW_EMAIL, password=PASSWORD):
    return await client.post("/api/v1/auth/register", json={"email": email, "password": password})


async def test_register_sends_a_verification_link_and_login_waits_for_it(client, outbox, app, db):
    response = await register(client)
    assert response.status_code == 202
    await app.state.context.mailer.wait_idle()

    user = await find_user(db, "new.person@example.com")
    assert user is not None and not user.is_verified
    assert user.password_hash.startswith("$argon2id$")
    [message] = outbox.to("new.person@example.com", "Confirm")

    refused = await client.post(
        "/api/v1/auth/login", json={"email": "new.person@example.com", "password": PASSWORD}
    )
    assert refused.status_code == 403
    assert "verify" in refused.json()["detail"].lower()

    verified = await client.post("/api/v1/auth/verify-email", json={"token": token_from(message)})
    assert verified.status_code == 200
    await db.refresh(user)
    assert user.is_verified
    assert user.updated_at > user.created_at  # set by the database layer on every update
    assert (
        await client.post(
            "/api/v1/auth/login", json={"email": "new.person@example.com", "password": PASSWORD}
        )
    ).status_code == 200


async def test_email_links_ignore_the_host_header(client, outbox, app):
    """Links come from FRONTEND_URL: a forged Host cannot redirect a token to an attacker."""
    await client.post(
        "/api/v1/auth/register",
        json={"email": "host@example.com", "password": PASSWORD},
        headers={"Host": "evil.example", "X-Forwarded-Host": "evil.example"},
    )
    await app.state.context.mailer.wait_idle()
    assert "evil.example" not in outbox[0].text + outbox[0].html
    token_from(outbox[0])  # and the link points at the frontend


async def test_verification_token_works_once(client, outbox, app):
    await register(client)
    await app.state.context.mailer.wait_idle()
    token = token_from(outbox[0])
    assert (
        await client.post("/api/v1/auth/verify-email", json={"token": token})
    ).status_code == 200
    again = await client.post("/api/v1/auth/verify-email", json={"token": token})
    assert again.status_code == 400
    assert "invalid or has expired" in again.json()["detail"]


async def test_verification_token_is_stored_only_as_a_hash(client, outbox, app, db):
    from sqlmodel import select

    from app.models import OneTimeToken

    await register(client)
    await app.state.context.mailer.wait_idle()
    token = token_from(outbox[0])
    stored = (await db.exec(select(OneTimeToken))).all()
    assert len(stored) == 1
    assert token not in stored[0].token_hash
    assert len(token) >= 43  # 32 random bytes: 256 bits of entropy


async def test_register_existing_email_answers_the_same_and_notifies_the_owner(client, outbox, app):
    await create_user(app, "taken@example.com")
    fresh = await register(client, "fresh@example.com")
    taken = await register(client, "TAKEN@example.com")
    assert taken.status_code == fresh.status_code == 202
    assert taken.json() == fresh.json()
    await app.state.context.mailer.wait_idle()
    assert outbox.to("taken@example.com", "Someone tried to register")
    assert not outbox.to("taken@example.com", "Confirm")


async def test_short_password_is_rejected_with_a_reason(client, db):
    response = await register(client, password="short")
    assert response.status_code == 400
    assert "at least 15 characters" in response.json()["detail"]
    assert await find_user(db, "new.person@example.com") is None


async def test_malformed_email_is_a_422(client):
    response = await register(client, email="not-an-email")
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "email"]
