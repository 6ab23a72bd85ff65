"""What the measurements and the template tests run against: the template's variants, a
clean environment, a rendered project, PostgreSQL and Redis.

tests/ imports this module too (its conftest wraps these runners in fixtures), so both run the
servers the same way and read the choices from the one place they are declared.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import itertools
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.procs import (
    BenchmarkError,
    Processes,
    children_of,
    free_port,
    http_ok,
    log_tail,
    wait_until,
)

TEMPLATE_DIR = Path(__file__).resolve().parent.parent
BENCH_DIR = Path(__file__).resolve().parent
BIN_DIR = Path(sys.executable).parent  # not resolved: a virtualenv's bin holds its scripts
PYTHON = sys.executable

# The template's questions with a list of answers, as cookiecutter.json declares them.
CHOICES: dict[str, tuple[str, ...]] = {
    name: tuple(answers)
    for name, answers in json.loads((TEMPLATE_DIR / "cookiecutter.json").read_text()).items()
    if isinstance(answers, list) and not name.startswith("_")
}
DATABASES = CHOICES["database"]
RATE_LIMITERS = CHOICES["rate_limiter"]
USE_DOCKER = CHOICES["use_docker"]

# Settings of the generated service (and server and tool knobs) that must not leak in from
# the shell into a generated project's commands.
SCRUBBED = {
    "DATABASE_URL", "REDIS_URL", "SECRET_KEY", "ENVIRONMENT", "PORT", "WEB_CONCURRENCY",
    "TEST_DATABASE_URL", "TEST_REDIS_URL", "PYTHONPATH", "VIRTUAL_ENV", "TRUSTED_PROXIES",
    "CORS_ORIGINS", "FRONTEND_URL", "EMAIL_FROM", "FORWARDED_ALLOW_IPS", "GUNICORN_CMD_ARGS",
    "PASSWORD_MIN_LENGTH", "MAKEFLAGS", "MAKELEVEL", "MFLAGS",
}  # fmt: skip
SCRUBBED_PREFIXES = (
    "ARGON2_", "RATE_LIMIT_", "COOKIE_", "SMTP_", "JWT_", "SESSION_", "ACCESS_TOKEN_",
    "REFRESH_", "VERIFY_EMAIL_", "RESET_PASSWORD_", "UVICORN_", "BENCH_", "PYTEST_", "MAIL_",
)  # fmt: skip


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for a generated project's commands: no stray settings, our tools first."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key.upper() not in SCRUBBED and not key.upper().startswith(SCRUBBED_PREFIXES)
    }
    env["PATH"] = os.pathsep.join([str(BIN_DIR), env.get("PATH", "")])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra)
    return env


def run_checked(
    args: list[str], *, cwd: Path, env: dict[str, str], what: str, timeout: float = 300
) -> str:
    """A short command (migrations, the CLI); its output, or an error with that output."""
    try:
        result = subprocess.run(
            args,
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            start_new_session=True,  # Ctrl-C is ours to handle; run() kills it on any error
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchmarkError(f"{what} took more than {timeout:.0f} s") from exc
    if result.returncode != 0:
        raise BenchmarkError(
            f"{what} failed ({result.returncode}):\n$ {' '.join(args)}\n"
            f"{result.stdout}{result.stderr}"
        )
    return result.stdout


# --------------------------------------------------------------------------- the project
@dataclass(frozen=True)
class Variant:
    """One combination of the template's answers; benchmarks render without Docker files."""

    database: str
    rate_limiter: str
    use_docker: str = "no"

    @classmethod
    def parse(cls, text: str) -> Variant:
        """`sqlite-memory`, `postgresql-redis`, ...: the `--variant` of `python -m benchmarks`."""
        database, _, limiter = text.partition("-")
        if database not in DATABASES or limiter not in RATE_LIMITERS:
            raise ValueError(f"unknown variant {text!r}: use DATABASE-LIMITER, e.g. sqlite-memory")
        return cls(database, limiter)

    @property
    def stack(self) -> str:
        """The database and the limiter, as `parse` reads them."""
        return f"{self.database}-{self.rate_limiter}"

    @property
    def id(self) -> str:
        docker = "docker" if self.use_docker == "yes" else "nodocker"
        return f"{self.stack}-{docker}"

    @property
    def context(self) -> dict[str, str]:
        return {
            "database": self.database,
            "rate_limiter": self.rate_limiter,
            "use_docker": self.use_docker,
        }

    @property
    def index(self) -> int:
        """Its place in VARIANTS: a Redis database number of its own."""
        return VARIANTS.index(self)


VARIANTS = tuple(
    Variant(*answers) for answers in itertools.product(DATABASES, RATE_LIMITERS, USE_DOCKER)
)


def cookiecutter_config(home: Path) -> Path:
    """A private cookiecutter config, so neither ~/.cookiecutterrc nor its replay dir is used."""
    home.mkdir(parents=True, exist_ok=True)
    config = home / "config.yaml"
    config.write_text(f"cookiecutters_dir: {home / 'dirs'}\nreplay_dir: {home / 'replay'}\n")
    return config


def render(output_dir: Path, config: Path, **answers: str) -> Path:
    """`cookiecutter <template> --no-input key=value...` into `output_dir`; the project."""
    from cookiecutter.main import cookiecutter

    project = cookiecutter(
        str(TEMPLATE_DIR),
        no_input=True,
        extra_context=answers,
        output_dir=str(output_dir),
        config_file=str(config),
    )
    return Path(project)


def project_slug(project: Path) -> str:
    return project.name


def argon2_parameters(project: Path, env: dict[str, str]) -> dict[str, int]:
    """The argon2 parameters the service will use: its Settings, with nothing overridden."""
    code = (
        "import json; from app.core.config import Settings; "
        "s = Settings(secret_key='x' * 64); "
        "print(json.dumps({'time_cost': s.argon2_time_cost, "
        "'memory_cost': s.argon2_memory_cost, 'parallelism': s.argon2_parallelism}))"
    )
    out = run_checked([PYTHON, "-c", code], cwd=project, env=env, what="reading Settings")
    return json.loads(out.strip().splitlines()[-1])


def seed_user(project: Path, env: dict[str, str], email: str, password: str) -> None:
    """An active, verified user, made by the generated CLI."""
    run_checked(
        [PYTHON, "-m", "app.cli", "create-admin", email],
        cwd=project,
        env={**env, "ADMIN_PASSWORD": password},
        what="python -m app.cli create-admin",
    )


# --------------------------------------------------------------------------- PostgreSQL
def postgres_bindir() -> Path:
    """Where initdb and pg_ctl live: $PG_BINDIR, PATH, or Debian's /usr/lib/postgresql/N/bin."""
    if os.environ.get("PG_BINDIR"):
        return Path(os.environ["PG_BINDIR"])
    if found := shutil.which("initdb"):
        return Path(found).resolve().parent  # /usr/local/bin/initdb may be a symlink
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(Path(path).parts[-3]) if Path(path).parts[-3].isdigit() else 0,
    )
    if not candidates:
        raise BenchmarkError(
            "PostgreSQL server binaries (initdb, pg_ctl) not found: install them "
            "(apt-get install postgresql) or set PG_BINDIR"
        )
    return Path(candidates[-1]).parent


@dataclass
class Postgres:
    """A throwaway cluster (initdb + pg_ctl, trust auth, loopback).

    Durable settings by default, as a benchmark measures them; `fast` turns fsync off for tests,
    whose data need not survive a crash.
    """

    fast: bool = False
    # More server settings, `name=value` each (`-c` options of postgres)
    settings: tuple[str, ...] = ()
    root: Path | None = None
    port: int = 0
    bindir: Path = field(default_factory=Path)
    as_postgres: list[str] = field(default_factory=list)

    @property
    def admin_url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        self.bindir = postgres_bindir()
        self.root = Path(tempfile.mkdtemp(prefix="throwaway-pg-"))
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            shutil.chown(self.root, "postgres", "postgres")
            self.as_postgres = ["runuser", "-u", "postgres", "--"]
        self._pg("initdb", "-D", str(self.root / "data"), "-U", "postgres", "--auth=trust",
                 "-E", "UTF8", "--locale=C", "--no-sync")  # fmt: skip
        self.port = free_port()
        self._pg_ctl("start")

    def restart(self) -> None:
        """A fast restart: every open connection is cut."""
        self._pg_ctl("-m", "fast", "restart")

    def _pg_ctl(self, *args: str) -> None:
        assert self.root is not None
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c max_connections=200"
        )
        if self.fast:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        options += "".join(f" -c {setting}" for setting in self.settings)
        self._pg("pg_ctl", "-D", str(self.root / "data"), "-l", str(self.root / "server.log"),
                 "-o", options, "-w", "-t", "60", *args)  # fmt: skip

    def _pg(self, tool: str, *args: str) -> None:
        assert self.root is not None
        try:
            run_checked(
                [*self.as_postgres, str(self.bindir / tool), *args],
                cwd=self.root,
                env=clean_env(),
                what=tool,
                timeout=120,
            )
        except BenchmarkError as exc:
            raise BenchmarkError(f"{exc}{log_tail(self.root / 'server.log')}") from exc

    def create_database(self, name: str) -> str:
        return create_database(self.admin_url, name)

    def stop(self) -> None:
        if self.root is None:
            return
        data = self.root / "data"
        if (data / "postmaster.pid").exists():
            for mode in ("fast", "immediate"):
                with contextlib.suppress(BenchmarkError):
                    self._pg("pg_ctl", "-D", str(data), "-m", mode, "-w", "-t", "30", "stop")
                    break
            if (data / "postmaster.pid").exists():  # pg_ctl gave up: no orphans either way
                with contextlib.suppress(OSError, ValueError):
                    pid = int((data / "postmaster.pid").read_text().split()[0])
                    os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None


def execute_sql(admin_url: str, *statements: str) -> None:
    """Run statements outside a transaction (CREATE DATABASE needs that) on the server."""
    import asyncpg
    from sqlalchemy.engine import make_url

    dsn = make_url(admin_url).set(drivername="postgresql").render_as_string(False)

    async def go() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(go())


def database_url(admin_url: str, name: str) -> str:
    """The SQLAlchemy async (asyncpg) URL of database `name` on the server of `admin_url`."""
    from sqlalchemy.engine import make_url

    url = make_url(admin_url).set(drivername="postgresql+asyncpg", database=name)
    return url.render_as_string(False)


def create_database(admin_url: str, name: str) -> str:
    """A fresh, empty database `name` (any previous one is dropped); its async URL."""
    execute_sql(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
                f'CREATE DATABASE "{name}"')  # fmt: skip
    return database_url(admin_url, name)


def drop_database(admin_url: str, name: str) -> None:
    execute_sql(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --------------------------------------------------------------------------- Redis
@dataclass
class Redis:
    """A throwaway `redis-server` on loopback, without persistence."""

    procs: Processes
    root: Path | None = None
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise BenchmarkError("redis-server not found (apt-get install redis-server)")
        self.root = Path(tempfile.mkdtemp(prefix="throwaway-redis-"))
        self.port = free_port()
        log = self.root / "redis.log"
        self.process = self.procs.start(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.root), "--daemonize", "no"],
            log=log,
        )  # fmt: skip
        wait_until(self._ping, "redis-server", process=self.process, log=log, timeout=30)

    def _ping(self) -> bool:
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    @property
    def base_url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def url(self, db: int) -> str:
        return f"{self.base_url}/{db}"

    def stop(self) -> None:
        if self.process is not None:
            self.procs.stop(self.process)
            self.process = None
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None


# --------------------------------------------------------------------------- servers
@dataclass
class Server:
    """A started HTTP server: the service or a ceiling app, uvicorn or gunicorn."""

    name: str
    base_url: str
    command: str
    process: subprocess.Popen[bytes]
    log: Path
    gunicorn: bool

    def worker_pids(self) -> list[int]:
        """uvicorn --workers 1 serves from its main process; gunicorn from the master's children."""
        if not self.gunicorn:
            return [self.process.pid]
        return children_of(self.process.pid)


def uvicorn_args(app: str, port: int, *extra: str) -> list[str]:
    return [PYTHON, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
            "--workers", "1", "--no-access-log", *extra]  # fmt: skip


def gunicorn_args(app: str, port: int, workers: int, *extra: str) -> list[str]:
    """The flags of scripts/start.sh, bound to loopback."""
    return [PYTHON, "-m", "gunicorn", app, "--worker-class", "uvicorn_worker.UvicornWorker",
            "--workers", str(workers), "--bind", f"127.0.0.1:{port}", "--access-logfile", "-",
            *extra]  # fmt: skip


def start_server(
    procs: Processes,
    *,
    name: str,
    args: list[str],
    cwd: Path,
    env: dict[str, str],
    port: int,
    ready_path: str,
    log: Path,
    gunicorn: bool,
    workers: int = 1,
    shown_command: str | None = None,
) -> Server:
    process = procs.start(args, cwd=cwd, env=env, log=log)
    base_url = f"http://127.0.0.1:{port}"
    server = Server(
        name, base_url, shown_command or " ".join(args), process, log, gunicorn=gunicorn
    )

    def ready() -> bool:
        booted = len(server.worker_pids()) >= workers
        return booted and http_ok(base_url + ready_path)

    wait_until(ready, name, process=process, log=log, timeout=180)
    return server


def service_env(
    database_url: str, redis_url: str | None, rate_limits: str, **extra: str
) -> dict[str, str]:
    settings = {
        "SECRET_KEY": secrets.token_urlsafe(48),  # 64 characters
        "DATABASE_URL": database_url,
        "ENVIRONMENT": "production",
        "COOKIE_SECURE": "false",  # plain http on loopback; wrk sends the Cookie header itself
        # Production refuses to start without these. Nothing listens on port 9: the few
        # new-device notices fail fast in the background, are logged and wait in the outbox.
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": "9",
        "FRONTEND_URL": "https://app.example.com",
    }
    if redis_url:
        settings["REDIS_URL"] = redis_url
    if rate_limits == "off":
        settings["RATE_LIMIT_ENABLED"] = "false"
    else:  # "high": the limiter (Redis when configured) stays on the login path, never trips
        settings["RATE_LIMIT_LOGIN_IP"] = "1000000/minute"
        settings["RATE_LIMIT_LOGIN_ACCOUNT"] = "1000000/minute"
    return clean_env(**settings, **extra)
