"""`python -m benchmarks --quick` runs end to end with either load generator and reports every
measurement, for uvicorn with 1 worker and for the production command (scripts/start.sh).

No timing assertions: the numbers only have to exist, be positive and come from requests that
succeeded (a refresh that reused a token or a login that failed would show up as errors).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from benchmarks.infra import TEMPLATE_DIR
from support import output_of, run

LOAD_MEASUREMENTS = (
    "ceiling_bare",
    "ceiling_jwt",
    "users_me",
    "users_me_distinct",
    "users_me_metrics_off",
    "users_me_metrics_on",
    "sessions_list",
    "admin_users_first",
    "admin_users_deep",
    "refresh",
    "login",
    "mfa_verify",
    "passkey_login",
    "users_me_storm",
    "login_storm",
)
CHECKS = (
    "users_me_vs_jwt_ceiling",
    "users_me_vs_bare_ceiling",
    "users_me_distinct_vs_jwt_ceiling",
    "users_me_metrics_on_vs_off",
    "sessions_list_vs_users_me",
    "admin_users_first_vs_users_me",
    "admin_users_deep_vs_users_me",
    "refresh_vs_jwt_ceiling",
    "refresh_p99_ms",  # SQLite, the variant of the quick run: the refresh row's target
    "login_vs_argon2_ceiling",
    "mfa_verify_vs_login",
    "passkey_login_vs_login",
    "users_me_p99_storm_vs_calm",
    "worker_rss_mib",
)


RUNS = [
    pytest.param("python", ["--skip-prod"], ["uvicorn"], id="python-client-uvicorn"),
    pytest.param("wrk", [], ["uvicorn", "prod"], id="wrk-client-uvicorn-and-start.sh"),
]


@pytest.mark.parametrize(("client", "options", "servers"), RUNS)
def test_quick_benchmark_reports_every_measurement(
    tmp_path: Path, client: str, options: list[str], servers: list[str]
) -> None:
    output = tmp_path / "bench.json"
    result = run(
        [sys.executable, "-m", "benchmarks", "--quick", "--client", client, *options,
         "--output", str(output)],
        cwd=TEMPLATE_DIR,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, output_of(result)

    results = json.loads(output.read_text())
    assert results["meta"]["client"].startswith(client), results["meta"]["client"]
    assert list(results["targets"]) == servers
    for server in servers:
        assert_every_measurement(results["targets"][server])

    table = output.with_suffix(".md").read_text()
    assert "GET /api/v1/users/me" in table
    assert "GET /api/v1/users/me, twin, METRICS_ENABLED=true" in table
    assert "GET /api/v1/users/me, 5,000 distinct users' tokens" in table
    assert "GET /api/v1/auth/sessions, 200 active sessions" in table
    assert "GET /api/v1/admin/users, deep page (cursor)" in table
    assert "POST /api/v1/auth/login" in table
    assert "POST /api/v1/auth/mfa/verify" in table
    assert "POST /api/v1/auth/passkeys/login" in table
    assert ("## scripts/start.sh (gunicorn" in table) == ("prod" in servers)


def assert_every_measurement(target: dict) -> None:
    measurements = target["measurements"]
    for name in LOAD_MEASUREMENTS:
        numbers = measurements[name]
        assert numbers["requests"] > 0, name
        for key in ("rps", "p50_ms", "p99_ms"):
            assert numbers[key] > 0, (name, key, numbers)
        assert numbers["errors"] == 0, (name, numbers)
        assert numbers["starved"] == 0, (name, numbers)
    assert measurements["argon2_ceiling"]["rps"] > 0
    assert measurements["worker_rss"]["rss_mib"] > 0
    for name in CHECKS:
        assert target["checks"][name]["value"] > 0, name
