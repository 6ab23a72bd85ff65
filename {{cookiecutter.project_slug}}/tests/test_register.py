from fastapi import FastAPI
from httpx import AsyncClient, Response
from sqlmodel.ext.asyncio.session import AsyncSession

from tests.helpers import PASSWORD, Outbox, create_user, find_user, link_token

NEW_EMAIL = "  New.Person@Example.COM "


async def register(
    client: AsyncClient, email: str = NEW_EMAIL, password: str = PASSWORD
) -> Response:
    return await client.post("/api/v1/auth/register", json={"email": email, "password": password})


async def test_register_sends_a_verification_link_and_login_waits_for_it(
    client: AsyncClient, outbox: Outbox, app: FastAPI, db: AsyncSession
) -> None:
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
    assert refused.json()["code"] == "email_not_verified"

    verified = await client.post("/api/v1/auth/verify-email", json={"token": link_token(message)})
    assert verified.status_code == 200
    await db.refresh(user)
    assert user.is_verified
    assert user.updated_at > user.created_at  # set by the database layer on every update
    assert (
        await client.post(
            "/api/v1/auth/login", json={"email": "new.person@example.com", "password": PASSWORD}
        )
    ).status_code == 200


async def test_email_links_ignore_the_host_header(
    client: AsyncClient, outbox: Outbox, app: FastAPI
) -> None:
    """Links come from FRONTEND_URL: a forged Host cannot redirect a token to an attacker."""
    await client.post(
        "/api/v1/auth/register",
        json={"email": "host@example.com", "password": PASSWORD},
        headers={"Host": "evil.example", "X-Forwarded-Host": "evil.example"},
    )
    await app.state.context.mailer.wait_idle()
    assert "evil.example" not in outbox[0].text + outbox[0].html
    link_token(outbox[0], "verify-email")  # the link leads to the frontend


async def test_verification_token_works_once(
    client: AsyncClient, outbox: Outbox, app: FastAPI
) -> None:
    await register(client)
    await app.state.context.mailer.wait_idle()
    token = link_token(outbox[0])
    assert (
        await client.post("/api/v1/auth/verify-email", json={"token": token})
    ).status_code == 200
    again = await client.post("/api/v1/auth/verify-email", json={"token": token})
    assert again.status_code == 400
    assert again.json()["code"] == "invalid_link"


async def test_verification_token_is_stored_only_as_a_hash(
    client: AsyncClient, outbox: Outbox, app: FastAPI, db: AsyncSession
) -> None:
    from sqlmodel import select

    from app.models import OneTimeToken

    await register(client)
    await app.state.context.mailer.wait_idle()
    token = link_token(outbox[0])
    stored = (await db.exec(select(OneTimeToken))).all()
    assert len(stored) == 1
    assert token not in stored[0].token_hash
    assert len(token) >= 43  # 32 random bytes: 256 bits of entropy


async def test_register_existing_email_answers_the_same_and_notifies_the_owner(
    client: AsyncClient, outbox: Outbox, app: FastAPI
) -> None:
    await create_user(app, "taken@example.com")
    fresh = await register(client, "fresh@example.com")
    taken = await register(client, "TAKEN@example.com")
    assert taken.status_code == fresh.status_code == 202
    assert taken.json() == fresh.json()
    await app.state.context.mailer.wait_idle()
    assert outbox.to("taken@example.com", "Someone tried to register")
    assert not outbox.to("taken@example.com", "Confirm")


async def test_short_password_is_rejected_with_a_reason(
    client: AsyncClient, db: AsyncSession
) -> None:
    response = await register(client, password="short")
    assert response.status_code == 400
    assert response.json()["code"] == "password_rejected"
    assert "at least 15 characters" in response.json()["detail"]  # the user must learn the rule
    assert await find_user(db, "new.person@example.com") is None


async def test_malformed_email_is_a_422(client: AsyncClient) -> None:
    response = await register(client, email="not-an-email")
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "email"]
