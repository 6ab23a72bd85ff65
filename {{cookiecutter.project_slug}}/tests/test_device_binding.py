"""Session fingerprints, IP changes, idle and absolute expiry."""

from datetime import timedelta

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.config import Settings
from app.models import AuditEvent, DeviceSession, User
from app.models.base import utcnow
from tests.helpers import Clock, api_tokens, bearer, make_settings, refresh

FIREFOX_134 = "Mozilla/5.0 (X11; Linux x86_64; rv:134.0) Gecko/20100101 Firefox/134.0"
CHROME_LINUX = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)


async def test_a_browser_update_keeps_the_session(client: AsyncClient, alice: User) -> None:
    tokens = await api_tokens(client)  # signed in with Firefox 133
    response = await refresh(client, tokens["refresh_token"], **{"User-Agent": FIREFOX_134})
    assert response.status_code == 200


async def test_an_ip_change_is_audited_but_never_refused(
    app: FastAPI, alice: User, db: AsyncSession
) -> None:
    async def from_ip(ip: str) -> AsyncClient:
        transport = ASGITransport(app=app, client=(ip, 5000))
        return AsyncClient(transport=transport, base_url="https://testserver")

    async with await from_ip("203.0.113.1") as home:
        tokens = await api_tokens(home)
    async with await from_ip("198.51.100.2") as mobile:
        response = await refresh(mobile, tokens["refresh_token"])
    assert response.status_code == 200
    session = (await db.exec(select(DeviceSession))).one()
    assert session.ip_address == "203.0.113.1"
    assert session.last_ip_address == "198.51.100.2"
    event = (await db.exec(select(AuditEvent).where(AuditEvent.type == "session_ip_changed"))).one()
    assert event.detail == "203.0.113.1 -> 198.51.100.2"


class TestWarnBinding:
    @pytest.fixture
    def settings(self) -> Settings:
        return make_settings(session_binding="warn")

    async def test_another_device_is_recorded_and_let_through(
        self, client: AsyncClient, alice: User, db: AsyncSession
    ) -> None:
        tokens = await api_tokens(client)
        response = await refresh(client, tokens["refresh_token"], **{"User-Agent": CHROME_LINUX})
        assert response.status_code == 200
        types = (await db.exec(select(AuditEvent.type))).all()
        assert "session_fingerprint_mismatch" in types


class TestBindingOff:
    @pytest.fixture
    def settings(self) -> Settings:
        return make_settings(session_binding="off")

    async def test_another_device_passes_silently(
        self, client: AsyncClient, alice: User, db: AsyncSession
    ) -> None:
        tokens = await api_tokens(client)
        response = await refresh(client, tokens["refresh_token"], **{"User-Agent": CHROME_LINUX})
        assert response.status_code == 200
        assert "session_fingerprint_mismatch" not in (await db.exec(select(AuditEvent.type))).all()


async def test_an_idle_session_expires_at_its_next_refresh(
    client: AsyncClient, alice: User, settings: Settings, clock: Clock
) -> None:
    tokens = await api_tokens(client)
    clock.advance(settings.session_idle_timeout_seconds + 1)
    response = await refresh(client, tokens["refresh_token"])
    assert response.status_code == 401
    assert response.json()["code"] == "session_idle"


async def test_an_expired_session_stops_access_at_once(
    client: AsyncClient, alice: User, db: AsyncSession
) -> None:
    tokens = await api_tokens(client)
    session = (await db.exec(select(DeviceSession))).one()
    session.expires_at = utcnow() - timedelta(seconds=1)
    db.add(session)
    await db.commit()
    headers = bearer(tokens["access_token"])
    assert (await client.get("/api/v1/users/me", headers=headers)).status_code == 401
    assert (await refresh(client, tokens["refresh_token"])).status_code == 401


@pytest.mark.parametrize(
    ("user_agent", "label"),
    [
        (FIREFOX_134, "Firefox on Linux"),
        (CHROME_LINUX, "Chrome on Linux"),
        ("curl/8.5.0", "curl"),
        ("", "Unknown device"),
    ],
)
def test_device_labels_are_readable(user_agent: str, label: str) -> None:
    from app.utils.user_agent import parse_device

    assert parse_device(user_agent).label == label
