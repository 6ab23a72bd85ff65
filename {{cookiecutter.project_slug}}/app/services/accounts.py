"""Deleting an account, and the guard that keeps at least one admin (SPEC §11, §12).

Both doors, the user's own (`DELETE /users/me`) and an admin's (`DELETE /admin/users/{id}`),
go through `AccountService.delete`, so they cannot drift apart: the account and everything that
hangs off it goes (sessions, one-time links, factors, passkeys, recovery codes, pending sign-in
steps: the foreign keys cascade), its audit events stay as a record of what happened and when,
without the data that points at a person, and the address hears of it.

Changes to who is an admin (an admin's write, a deletion) run in one exclusive transaction,
`lock_admins`: the database write lock on SQLite, a lock on the `admin` role row on PostgreSQL,
taken before anything is read. Concurrent removals are decided one after another, so no burst of
them, whoever sends it, leaves the service without an active admin.
"""

import uuid

from sqlalchemy import case
from sqlmodel import col, delete, func, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.permissions import RoleName
from app.db.session import begin_exclusive
from app.domain import Principal
from app.models import AuditEvent, AuditEventType, Role, User, UserRole
from app.services import audit, users
from app.services.context import ClientInfo, Context
from app.services.errors import LastAdmin, NotFound

ADMIN_ROLE = RoleName.ADMIN

# Events whose `detail` never holds personal data (a reason, a sign-in method, what an admin
# changed and the admin's id): kept when the account goes. Any other event's detail (a
# passkey's name, an address, a device label) is erased with the account, as is that of an
# event type added later until it is listed here.
IMPERSONAL_DETAIL = frozenset(
    {
        AuditEventType.LOGIN_SUCCEEDED,
        AuditEventType.SESSION_REVOKED,
        AuditEventType.MFA_FAILED,
        AuditEventType.MFA_RESET,
        AuditEventType.USER_UPDATED,
        AuditEventType.USER_DELETED,
        AuditEventType.ROLE_CREATED,
        AuditEventType.ROLE_UPDATED,
    }
)


async def lock_admins(db: AsyncSession) -> None:
    """Start the exclusive transaction of every change that could remove an admin (see the
    module docstring). Taken before anything is read, always first, so concurrent changes queue
    instead of deadlocking; taking it again in the same transaction changes nothing."""
    await begin_exclusive(db)
    await db.exec(select(Role.id).where(Role.name == ADMIN_ROLE).with_for_update())


async def ensure_another_admin(db: AsyncSession, user_id: uuid.UUID) -> None:
    """Refuse (409 `last_admin`) unless an active admin other than `user_id` remains. Call it
    inside `lock_admins`, or two removals could each count the other."""
    others = (
        await db.exec(
            select(func.count())
            .select_from(UserRole)
            .join(Role, col(Role.id) == UserRole.role_id)
            .join(User, col(User.id) == UserRole.user_id)
            .where(
                Role.name == ADMIN_ROLE,
                col(User.is_active).is_(True),
                col(User.id) != user_id,
            )
        )
    ).one()
    if not others:
        raise LastAdmin()


async def anonymise_events(db: AsyncSession, user_id: uuid.UUID) -> None:
    """Keep the user's audit events (type and time) without their IP address, user agent or a
    detail that may identify them. The caller deletes the user next, which clears `user_id`
    too (the foreign key's ON DELETE SET NULL)."""
    kept = col(AuditEvent.type).in_(sorted(map(str, IMPERSONAL_DETAIL)))
    await db.exec(
        update(AuditEvent)
        .where(col(AuditEvent.user_id) == user_id)
        .values(
            ip_address=None,
            user_agent=None,
            detail=case((kept, col(AuditEvent.detail)), else_=None),
        )
        .execution_options(synchronize_session=False)
    )


class AccountService:
    def __init__(self, db: AsyncSession, ctx: Context) -> None:
        self.db = db
        self.ctx = ctx

    async def delete(
        self,
        user_id: uuid.UUID,
        *,
        by: Principal | None = None,
        client: ClientInfo | None = None,
    ) -> None:
        """Delete the account, its dependent rows and the personal data of its audit events,
        in one transaction, with the notice to the address. `by` is the admin who does it (`client`
        theirs), None when the user does it themselves: the caller has checked the right to.

        The `user_deleted` event names the account by id. It records the admin and their
        client when an admin deletes; when the user deletes their own account it records
        neither who nor from where: that would be the very data being erased."""
        await lock_admins(self.db)
        # Read again under the lock: the caller's copy may predate a concurrent change.
        user = await self.db.get(User, user_id, populate_existing=True)
        if user is None:
            raise NotFound("User not found")
        roles, _ = await users.roles_and_permissions(self.db, user.id)
        if ADMIN_ROLE in roles and user.is_active:
            await ensure_another_admin(self.db, user.id)
        email = user.email
        await anonymise_events(self.db, user.id)
        if by is None:
            detail = f"user {user.id} by themselves"
            audit.record(self.db, AuditEventType.USER_DELETED, None, None, detail)
        else:
            detail = f"user {user.id} by admin {by.id}"
            audit.record(self.db, AuditEventType.USER_DELETED, client, by.id, detail)
        await self.db.exec(delete(User).where(col(User.id) == user.id))
        self.ctx.mailer.enqueue(self.db, "account_deleted", email, by_admin=by is not None)
        await self.db.commit()
