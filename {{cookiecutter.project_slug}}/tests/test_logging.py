"""Log lines: JSON objects (production) or readable lines, each with the request id that the
response names in X-Request-ID; an incoming id is kept only from a trusted proxy."""

import asyncio
import contextvars
import io
import json
import logging
import re
from collections.abc import AsyncIterator, Iterator, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from app.core.config import Settings
from app.core.logging import OWN_LOGGERS, OwnHandler, Renderer, formatter
from app.main import create_app
from app.models import User
from app.services.email import ConsoleBackend
from tests.helpers import ALICE, BROWSER, make_settings

GENERATED = re.compile(r"[0-9a-f]{32}")
PROXY = "10.0.0.5"
OUTSIDER = "203.0.113.9"
LOG = logging.getLogger("app.tests")
HOSTILE = {
    "newline": b"abc\nFAKE level=error forged line",
    "carriage return": b"abc\rFAKE",
    "NUL": b"abc\x00FAKE",
    "10 KB": b"A" * 10240,
    "129 characters": b"B" * 129,
    "spaces": b"abc FAKE",
    "quote": b'abc"FAKE',
    "non-ASCII": "abcÉFAKE".encode(),
    "empty": b"",
}


@pytest.fixture
def settings() -> Settings:
    return make_settings(log_format="json", log_level="DEBUG", trusted_proxies=[PROXY])


def add_test_routes(app: FastAPI) -> None:
    @app.get("/test/log")
    async def write_a_line() -> dict[str, str]:
        LOG.info("hello from a request")
        return {}

    @app.get("/test/fail")
    async def fail() -> None:
        raise RuntimeError("boom")


@pytest.fixture
def output(app: FastAPI) -> Iterator[io.StringIO]:
    """What the app's log handler writes (a server's stderr); the app has two test routes."""
    add_test_routes(app)
    buffer = io.StringIO()
    handlers = [
        handler
        for name in OWN_LOGGERS
        for handler in logging.getLogger(name).handlers
        if isinstance(handler, OwnHandler)
    ]
    assert handlers
    streams = [handler.setStream(buffer) for handler in handlers]
    yield buffer
    for handler, stream in zip(handlers, streams, strict=True):
        if stream is not None:
            handler.setStream(stream)


def parsed(output: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.getvalue().splitlines()]


@asynccontextmanager
async def client_at(app: FastAPI, peer: str) -> AsyncIterator[AsyncClient]:
    transport = ASGITransport(app=app, client=(peer, 40000), raise_app_exceptions=False)
    async with AsyncClient(
        transport=transport, base_url="https://testserver", headers={"User-Agent": BROWSER}
    ) as http:
        yield http


async def raw_get(app: FastAPI, peer: str, path: str, request_id: bytes) -> dict[bytes, bytes]:
    """A request with a header value no HTTP client library would send: its response headers."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "https",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), (b"x-request-id", request_id)],
        "client": (peer, 40000),
        "server": ("testserver", 443),
    }
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        messages.append(dict(message))

    await app(scope, receive, send)
    assert messages[0]["status"] == 200
    return dict(messages[0]["headers"])


# --- the lines ------------------------------------------------------------------------------------
async def test_each_line_is_a_json_object_with_the_request_id(
    client: AsyncClient, output: io.StringIO
) -> None:
    response = await client.get("/test/log")
    request_id = response.headers["X-Request-ID"]
    assert GENERATED.fullmatch(request_id)
    [line] = [line for line in parsed(output) if line.get("message") == "hello from a request"]
    assert line["request_id"] == request_id
    assert line["level"] == "info"
    assert line["logger"] == "app.tests"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", line["timestamp"])


async def test_every_request_gets_its_own_id(client: AsyncClient) -> None:
    ids = {(await client.get("/health/live")).headers["X-Request-ID"] for _ in range(5)}
    assert len(ids) == 5


async def test_a_line_outside_any_request_has_no_request_id(output: io.StringIO) -> None:
    async def outside() -> None:
        LOG.warning("nothing to do with a request")

    await asyncio.create_task(outside(), context=contextvars.Context())
    [line] = parsed(output)
    assert "request_id" not in line
    assert line["message"] == "nothing to do with a request"


async def test_work_after_the_response_logs_with_the_id_of_its_request(
    app: FastAPI, client: AsyncClient, alice: User, output: io.StringIO
) -> None:
    """The reset email goes out after the response (app/services/deferred.py); the console
    backend logs it. Its line belongs to the request that caused it, not to the next one."""
    mailer = app.state.context.mailer
    mailer.backend = ConsoleBackend(show_body=False)
    forgot = await client.post("/api/v1/auth/password/forgot", json={"email": ALICE})
    assert forgot.status_code == 202
    later = await client.get("/test/log")
    await mailer.wait_idle()
    [email] = [line for line in parsed(output) if line["message"].startswith("Email to")]
    assert email["request_id"] == forgot.headers["X-Request-ID"]
    assert email["request_id"] != later.headers["X-Request-ID"]


async def test_an_unhandled_error_has_the_id_in_its_line_and_its_response(
    app: FastAPI, output: io.StringIO
) -> None:
    async with client_at(app, OUTSIDER) as http:
        response = await http.get("/test/fail")
    assert response.status_code == 500
    request_id = response.headers["X-Request-ID"]
    [line] = [line for line in parsed(output) if line["level"] == "error"]
    assert line["request_id"] == request_id
    assert "RuntimeError" in line["exception"]


async def test_the_console_format_is_one_readable_line() -> None:
    app = create_app(make_settings(log_format="console", log_level="INFO"))
    add_test_routes(app)
    handler = next(h for h in logging.getLogger("app").handlers if isinstance(h, OwnHandler))
    buffer = io.StringIO()
    stream = handler.setStream(buffer)
    try:
        async with LifespanManager(app), client_at(app, OUTSIDER) as http:
            response = await http.get("/test/log")
    finally:
        if stream is not None:
            handler.setStream(stream)
    [line] = buffer.getvalue().splitlines()
    assert "hello from a request" in line
    assert f"request_id={response.headers['X-Request-ID']}" in line
    assert not line.startswith("{")


@pytest.mark.parametrize(
    ("environment", "renderer"), [("production", "json"), ("development", "console")]
)
def test_json_is_the_production_default(environment: str, renderer: str) -> None:
    production = {"smtp_host": "smtp.example.com", "frontend_url": "https://app.example.com"}
    settings = make_settings(environment=environment, **production)
    assert settings.log_renderer == renderer
    assert make_settings(log_format="console", environment="test").log_renderer == "console"


@pytest.mark.parametrize("renderer", ["json", "console"])
def test_an_access_line_has_no_query_string_and_no_control_characters(
    renderer: Renderer,
) -> None:
    """Uvicorn's access record (its logger under gunicorn too) rendered by our formatter."""
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/api/v1/x\nFAKE line?token=s3cr3t-in-a-url", "1.1", 404),
        None,
    )
    text = formatter(renderer).format(record)
    assert "s3cr3t-in-a-url" not in text
    assert "\n" not in text
    if renderer == "json":
        line = json.loads(text)
        assert line["path"] == "/api/v1/x\\x0aFAKE line"
        assert (line["method"], line["status"]) == ("GET", 404)


# --- the incoming X-Request-ID --------------------------------------------------------------------
async def test_a_trusted_proxy_passes_its_request_id_on(app: FastAPI, output: io.StringIO) -> None:
    async with client_at(app, PROXY) as http:
        response = await http.get(
            "/test/log", headers={"X-Request-ID": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"}
        )
    assert response.headers["X-Request-ID"] == "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
    [line] = parsed(output)
    assert line["request_id"] == "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"


@pytest.mark.parametrize("peer", [OUTSIDER, "127.0.0.1"])
async def test_anyone_else_gets_an_id_of_ours(app: FastAPI, output: io.StringIO, peer: str) -> None:
    async with client_at(app, peer) as http:
        response = await http.get("/test/log", headers={"X-Request-ID": "forged-id-1234"})
    assert GENERATED.fullmatch(response.headers["X-Request-ID"])
    assert "forged-id-1234" not in output.getvalue()
    assert parsed(output)[0]["request_id"] == response.headers["X-Request-ID"]


@pytest.mark.parametrize("peer", [PROXY, OUTSIDER])
@pytest.mark.parametrize("value", HOSTILE.values(), ids=HOSTILE.keys())
async def test_a_malformed_request_id_is_replaced(
    app: FastAPI, output: io.StringIO, peer: str, value: bytes
) -> None:
    headers = await raw_get(app, peer, "/test/log", value)
    request_id = headers[b"x-request-id"].decode()
    assert GENERATED.fullmatch(request_id)
    text = output.getvalue()
    assert "FAKE" not in text
    assert "A" * 100 not in text and "B" * 100 not in text
    lines = parsed(output)  # every line still one JSON object
    assert "hello from a request" in {line["message"] for line in lines}
    # A trusted proxy's malformed id is also warned about, before the request has its id.
    assert {line.get("request_id", request_id) for line in lines} == {request_id}
