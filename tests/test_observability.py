"""Logs and metrics of the real production command (SPEC section 12): `scripts/start.sh` with two
gunicorn workers, `LOG_FORMAT=json` and `METRICS_ENABLED`.

The generated tests check the app in one process; what only the real servers can show is here:
uvicorn's access lines inside gunicorn's workers are JSON with the request id and no query
string, and /metrics adds up what every worker counted (`PROMETHEUS_MULTIPROC_DIR`, which
start.sh prepares), whichever worker answers the scrape.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.infra import Variant
from support import variant_params
from test_proxy_trust import LOOPBACK, running
from test_reliability import prepare, service_env

VARIANTS = variant_params(database="sqlite", rate_limiter="memory", use_docker="no")
LOGINS = 12
TOKEN = secrets.token_urlsafe(32)


def failed_logins(text: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "auth_logins_total" and sample.labels == {"result": "failure"}:
                return sample.value
    raise AssertionError(f"no auth_logins_total in:\n{text}")


@pytest.mark.parametrize("variant", VARIANTS)
def test_start_sh_logs_json_with_request_ids_and_sums_the_workers_metrics(
    project: Path, variant: Variant, fresh_database, tmp_path: Path
) -> None:
    env = service_env(
        DATABASE_URL=fresh_database("observability"),
        LOG_FORMAT="json",
        METRICS_ENABLED="true",
        METRICS_TOKEN=TOKEN,
        TRUSTED_PROXIES=LOOPBACK,
        RATE_LIMIT_ENABLED="false",
    )
    prepare(project, env)
    log = tmp_path / "server.log"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with running("start.sh", project, env, log) as base, httpx.Client(base_url=base) as http:
        ids = []
        for n in range(LOGINS):
            # A new connection each time, so that both workers get some.
            response = httpx.post(
                f"{base}/api/v1/auth/login?token=query-secret-{n}",
                json={"email": f"nobody{n}@example.com", "password": "wrong password, again"},
                headers={"X-Request-ID": f"proxy-{n}"},
            )
            assert response.status_code == 401, response.text
            ids.append(response.headers["X-Request-ID"])
        scrapes = [http.get("/metrics", headers={**auth, "Connection": "close"}) for _ in range(4)]
        refused = http.get("/metrics")
    assert ids == [f"proxy-{n}" for n in range(LOGINS)]  # the loopback peer is a trusted proxy
    assert refused.status_code == 401
    assert all(scrape.status_code == 200 for scrape in scrapes)
    assert {failed_logins(scrape.text) for scrape in scrapes} == {LOGINS}

    text = log.read_text()
    assert "query-secret" not in text
    access = [
        json.loads(line)
        for line in text.splitlines()
        if line.startswith("{") and '"logger": "uvicorn.access"' in line
    ]
    logins = [line for line in access if line["path"] == "/api/v1/auth/login"]
    assert [line["request_id"] for line in logins] == ids, text
    assert {(line["method"], line["status"]) for line in logins} == {("POST", 401)}
    workers = {
        json.loads(line)["message"]
        for line in text.splitlines()
        if line.startswith("{") and "Started server process" in line
    }
    assert len(workers) == 2, text
