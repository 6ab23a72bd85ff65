"""Alembic runs migrations through the application's async engine and settings.

An upgrade, downgrade or stamp that leaves the database at head also syncs the permission and
role rows with `app/core/permissions.py` (see `app/db/catalogue.py`), in the migrations'
transaction where the database has transactional DDL (PostgreSQL). Offline `--sql` scripts do
not carry the sync: run an online `alembic upgrade head` after applying one.

It also registers the `module_if_installed` post-write hook that alembic.ini formats new
revisions with (`revision_environment = true` there, so this file runs for every `revision`).
"""

import asyncio
import importlib.util
import shlex
import subprocess
import sys
from collections.abc import Mapping
from logging.config import fileConfig
from typing import Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from alembic.script import write_hooks
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import SQLModel

import app.models  # noqa: F401  (registers every table on SQLModel.metadata)
from app.core.config import settings_or_exit
from app.db.catalogue import sync_catalogue
from app.db.session import create_private_sqlite_file
from app.models.base import UTCDateTime

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = SQLModel.metadata


def module_if_installed(path: str, options: Mapping[str, str]) -> None:
    """Alembic's `module` hook (`python -m MODULE` with the interpreter running alembic), except
    that a missing module skips the step instead of failing the command after the revision is
    written: ruff is a dev tool, absent from the production image and a runtime-only install.
    """
    module = options["module"]
    if importlib.util.find_spec(module) is None:
        print(f"{module} not installed; migration left unformatted")
        return
    arguments = shlex.split(options.get("options", "REVISION_SCRIPT_FILENAME"))
    arguments = [path if arg == "REVISION_SCRIPT_FILENAME" else arg for arg in arguments]
    # The command comes from alembic.ini and the path from alembic: nothing user-supplied.
    subprocess.run([sys.executable, "-m", module, *arguments], check=False)  # noqa: S603


write_hooks.register("module_if_installed")(module_if_installed)


def render_item(type_: str, obj: object, autogen_context: AutogenContext) -> str | Literal[False]:
    """Write plain SQLAlchemy types into migrations, so they never import app code."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    if type_ == "type" and type(obj).__name__ == "AutoString":
        length = getattr(obj, "length", None)
        return f"sa.String(length={length})" if length else "sa.String()"
    return False


def configure(
    connection: Connection | None = None, *, url: str | None = None, literal_binds: bool = False
) -> None:
    context.configure(
        connection=connection,
        url=url,
        literal_binds=literal_binds,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite can only ALTER tables by copying them
        compare_type=True,
        render_item=render_item,
    )


def database_url() -> str:
    """The URL a caller handed over (tests: `Config.attributes`), else the service's settings."""
    url = config.attributes.get("database_url")
    return url if isinstance(url, str) else settings_or_exit().database_url


def run_migrations_offline() -> None:
    configure(url=database_url(), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    configure(connection)
    with context.begin_transaction():
        context.run_migrations()
        if moves_the_database() and at_head():
            sync_catalogue(connection)
    # Without transactional DDL (SQLite) each migration commits on its own and the block above
    # is no transaction: the sync's writes are still open here.
    if connection.in_transaction():
        connection.commit()


def moves_the_database() -> bool:
    """True for upgrade, downgrade and stamp (the commands given a destination revision); not
    for `revision --autogenerate`, `check` or `current`, which must leave the rows alone."""
    try:
        context.get_revision_argument()
    except KeyError:
        return False
    return True


def at_head() -> bool:
    heads = context.script.get_heads()
    return set(context.get_context().get_current_heads()) == set(heads)


async def run_migrations_online() -> None:
    url = database_url()
    create_private_sqlite_file(url)
    engine = create_async_engine(url)
    async with engine.connect() as connection:
        await connection.run_sync(do_run_migrations)
    await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())
