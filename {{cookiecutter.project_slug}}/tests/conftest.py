"""Test fixtures: a migrated database, a fresh app per test, an HTTPS client and a clock.

Set TEST_DATABASE_URL (SQLAlchemy async URL) to run against PostgreSQL, and
TEST_REDIS_URL to run the Redis rate-limiter tests against a real Redis.
Plain helpers and the test settings live in tests/helpers.py.
"""

import shutil
from collections.abc import AsyncIterator, Iterator

import pytest
from alembic import command
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlmodel import col, delete
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import clock as service_clock
from app.core.config import Settings
from app.main import create_app
from app.models import AuditEvent, OneTimeToken, Role, User
from app.models.outbox import OutboxMessage
from app.utils.cookies import CookieNames, cookie_names
from tests.helpers import (
    BROWSER,
    SEEDED_ROLES,
    SQLITE_DIR,
    TEST_REDIS_URL,
    Clock,
    Outbox,
    alembic_config,
    create_user,
    login,
    make_settings,
)


@pytest.fixture(scope="session", autouse=True)
def migrated_database() -> Iterator[None]:
    """Upgrade, downgrade and upgrade again: every run proves the migrations both ways."""
    config = alembic_config()
    command.upgrade(config, "head")
    command.downgrade(config, "base")
    command.upgrade(config, "head")
    yield
    if SQLITE_DIR:
        shutil.rmtree(SQLITE_DIR, ignore_errors=True)


@pytest.fixture(autouse=True)
async def empty_redis() -> AsyncIterator[None]:
    """Every test starts with no rate-limit counters in Redis."""
    if TEST_REDIS_URL is None:
        yield
        return
    from redis.asyncio import Redis

    redis = Redis.from_url(TEST_REDIS_URL)
    await redis.flushdb()
    yield
    await redis.aclose()


@pytest.fixture
def settings() -> Settings:
    return make_settings()


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with LifespanManager(application):
        yield application
    await clean_database(application)


async def clean_database(application: FastAPI) -> None:
    """Delete what tests create; the seeded roles and permissions stay."""
    async with application.state.sessionmaker() as db:
        for model in (AuditEvent, OneTimeToken, OutboxMessage, User):
            await db.exec(delete(model))
        await db.exec(delete(Role).where(col(Role.name).not_in(SEEDED_ROLES)))
        await db.commit()
    # The app's shutdown disposed of the engine; this cleaning opened a connection again.
    await application.state.sessionmaker.kw["bind"].dispose()


@pytest.fixture
def outbox(app: FastAPI) -> Outbox:
    box = Outbox()
    app.state.context.mailer.backend = box
    return box


@pytest.fixture
async def client(app: FastAPI, outbox: Outbox) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(
        transport=ASGITransport(app=app),
        base_url="https://testserver",
        headers={"User-Agent": BROWSER},
    ) as http:
        yield http


@pytest.fixture
async def db(app: FastAPI) -> AsyncIterator[AsyncSession]:
    async with app.state.sessionmaker() as session:
        yield session


@pytest.fixture
async def alice(app: FastAPI) -> User:
    return await create_user(app)


@pytest.fixture
async def signed_in(app: FastAPI, client: AsyncClient, alice: User) -> AsyncClient:
    """A client holding alice's cookies, with the CSRF header set as a browser app would.

    The sign-in's new-device notice is delivered before the test starts, so that no delivery
    holds the database while a test runs a blocking subprocess (the CLI)."""
    response = await login(client)
    client.headers["X-CSRF-Token"] = response.json()["csrf_token"]
    await app.state.context.mailer.wait_idle()
    return client


@pytest.fixture
def cookie(settings: Settings) -> CookieNames:
    """The auth cookies' names under this test's settings (they carry `__Host-` prefixes)."""
    return cookie_names(settings)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The service's clock, for a test to move forward instead of sleeping."""
    moved = Clock()
    monkeypatch.setattr(service_clock, "now", moved.now)
    monkeypatch.setattr(service_clock, "timestamp", moved.timestamp)
    monkeypatch.setattr(service_clock, "monotonic", moved.monotonic)
    return moved
