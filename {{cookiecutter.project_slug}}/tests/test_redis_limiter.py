"""Rate limiting against a real Redis, shared by every worker, with a memory fallback."""

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from redis.asyncio import Redis

from app.core.config import Settings
from app.core.rate_limit import REDIS_RETRY_SECONDS
from app.main import create_app
from tests.helpers import PASSWORD, TEST_REDIS_URL, Clock, free_port, make_settings

pytestmark = pytest.mark.skipif(
    not TEST_REDIS_URL, reason="set TEST_REDIS_URL=redis://host:port/db to test against Redis"
)
LOGIN = {"email": "x@example.com", "password": PASSWORD}


def client_for(app: FastAPI) -> AsyncClient:
    return AsyncClient(transport=ASGITransport(app=app), base_url="https://testserver")


class TestSharedRedis:
    @pytest.fixture
    def settings(self) -> Settings:
        return make_settings(redis_url=TEST_REDIS_URL, rate_limit_login_ip="4/minute")

    async def test_two_workers_enforce_one_global_limit(
        self, app: FastAPI, settings: Settings
    ) -> None:
        other_worker = create_app(settings)
        async with client_for(app) as first, client_for(other_worker) as second:
            codes = []
            for http in (first, second, first, second, first, second):
                codes.append((await http.post("/api/v1/auth/login", json=LOGIN)).status_code)
        assert codes == [401, 401, 401, 401, 429, 429]

    async def test_ready_reports_redis(self, client: AsyncClient) -> None:
        response = await client.get("/health/ready")
        assert response.status_code == 200
        assert response.json()["redis"] == "ok"


class TestRedisDown:
    @pytest.fixture
    def settings(self) -> Settings:
        return make_settings(
            redis_url=f"redis://127.0.0.1:{free_port()}/0", rate_limit_login_ip="2/minute"
        )

    async def test_limits_fall_back_to_memory_without_errors(
        self, client: AsyncClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        codes = [
            (await client.post("/api/v1/auth/login", json=LOGIN)).status_code for _ in range(3)
        ]
        assert codes == [401, 401, 429]
        assert "counting in memory" in caplog.text

    async def test_ready_stays_up_and_says_why(self, client: AsyncClient) -> None:
        response = await client.get("/health/ready")
        assert response.status_code == 200
        assert response.json()["redis"].startswith("unavailable")


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[str, Callable[[], None], Callable[[], None]]]:
    """A redis-server this test can stop and start again (Redis outage drills)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed; the outage drill needs its own server")
    port = free_port()

    def start() -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [binary, "--port", str(port), "--save", "", "--appendonly", "no", "--dir", tmp_path],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        for line in process.stdout:  # ends when the server exits
            if "Ready to accept connections" in line:
                return process
        raise RuntimeError("redis-server did not start")

    server = {"process": start()}

    def stop() -> None:
        server["process"].terminate()
        server["process"].communicate(timeout=10)

    def restart() -> None:
        server["process"] = start()

    yield f"redis://127.0.0.1:{port}/0", stop, restart
    stop()


async def test_redis_outage_and_recovery(
    own_redis: tuple[str, Callable[[], None], Callable[[], None]], clock: Clock
) -> None:
    url, stop, restart = own_redis
    app = create_app(make_settings(redis_url=url, rate_limit_login_ip="3/minute"))
    async with client_for(app) as http:

        async def attempt() -> int:
            return (await http.post("/api/v1/auth/login", json=LOGIN)).status_code

        assert await attempt() == 401
        stop()
        during = [await attempt() for _ in range(4)]
        assert during == [401, 401, 401, 429]  # counted in memory meanwhile, never a 5xx

        restart()
        clock.advance(REDIS_RETRY_SECONDS)
        assert await attempt() == 401  # Redis is back: its (fresh) counter is used again
        redis = Redis.from_url(url)
        assert await redis.keys("*")
        await redis.aclose()
