"""The admin API. Every route names the permission it needs; the rules live in the service."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, status
from pydantic import AwareDatetime

from app.api.deps import Client, Ctx, Db, require_permissions
from app.api.routes import API_PREFIX
from app.core.permissions import PermissionName
from app.domain import Principal
from app.models import AuditEventType
from app.schemas.admin import (
    AdminUserUpdate,
    AuditEventPage,
    AuditEventRead,
    PermissionRead,
    RoleCreate,
    RoleName,
    RoleRead,
    RoleUpdate,
    SessionInfo,
    UserPage,
)
from app.schemas.user import UserRead
from app.services.admin import AdminService

PageSize = Annotated[int, Query(ge=1, le=100)]
Cursor = Annotated[
    str | None,
    Query(
        max_length=128,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="The `next_cursor` of the previous page; left out for the first page",
    ),
]
EmailPrefix = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=320,
        pattern=r"^[^\x00-\x1f\x7f]+$",
        description="Users whose email starts with this (case-insensitive)",
    ),
]

router = APIRouter(prefix=f"{API_PREFIX}/admin", tags=["admin"])


async def get_admin_service(db: Db, ctx: Ctx) -> AdminService:
    return AdminService(db, ctx)


Admin = Annotated[AdminService, Depends(get_admin_service)]
UsersReader = Annotated[Principal, Depends(require_permissions(PermissionName.USERS_READ))]
UsersWriter = Annotated[Principal, Depends(require_permissions(PermissionName.USERS_WRITE))]
SessionsReader = Annotated[Principal, Depends(require_permissions(PermissionName.SESSIONS_READ))]
SessionsWriter = Annotated[Principal, Depends(require_permissions(PermissionName.SESSIONS_WRITE))]
RolesReader = Annotated[Principal, Depends(require_permissions(PermissionName.ROLES_READ))]
RolesWriter = Annotated[Principal, Depends(require_permissions(PermissionName.ROLES_WRITE))]
AuditReader = Annotated[Principal, Depends(require_permissions(PermissionName.AUDIT_READ))]


@router.get("/users")
async def list_users(
    principal: UsersReader,
    admin: Admin,
    cursor: Cursor = None,
    limit: PageSize = 50,
    email: EmailPrefix = None,
    is_active: bool | None = None,
    is_verified: bool | None = None,
    role: Annotated[RoleName | None, Query()] = None,
) -> UserPage:
    """Users in sign-up order, a page at a time; users who sign up meanwhile join the end."""
    page = await admin.list_users(
        cursor,
        limit,
        email_prefix=email,
        is_active=is_active,
        is_verified=is_verified,
        role=role,
    )
    return UserPage(items=[UserRead.of(view) for view in page.items], next_cursor=page.next_cursor)


@router.get("/users/{user_id}")
async def get_user(user_id: uuid.UUID, principal: UsersReader, admin: Admin) -> UserRead:
    return UserRead.of(await admin.get_user(user_id))


@router.patch("/users/{user_id}")
async def update_user(
    user_id: uuid.UUID, body: AdminUserUpdate, principal: UsersWriter, admin: Admin, client: Client
) -> UserRead:
    """Deactivating a user revokes every session they have."""
    view = await admin.update_user(
        principal,
        user_id,
        client,
        is_active=body.is_active,
        is_verified=body.is_verified,
        roles=body.roles,
    )
    return UserRead.of(view)


@router.delete("/users/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_user(
    user_id: uuid.UUID, principal: UsersWriter, admin: Admin, client: Client
) -> None:
    await admin.delete_user(principal, user_id, client)


@router.delete("/users/{user_id}/mfa", status_code=status.HTTP_204_NO_CONTENT)
async def reset_user_mfa(
    user_id: uuid.UUID, principal: UsersWriter, admin: Admin, client: Client
) -> None:
    """Removes the user's second factors and passkeys (they lost them); they are told by email."""
    await admin.reset_mfa(principal, user_id, client)


@router.get("/users/{user_id}/sessions")
async def list_user_sessions(
    user_id: uuid.UUID, principal: SessionsReader, admin: Admin
) -> list[SessionInfo]:
    sessions = await admin.list_sessions(user_id)
    return [SessionInfo.model_validate(s, from_attributes=True) for s in sessions]


@router.delete("/users/{user_id}/sessions", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_user_sessions(
    user_id: uuid.UUID, principal: SessionsWriter, admin: Admin, client: Client
) -> None:
    await admin.revoke_sessions(principal, user_id, client)


@router.get("/audit-events")
async def list_audit_events(
    principal: AuditReader,
    admin: Admin,
    cursor: Cursor = None,
    limit: PageSize = 50,
    user_id: uuid.UUID | None = None,
    type: AuditEventType | None = None,
    since: Annotated[AwareDatetime | None, Query(description="From this moment on")] = None,
    until: Annotated[AwareDatetime | None, Query(description="Before this moment")] = None,
) -> AuditEventPage:
    """The audit log, newest first."""
    page = await admin.list_audit_events(
        cursor, limit, user_id=user_id, type=type, since=since, until=until
    )
    items = [AuditEventRead.model_validate(event, from_attributes=True) for event in page.items]
    return AuditEventPage(items=items, next_cursor=page.next_cursor)


@router.get("/permissions")
async def list_permissions(principal: RolesReader, admin: Admin) -> list[PermissionRead]:
    """Every permission the service declares; roles are built from these."""
    return [
        PermissionRead.model_validate(permission, from_attributes=True)
        for permission in await admin.list_permissions()
    ]


@router.get("/roles")
async def list_roles(principal: RolesReader, admin: Admin) -> list[RoleRead]:
    return [RoleRead.of(role) for role in await admin.list_roles()]


@router.post("/roles", status_code=status.HTTP_201_CREATED)
async def create_role(
    body: RoleCreate, principal: RolesWriter, admin: Admin, client: Client
) -> RoleRead:
    role = await admin.create_role(principal, body.name, body.description, body.permissions, client)
    return RoleRead.of(role)


@router.patch("/roles/{role_id}")
async def update_role(
    role_id: uuid.UUID, body: RoleUpdate, principal: RolesWriter, admin: Admin, client: Client
) -> RoleRead:
    role = await admin.update_role(
        principal, role_id, client, description=body.description, permissions=body.permissions
    )
    return RoleRead.of(role)
