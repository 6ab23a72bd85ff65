"""The SQLite database file holds password hashes and sessions: only its owner may read it."""

import stat
import subprocess
import sys
from pathlib import Path

from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient

from app.main import create_app
from tests.helpers import PROJECT, make_settings, subprocess_environment


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_the_app_creates_the_sqlite_file_private(tmp_path: Path) -> None:
    database = tmp_path / "fresh.db"
    application = create_app(make_settings(database_url=f"sqlite+aiosqlite:///{database}"))
    async with LifespanManager(application):
        async with AsyncClient(
            transport=ASGITransport(app=application), base_url="https://testserver"
        ) as client:
            await client.get("/health/ready")
        files = [database, Path(f"{database}-wal"), Path(f"{database}-shm")]
        assert database.exists()
        for path in files:
            if path.exists():
                assert mode(path) == 0o600, path


def test_migrations_create_the_sqlite_file_private(tmp_path: Path) -> None:
    database = tmp_path / "migrated.db"
    env = subprocess_environment(DATABASE_URL=f"sqlite+aiosqlite:///{database}")
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert mode(database) == 0o600
