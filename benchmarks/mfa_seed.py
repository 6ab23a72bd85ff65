"""Single-use inputs for the second-step rows, made inside the rendered project.

    python benchmarks/mfa_seed.py totp|passkey COUNT OUT_FILE USER_AGENT

run with the service's environment, its directory as the working directory and on PYTHONPATH
(`benchmarks/run.py` does that before each load). Every request of those rows spends something
the service accepts once: an `mfa_token` (a challenge row), a TOTP time step per user, a
WebAuthn challenge. Making them through the API would cost a password login (argon2) each, far
more than the row measures, so they go straight into the database through the service's own
models, the way the service itself stores them (a challenge is the sha256 of its key, the TOTP
secret is sealed with the service's vault). OUT_FILE gets one JSON request body per line.

- totp: COUNT users, each with a confirmed authenticator app and one pending second step;
  the body is `{"mfa_token", "code"}` with the code of the *next* time step. One step of drift
  is accepted, so it stays good for 60 to 90 s, and each user's step is reset beforehand (a
  step is accepted once per user). Users are made once and reused by later calls.
- passkey: PASSKEY_USERS users with a passkey, COUNT usernameless sign-in challenges and an
  assertion for each, signed by the software authenticator of the project's tests
  (`tests/authenticator.py`) with sign count 0, which the service accepts while the stored
  count is 0 (an authenticator that does not count).

Each bench user has signed in before from the benchmark's device (a revoked session with its
fingerprint): the rows measure a returning user's sign-in, as the login row does, without a
new-device email per request.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyotp
from app.core.config import get_settings
from app.core.security import sha256_hex
from app.db.session import create_engine, create_sessionmaker
from app.models import (
    ChallengePurpose,
    DeviceSession,
    MfaChallenge,
    Passkey,
    Role,
    TotpFactor,
    User,
    UserRole,
)
from app.models.base import utcnow
from app.services.context import Context
from app.services.mfa import TOTP_DIGITS, TOTP_PERIOD_SECONDS
from app.services.users import DEFAULT_ROLE
from app.utils.user_agent import parse_device
from cryptography.hazmat.primitives.asymmetric import ec
from sqlmodel import col, delete, select, update

sys.path.insert(0, str(Path.cwd() / "tests"))
from authenticator import SoftAuthenticator, StoredCredential, b64url

TOTP_DOMAIN = "totp.bench.example.com"
PASSKEY_DOMAIN = "passkey.bench.example.com"
PASSKEY_USERS = 32
UNUSABLE_HASH = "!benchmark user: signs in with a second factor only"  # never a valid hash


async def bench_users(db: Any, domain: str, count: int, user_agent: str) -> list[User]:
    """The first `count` users of `domain`, made when missing (verified, default role, a
    past session on the benchmark's device)."""
    users = list(
        (
            await db.exec(
                select(User).where(col(User.email).endswith(f"@{domain}")).order_by(User.email)
            )
        ).all()
    )
    if len(users) < count:
        role = (await db.exec(select(Role).where(Role.name == DEFAULT_ROLE))).one()
        device = parse_device(user_agent)
        now = utcnow()
        new = [
            User(email=f"u{index:07d}@{domain}", password_hash=UNUSABLE_HASH, is_verified=True)
            for index in range(len(users), count)
        ]
        db.add_all(new)
        await db.flush()
        for user in new:
            db.add(UserRole(user_id=user.id, role_id=role.id))
            db.add(
                DeviceSession(
                    user_id=user.id,
                    expires_at=now,
                    revoked_at=now,
                    revoked_reason="logout",
                    user_agent=user_agent,
                    device_label=device.label,
                    fingerprint=device.fingerprint,
                    refresh_token_hash=secrets.token_hex(32),
                )
            )
        users += new
    return users[:count]


def challenge(ctx: Context, key: str, purpose: ChallengePurpose, **fields: Any) -> MfaChallenge:
    now = utcnow()
    ttl = timedelta(seconds=ctx.settings.mfa_challenge_ttl_seconds)
    return MfaChallenge(
        token_hash=sha256_hex(key), purpose=purpose, created_at=now, expires_at=now + ttl, **fields
    )


async def totp_bodies(db: Any, ctx: Context, count: int, user_agent: str) -> list[dict[str, Any]]:
    users = await bench_users(db, TOTP_DOMAIN, count, user_agent)
    # A subquery, not a list of ids: a long run needs more users than a statement takes
    # parameters.
    ours = col(TotpFactor.user_id).in_(
        select(User.id).where(col(User.email).endswith(f"@{TOTP_DOMAIN}"))
    )
    factors = {
        factor.user_id: factor for factor in (await db.exec(select(TotpFactor).where(ours))).all()
    }
    for user in users:
        if user.id not in factors:
            sealed = ctx.vault.seal(pyotp.random_base32().encode(), context=user.id.bytes)
            factor = TotpFactor(user_id=user.id, secret_encrypted=sealed, confirmed_at=utcnow())
            db.add(factor)
            factors[user.id] = factor
    await db.exec(update(TotpFactor).where(ours).values(last_used_step=None))
    bodies = []
    for user in users:
        secret = ctx.vault.open(factors[user.id].secret_encrypted, context=user.id.bytes)
        totp = pyotp.TOTP(secret.decode(), digits=TOTP_DIGITS, interval=TOTP_PERIOD_SECONDS)
        token = secrets.token_urlsafe(32)
        db.add(challenge(ctx, token, ChallengePurpose.SECOND_FACTOR, user_id=user.id))
        bodies.append({"mfa_token": token, "code": totp.generate_otp(totp.timecode(utcnow()) + 1)})
    return bodies


async def passkey_bodies(
    db: Any, ctx: Context, count: int, user_agent: str
) -> list[dict[str, Any]]:
    users = await bench_users(db, PASSKEY_DOMAIN, PASSKEY_USERS, user_agent)
    rp_id = ctx.settings.rp_id
    # A fresh key per call: nothing to remember between calls, the stored count restarts at 0.
    await db.exec(delete(Passkey).where(col(Passkey.user_id).in_([user.id for user in users])))
    authenticator = SoftAuthenticator(ctx.settings.rp_origins[0])
    credentials = []
    for user in users:
        credential = StoredCredential(
            id=secrets.token_bytes(32),
            private_key=ec.generate_private_key(ec.SECP256R1()),
            rp_id=rp_id,
            user_handle=user.id.bytes,
        )
        public_key = credential.cose_public_key()
        db.add(Passkey(user_id=user.id, credential_id=credential.id, public_key=public_key,
                       name="Benchmark passkey"))  # fmt: skip
        credentials.append(credential)
    bodies = []
    for index in range(count):
        raw = secrets.token_bytes(32)
        db.add(challenge(ctx, b64url(raw), ChallengePurpose.PASSKEY_SIGN_IN,
                         webauthn_challenge=raw))  # fmt: skip
        options = {"challenge": b64url(raw), "rpId": rp_id, "allowCredentials": []}
        assertion = authenticator.get(
            options, credential=credentials[index % len(credentials)], sign_count=0
        )
        bodies.append({"credential": assertion})
    return bodies


async def main(kind: str, count: int, out: Path, user_agent: str) -> None:
    settings = get_settings()
    engine = create_engine(settings)
    ctx = Context.from_settings(settings)
    try:
        async with create_sessionmaker(engine)() as db:
            # Earlier calls' challenges are spent or abandoned: keep the table the size of a load.
            await db.exec(delete(MfaChallenge))
            make = totp_bodies if kind == "totp" else passkey_bodies
            bodies = await make(db, ctx, count, user_agent)
            await db.commit()
    finally:
        ctx.hasher.close()
        await engine.dispose()
    out.write_text("".join(json.dumps(body, separators=(",", ":")) + "\n" for body in bodies))


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[1] not in ("totp", "passkey"):
        sys.exit(__doc__)
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]))
