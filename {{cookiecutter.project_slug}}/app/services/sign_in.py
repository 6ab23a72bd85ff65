"""The end of every sign-in, whatever proved who the user is: a password alone, a password and
a second factor, or a passkey. One path opens the session, audits it and sends the new-device
notice, so the second step cannot forget what a one-step sign-in does."""

import uuid

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import metrics
from app.domain import SecondStepRequired, SignedIn, SignInFlow
from app.models import AuditEventType, User
from app.models.base import utcnow
from app.services import audit, challenges, users
from app.services.context import ClientInfo, Context
from app.services.errors import InvalidCredentials
from app.services.sessions import SessionService
from app.utils.user_agent import parse_device

# How each method reads in the new-sign-in notice.
METHOD_LABELS = {
    "password": "password",
    "password+totp": "password and authenticator app",
    "password+recovery_code": "password and a recovery code",
    "password+passkey": "password and passkey",
    "passkey": "passkey",
}


class SignIns:
    def __init__(self, db: AsyncSession, ctx: Context) -> None:
        self.db = db
        self.ctx = ctx
        self.sessions = SessionService(db, ctx)

    async def after_password(
        self, user: User, client: ClientInfo, flow: SignInFlow
    ) -> SignedIn | SecondStepRequired:
        """The password was right: a session, or a challenge when the account has a second
        factor (then nothing else happens until the second step)."""
        methods = await challenges.second_step_methods(self.db, user.id)
        if not methods:
            return await self.complete(user, client, "password", flow)
        token = challenges.open_second_step(self.db, self.ctx, user.id, flow)
        await self._commit(user.id)
        return SecondStepRequired(mfa_token=token, methods=methods)

    async def complete(
        self, user: User, client: ClientInfo, method: str, flow: SignInFlow
    ) -> SignedIn:
        """Open the session and commit: the last step of each public sign-in method."""
        device = parse_device(client.user_agent)
        known_device = await self.sessions.is_known_device(user.id, device.fingerprint)
        user.last_login_at = utcnow()
        self.db.add(user)
        _session, tokens = await self.sessions.start(user, client, method)
        audit.record(self.db, AuditEventType.LOGIN_SUCCEEDED, client, user.id, detail=method)
        if not known_device:
            self.ctx.mailer.enqueue(
                self.db,
                "new_device",
                user.email,
                device=f"{device.label} ({client.ip})" if client.ip else device.label,
                method=METHOD_LABELS[method],
                reset_link=self.ctx.mailer.page("forgot-password"),
            )
        await self._commit(user.id)
        metrics.count_login("success")
        return SignedIn(user=await users.view(self.db, user), tokens=tokens, flow=flow)

    async def _commit(self, user_id: uuid.UUID) -> None:
        """Commit the sign-in. An account deleted while its password or passkey was being
        checked takes the sign-in with it: nothing may point at the account any more (its
        update matches no row, a new row's foreign key fails), so the sign-in is refused as
        one for an address never registered, and nothing of it is kept."""
        try:
            await self.db.commit()
        except (IntegrityError, StaleDataError):
            await self.db.rollback()
            if await users.exists(self.db, user_id):
                raise
            raise InvalidCredentials() from None
