"""Single-use emailed tokens (email verification, password reset, email change), stored as
hashes. Only the newest link of each purpose works: asking again revokes the older ones."""

import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.security import sha256_hex
from app.models import OneTimeToken, TokenPurpose, User
from app.models.base import utcnow


@dataclass(frozen=True, slots=True)
class Redeemed:
    user: User
    purpose: TokenPurpose
    new_email: str | None


def _hash(purpose: TokenPurpose, token: str) -> str:
    return sha256_hex(f"{purpose}:{token}")


async def issue(
    db: AsyncSession,
    user: User,
    purpose: TokenPurpose,
    ttl_seconds: int,
    *,
    new_email: str | None = None,
) -> str:
    """Add a token to the caller's transaction, revoking the user's older ones of the same
    purpose, and return its only plaintext copy (256 bits).

    The user's row is locked first (PostgreSQL; SQLite serialises writers anyway), so two
    concurrent requests cannot each revoke before the other inserts and leave two live links.
    """
    now = utcnow()
    await db.exec(select(User.id).where(col(User.id) == user.id).with_for_update())
    await db.exec(
        update(OneTimeToken)
        .where(
            col(OneTimeToken.user_id) == user.id,
            col(OneTimeToken.purpose) == purpose,
            col(OneTimeToken.used_at).is_(None),
        )
        .values(used_at=now)
    )
    token = secrets.token_urlsafe(32)
    db.add(
        OneTimeToken(
            user_id=user.id,
            purpose=purpose,
            token_hash=_hash(purpose, token),
            expires_at=now + timedelta(seconds=ttl_seconds),
            new_email=new_email,
        )
    )
    return token


async def redeem(db: AsyncSession, token: str, purposes: Iterable[TokenPurpose]) -> Redeemed | None:
    """Mark the token used and say what it was for; None when unknown, used, expired or of
    another purpose. One conditional statement, so concurrent uses succeed once.

    The purpose is part of the hash, so a reset token never verifies an email and vice versa.
    """
    wanted = list(purposes)
    now = utcnow()
    result = await db.exec(
        update(OneTimeToken)
        .where(
            col(OneTimeToken.token_hash).in_([_hash(purpose, token) for purpose in wanted]),
            col(OneTimeToken.purpose).in_(wanted),
            col(OneTimeToken.used_at).is_(None),
            col(OneTimeToken.expires_at) > now,
        )
        .values(used_at=now)
        .returning(
            col(OneTimeToken.user_id), col(OneTimeToken.purpose), col(OneTimeToken.new_email)
        )
    )
    row = result.one_or_none()
    if row is None:
        return None
    user = await db.get(User, row[0])
    if user is None:
        return None
    return Redeemed(user, TokenPurpose(row[1]), row[2])


async def consume(db: AsyncSession, token: str, purpose: TokenPurpose) -> User | None:
    """Mark a token of this one purpose used and return its user (see `redeem`)."""
    redeemed = await redeem(db, token, (purpose,))
    return redeemed.user if redeemed else None


async def revoke_all(db: AsyncSession, user_id: uuid.UUID) -> None:
    """Kill every outstanding token of the user (their password or email changed)."""
    await db.exec(
        update(OneTimeToken)
        .where(col(OneTimeToken.user_id) == user_id, col(OneTimeToken.used_at).is_(None))
        .values(used_at=utcnow())
    )
