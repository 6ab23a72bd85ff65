"""Registration, sign-in and the emailed flows, safe against account enumeration.

Every public entry point answers the same way whether or not the email exists, and does the
same work before answering: what depends on the account (a token to save, a mail to send) is
handed to `ctx.later` and runs after the response, with a database session of its own.

Mail is queued in the transaction of the event it tells of (`ctx.mailer.enqueue`, before the
commit): the two are saved together or not at all, and the outbox delivers it.
"""

import uuid
from collections.abc import Awaitable, Callable

from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import metrics
from app.core.passwords import password_problem
from app.core.rate_limit import Limit, RateLimitExceeded
from app.domain import (
    Principal,
    RevokeReason,
    SecondStepRequired,
    SignedIn,
    SignInFlow,
    UserView,
)
from app.models import AuditEventType, DeviceSession, TokenPurpose, User
from app.services import audit, one_time_tokens, users
from app.services.accounts import AccountService
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
from app.services.sessions import SessionService
from app.services.sign_in import SignIns

LINK_PAGES = {
    TokenPurpose.VERIFY_EMAIL: "verify-email",
    TokenPurpose.CHANGE_EMAIL: "verify-email",
    TokenPurpose.RESET_PASSWORD: "reset-password",
}

LOGIN_REFUSALS = {
    InvalidCredentials: "failure",
    AccountInactive: "inactive",
    EmailNotVerified: "unverified",
}


class AuthService:
    def __init__(self, db: AsyncSession, ctx: Context) -> None:
        self.db = db
        self.ctx = ctx
        self.sessions = SessionService(db, ctx)
        self.accounts = AccountService(db, ctx)

    async def register(self, email: str, password: str, client: ClientInfo) -> None:
        """The password is hashed for every well-formed request (the same cost whether or not
        the address is taken); the account is created after the response."""
        await self.ctx.limiter.hit(self.ctx.limits.register_ip, client.ip_key)
        email = users.normalize_email(email)
        self._check_password(password, email)
        password_hash = await self.ctx.hasher.hash(password)

        async def create(service: AuthService) -> None:
            await service.create_account(email, password_hash)

        self._after_response("registration", create)

    async def create_account(self, email: str, password_hash: str) -> None:
        """`register`'s work after the response: the account and its verification link, or a
        notice to the owner of an address that is taken."""
        user = await users.create_user(self.db, email, password_hash)
        if user is None:
            await self.db.rollback()
            await self._notify_address_in_use(email)
            await self.db.commit()
            return
        await self._send_verification(user)
        await self.db.commit()

    async def resend_verification(self, email: str, client: ClientInfo) -> None:
        email = users.normalize_email(email)
        await self._limit_emails(self.ctx.limits.resend_email, email, client)

        async def resend(service: AuthService) -> None:
            await service.send_verification(email)

        self._after_response("verification resend", resend)

    async def send_verification(self, email: str) -> None:
        """`resend_verification`'s work after the response: a fresh link, if still needed."""
        user = await users.get_by_email(self.db, email)
        if user is None or user.is_verified or not user.is_active:
            return
        await self._send_verification(user)
        await self.db.commit()

    async def verify_email(self, token: str) -> None:
        """Confirms an address: a new account's, or the new one of a pending email change,
        which only now replaces the old address (the emailed link is the same page)."""
        redeemed = await one_time_tokens.redeem(
            self.db, token, (TokenPurpose.VERIFY_EMAIL, TokenPurpose.CHANGE_EMAIL)
        )
        if redeemed is None:
            await self.db.rollback()
            raise InvalidOneTimeToken()
        user = redeemed.user
        if redeemed.purpose == TokenPurpose.VERIFY_EMAIL:
            user.is_verified = True
            self.db.add(user)
            audit.record(self.db, AuditEventType.EMAIL_VERIFIED, None, user.id)
            await self.db.commit()
            return
        old_email, new_email = user.email, redeemed.new_email
        if new_email is None or not user.is_active:
            await self.db.rollback()
            raise InvalidOneTimeToken()
        # The unique index decides: the address may have been taken since the link was sent.
        if not await users.change_email(self.db, user, new_email):
            await self.db.rollback()  # the link stays unused
            raise EmailTaken("This email address now belongs to another account")
        # Links mailed to the old address (a password reset) die with it.
        await one_time_tokens.revoke_all(self.db, user.id)
        audit.record(self.db, AuditEventType.EMAIL_CHANGED, None, user.id)
        self.ctx.mailer.enqueue(
            self.db,
            "email_changed",
            old_email,
            new_email=new_email,
            reset_link=self.ctx.mailer.page("forgot-password"),
        )
        await self.db.commit()

    async def login(
        self, email: str, password: str, client: ClientInfo, flow: SignInFlow
    ) -> SignedIn | SecondStepRequired:
        """`_login`, counted by result (app/core/metrics.py; a success where the session
        opens, app/services/sign_in.py)."""
        try:
            outcome = await self._login(email, password, client, flow)
        except RateLimitExceeded:
            metrics.count_login("limited")
            raise
        except (InvalidCredentials, AccountInactive, EmailNotVerified) as refusal:
            metrics.count_login(LOGIN_REFUSALS[type(refusal)])
            raise
        if isinstance(outcome, SecondStepRequired):
            metrics.count_login("mfa_required")
        return outcome

    async def _login(
        self, email: str, password: str, client: ClientInfo, flow: SignInFlow
    ) -> SignedIn | SecondStepRequired:
        """Check the password, then open a device session, or ask for the second factor.

        The per-IP limit and a reservation on the account's failure allowance come before any
        hashing; an unknown email still costs one verification, so response times do not
        reveal which addresses have accounts. The failure count is cleared only when the
        sign-in is complete: after a right password, wrong second-step codes keep adding up.
        """
        email = users.normalize_email(email)
        limits = self.ctx.limits
        await self.ctx.limiter.hit(limits.login_ip, client.ip_key)
        user = await users.get_by_email(self.db, email)

        async def verify() -> bool:
            if user is None:
                await self.ctx.hasher.verify_dummy(password)
                return False
            return await self.ctx.hasher.verify(user.password_hash, password)

        valid = await self.ctx.limiter.attempt(limits.login_account, email, verify, release=False)
        if user is None or not valid:
            user_id = user.id if user else None
            await audit.record_now(self.db, AuditEventType.LOGIN_FAILED, client, user_id)
            raise InvalidCredentials()
        if not user.is_active:
            raise AccountInactive()
        if not user.is_verified:
            raise EmailNotVerified()

        if self.ctx.hasher.needs_rehash(user.password_hash):
            user.password_hash = await self.ctx.hasher.hash(password)
            self.db.add(user)
        outcome = await SignIns(self.db, self.ctx).after_password(user, client, flow)
        if isinstance(outcome, SignedIn):  # the sign-in is complete: failures start over
            await self.ctx.limiter.reset(limits.login_account, email)
        return outcome

    async def logout(self, session_id: uuid.UUID, client: ClientInfo) -> None:
        session = await self.db.get(DeviceSession, session_id)
        if session is not None:
            self.sessions.revoke(session, RevokeReason.LOGOUT, client)
            await self.db.commit()

    async def logout_everywhere(self, user_id: uuid.UUID, client: ClientInfo) -> None:
        await self.sessions.revoke_all(user_id, RevokeReason.LOGOUT_ALL, client)
        await self.db.commit()

    async def forgot_password(self, email: str, client: ClientInfo) -> None:
        """Email a reset link when the account exists; the caller always answers 202."""
        email = users.normalize_email(email)
        await self._limit_emails(self.ctx.limits.email, email, client)

        async def send_reset(service: AuthService) -> None:
            await service.send_reset_link(email)

        self._after_response("password reset request", send_reset)

    async def send_reset_link(self, email: str) -> None:
        """`forgot_password`'s work after the response."""
        user = await users.get_by_email(self.db, email)
        if user is None or not user.is_active:
            return
        ttl = self.ctx.settings.reset_password_token_ttl_seconds
        link = await self._link(user, TokenPurpose.RESET_PASSWORD, ttl)
        mailer = self.ctx.mailer
        mailer.enqueue(self.db, "reset_password", user.email, link=link, minutes=ttl // 60)
        await self.db.commit()

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
        self._send_password_notice(user)
        await self.db.commit()
        await self.ctx.limiter.reset(self.ctx.limits.login_account, user.email)

    async def change_password(
        self, principal: Principal, current_password: str, new_password: str, client: ClientInfo
    ) -> None:
        """Needs the current password; keeps this session, ends every other one."""
        user = await self._user_of(principal)
        await self._confirm_password(user, current_password)
        self._check_password(new_password, user.email)
        await self._replace_password(user, new_password, client, keep=principal.session_id)
        audit.record(self.db, AuditEventType.PASSWORD_CHANGED, client, user.id)
        self._send_password_notice(user)
        await self.db.commit()

    async def change_email(
        self, principal: Principal, new_email: str, current_password: str, client: ClientInfo
    ) -> UserView:
        """Ask for a new address: it takes over only when its emailed link is used.

        Returns the account unchanged, whether the address is free or taken, so the answer
        and the work before it do not say which; the rest happens after the response. The
        limit is per account: no outsider can use it up.
        """
        user = await self._user_of(principal)
        new_email = users.normalize_email(new_email)
        await self.ctx.limiter.hit(self.ctx.limits.email_change, str(user.id))
        await self._confirm_password(user, current_password)
        if new_email != user.email:
            user_id = user.id

            async def request(service: AuthService) -> None:
                await service.request_email_change(user_id, new_email)

            self._after_response("email change request", request)
        return await users.view(self.db, user)

    async def request_email_change(self, user_id: uuid.UUID, new_email: str) -> None:
        """`change_email`'s work after the response. The old address is told either way; a
        free new one gets the confirmation link, a taken one (its owner) a rate-limited
        notice."""
        user = await self.db.get(User, user_id)
        if user is None or not user.is_active:
            return
        mailer = self.ctx.mailer
        reset_link = mailer.page("forgot-password")
        mailer.enqueue(
            self.db,
            "email_change_requested",
            user.email,
            new_email=new_email,
            reset_link=reset_link,
        )
        if await users.get_by_email(self.db, new_email) is not None:
            await self._notify_address_in_use(new_email)
            await self.db.commit()
            return
        ttl = self.ctx.settings.verify_email_token_ttl_seconds
        link = await self._link(user, TokenPurpose.CHANGE_EMAIL, ttl, new_email=new_email)
        mailer.enqueue(self.db, "confirm_email_change", new_email, link=link, hours=ttl // 3600)
        await self.db.commit()

    async def delete_account(self, principal: Principal, password: str) -> None:
        """The user's own deletion: the password first (guessed here, it counts like a failed
        sign-in), then `AccountService.delete`, which keeps the last active admin."""
        user = await self._user_of(principal)
        await self._confirm_password(user, password)
        await self.accounts.delete(user.id)

    async def _user_of(self, principal: Principal) -> User:
        """The caller's row, to change it: the principal is a snapshot."""
        user = await self.db.get(User, principal.id)
        if user is None:
            raise NotAuthenticated()
        return user

    async def _confirm_password(self, user: User, password: str) -> None:
        """The signed-in user's current password, before a change it guards. Each guess uses
        the account's sign-in failure allowance, reserved before the hash is checked, so a
        stolen session cannot guess faster than a login form (`RateLimiter.attempt`)."""

        async def verify() -> bool:
            return await self.ctx.hasher.verify(user.password_hash, password)

        if not await self.ctx.limiter.attempt(self.ctx.limits.login_account, user.email, verify):
            raise WrongPassword()

    async def _replace_password(
        self, user: User, new_password: str, client: ClientInfo, keep: uuid.UUID | None
    ) -> None:
        """New hash; outstanding emailed tokens and other sessions die with the old password."""
        await users.set_password(self.db, user, await self.ctx.hasher.hash(new_password))
        await one_time_tokens.revoke_all(self.db, user.id)
        await self.sessions.revoke_all(user.id, RevokeReason.PASSWORD_CHANGED, client, keep=keep)

    async def _limit_emails(self, per_address: Limit, email: str, client: ClientInfo) -> None:
        """Requests that make us send email are limited per client IP and per address, with
        a bucket per purpose: hammering one flow for an address does not block the others."""
        await self.ctx.limiter.hit(self.ctx.limits.email_ip, client.ip_key)
        await self.ctx.limiter.hit(per_address, email)

    def _after_response(self, what: str, work: Callable[["AuthService"], Awaitable[None]]) -> None:
        """Hand account-dependent work over; it gets a service on a session of its own, and
        calls one public method of it, which commits its own work."""
        ctx = self.ctx

        async def job(db: AsyncSession) -> None:
            await work(AuthService(db, ctx))

        ctx.later.run_with_db(what, job)

    async def _notify_address_in_use(self, email: str) -> None:
        """Tell an address's owner someone tried to claim it (queued: the caller commits); an
        outsider can trigger this, so each recipient gets at most a few per window."""
        try:
            await self.ctx.limiter.hit(self.ctx.limits.notice, email)
        except RateLimitExceeded:
            return
        mailer = self.ctx.mailer
        mailer.enqueue(self.db, "account_exists", email, reset_link=mailer.page("forgot-password"))

    def _send_password_notice(self, user: User) -> None:
        mailer = self.ctx.mailer
        reset_link = mailer.page("forgot-password")
        mailer.enqueue(self.db, "password_changed", user.email, reset_link=reset_link)

    async def _send_verification(self, user: User) -> None:
        """A fresh verification link and its mail, in the transaction; the caller commits."""
        ttl = self.ctx.settings.verify_email_token_ttl_seconds
        link = await self._link(user, TokenPurpose.VERIFY_EMAIL, ttl)
        self.ctx.mailer.enqueue(self.db, "verify_email", user.email, link=link, hours=ttl // 3600)

    async def _link(
        self, user: User, purpose: TokenPurpose, ttl: int, *, new_email: str | None = None
    ) -> str:
        """Add a fresh one-time token to the transaction (older ones of its purpose die) and
        return its link, to queue in the same transaction. A change of address is confirmed
        on the same page as a new one."""
        token = await one_time_tokens.issue(self.db, user, purpose, ttl, new_email=new_email)
        return self.ctx.mailer.link(LINK_PAGES[purpose], token)

    def _check_password(self, password: str, email: str) -> None:
        problem = password_problem(password, email, self.ctx.settings.password_min_length)
        if problem:
            raise PasswordRejected(problem)
