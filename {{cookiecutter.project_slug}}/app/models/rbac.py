"""Roles and permissions. Permissions are strings such as `users:read`."""

import uuid

from sqlmodel import Field, SQLModel

from app.models.base import id_field


class Role(SQLModel, table=True):
    __tablename__ = "role"

    id: uuid.UUID = id_field()
    name: str = Field(max_length=64, unique=True, index=True)
    description: str = Field(default="", max_length=255)


class Permission(SQLModel, table=True):
    __tablename__ = "permission"

    id: uuid.UUID = id_field()
    name: str = Field(max_length=64, unique=True, index=True)
    description: str = Field(default="", max_length=255)


class UserRole(SQLModel, table=True):
    __tablename__ = "user_role"

    user_id: uuid.UUID = Field(foreign_key="user.id", primary_key=True, ondelete="CASCADE")
    role_id: uuid.UUID = Field(foreign_key="role.id", primary_key=True, ondelete="CASCADE")


class RolePermission(SQLModel, table=True):
    __tablename__ = "role_permission"

    role_id: uuid.UUID = Field(foreign_key="role.id", primary_key=True, ondelete="CASCADE")
    permission_id: uuid.UUID = Field(
        foreign_key="permission.id", primary_key=True, ondelete="CASCADE"
    )
