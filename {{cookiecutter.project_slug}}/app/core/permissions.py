"""Every permission and built-in role the service knows, declared once.

A route asks for a permission by name (`require_permissions(PermissionName.NOTES_READ)`); the
database rows follow from this module after every `alembic upgrade` (`app/db/catalogue.py`),
and the tests derive what each role holds from it. Adding a permission is one line here.
"""

import enum
from typing import Self


class _Declared(enum.StrEnum):
    """A name with the description the admin API shows beside it."""

    description: str

    def __new__(cls, name: str, description: str) -> Self:
        member = str.__new__(cls, name)
        member._value_ = name
        member.description = description
        return member


class PermissionName(_Declared):
    USERS_READ = "users:read", "List and view users"
    USERS_WRITE = "users:write", "Change, deactivate and delete users"
    ROLES_READ = "roles:read", "List roles and their permissions"
    ROLES_WRITE = "roles:write", "Create roles and change their permissions"
    SESSIONS_READ = "sessions:read", "View any user's sessions"
    SESSIONS_WRITE = "sessions:write", "Revoke any user's sessions"
    AUDIT_READ = "audit:read", "Read the audit log"


class RoleName(_Declared):
    USER = "user", "Default role of every new account"
    ADMIN = "admin", "Every permission"


# What a built-in role is granted on every upgrade (an admin may grant more through the API).
# `admin` is not listed: it holds every permission, including the ones declared tomorrow.
GRANTS: dict[RoleName, frozenset[PermissionName]] = {RoleName.USER: frozenset()}


def granted(role: RoleName) -> frozenset[PermissionName]:
    """The permissions the catalogue gives a built-in role."""
    return frozenset(PermissionName) if role is RoleName.ADMIN else GRANTS.get(role, frozenset())
