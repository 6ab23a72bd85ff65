"""GET /metrics: off by default, behind its bearer token, counting what the operators watch,
with labels no client can multiply."""

import secrets
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from app.core.config import Settings, settings_problems
from app.core.metrics import UNMATCHED
from app.main import create_app
from app.models import User
from tests.helpers import (
    ALICE,
    PASSWORD,
    PROJECT,
    Clock,
    api_tokens,
    import_app,
    make_settings,
    refresh,
    subprocess_environment,
)
from tests.test_outbox import Failing

TOKEN = secrets.token_urlsafe(32)
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DURATION = "http_request_duration_seconds"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def settings() -> Settings:
    return make_settings(metrics_enabled=True, metrics_token=TOKEN)


async def scrape(client: AsyncClient) -> Samples:
    response = await client.get("/metrics", headers=AUTH)
    assert response.status_code == 200, response.text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def series(samples: Samples) -> set[frozenset[tuple[str, str]]]:
    return {labels for name, labels in samples if name == f"{DURATION}_count"}


def label_values(samples: Samples, label: str) -> set[str]:
    return {
        dict(labels)[label]
        for (name, labels) in samples
        if name == f"{DURATION}_count" and label in dict(labels)
    }


# --- settings -------------------------------------------------------------------------------------
def test_metrics_are_off_by_default() -> None:
    assert make_settings().metrics_enabled is False


@pytest.mark.parametrize(
    ("token", "problem"),
    [(None, "METRICS_TOKEN is not set"), ("short", "METRICS_TOKEN must be at least 32 bytes")],
)
def test_metrics_without_a_strong_token_are_refused_in_one_line(
    token: str | None, problem: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        make_settings(metrics_enabled=True, metrics_token=token)
    [line] = settings_problems(caught.value)
    assert line.startswith(problem)
    assert "short" not in line


def test_the_service_refuses_to_start_with_metrics_and_no_token(tmp_path: Path) -> None:
    result = import_app(tmp_path, subprocess_environment(METRICS_ENABLED="true", METRICS_TOKEN=""))
    assert result.returncode == 4, result.stderr
    assert result.stderr.count("Configuration error:") == 1, result.stderr
    assert "Configuration error: METRICS_TOKEN is not set" in result.stderr


# --- the route ------------------------------------------------------------------------------------
async def test_metrics_disabled_is_a_404_even_with_the_token() -> None:
    app = create_app(make_settings(metrics_token=TOKEN))
    assert "/metrics" not in {getattr(route, "path", None) for route in app.routes}
    async with (
        LifespanManager(app),
        AsyncClient(transport=ASGITransport(app=app), base_url="https://testserver") as http,
    ):
        assert (await http.get("/metrics", headers=AUTH)).status_code == 404
        assert (await http.get("/metrics")).status_code == 404


@pytest.mark.parametrize(
    "authorization",
    [None, "", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", f"Basic {TOKEN}", TOKEN, "Bearer "],
    ids=["none", "empty", "longer", "shorter", "basic", "no-scheme", "bearer-nothing"],
)
async def test_metrics_need_the_right_token(client: AsyncClient, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = await client.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "auth_logins" not in response.text


async def test_metrics_are_the_prometheus_text_format(client: AsyncClient) -> None:
    response = await client.get("/metrics", headers={"Authorization": f"bearer  {TOKEN}"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    names = {family.name for family in text_string_to_metric_families(response.text)}
    assert {
        "auth_logins",
        "auth_refreshes",
        "auth_refresh_reuse_detected",
        "rate_limit_hits",
        "emails_queued",
        "emails_sent",
        "emails_failed",
        "purge_runs",
        DURATION,
    } <= names


async def test_metrics_are_not_part_of_the_api(client: AsyncClient, app: FastAPI) -> None:
    assert (await client.get("/api/v1/metrics", headers=AUTH)).status_code == 404
    schema = (await client.get("/openapi.json")).json()
    assert not any("metrics" in path for path in schema["paths"])


# --- counters -------------------------------------------------------------------------------------
async def test_logins_are_counted_by_result(client: AsyncClient, alice: User) -> None:
    before = await scrape(client)
    wrong = {"email": ALICE, "password": "not the password at all"}
    assert (await client.post("/api/v1/auth/login", json=wrong)).status_code == 401
    right = {"email": ALICE, "password": PASSWORD}
    assert (await client.post("/api/v1/auth/login", json=right)).status_code == 200
    after = await scrape(client)

    def moved(result: str) -> float:
        name = "auth_logins_total"
        return value(after, name, result=result) - value(before, name, result=result)

    assert (moved("failure"), moved("success"), moved("limited")) == (1, 1, 0)


async def test_a_429_counts_as_a_limit_hit_and_a_limited_login(
    app: FastAPI, client: AsyncClient
) -> None:
    before = await scrape(client)
    limit = app.state.context.limits.login_ip.item.amount
    codes = [
        (
            await client.post(
                "/api/v1/auth/login",
                json={"email": f"nobody{n}@example.com", "password": "wrong password, again"},
            )
        ).status_code
        for n in range(limit + 1)
    ]
    after = await scrape(client)
    assert codes[-1] == 429
    hits = value(after, "rate_limit_hits_total", limit="login-ip") - value(
        before, "rate_limit_hits_total", limit="login-ip"
    )
    limited = value(after, "auth_logins_total", result="limited") - value(
        before, "auth_logins_total", result="limited"
    )
    assert (hits, limited) == (1, 1)


async def test_refreshes_and_reuse_detections_are_counted(
    client: AsyncClient, alice: User, settings: Settings, clock: Clock
) -> None:
    tokens = await api_tokens(client)
    before = await scrape(client)
    assert (await refresh(client, tokens["refresh_token"])).status_code == 200
    clock.advance(settings.refresh_grace_seconds + 1)
    assert (await refresh(client, tokens["refresh_token"])).status_code == 401
    after = await scrape(client)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("auth_refreshes_total", result="rotated") == 1
    assert moved("auth_refreshes_total", result="reused") == 1
    assert moved("auth_refresh_reuse_detected_total") == 1


async def test_emails_are_counted_queued_and_sent(
    app: FastAPI, client: AsyncClient, alice: User
) -> None:
    before = await scrape(client)
    forgot = await client.post("/api/v1/auth/password/forgot", json={"email": ALICE})
    assert forgot.status_code == 202
    await app.state.context.mailer.wait_idle()
    after = await scrape(client)
    for name in ("emails_queued_total", "emails_sent_total"):
        assert value(after, name) - value(before, name) == 1, name
    assert value(after, "emails_failed_total") == value(before, "emails_failed_total")


class TestMailThatCannotBeSent:
    @pytest.fixture
    def settings(self) -> Settings:
        """One attempt allowed: a failed message is dead at once."""
        return make_settings(metrics_enabled=True, metrics_token=TOKEN, mail_max_attempts=1)

    async def test_failed_attempts_and_dead_letters_are_counted(
        self, app: FastAPI, client: AsyncClient, alice: User
    ) -> None:
        app.state.context.mailer.backend = Failing()
        before = await scrape(client)
        forgot = await client.post("/api/v1/auth/password/forgot", json={"email": ALICE})
        assert forgot.status_code == 202
        await app.state.context.mailer.wait_idle()
        after = await scrape(client)
        deltas = {
            name: value(after, name) - value(before, name)
            for name in ("emails_queued_total", "emails_failed_total", "emails_dead_total")
        }
        assert deltas == dict.fromkeys(deltas, 1)
        assert value(after, "emails_sent_total") == value(before, "emails_sent_total")


# --- the latency histogram ------------------------------------------------------------------------
async def test_requests_are_timed_by_route_template(client: AsyncClient, alice: User) -> None:
    session_id = uuid.uuid4()
    response = await client.delete(f"/api/v1/auth/sessions/{session_id}")
    assert response.status_code == 401
    samples = await scrape(client)
    template = "/api/v1/auth/sessions/{session_id}"
    count = value(samples, f"{DURATION}_count", route=template, method="DELETE", status="4xx")
    assert count == 1
    assert not any(str(session_id) in dict(labels).get("route", "") for _, labels in samples)


async def test_a_flood_of_paths_and_methods_makes_no_new_series(client: AsyncClient) -> None:
    await client.get("/health/live")
    await client.get("/no/such/path")
    before = await scrape(client)
    for n in range(40):
        await client.get(f"/{uuid.uuid4()}/{n}")
        await client.request("BREW", f"/api/v1/users/{uuid.uuid4()}")
        await client.request(f"X{n}", "/health/live")
    after = await scrape(client)
    assert label_values(after, "route") == label_values(before, "route") | {UNMATCHED}
    assert label_values(after, "method") - label_values(before, "method") <= {"other"}
    # At most (unmatched, other, 4xx) and (/health/live, other, 4xx): a 405 has its route.
    assert len(series(after) - series(before)) <= 2


# --- several worker processes ---------------------------------------------------------------------
COUNT_IN_A_WORKER = """
from app.core import metrics
for _ in range({n}):
    metrics.count_login("failure")
"""
PRINT_EXPOSITION = """
from app.core import metrics
print(metrics.exposition().decode())
"""


def test_workers_counts_add_up_with_a_multiprocess_dir(tmp_path: Path) -> None:
    """What gunicorn's workers do under scripts/start.sh: each counts in its own process,
    and whichever answers /metrics reports the sum."""
    env = {**subprocess_environment(), "PYTHONPATH": str(PROJECT)}
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path)

    def python(code: str) -> str:
        result = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    python(COUNT_IN_A_WORKER.format(n=3))
    python(COUNT_IN_A_WORKER.format(n=4))
    families = text_string_to_metric_families(python(PRINT_EXPOSITION))
    samples = {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in families
        for sample in family.samples
    }
    assert value(samples, "auth_logins_total", result="failure") == 7
