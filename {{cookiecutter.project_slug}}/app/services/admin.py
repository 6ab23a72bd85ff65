"""The admin API's rules: user management, other users' sessions, roles and permissions.

Privilege boundary (`_authorise`, the one place that decides): an action needs every
permission it grants and every permission of what it acts on, and the caller must hold them all.

* Granting: a role created or changed, or roles given to a user, may carry only permissions
  the caller holds.
* Acting on a role (its permissions or its description) needs every permission the role has;
  the `admin` role needs every permission that exists. So a `roles:write` holder can neither
  strip nor describe a role it does not fully hold.
* Acting on an account (changing its roles, activation or verification, deleting it, revoking
  its sessions) needs every permission the account has; an `admin` account needs every
  permission. Nobody acts on someone more privileged than themselves.
* Reading (lists, one user, their sessions) stays with the route's permission alone.
* The caller's permissions are read again inside the transaction, not taken from the request's
  snapshot: a caller demoted a moment ago acts with what it holds now.

Guards: an admin cannot lock themselves out (deactivate or delete their own account, drop
their own admin role), nobody takes away the last active admin, and the `admin` role keeps every
permission. Every change runs in an exclusive transaction (`_begin`, `accounts.lock_admins`): the
database write lock on SQLite, a lock on the `admin` role row on PostgreSQL, taken first by every
change (and by a user deleting their own account), so concurrent demotions are decided one after
another and cannot together remove every admin. A deletion is `AccountService.delete`, the same
as a user's own: audit events anonymised, the address told.
"""

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.permissions import PermissionName
from app.db import keyset
from app.db.keyset import starts_with
from app.db.principals import grants_query
from app.domain import Principal, RevokeReason, RoleView, SessionView, UserView
from app.models import (
    AuditEvent,
    AuditEventType,
    Permission,
    Role,
    RolePermission,
    User,
    UserRole,
)
from app.services import accounts, audit, mfa, users
from app.services.accounts import ADMIN_ROLE, AccountService
from app.services.context import ClientInfo, Context
from app.services.errors import (
    AdminRoleFixed,
    AlreadyExists,
    NotFound,
    PrivilegeEscalation,
    SelfLockout,
    UnknownName,
)
from app.services.pages import Page, cut, decode_cursor
from app.services.sessions import SessionService


class AdminService:
    def __init__(self, db: AsyncSession, ctx: Context) -> None:
        self.db = db
        self.ctx = ctx
        self.sessions = SessionService(db, ctx)
        self.accounts = AccountService(db, ctx)

    # --- users ------------------------------------------------------------------------------

    async def list_users(
        self,
        cursor: str | None,
        limit: int,
        *,
        email_prefix: str | None = None,
        is_active: bool | None = None,
        is_verified: bool | None = None,
        role: str | None = None,
    ) -> Page[UserView]:
        """A page of users in sign-up order; filters left None match everyone."""
        query = select(User)
        if email_prefix:
            prefix = users.normalize_email(email_prefix)
            query = query.where(starts_with(col(User.email), prefix))
        if is_active is not None:
            query = query.where(col(User.is_active) == is_active)
        if is_verified is not None:
            query = query.where(col(User.is_verified) == is_verified)
        if role is not None:
            holds = (
                select(UserRole.user_id)
                .join(Role, col(Role.id) == UserRole.role_id)
                .where(col(UserRole.user_id) == User.id, col(Role.name) == role)
            )
            query = query.where(holds.exists())
        after = decode_cursor(cursor)
        rows = (
            await self.db.exec(keyset.page(query, col(User.created_at), col(User.id), after, limit))
        ).all()
        shown, next_cursor = cut(rows, limit, lambda user: (user.created_at, user.id))
        return Page(await users.views(self.db, shown), next_cursor)

    async def get_user(self, user_id: uuid.UUID) -> UserView:
        return await users.view(self.db, await self._user(user_id))

    async def update_user(
        self,
        principal: Principal,
        user_id: uuid.UUID,
        client: ClientInfo,
        *,
        is_active: bool | None = None,
        is_verified: bool | None = None,
        roles: Sequence[str] | None = None,
    ) -> UserView:
        """Fields left None stay as they are; `roles` replaces the user's roles."""
        await self._begin()
        user = await self._user(user_id)
        current_roles, current = await self._grants(user.id)
        new_roles = sorted(set(roles)) if roles is not None else current_roles
        deactivating = is_active is False
        losing_admin = ADMIN_ROLE in current_roles and ADMIN_ROLE not in new_roles

        if user.id == principal.id:
            if deactivating:
                raise SelfLockout("You cannot deactivate your own account")
            if losing_admin:
                raise SelfLockout("You cannot remove your own admin role")
        role_ids, granted = await self._roles(new_roles)
        await self._authorise(
            principal,
            PermissionName.USERS_WRITE,
            await self._reach(current_roles, current),
            granted,
        )
        if ADMIN_ROLE in current_roles and user.is_active and (deactivating or losing_admin):
            await accounts.ensure_another_admin(self.db, user.id)

        done: list[str] = []
        if roles is not None and new_roles != current_roles:
            await self.db.exec(delete(UserRole).where(col(UserRole.user_id) == user.id))
            self.db.add_all(UserRole(user_id=user.id, role_id=role_id) for role_id in role_ids)
            done.append(f"roles={','.join(new_roles) or '-'}")
        if is_active is not None and is_active != user.is_active:
            user.is_active = is_active
            done.append(f"is_active={is_active}")
        if is_verified is not None and is_verified != user.is_verified:
            user.is_verified = is_verified
            done.append(f"is_verified={is_verified}")
        if deactivating:
            await self.sessions.revoke_all(user.id, RevokeReason.DEACTIVATED, client)
        if done:
            self.db.add(user)
            audit.record(
                self.db,
                AuditEventType.USER_UPDATED,
                client,
                user.id,
                detail=_limit(f"by {principal.id}: {'; '.join(done)}"),
            )
        await self.db.commit()
        return await self.get_user(user.id)

    async def delete_user(
        self, principal: Principal, user_id: uuid.UUID, client: ClientInfo
    ) -> None:
        """Delete the user as `DELETE /users/me` does (`AccountService.delete`): the last
        active admin stays, the user is told. Admins leave through `DELETE /users/me`."""
        await self._begin()
        user = await self._user(user_id)
        if user.id == principal.id:
            raise SelfLockout("Delete your own account with DELETE /users/me")
        roles, permissions = await self._grants(user.id)
        await self._authorise(
            principal, PermissionName.USERS_WRITE, await self._reach(roles, permissions)
        )
        await self.accounts.delete(user.id, by=principal, client=client)

    async def reset_mfa(self, principal: Principal, user_id: uuid.UUID, client: ClientInfo) -> None:
        """For a user who lost their factors: afterwards the password alone signs them in."""
        await self._begin()
        user = await self._user(user_id)
        roles, permissions = await self._grants(user.id)
        await self._authorise(
            principal, PermissionName.USERS_WRITE, await self._reach(roles, permissions)
        )
        await mfa.reset_factors(self.db, user.id, client, by=f"admin {principal.id}")
        mfa.notify(self.ctx, self.db, user.email, mfa.RESET_NOTICE)
        await self.db.commit()

    # --- sessions ---------------------------------------------------------------------------

    async def list_sessions(self, user_id: uuid.UUID) -> list[SessionView]:
        await self._user(user_id)
        return await self.sessions.list_active(user_id)

    async def revoke_sessions(
        self, principal: Principal, user_id: uuid.UUID, client: ClientInfo
    ) -> None:
        await self._begin()
        await self._user(user_id)
        roles, permissions = await self._grants(user_id)
        await self._authorise(
            principal, PermissionName.SESSIONS_WRITE, await self._reach(roles, permissions)
        )
        await self.sessions.revoke_all(user_id, RevokeReason.REVOKED_BY_ADMIN, client)
        await self.db.commit()

    # --- roles ------------------------------------------------------------------------------

    # --- the audit log and the catalogue -----------------------------------------------------

    async def list_audit_events(
        self,
        cursor: str | None,
        limit: int,
        *,
        user_id: uuid.UUID | None = None,
        type: AuditEventType | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Page[AuditEvent]:
        """Newest first. `since` is inclusive and `until` exclusive, so consecutive ranges
        never show an event twice."""
        query = select(AuditEvent)
        if user_id is not None:
            query = query.where(col(AuditEvent.user_id) == user_id)
        if type is not None:
            query = query.where(col(AuditEvent.type) == type)
        if since is not None:
            query = query.where(col(AuditEvent.created_at) >= since)
        if until is not None:
            query = query.where(col(AuditEvent.created_at) < until)
        created_at, ident = col(AuditEvent.created_at), col(AuditEvent.id)
        after = decode_cursor(cursor)
        rows = (
            await self.db.exec(
                keyset.page(query, created_at, ident, after, limit, newest_first=True)
            )
        ).all()
        shown, next_cursor = cut(rows, limit, lambda event: (event.created_at, event.id))
        return Page(shown, next_cursor)

    async def list_permissions(self) -> list[Permission]:
        """The catalogue as the database holds it (`app/core/permissions.py` declares it)."""
        return list((await self.db.exec(select(Permission).order_by(col(Permission.name)))).all())

    async def list_roles(self) -> list[RoleView]:
        rows = await self.db.exec(
            select(Role, Permission.name)
            .join(RolePermission, col(RolePermission.role_id) == Role.id, isouter=True)
            .join(Permission, col(Permission.id) == RolePermission.permission_id, isouter=True)
            .order_by(col(Role.name), col(Permission.name))
        )
        roles: dict[uuid.UUID, tuple[Role, list[str]]] = {}
        for role, permission in rows:
            _, permissions = roles.setdefault(role.id, (role, []))
            if permission:
                permissions.append(permission)
        return [_role_view(role, permissions) for role, permissions in roles.values()]

    async def create_role(
        self,
        principal: Principal,
        name: str,
        description: str,
        permissions: Sequence[str],
        client: ClientInfo,
    ) -> RoleView:
        duplicate = f"A role named '{name}' already exists"
        await self._begin()
        if (await self.db.exec(select(Role.id).where(Role.name == name))).first():
            raise AlreadyExists(duplicate)
        permission_ids = await self._permission_ids(permissions)
        await self._authorise(principal, PermissionName.ROLES_WRITE, set(permissions))
        role = Role(name=name, description=description)
        self.db.add(role)
        try:
            await self.db.flush()
        except IntegrityError as exc:  # created by a concurrent request
            await self.db.rollback()
            raise AlreadyExists(duplicate) from exc
        self.db.add_all(RolePermission(role_id=role.id, permission_id=p) for p in permission_ids)
        audit.record(self.db, AuditEventType.ROLE_CREATED, client, principal.id, detail=role.name)
        await self.db.commit()
        return await self._role_view(role.id)

    async def update_role(
        self,
        principal: Principal,
        role_id: uuid.UUID,
        client: ClientInfo,
        *,
        description: str | None = None,
        permissions: Sequence[str] | None = None,
    ) -> RoleView:
        """Fields left None stay as they are; `permissions` replaces the role's permissions."""
        await self._begin()
        role = await self.db.get(Role, role_id)
        if role is None:
            raise NotFound("Role not found")
        current = list((await self._role_view(role.id)).permissions)
        wanted = sorted(set(permissions)) if permissions is not None else current
        permission_ids = await self._permission_ids(wanted)  # unknown names first: a 400
        await self._authorise(
            principal,
            PermissionName.ROLES_WRITE,
            await self._reach([role.name], current),
            set(wanted),
        )
        done: list[str] = []
        if permissions is not None:
            if role.name == ADMIN_ROLE and set(current) - set(wanted):
                raise AdminRoleFixed()
            if wanted != current:
                await self.db.exec(
                    delete(RolePermission).where(col(RolePermission.role_id) == role.id)
                )
                self.db.add_all(
                    RolePermission(role_id=role.id, permission_id=p) for p in permission_ids
                )
                done.append(f"permissions={','.join(wanted) or '-'}")
        if description is not None and description != role.description:
            role.description = description
            self.db.add(role)
            done.append("description")
        if done:
            detail = _limit(f"{role.name}: {'; '.join(done)}")
            audit.record(self.db, AuditEventType.ROLE_UPDATED, client, principal.id, detail=detail)
        await self.db.commit()  # also ends the exclusive transaction when nothing changed
        return await self._role_view(role.id)

    # --- the privilege boundary and the lock ------------------------------------------------

    async def _begin(self) -> None:
        """Start the exclusive transaction every change runs in (see the module docstring).

        Taken before anything is read, always in the same order (the `admin` role row, then
        whatever the change touches), so concurrent changes queue instead of deadlocking.
        """
        await accounts.lock_admins(self.db)

    async def _authorise(
        self,
        principal: Principal,
        route_permission: str,
        target: Iterable[str],
        granted: Iterable[str] = (),
    ) -> None:
        """Refuse unless the caller holds, now, the route's permission, everything the target
        holds and everything granted."""
        needed = {route_permission, *target, *granted}
        if not needed <= await self._held(principal.id):
            raise PrivilegeEscalation()

    async def _held(self, user_id: uuid.UUID) -> set[str]:
        """The caller's permissions as of this transaction; none once deactivated or deleted."""
        rows = await self.db.exec(
            grants_query()
            .join(User, col(User.id) == UserRole.user_id)
            .where(col(UserRole.user_id) == user_id, col(User.is_active).is_(True))
        )
        return {permission for _, permission in rows if permission}

    async def _reach(self, roles: Iterable[str], permissions: Iterable[str]) -> set[str]:
        """What acting on a holder of `roles` needs: their permissions, or all for `admin`."""
        if ADMIN_ROLE in roles:
            return set((await self.db.exec(select(Permission.name))).all())
        return set(permissions)

    # --- helpers ----------------------------------------------------------------------------

    async def _user(self, user_id: uuid.UUID) -> User:
        user = await self.db.get(User, user_id)
        if user is None:
            raise NotFound("User not found")
        return user

    async def _grants(self, user_id: uuid.UUID) -> tuple[list[str], list[str]]:
        return await users.roles_and_permissions(self.db, user_id)

    async def _roles(self, names: Sequence[str]) -> tuple[list[uuid.UUID], set[str]]:
        """The ids of the named roles and what holding them grants (every permission for
        `admin`)."""
        rows = (
            await self.db.exec(
                select(Role.name, Role.id, Permission.name)
                .join(RolePermission, col(RolePermission.role_id) == Role.id, isouter=True)
                .join(Permission, col(Permission.id) == RolePermission.permission_id, isouter=True)
                .where(col(Role.name).in_(names))
            )
        ).all()
        found = {name: role_id for name, role_id, _ in rows}
        unknown = sorted(set(names) - set(found))
        if unknown:
            raise UnknownName(f"Unknown role: {', '.join(unknown)}")
        permissions = {permission for _, _, permission in rows if permission}
        return list(found.values()), await self._reach(found, permissions)

    async def _permission_ids(self, names: Sequence[str]) -> list[uuid.UUID]:
        found = dict(
            (
                await self.db.exec(
                    select(Permission.name, Permission.id).where(col(Permission.name).in_(names))
                )
            ).all()
        )
        unknown = sorted(set(names) - set(found))
        if unknown:
            raise UnknownName(f"Unknown permission: {', '.join(unknown)}")
        return list(found.values())

    async def _role_view(self, role_id: uuid.UUID) -> RoleView:
        role = await self.db.get(Role, role_id)
        if role is None:
            raise NotFound("Role not found")
        names = await self.db.exec(
            select(Permission.name)
            .join(RolePermission, col(RolePermission.permission_id) == Permission.id)
            .where(RolePermission.role_id == role_id)
            .order_by(col(Permission.name))
        )
        return _role_view(role, names)


def _role_view(role: Role, permissions: Iterable[str]) -> RoleView:
    return RoleView(
        id=role.id, name=role.name, description=role.description, permissions=tuple(permissions)
    )


def _limit(text: str) -> str:
    return text if len(text) <= 512 else text[:509] + "..."
