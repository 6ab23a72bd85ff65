"""Every table, imported here so `SQLModel.metadata` (and Alembic) sees them all.

A new module in this package is imported too, without an edit here: a table added by a feature
is in the next `alembic revision --autogenerate` as soon as its file exists.
"""

import importlib
import pkgutil

from app.models.audit import AuditEvent, AuditEventType
from app.models.mfa import (
    ChallengePurpose,
    MfaChallenge,
    Passkey,
    RecoveryCode,
    TotpFactor,
)
from app.models.one_time_token import OneTimeToken, TokenPurpose
from app.models.rbac import Permission, Role, RolePermission, UserRole
from app.models.session import DeviceSession
from app.models.user import User

__all__ = [
    "AuditEvent",
    "AuditEventType",
    "ChallengePurpose",
    "DeviceSession",
    "MfaChallenge",
    "OneTimeToken",
    "Passkey",
    "Permission",
    "RecoveryCode",
    "Role",
    "RolePermission",
    "TokenPurpose",
    "TotpFactor",
    "User",
    "UserRole",
]

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
