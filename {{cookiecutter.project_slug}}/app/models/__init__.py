"""Every table, imported here so `SQLModel.metadata` (and Alembic) sees them all."""

from app.models.audit import AuditEvent, AuditEventType
from app.models.one_time_token import OneTimeToken, TokenPurpose
from app.models.rbac import Permission, Role, RolePermission, UserRole
from app.models.session import DeviceSession
from app.models.user import User

__all__ = [
    "AuditEvent",
    "AuditEventType",
    "DeviceSession",
    "OneTimeToken",
    "Permission",
    "Role",
    "RolePermission",
    "TokenPurpose",
    "User",
    "UserRole",
]
