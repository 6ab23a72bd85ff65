"""Many users signed in, a user with many devices, and a deep admin-list cursor, made inside
the rendered project.

    python benchmarks/users_seed.py USERS SESSIONS PAGE_SIZE OUT_FILE USER_AGENT

run like `mfa_seed.py`: with the service's environment, its directory as the working directory
and on PYTHONPATH (`benchmarks/run.py` calls it before every round). Signing all of them in
through `POST /auth/login` would cost one argon2 verification per token (ten thousand of them
take minutes), so the rows go straight into the database through the service's own models, and
the access tokens are minted by the service's own `TokenCodec`, with its key, claims and
lifetime: to the service they are exactly what a login hands out.

- USERS users `user1@example.com` ... (the names `benchmarks/scale.py` seeds in SQL, so that
  under `--scale` the ones already there are reused), verified, with the default role and one
  live session each on the benchmark's device, and a fresh access token for every one of them:
  the `/users/me` row with distinct tokens. The service remembers the last 4,096 tokens it
  verified, so with more users than that every request is a memo miss.
- One user, `many-sessions@bench.example.com`, with SESSIONS live sessions, and a token for
  the newest: the session-list row.
- The `next_cursor` an admin would hold before the last full page of `GET /admin/users` at
  PAGE_SIZE a page, encoded by the service's own `encode_cursor`: the deep-page row.

Users and sessions are made once and found again by later calls; the tokens are new on every
call (an access token lives ACCESS_TOKEN_TTL_SECONDS, 15 minutes by default, and a run takes
longer than that). OUT_FILE gets JSON: `{"tokens": [...], "sessions_token", "deep_cursor"}`.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from app.core.config import Settings, get_settings
from app.core.tokens import TokenCodec
from app.db.session import create_engine, create_sessionmaker
from app.models import DeviceSession, Role, User, UserRole
from app.models.base import utcnow
from app.services.pages import encode_cursor
from app.services.users import DEFAULT_ROLE
from app.utils.user_agent import parse_device
from sqlmodel import col, func, select

MANY_SESSIONS_EMAIL = "many-sessions@bench.example.com"
UNUSABLE_HASH = "!benchmark user: signs in with a minted token only"  # never a valid hash
BATCH = 2_000  # rows per flush: keeps one statement's parameters within SQLite's limits


def user_email(number: int) -> str:
    """The i-th benchmark user, as `benchmarks/scale.py` names them in SQL too."""
    return f"user{number}@example.com"


def new_session(settings: Settings, user_id: uuid.UUID, user_agent: str) -> DeviceSession:
    """A live session on the benchmark's device, as `SessionService.start` opens one (the
    refresh token is never used: its hash is random)."""
    now = utcnow()
    device = parse_device(user_agent)
    return DeviceSession(
        user_id=user_id,
        created_at=now,
        last_seen_at=now,
        expires_at=now + timedelta(seconds=settings.refresh_token_ttl_seconds),
        ip_address="127.0.0.1",
        last_ip_address="127.0.0.1",
        user_agent=user_agent,
        device_label=device.label,
        fingerprint=device.fingerprint,
        refresh_token_hash=secrets.token_hex(32),
        refresh_issued_at=now,
        authenticated_at=now,
        auth_method="password",
    )


async def add_in_batches(db: Any, rows: list[Any]) -> None:
    for start in range(0, len(rows), BATCH):
        db.add_all(rows[start : start + BATCH])
        await db.flush()


async def users_with(db: Any, emails: list[str], role_id: uuid.UUID) -> list[User]:
    """The users of `emails`, in that order, made (verified, default role) when missing."""
    found: dict[str, User] = {}
    for start in range(0, len(emails), BATCH):
        chunk = emails[start : start + BATCH]
        for user in (await db.exec(select(User).where(col(User.email).in_(chunk)))).all():
            found[user.email] = user
    new = [
        User(email=email, password_hash=UNUSABLE_HASH, is_verified=True)
        for email in emails
        if email not in found
    ]
    await add_in_batches(db, new)
    await add_in_batches(db, [UserRole(user_id=user.id, role_id=role_id) for user in new])
    found.update((user.email, user) for user in new)
    return [found[email] for email in emails]


async def live_sessions(db: Any, user_ids: list[uuid.UUID], user_agent: str) -> dict:
    """user id -> ids of its live sessions on the benchmark's device, newest first."""
    sessions: dict[uuid.UUID, list[uuid.UUID]] = {}
    for start in range(0, len(user_ids), BATCH):
        rows = await db.exec(
            select(DeviceSession.user_id, DeviceSession.id)
            .where(
                col(DeviceSession.user_id).in_(user_ids[start : start + BATCH]),
                col(DeviceSession.user_agent) == user_agent,
                col(DeviceSession.revoked_at).is_(None),
                col(DeviceSession.expires_at) > utcnow(),
            )
            .order_by(col(DeviceSession.created_at).desc())
        )
        for user_id, session_id in rows:
            sessions.setdefault(user_id, []).append(session_id)
    return sessions


async def signed_in(
    db: Any, settings: Settings, users: list[User], per_user: int, user_agent: str
) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """(user id, session id) of the newest live session of each user, after giving every user
    `per_user` of them."""
    sessions = await live_sessions(db, [user.id for user in users], user_agent)
    new = [
        new_session(settings, user.id, user_agent)
        for user in users
        for _ in range(per_user - len(sessions.get(user.id, [])))
    ]
    await add_in_batches(db, new)
    for session in new:
        sessions.setdefault(session.user_id, []).insert(0, session.id)
    return [(user.id, sessions[user.id][0]) for user in users]


async def deep_cursor(db: Any, page_size: int) -> str | None:
    """The cursor after which `GET /admin/users` shows its last full page (sign-up order)."""
    total = (await db.exec(select(func.count()).select_from(User))).one()
    row = (
        await db.exec(
            select(User.created_at, User.id)
            .order_by(col(User.created_at), col(User.id))
            .offset(max(total - page_size - 1, 0))
            .limit(1)
        )
    ).first()
    return encode_cursor((row[0], row[1])) if row is not None else None


async def main(users: int, sessions: int, page_size: int, out: Path, user_agent: str) -> None:
    settings = get_settings()
    engine = create_engine(settings)
    codec = TokenCodec(settings)
    try:
        async with create_sessionmaker(engine)() as db:
            role = (await db.exec(select(Role).where(Role.name == DEFAULT_ROLE))).one()
            many = await users_with(db, [user_email(i) for i in range(1, users + 1)], role.id)
            pairs = await signed_in(db, settings, many, 1, user_agent)
            (one,) = await users_with(db, [MANY_SESSIONS_EMAIL], role.id)
            (busy,) = await signed_in(db, settings, [one], sessions, user_agent)
            await db.commit()
            cursor = await deep_cursor(db, page_size)
    finally:
        await engine.dispose()
    now = utcnow()
    out.write_text(
        json.dumps(
            {
                "tokens": [codec.access_token(user, session, now) for user, session in pairs],
                "sessions_token": codec.access_token(*busy, now),
                "deep_cursor": cursor,
            }
        )
    )


if __name__ == "__main__":
    if len(sys.argv) != 6:
        sys.exit(__doc__)
    users, sessions, page_size = (int(value) for value in sys.argv[1:4])
    asyncio.run(main(users, sessions, page_size, Path(sys.argv[4]), sys.argv[5]))
