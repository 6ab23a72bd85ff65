"""Session fixtures: the bake cache and real PostgreSQL / Redis servers (no mocks).

Under pytest-xdist every worker is its own session, so each worker bakes the variants it was
given (``--dist loadgroup`` keeps all checks of a variant on one worker) and starts its own
servers, lazily, the first time a test needs them.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from benchmarks import infra
from benchmarks.infra import Variant
from benchmarks.procs import BenchmarkError, Processes
from support import list_files


# --------------------------------------------------------------------------- baking
@pytest.fixture(scope="session")
def cookiecutter_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private cookiecutter config, so neither ~/.cookiecutterrc nor the replay dir is used."""
    return infra.cookiecutter_config(tmp_path_factory.mktemp("cookiecutter-home"))


@pytest.fixture
def bake(cookiecutter_config: Path) -> Callable[..., Path]:
    """Generate a project from this template, as ``cookiecutter . --no-input key=value``."""

    def bake(output_dir: Path, **context: str) -> Path:
        return infra.render(output_dir, cookiecutter_config, **context)

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
                result.project = infra.render(output_dir, self.config, **variant.context)
            except Exception:
                result.error = traceback.format_exc()
            else:
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

    def create_database(self, name: str) -> str:
        """A fresh, empty database; its async URL."""
        name = "tpl_" + "".join(c if c.isalnum() else "_" for c in name.lower())
        self.created.append(name)
        return infra.create_database(self.admin_url, name)

    def drop_created(self) -> None:
        for name in self.created:
            try:
                infra.drop_database(self.admin_url, name)
            except Exception as error:
                print(f"could not drop {name}: {error}")


@contextmanager
def started(server: infra.Postgres | infra.Redis, alternative: str) -> Iterator[None]:
    """The block runs with `server` up; a server that cannot start fails the test plainly."""
    try:
        server.start()
    except BenchmarkError as error:
        server.stop()
        pytest.fail(f"{error}\n(or set {alternative} to use a running server)", pytrace=False)
    try:
        yield
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """TEST_DATABASE_URL when set, else a throwaway cluster (initdb + pg_ctl, trust auth)."""
    if os.environ.get("TEST_DATABASE_URL"):
        server = Postgres(os.environ["TEST_DATABASE_URL"])
        yield server
        server.drop_created()
        return

    cluster = infra.Postgres(fast=True)
    with started(cluster, "TEST_DATABASE_URL"):
        yield Postgres(cluster.admin_url, restart=cluster.restart)


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

    server = infra.Redis(Processes())
    with started(server, "TEST_REDIS_URL"):
        yield RedisServer(server.base_url)


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
