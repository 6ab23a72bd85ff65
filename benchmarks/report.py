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


def checks(m: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Ratios are medians of per-round ratios (robust to a machine that is busier in one round)."""
    users_me_vs_jwt = _paired(m, "users_me", "ceiling_jwt")
    login_vs_argon2 = _paired(m, "login", "argon2_ceiling")
    storm = _paired(m, "users_me_storm", "users_me", "p99_ms")
    totp_vs_login = _paired(m, "mfa_verify", "login")
    metrics_on_vs_off = _paired(m, "users_me_metrics_on", "users_me_metrics_off")
    rss = m["worker_rss"]["rss_mib"]
    return {
        "users_me_vs_jwt_ceiling": {
            "value": users_me_vs_jwt,
            "target": f">= {USERS_ME_VS_JWT}",
            "pass": users_me_vs_jwt >= USERS_ME_VS_JWT,
        },
        "users_me_vs_bare_ceiling": {
            "value": _paired(m, "users_me", "ceiling_bare"),
            "target": None,
            "pass": None,
        },
        "users_me_metrics_on_vs_off": {
            "value": metrics_on_vs_off,
            "target": f">= {METRICS_ON_VS_OFF}",
            "pass": metrics_on_vs_off >= METRICS_ON_VS_OFF,
        },
        "refresh_vs_jwt_ceiling": {
            "value": _paired(m, "refresh", "ceiling_jwt"),
            "target": None,
            "pass": None,
        },
        "login_vs_argon2_ceiling": {
            "value": login_vs_argon2,
            "target": f">= {LOGIN_VS_ARGON2}",
            "pass": login_vs_argon2 >= LOGIN_VS_ARGON2,
        },
        "mfa_verify_vs_login": {
            "value": totp_vs_login,
            "target": f">= {TOTP_VS_LOGIN:g}",
            "pass": totp_vs_login >= TOTP_VS_LOGIN,
        },
        "passkey_login_vs_login": {
            "value": _paired(m, "passkey_login", "login"),
            "target": None,
            "pass": None,
        },
        "users_me_p99_storm_vs_calm": {
            "value": storm,
            "target": f"<= {STORM_P99_FACTOR}",
            "pass": storm <= STORM_P99_FACTOR,
        },
        "worker_rss_mib": {
            "value": rss,
            "target": f"<= {RSS_MIB:g}",
            "pass": rss <= RSS_MIB,
        },
    }


def _mark(passed: bool | None) -> str:
    return "" if passed is None else ("PASS" if passed else "FAIL")


def _load_row(label: str, r: dict[str, Any], ratio: str = "", target: str = "", result: str = ""):
    errors = str(r.get("errors", 0)) + (f" ({r['starved']} starved)" if r.get("starved") else "")
    return [label, f"{r['rps']:.1f}", f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}", errors,
            ratio, target, result]  # fmt: skip


def rows(target: dict[str, Any]) -> list[list[str]]:
    m, c = target["measurements"], target["checks"]
    argon2, rss = m["argon2_ceiling"], m["worker_rss"]
    return [
        _load_row("ceiling: bare FastAPI, same JSON, no auth", m["ceiling_bare"]),
        _load_row("ceiling: + PyJWT access-cookie decode, no DB", m["ceiling_jwt"]),
        _load_row(
            "GET /api/v1/users/me (cookie)",
            m["users_me"],
            f"{c['users_me_vs_jwt_ceiling']['value']:.2f}x JWT, "
            f"{c['users_me_vs_bare_ceiling']['value']:.2f}x bare",
            f">= {USERS_ME_VS_JWT}x JWT",
            _mark(c["users_me_vs_jwt_ceiling"]["pass"]),
        ),
        _load_row("GET /api/v1/users/me, twin, METRICS_ENABLED=false", m["users_me_metrics_off"]),
        _load_row(
            "GET /api/v1/users/me, twin, METRICS_ENABLED=true",
            m["users_me_metrics_on"],
            f"{c['users_me_metrics_on_vs_off']['value']:.2f}x metrics off",
            f">= {METRICS_ON_VS_OFF}x off",
            _mark(c["users_me_metrics_on_vs_off"]["pass"]),
        ),
        _load_row(
            "POST /api/v1/auth/refresh (rotation)",
            m["refresh"],
            f"{c['refresh_vs_jwt_ceiling']['value']:.2f}x JWT",
        ),
        [
            f"ceiling: argon2id verify, {argon2['processes']} processes",
            f"{argon2['rps']:.2f}",
            f"{argon2['verify_p50_ms']:.0f}",
            "",
            "",
            "",
            "",
            "",
        ],
        _load_row(
            "POST /api/v1/auth/login",
            m["login"],
            f"{c['login_vs_argon2_ceiling']['value']:.2f}x argon2",
            f">= {LOGIN_VS_ARGON2}x argon2",
            _mark(c["login_vs_argon2_ceiling"]["pass"]),
        ),
        _load_row(
            "POST /api/v1/auth/mfa/verify (TOTP second step)",
            m["mfa_verify"],
            f"{c['mfa_verify_vs_login']['value']:.1f}x login",
            f">= {TOTP_VS_LOGIN:g}x login",
            _mark(c["mfa_verify_vs_login"]["pass"]),
        ),
        _load_row(
            "POST /api/v1/auth/passkeys/login (passkey alone)",
            m["passkey_login"],
            f"{c['passkey_login_vs_login']['value']:.1f}x login",
        ),
        _load_row(
            "GET /api/v1/users/me during a login storm",
            m["users_me_storm"],
            f"p99 {c['users_me_p99_storm_vs_calm']['value']:.2f}x calm",
            f"p99 <= {STORM_P99_FACTOR:g}x calm",
            _mark(c["users_me_p99_storm_vs_calm"]["pass"]),
        ),
        _load_row("POST /api/v1/auth/login (the storm)", m["login_storm"]),
        [
            "worker RSS after the runs (MiB)",
            "",
            "",
            "",
            "",
            f"{rss['rss_mib']:.1f} (peak {rss['peak_rss_mib']:.1f})",
            f"<= {RSS_MIB:g} MiB",
            _mark(c["worker_rss_mib"]["pass"]),
        ],
    ]


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
        f"{meta['rate_limits']}"
    )


def text(results: dict[str, Any]) -> str:
    meta = results["meta"]
    lines = [f"Benchmark {meta['date']}: {_settings_line(meta)}"]
    for target in results["targets"].values():
        table = [HEADER, *rows(target)]
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
    return "\n".join(lines)


def markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
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
            f"Service: `{target['service_command']}`; ceiling app: `{target['ceiling_command']}`.",
            "",
            "| " + " | ".join(HEADER) + " |",
            "|" + "|".join(["---"] + ["---:"] * 4 + ["---"] * 3) + "|",
        ]
        lines += ["| " + " | ".join(row) + " |" for row in rows(target)]
    lines += [
        "",
        "Rows are explained in `benchmarks/README.md`. The argon2 row's p50 column is the time "
        "of one verification.",
        "",
    ]
    return "\n".join(lines)
