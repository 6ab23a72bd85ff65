"""Single-use emailed tokens (email verification, password reset), stored as hashes."""

import secrets
import uuid
from datetime import timedelta

from sqlmodel import col, update
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.security import sha256_hex
from app.models import OneTimeToken, TokenPurpose, User
from app.models.base import utcnow


def issue(db: AsyncSession, user: User, purpose: TokenPurpose, ttl_seconds: int) -> str:
    """Add a token to the caller's transaction and return its only plaintext copy (256 bits)."""
    token = secrets.token_urlsafe(32)
    db.add(
        OneTimeToken(
            user_id=user.id,
            purpose=purpose,
            token_hash=sha256_hex(f"{purpose}:{token}"),
            expires_at=utcnow() + timedelta(seconds=ttl_seconds),
        )
    )
    return token


async def consume(db: AsyncSession, token: str, purpose: TokenPurpose) -> User | None:
    """Mark the token used and return its user; None when unknown, used, expired or misused.

    The purpose is part of the hash, so a reset token never verifies an email and vice versa.
    """
    now = utcnow()
    result = await db.exec(
        update(OneTimeToken)
        .where(
            col(OneTimeToken.token_hash) == sha256_hex(f"{purpose}:{token}"),
            col(OneTimeToken.purpose) == purpose,
            col(OneTimeToken.used_at).is_(None),
            col(OneTimeToken.expires_at) > now,
        )
        .values(used_at=now)
        .returning(col(OneTimeToken.user_id))
    )
    user_id = result.scalar_one_or_none()
    if user_id is None:
        return None
    return await db.get(User, user_id)


async def revoke_all(db: AsyncSession, user_id: uuid.UUID) -> None:
    """Kill every outstanding token of the user (their password or email changed)."""
    await db.exec(
        update(OneTimeToken)
        .where(col(OneTimeToken.user_id) == user_id, col(OneTimeToken.used_at).is_(None))
        .values(used_at=utcnow())
    )
