"""Pending second steps and passkey ceremonies (`mfa_challenge` rows).

A challenge is found by the hash of its `mfa_token` (a password was right, a second factor is
awaited), or by the hash of its WebAuthn challenge when there is no token (a passkey sign-in
or registration). Each is single use, short-lived, and dies after `MAX_ATTEMPTS` wrong codes.
"""

import secrets
import uuid
from datetime import timedelta

from sqlmodel import col, delete, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.security import sha256_hex
from app.domain import SecondFactor, SignInFlow
from app.models import ChallengePurpose, MfaChallenge, Passkey, RecoveryCode, TotpFactor
from app.models.base import utcnow
from app.services.context import Context
from app.services.errors import InvalidMfaToken

MAX_ATTEMPTS = 5


def open_second_step(db: AsyncSession, ctx: Context, user_id: uuid.UUID, flow: SignInFlow) -> str:
    """Add a challenge to the caller's transaction; return its `mfa_token` (256 bits), whose
    only other copy is its hash."""
    token = secrets.token_urlsafe(32)
    add(db, ctx, token, ChallengePurpose.SECOND_FACTOR, user_id=user_id, flow=flow)
    return token


def add(
    db: AsyncSession,
    ctx: Context,
    key: str,
    purpose: ChallengePurpose,
    *,
    user_id: uuid.UUID | None = None,
    flow: SignInFlow = SignInFlow.BROWSER,
    webauthn_challenge: bytes | None = None,
) -> MfaChallenge:
    now = utcnow()
    challenge = MfaChallenge(
        token_hash=sha256_hex(key),
        user_id=user_id,
        purpose=purpose,
        flow=flow,
        webauthn_challenge=webauthn_challenge,
        created_at=now,
        expires_at=now + timedelta(seconds=ctx.settings.mfa_challenge_ttl_seconds),
    )
    db.add(challenge)
    return challenge


async def live(db: AsyncSession, key: str, purpose: ChallengePurpose) -> MfaChallenge:
    """The unused, unexpired challenge of this key and purpose, else 401."""
    challenge = (
        await db.exec(
            select(MfaChallenge)
            .where(col(MfaChallenge.token_hash) == sha256_hex(key))
            .execution_options(populate_existing=True)
        )
    ).first()
    if (
        challenge is None
        or challenge.purpose != purpose
        or challenge.used_at is not None
        or challenge.expires_at <= utcnow()
        or challenge.attempts >= MAX_ATTEMPTS
    ):
        raise InvalidMfaToken()
    return challenge


async def use(db: AsyncSession, challenge: MfaChallenge) -> None:
    """Mark it used, once: of two concurrent requests presenting it, one gets 401."""
    result = await db.exec(
        update(MfaChallenge)
        .where(col(MfaChallenge.id) == challenge.id, col(MfaChallenge.used_at).is_(None))
        .values(used_at=utcnow())
    )
    if result.rowcount != 1:
        raise InvalidMfaToken()


async def reserve_attempt(db: AsyncSession, challenge: MfaChallenge) -> None:
    """Count this attempt before its code is checked, and commit, as the login limiter
    reserves before verifying: a burst of concurrent guesses on one step gets at most
    `MAX_ATTEMPTS` checks however they interleave. A right code then uses the challenge; a
    wrong one leaves the attempt counted."""
    result = await db.exec(
        update(MfaChallenge)
        .where(
            col(MfaChallenge.id) == challenge.id,
            col(MfaChallenge.used_at).is_(None),
            col(MfaChallenge.attempts) < MAX_ATTEMPTS,
        )
        .values(attempts=col(MfaChallenge.attempts) + 1)
    )
    await db.commit()
    if result.rowcount != 1:
        raise InvalidMfaToken()


async def second_step_methods(db: AsyncSession, user_id: uuid.UUID) -> tuple[SecondFactor, ...]:
    """What can finish a sign-in of this user, in the order a client should offer them."""
    totp = await db.exec(
        select(TotpFactor.id).where(
            col(TotpFactor.user_id) == user_id, col(TotpFactor.confirmed_at).is_not(None)
        )
    )
    passkey = await db.exec(select(Passkey.id).where(col(Passkey.user_id) == user_id).limit(1))
    methods: list[SecondFactor] = []
    if totp.first() is not None:
        methods.append("totp")
    if passkey.first() is not None:
        methods.append("passkey")
    if methods:
        codes = await db.exec(
            select(RecoveryCode.id)
            .where(col(RecoveryCode.user_id) == user_id, col(RecoveryCode.used_at).is_(None))
            .limit(1)
        )
        if codes.first() is not None:
            methods.append("recovery_code")
    return tuple(methods)


async def cancel_all(db: AsyncSession, user_id: uuid.UUID) -> None:
    """Pending steps die with the factors they wait for. The caller commits."""
    await db.exec(delete(MfaChallenge).where(col(MfaChallenge.user_id) == user_id))
