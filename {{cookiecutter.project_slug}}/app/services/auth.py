"""Registration, sign-in and the emailed flows, safe against account enumeration.

Every public entry point answers the same way whether or not the email exists, and spends
the same work on password hashing either way.
"""

import uuid

from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.passwords import password_problem
from app.db.principals import Principal
from app.models import AuditEventType, DeviceSession, TokenPurpose, User
from app.models.base import utcnow
from app.schemas.user import UserRead
from app.services import audit, one_time_tokens, users
from app.services.context import ClientInfo, Context
from app.services.errors import (
    AccountInactive,
    EmailNotVerified,
    EmailTaken,
    InvalidCredentials,
    InvalidOneTimeToken,
    NotAuthenticated,
    PasswordRejected,
    WrongPassword,
)
from app.services.sessions import IssuedTokens, SessionService
from app.utils.user_agent import parse_device


class AuthService:
    def __init__(self, db: AsyncSession, ctx: Context) -> None:
        self.db = db
        self.ctx = ctx
        self.sessions = SessionService(db, ctx)

    async def register(self, email: str, password: str, client: ClientInfo) -> None:
        await self.ctx.limiter.hit(self.ctx.limits.register_ip, client.ip_key)
        email = users.normalize_email(email)
        self._check_password(password, email)
        password_hash = await self.ctx.passwords.hash(password)
        user = await users.create_user(self.db, email, password_hash)
        if user is None:
            self.ctx.mailer.send_later(
                "account_exists", email, reset_link=self.ctx.mailer.page("forgot-password")
            )
            return
        await self._send_verification(user)

    async def resend_verification(self, email: str, client: ClientInfo) -> None:
        email = users.normalize_email(email)
        await self._limit_emails(email, client)
        user = await users.get_by_email(self.db, email)
        if user is not None and not user.is_verified and user.is_active:
            await self._send_verification(user)

    async def verify_email(self, token: str) -> None:
        user = await one_time_tokens.consume(self.db, token, TokenPurpose.VERIFY_EMAIL)
        if user is None:
            await self.db.rollback()
            raise InvalidOneTimeToken()
        user.is_verified = True
        self.db.add(user)
        audit.record(self.db, AuditEventType.EMAIL_VERIFIED, None, user.id)
        await self.db.commit()

    async def login(
        self, email: str, password: str, client: ClientInfo
    ) -> tuple[User, IssuedTokens]:
        """Check the password, then open a device session.

        The per-IP limit and a reservation on the account's failure allowance come before any
        hashing; an unknown email still costs one verification, so response times do not
        reveal which addresses have accounts.
        """
        email = users.normalize_email(email)
        limits = self.ctx.limits
        await self.ctx.limiter.hit(limits.login_ip, client.ip_key)
        user = await users.get_by_email(self.db, email)

        async def verify() -> bool:
            if user is None:
                await self.ctx.passwords.verify_dummy(password)
                return False
            return await self.ctx.passwords.verify(user.password_hash, password)

        valid = await self.ctx.limiter.attempt(limits.login_account, email, verify)
        if user is None or not valid:
            audit.record(self.db, AuditEventType.LOGIN_FAILED, client, user.id if user else None)
            await self.db.commit()
            raise InvalidCredentials()
        if not user.is_active:
            raise AccountInactive()
        if not user.is_verified:
            raise EmailNotVerified()

        if self.ctx.passwords.needs_rehash(user.password_hash):
            user.password_hash = await self.ctx.passwords.hash(password)
        device = parse_device(client.user_agent)
        known_device = await self.sessions.is_known_device(user.id, device.fingerprint)
        user.last_login_at = utcnow()
        self.db.add(user)
        _session, tokens = await self.sessions.start(user, client)
        audit.record(self.db, AuditEventType.LOGIN_SUCCEEDED, client, user.id)
        await self.db.commit()
        if not known_device:
            self.ctx.mailer.send_later(
                "new_device",
                user.email,
                device=f"{device.label} ({client.ip})" if client.ip else device.label,
                reset_link=self.ctx.mailer.page("forgot-password"),
            )
        return user, tokens

    async def logout(self, session_id: uuid.UUID, client: ClientInfo) -> None:
        session = await self.db.get(DeviceSession, session_id)
        if session is not None:
            self.sessions.revoke(session, "logout", client)
            await self.db.commit()

    async def logout_everywhere(self, user_id: uuid.UUID, client: ClientInfo) -> None:
        await self.sessions.revoke_all(user_id, "logout_all", client)
        await self.db.commit()

    async def forgot_password(self, email: str, client: ClientInfo) -> None:
        """Email a reset link when the account exists; the caller always answers 202."""
        email = users.normalize_email(email)
        await self._limit_emails(email, client)
        user = await users.get_by_email(self.db, email)
        if user is None or not user.is_active:
            return
        ttl = self.ctx.settings.reset_password_token_ttl_seconds
        await self._email_token(user, TokenPurpose.RESET_PASSWORD, ttl, minutes=ttl // 60)

    async def reset_password(self, token: str, new_password: str, client: ClientInfo) -> None:
        """Set a new password from an emailed token. No automatic sign-in: every session ends.

        Works while sign-in is rate limited for the account, and clears that limit.
        """
        user = await one_time_tokens.consume(self.db, token, TokenPurpose.RESET_PASSWORD)
        if user is None or not user.is_active:
            await self.db.rollback()
            raise InvalidOneTimeToken()
        problem = password_problem(new_password, user.email, self.ctx.settings.password_min_length)
        if problem:
            await self.db.rollback()  # the token stays usable for a better password
            raise PasswordRejected(problem)
        await self._replace_password(user, new_password, client, keep=None)
        audit.record(self.db, AuditEventType.PASSWORD_RESET, client, user.id)
        await self.db.commit()
        await self.ctx.limiter.reset(self.ctx.limits.login_account, user.email)
        self._send_password_notice(user)

    async def change_password(
        self, principal: Principal, current_password: str, new_password: str, client: ClientInfo
    ) -> None:
        """Needs the current password; keeps this session, ends every other one."""
        user = await self._user_of(principal)

        async def verify() -> bool:
            return await self.ctx.passwords.verify(user.password_hash, current_password)

        if not await self.ctx.limiter.attempt(self.ctx.limits.login_account, user.email, verify):
            raise WrongPassword()
        self._check_password(new_password, user.email)
        await self._replace_password(user, new_password, client, keep=principal.session_id)
        audit.record(self.db, AuditEventType.PASSWORD_CHANGED, client, user.id)
        await self.db.commit()
        self._send_password_notice(user)

    async def change_email(
        self, principal: Principal, new_email: str, current_password: str, client: ClientInfo
    ) -> UserRead:
        """Switch to a new address, which must be verified again; the old one is told."""
        user = await self._user_of(principal)
        new_email = users.normalize_email(new_email)
        await self.ctx.limiter.hit(self.ctx.limits.email, user.email)
        if not await self.ctx.passwords.verify(user.password_hash, current_password):
            raise WrongPassword()
        if new_email == user.email:
            return await self.read_model(user)
        old_email = user.email
        if not await users.change_email(self.db, user, new_email):
            raise EmailTaken()
        await one_time_tokens.revoke_all(self.db, user.id)
        audit.record(self.db, AuditEventType.EMAIL_CHANGED, client, user.id)
        await self._send_verification(user)
        self.ctx.mailer.send_later(
            "email_changed",
            old_email,
            new_email=new_email,
            reset_link=self.ctx.mailer.page("forgot-password"),
        )
        return await self.read_model(user)

    async def read_model(self, user: User) -> UserRead:
        """The account as the API shows it, roles and permissions included."""
        return await users.to_read_model(self.db, user)

    async def _user_of(self, principal: Principal) -> User:
        """The caller's row, to change it: the principal is a snapshot."""
        user = await self.db.get(User, principal.id)
        if user is None:
            raise NotAuthenticated()
        return user

    async def _replace_password(
        self, user: User, new_password: str, client: ClientInfo, keep: uuid.UUID | None
    ) -> None:
        """New hash; outstanding emailed tokens and other sessions die with the old password."""
        await users.set_password(self.db, user, await self.ctx.passwords.hash(new_password))
        await one_time_tokens.revoke_all(self.db, user.id)
        await self.sessions.revoke_all(user.id, "password_changed", client, keep=keep)

    async def _limit_emails(self, email: str, client: ClientInfo) -> None:
        """Requests that make us send email are limited per address and per client IP."""
        await self.ctx.limiter.hit(self.ctx.limits.email_ip, client.ip_key)
        await self.ctx.limiter.hit(self.ctx.limits.email, email)

    def _send_password_notice(self, user: User) -> None:
        self.ctx.mailer.send_later(
            "password_changed", user.email, reset_link=self.ctx.mailer.page("forgot-password")
        )

    async def _send_verification(self, user: User) -> None:
        ttl = self.ctx.settings.verify_email_token_ttl_seconds
        await self._email_token(user, TokenPurpose.VERIFY_EMAIL, ttl, hours=ttl // 3600)

    async def _email_token(
        self, user: User, purpose: TokenPurpose, ttl: int, **context: object
    ) -> None:
        """Save a fresh one-time token, then mail its link (template and page share its name:
        `verify_email` -> /verify-email, `reset_password` -> /reset-password)."""
        token = one_time_tokens.issue(self.db, user, purpose, ttl)
        await self.db.commit()
        link = self.ctx.mailer.link(purpose.replace("_", "-"), token)
        self.ctx.mailer.send_later(purpose, user.email, link=link, **context)

    def _check_password(self, password: str, email: str) -> None:
        problem = password_problem(password, email, self.ctx.settings.password_min_length)
        if problem:
            raise PasswordRejected(problem)
