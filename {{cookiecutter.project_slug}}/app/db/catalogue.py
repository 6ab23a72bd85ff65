"""The permission and role rows, brought in line with `app/core/permissions.py`.

`alembic/env.py` runs `sync_catalogue` after every upgrade that reaches head. A sync rather
than rows seeded by migrations: a migration is frozen when written, so each new permission
would need a hand-written data migration, and `admin` would miss every permission someone
forgot to grant it. The sync is idempotent and only touches what the catalogue declares, so
roles created through the admin API, and extra grants, stay. Undeclared permissions are
deleted (their grants with them): the catalogue is the list of what the code checks.
"""

import uuid
from collections.abc import Iterable

from sqlalchemy import Connection, Table, delete, insert, select, update
from sqlmodel import SQLModel

from app.core.permissions import PermissionName, RoleName, granted


def sync_catalogue(connection: Connection) -> None:
    """Declared permissions exist with their descriptions, undeclared ones are gone with their
    grants, and each built-in role exists and holds its grants. A built-in role's description
    is only written when the role is created: admins may edit it through the API."""
    tables = SQLModel.metadata.tables
    permission, role, role_permission = (
        tables["permission"],
        tables["role"],
        tables["role_permission"],
    )
    permission_ids = _ensure(connection, permission, PermissionName, refresh=True)
    stale = select(permission.c.id).where(permission.c.name.not_in(list(PermissionName)))
    connection.execute(delete(role_permission).where(role_permission.c.permission_id.in_(stale)))
    connection.execute(delete(permission).where(permission.c.id.in_(stale)))

    role_ids = _ensure(connection, role, RoleName, refresh=False)
    held = {
        (role_id, permission_id)
        for role_id, permission_id in connection.execute(
            select(role_permission.c.role_id, role_permission.c.permission_id)
        )
    }
    missing = [
        {"role_id": role_ids[name], "permission_id": permission_ids[granted_name]}
        for name in RoleName
        for granted_name in granted(name)
        if (role_ids[name], permission_ids[granted_name]) not in held
    ]
    if missing:
        connection.execute(insert(role_permission), missing)


def _ensure(
    connection: Connection,
    table: Table,
    declared: Iterable[PermissionName | RoleName],
    *,
    refresh: bool,
) -> dict[str, uuid.UUID]:
    """Insert the declared names that are missing (and, with `refresh`, rewrite descriptions
    that changed); the id of every declared name."""
    rows = {
        name: (id_, description)
        for id_, name, description in connection.execute(
            select(table.c.id, table.c.name, table.c.description)
        )
    }
    ids: dict[str, uuid.UUID] = {}
    for entry in declared:
        if entry in rows:
            id_, description = rows[entry]
            if refresh and description != entry.description:
                connection.execute(
                    update(table).where(table.c.id == id_).values(description=entry.description)
                )
        else:
            id_ = uuid.uuid4()
            connection.execute(
                insert(table).values(id=id_, name=str(entry), description=entry.description)
            )
        ids[entry] = id_
    return ids
