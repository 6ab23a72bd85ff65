"""No account enumeration, and limits on every endpoint that sends email."""

import asyncio

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlmodel import func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.config import Settings
from app.models import User
from tests.helpers import PASSWORD, Outbox, create_user, make_settings


async def test_resend_answers_the_same_for_every_address(
    client: AsyncClient, app: FastAPI, outbox: Outbox
) -> None:
    await create_user(app, "verified@example.com")
    await client.post(
        "/api/v1/auth/register", json={"email": "new@example.com", "password": PASSWORD}
    )
    await app.state.context.mailer.wait_idle()
    outbox.clear()

    answers = [
        await client.post("/api/v1/auth/verify-email/resend", json={"email": email})
        for email in ("new@example.com", "verified@example.com", "nobody@example.com")
    ]
    assert {r.status_code for r in answers} == {202}
    assert len({r.text for r in answers}) == 1
    await app.state.context.mailer.wait_idle()
    assert [m.to for m in outbox] == ["new@example.com"]


async def test_concurrent_registrations_of_one_email_make_one_account(
    client: AsyncClient, app: FastAPI, db: AsyncSession
) -> None:
    body = {"email": "race@example.com", "password": PASSWORD}
    responses = await asyncio.gather(
        *(client.post("/api/v1/auth/register", json=body) for _ in range(5))
    )
    assert [r.status_code for r in responses] == [202] * 5
    await app.state.context.mailer.wait_idle()  # accounts are created after the response
    count = (await db.exec(select(func.count()).select_from(User))).one()
    assert count == 1


class TestEmailLimits:
    @pytest.fixture
    def settings(self) -> Settings:
        return make_settings(
            rate_limit_email="2/hour", rate_limit_email_ip="3/hour", rate_limit_register_ip="2/hour"
        )

    async def test_forgot_password_is_limited_per_email_case_insensitively(
        self, client: AsyncClient, alice: User
    ) -> None:
        codes = [
            (await client.post("/api/v1/auth/password/forgot", json={"email": email})).status_code
            for email in ("alice@example.com", "ALICE@example.com", "Alice@Example.com")
        ]
        assert codes == [202, 202, 429]

    async def test_resend_is_limited_per_ip_across_emails(self, client: AsyncClient) -> None:
        codes = [
            (
                await client.post("/api/v1/auth/verify-email/resend", json={"email": f"u{n}@x.io"})
            ).status_code
            for n in range(4)
        ]
        assert codes == [202, 202, 202, 429]

    async def test_register_is_limited_per_ip(self, client: AsyncClient) -> None:
        codes = [
            (
                await client.post(
                    "/api/v1/auth/register", json={"email": f"u{n}@x.io", "password": PASSWORD}
                )
            ).status_code
            for n in range(3)
        ]
        assert codes == [202, 202, 429]
