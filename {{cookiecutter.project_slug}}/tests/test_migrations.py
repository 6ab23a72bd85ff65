"""The migrations build exactly the schema the models describe, and seed the roles."""

from alembic import command
from sqlmodel import select

from app.models import Permission, Role, User
from app.services.users import roles_and_permissions
from tests.helpers import alembic_config


def test_models_and_migrations_agree():
    # Raises when autogenerate would produce a new migration.
    command.check(alembic_config())


async def test_seeded_roles_and_permissions(db):
    roles = set((await db.exec(select(Role.name))).all())
    permissions = set((await db.exec(select(Permission.name))).all())
    assert roles == {"user", "admin"}
    assert {"users:read", "users:write", "roles:read", "roles:write"} <= permissions
    assert {"sessions:read", "sessions:write"} <= permissions


async def test_admin_role_holds_every_permission(db, app):
    from tests.helpers import create_user

    user = await create_user(app, "root@example.com")
    from app.models import UserRole

    admin = (await db.exec(select(Role).where(Role.name == "admin"))).one()
    db.add(UserRole(user_id=user.id, role_id=admin.id))
    await db.commit()
    roles, permissions = await roles_and_permissions(db, user.id)
    assert roles == ["admin", "user"]
    assert set(permissions) == set((await db.exec(select(Permission.name))).all())


async def test_no_migration_creates_a_user(db):
    assert (await db.exec(select(User))).all() == []
