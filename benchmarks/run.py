"""Render a variant, start it, seed a user, measure everything in one run, print and save.

    python -m benchmarks [--variant sqlite-memory|postgresql-redis|...] [--client auto|wrk|python]
                         [--duration 5] [--rounds 3] [--quick] [--scale] [--output PATH.json]

See benchmarks/README.md for what each row means.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import math
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import jwt

from benchmarks import report, scale
from benchmarks.infra import (
    BENCH_DIR,
    PYTHON,
    TEMPLATE_DIR,
    Postgres,
    Redis,
    Server,
    Variant,
    argon2_parameters,
    clean_env,
    cookiecutter_config,
    execute_sql,
    gunicorn_args,
    render,
    run_checked,
    seed_user,
    service_env,
    start_server,
    uvicorn_args,
)
from benchmarks.loadgen import Job, LoadResult, choose_client, run_jobs
from benchmarks.procs import (
    BenchmarkError,
    Processes,
    free_port,
    memory_mib,
    terminate_as_interrupt,
)

DEFAULT_OUTPUT = BENCH_DIR / "results" / "latest.json"
EMAIL = "bench@example.com"
# A browser-like agent, the same on every request: sessions are bound to the device
# (SESSION_BINDING=strict), so the refresh requests must come from the "device" that logged in.
USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0 Safari/537.36"
)
API = "/api/v1"
RSS_SETTLE_SECONDS = 3.0
# Loads with logins (about 1 s per request under load) run this many times --duration, and the
# service drains the logins queued by the previous load first: wrk counts only requests that
# complete inside its window, so a short window mostly measures its edges.
LOGIN_DURATION_FACTOR = 3
LOGIN_DRAIN_SECONDS = 3.0
# The second-step rows send bodies good for one request each (benchmarks/mfa_seed.py makes
# them before every load): this many per second expected, x the margin, plus a few per
# connection. The first guess is corrected by each load's own rate; a measurement that ran
# out is measured again with more.
SINGLE_USE_ROWS = {"mfa_verify": "totp", "passkey_login": "passkey"}
FIRST_GUESS_RPS = 300.0
POOL_MARGIN = 1.5
POOL_RETRIES = 2
# The rows of many users and many sessions (benchmarks/users_seed.py makes them before every
# round). The service remembers 4,096 verified tokens: more users than that, and every request
# of the distinct-tokens row is a memo miss, --quick included.
DISTINCT_USERS = 10_000
QUICK_DISTINCT_USERS = 5_000
SESSIONS_OF_ONE_USER = 200
ADMIN_PAGE_SIZE = 50  # the admin list's default `limit`
# After each explained request: the work it defers past the response is that row's too.
EXPLAIN_SETTLE_SECONDS = 1.0
# What --scale measures: the rows whose queries meet the million rows, and their ceilings.
SCALE_ROWS = (
    "ceiling_jwt", "users_me", "users_me_distinct", "sessions_list", "admin_users_first",
    "admin_users_deep", "refresh", "login", "argon2_ceiling",
)  # fmt: skip
# The rows whose statements --scale explains, and the request that stands for each.
EXPLAINED_ROWS = (
    "login", "refresh", "users_me_distinct", "sessions_list", "admin_users_first",
    "admin_users_deep",
)  # fmt: skip


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark a generated service against its ceilings (see README.md).",
    )
    parser.add_argument(
        "--variant",
        default="sqlite-memory",
        help="DATABASE-LIMITER: sqlite-memory (default), postgresql-redis, ...",
    )
    parser.add_argument(
        "--client",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="load generator: wrk when installed (auto), or the Python client",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=5.0,
        help="seconds per measurement (default 5; wrk rounds up to whole s)",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=1.0,
        help="seconds of the same load before each measurement (default 1)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="rounds of every measurement; medians are reported (default 3)",
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=16,
        help="concurrent connections for GET /users/me, refresh, ceilings",
    )
    parser.add_argument(
        "--login-connections",
        type=int,
        default=8,
        help="concurrent connections for login and the login storm (default 8)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="wrk threads per load (default 1: leave the cores to the server)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="WEB_CONCURRENCY for the production command (default 2)",
    )
    parser.add_argument(
        "--rate-limits",
        choices=["off", "high"],
        default="off",
        help="off: RATE_LIMIT_ENABLED=false (default); high: limits on, never hit",
    )
    parser.add_argument(
        "--skip-prod",
        action="store_true",
        help="measure only uvicorn with 1 worker, not scripts/start.sh",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 1 s, 1 round, few connections (add --skip-prod for uvicorn only)",
    )
    parser.add_argument(
        "--users",
        type=int,
        default=DISTINCT_USERS,
        help=f"users (one token each) of the distinct-tokens row (default {DISTINCT_USERS:,})",
    )
    parser.add_argument(
        "--scale",
        action="store_true",
        help="PostgreSQL only: seed 1,000,000 sessions and audit events first, measure the "
        "rows that meet them and print their query plans' verdicts",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help="JSON results; a Markdown table goes next to it (.md)",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the scratch directory (rendered project, logs) for debugging",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.warmup, args.rounds = 1.0, 0.5, 1
        args.connections, args.login_connections = min(args.connections, 4), 2
        args.users = min(args.users, QUICK_DISTINCT_USERS)
    try:
        args.variant = Variant.parse(args.variant)
    except ValueError as exc:
        parser.error(str(exc))
    if args.duration <= 0 or args.rounds < 1 or args.connections < 1 or args.users < 1:
        parser.error("--duration, --rounds, --connections and --users must be positive")
    if args.scale and args.variant.database != "postgresql":
        parser.error("--scale seeds with PostgreSQL SQL: use a postgresql-* --variant")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    client = choose_client(args.client)
    with terminate_as_interrupt():
        try:
            results = Benchmark(args, client).run()
        except BenchmarkError as exc:
            print(f"benchmark failed: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("\ninterrupted; every server was stopped", file=sys.stderr)
            return 130
    results["meta"]["invocation"] = " ".join(["python -m benchmarks", *(argv or sys.argv[1:])])
    output: Path = args.output
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    markdown = output.with_suffix(".md")
    markdown.write_text(report.markdown(results))
    print(report.text(results))
    print(f"\nwrote {output} and {markdown}")
    return 0


# --------------------------------------------------------------------------- helpers
def access_cookie(base_url: str, password: str) -> str:
    """Sign in like a browser (JSON body) and return the access cookie as `name=value`.

    The name is read from the response: the service prefixes it (`__Host-`) by its settings."""
    import httpx

    response = httpx.post(
        f"{base_url}{API}/auth/login",
        json={"email": EMAIL, "password": password},
        headers={"User-Agent": USER_AGENT},
        timeout=60,
    )
    if response.status_code != 200:
        raise BenchmarkError(f"login failed: {response.status_code} {response.text}")
    for header in response.headers.get_list("set-cookie"):
        name, _, rest = header.partition("=")
        if name.strip().endswith("access_token"):
            return f"{name.strip()}={rest.split(';', 1)[0]}"
    raise BenchmarkError(f"login set no access_token cookie: {response.headers}")


async def _refresh_tokens(base_url: str, password: str, count: int) -> list[str]:
    """`count` sessions via the OAuth2 password flow; their refresh tokens."""
    import httpx

    semaphore = asyncio.Semaphore(4)
    async with httpx.AsyncClient(
        base_url=base_url, headers={"User-Agent": USER_AGENT}, timeout=120
    ) as client:

        async def one() -> str:
            async with semaphore:
                response = await client.post(
                    f"{API}/auth/token", data={"username": EMAIL, "password": password}
                )
            if response.status_code != 200:
                raise BenchmarkError(f"/auth/token failed: {response.status_code} {response.text}")
            return response.json()["refresh_token"]

        return list(await asyncio.gather(*(one() for _ in range(count))))


def refresh_tokens(base_url: str, password: str, count: int) -> list[str]:
    return asyncio.run(_refresh_tokens(base_url, password, count)) if count > 0 else []


def ceiling_token(key: bytes, slug: str) -> str:
    """An access token with the service's claims, for the JWT ceiling app."""
    now = int(time.time())
    claims = {
        "sub": str(uuid.uuid4()),
        "sid": str(uuid.uuid4()),
        "jti": uuid.uuid4().hex,
        "typ": "access",
        "iat": now,
        "exp": now + 24 * 3600,
        "iss": slug,
        "aud": slug,
    }
    return jwt.encode(claims, key, algorithm="HS256")


def median_of(rounds: list[dict]) -> dict:
    keys = ("rps", "p50_ms", "p99_ms")
    summary = {key: round(statistics.median(r[key] for r in rounds), 3) for key in keys}
    for key in ("requests", "errors", "starved"):
        summary[key] = sum(r.get(key, 0) for r in rounds)
    summary["rounds"] = rounds
    return summary


def combined(earlier: dict | None, later: dict) -> dict:
    """Two loads of one row in a round as one: requests over seconds, the mean p50, the worse
    p99 (the twins' rows are measured twice a round)."""
    if earlier is None:
        return later
    both = {key: earlier[key] + later[key] for key in ("requests", "seconds", "errors", "starved")}
    return {
        **both,
        "rps": round(both["requests"] / both["seconds"], 2) if both["seconds"] > 0 else 0.0,
        "p50_ms": round((earlier["p50_ms"] + later["p50_ms"]) / 2, 3),
        "p99_ms": max(earlier["p99_ms"], later["p99_ms"]),
    }


def tool_version(args: list[str]) -> str:
    try:
        result = subprocess.run(args, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    lines = (result.stdout or result.stderr).strip().splitlines()
    return lines[0] if lines and result.returncode in (0, 1) else "unknown"


def httpx_version() -> str:
    import httpx

    return httpx.__version__


# --------------------------------------------------------------------------- the run
@dataclass
class Target:
    """One way of serving the service, with its ceiling app served the same way."""

    key: str  # "uvicorn" | "prod"
    title: str
    service: Server
    ceiling: Server
    password: str
    project: Path
    env: dict[str, str]
    pool: list[str] = field(default_factory=list)  # unused refresh tokens
    # What --scale put in its database: the seed's duration; the verdicts of the plans.
    scale: dict = field(default_factory=dict)
    # The last rate of each single-use row: how many bodies the next load needs.
    expected_rps: dict[str, float] = field(default_factory=dict)
    # The metrics rows' twins of this round, "off" and "on": METRICS_ENABLED, the only difference.
    twins: dict[str, Server] = field(default_factory=dict)


class Benchmark:
    def __init__(self, args: argparse.Namespace, client: str) -> None:
        self.args = args
        self.client = client
        self.procs = Processes()
        self.scratch = Path(tempfile.mkdtemp(prefix="fastapi-auth-bench-"))
        self.jwt_key = secrets.token_bytes(64)
        self.postgres: Postgres | None = None  # the cluster of a PostgreSQL variant

    def log(self, message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    def run(self) -> dict:
        args = self.args
        postgres, redis = Postgres(), Redis(self.procs)
        self.postgres = postgres
        try:
            self.log(f"rendering {args.variant.stack} into {self.scratch}")
            config = cookiecutter_config(self.scratch / "cookiecutter-home")
            project = render(self.scratch / "render", config, **args.variant.context)
            if args.variant.database == "postgresql":
                self.log("starting PostgreSQL")
                postgres.start()
            if args.variant.rate_limiter == "redis":
                self.log("starting redis-server")
                redis.start()
            params = argon2_parameters(project, clean_env())
            results: dict = {"meta": self.meta(project, params), "targets": {}}
            kinds = ["uvicorn"] if args.skip_prod else ["uvicorn", "prod"]
            for index, kind in enumerate(kinds):
                if args.variant.database == "postgresql":
                    database_url = postgres.create_database(f"bench_{kind}")
                else:
                    database_url = f"sqlite+aiosqlite:///{self.scratch / f'{kind}.db'}"
                redis_url = redis.url(index) if args.variant.rate_limiter == "redis" else None
                env = service_env(database_url, redis_url, args.rate_limits)
                results["targets"][kind] = self.measure_target(kind, project, env, params)
            results["meta"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
            return results
        finally:
            self.procs.stop_all()
            postgres.stop()
            redis.stop()
            if args.keep:
                print(f"kept {self.scratch}", file=sys.stderr)
            else:
                shutil.rmtree(self.scratch, ignore_errors=True)

    def meta(self, project: Path, params: dict[str, int]) -> dict:
        args = self.args
        commit = tool_version(["git", "-C", str(TEMPLATE_DIR), "rev-parse", "--short", "HEAD"])
        return {
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "variant": args.variant.stack,
            "client": self.client,
            "client_version": (
                " ".join(tool_version(["wrk", "--version"]).split()[:2])
                if self.client == "wrk"
                else f"httpx {httpx_version()}"
            ),
            "template_commit": commit,
            "cpus": os.cpu_count(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
            "platform": platform.platform(),
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "rounds": args.rounds,
            "connections": args.connections,
            "login_connections": args.login_connections,
            "wrk_threads": args.threads,
            "rate_limits": (
                "RATE_LIMIT_ENABLED=false (login limits would stop the login load)"
                if args.rate_limits == "off"
                else "limits on at 1000000/minute (limiter on the login path, never hit)"
            ),
            "argon2": params,
            "project": project.name,
            "distinct_users": args.users,
            "scale": (
                f"{scale.USERS:,} users, {scale.ROWS:,} sessions and {scale.ROWS:,} audit events "
                "seeded (benchmarks/scale.py)"
                if args.scale
                else None
            ),
        }

    # ----------------------------------------------------------------------- one target
    def start_target(self, kind: str, project: Path, env: dict[str, str]) -> Target:
        args = self.args
        logs = self.scratch / "logs"
        logs.mkdir(exist_ok=True)
        password = secrets.token_urlsafe(24)
        port, ceiling_port = free_port(), free_port()
        ceiling_env = clean_env(
            BENCH_JWT_KEY=self.jwt_key.hex(),
            BENCH_JWT_ISSUER=project.name,
            BENCH_JWT_AUDIENCE=project.name,
        )
        if kind == "uvicorn":
            title = "uvicorn, 1 worker"
            self.log("alembic upgrade head")
            run_checked([PYTHON, "-m", "alembic", "upgrade", "head"], cwd=project, env=env,
                        what="alembic upgrade head")  # fmt: skip
            self.log(f"starting the service: uvicorn app.main:app --workers 1 --port {port}")
            service = start_server(
                self.procs, name="service (uvicorn)",
                args=uvicorn_args("app.main:app", port), cwd=project, env=env, port=port,
                ready_path="/health/live", log=logs / "service-uvicorn.log", gunicorn=False,
                shown_command=f"uvicorn app.main:app --workers 1 --port {port} --no-access-log",
            )  # fmt: skip
            ceiling = start_server(
                self.procs, name="ceiling app (uvicorn)",
                args=uvicorn_args("ceiling_app:app", ceiling_port, "--app-dir", str(BENCH_DIR)),
                cwd=BENCH_DIR, env=ceiling_env, port=ceiling_port, ready_path="/bare",
                log=logs / "ceiling-uvicorn.log", gunicorn=False,
                shown_command=f"uvicorn ceiling_app:app --workers 1 --port {ceiling_port} "
                "--no-access-log --app-dir benchmarks",
            )  # fmt: skip
        else:
            title = f"scripts/start.sh (gunicorn, {args.workers} uvicorn workers)"
            self.log(f"starting the service: WEB_CONCURRENCY={args.workers} PORT={port} "
                     "scripts/start.sh")  # fmt: skip
            service = start_server(
                self.procs, name="service (scripts/start.sh)",
                args=["sh", "scripts/start.sh"], cwd=project,
                env={**env, "PORT": str(port), "WEB_CONCURRENCY": str(args.workers)},
                port=port, ready_path="/health/live", log=logs / "service-prod.log",
                gunicorn=True, workers=args.workers,
                shown_command=f"WEB_CONCURRENCY={args.workers} PORT={port} scripts/start.sh",
            )  # fmt: skip
            ceiling = start_server(
                self.procs, name="ceiling app (gunicorn)",
                args=gunicorn_args("ceiling_app:app", ceiling_port, args.workers,
                                   "--chdir", str(BENCH_DIR)),
                cwd=BENCH_DIR, env=ceiling_env, port=ceiling_port, ready_path="/bare",
                log=logs / "ceiling-gunicorn.log", gunicorn=True, workers=args.workers,
                shown_command=f"gunicorn ceiling_app:app -k uvicorn_worker.UvicornWorker "
                f"-w {args.workers} -b 127.0.0.1:{ceiling_port} --access-logfile - "
                "--chdir benchmarks",
            )  # fmt: skip
        self.log(f"service pid {service.process.pid}, ceiling app pid {ceiling.process.pid}")
        self.log(f"seeding {EMAIL} with: python -m app.cli create-admin")
        seed_user(project, env, EMAIL, password)
        target = Target(kind, title, service, ceiling, password, project, env)
        if args.scale:
            self.log(f"seeding {scale.USERS:,} users, {scale.ROWS:,} sessions and "
                     f"{scale.ROWS:,} audit events (benchmarks/scale.py)")  # fmt: skip
            began = time.monotonic()
            execute_sql(env["DATABASE_URL"], *scale.SEED)
            target.scale["seed_seconds"] = round(time.monotonic() - began, 1)
            self.log(f"  seeded in {target.scale['seed_seconds']:.0f} s")
        return target

    def start_twins(self, target: Target) -> None:
        """A new pair for each round: two processes of one program can differ by several per
        cent in speed (memory layout), so the median over rounds is over several pairs."""
        self.stop_twins(target)
        for state in ("off", "on"):
            target.twins[state] = self.start_twin(target.key, target.project, target.env, state)

    def stop_twins(self, target: Target) -> None:
        for twin in target.twins.values():
            self.procs.stop(twin.process)
        target.twins.clear()

    def start_twin(self, kind: str, project: Path, env: dict[str, str], metrics: str) -> Server:
        """One of the two twins of the metrics rows: the service as `kind` serves it, on the
        same database, with METRICS_ENABLED off or on, serving nothing but those rows."""
        port = free_port()
        log = self.scratch / "logs" / f"twin-{kind}-metrics-{metrics}-{port}.log"
        twin_env = {**env, "METRICS_ENABLED": "false"}
        if metrics == "on":
            twin_env.update(METRICS_ENABLED="true", METRICS_TOKEN=secrets.token_urlsafe(32))
        name = f"twin with METRICS_ENABLED={twin_env['METRICS_ENABLED']} ({kind})"
        if kind == "uvicorn":
            twin = start_server(
                self.procs, name=name, args=uvicorn_args("app.main:app", port), cwd=project,
                env=twin_env, port=port, ready_path="/health/live", log=log, gunicorn=False,
            )  # fmt: skip
        else:
            workers = self.args.workers
            twin = start_server(
                self.procs, name=name, args=["sh", "scripts/start.sh"], cwd=project,
                env={**twin_env, "PORT": str(port), "WEB_CONCURRENCY": str(workers)},
                port=port, ready_path="/health/live", log=log, gunicorn=True, workers=workers,
            )  # fmt: skip
        self.log(f"{name} pid {twin.process.pid}")
        return twin

    def measure_target(
        self, kind: str, project: Path, env: dict[str, str], params: dict[str, int]
    ) -> dict:
        target = self.start_target(kind, project, env)
        try:
            rounds: dict[str, list[dict]] = {}
            for number in range(1, self.args.rounds + 1):
                self.log(f"{target.title}: round {number}/{self.args.rounds}")
                if not self.args.scale:
                    self.start_twins(target)
                for name, result in self.one_round(target, project, params, number).items():
                    rounds.setdefault(name, []).append(result)
            # wrk stops with logins still queued in the service: let them finish first.
            time.sleep(RSS_SETTLE_SECONDS)
            memory = [{"pid": pid, **memory_mib(pid)} for pid in target.service.worker_pids()]
            if self.args.scale and kind == "uvicorn":  # one target is enough: the same SQL
                target.scale["plans"] = self.explain(target)
        finally:
            self.procs.stop(target.service.process)
            self.procs.stop(target.ceiling.process)
            self.stop_twins(target)
        measurements = {
            name: (median_of(values) if name != "argon2_ceiling" else self.argon2_median(values))
            for name, values in rounds.items()
        }
        measurements["worker_rss"] = {
            "rss_mib": round(max(m["rss_mib"] for m in memory), 1),
            "peak_rss_mib": round(max(m["peak_rss_mib"] for m in memory), 1),
            "workers": memory,
        }
        return {
            "title": target.title,
            "service_command": target.service.command,
            "ceiling_command": target.ceiling.command,
            "measurements": measurements,
            "checks": report.checks(measurements, self.args.variant.database),
            **({"scale": target.scale} if target.scale else {}),
        }

    @staticmethod
    def argon2_median(rounds: list[dict]) -> dict:
        return {
            "rps": statistics.median(r["rate"] for r in rounds),
            "verify_p50_ms": statistics.median(r["verify_p50_ms"] for r in rounds),
            "processes": rounds[0]["processes"],
            "rounds": rounds,
        }

    def one_round(
        self, target: Target, project: Path, params: dict[str, int], number: int = 1
    ) -> dict[str, dict]:
        args = self.args
        service, ceiling = target.service.base_url, target.ceiling.base_url
        cookie = access_cookie(service, target.password)
        cookie_name = cookie.split("=", 1)[0]
        ua = {"User-Agent": USER_AGENT}
        me = Job("users_me", service, f"{API}/users/me", args.connections,
                 headers={**ua, "Cookie": cookie})  # fmt: skip
        seeded = self.seed_users(target)
        cookies = [f"{cookie_name}={token}" for token in seeded["tokens"]]
        many = f"{cookie_name}={seeded['sessions_token']}"
        distinct = Job("users_me_distinct", service, f"{API}/users/me", args.connections,
                       headers=ua, cookies=cookies)  # fmt: skip
        sessions = Job("sessions_list", service, f"{API}/auth/sessions", args.connections,
                       headers={**ua, "Cookie": many})  # fmt: skip
        admin_users = f"{API}/admin/users?limit={ADMIN_PAGE_SIZE}"
        admin_first = Job("admin_users_first", service, admin_users, args.connections,
                          headers={**ua, "Cookie": cookie})  # fmt: skip
        admin_deep = Job("admin_users_deep", service,
                         f"{admin_users}&cursor={seeded['deep_cursor']}", args.connections,
                         headers={**ua, "Cookie": cookie})  # fmt: skip
        # The same request to the twins, metrics off and on (same database, same session, same
        # history), as A-B-B-A, A alternating between rounds: a drift of the machine's speed
        # during the four loads, or a cost to whichever goes second, falls on both alike.
        twins: list[tuple[list[str], list[Job]]] = []
        if target.twins:
            first, second = [
                Job(f"users_me_metrics_{state}", target.twins[state].base_url, f"{API}/users/me",
                    args.connections, headers={**ua, "Cookie": cookie})
                for state in (("off", "on") if number % 2 else ("on", "off"))
            ]  # fmt: skip
            twins = [([job.name], [job]) for job in (first, second, second, first)]
        login_body = json.dumps({"email": EMAIL, "password": target.password}).encode()
        json_headers = {**ua, "Content-Type": "application/json"}
        login = Job("login", service, f"{API}/auth/login", args.login_connections,
                    method="POST", headers=json_headers, body=login_body)  # fmt: skip
        refresh = Job("refresh", service, f"{API}/auth/refresh", args.connections,
                      method="POST", headers=json_headers, refresh_tokens=target.pool)  # fmt: skip
        totp = Job("mfa_verify", service, f"{API}/auth/mfa/verify", args.connections,
                   method="POST", headers=json_headers, bodies=[])  # fmt: skip
        passkey = Job("passkey_login", service, f"{API}/auth/passkeys/login", args.connections,
                      method="POST", headers=json_headers, bodies=[])  # fmt: skip
        token = ceiling_token(self.jwt_key, project.name)
        plan: list[tuple[list[str], list[Job]]] = [
            (["ceiling_bare"], [Job("ceiling_bare", ceiling, "/bare", args.connections,
                                    headers=ua)]),
            (["ceiling_jwt"], [Job("ceiling_jwt", ceiling, "/jwt", args.connections,
                                   headers={**ua, "Cookie": f"access_token={token}"})]),
            (["users_me"], [me]),
            (["users_me_distinct"], [distinct]),
            *twins,
            (["sessions_list"], [sessions]),
            (["admin_users_first"], [admin_first]),
            (["admin_users_deep"], [admin_deep]),
            (["refresh"], [refresh]),
            (["login"], [login]),
            (["mfa_verify"], [totp]),
            (["passkey_login"], [passkey]),
            (["argon2_ceiling"], []),
            (["users_me_storm", "login_storm"], [me, login]),
        ]  # fmt: skip
        if args.scale:
            plan = [(names, jobs) for names, jobs in plan if names[0] in SCALE_ROWS]
        results: dict[str, dict] = {}
        for names, jobs in plan:
            if names == ["argon2_ceiling"]:
                results["argon2_ceiling"] = self.argon2(params)
                continue
            measured = self.load(target, jobs)
            for name, result in zip(names, measured, strict=True):
                results[name] = combined(results.get(name), result.as_dict())
                if result.requests == 0:
                    self.log(f"  WARNING: no {name} request completed in {args.duration:g} s; "
                             "use a longer --duration (or fewer --login-connections)")  # fmt: skip
            self.log(
                "  " + "; ".join(
                    f"{name}: {r.rps:.1f} req/s p50 {r.p50_ms:.1f} ms p99 {r.p99_ms:.1f} ms"
                    + (f" ERRORS {r.errors}" if r.errors else "")
                    for name, r in zip(names, measured, strict=True)
                )
            )  # fmt: skip
        return results

    def load(self, target: Target, jobs: list[Job]) -> list[LoadResult]:
        """Warm-up with the same load, then the measurement."""
        logins = any(job.path.endswith("/auth/login") for job in jobs)
        duration = self.args.duration * (LOGIN_DURATION_FACTOR if logins else 1)
        results: list[LoadResult] = []
        for seconds in (self.args.warmup, duration):
            if seconds <= 0:
                continue
            if logins:
                time.sleep(LOGIN_DRAIN_SECONDS)
            for job in jobs:
                if job.refresh_tokens is not None:
                    self.top_up(target, job.connections)
            if any(job.name in SINGLE_USE_ROWS for job in jobs):
                results = self.single_use_load(target, jobs, seconds)
            else:
                results = run_jobs(self.client, jobs, seconds, self.procs, self.args.threads)
        return results

    def single_use_load(self, target: Target, jobs: list[Job], seconds: float) -> list[LoadResult]:
        """A load of fresh bodies, made just before it (TOTP codes expire); again with more
        when a connection ran out of them."""
        for attempt in range(POOL_RETRIES + 1):
            for job in jobs:
                if job.name in SINGLE_USE_ROWS:
                    rate = target.expected_rps.get(job.name, FIRST_GUESS_RPS)
                    count = math.ceil(rate * max(seconds, 1.0) * POOL_MARGIN) + 4 * job.connections
                    job.bodies = self.single_use_bodies(target, SINGLE_USE_ROWS[job.name], count)
            results = run_jobs(self.client, jobs, seconds, self.procs, self.args.threads)
            starved = False
            for job, result in zip(jobs, results, strict=True):
                if job.name not in SINGLE_USE_ROWS:
                    continue
                rate = target.expected_rps.get(job.name, FIRST_GUESS_RPS)
                if result.starved:
                    starved = True
                    served = (result.requests - result.starved) / max(result.seconds, 1e-3)
                    target.expected_rps[job.name] = max(3 * rate, 2 * served)
                else:
                    target.expected_rps[job.name] = max(result.rps, 1.0)
            if not starved:
                break
            if attempt < POOL_RETRIES:
                self.log("  a connection ran out of single-use bodies: again, with more")
        return results

    def single_use_bodies(self, target: Target, kind: str, count: int) -> list[bytes]:
        """`count` request bodies of `kind` (totp, passkey), each good once: mfa_seed.py."""
        with tempfile.NamedTemporaryFile(prefix=f"bench-{kind}-", dir=self.scratch) as out:
            run_checked(
                [PYTHON, str(BENCH_DIR / "mfa_seed.py"), kind, str(count), out.name, USER_AGENT],
                cwd=target.project,
                env={**target.env, "PYTHONPATH": str(target.project)},
                what=f"benchmarks/mfa_seed.py {kind} {count}",
            )
            return Path(out.name).read_bytes().splitlines()

    def seed_users(self, target: Target) -> dict:
        """--users users signed in, a user with SESSIONS_OF_ONE_USER sessions, the admin list's
        deep cursor, and fresh access tokens for them all: users_seed.py."""
        args = self.args
        with tempfile.NamedTemporaryFile(prefix="bench-users-", dir=self.scratch) as out:
            run_checked(
                [PYTHON, str(BENCH_DIR / "users_seed.py"), str(args.users),
                 str(SESSIONS_OF_ONE_USER), str(ADMIN_PAGE_SIZE), out.name, USER_AGENT],
                cwd=target.project,
                env={**target.env, "PYTHONPATH": str(target.project)},
                what=f"benchmarks/users_seed.py {args.users} {SESSIONS_OF_ONE_USER}",
            )  # fmt: skip
            seeded = json.loads(Path(out.name).read_text())
        if seeded["deep_cursor"] is None:
            raise BenchmarkError("users_seed.py found no users for the admin list's deep page")
        return seeded

    def explain(self, target: Target) -> dict[str, list[dict]]:
        """The plan of every statement behind each of EXPLAINED_ROWS, at scale.

        `auto_explain` logs the plans of the database's new connections (benchmarks/scale.py),
        so a fresh uvicorn of the service serves one request of each row, and the log written
        while it answers (and does the work it defers past the response) is that row's."""
        import httpx

        assert self.postgres is not None
        self.log("explaining the rows' queries (auto_explain, a fresh uvicorn)")
        database_url = target.env["DATABASE_URL"]
        seeded = self.seed_users(target)
        (refresh_token,) = refresh_tokens(target.service.base_url, target.password, 1)
        admin = access_cookie(target.service.base_url, target.password)
        name = admin.split("=", 1)[0]
        requests: dict[str, tuple[str, str, dict]] = {
            "login": ("POST", "/auth/login",
                      {"json": {"email": EMAIL, "password": target.password}}),
            "refresh": ("POST", "/auth/refresh", {"json": {"refresh_token": refresh_token}}),
            "users_me_distinct": ("GET", "/users/me",
                                  {"headers": {"Cookie": f"{name}={seeded['tokens'][-1]}"}}),
            "sessions_list": ("GET", "/auth/sessions",
                              {"headers": {"Cookie": f"{name}={seeded['sessions_token']}"}}),
            "admin_users_first": ("GET", "/admin/users",
                                  {"params": {"limit": ADMIN_PAGE_SIZE},
                                   "headers": {"Cookie": admin}}),
            "admin_users_deep": ("GET", "/admin/users",
                                 {"params": {"limit": ADMIN_PAGE_SIZE,
                                             "cursor": seeded["deep_cursor"]},
                                  "headers": {"Cookie": admin}}),
        }  # fmt: skip
        assert tuple(requests) == EXPLAINED_ROWS
        rows = scale.table_rows(database_url)
        explaining = scale.Explaining(self.postgres, database_url)
        # The mail poll and the purge run on timers, not for any request: off, so that what
        # the log holds while a request is answered is that request's.
        quiet = {**target.env, "MAIL_POLL_SECONDS": "0", "PURGE_INTERVAL_SECONDS": "0"}
        explaining.start()
        port = free_port()
        plans: dict[str, list[dict]] = {}
        try:
            server = start_server(
                self.procs, name="service with auto_explain (uvicorn)",
                args=uvicorn_args("app.main:app", port), cwd=target.project, env=quiet,
                port=port, ready_path="/health/live",
                log=self.scratch / "logs" / "service-explain.log", gunicorn=False,
            )  # fmt: skip
            try:
                for row, (method, path, options) in requests.items():
                    mark = explaining.mark()
                    headers = {"User-Agent": USER_AGENT, **options.pop("headers", {})}
                    response = httpx.request(
                        method, f"{server.base_url}{API}{path}", headers=headers, timeout=60,
                        **options,
                    )  # fmt: skip
                    if response.is_error:
                        raise BenchmarkError(
                            f"{row} for the plans: {response.status_code} {response.text}"
                        )
                    time.sleep(EXPLAIN_SETTLE_SECONDS)
                    plans[row] = scale.verdicts(explaining.plans_since(mark), rows)
                    self.log(f"  {row}: {report.plan_summary(plans[row])}")
            finally:
                self.procs.stop(server.process)
        finally:
            explaining.stop()
        return plans

    def top_up(self, target: Target, connections: int) -> None:
        """At least one unused refresh token per connection, plus a few spare."""
        wanted = connections + max(2, connections // 4)
        missing = wanted - len(target.pool)
        if missing > 0:
            target.pool.extend(refresh_tokens(target.service.base_url, target.password, missing))

    def argon2(self, params: dict[str, int]) -> dict:
        command = [
            PYTHON, "-m", "benchmarks.argon2_ceiling", "--seconds", str(self.args.duration),
            "--time-cost", str(params["time_cost"]), "--memory-cost", str(params["memory_cost"]),
            "--parallelism", str(params["parallelism"]),
        ]  # fmt: skip
        process = self.procs.start(command, cwd=TEMPLATE_DIR, env=clean_env(), capture=True)
        try:
            out, err = process.communicate(timeout=self.args.duration + 120)
        finally:
            self.procs.stop(process)  # the whole group: the pool's processes too
        if process.returncode != 0:
            raise BenchmarkError(f"argon2 ceiling failed:\n{out.decode()}{err.decode()}")
        result = json.loads(out.decode().strip().splitlines()[-1])
        self.log(f"  argon2_ceiling: {result['rate']:.2f} verifies/s on {result['processes']} "
                 f"processes, one verify {result['verify_p50_ms']:.0f} ms")  # fmt: skip
        return result
