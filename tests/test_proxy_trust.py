"""Proxy trust end to end (SPEC section 11): both real server commands, a loopback peer.

A local process can send any `X-Forwarded-For` it likes. Only the app decides whether to
believe it (when the peer is in `TRUSTED_PROXIES`), so neither `make run`'s uvicorn nor
`scripts/start.sh`'s gunicorn may rewrite the peer first, and neither may name itself in
`Server`.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from benchmarks.infra import BIN_DIR, Variant
from benchmarks.procs import free_port
from support import stop_group, variant_params, wait_until_ready
from test_reliability import ADMIN, PASSWORD, prepare, service_env

VARIANTS = [
    *variant_params(database="sqlite", rate_limiter="memory", use_docker="no"),
    *variant_params(database="postgresql", rate_limiter="redis", use_docker="no"),
]
SERVERS = ("make-run", "start.sh")
WORKERS = {"make-run": 1, "start.sh": 2}
LOGIN_LIMIT = 3
LOOPBACK = "127.0.0.1"
# What a local attacker writes into X-Forwarded-For: addresses to rotate, and junk that must
# never reach a 45-character column.
FORGED = (
    "203.0.113.7",
    "2001:db8::7",
    "::ffff:203.0.113.9",
    "hello-not-an-ip",
    "1" * 200,
    "fe80::1%" + "a" * 200,
    "203.0.113.8, 198.51.100.8",
    "",
)


@contextmanager
def running(kind: str, project: Path, env: dict[str, str], log: Path) -> Iterator[str]:
    """The real command: `make run` (with this interpreter's tools) or scripts/start.sh."""
    port = free_port()
    if kind == "make-run":
        # uvicorn reads its options from UVICORN_* too; the Makefile's own flags still apply.
        args = ["make", "run", f"BIN={BIN_DIR}/"]
        env = {**env, "UVICORN_PORT": str(port)}
    else:
        args = [str(project / "scripts" / "start.sh")]
        env = {**env, "PORT": str(port), "WEB_CONCURRENCY": str(WORKERS[kind])}
    with log.open("w") as output:
        process = subprocess.Popen(
            args, cwd=project, env=env, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    base = f"http://{LOOPBACK}:{port}"
    try:
        wait_until_ready(f"{base}/health/live", process, log, timeout=90)
        yield base
    finally:
        stop_group(process)


def sign_in(http: httpx.Client, headers: dict[str, str]) -> httpx.Response:
    return http.post(
        "/api/v1/auth/token", data={"username": ADMIN, "password": PASSWORD}, headers=headers
    )


def session_ip(http: httpx.Client, token: httpx.Response) -> str | None:
    auth = {"Authorization": f"Bearer {token.json()['access_token']}"}
    sessions = http.get("/api/v1/auth/sessions", headers=auth)
    assert sessions.status_code == 200, sessions.text
    return next(s["ip_address"] for s in sessions.json() if s["current"])


def stored_ips(database_url: str) -> set[str]:
    """Every address the service wrote: sessions (first and last) and audit events."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    async def read() -> set[str]:
        engine = create_async_engine(database_url)
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(
                    text(
                        'SELECT ip_address FROM "session" UNION SELECT last_ip_address FROM '
                        '"session" UNION SELECT ip_address FROM audit_event'
                    )
                )
                return {ip for (ip,) in rows if ip is not None}
        finally:
            await engine.dispose()

    return asyncio.run(read())


def server_names(responses: list[httpx.Response]) -> set[str]:
    return {r.headers["server"] for r in responses if "server" in r.headers}


@pytest.mark.parametrize("kind", SERVERS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_forwarded_for_from_a_loopback_peer_changes_nothing_without_trusted_proxies(
    project: Path, variant: Variant, kind: str, fresh_database, redis_url, tmp_path: Path
) -> None:
    database_url = fresh_database(f"untrusted_{kind}")
    env = service_env(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url or "",
        TRUSTED_PROXIES="",
        RATE_LIMIT_LOGIN_IP=f"{LOGIN_LIMIT}/minute",
    )
    prepare(project, env)
    with (
        running(kind, project, env, tmp_path / "server.log") as base,
        httpx.Client(base_url=base) as http,
    ):
        token = sign_in(http, {"X-Forwarded-For": "203.0.113.7"})
        assert token.status_code == 200, token.text
        signed_in_from = session_ip(http, token)
        # Each guess from "another address": distinct emails, so only the per-IP limit applies.
        guesses = [
            http.post(
                "/api/v1/auth/login",
                json={"email": f"nobody{n}@example.com", "password": "wrong password, again"},
                headers={"X-Forwarded-For": FORGED[n % len(FORGED)]},
            )
            for n in range(12)
        ]
    log = (tmp_path / "server.log").read_text()
    codes = [r.status_code for r in guesses]
    assert signed_in_from == LOOPBACK
    assert all(code in (401, 429) for code in codes), f"{codes}\n{log}"
    # In-memory counters are per worker; Redis counts once for every worker.
    allowed = LOGIN_LIMIT * (WORKERS[kind] if variant.rate_limiter == "memory" else 1)
    assert codes.count(401) <= allowed - 1, codes  # the sign-in took one attempt
    assert stored_ips(database_url) == {LOOPBACK}
    assert server_names([token, *guesses]) == set()


@pytest.mark.parametrize("kind", SERVERS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_a_trusted_proxy_forwards_only_addresses_that_parse(
    project: Path, variant: Variant, kind: str, fresh_database, redis_url, tmp_path: Path
) -> None:
    database_url = fresh_database(f"trusted_{kind}")
    env = service_env(
        DATABASE_URL=database_url, REDIS_URL=redis_url or "", TRUSTED_PROXIES=LOOPBACK
    )
    prepare(project, env)
    cases = {
        "203.0.113.7": "203.0.113.7",
        "198.51.100.9, 127.0.0.1": "198.51.100.9",  # our own trusted hop is skipped
        "::ffff:203.0.113.8": "203.0.113.8",  # IPv4-mapped: one address, one form
        "2001:DB8:0:0::9": "2001:db8::9",
        "hello-not-an-ip": LOOPBACK,
        "1" * 200: LOOPBACK,
        "fe80::1%" + "a" * 200: LOOPBACK,
        "203.0.113.7:443": LOOPBACK,
    }
    seen: dict[str, str | None] = {}
    responses: list[httpx.Response] = []
    with (
        running(kind, project, env, tmp_path / "server.log") as base,
        httpx.Client(base_url=base) as http,
    ):
        for forwarded in cases:
            token = sign_in(http, {"X-Forwarded-For": forwarded})
            responses.append(token)
            assert token.status_code == 200, f"{forwarded[:40]!r}: {token.status_code} {token.text}"
            seen[forwarded] = session_ip(http, token)
        other_headers = sign_in(
            http, {"X-Real-IP": "203.0.113.50", "Forwarded": "for=203.0.113.51"}
        )
        responses.append(other_headers)
        seen["X-Real-IP / Forwarded"] = session_ip(http, other_headers)
    assert seen == {**cases, "X-Real-IP / Forwarded": LOOPBACK}
    assert all(len(ip) <= 45 for ip in stored_ips(database_url))
    assert server_names(responses) == set()
