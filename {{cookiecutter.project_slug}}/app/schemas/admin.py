"""Request and response bodies of the admin API."""

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from app.domain import RoleView
from app.schemas.fields import Description, Name
from app.schemas.user import UserRead

RoleName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=r"^[a-z0-9][a-z0-9_.:-]*$",
        description="Lower-case letters, digits and _ . : -",
    ),
]
PermissionName = Name


class UserPage(BaseModel):
    items: list[UserRead]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page"
    )


class AuditEventRead(BaseModel):
    id: uuid.UUID
    user_id: uuid.UUID | None
    type: str
    ip_address: str | None
    user_agent: str | None
    detail: str | None
    created_at: datetime


class AuditEventPage(BaseModel):
    items: list[AuditEventRead]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page"
    )


class PermissionRead(BaseModel):
    name: str
    description: str


class AdminUserUpdate(BaseModel):
    """Fields left out stay as they are. `roles` replaces the user's roles."""

    model_config = ConfigDict(extra="forbid")

    is_active: bool | None = None
    is_verified: bool | None = None
    roles: list[RoleName] | None = Field(default=None, max_length=64)


class SessionInfo(BaseModel):
    id: uuid.UUID
    device_label: str
    ip_address: str | None
    last_ip_address: str | None
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime


class RoleRead(BaseModel):
    id: uuid.UUID
    name: str
    description: str
    permissions: list[str]

    @classmethod
    def of(cls, role: RoleView) -> "RoleRead":
        return cls(
            id=role.id,
            name=role.name,
            description=role.description,
            permissions=list(role.permissions),
        )


class RoleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: RoleName
    description: Description = ""
    permissions: list[PermissionName] = Field(default_factory=list, max_length=256)


class RoleUpdate(BaseModel):
    """Fields left out stay as they are. `permissions` replaces the role's permissions."""

    model_config = ConfigDict(extra="forbid")

    description: Description | None = None
    permissions: list[PermissionName] | None = Field(default=None, max_length=256)
