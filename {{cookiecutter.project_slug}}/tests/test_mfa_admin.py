"""When a user has lost their factors: an admin (`DELETE /admin/users/{id}/mfa`) or an operator
(`python -m app.cli reset-mfa EMAIL`) removes them (SPEC §8). Afterwards the password alone
signs the user in; the user is told, the event audited, and the privilege boundary of every
other admin write holds (SPEC §11)."""

import uuid
from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.config import Settings
from app.core.permissions import RoleName
from app.models import AuditEvent, MfaChallenge, Passkey, RecoveryCode, TotpFactor, User
from app.services.mfa import RESET_NOTICE
from tests.authenticator import SoftAuthenticator
from tests.helpers import (
    ALICE,
    Clock,
    Outbox,
    TotpApp,
    browser,
    create_user,
    device,
    enable_totp,
    give_role,
    make_settings,
    second_step,
    start_login,
)
from tests.test_attack_privileges import add_role
from tests.test_cli import cli

ROOT = "root@example.com"


@pytest.fixture
def settings() -> Settings:
    """Room for the sign-ins a test makes from one address: the IP limit is not the subject."""
    return make_settings(rate_limit_login_ip="1000/minute")


@pytest.fixture
async def root(app: FastAPI) -> AsyncIterator[AsyncClient]:
    """An admin, signed in (its own browser)."""
    user = await create_user(app, ROOT)
    await give_role(app, user, RoleName.ADMIN)
    async with browser(app, ROOT) as http:
        yield http


@pytest.fixture
async def totp(app: FastAPI, signed_in: AsyncClient, clock: Clock) -> TotpApp:
    """Alice with an authenticator app, recovery codes and a passkey; the notices of all that
    delivered already."""
    totp_app = (await enable_totp(signed_in, clock))["app"]
    authenticator = SoftAuthenticator("https://frontend.example")
    options = await signed_in.post("/api/v1/auth/passkeys/register/options")
    body = {"credential": authenticator.create(options.json()), "name": "Laptop"}
    assert (await signed_in.post("/api/v1/auth/passkeys/register", json=body)).status_code == 201
    await app.state.context.mailer.wait_idle()
    return totp_app


async def factors_of(db: AsyncSession, user_id: uuid.UUID) -> dict[str, int]:
    counts = {}
    for table in (TotpFactor, RecoveryCode, Passkey, MfaChallenge):
        rows = (await db.exec(select(table).where(table.user_id == user_id))).all()
        counts[table.__tablename__] = len(rows)
    return counts


NONE_LEFT = {"totp_factor": 0, "recovery_code": 0, "passkey": 0, "mfa_challenge": 0}


async def signs_in_with_the_password_alone(app: FastAPI, email: str = ALICE) -> None:
    async with browser(app, email):  # fails unless the password completes the sign-in
        pass


# --- DELETE /admin/users/{id}/mfa ---------------------------------------------------------------


async def test_an_admin_reset_removes_every_factor(
    app: FastAPI, root: AsyncClient, totp: TotpApp, alice: User, db: AsyncSession
) -> None:
    assert (await factors_of(db, alice.id))["passkey"] == 1
    response = await root.delete(f"/api/v1/admin/users/{alice.id}/mfa")
    assert response.status_code == 204, response.text
    assert await factors_of(db, alice.id) == NONE_LEFT
    await signs_in_with_the_password_alone(app)


async def test_an_admin_reset_ends_a_pending_second_step(
    app: FastAPI, root: AsyncClient, totp: TotpApp, alice: User
) -> None:
    async with device(app) as laptop:
        token = await start_login(laptop)
        await root.delete(f"/api/v1/admin/users/{alice.id}/mfa")
        response = await second_step(laptop, token, totp.next_code())
        assert response.status_code == 401
        assert response.json()["code"] == "invalid_mfa_token"


async def test_an_admin_reset_is_audited_with_who_did_it(
    root: AsyncClient, totp: TotpApp, alice: User, db: AsyncSession
) -> None:
    await root.delete(f"/api/v1/admin/users/{alice.id}/mfa")
    me = (await root.get("/api/v1/users/me")).json()
    events = await db.exec(
        select(AuditEvent.detail).where(
            AuditEvent.type == "mfa_reset", AuditEvent.user_id == alice.id
        )
    )
    assert events.all() == [f"by admin {me['id']}"]


async def test_an_admin_reset_is_told_to_the_owner(
    app: FastAPI, root: AsyncClient, totp: TotpApp, alice: User, outbox: Outbox
) -> None:
    outbox.clear()
    await root.delete(f"/api/v1/admin/users/{alice.id}/mfa")
    await app.state.context.mailer.wait_idle()
    [notice] = outbox.to(ALICE, "Your sign-in methods changed")
    assert RESET_NOTICE in notice.text


async def test_an_admin_reset_of_an_unknown_user_is_not_found(root: AsyncClient) -> None:
    response = await root.delete(f"/api/v1/admin/users/{uuid.uuid4()}/mfa")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


async def test_a_plain_user_cannot_reset_anyone(
    app: FastAPI, signed_in: AsyncClient, totp: TotpApp, alice: User, db: AsyncSession
) -> None:
    response = await signed_in.delete(f"/api/v1/admin/users/{alice.id}/mfa")
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    assert (await factors_of(db, alice.id))["totp_factor"] == 1


class TestPrivilegeBoundary:
    MANAGER = "manager@example.com"

    @pytest.fixture
    async def manager(self, app: FastAPI) -> AsyncIterator[AsyncClient]:
        """A partial admin: it may manage users, not grant or hold everything."""
        await add_role(app, "user-manager", frozenset({"users:read", "users:write"}))
        user = await create_user(app, self.MANAGER)
        await give_role(app, user, "user-manager")
        async with browser(app, self.MANAGER) as http:
            yield http

    async def test_a_partial_admin_cannot_reset_an_admin(
        self, app: FastAPI, root: AsyncClient, manager: AsyncClient, clock: Clock, db: AsyncSession
    ) -> None:
        await enable_totp(root, clock)
        admin = (await root.get("/api/v1/users/me")).json()
        response = await manager.delete(f"/api/v1/admin/users/{admin['id']}/mfa")
        assert response.status_code == 403
        assert response.json()["code"] == "privilege_escalation"
        assert (await factors_of(db, uuid.UUID(admin["id"])))["totp_factor"] == 1
        types = (await db.exec(select(AuditEvent.type))).all()
        assert "mfa_reset" not in types

    async def test_a_partial_admin_can_reset_a_plain_user(
        self, app: FastAPI, manager: AsyncClient, totp: TotpApp, alice: User, db: AsyncSession
    ) -> None:
        response = await manager.delete(f"/api/v1/admin/users/{alice.id}/mfa")
        assert response.status_code == 204, response.text
        assert await factors_of(db, alice.id) == NONE_LEFT


# --- python -m app.cli reset-mfa EMAIL ----------------------------------------------------------


async def test_the_cli_reset_removes_every_factor(
    app: FastAPI, totp: TotpApp, alice: User, db: AsyncSession
) -> None:
    result = cli("reset-mfa", "Alice@Example.com")
    assert result.returncode == 0, result.stderr
    assert f"Removed the second factors of {ALICE}" in result.stdout
    assert await factors_of(db, alice.id) == NONE_LEFT
    await signs_in_with_the_password_alone(app)


async def test_the_cli_reset_is_audited_and_told_to_the_owner(
    totp: TotpApp, alice: User, db: AsyncSession
) -> None:
    result = cli("reset-mfa", ALICE)
    assert result.returncode == 0, result.stderr
    events = await db.exec(select(AuditEvent.detail).where(AuditEvent.type == "mfa_reset"))
    assert events.all() == ["by operator"]
    assert f"Email to {ALICE}: Your sign-in methods changed" in result.stderr


def test_the_cli_reset_of_an_unknown_email_fails(app: FastAPI) -> None:  # app: cleans up after
    result = cli("reset-mfa", "nobody@example.com")
    assert result.returncode != 0
    assert "no user with email nobody@example.com" in result.stderr
