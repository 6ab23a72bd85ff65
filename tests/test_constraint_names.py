"""Named constraints let a later migration alter them: a foreign key, on SQLite and PostgreSQL.

SQLite cannot ALTER a constraint; Alembic's batch mode copies the table and needs the
constraint's name to drop it. Without the naming convention (app/models/base.py) and the names
in 0001_initial.py the migration below fails with "No such constraint".
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from benchmarks.infra import Variant
from support import alembic_on, variant_params

FOREIGN_KEY = "fk_session_user_id_user"
# The body a developer writes into `alembic revision -m "..."`'s new file.
UPGRADE = f"""with op.batch_alter_table("session") as batch:
        batch.drop_constraint("{FOREIGN_KEY}", type_="foreignkey")
        batch.create_foreign_key(
            "{FOREIGN_KEY}", "user", ["user_id"], ["id"], ondelete="RESTRICT"
        )"""
DOWNGRADE = UPGRADE.replace("RESTRICT", "CASCADE")


def session_foreign_keys(database_url: str) -> list[tuple[str | None, str | None]]:
    """(name, ON DELETE) of each foreign key of the `session` table, as the database has it."""
    from sqlalchemy import Connection, inspect
    from sqlalchemy.ext.asyncio import create_async_engine

    def read(connection: Connection) -> list[tuple[str | None, str | None]]:
        keys = inspect(connection).get_foreign_keys("session")
        return [(key["name"], (key["options"].get("ondelete") or "").upper()) for key in keys]

    async def go() -> list[tuple[str | None, str | None]]:
        engine = create_async_engine(database_url)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(read)
        finally:
            await engine.dispose()

    return asyncio.run(go())


@pytest.mark.parametrize("variant", variant_params(rate_limiter="memory", use_docker="no"))
def test_a_new_migration_alters_a_named_foreign_key(
    project: Path, variant: Variant, fresh_database, tmp_path: Path
) -> None:
    workdir = tmp_path / "project"
    shutil.copytree(project, workdir)  # the bake is shared: the new migration stays in our copy
    database_url = fresh_database("perm_fk")
    alembic = alembic_on(workdir, database_url)

    alembic("upgrade", "head")
    assert session_foreign_keys(database_url) == [(FOREIGN_KEY, "CASCADE")]

    alembic("revision", "-m", "session keeps its user", "--rev-id", "0003")
    (migration,) = (workdir / "alembic" / "versions").glob("*_0003_*.py")
    source = migration.read_text()
    assert source.count("    pass\n") == 2, source
    upgrade, downgrade = source.split("def downgrade")
    migration.write_text(
        upgrade.replace("    pass\n", f"    {UPGRADE}\n")
        + "def downgrade"
        + downgrade.replace("    pass\n", f"    {DOWNGRADE}\n")
    )

    alembic("upgrade", "head")
    assert session_foreign_keys(database_url) == [(FOREIGN_KEY, "RESTRICT")]
    alembic("downgrade", "-1")
    assert session_foreign_keys(database_url) == [(FOREIGN_KEY, "CASCADE")]
    alembic("upgrade", "head")
    alembic("downgrade", "base")
