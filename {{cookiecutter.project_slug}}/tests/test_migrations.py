"""The migrations build exactly the schema the models describe; the permission and role rows
follow the catalogue in app/core/permissions.py; `alembic revision` works without the dev tools."""

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from alembic import command
from sqlmodel import col, delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.permissions import PermissionName, RoleName, granted
from app.db.catalogue import sync_catalogue
from app.models import Permission, Role, RolePermission, User
from tests.helpers import PROJECT, alembic_config, subprocess_environment


def test_models_and_migrations_agree() -> None:
    # Raises when autogenerate would produce a new migration.
    command.check(alembic_config())


def python_without_ruff(where: Path) -> Path:
    """A real virtualenv holding every installed package but ruff: a runtime-only install."""
    venv = where / "no-ruff"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    ours = {Path(sysconfig.get_paths()[kind]) for kind in ("purelib", "platlib")}
    for folder in ours:
        for entry in folder.iterdir():
            if entry.name.split("-")[0] != "ruff" and not (site / entry.name).exists():
                (site / entry.name).symlink_to(entry)
    return python


def test_autogenerate_without_ruff_writes_the_revision_and_says_it_is_unformatted(
    tmp_path: Path,
) -> None:
    """alembic.ini formats new revisions with `python -m ruff`; where ruff is not installed
    `alembic revision --autogenerate` still succeeds and says what it skipped."""
    python = python_without_ruff(tmp_path)
    probe = subprocess.run([python, "-c", "import alembic, ruff"], capture_output=True, check=False)
    assert b"No module named 'ruff'" in probe.stderr
    # A copy of the migrations, so the new revision lands in tmp_path, not in the project.
    copy = tmp_path / "project"
    for name in ("alembic", "app"):
        shutil.copytree(PROJECT / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(PROJECT / "alembic.ini", copy)
    made = subprocess.run(
        [python, "-m", "alembic", "revision", "--autogenerate", "-m", "nothing new"],
        cwd=copy,
        env=subprocess_environment(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert made.returncode == 0, made.stdout + made.stderr
    assert "ruff not installed; migration left unformatted" in made.stdout, made.stdout
    (revision,) = (copy / "alembic" / "versions").glob("*_nothing_new.py")
    compile(revision.read_text(), str(revision), "exec")


async def held_by(db: AsyncSession, role: str) -> set[str]:
    rows = await db.exec(
        select(Permission.name)
        .join(RolePermission, col(RolePermission.permission_id) == Permission.id)
        .join(Role, col(Role.id) == RolePermission.role_id)
        .where(Role.name == role)
    )
    return set(rows.all())


async def sync(db: AsyncSession) -> None:
    """What `alembic upgrade head` runs after the migrations."""
    connection = await db.connection()
    await connection.run_sync(sync_catalogue)
    await db.commit()


async def test_the_upgrade_writes_every_declared_permission_and_role(db: AsyncSession) -> None:
    permissions = {row.name: row.description for row in (await db.exec(select(Permission))).all()}
    assert permissions == {name: name.description for name in PermissionName}
    assert set((await db.exec(select(Role.name))).all()) == set(RoleName)


async def test_each_built_in_role_holds_what_the_catalogue_grants(db: AsyncSession) -> None:
    for role in RoleName:
        assert await held_by(db, role) == granted(role), role
    assert await held_by(db, RoleName.ADMIN) == set(PermissionName)


async def test_a_permission_missing_from_the_database_comes_back_and_goes_to_admin(
    db: AsyncSession,
) -> None:
    await db.exec(delete(Permission).where(col(Permission.name) == PermissionName.USERS_READ))
    await db.commit()
    assert PermissionName.USERS_READ not in await held_by(db, RoleName.ADMIN)
    await sync(db)
    assert await held_by(db, RoleName.ADMIN) == set(PermissionName)


async def test_a_permission_no_longer_declared_is_removed_with_its_grants(db: AsyncSession) -> None:
    admin = (await db.exec(select(Role).where(Role.name == RoleName.ADMIN))).one()
    retired = Permission(name="reports:read", description="Dropped from the catalogue")
    db.add(retired)
    await db.flush()
    db.add(RolePermission(role_id=admin.id, permission_id=retired.id))
    await db.commit()
    await sync(db)
    assert "reports:read" not in set((await db.exec(select(Permission.name))).all())
    assert await held_by(db, RoleName.ADMIN) == set(PermissionName)


async def test_the_sync_keeps_roles_and_grants_made_through_the_api(db: AsyncSession) -> None:
    ops = Role(name="ops", description="On call")
    db.add(ops)
    await db.flush()
    sessions_read = (
        await db.exec(select(Permission).where(Permission.name == PermissionName.SESSIONS_READ))
    ).one()
    db.add(RolePermission(role_id=ops.id, permission_id=sessions_read.id))
    await db.commit()
    await sync(db)
    assert await held_by(db, "ops") == {PermissionName.SESSIONS_READ}


async def test_the_sync_keeps_a_built_in_role_description_an_admin_edited(db: AsyncSession) -> None:
    user = (await db.exec(select(Role).where(Role.name == RoleName.USER))).one()
    user.description = "Everyone who signed up"
    db.add(user)
    await db.commit()
    try:
        await sync(db)
        await db.refresh(user)
        assert user.description == "Everyone who signed up"
    finally:
        user.description = RoleName.USER.description
        db.add(user)
        await db.commit()


async def test_no_migration_creates_a_user(db: AsyncSession) -> None:
    assert (await db.exec(select(User))).all() == []
