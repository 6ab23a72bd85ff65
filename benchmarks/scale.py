"""Production scale in a PostgreSQL database, and which plans its queries get there.

`SEED` fills a migrated database that holds one user (the admin, whose password hash the
others share) with 10,000 users, 1,000,000 sessions and 1,000,000 audit events, in SQL, in
seconds: `python -m benchmarks --scale` measures on it, and the template's query-plan test
(`tests/test_query_plans.py`) checks every plan on it. The users are `user1@example.com` ...
`user10000@example.com`, the names `users_seed.py` gives the benchmark's signed-in users, so
`--scale` reuses them.

The plans come from the server itself: `auto_explain` (a contrib module of PostgreSQL) logs
the plan of every statement of the database's new connections, the raw asyncpg connections of
the principal read included, so nothing depends on guessing which SQL a request sends.
`Explaining` turns it on for one database; `logged_plans` reads the log; `verdicts` says, for
each statement, whether its rows were found through an index or by reading a table through.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import infra

ROWS = 1_000_000  # sessions, and audit events
USERS = 10_000
PAST_RETENTION = 1_000  # of each: what the purge finds, as it would after an hour
BIG_TABLES = frozenset({"session", "audit_event"})
# A table this small is read through faster than through an index; the planner knows.
SMALL_TABLE_ROWS = 1_000

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

AUTO_EXPLAIN = {
    "session_preload_libraries": "'auto_explain'",
    "auto_explain.log_min_duration": "0",
    "auto_explain.log_format": "'json'",
    "auto_explain.log_nested_statements": "on",
}


@dataclass
class Explaining:
    """`auto_explain` on for the new connections to one database of a throwaway cluster."""

    cluster: infra.Postgres
    database_url: str

    @property
    def name(self) -> str:
        return self.database_url.rsplit("/", 1)[1]

    @property
    def log(self) -> Path:
        return Path(str(self.cluster.root)) / "server.log"

    def start(self) -> None:
        infra.execute_sql(
            self.cluster.admin_url,
            *(f"ALTER DATABASE {self.name} SET {key} = {value}" for key, value in
              AUTO_EXPLAIN.items()),
        )  # fmt: skip

    def stop(self) -> None:
        infra.execute_sql(
            self.cluster.admin_url,
            *(f"ALTER DATABASE {self.name} RESET {key}" for key in AUTO_EXPLAIN),
        )

    def mark(self) -> int:
        """Where the log ends now: `plans_since` reads what follows."""
        return self.log.stat().st_size

    def plans_since(self, mark: int) -> list[dict[str, Any]]:
        with self.log.open("rb") as handle:
            handle.seek(mark)
            return logged_plans(handle.read().decode(errors="replace"))


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


def table_rows(database_url: str) -> dict[str, int]:
    """Each table's row count as the planner knows it (`pg_class.reltuples`, after ANALYZE)."""
    import asyncpg
    from sqlalchemy.engine import make_url

    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(False)

    async def go() -> dict[str, int]:
        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetch(
                "SELECT relname, reltuples::bigint AS n FROM pg_class WHERE relkind = 'r' "
                "AND relnamespace = 'public'::regnamespace"
            )
        finally:
            await conn.close()
        return {row["relname"]: max(int(row["n"]), 0) for row in rows}

    return asyncio.run(go())


def verdict(plan: dict[str, Any], rows: dict[str, int]) -> tuple[str, list[str]]:
    """ "index", or "seq scan on X" for each table of more than SMALL_TABLE_ROWS read through;
    and the small tables read through (the planner's right choice for a few rows)."""
    scans = sequential_scans(plan)
    big = sorted(name for name in scans if rows.get(name, 0) > SMALL_TABLE_ROWS)
    text = f"seq scan on {', '.join(big)}" if big else "index"
    return text, sorted(scans.difference(big))


def verdicts(plans: list[dict[str, Any]], rows: dict[str, int]) -> list[dict[str, Any]]:
    """One entry per distinct statement that read a table: its SQL, tables, verdict."""
    seen: dict[str, dict[str, Any]] = {}
    for logged in plans:
        text, plan = logged["Query Text"], logged["Plan"]
        touched = relations(plan)
        if text in seen or not touched:
            continue
        judged, small = verdict(plan, rows)
        seen[text] = {
            "query": " ".join(text.split()),
            "tables": sorted(touched),
            "verdict": judged,
            "small_tables_read_through": small,
        }
    return list(seen.values())
