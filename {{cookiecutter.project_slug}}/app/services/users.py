import uuid

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.permissions import RoleName
from app.db.principals import Principal
from app.models import Permission, Role, RolePermission, User, UserRole
from app.models.base import utcnow
from app.schemas.user import UserRead

DEFAULT_ROLE = RoleName.USER


def normalize_email(email: str) -> str:
    return email.strip().lower()


async def get_by_email(db: AsyncSession, email: str) -> User | None:
    result = await db.exec(select(User).where(User.email == normalize_email(email)))
    return result.first()


async def _saved_unless_email_taken(db: AsyncSession, user: User) -> bool:
    """Flush the user; False (and the transaction rolled back) when the email is taken.

    The unique index decides, so two concurrent requests cannot both claim one address.
    """
    db.add(user)
    try:
        await db.flush()
    except IntegrityError:
        await db.rollback()
        return False
    return True


async def create_user(
    db: AsyncSession, email: str, password_hash: str, *, is_verified: bool = False
) -> User | None:
    """Create a user with the default role; None when the email is taken (also by a race)."""
    user = User(email=normalize_email(email), password_hash=password_hash, is_verified=is_verified)
    if not await _saved_unless_email_taken(db, user):
        return None
    role = (await db.exec(select(Role).where(Role.name == DEFAULT_ROLE))).first()
    if role is not None:
        db.add(UserRole(user_id=user.id, role_id=role.id))
    await db.commit()
    return user


async def roles_and_permissions(
    db: AsyncSession, user_id: uuid.UUID
) -> tuple[list[str], list[str]]:
    rows = await db.exec(
        select(Role.name, Permission.name)
        .join(UserRole, col(UserRole.role_id) == Role.id)
        .join(RolePermission, col(RolePermission.role_id) == Role.id, isouter=True)
        .join(Permission, col(Permission.id) == RolePermission.permission_id, isouter=True)
        .where(UserRole.user_id == user_id)
    )
    roles: set[str] = set()
    permissions: set[str] = set()
    for role, permission in rows:
        roles.add(role)
        if permission:
            permissions.add(permission)
    return sorted(roles), sorted(permissions)


async def change_email(db: AsyncSession, user: User, new_email: str) -> bool:
    """Switch to an address its emailed link just proved (so it is verified); False, and the
    transaction rolled back, when it belongs to someone else by now."""
    user.email = normalize_email(new_email)
    user.is_verified = True
    return await _saved_unless_email_taken(db, user)


async def set_password(db: AsyncSession, user: User, password_hash: str) -> None:
    user.password_hash = password_hash
    user.password_changed_at = utcnow()
    db.add(user)


async def to_read_model(db: AsyncSession, user: User) -> UserRead:
    roles, permissions = await roles_and_permissions(db, user.id)
    return UserRead.model_validate(
        {**user.model_dump(), "roles": roles, "permissions": permissions}
    )


def read_model_of(principal: Principal) -> UserRead:
    """The caller's own view: a principal only exists for an active user."""
    return UserRead(
        id=principal.id,
        email=principal.email,
        is_active=True,
        is_verified=principal.is_verified,
        roles=list(principal.roles),
        permissions=list(principal.permissions),
        created_at=principal.created_at,
        last_login_at=principal.last_login_at,
    )
