"""Reliability drills against the running service (SPEC section 7), with real servers.

The in-process checks (concurrent refresh and register, a Redis outage) live in the
generated project's own suite; these need real processes or control over the database.
"""

from __future__ import annotations

import re
import secrets
import sys
from pathlib import Path

import httpx
import pytest

from benchmarks.infra import Variant, clean_env
from support import output_of, run, serving, tool, variant_params

PASSWORD = "correct horse battery staple"  # noqa: S105 - a throwaway test account
ADMIN = "root@example.com"
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",  # every answer is one the schema documents for that route
    "response_schema_conformance",
    "content_type_conformance",
)


def service_env(**settings: str) -> dict[str, str]:
    return clean_env(
        SECRET_KEY=secrets.token_urlsafe(48),
        ENVIRONMENT="test",
        COOKIE_SECURE="false",
        ARGON2_TIME_COST="1",
        ARGON2_MEMORY_COST="8192",
        ARGON2_PARALLELISM="1",
        **settings,
    )


def prepare(project: Path, env: dict[str, str]) -> None:
    """Migrate, then create the admin the drills sign in as."""
    for args in (["alembic", "upgrade", "head"], ["app.cli", "create-admin", ADMIN]):
        env_with_password = {**env, "ADMIN_PASSWORD": PASSWORD}
        result = run([sys.executable, "-m", *args], cwd=project, env=env_with_password)
        assert result.returncode == 0, output_of(result)


def bearer(http: httpx.Client) -> dict[str, str]:
    response = http.post("/api/v1/auth/token", data={"username": ADMIN, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


@pytest.mark.parametrize(
    "variant", variant_params(database="postgresql", rate_limiter="memory", use_docker="no")
)
def test_service_recovers_from_a_database_restart(
    project: Path, variant: Variant, fresh_database, postgres, tmp_path: Path
) -> None:
    if postgres.restart is None:
        pytest.skip("TEST_DATABASE_URL names a server these tests cannot restart")
    env = service_env(DATABASE_URL=fresh_database("restart"))
    prepare(project, env)
    log = tmp_path / "server.log"
    with serving(project, env, log) as base, httpx.Client(base_url=base) as http:
        auth = bearer(http)
        assert http.get("/api/v1/users/me", headers=auth).status_code == 200
        postgres.restart()  # every pooled connection is now dead
        codes = [http.get("/api/v1/users/me", headers=auth).status_code for _ in range(5)]
        ready = http.get("/health/ready").status_code
    assert codes == [200] * 5, log.read_text()
    assert ready == 200


@pytest.mark.parametrize(
    "variant",
    [
        *variant_params(database="sqlite", rate_limiter="memory", use_docker="no"),
        *variant_params(database="postgresql", rate_limiter="memory", use_docker="no"),
    ],
)
def test_a_logout_in_one_process_ends_the_token_in_the_other_at_once(
    project: Path, variant: Variant, fresh_database, tmp_path: Path
) -> None:
    """Workers cache nothing about sessions: revocation is immediate across processes."""
    env = service_env(DATABASE_URL=fresh_database("revoke"))
    prepare(project, env)
    with (
        serving(project, env, tmp_path / "first.log") as first,
        serving(project, env, tmp_path / "second.log") as second,
    ):
        auth = bearer(httpx.Client(base_url=first))
        before = httpx.get(f"{second}/api/v1/users/me", headers=auth).status_code
        logout = httpx.post(f"{first}/api/v1/auth/logout", headers=auth).status_code
        after = httpx.get(f"{second}/api/v1/users/me", headers=auth).status_code
    assert (before, logout, after) == (200, 204, 401)


@pytest.mark.parametrize(
    "variant", variant_params(database="sqlite", rate_limiter="redis", use_docker="no")
)
def test_two_processes_enforce_one_global_login_limit(
    project: Path, variant: Variant, fresh_database, redis_url: str, tmp_path: Path
) -> None:
    env = service_env(
        DATABASE_URL=fresh_database("shared"), REDIS_URL=redis_url, RATE_LIMIT_LOGIN_IP="4/minute"
    )
    prepare(project, env)
    attempt = {"email": "nobody@example.com", "password": "wrong password, twice"}
    with (
        serving(project, env, tmp_path / "first.log") as first,
        serving(project, env, tmp_path / "second.log") as second,
    ):
        codes = [
            httpx.post(f"{base}/api/v1/auth/login", json=attempt).status_code
            for base in (first, second) * 3
        ]
    assert codes == [401, 401, 401, 401, 429, 429]


@pytest.mark.parametrize(
    "variant", variant_params(database="postgresql", rate_limiter="redis", use_docker="no")
)
def test_schemathesis_finds_no_server_error_and_no_schema_mismatch(
    project: Path, variant: Variant, fresh_database, redis_url: str, tmp_path: Path
) -> None:
    """Property-based requests against every operation, signed in as an admin.

    The operations that end sessions run last, on a token of their own: schemathesis links the
    ids it reads (`GET /auth/sessions`, `GET /users/me`) into them, which revoked the session
    every other operation uses, and the routes tested after it (second factors, passkeys)
    answered nothing but 401. Logout routes are left out altogether.
    """
    env = service_env(
        DATABASE_URL=fresh_database("schemathesis"), REDIS_URL=redis_url, RATE_LIMIT_ENABLED="false"
    )
    prepare(project, env)
    log = tmp_path / "server.log"
    with serving(project, env, log) as base, httpx.Client(base_url=base) as http:
        runs = {
            "every other operation": ["--exclude-path-regex", f"logout|{SESSION_ENDERS}"],
            "the session-ending ones": ["--include-path-regex", SESSION_ENDERS],
        }
        for what, selection in runs.items():
            auth = bearer(http)
            result = run(
                [
                    tool("st"), "run", f"{base}/openapi.json",
                    "--checks", ",".join(CHECKS),
                    "--header", f"Authorization: {auth['Authorization']}",
                    "--max-examples", "25", "--seed", "1", "--workers", "1",
                    *selection,
                ],
                cwd=tmp_path,
                timeout=600,
            )  # fmt: skip
            assert result.returncode == 0, (what, output_of(result, tail=120))
            assert re.search(r"Tested: [1-9]", result.stdout), (what, output_of(result))
            if what == "every other operation":
                never_reached = unauthenticated_only(result.stdout + result.stderr)
                assert never_reached <= COOKIE_ONLY, output_of(result)


# DELETE /auth/sessions/{id} and DELETE /admin/users/{id}/sessions (its GET comes along).
SESSION_ENDERS = r"/auth/sessions/\{session_id\}$|/admin/users/\{user_id\}/sessions$"
# Routes a bearer token cannot use: they answer 401 to anything schemathesis sends.
COOKIE_ONLY = {"GET /api/v1/auth/csrf"}


def unauthenticated_only(output: str) -> set[str]:
    """The operations schemathesis reports as answering only 401/403: never reached."""
    _, found, rest = output.partition("Authentication failed")
    if not found:
        return set()
    block = rest.split("\n\n", 2)[1] if rest.count("\n\n") >= 2 else rest
    return {line.strip()[2:] for line in block.splitlines() if line.strip().startswith("- ")}
