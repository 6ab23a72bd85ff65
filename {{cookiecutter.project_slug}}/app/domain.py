"""What services hand back: plain snapshots, attached to no database session.

Routers shape them into response schemas; services never see a schema.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the user behind a live session, read for this request.

    A snapshot, not attached to any database session: services that change the user load it.
    """

    id: uuid.UUID
    session_id: uuid.UUID
    email: str
    is_verified: bool
    created_at: datetime
    last_login_at: datetime | None
    roles: tuple[str, ...]
    permissions: tuple[str, ...]

    @property
    def is_active(self) -> bool:
        """A principal only exists for an active user."""
        return True


@dataclass(frozen=True, slots=True)
class UserView:
    """An account with the roles and permissions it holds now."""

    id: uuid.UUID
    email: str
    is_active: bool
    is_verified: bool
    created_at: datetime
    last_login_at: datetime | None
    roles: tuple[str, ...]
    permissions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RoleView:
    id: uuid.UUID
    name: str
    description: str
    permissions: tuple[str, ...]


class RevokeReason(StrEnum):
    """Why a session ended, as stored on the session and in its audit event.

    Reasons, not secrets: the `noqa`s silence the hard-coded password check their names trip.
    """

    LOGOUT = "logout"
    LOGOUT_ALL = "logout_all"
    REVOKED_BY_USER = "revoked_by_user"
    REVOKED_BY_ADMIN = "revoked_by_admin"
    REVOKED_BY_OPERATOR = "revoked_by_operator"
    PASSWORD_CHANGED = "password_changed"  # noqa: S105
    PASSWORD_RESET_BY_OPERATOR = "password_reset_by_operator"  # noqa: S105
    DEACTIVATED = "deactivated"
    IDLE_TIMEOUT = "idle_timeout"
    DEVICE_MISMATCH = "device_mismatch"
    REFRESH_TOKEN_REUSE = "refresh_token_reuse"  # noqa: S105
