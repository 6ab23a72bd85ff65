"""The operator CLI, run as a real subprocess against the test database."""

import subprocess
import sys
from pathlib import Path

from fastapi import FastAPI
from httpx import AsyncClient
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.models import AuditEvent, DeviceSession
from app.services.users import roles_and_permissions
from tests.helpers import PASSWORD, PROJECT, find_user, login, subprocess_environment


def cli(*args: str, answers: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m app.cli ARGS`; `answers` are typed at its prompts."""
    environ = subprocess_environment(**env)
    if "ADMIN_PASSWORD" not in env:
        environ.pop("ADMIN_PASSWORD", None)
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=PROJECT,
        env=environ,
        input=answers,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_create_admin_makes_an_active_verified_admin(
    app: FastAPI, client: AsyncClient, db: AsyncSession
) -> None:
    result = cli("create-admin", "Root@Example.com", ADMIN_PASSWORD=PASSWORD)
    assert result.returncode == 0, result.stderr
    user = await find_user(db, "root@example.com")
    assert user is not None and user.is_active and user.is_verified
    roles, permissions = await roles_and_permissions(db, user.id)
    assert "admin" in roles and "users:write" in permissions
    await login(client, "root@example.com")


async def test_create_admin_refuses_a_weak_password(db: AsyncSession) -> None:
    result = cli("create-admin", "root@example.com", ADMIN_PASSWORD="short")
    assert result.returncode != 0
    assert "at least 15 characters" in result.stderr
    assert await find_user(db, "root@example.com") is None


async def test_list_users_and_revoke_sessions(signed_in: AsyncClient, db: AsyncSession) -> None:
    listing = cli("list-users")
    assert "alice@example.com\tactive\tverified\tuser" in listing.stdout

    result = cli("revoke-sessions", "alice@example.com")
    assert result.returncode == 0, result.stderr
    assert "Revoked 1 session" in result.stdout
    sessions = (await db.exec(select(DeviceSession))).all()
    assert all(s.revoked_at is not None for s in sessions)
    events = (await db.exec(select(AuditEvent.type))).all()
    assert "session_revoked" in events
    assert (await signed_in.get("/api/v1/users/me")).status_code == 401


def test_create_admin_prompts_twice_without_admin_password(
    app: FastAPI,
) -> None:  # app: cleans up after
    mismatch = cli("create-admin", "prompted@example.com", answers=f"{PASSWORD}\n{PASSWORD}x\n")
    assert mismatch.returncode != 0
    assert "do not match" in mismatch.stderr
    matching = cli("create-admin", "prompted@example.com", answers=f"{PASSWORD}\n{PASSWORD}\n")
    assert matching.returncode == 0, matching.stderr
    assert "Admin ready: prompted@example.com" in matching.stdout


async def test_create_admin_on_an_existing_account_signs_it_out_everywhere(
    app: FastAPI, signed_in: AsyncClient, db: AsyncSession
) -> None:
    """It resets the password: whoever held the old one must not keep a session."""
    new_password = "a different horse battery staple"
    result = cli("create-admin", "alice@example.com", ADMIN_PASSWORD=new_password)
    assert result.returncode == 0, result.stderr
    assert (await signed_in.get("/api/v1/users/me")).status_code == 401
    sessions = (await db.exec(select(DeviceSession))).all()
    assert sessions and all(s.revoked_at is not None for s in sessions)
    assert {s.revoked_reason for s in sessions} == {"password_reset_by_operator"}
    await login(signed_in, "alice@example.com", new_password)


def test_a_secret_file_that_cannot_be_read_is_refused_in_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-key"
    result = cli("list-users", SECRET_KEY="", SECRET_KEY_FILE=str(missing))
    assert result.returncode == 4
    assert result.stderr.strip() == (
        f"Configuration error: SECRET_KEY_FILE: cannot read {missing} (No such file or directory)"
    )
