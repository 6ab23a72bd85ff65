"""Logs, audit trail and CORS."""

import io
import json
import logging
import secrets as random

import pytest
from fastapi import FastAPI
from httpx import AsyncClient, Response
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.config import Settings
from app.core.logging import formatter
from app.models import AuditEvent, User
from app.services.email import ConsoleBackend, Email
from app.utils.cookies import CookieNames
from tests.helpers import PASSWORD, Outbox, create_user, link_token, login, make_settings

NEW_PASSWORD = "another long passphrase 42"
METRICS_TOKEN = random.token_urlsafe(32)


class LoggingOutbox(Outbox):
    """Keeps messages for the test and also logs them like the console backend does."""

    async def send(self, email: Email) -> None:
        await super().send(email)
        await ConsoleBackend(show_body=False).send(email)


@pytest.mark.parametrize(
    "settings", [make_settings(metrics_enabled=True, metrics_token=METRICS_TOKEN)]
)
async def test_a_full_flow_logs_no_password_or_token(
    app: FastAPI, client: AsyncClient, caplog: pytest.LogCaptureFixture, cookie: CookieNames
) -> None:
    """Neither in the records nor in the JSON lines production writes (every record of every
    logger, the request-id middleware's too), nor in /metrics."""
    caplog.set_level(logging.DEBUG)
    json_lines = io.StringIO()
    handler = logging.StreamHandler(json_lines)
    handler.setFormatter(formatter("json"))
    logging.getLogger().addHandler(handler)
    outbox = LoggingOutbox()
    app.state.context.mailer.backend = outbox
    mailer = app.state.context.mailer
    secrets = [PASSWORD, NEW_PASSWORD]

    await client.post(
        "/api/v1/auth/register", json={"email": "log@example.com", "password": PASSWORD}
    )
    await mailer.wait_idle()
    secrets.append(link_token(outbox[-1]))
    await client.post("/api/v1/auth/verify-email", json={"token": secrets[-1]})
    await client.post(
        "/api/v1/auth/login", json={"email": "log@example.com", "password": "wrong" * 4}
    )
    response = await login(client, "log@example.com")
    csrf = response.json()["csrf_token"]
    secrets += [csrf, client.cookies[cookie.access], client.cookies[cookie.refresh]]
    refreshed = await client.post("/api/v1/auth/refresh", headers={"X-CSRF-Token": csrf})
    secrets += [refreshed.json()["csrf_token"], client.cookies[cookie.refresh]]
    await client.post("/api/v1/auth/password/forgot", json={"email": "log@example.com"})
    await mailer.wait_idle()
    secrets.append(link_token(outbox[-1]))
    reset = await client.post(
        "/api/v1/auth/password/reset", json={"token": secrets[-1], "new_password": NEW_PASSWORD}
    )
    assert reset.status_code == 200
    # A client that sends a token where the request id goes (untrusted: dropped, and too long).
    await client.get("/health/live", headers={"X-Request-ID": secrets[-1]})
    await client.get("/health/live", headers={"X-Request-ID": client.cookies[cookie.refresh]})
    await mailer.wait_idle()
    metrics = await client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    logging.getLogger().removeHandler(handler)

    assert "log@example.com" in caplog.text  # the logs did capture the flow
    lines = [json.loads(line) for line in json_lines.getvalue().splitlines()]
    emails = [line for line in lines if line["message"].startswith("Email to log@example.com")]
    assert emails
    assert all(line.get("request_id") for line in emails)  # sent after their request, with its id
    assert metrics.status_code == 200
    assert "auth_logins_total" in metrics.text
    for secret in secrets:
        assert secret not in caplog.text
        assert secret not in json_lines.getvalue()
        assert secret not in metrics.text


async def test_security_events_are_audited(
    app: FastAPI, client: AsyncClient, db: AsyncSession, alice: User, cookie: CookieNames
) -> None:
    await client.post(
        "/api/v1/auth/login", json={"email": "alice@example.com", "password": "x" * 16}
    )
    await login(client)
    csrf = client.cookies[cookie.csrf]
    await client.post(
        "/api/v1/auth/password/change",
        headers={"X-CSRF-Token": csrf},
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
    )
    await client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf})
    events = (await db.exec(select(AuditEvent).order_by(col(AuditEvent.created_at)))).all()
    types = [event.type for event in events]
    assert types[:2] == ["login_failed", "login_succeeded"]
    assert "password_changed" in types and "session_revoked" in types
    failed = events[0]
    assert failed.user_id == alice.id
    assert failed.ip_address == "127.0.0.1"
    assert failed.user_agent is not None and "Firefox" in failed.user_agent


async def test_cors_allows_only_configured_origins(client: AsyncClient) -> None:
    async def preflight(origin: str) -> Response:
        return await client.options(
            "/api/v1/auth/login",
            headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
        )

    allowed = await preflight("https://frontend.example")
    assert allowed.headers["access-control-allow-origin"] == "https://frontend.example"
    assert allowed.headers["access-control-allow-credentials"] == "true"
    refused = await preflight("https://evil.example")
    assert "access-control-allow-origin" not in refused.headers


class TestPlainHttp:
    @pytest.fixture
    def settings(self) -> Settings:
        return make_settings(cookie_secure=False, cookie_samesite="strict")

    async def test_cookie_flags_follow_settings_and_hsts_is_off(
        self, app: FastAPI, client: AsyncClient
    ) -> None:
        await create_user(app)
        response = await login(client)
        for cookie in response.headers.get_list("set-cookie"):
            assert "Secure" not in cookie
            assert "SameSite=strict" in cookie
        assert "strict-transport-security" not in response.headers
