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
from typing import Any

import httpx
import pytest

from benchmarks import infra
from benchmarks.infra import BenchmarkError, Variant
from support import output_of, run, serving, variant_params
from test_reliability import ADMIN, PASSWORD, prepare, service_env

ROWS = 1_000_000  # sessions, and audit events
USERS = 10_000
PAST_RETENTION = 1_000  # of each: what the purge finds, as it would after an hour
BIG_TABLES = {"session", "audit_event"}
USER = "user7@example.com"  # one of the seeded users, with ROWS / USERS sessions

SEED = [
    # Users in sign-up order, each with the `user` role and the admin's password hash.
    f"""INSERT INTO "user" (id, email, password_hash, is_active, is_verified, created_at,
        updated_at, password_changed_at)
    SELECT gen_random_uuid(), 'user' || i || '@example.com', admin.password_hash, true, true,
        now() - i * interval '1 minute', now(), now()
    FROM generate_series(1, {USERS}) i, (SELECT password_hash FROM "user" LIMIT 1) admin""",
    """INSERT INTO user_role (user_id, role_id)
    SELECT u.id, r.id FROM "user" u, role r WHERE r.name = 'user' AND u.email LIKE 'user%'""",
    # Sessions of the last 30 days, a third of them signed out; a few past retention.
    f"""INSERT INTO session (id, user_id, created_at, last_seen_at, expires_at, revoked_at,
        revoked_reason, ip_address, last_ip_address, user_agent, device_label, fingerprint,
        refresh_generation, refresh_token_hash, refresh_issued_at, authenticated_at, auth_method)
    SELECT gen_random_uuid(), ids[1 + g % {USERS}], t, t, t + interval '30 days',
        CASE WHEN g % 3 = 0 THEN t + interval '1 hour' END,
        CASE WHEN g % 3 = 0 THEN 'logout' END,
        '192.0.2.1', '192.0.2.1', 'seed', 'Firefox on Linux', md5(g::text), 0,
        md5('refresh' || g), t, t, 'password'
    FROM generate_series(1, {ROWS}) g,
        LATERAL (SELECT CASE WHEN g <= {PAST_RETENTION} THEN now() - interval '61 days'
                        ELSE now() - (g % 720) * interval '1 hour' END AS t) moment,
        (SELECT array_agg(id) AS ids FROM "user" WHERE email LIKE 'user%') users""",
    # A year of audit events, a few older.
    f"""INSERT INTO audit_event (id, user_id, type, ip_address, user_agent, created_at)
    SELECT gen_random_uuid(), ids[1 + g % {USERS}],
        (ARRAY['login_succeeded', 'login_failed', 'session_revoked'])[1 + g % 3],
        '192.0.2.1', 'seed',
        CASE WHEN g <= {PAST_RETENTION} THEN now() - interval '400 days'
             ELSE now() - (g % 8760) * interval '1 hour' END
    FROM generate_series(1, {ROWS}) g,
        (SELECT array_agg(id) AS ids FROM "user" WHERE email LIKE 'user%') users""",
    "ANALYZE",
]


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
    name = database_url.rsplit("/", 1)[1]
    infra.execute_sql(database_url, *SEED)
    # From here on, every new connection to this database logs the plan of each statement.
    infra.execute_sql(
        explaining_postgres.admin_url,
        f"ALTER DATABASE {name} SET session_preload_libraries = 'auto_explain'",
        f"ALTER DATABASE {name} SET auto_explain.log_min_duration = 0",
        f"ALTER DATABASE {name} SET auto_explain.log_format = 'json'",
        f"ALTER DATABASE {name} SET auto_explain.log_nested_statements = on",
    )
    log = Path(str(explaining_postgres.root)) / "server.log"
    start = log.stat().st_size

    with serving(project, env, tmp_path / "api.log") as base:
        use_the_service(base)
    result = run([sys.executable, "-m", "app.cli", "purge"], cwd=project, env=env)
    assert result.returncode == 0, output_of(result)
    assert f"{PAST_RETENTION} sessions" in result.stdout, result.stdout

    plans = logged_plans(log.read_text(errors="replace")[start:])
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


def logged_plans(log: str) -> list[dict[str, Any]]:
    """auto_explain's JSON plans: a `duration: ... plan:` line, then the plan indented by a tab."""
    plans, lines = [], iter(log.splitlines())
    collecting: list[str] | None = None
    for line in lines:
        if collecting is not None and line.startswith("\t"):
            collecting.append(line[1:])
            continue
        if collecting:
            plans.append(json.loads("\n".join(collecting)))
        collecting = [] if line.rstrip().endswith("plan:") else None
    if collecting:
        plans.append(json.loads("\n".join(collecting)))
    return plans


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


def relations(plan: dict[str, Any]) -> set[str]:
    return {node["Relation Name"] for node in nodes(plan) if "Relation Name" in node}


def sequential_scans(plan: dict[str, Any]) -> set[str]:
    return {node["Relation Name"] for node in nodes(plan) if node["Node Type"] == "Seq Scan"}
