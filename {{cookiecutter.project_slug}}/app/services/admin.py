"""The admin API's rules: user management, other users' sessions, roles and permissions.

Two guards keep the service manageable: an admin cannot lock themselves out (deactivate or
delete their own account, drop their own admin role), and nobody can take away the last
active admin or strip permissions from the `admin` role.
"""

import uuid
from collections.abc import Iterable, Sequence

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, delete, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.db.principals import Principal
from app.models import (
    AuditEventType,
    DeviceSession,
    Permission,
    Role,
    RolePermission,
    User,
    UserRole,
)
from app.schemas.admin import AdminUserUpdate, RoleCreate, RoleRead, RoleUpdate, UserPage
from app.schemas.user import UserRead
from app.services import audit
from app.services.context import ClientInfo, Context
from app.services.errors import (
    AdminRoleFixed,
    AlreadyExists,
    LastAdmin,
    NotFound,
    SelfLockout,
    UnknownName,
)
from app.services.sessions import SessionService

ADMIN_ROLE = "admin"


class AdminService:
    def __init__(self, db: AsyncSession, ctx: Context) -> None:
        self.db = db
        self.ctx = ctx
        self.sessions = SessionService(db, ctx)

    # --- users ------------------------------------------------------------------------------

    async def list_users(self, offset: int, limit: int) -> UserPage:
        total = (await self.db.exec(select(func.count()).select_from(User))).one()
        page = (
            await self.db.exec(
                select(User)
                .order_by(col(User.created_at), col(User.id))
                .offset(offset)
                .limit(limit)
            )
        ).all()
        grants = await self._grants([user.id for user in page])
        items = [_read(user, *grants.get(user.id, ([], []))) for user in page]
        return UserPage(items=items, total=total, offset=offset, limit=limit)

    async def get_user(self, user_id: uuid.UUID) -> UserRead:
        user = await self._user(user_id)
        return _read(user, *(await self._grants([user.id])).get(user.id, ([], [])))

    async def update_user(
        self, actor: Principal, user_id: uuid.UUID, changes: AdminUserUpdate, client: ClientInfo
    ) -> UserRead:
        user = await self._user(user_id)
        current_roles, _ = (await self._grants([user.id])).get(user.id, ([], []))
        new_roles = sorted(set(changes.roles)) if changes.roles is not None else current_roles
        deactivating = changes.is_active is False
        losing_admin = ADMIN_ROLE in current_roles and ADMIN_ROLE not in new_roles

        if user.id == actor.id:
            if deactivating:
                raise SelfLockout("You cannot deactivate your own account")
            if losing_admin:
                raise SelfLockout("You cannot remove your own admin role")
        if ADMIN_ROLE in current_roles and user.is_active and (deactivating or losing_admin):
            await self._ensure_another_admin(user.id)

        done: list[str] = []
        if changes.roles is not None and new_roles != current_roles:
            role_ids = await self._role_ids(new_roles)
            await self.db.exec(delete(UserRole).where(col(UserRole.user_id) == user.id))
            self.db.add_all(UserRole(user_id=user.id, role_id=role_id) for role_id in role_ids)
            done.append(f"roles={','.join(new_roles) or '-'}")
        for field in ("is_active", "is_verified"):
            value = getattr(changes, field)
            if value is not None and value != getattr(user, field):
                setattr(user, field, value)
                done.append(f"{field}={value}")
        if deactivating:
            await self.sessions.revoke_all(user.id, "deactivated", client)
        if done:
            self.db.add(user)
            audit.record(
                self.db,
                AuditEventType.USER_UPDATED,
                client,
                user.id,
                detail=_limit(f"by {actor.id}: {'; '.join(done)}"),
            )
        await self.db.commit()
        return await self.get_user(user.id)

    async def delete_user(self, actor: Principal, user_id: uuid.UUID, client: ClientInfo) -> None:
        """Delete the user; their sessions, roles and tokens go with them (FK cascade)."""
        user = await self._user(user_id)
        if user.id == actor.id:
            raise SelfLockout("You cannot delete your own account")
        roles, _ = (await self._grants([user.id])).get(user.id, ([], []))
        if ADMIN_ROLE in roles and user.is_active:
            await self._ensure_another_admin(user.id)
        await self.db.delete(user)
        # The event names the acting admin: the deleted user's id cannot be referenced.
        audit.record(
            self.db, AuditEventType.USER_DELETED, client, actor.id, detail=f"user {user.id}"
        )
        await self.db.commit()

    # --- sessions ---------------------------------------------------------------------------

    async def list_sessions(self, user_id: uuid.UUID) -> list[DeviceSession]:
        await self._user(user_id)
        return await self.sessions.list_active(user_id)

    async def revoke_sessions(self, user_id: uuid.UUID, client: ClientInfo) -> None:
        await self._user(user_id)
        await self.sessions.revoke_all(user_id, "revoked_by_admin", client)
        await self.db.commit()

    # --- roles ------------------------------------------------------------------------------

    async def list_roles(self) -> list[RoleRead]:
        rows = await self.db.exec(
            select(Role, Permission.name)
            .join(RolePermission, col(RolePermission.role_id) == Role.id, isouter=True)
            .join(Permission, col(Permission.id) == RolePermission.permission_id, isouter=True)
            .order_by(col(Role.name), col(Permission.name))
        )
        roles: dict[uuid.UUID, RoleRead] = {}
        for role, permission in rows:
            read = roles.setdefault(
                role.id,
                RoleRead(id=role.id, name=role.name, description=role.description, permissions=[]),
            )
            if permission:
                read.permissions.append(permission)
        return list(roles.values())

    async def create_role(self, actor: Principal, body: RoleCreate, client: ClientInfo) -> RoleRead:
        duplicate = f"A role named '{body.name}' already exists"
        if (await self.db.exec(select(Role.id).where(Role.name == body.name))).first():
            raise AlreadyExists(duplicate)
        permission_ids = await self._permission_ids(body.permissions)
        role = Role(name=body.name, description=body.description)
        self.db.add(role)
        try:
            await self.db.flush()
        except IntegrityError as exc:  # created by a concurrent request
            await self.db.rollback()
            raise AlreadyExists(duplicate) from exc
        self.db.add_all(RolePermission(role_id=role.id, permission_id=p) for p in permission_ids)
        audit.record(self.db, AuditEventType.ROLE_CREATED, client, actor.id, detail=role.name)
        await self.db.commit()
        return await self._role_read(role.id)

    async def update_role(
        self, actor: Principal, role_id: uuid.UUID, body: RoleUpdate, client: ClientInfo
    ) -> RoleRead:
        role = await self.db.get(Role, role_id)
        if role is None:
            raise NotFound("Role not found")
        done: list[str] = []
        if body.permissions is not None:
            wanted = sorted(set(body.permissions))
            current = (await self._role_read(role.id)).permissions
            if role.name == ADMIN_ROLE and set(current) - set(wanted):
                raise AdminRoleFixed()
            if wanted != current:
                permission_ids = await self._permission_ids(wanted)
                await self.db.exec(
                    delete(RolePermission).where(col(RolePermission.role_id) == role.id)
                )
                self.db.add_all(
                    RolePermission(role_id=role.id, permission_id=p) for p in permission_ids
                )
                done.append(f"permissions={','.join(wanted) or '-'}")
        if body.description is not None and body.description != role.description:
            role.description = body.description
            self.db.add(role)
            done.append("description")
        if done:
            detail = _limit(f"{role.name}: {'; '.join(done)}")
            audit.record(self.db, AuditEventType.ROLE_UPDATED, client, actor.id, detail=detail)
            await self.db.commit()
        return await self._role_read(role.id)

    # --- helpers ----------------------------------------------------------------------------

    async def _user(self, user_id: uuid.UUID) -> User:
        user = await self.db.get(User, user_id)
        if user is None:
            raise NotFound("User not found")
        return user

    async def _grants(
        self, user_ids: Iterable[uuid.UUID]
    ) -> dict[uuid.UUID, tuple[list[str], list[str]]]:
        """Role and permission names of many users in one query (no N+1 on list pages)."""
        ids = list(user_ids)
        if not ids:
            return {}
        rows = await self.db.exec(
            select(UserRole.user_id, Role.name, Permission.name)
            .join(Role, col(Role.id) == UserRole.role_id)
            .join(RolePermission, col(RolePermission.role_id) == Role.id, isouter=True)
            .join(Permission, col(Permission.id) == RolePermission.permission_id, isouter=True)
            .where(col(UserRole.user_id).in_(ids))
        )
        found: dict[uuid.UUID, tuple[set[str], set[str]]] = {}
        for user_id, role, permission in rows:
            roles, permissions = found.setdefault(user_id, (set(), set()))
            roles.add(role)
            if permission:
                permissions.add(permission)
        return {key: (sorted(r), sorted(p)) for key, (r, p) in found.items()}

    async def _ensure_another_admin(self, user_id: uuid.UUID) -> None:
        others = (
            await self.db.exec(
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

    async def _role_ids(self, names: Sequence[str]) -> list[uuid.UUID]:
        found = dict(
            (await self.db.exec(select(Role.name, Role.id).where(col(Role.name).in_(names)))).all()
        )
        unknown = sorted(set(names) - set(found))
        if unknown:
            raise UnknownName(f"Unknown role: {', '.join(unknown)}")
        return list(found.values())

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

    async def _role_read(self, role_id: uuid.UUID) -> RoleRead:
        role = await self.db.get(Role, role_id)
        if role is None:
            raise NotFound("Role not found")
        names = await self.db.exec(
            select(Permission.name)
            .join(RolePermission, col(RolePermission.permission_id) == Permission.id)
            .where(RolePermission.role_id == role_id)
            .order_by(col(Permission.name))
        )
        return RoleRead(
            id=role.id, name=role.name, description=role.description, permissions=list(names)
        )


def _read(user: User, roles: list[str], permissions: list[str]) -> UserRead:
    return UserRead.model_validate(
        {**user.model_dump(), "roles": roles, "permissions": permissions}
    )


def _limit(text: str) -> str:
    return text if len(text) <= 512 else text[:509] + "..."
