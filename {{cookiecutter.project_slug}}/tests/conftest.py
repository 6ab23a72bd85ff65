"""Test fixtures: a migrated database, a fresh app per test and an HTTPS client.

Set TEST_DATABASE_URL (SQLAlchemy async URL) to run against PostgreSQL, and
TEST_REDIS_URL to run the Redis rate-limiter tests against a real Redis.
"""

import os
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

# Without TEST_DATABASE_URL: a SQLite file in a directory removed when the run ends.
SQLITE_DIR = None if os.environ.get("TEST_DATABASE_URL") else tempfile.mkdtemp(prefix="auth-tests-")
TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL") or (
    f"sqlite+aiosqlite:///{SQLITE_DIR}/test.db"
)
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL") or None
# Cheap argon2 parameters keep the suite fast; the hashing code path is the same.
TEST_SETTINGS = {
    "environment": "test",
    "secret_key": secrets.token_urlsafe(48),
    "database_url": TEST_DATABASE_URL,
    # With TEST_REDIS_URL every test runs on the Redis limiter: same behaviour, both backends.
    "redis_url": TEST_REDIS_URL,
    "argon2_time_cost": 1,
    "argon2_memory_cost": 1024,
    "argon2_parallelism": 1,
    "frontend_url": "https://frontend.example",
    "cors_origins": ["https://frontend.example"],
    "smtp_host": None,
}
# Importing app.main builds the module-level app, which reads the environment.
os.environ.update({key.upper(): str(value or "") for key, value in TEST_SETTINGS.items()})
os.environ["CORS_ORIGINS"] = ",".join(TEST_SETTINGS["cors_origins"])

from alembic import command  # noqa: E402
from alembic.config import Config  # noqa: E402
from asgi_lifespan import LifespanManager  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from httpx import ASGITransport, AsyncClient  # noqa: E402
from sqlmodel import col, delete, select  # noqa: E402
from sqlmodel.ext.asyncio.session import AsyncSession  # noqa: E402

from app.core.config import Settings, get_settings  # noqa: E402
from app.core.permissions import RoleName  # noqa: E402
from app.main import create_app  # noqa: E402
from app.models import AuditEvent, OneTimeToken, Role, User  # noqa: E402
from app.services import users  # noqa: E402
from app.services.email import Email  # noqa: E402
from app.utils.cookies import CookieNames, cookie_names  # noqa: E402

PROJECT = Path(__file__).resolve().parent.parent
SEEDED_ROLES = tuple(RoleName)
PASSWORD = "correct horse battery staple"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"


def make_settings(**overrides: object) -> Settings:
    return Settings(_env_file=None, **{**TEST_SETTINGS, **overrides})  # type: ignore[arg-type]


def alembic_config() -> Config:
    return Config(str(PROJECT / "alembic.ini"))


@pytest.fixture(scope="session", autouse=True)
def migrated_database() -> Iterator[None]:
    """Upgrade, downgrade and upgrade again: every run proves the migrations both ways."""
    get_settings.cache_clear()
    config = alembic_config()
    command.upgrade(config, "head")
    command.downgrade(config, "base")
    command.upgrade(config, "head")
    yield
    if SQLITE_DIR:
        shutil.rmtree(SQLITE_DIR, ignore_errors=True)


class Outbox(list[Email]):
    """An email backend that keeps messages for the test to read."""

    async def send(self, email: Email) -> None:
        self.append(email)

    def to(self, address: str, subject_part: str = "") -> list[Email]:
        return [m for m in self if m.to == address and subject_part in m.subject]


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
        for model in (AuditEvent, OneTimeToken, User):
            await db.exec(delete(model))
        await db.exec(delete(Role).where(col(Role.name).not_in(SEEDED_ROLES)))
        await db.commit()


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


async def create_user(
    app: FastAPI, email: str = "alice@example.com", password: str = PASSWORD, **fields: object
) -> User:
    """A verified, active user straight in the database."""
    context = app.state.context
    async with app.state.sessionmaker() as db:
        user = await users.create_user(
            db, email, await context.passwords.hash(password), is_verified=True
        )
        assert user is not None
        for name, value in fields.items():
            setattr(user, name, value)
        db.add(user)
        await db.commit()
        return user


@asynccontextmanager
async def browser(
    app: FastAPI,
    email: str,
    user_agent: str = BROWSER,
    ip: str = "127.0.0.1",
) -> AsyncIterator[AsyncClient]:
    """Another browser with its own cookie jar, signed in as `email`, CSRF header set."""
    async with AsyncClient(
        transport=ASGITransport(app=app, client=(ip, 4000)),
        base_url="https://testserver",
        headers={"User-Agent": user_agent},
    ) as http:
        response = await login(http, email)
        http.headers["X-CSRF-Token"] = response.json()["csrf_token"]
        yield http


async def login(client: AsyncClient, email: str = "alice@example.com", password: str = PASSWORD):
    response = await client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return response


async def find_user(db: AsyncSession, email: str) -> User | None:
    return (await db.exec(select(User).where(User.email == email))).first()


def count_calls(monkeypatch: pytest.MonkeyPatch, owner: type, name: str) -> list[tuple]:
    """Record each call of `owner.name` (still calling through) and return the record."""
    calls: list[tuple] = []
    original = getattr(owner, name)

    def counting(*args: object, **kwargs: object) -> object:
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, counting)
    return calls


@pytest.fixture
async def alice(app: FastAPI) -> User:
    return await create_user(app)


@pytest.fixture
async def signed_in(client: AsyncClient, alice: User) -> AsyncClient:
    """A client holding alice's cookies, with the CSRF header set as a browser app would."""
    response = await login(client)
    client.headers["X-CSRF-Token"] = response.json()["csrf_token"]
    return client


@pytest.fixture
def cookie(settings: Settings) -> CookieNames:
    """The auth cookies' names under this test's settings (they carry `__Host-` prefixes)."""
    return cookie_names(settings)
