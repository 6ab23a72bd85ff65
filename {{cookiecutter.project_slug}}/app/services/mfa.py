"""Second factors: an authenticator app (TOTP) and recovery codes, the second step of a
sign-in, and reauthentication before sensitive changes.

Every code is checked through the account's login-failure allowance, reserved before the check
as for passwords: a second factor cannot be guessed faster than a password, and a burst of
concurrent guesses gets no more checks than the limit allows. Codes are single use: a TOTP
code's time step and a recovery code's `used_at` are claimed with a compare-and-swap, so two
requests presenting the same code cannot both succeed.
"""

import hmac
import secrets
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pyotp
import segno
from sqlmodel import col, delete, func, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import clock
from app.core.rate_limit import RateLimitExceeded
from app.core.secretbox import SecretUnreadable
from app.domain import (
    MfaStatus,
    PasskeyView,
    Principal,
    RevokeReason,
    SignedIn,
    SignInFlow,
    TotpSetup,
)
from app.models import (
    AuditEventType,
    ChallengePurpose,
    Passkey,
    RecoveryCode,
    TotpFactor,
    User,
)
from app.models.base import utcnow
from app.services import audit, challenges
from app.services.context import ClientInfo, Context
from app.services.errors import (
    InvalidMfaCode,
    InvalidMfaToken,
    NoPendingTotp,
    NoSecondFactor,
    NotFound,
    TotpAlreadyEnabled,
    WrongCode,
    WrongPassword,
)
from app.services.sessions import SessionService
from app.services.sign_in import SignIns

TOTP_DIGITS = 6
TOTP_PERIOD_SECONDS = 30
TOTP_DRIFT_STEPS = 1  # a code of the previous or next 30 s still counts: clocks drift
RECOVERY_CODE_COUNT = 10
# 12 characters from 32 unambiguous ones: 60 bits per code, written as xxxx-xxxx-xxxx.
RECOVERY_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"
RECOVERY_CODE_LENGTH = 12

Verify = Callable[[], Awaitable[bool]]


def normalize_code(code: str) -> str:
    return code.replace("-", "").replace(" ", "").lower()


def is_totp_code(code: str) -> bool:
    return len(code) == TOTP_DIGITS and code.isdigit()


def new_recovery_code() -> str:
    raw = "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(RECOVERY_CODE_LENGTH))
    return "-".join(raw[i : i + 4] for i in range(0, RECOVERY_CODE_LENGTH, 4))


def matching_step(secret: str, code: str, now: datetime) -> int | None:
    """The time step, within the allowed drift, whose code this is."""
    totp = pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_PERIOD_SECONDS)
    current = totp.timecode(now)
    for step in range(current - TOTP_DRIFT_STEPS, current + TOTP_DRIFT_STEPS + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


async def reset_factors(
    db: AsyncSession, user_id: uuid.UUID, client: ClientInfo | None, by: str
) -> None:
    """Remove every factor, code and pending step of a user who lost them (an admin or an
    operator decides; `by` names them in the audit event). The caller calls `notify`, then
    commits: the user may now sign in with the password alone."""
    for table in (TotpFactor, RecoveryCode, Passkey):
        await db.exec(delete(table).where(col(table.user_id) == user_id))
    await challenges.cancel_all(db, user_id)
    audit.record(db, AuditEventType.MFA_RESET, client, user_id, detail=f"by {by}")


RESET_NOTICE = "Your second factors and passkeys were removed by an administrator."


async def drop_codes_without_factor(db: AsyncSession, user_id: uuid.UUID) -> None:
    """Recovery codes stand in for a factor; with none left they would be a second password.
    The caller commits."""
    await db.flush()
    if not await challenges.second_step_methods(db, user_id):
        await db.exec(delete(RecoveryCode).where(col(RecoveryCode.user_id) == user_id))
        await challenges.cancel_all(db, user_id)


class MfaService:
    def __init__(self, db: AsyncSession, ctx: Context) -> None:
        self.db = db
        self.ctx = ctx
        self.sessions = SessionService(db, ctx)
        self.sign_ins = SignIns(db, ctx)

    # --- enrolment ---------------------------------------------------------------------------

    async def status(self, principal: Principal) -> MfaStatus:
        totp = await self._totp(principal.id)
        passkeys = await self.db.exec(
            select(Passkey)
            .where(col(Passkey.user_id) == principal.id)
            .order_by(col(Passkey.created_at))
        )
        return MfaStatus(
            totp=totp is not None and totp.confirmed_at is not None,
            passkeys=tuple(passkey_view(passkey) for passkey in passkeys.all()),
            recovery_codes_left=await self._codes_left(principal.id),
        )

    async def start_totp(self, principal: Principal) -> TotpSetup:
        """A new secret, pending until a code from it confirms it (replacing a pending one)."""
        factor = await self._totp(principal.id)
        if factor is not None and factor.confirmed_at is not None:
            raise TotpAlreadyEnabled()
        secret = pyotp.random_base32()
        sealed = self.ctx.vault.seal(secret.encode(), context=principal.id.bytes)
        if factor is None:
            factor = TotpFactor(user_id=principal.id, secret_encrypted=sealed)
        factor.secret_encrypted, factor.last_used_step, factor.created_at = sealed, None, utcnow()
        self.db.add(factor)
        await self.db.commit()
        uri = pyotp.TOTP(secret).provisioning_uri(
            name=principal.email, issuer_name=self.ctx.settings.project_name
        )
        qr_svg = segno.make(uri, error="m").svg_inline(scale=4, title="Authenticator QR code")
        return TotpSetup(secret=secret, otpauth_uri=uri, qr_svg=qr_svg)

    async def enable_totp(self, principal: Principal, code: str, client: ClientInfo) -> list[str]:
        """Confirm the pending secret with a code from it. Every other session ends (one of
        them may be the intruder this protects against); returns a fresh set of recovery
        codes, shown once."""
        factor = await self._totp(principal.id)
        if factor is None:
            raise NoPendingTotp()
        if factor.confirmed_at is not None:
            raise TotpAlreadyEnabled()
        user = await self._user(principal.id)
        if not await self._guarded(user, lambda: self._claim_totp(factor, normalize_code(code))):
            raise WrongCode()
        factor.confirmed_at = utcnow()
        self.db.add(factor)
        codes = await self._replace_recovery_codes(principal.id)
        await self.sessions.revoke_all(
            principal.id, RevokeReason.MFA_ENABLED, client, keep=principal.session_id
        )
        audit.record(self.db, AuditEventType.TOTP_ENABLED, client, principal.id)
        self._notify(user, "An authenticator app was set up as a second factor.")
        await self.db.commit()
        return codes

    async def disable_totp(self, principal: Principal, client: ClientInfo) -> None:
        factor = await self._totp(principal.id)
        if factor is None or factor.confirmed_at is None:
            raise NotFound("No authenticator app is set up")
        await self.db.delete(factor)
        await drop_codes_without_factor(self.db, principal.id)
        audit.record(self.db, AuditEventType.TOTP_DISABLED, client, principal.id)
        self._notify(await self._user(principal.id), "The authenticator app was removed.")
        await self.db.commit()

    async def new_recovery_codes(self, principal: Principal, client: ClientInfo) -> list[str]:
        """A new set; the old one stops working."""
        if not await challenges.second_step_methods(self.db, principal.id):
            raise NoSecondFactor()
        codes = await self._replace_recovery_codes(principal.id)
        audit.record(self.db, AuditEventType.RECOVERY_CODES_GENERATED, client, principal.id)
        self._notify(await self._user(principal.id), "New recovery codes were generated.")
        await self.db.commit()
        return codes

    # --- the second step of a sign-in --------------------------------------------------------

    async def verify(self, mfa_token: str, code: str, client: ClientInfo) -> SignedIn:
        """Finish the sign-in the token belongs to, with a TOTP code or a recovery code."""
        await self.ctx.limiter.hit(self.ctx.limits.login_ip, client.ip_key)
        challenge = await challenges.live(self.db, mfa_token, ChallengePurpose.SECOND_FACTOR)
        user = await self.db.get(User, challenge.user_id) if challenge.user_id else None
        if user is None or not user.is_active:
            raise InvalidMfaToken()
        await challenges.reserve_attempt(self.db, challenge)
        method = await self.check_code(user, code)
        if method is None:
            await self.second_step_failed(user, client, "wrong code")
            raise InvalidMfaCode()
        await challenges.use(self.db, challenge)
        return await self.sign_ins.complete(
            user, client, f"password+{method}", SignInFlow(challenge.flow)
        )

    async def check_code(self, user: User, code: str) -> str | None:
        """Which factor took the code ("totp" or "recovery_code"), consuming it; None when no
        factor did. Counted against the account's failure allowance."""
        code = normalize_code(code)
        if is_totp_code(code):
            factor = await self._totp(user.id)
            if factor is None or factor.confirmed_at is None:
                await self._guarded(user, self._no_match)
                return None
            confirmed = factor
            ok = await self._guarded(user, lambda: self._claim_totp(confirmed, code))
            return "totp" if ok else None
        ok = await self._guarded(user, lambda: self._claim_recovery_code(user, code))
        return "recovery_code" if ok else None

    async def second_step_failed(self, user: User, client: ClientInfo, why: str) -> None:
        """Evidence that someone has the password: audited and mailed to the owner, at most a
        few times an hour; both committed now, as the request fails."""
        await audit.record_now(self.db, AuditEventType.MFA_FAILED, client, user.id, detail=why)
        try:
            await self.ctx.limiter.hit(self.ctx.limits.notice, user.email)
        except RateLimitExceeded:  # a notice over its limit is simply not sent
            return
        mailer = self.ctx.mailer
        reset_link = mailer.page("forgot-password")
        mailer.enqueue(self.db, "second_step_failed", user.email, reset_link=reset_link)
        await self.db.commit()

    # --- reauthentication --------------------------------------------------------------------

    async def reauthenticate(
        self,
        principal: Principal,
        client: ClientInfo,
        *,
        password: str | None = None,
        code: str | None = None,
    ) -> None:
        """Prove it again, with the password or a second factor's code: this session may then
        make sensitive changes for `REAUTH_MAX_AGE_SECONDS`."""
        user = await self._user(principal.id)
        if password is not None:
            hasher = self.ctx.hasher

            async def verify() -> bool:
                return await hasher.verify(user.password_hash, password)

            if not await self._guarded(user, verify):
                raise WrongPassword("Password is incorrect")
        elif code is None or await self.check_code(user, code) is None:
            raise WrongCode()
        await self.sessions.mark_authenticated(principal.session_id, principal.id)
        audit.record(self.db, AuditEventType.REAUTHENTICATED, client, principal.id)
        await self.db.commit()

    # --- internals ---------------------------------------------------------------------------

    async def _guarded(self, user: User, verify: Verify) -> bool:
        return await self.ctx.limiter.attempt(self.ctx.limits.login_account, user.email, verify)

    @staticmethod
    async def _no_match() -> bool:
        return False

    async def _claim_totp(self, factor: TotpFactor, code: str) -> bool:
        try:
            secret = self.ctx.vault.open(factor.secret_encrypted, context=factor.user_id.bytes)
        except SecretUnreadable:
            return False  # sealed under another key: only recovery codes or passkeys remain
        step = matching_step(secret.decode(), code, clock.now().astimezone(UTC))
        if step is None:
            return False
        never_used = col(TotpFactor.last_used_step).is_(None)
        claimed = await self.db.exec(
            update(TotpFactor)
            .where(
                col(TotpFactor.id) == factor.id,
                never_used | (col(TotpFactor.last_used_step) < step),
            )
            .values(last_used_step=step)
        )
        return claimed.rowcount == 1

    async def _claim_recovery_code(self, user: User, code: str) -> bool:
        if len(code) != RECOVERY_CODE_LENGTH:
            return False
        claimed = await self.db.exec(
            update(RecoveryCode)
            .where(
                col(RecoveryCode.user_id) == user.id,
                col(RecoveryCode.code_hash) == self._code_hash(user.id, code),
                col(RecoveryCode.used_at).is_(None),
            )
            .values(used_at=utcnow())
        )
        if claimed.rowcount != 1:
            return False
        audit.record(self.db, AuditEventType.RECOVERY_CODE_USED, None, user.id)
        left = await self._codes_left(user.id)
        self._notify(user, f"A recovery code was used to sign in; {left} remain.")
        return True

    async def _replace_recovery_codes(self, user_id: uuid.UUID) -> list[str]:
        await self.db.exec(delete(RecoveryCode).where(col(RecoveryCode.user_id) == user_id))
        codes = [new_recovery_code() for _ in range(RECOVERY_CODE_COUNT)]
        for code in codes:
            code_hash = self._code_hash(user_id, normalize_code(code))
            self.db.add(RecoveryCode(user_id=user_id, code_hash=code_hash))
        return codes

    def _code_hash(self, user_id: uuid.UUID, code: str) -> str:
        return self.ctx.vault.digest(f"{user_id}:{code}")

    async def _codes_left(self, user_id: uuid.UUID) -> int:
        result = await self.db.exec(
            select(func.count())
            .select_from(RecoveryCode)
            .where(col(RecoveryCode.user_id) == user_id, col(RecoveryCode.used_at).is_(None))
        )
        return result.one()

    async def _totp(self, user_id: uuid.UUID) -> TotpFactor | None:
        result = await self.db.exec(
            select(TotpFactor)
            .where(col(TotpFactor.user_id) == user_id)
            .execution_options(populate_existing=True)
        )
        return result.first()

    async def _user(self, user_id: uuid.UUID) -> User:
        user = await self.db.get(User, user_id)
        if user is None:
            raise NotFound("User not found")
        return user

    def _notify(self, user: User, what: str) -> None:
        notify(self.ctx, self.db, user.email, what)


def notify(ctx: Context, db: AsyncSession, email: str, what: str) -> None:
    """Tell the owner their sign-in methods changed: if it was not them, they can act. Queued
    in `db`'s transaction, with the change; the caller commits."""
    reset_link = ctx.mailer.page("forgot-password")
    ctx.mailer.enqueue(db, "security_notice", email, what=what, reset_link=reset_link)


def passkey_view(passkey: Passkey) -> PasskeyView:
    return PasskeyView(
        id=passkey.id,
        name=passkey.name,
        created_at=passkey.created_at,
        last_used_at=passkey.last_used_at,
    )
