"""/users/me: reading, changing the email, and no mass assignment."""

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.permissions import RoleName, granted
from app.models import User
from tests.helpers import PASSWORD, Outbox, create_user, find_user


async def test_me_lists_roles_and_permissions(signed_in: AsyncClient) -> None:
    me = (await signed_in.get("/api/v1/users/me")).json()
    assert set(me) >= {"id", "email", "is_verified", "roles", "permissions"}
    assert "password_hash" not in me


@pytest.mark.parametrize(
    "field",
    [
        pytest.param({"roles": ["admin"]}, id="roles"),
        pytest.param({"is_active": True}, id="is_active"),
        pytest.param({"is_verified": True}, id="is_verified"),
        pytest.param({"permissions": ["users:write"]}, id="permissions"),
    ],
)
async def test_privileged_fields_cannot_be_assigned(
    signed_in: AsyncClient,
    db: AsyncSession,
    alice: User,
    field: dict[str, object],
) -> None:
    body = {"email": "alice@example.com", "current_password": PASSWORD, **field}
    response = await signed_in.patch("/api/v1/users/me", json=body)
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "extra_forbidden"
    me = (await signed_in.get("/api/v1/users/me")).json()
    assert me["roles"] == ["user"] and me["permissions"] == sorted(granted(RoleName.USER))


async def test_changing_the_email_waits_for_the_new_address_to_confirm(
    signed_in: AsyncClient, app: FastAPI, db: AsyncSession, outbox: Outbox
) -> None:
    response = await signed_in.patch(
        "/api/v1/users/me", json={"email": "Alice@New.example", "current_password": PASSWORD}
    )
    assert response.status_code == 200
    assert response.json()["email"] == "alice@example.com"
    assert response.json()["is_verified"] is True
    await app.state.context.mailer.wait_idle()
    assert outbox.to("alice@new.example", "Confirm your new email address")
    assert outbox.to("alice@example.com", "change of your email address was requested")
    assert await find_user(db, "alice@new.example") is None


async def test_changing_the_email_needs_the_current_password(
    signed_in: AsyncClient, db: AsyncSession
) -> None:
    response = await signed_in.patch(
        "/api/v1/users/me", json={"email": "x@new.example", "current_password": "not it at all"}
    )
    assert response.status_code == 400
    assert await find_user(db, "alice@example.com") is not None


async def test_an_address_in_use_is_not_revealed(
    signed_in: AsyncClient, app: FastAPI, outbox: Outbox
) -> None:
    await create_user(app, "bob@example.com")
    response = await signed_in.patch(
        "/api/v1/users/me", json={"email": "bob@example.com", "current_password": PASSWORD}
    )
    assert response.status_code == 200
    assert response.json()["email"] == "alice@example.com"
    await app.state.context.mailer.wait_idle()
    assert not outbox.to("bob@example.com", "Confirm")
    assert outbox.to("bob@example.com", "Someone tried")  # its owner hears of it
