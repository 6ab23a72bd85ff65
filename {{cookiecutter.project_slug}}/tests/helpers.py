"""What tests share besides fixtures: the test settings, sign-in helpers and small probes.

The settings are handed to the app, to alembic and to subprocesses explicitly; nothing here
rewrites this process's environment.
"""

import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any, TypedDict
from urllib.parse import parse_qs, urlparse

import pyotp
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from alembic.config import Config
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient, Response
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.config import Settings
from app.core.permissions import RoleName
from app.models import Role, User, UserRole
from app.services import users
from app.services.email import Email

PROJECT = Path(__file__).resolve().parent.parent
SEEDED_ROLES = tuple(RoleName)
PASSWORD = "correct horse battery staple"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
ALICE = "alice@example.com"

# Without TEST_DATABASE_URL: a SQLite file in a directory the session fixture removes.
SQLITE_DIR = None if os.environ.get("TEST_DATABASE_URL") else tempfile.mkdtemp(prefix="auth-tests-")
TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL") or (
    f"sqlite+aiosqlite:///{SQLITE_DIR}/test.db"
)
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL") or None
# Cheap argon2 parameters keep the suite fast; the hashing code path is the same.
TEST_SETTINGS: dict[str, Any] = {
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
    # Tests purge when they mean to (tests/test_retention.py), never in the background.
    "purge_interval_seconds": 0,
    # Mail goes out right after the commit that queued it (`mailer.wait_idle()` waits for that);
    # no worker looks for due mail in the background unless a test starts one.
    "mail_poll_seconds": 0,
}


def make_settings(**overrides: Any) -> Settings:
    return Settings(_env_file=None, **{**TEST_SETTINGS, **overrides})


def subprocess_environment(**overrides: str) -> dict[str, str]:
    """The environment of a subprocess (CLI, alembic, a server) that must see the test settings."""
    environ = {key.upper(): _env_value(value) for key, value in TEST_SETTINGS.items()}
    return {**os.environ, **environ, **overrides}


def import_app(cwd: Path, environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`from app.main import app` in a fresh interpreter: how a server process starts, with
    `environment` and no `.env` (`cwd` holds none)."""
    return subprocess.run(
        [sys.executable, "-c", "from app.main import app"],
        cwd=cwd,
        env={**environment, "PYTHONPATH": str(PROJECT)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _env_value(value: object) -> str:
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    return "" if value is None else str(value)


def alembic_config(database_url: str = TEST_DATABASE_URL) -> Config:
    """alembic.ini with the database handed over directly (alembic/env.py reads it first)."""
    config = Config(str(PROJECT / "alembic.ini"))
    config.attributes["database_url"] = database_url
    return config


class Outbox(list[Email]):
    """An email backend that keeps messages for the test to read."""

    async def send(self, email: Email) -> None:
        self.append(email)

    def to(self, address: str, subject_part: str = "") -> list[Email]:
        return [m for m in self if m.to == address and subject_part in m.subject]


def free_port() -> int:
    """A loopback port nothing listens on: for a server a test starts, or one that is down."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Inbox:
    """What a real SMTP server (`smtp_server`) received."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


def smtp_server(port: int, inbox: Inbox) -> Controller:
    """A real SMTP server (aiosmtpd) on a loopback `port`, started, delivering into `inbox`;
    the caller stops it."""
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    return controller


def smtp_settings(port: int, **overrides: Any) -> Settings:
    """The test settings, sending through the SMTP server on `port` (without TLS)."""
    return make_settings(smtp_host="127.0.0.1", smtp_port=port, smtp_tls=False, **overrides)


def text_parts(message: Message) -> dict[str, str]:
    """A received message's bodies by content type: text/plain and text/html."""
    parts = {}
    for part in message.walk():
        if not part.is_multipart():
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            parts[part.get_content_type()] = payload.decode()
    return parts


def link_token(email: Email, page: str | None = None) -> str:
    """The token of the link an email carries; with `page`, the link must lead to that page."""
    link = next(word for word in email.text.split() if "token=" in word)
    if page is not None:
        assert link.startswith(f"https://frontend.example/{page}?token="), link
    return parse_qs(urlparse(link).query)["token"][0]


async def create_user(
    app: FastAPI, email: str = ALICE, password: str = PASSWORD, **fields: object
) -> User:
    """A verified, active user straight in the database."""
    context = app.state.context
    async with app.state.sessionmaker() as db:
        user = await users.create_user(
            db, email, await context.hasher.hash(password), is_verified=True
        )
        assert user is not None
        for name, value in fields.items():
            setattr(user, name, value)
        db.add(user)
        await db.commit()
        return user


async def login(client: AsyncClient, email: str = ALICE, password: str = PASSWORD) -> Response:
    """Sign in as a browser does (cookies); fails the test unless it succeeds."""
    response = await client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return response


class Tokens(TypedDict):
    access_token: str
    refresh_token: str
    token_type: str


async def api_tokens(client: AsyncClient, email: str = ALICE, password: str = PASSWORD) -> Tokens:
    """Sign in as an API client does (the token endpoint); fails the test unless it succeeds."""
    form = {"username": email, "password": password}
    response = await client.post("/api/v1/auth/token", data=form)
    assert response.status_code == 200, response.text
    tokens: Tokens = response.json()
    return tokens


def bearer(access_token: str) -> dict[str, str]:
    """The header an API client sends its access token in."""
    return {"Authorization": f"Bearer {access_token}"}


async def refresh(client: AsyncClient, refresh_token: str, **headers: str) -> Response:
    """Rotate a refresh token the API-client way (in the body)."""
    body = {"refresh_token": refresh_token}
    return await client.post("/api/v1/auth/refresh", json=body, headers=headers)


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


async def find_user(db: AsyncSession, email: str) -> User | None:
    return (await db.exec(select(User).where(User.email == email))).first()


Calls = list[tuple[Any, ...]]  # the positional arguments of each recorded call


def count_calls(monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> Calls:
    """Record each call of `owner.name` (still calling through) and return the record."""
    calls: Calls = []
    original: Callable[..., object] = getattr(owner, name)

    def counting(*args: object, **kwargs: object) -> object:
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, counting)
    return calls


class Clock:
    """The service's clock (app/core/clock.py) in a test: real time, plus however far the test
    has moved it. Time keeps running, so ordering by timestamp still works."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.timestamp(), UTC)

    def timestamp(self) -> float:
        return time.time() + self.offset

    def monotonic(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


# --- second factors


class TotpApp:
    """An authenticator app holding one TOTP secret, reading the service's (test) clock."""

    PERIOD = 30

    def __init__(self, secret: str, clock: Clock) -> None:
        self.secret = secret
        self.clock = clock

    def code(self, steps: int = 0) -> str:
        """The code `steps` periods away from now (negative: a phone whose clock lags)."""
        at = self.clock.timestamp() + steps * self.PERIOD
        return pyotp.TOTP(self.secret).at(at)

    def next_code(self) -> str:
        """Wait (on the test clock) for the next code, to the middle of its period: a code is
        good once, and mid-period the test has 15 s before the step turns over."""
        now = self.clock.timestamp()
        self.clock.advance(self.PERIOD - now % self.PERIOD + self.PERIOD / 2)
        return self.code()


class TotpEnrolment(TypedDict):
    app: TotpApp
    recovery_codes: list[str]


async def enable_totp(client: AsyncClient, clock: Clock, **headers: str) -> TotpEnrolment:
    """Set up and turn on an authenticator app for the signed-in caller; fails the test unless
    both steps succeed."""
    setup = await client.post("/api/v1/auth/mfa/totp/setup", headers=headers)
    assert setup.status_code == 200, setup.text
    app = TotpApp(setup.json()["secret"], clock)
    body = {"code": app.next_code()}
    enabled = await client.post("/api/v1/auth/mfa/totp/enable", json=body, headers=headers)
    assert enabled.status_code == 200, enabled.text
    return {"app": app, "recovery_codes": enabled.json()["recovery_codes"]}


async def start_login(client: AsyncClient, email: str = ALICE, password: str = PASSWORD) -> str:
    """The first step of a browser sign-in of an account with a second factor: its mfa_token."""
    response = await client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    assert response.json()["mfa_required"] is True, response.text
    token: str = response.json()["mfa_token"]
    return token


async def start_token_login(
    client: AsyncClient, email: str = ALICE, password: str = PASSWORD
) -> str:
    """The same first step through the token endpoint (an API client)."""
    form = {"username": email, "password": password}
    response = await client.post("/api/v1/auth/token", data=form)
    assert response.status_code == 200, response.text
    assert response.json()["mfa_required"] is True, response.text
    token: str = response.json()["mfa_token"]
    return token


async def second_step(client: AsyncClient, mfa_token: str, code: str) -> Response:
    return await client.post("/api/v1/auth/mfa/verify", json={"mfa_token": mfa_token, "code": code})


def wrong_code(code: str) -> str:
    """Six digits other than `code`."""
    return f"{(int(code) + 1) % 1_000_000:06d}"


def device(app: FastAPI, user_agent: str = BROWSER, ip: str = "127.0.0.1") -> AsyncClient:
    """A client with a cookie jar of its own, not signed in: another device, or an API client."""
    return AsyncClient(
        transport=ASGITransport(app=app, client=(ip, 4000)),
        base_url="https://testserver",
        headers={"User-Agent": user_agent},
    )


async def walk_pages(
    client: AsyncClient, path: str, **params: str | int | bool
) -> list[dict[str, Any]]:
    """Every item of a keyset-paginated list, following `next_cursor` to the end."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await client.get(path, params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return items


async def give_role(app: FastAPI, user: User, role_name: str) -> None:
    async with app.state.sessionmaker() as db:
        role = (await db.exec(select(Role).where(Role.name == role_name))).one()
        db.add(UserRole(user_id=user.id, role_id=role.id))
        await db.commit()


# --- passkeys
from tests.authenticator import SoftAuthenticator  # noqa: E402 (this block keeps its own import)

# The test frontend is the passkeys' web origin, and its host their RP ID (SPEC §8 defaults).
FRONTEND_ORIGIN = "https://frontend.example"
RP_ID = "frontend.example"


async def register_passkey(
    client: AsyncClient, authenticator: SoftAuthenticator, name: str = "Laptop"
) -> dict[str, Any]:
    """Add a passkey to the signed-in `client`'s account, as a browser does: creation options,
    `navigator.credentials.create()`, then the attestation. Fails the test unless it is 201."""
    options = await client.post("/api/v1/auth/passkeys/register/options")
    assert options.status_code == 200, options.text
    credential = authenticator.create(options.json())
    body = {"credential": credential, "name": name}
    response = await client.post("/api/v1/auth/passkeys/register", json=body)
    assert response.status_code == 201, response.text
    passkey: dict[str, Any] = response.json()
    return passkey


async def passkey_options(client: AsyncClient, mfa_token: str | None = None) -> dict[str, Any]:
    """Request options for a passkey sign-in: usernameless, or the second step of `mfa_token`."""
    body = {} if mfa_token is None else {"mfa_token": mfa_token}
    response = await client.post("/api/v1/auth/passkeys/login/options", json=body)
    assert response.status_code == 200, response.text
    options: dict[str, Any] = response.json()
    return options


async def send_assertion(
    client: AsyncClient, credential: dict[str, Any], mfa_token: str | None = None
) -> Response:
    """Post an assertion (`navigator.credentials.get()` output) to the passkey sign-in."""
    body: dict[str, Any] = {"credential": credential}
    if mfa_token is not None:
        body["mfa_token"] = mfa_token
    return await client.post("/api/v1/auth/passkeys/login", json=body)


async def passkey_login(
    client: AsyncClient,
    authenticator: SoftAuthenticator,
    mfa_token: str | None = None,
    **forged: Any,
) -> Response:
    """A whole passkey sign-in: options, the authenticator's assertion (with whatever `forged`
    asks `SoftAuthenticator.get` to forge), then the sign-in. Returns the sign-in's answer."""
    options = await passkey_options(client, mfa_token)
    return await send_assertion(client, authenticator.get(options, **forged), mfa_token)


async def password_step(client: AsyncClient, email: str = ALICE, *, api: bool = False) -> str:
    """The first step for an account with a second factor: the `mfa_token` the right password
    earns, from /auth/login or (`api`) /auth/token."""
    return await (start_token_login if api else start_login)(client, email)
