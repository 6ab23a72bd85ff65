"""The user rows and what they hold: the helpers every service builds on (none commits)."""

import uuid
from collections.abc import Iterable, Sequence

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.permissions import RoleName
from app.db.principals import grants_query
from app.domain import UserView
from app.models import Role, User, UserRole
from app.models.base import utcnow

DEFAULT_ROLE = RoleName.USER

Grants = tuple[tuple[str, ...], tuple[str, ...]]
NO_GRANTS: Grants = ((), ())


def normalize_email(email: str) -> str:
    return email.strip().lower()


async def exists(db: AsyncSession, user_id: uuid.UUID) -> bool:
    """Whether the account is still there (read from the database, not the session's cache)."""
    return (await db.exec(select(User.id).where(User.id == user_id))).first() is not None


async def get_by_email(db: AsyncSession, email: str) -> User | None:
    result = await db.exec(select(User).where(User.email == normalize_email(email)))
    return result.first()


async def _saved_unless_email_taken(db: AsyncSession, user: User) -> bool:
    """Flush the user; False when the email is taken, and the caller must then roll back.

    The unique index decides, so two concurrent requests cannot both claim one address.
    """
    db.add(user)
    try:
        await db.flush()
    except IntegrityError:
        return False
    return True


async def create_user(
    db: AsyncSession, email: str, password_hash: str, *, is_verified: bool = False
) -> User | None:
    """Add a user with the default role to the caller's transaction; None when the email is
    taken (also by a race), and the caller must then roll back."""
    user = User(email=normalize_email(email), password_hash=password_hash, is_verified=is_verified)
    if not await _saved_unless_email_taken(db, user):
        return None
    role = (await db.exec(select(Role).where(Role.name == DEFAULT_ROLE))).first()
    if role is not None:
        db.add(UserRole(user_id=user.id, role_id=role.id))
    return user


async def grants(db: AsyncSession, user_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Grants]:
    """Role and permission names of many users in one query (no N+1 on list pages)."""
    ids = list(user_ids)
    if not ids:
        return {}
    rows = await db.exec(grants_query(col(UserRole.user_id)).where(col(UserRole.user_id).in_(ids)))
    found: dict[uuid.UUID, tuple[set[str], set[str]]] = {}
    for user_id, role, permission in rows:
        roles, permissions = found.setdefault(user_id, (set(), set()))
        roles.add(role)
        if permission:
            permissions.add(permission)
    return {key: (tuple(sorted(r)), tuple(sorted(p))) for key, (r, p) in found.items()}


async def roles_and_permissions(
    db: AsyncSession, user_id: uuid.UUID
) -> tuple[list[str], list[str]]:
    roles, permissions = (await grants(db, [user_id])).get(user_id, NO_GRANTS)
    return list(roles), list(permissions)


async def views(db: AsyncSession, accounts: Sequence[User]) -> list[UserView]:
    """The accounts as the API shows them, roles and permissions included."""
    held = await grants(db, [user.id for user in accounts])
    return [_view(user, *held.get(user.id, NO_GRANTS)) for user in accounts]


async def view(db: AsyncSession, user: User) -> UserView:
    return (await views(db, [user]))[0]


def _view(user: User, roles: tuple[str, ...], permissions: tuple[str, ...]) -> UserView:
    return UserView(
        id=user.id,
        email=user.email,
        is_active=user.is_active,
        is_verified=user.is_verified,
        created_at=user.created_at,
        last_login_at=user.last_login_at,
        roles=roles,
        permissions=permissions,
    )


async def change_email(db: AsyncSession, user: User, new_email: str) -> bool:
    """Switch to an address its emailed link just proved (so it is verified); False when it
    belongs to someone else by now, and the caller must then roll back."""
    user.email = normalize_email(new_email)
    user.is_verified = True
    return await _saved_unless_email_taken(db, user)


async def set_password(db: AsyncSession, user: User, password_hash: str) -> None:
    user.password_hash = password_hash
    user.password_changed_at = utcnow()
    db.add(user)
