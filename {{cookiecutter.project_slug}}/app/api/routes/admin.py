"""The admin API. Every route names the permission it needs; the rules live in the service."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, status

from app.api.deps import Client, Ctx, Db, require_permissions
from app.api.routes import API_PREFIX
from app.core.permissions import PermissionName
from app.domain import Principal
from app.schemas.admin import (
    AdminUserUpdate,
    RoleCreate,
    RoleRead,
    RoleUpdate,
    SessionInfo,
    UserPage,
)
from app.schemas.errors import ERROR_RESPONSES
from app.schemas.user import UserRead
from app.services.admin import AdminService

# Deeper pages cost the database a scan of every row before them.
MAX_OFFSET = 100_000

router = APIRouter(prefix=f"{API_PREFIX}/admin", tags=["admin"], responses=ERROR_RESPONSES)


async def get_admin_service(db: Db, ctx: Ctx) -> AdminService:
    return AdminService(db, ctx)


Admin = Annotated[AdminService, Depends(get_admin_service)]
UsersReader = Annotated[Principal, Depends(require_permissions(PermissionName.USERS_READ))]
UsersWriter = Annotated[Principal, Depends(require_permissions(PermissionName.USERS_WRITE))]
SessionsReader = Annotated[Principal, Depends(require_permissions(PermissionName.SESSIONS_READ))]
SessionsWriter = Annotated[Principal, Depends(require_permissions(PermissionName.SESSIONS_WRITE))]
RolesReader = Annotated[Principal, Depends(require_permissions(PermissionName.ROLES_READ))]
RolesWriter = Annotated[Principal, Depends(require_permissions(PermissionName.ROLES_WRITE))]


@router.get("/users")
async def list_users(
    principal: UsersReader,
    admin: Admin,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> UserPage:
    """Users in sign-up order."""
    views, total = await admin.list_users(offset, limit)
    items = [UserRead.of(view) for view in views]
    return UserPage(items=items, total=total, offset=offset, limit=limit)


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
