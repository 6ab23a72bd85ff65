"""Session fixtures: the bake cache and real PostgreSQL / Redis servers (no mocks).

Under pytest-xdist every worker is its own session, so each worker bakes the variants it was
given (``--dist loadgroup`` keeps all checks of a variant on one worker) and starts its own
servers, lazily, the first time a test needs them.
"""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import subprocess
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cookiecutter.main import cookiecutter

from support import TEMPLATE_DIR, Variant, free_port, list_files


# --------------------------------------------------------------------------- baking
@pytest.fixture(scope="session")
def cookiecutter_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private cookiecutter config, so neither ~/.cookiecutterrc nor the replay dir is used."""
    root = tmp_path_factory.mktemp("cookiecutter-home")
    config = root / "config.yaml"
    config.write_text(
        f"cookiecutters_dir: {root / 'cookiecutters'}\nreplay_dir: {root / 'replay'}\n"
    )
    return config


@pytest.fixture
def bake(cookiecutter_config: Path):
    """Generate a project from this template, as ``cookiecutter . --no-input key=value``."""

    def bake(output_dir: Path, **context: str) -> Path:
        return Path(
            cookiecutter(
                str(TEMPLATE_DIR),
                no_input=True,
                extra_context=context,
                output_dir=str(output_dir),
                config_file=str(cookiecutter_config),
            )
        )

    return bake


@dataclass
class Bake:
    variant: Variant
    output_dir: Path
    project: Path | None = None
    files: frozenset[str] = frozenset()  # relative paths right after generation
    error: str | None = None


@dataclass
class BakeCache:
    """Each variant is generated once per session (per xdist worker) and shared by its checks."""

    root: Path
    config: Path
    bakes: dict[Variant, Bake] = field(default_factory=dict)

    def get(self, variant: Variant) -> Bake:
        if variant not in self.bakes:
            output_dir = self.root / variant.id
            output_dir.mkdir()
            result = Bake(variant, output_dir)
            try:
                project = cookiecutter(
                    str(TEMPLATE_DIR),
                    no_input=True,
                    extra_context=variant.context,
                    output_dir=str(output_dir),
                    config_file=str(self.config),
                )
            except Exception:
                result.error = traceback.format_exc()
            else:
                result.project = Path(project)
                result.files = frozenset(list_files(result.project))
            self.bakes[variant] = result
        return self.bakes[variant]


@pytest.fixture(scope="session")
def bakes(tmp_path_factory: pytest.TempPathFactory, cookiecutter_config: Path) -> BakeCache:
    return BakeCache(tmp_path_factory.mktemp("bakes"), cookiecutter_config)


@pytest.fixture
def baked(bakes: BakeCache, variant: Variant) -> Bake:
    result = bakes.get(variant)
    if result.error is not None:
        pytest.fail(f"baking {variant.id} failed:\n{result.error}", pytrace=False)
    return result


@pytest.fixture
def project(baked: Bake) -> Path:
    assert baked.project is not None
    return baked.project


# --------------------------------------------------------------------------- PostgreSQL
@dataclass
class Postgres:
    """A server we may create databases on; URLs are SQLAlchemy async (asyncpg) URLs."""

    admin_url: str  # postgresql+asyncpg://user@host:port/db
    created: list[str] = field(default_factory=list)
    # Restarts the server; None when it is not ours (TEST_DATABASE_URL).
    restart: Callable[[], None] | None = None

    def _url_for(self, database: str) -> str:
        from sqlalchemy.engine import make_url

        url = make_url(self.admin_url).set(drivername="postgresql+asyncpg", database=database)
        return url.render_as_string(False)

    def _execute(self, *statements: str) -> None:
        import asyncpg
        from sqlalchemy.engine import make_url

        dsn = make_url(self.admin_url).set(drivername="postgresql").render_as_string(False)

        async def go() -> None:
            conn = await asyncpg.connect(dsn)
            try:
                for statement in statements:
                    await conn.execute(statement)
            finally:
                await conn.close()

        asyncio.run(go())

    def create_database(self, name: str) -> str:
        """A fresh, empty database; its async URL."""
        name = "tpl_" + "".join(c if c.isalnum() else "_" for c in name.lower())
        self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"')
        self.created.append(name)
        return self._url_for(name)

    def drop_created(self) -> None:
        for name in self.created:
            try:
                self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except Exception as error:
                print(f"could not drop {name}: {error}")


def postgres_bindir() -> Path:
    """Where initdb and pg_ctl live: $PG_BINDIR, PATH, or Debian's /usr/lib/postgresql/N/bin."""
    if os.environ.get("PG_BINDIR"):
        return Path(os.environ["PG_BINDIR"])
    if found := shutil.which("initdb"):
        return Path(found).parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(Path(path).parts[-3]) if Path(path).parts[-3].isdigit() else 0,
    )
    if not candidates:
        pytest.fail(
            "PostgreSQL server binaries (initdb, pg_ctl) not found: install them "
            "(apt-get install postgresql) or set TEST_DATABASE_URL",
            pytrace=False,
        )
    return Path(candidates[-1]).parent


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """TEST_DATABASE_URL when set, else a throwaway cluster (initdb + pg_ctl, trust auth)."""
    if os.environ.get("TEST_DATABASE_URL"):
        server = Postgres(os.environ["TEST_DATABASE_URL"])
        yield server
        server.drop_created()
        return

    bindir = postgres_bindir()
    root = Path(tempfile.mkdtemp(prefix="template-tests-pg-"))
    data, log = root / "data", root / "server.log"
    as_postgres: list[str] = []
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root
        shutil.chown(root, "postgres", "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]

    def pg(*args: str, timeout: float = 120) -> None:
        result = subprocess.run(
            [*as_postgres, *args], capture_output=True, text=True, timeout=timeout, check=False
        )
        if result.returncode != 0:
            server_log = log.read_text() if log.exists() else ""
            pytest.fail(
                f"{' '.join(args)} failed:\n{result.stdout}{result.stderr}\n{server_log}",
                pytrace=False,
            )

    pg(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
       "-E", "UTF8", "--locale=C", "--no-sync")  # fmt: skip
    port = free_port()
    options = (
        f"-p {port} -c listen_addresses=127.0.0.1 -k {root} -c max_connections=200 "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    )
    pg(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options,
       "-w", "-t", "60", "start")  # fmt: skip

    def restart() -> None:
        pg(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options,
           "-m", "fast", "-w", "-t", "60", "restart")  # fmt: skip

    try:
        yield Postgres(f"postgresql+asyncpg://postgres@127.0.0.1:{port}/postgres", restart=restart)
    finally:
        pg(str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-t", "60", "stop")
        shutil.rmtree(root, ignore_errors=True)


# --------------------------------------------------------------------------- Redis
@dataclass
class RedisServer:
    base_url: str  # redis://host:port

    def url(self, db: int) -> str:
        """The URL of database ``db``, emptied first."""
        import redis

        url = f"{self.base_url}/{db}"
        client = redis.Redis.from_url(url)
        try:
            client.flushdb()
        finally:
            client.close()
        return url


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """TEST_REDIS_URL when set, else a throwaway ``redis-server`` without persistence."""
    if os.environ.get("TEST_REDIS_URL"):
        from redis.connection import parse_url

        parsed = parse_url(os.environ["TEST_REDIS_URL"])
        yield RedisServer(f"redis://{parsed.get('host', '127.0.0.1')}:{parsed.get('port', 6379)}")
        return

    import redis

    binary = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    if binary is None:
        pytest.fail(
            "redis-server not found: install it (apt-get install redis-server) or set "
            "TEST_REDIS_URL",
            pytrace=False,
        )
    root = Path(tempfile.mkdtemp(prefix="template-tests-redis-"))
    port = free_port()
    log = (root / "redis.log").open("w")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(root), "--daemonize", "no"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        client = redis.Redis(host="127.0.0.1", port=port)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"redis-server did not start:\n{(root / 'redis.log').read_text()}")
                time.sleep(0.05)
        client.close()
        yield RedisServer(f"redis://127.0.0.1:{port}")
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        shutil.rmtree(root, ignore_errors=True)


# --------------------------------------------------------------------------- per variant
@pytest.fixture
def fresh_database(request: pytest.FixtureRequest, variant: Variant, tmp_path: Path):
    """``fresh_database(purpose)``: the URL of a new, empty database of the variant's kind."""

    def make(purpose: str) -> str:
        if variant.database == "sqlite":
            return f"sqlite+aiosqlite:///{tmp_path / f'{purpose}.db'}"
        server: Postgres = request.getfixturevalue("postgres")
        return server.create_database(f"{variant.id}_{purpose}")

    return make


@pytest.fixture
def redis_url(request: pytest.FixtureRequest, variant: Variant) -> str | None:
    """An empty Redis database of its own for a redis variant; None for a memory variant."""
    if variant.rate_limiter != "redis":
        return None
    server: RedisServer = request.getfixturevalue("redis_server")
    return server.url(db=variant.index)
