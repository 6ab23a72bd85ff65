"""Every query the service runs finds its rows through an index at production scale (SPEC 12).

A PostgreSQL cluster of its own runs `auto_explain` on the generated service's database, which
holds 1,000,000 sessions and 1,000,000 audit events (made in SQL, in seconds). The service is
then used as its users, its admins and its operator use it (sign-in, the hot path, refresh,
reuse, the session list, the admin lists and their filters, the audit log, revocations, the
purge), and the server itself logs the plan of every statement that reached it, the raw
driver's included. Nothing is hand-listed: a query added to the service tomorrow is checked too.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from benchmarks import infra
from benchmarks.infra import BenchmarkError, Variant
from benchmarks.scale import (
    BIG_TABLES,
    PAST_RETENTION,
    SEED,
    Explaining,
    relations,
    sequential_scans,
)
from support import output_of, run, serving, variant_params
from test_reliability import ADMIN, PASSWORD, prepare, service_env

USER = "user7@example.com"  # one of the seeded users, with ROWS / USERS sessions


@pytest.fixture(scope="module")
def explaining_postgres() -> Iterator[infra.Postgres]:
    """A cluster that can log every plan; the database under test turns it on."""
    cluster = infra.Postgres(fast=True, settings=("shared_buffers=256MB",))
    try:
        cluster.start()
    except BenchmarkError as error:
        cluster.stop()
        pytest.fail(str(error), pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.mark.parametrize(
    "variant", variant_params(database="postgresql", rate_limiter="memory", use_docker="no")
)
def test_every_query_the_service_runs_uses_an_index_at_a_million_rows(
    project: Path, variant: Variant, explaining_postgres: infra.Postgres, tmp_path: Path
) -> None:
    database_url = explaining_postgres.create_database("plans")
    env = service_env(
        DATABASE_URL=database_url, RATE_LIMIT_ENABLED="false", PURGE_INTERVAL_SECONDS="0"
    )
    prepare(project, env)  # migrated, and the admin of test_reliability
    infra.execute_sql(database_url, *SEED)
    # From here on, every new connection to this database logs the plan of each statement.
    explaining = Explaining(explaining_postgres, database_url)
    explaining.start()
    start = explaining.mark()

    with serving(project, env, tmp_path / "api.log") as base:
        use_the_service(base)
    result = run([sys.executable, "-m", "app.cli", "purge"], cwd=project, env=env)
    assert result.returncode == 0, output_of(result)
    assert f"{PAST_RETENTION} sessions" in result.stdout, result.stdout

    plans = explaining.plans_since(start)
    queries = {plan["Query Text"]: plan["Plan"] for plan in plans}
    touching = {text for text, plan in queries.items() if relations(plan) & BIG_TABLES}
    print(f"{len(queries)} distinct statements, {len(touching)} on session or audit_event")
    offenders = {
        text: sorted(scans)
        for text, plan in queries.items()
        if (scans := sequential_scans(plan) & BIG_TABLES)
    }
    assert offenders == {}, json.dumps(offenders, indent=2)
    # The walk above reached the principal read, rotation, the lists and the purge at least.
    assert len(touching) >= 15, "the walk reached too few of the service's queries"


def use_the_service(base: str) -> None:
    """What a user, an admin and a client under attack do, through the real server."""
    with httpx.Client(base_url=f"{base}/api/v1", timeout=60) as user:
        wrong = user.post("/auth/login", json={"email": USER, "password": "not the password"})
        assert wrong.status_code == 401
        signed_in = user.post("/auth/login", json={"email": USER, "password": PASSWORD})
        assert signed_in.status_code == 200, signed_in.text
        user.headers["X-CSRF-Token"] = signed_in.json()["csrf_token"]
        for _ in range(3):
            assert user.get("/users/me").status_code == 200
        old_refresh = next(v for k, v in user.cookies.items() if k.endswith("refresh_token"))
        refreshed = user.post("/auth/refresh")
        assert refreshed.status_code == 200, refreshed.text
        user.headers["X-CSRF-Token"] = refreshed.json()["csrf_token"]
        sessions = user.get("/auth/sessions")
        assert sessions.status_code == 200, sessions.text
        other = next(s["id"] for s in sessions.json() if not s["current"])
        assert user.delete(f"/auth/sessions/{other}").status_code == 204
        restored = user.get("/auth/csrf")  # a reload: the token comes back from the session
        assert restored.status_code == 200, restored.text
        user.headers["X-CSRF-Token"] = restored.json()["csrf_token"]
        assert user.post("/auth/logout-all").status_code == 204
        assert user.get("/users/me").status_code == 401
        # A stolen, already rotated refresh token: reuse detection.
        assert user.post("/auth/refresh", json={"refresh_token": old_refresh}).status_code == 401
        for path in ("/auth/password/forgot", "/auth/verify-email/resend"):
            assert user.post(path, json={"email": USER}).status_code == 202

    with httpx.Client(base_url=f"{base}/api/v1", timeout=60) as admin:
        token = admin.post("/auth/token", data={"username": ADMIN, "password": PASSWORD})
        assert token.status_code == 200, token.text
        admin.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
        first = admin.get("/admin/users", params={"limit": 50})
        assert first.status_code == 200, first.text
        assert admin.get("/admin/users", params={"cursor": first.json()["next_cursor"]}).is_success
        filters = ({"email": "user12"}, {"role": "admin"}, {"is_active": "true"})
        for query in (*filters, {"is_verified": "false"}):
            assert admin.get("/admin/users", params=query).is_success, query
        someone = next(u for u in first.json()["items"] if u["email"].startswith("user"))["id"]
        assert admin.get(f"/admin/users/{someone}").is_success
        assert admin.get(f"/admin/users/{someone}/sessions").is_success
        events = admin.get("/admin/audit-events", params={"limit": 50})
        assert events.status_code == 200, events.text
        assert admin.get(
            "/admin/audit-events", params={"cursor": events.json()["next_cursor"]}
        ).is_success
        a_month = {"since": "2026-01-01T00:00:00Z", "until": "2026-02-01T00:00:00Z"}
        for query in ({"user_id": someone}, {"type": "login_failed"}, a_month):
            assert admin.get("/admin/audit-events", params=query).is_success, query
        assert admin.delete(f"/admin/users/{someone}/sessions").status_code == 204
        assert admin.patch(f"/admin/users/{someone}", json={"is_active": False}).is_success
        for path in ("/admin/roles", "/admin/permissions", "/users/me"):
            assert admin.get(path).is_success, path
