"""The read behind every authenticated request, kept off the ORM.

Each request reads its session, user and grants afresh, so logout, revocation, deactivation and
role changes apply at once in every worker: nothing is cached between requests. The ORM made
that read the bulk of an authenticated request; here it is one statement, built with SQLAlchemy
and compiled once, run on a raw driver connection (`driver.py`).
"""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, bindparam, exists, inspect, null, or_, select, union_all
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Mapped
from sqlmodel import col
from sqlmodel.sql.expression import Select

from app.db.driver import Statement, reader
from app.domain import Principal
from app.models import (
    DeviceSession,
    Passkey,
    Permission,
    Role,
    RolePermission,
    TotpFactor,
    User,
    UserRole,
)


def grants_query(*leading: ColumnElement[Any] | Mapped[Any]) -> Select[*tuple[Any, ...]]:
    """What users hold: one row per (role, permission) of their roles, the permission NULL for
    a role without any. Every read of a user's roles and permissions starts here."""
    return (
        Select(*leading, col(Role.name), col(Permission.name))
        .select_from(UserRole)
        .join(Role, col(Role.id) == UserRole.role_id)
        .outerjoin(RolePermission, col(RolePermission.role_id) == Role.id)
        .outerjoin(Permission, col(Permission.id) == RolePermission.permission_id)
    )


# Whether the user has a second factor (for MFA_REQUIRED_ROLES): two index lookups.
HAS_SECOND_FACTOR = or_(
    exists().where(
        col(TotpFactor.user_id) == bindparam("user_id"), col(TotpFactor.confirmed_at).is_not(None)
    ),
    exists().where(col(Passkey.user_id) == bindparam("user_id")),
).label("has_second_factor")
USER_COLUMNS: tuple[ColumnElement[Any], ...] = (
    *(
        inspect(User).columns[name]
        for name in ("id", "email", "is_verified", "created_at", "last_login_at")
    ),
    inspect(DeviceSession).columns["authenticated_at"],
    HAS_SECOND_FACTOR,
)
NO_USER = tuple(null() for _ in USER_COLUMNS)

# One row for the user, when the session is live, then one row per (role, permission) held.
# The user's columns come once, not on every grant row: decoding them was most of the read.
PRINCIPAL_QUERY = union_all(
    select(*USER_COLUMNS, null(), null())
    .select_from(DeviceSession)
    .join(User, col(User.id) == DeviceSession.user_id)
    .where(
        col(DeviceSession.id) == bindparam("session_id"),
        col(User.id) == bindparam("user_id"),
        col(DeviceSession.revoked_at).is_(None),
        col(DeviceSession.expires_at) > bindparam("now"),
        col(User.is_active).is_(True),
    ),
    grants_query(*NO_USER).where(col(UserRole.user_id) == bindparam("user_id")),
)


class PrincipalReader:
    """Reads the principal of a live session with `PRINCIPAL_QUERY`, in one statement."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._statement = Statement(PRINCIPAL_QUERY, engine.dialect, USER_COLUMNS)
        self._connection = reader(engine)

    async def read(
        self, session_id: uuid.UUID, user_id: uuid.UUID, now: datetime
    ) -> Principal | None:
        """None when the session is revoked or expired, or the user inactive or gone."""
        values = {"session_id": session_id, "user_id": user_id, "now": now}
        rows = await self._connection.fetch(self._statement.sql, self._statement.args(values))
        user_row = next((row for row in rows if row[0] is not None), None)
        if user_row is None:  # the session has ended: only grant rows came back
            return None
        user_id, email, is_verified, created_at, last_login_at, authenticated_at, has_factor = (
            self._statement.row(user_row)
        )
        return Principal(
            id=user_id,
            session_id=session_id,
            email=email,
            is_verified=is_verified,
            created_at=created_at,
            last_login_at=last_login_at,
            authenticated_at=authenticated_at,
            has_second_factor=bool(has_factor),
            roles=tuple(sorted({row[-2] for row in rows if row[-2] is not None})),
            permissions=tuple(sorted({row[-1] for row in rows if row[-1] is not None})),
        )

    async def close(self) -> None:
        await self._connection.close()
