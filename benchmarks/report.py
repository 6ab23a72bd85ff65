"""Targets, and the results as a terminal table and as Markdown (benchmarks/results/latest.md)."""

from __future__ import annotations

import statistics
from typing import Any

USERS_ME_VS_JWT = 0.5  # /users/me req/s >= 0.5 x the JWT-decoding ceiling
LOGIN_VS_ARGON2 = 0.9  # login req/s >= 0.9 x argon2 verifies/s on all cores
STORM_P99_FACTOR = 3.0  # /users/me p99 during a login storm <= 3 x its p99 without
RSS_MIB = 150.0  # each worker's RSS after the runs
TOTP_VS_LOGIN = 10.0  # the TOTP second step req/s >= 10 x login req/s: no argon2 in it
METRICS_ON_VS_OFF = 0.95  # /users/me req/s with METRICS_ENABLED >= 0.95 x without
DISTINCT_VS_JWT = 0.7  # /users/me with 10,000 users' tokens (memo misses) >= 0.7 x JWT ceiling
SESSIONS_VS_USERS_ME = 0.3  # the 200-session list >= 0.3 x /users/me (one cookie)
REFRESH_VS_JWT = 0.2  # PostgreSQL: refresh req/s >= 0.2 x the JWT ceiling
REFRESH_P99_MS = 250.0  # SQLite: refresh p99 <= 250 ms (16 connections), and no error

HEADER = ["Measurement", "req/s", "p50 ms", "p99 ms", "errors", "vs ceiling", "target", "result"]


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else 0.0


def _paired(m: dict[str, Any], num: str, den: str, key: str = "rps") -> float:
    """Median over rounds of the ratio within each round: both sides saw the same machine."""
    pairs = zip(m[num]["rounds"], m[den]["rounds"], strict=True)
    ratios = [
        _ratio(a.get(key, a.get("rate", 0.0)), b.get(key, b.get("rate", 0.0))) for a, b in pairs
    ]
    return round(statistics.median(ratios), 3)


def _at_least(value: float, least: float | None) -> dict[str, Any]:
    if least is None:
        return {"value": value, "target": None, "pass": None}
    return {"value": value, "target": f">= {least:g}", "pass": value >= least}


def _at_most(value: float, most: float) -> dict[str, Any]:
    return {"value": value, "target": f"<= {most:g}", "pass": value <= most}


def checks(m: dict[str, Any], database: str = "sqlite") -> dict[str, dict[str, Any]]:
    """Ratios are medians of per-round ratios (robust to a machine that is busier in one round).

    Only the checks whose rows were measured (`--scale` measures fewer). The refresh row's
    target depends on the database: rotation is a write, and SQLite has one writer at a time,
    so there its target is a bounded tail rather than a rate."""
    ratios: dict[str, tuple[str, str, str, float | None]] = {
        "users_me_vs_jwt_ceiling": ("users_me", "ceiling_jwt", "rps", USERS_ME_VS_JWT),
        "users_me_vs_bare_ceiling": ("users_me", "ceiling_bare", "rps", None),
        "users_me_distinct_vs_jwt_ceiling": (
            "users_me_distinct", "ceiling_jwt", "rps", DISTINCT_VS_JWT),
        "users_me_metrics_on_vs_off": (
            "users_me_metrics_on", "users_me_metrics_off", "rps", METRICS_ON_VS_OFF),
        "sessions_list_vs_users_me": ("sessions_list", "users_me", "rps", SESSIONS_VS_USERS_ME),
        "admin_users_first_vs_users_me": ("admin_users_first", "users_me", "rps", None),
        "admin_users_deep_vs_users_me": ("admin_users_deep", "users_me", "rps", None),
        "refresh_vs_jwt_ceiling": (
            "refresh", "ceiling_jwt", "rps", REFRESH_VS_JWT if database == "postgresql" else None),
        "login_vs_argon2_ceiling": ("login", "argon2_ceiling", "rps", LOGIN_VS_ARGON2),
        "mfa_verify_vs_login": ("mfa_verify", "login", "rps", TOTP_VS_LOGIN),
        "passkey_login_vs_login": ("passkey_login", "login", "rps", None),
    }  # fmt: skip
    result = {
        name: _at_least(_paired(m, num, den, key), least)
        for name, (num, den, key, least) in ratios.items()
        if num in m and den in m
    }
    if "refresh" in m and database != "postgresql":
        refresh = m["refresh"]
        result["refresh_p99_ms"] = {
            "value": refresh["p99_ms"],
            "target": f"<= {REFRESH_P99_MS:g} ms, 0 errors",
            "pass": refresh["p99_ms"] <= REFRESH_P99_MS and refresh["errors"] == 0,
        }
    if "users_me_storm" in m:
        storm = _paired(m, "users_me_storm", "users_me", "p99_ms")
        result["users_me_p99_storm_vs_calm"] = _at_most(storm, STORM_P99_FACTOR)
    result["worker_rss_mib"] = _at_most(m["worker_rss"]["rss_mib"], RSS_MIB)
    return result


def _mark(passed: bool | None) -> str:
    return "" if passed is None else ("PASS" if passed else "FAIL")


def _load_row(label: str, r: dict[str, Any], ratio: str = "", target: str = "", result: str = ""):
    errors = str(r.get("errors", 0)) + (f" ({r['starved']} starved)" if r.get("starved") else "")
    return [label, f"{r['rps']:.1f}", f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}", errors,
            ratio, target, result]  # fmt: skip


def _judged(label: str, r: dict[str, Any], check: dict[str, Any], unit: str, digits: int = 2):
    """A load row judged by one ratio check: its value, target and verdict, in `unit`s."""
    target = f"{check['target']}x {unit}" if check["target"] else ""
    return _load_row(label, r, f"{check['value']:.{digits}f}x {unit}", target,
                     _mark(check["pass"]))  # fmt: skip


def rows(target: dict[str, Any], users: int = 10_000) -> list[list[str]]:
    """The table, in the order of the run; rows that were not measured (`--scale`) left out.
    `users`: how many distinct tokens the distinct-tokens row sent."""
    m, c = target["measurements"], target["checks"]
    rss = m["worker_rss"]
    table: list[list[str]] = []
    if "ceiling_bare" in m:
        table.append(_load_row("ceiling: bare FastAPI, same JSON, no auth", m["ceiling_bare"]))
    table.append(_load_row("ceiling: + PyJWT access-cookie decode, no DB", m["ceiling_jwt"]))
    me = c["users_me_vs_jwt_ceiling"]
    bare = f", {c['users_me_vs_bare_ceiling']['value']:.2f}x bare" if "ceiling_bare" in m else ""
    table.append(_load_row("GET /api/v1/users/me (cookie)", m["users_me"],
                           f"{me['value']:.2f}x JWT{bare}", f"{me['target']}x JWT",
                           _mark(me["pass"])))  # fmt: skip
    table.append(_judged(f"GET /api/v1/users/me, {users:,} distinct users' tokens",
                         m["users_me_distinct"], c["users_me_distinct_vs_jwt_ceiling"],
                         "JWT"))  # fmt: skip
    if "users_me_metrics_on" in m:
        table.append(_load_row("GET /api/v1/users/me, twin, METRICS_ENABLED=false",
                               m["users_me_metrics_off"]))  # fmt: skip
        table.append(_judged("GET /api/v1/users/me, twin, METRICS_ENABLED=true",
                             m["users_me_metrics_on"], c["users_me_metrics_on_vs_off"],
                             "metrics off"))  # fmt: skip
    table += [
        _judged("GET /api/v1/auth/sessions, 200 active sessions", m["sessions_list"],
                c["sessions_list_vs_users_me"], "/users/me"),
        _judged("GET /api/v1/admin/users, first page", m["admin_users_first"],
                c["admin_users_first_vs_users_me"], "/users/me"),
        _judged("GET /api/v1/admin/users, deep page (cursor)", m["admin_users_deep"],
                c["admin_users_deep_vs_users_me"], "/users/me"),
    ]  # fmt: skip
    refresh = _judged("POST /api/v1/auth/refresh (rotation)", m["refresh"],
                      c["refresh_vs_jwt_ceiling"], "JWT")  # fmt: skip
    if "refresh_p99_ms" in c:  # SQLite: judged by its tail
        refresh[-2:] = [f"p99 {c['refresh_p99_ms']['target']}",
                        _mark(c["refresh_p99_ms"]["pass"])]  # fmt: skip
    table.append(refresh)
    argon2 = m["argon2_ceiling"]
    table.append([f"ceiling: argon2id verify, {argon2['processes']} processes",
                  f"{argon2['rps']:.2f}", f"{argon2['verify_p50_ms']:.0f}",
                  "", "", "", "", ""])  # fmt: skip
    table.append(_judged("POST /api/v1/auth/login", m["login"], c["login_vs_argon2_ceiling"],
                         "argon2"))  # fmt: skip
    if "mfa_verify" in m:
        table += [
            _judged("POST /api/v1/auth/mfa/verify (TOTP second step)", m["mfa_verify"],
                    c["mfa_verify_vs_login"], "login", 1),
            _judged("POST /api/v1/auth/passkeys/login (passkey alone)", m["passkey_login"],
                    c["passkey_login_vs_login"], "login", 1),
        ]  # fmt: skip
    if "users_me_storm" in m:
        storm = c["users_me_p99_storm_vs_calm"]
        table += [
            _load_row("GET /api/v1/users/me during a login storm", m["users_me_storm"],
                      f"p99 {storm['value']:.2f}x calm", f"p99 {storm['target']}x calm",
                      _mark(storm["pass"])),
            _load_row("POST /api/v1/auth/login (the storm)", m["login_storm"]),
        ]  # fmt: skip
    table.append(["worker RSS after the runs (MiB)", "", "", "", "",
                  f"{rss['rss_mib']:.1f} (peak {rss['peak_rss_mib']:.1f})", f"<= {RSS_MIB:g} MiB",
                  _mark(c["worker_rss_mib"]["pass"])])  # fmt: skip
    return table


# Each explained row (benchmarks/run.py EXPLAINED_ROWS), as the tables name it.
PLAN_ROWS = {
    "login": "POST /api/v1/auth/login",
    "refresh": "POST /api/v1/auth/refresh",
    "users_me_distinct": "GET /api/v1/users/me (a token not seen before)",
    "sessions_list": "GET /api/v1/auth/sessions",
    "admin_users_first": "GET /api/v1/admin/users, first page",
    "admin_users_deep": "GET /api/v1/admin/users, deep page",
}


def plan_summary(statements: list[dict[str, Any]]) -> str:
    """A row's verdict: "index" when no statement of it read a big table through."""
    scans = sorted({s["verdict"] for s in statements if not s["verdict"].startswith("index")})
    indexed = len(statements) - sum(not s["verdict"].startswith("index") for s in statements)
    return (
        f"index ({indexed} of {len(statements)} statements)"
        if not scans
        else "; ".join(scans) + f" ({len(statements) - indexed} of {len(statements)} statements)"
    )


def plan_lines(plans: dict[str, list[dict[str, Any]]], markdown: bool) -> list[str]:
    """The verdicts of --scale: per row, then per statement (its tables and verdict)."""
    lines = []
    for row, statements in plans.items():
        label = PLAN_ROWS.get(row, row)
        lines.append(f"- {label}: **{plan_summary(statements)}**" if markdown
                     else f"  {label}: {plan_summary(statements)}")  # fmt: skip
        for statement in statements:
            query = statement["query"]
            query = query if len(query) <= 110 else query[:107] + "..."
            tables = ", ".join(statement["tables"])
            lines.append(f"  - {statement['verdict']} [{tables}]: `{query}`" if markdown
                         else f"      {statement['verdict']:<12} [{tables}] {query}")  # fmt: skip
    return lines


def _settings_line(meta: dict[str, Any]) -> str:
    return (
        f"variant {meta['variant']}, client {meta['client']} ({meta['client_version']}), "
        f"{meta['rounds']} round(s) x {meta['duration_s']:g} s (+{meta['warmup_s']:g} s warm-up), "
        f"median of rounds; {meta['connections']} connections "
        f"({meta['login_connections']} for login), {meta['cpus']} CPUs, "
        f"Python {meta['python']}, 1-min load average {meta['load_average_at_start'][0]:.2f} "
        f"at start, {meta.get('load_average_at_end', ['?'])[0]} at end; "
        f"argon2 t={meta['argon2']['time_cost']} "
        f"m={meta['argon2']['memory_cost']} KiB p={meta['argon2']['parallelism']}; "
        f"{meta['rate_limits']}" + (f"; scale: {meta['scale']}" if meta.get("scale") else "")
    )


def _scale_note(target: dict[str, Any]) -> str:
    seconds = target.get("scale", {}).get("seed_seconds")
    return f"Scale seed: {seconds:g} s. " if seconds is not None else ""


def text(results: dict[str, Any]) -> str:
    meta = results["meta"]
    lines = [f"Benchmark {meta['date']}: {_settings_line(meta)}"]
    for target in results["targets"].values():
        table = [HEADER, *rows(target, meta.get("distinct_users", 10_000))]
        widths = [max(len(row[i]) for row in table) for i in range(len(HEADER))]
        lines += ["", f"== {target['title']}: {target['service_command']}"]
        for index, row in enumerate(table):
            cells = [
                cell.ljust(width) if i == 0 else cell.rjust(width) if i < 5 else cell.ljust(width)
                for i, (cell, width) in enumerate(zip(row, widths, strict=True))
            ]
            lines.append("  ".join(cells).rstrip())
            if index == 0:
                lines.append("  ".join("-" * width for width in widths))
        if note := _scale_note(target):
            lines.append(note.strip())
        if plans := target.get("scale", {}).get("plans"):
            lines += ["", "Query plans at scale (auto_explain):", *plan_lines(plans, False)]
    return "\n".join(lines)


def markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    users = meta.get("distinct_users", 10_000)
    lines = [
        "# Latest benchmark",
        "",
        f"`{meta.get('invocation', 'python -m benchmarks')}` on {meta['date']} "
        f"(template commit {meta['template_commit']}).",
        "",
        _settings_line(meta) + ".",
    ]
    for target in results["targets"].values():
        lines += [
            "",
            f"## {target['title']}",
            "",
            f"{_scale_note(target)}Service: `{target['service_command']}`; "
            f"ceiling app: `{target['ceiling_command']}`.",
            "",
            "| " + " | ".join(HEADER) + " |",
            "|" + "|".join(["---"] + ["---:"] * 4 + ["---"] * 3) + "|",
        ]
        lines += ["| " + " | ".join(row) + " |" for row in rows(target, users)]
        if plans := target.get("scale", {}).get("plans"):
            lines += ["", "Query plans at scale (`auto_explain`; index = no big table read "
                      "through):", "", *plan_lines(plans, True)]  # fmt: skip
    lines += [
        "",
        "Rows are explained in `benchmarks/README.md`. The argon2 row's p50 column is the time "
        "of one verification.",
        "",
    ]
    return "\n".join(lines)
