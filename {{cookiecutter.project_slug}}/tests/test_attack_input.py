"""Attacks on input bounds (SPEC §11): oversized bodies, malformed Unicode, echoed passwords,
out-of-range pagination, unnormalised and predictable passwords.

The walkers read the app's own OpenAPI schema, so a route or field added later is attacked too.
"""

import asyncio
import json
import logging
import unicodedata
import uuid
from collections.abc import AsyncIterator
from typing import Any, NamedTuple

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient, Response
from starlette.types import Message, Receive, Scope, Send

from app.core.config import Settings
from app.core.passwords import password_problem
from app.models import User
from tests.authenticator import SoftAuthenticator, b64url
from tests.helpers import (
    BROWSER,
    PASSWORD,
    Outbox,
    api_tokens,
    bearer,
    count_calls,
    create_user,
    link_token,
    login,
    make_settings,
)
from tests.test_admin import grant_role

# A password that must never come back in a response or appear in a log.
SECRET = "tangerine-otter-kettle-9413"
MARKER = "ATTACK-MARKER"
# Raw JSON text, spliced into the body: json.dumps would write a lone surrogate the same way.
ATTACKS = {
    "lone-surrogate": '"\\ud800"',
    "lone-surrogate-inside": '"abc\\udfffdef@example.com"',
    "nul": '"abc\\u0000def"',
    "long": json.dumps("x" * 10_000),
    "huge-integer": str(2**64),
}
OUT_OF_RANGE = ["-1", str(2**63), str(10**30), "abc", "1e3", ""]
MIB = 1024 * 1024
# The routes of second factors and passkeys (SPEC §8), whose bodies are checked closer below.
SECOND_STEP_PATHS = ("/api/v1/auth/mfa", "/api/v1/auth/passkeys", "/api/v1/auth/reauthenticate")


def no_limits() -> Settings:
    return make_settings(rate_limit_enabled=False)


def resolve(schema: dict[str, Any], openapi: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = openapi["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def alternatives(schema: dict[str, Any], openapi: dict[str, Any]) -> list[dict[str, Any]]:
    """Every concrete schema a value may follow (anyOf/oneOf/allOf flattened)."""
    schema = resolve(schema, openapi)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return [alt for sub in schema[key] for alt in alternatives(sub, openapi)]
    return [schema]


def sample(name: str, schema: dict[str, Any], openapi: dict[str, Any]) -> object:
    """A plausible valid value, so that only the attacked field is wrong."""
    kinds = alternatives(schema, openapi)
    for kind in kinds:
        if "const" in kind:
            return kind["const"]
        if kind.get("enum"):
            return kind["enum"][0]
    types = {kind.get("type") for kind in kinds}
    if "object" in types:
        model = next(kind for kind in kinds if kind.get("type") == "object")
        return required_sample(model, openapi)
    if "string" in types:
        if any(kind.get("format") == "email" for kind in kinds) or name == "email":
            return "alice@example.com"
        return SECRET if "password" in name else "placeholder"
    if "boolean" in types:
        return True
    if "array" in types:
        return []
    if "integer" in types:
        return 1
    return None


def required_sample(model: dict[str, Any], openapi: dict[str, Any]) -> dict[str, object]:
    """An object of the model's required fields only: optional ones may exclude each other
    (`/auth/reauthenticate` takes a password or a code, not both)."""
    required = model.get("required", [])
    return {
        name: sample(name, prop, openapi)
        for name, prop in model.get("properties", {}).items()
        if name in required
    }


def admits_long(schema: dict[str, Any], openapi: dict[str, Any]) -> bool:
    """A field that takes 10,000 plain letters (a passkey's base64url data): the "long" attack
    is then not a schema violation, reaches the service, and must still be a 4xx."""
    return any(
        kind.get("type") == "string" and kind.get("maxLength", 0) >= 10_000
        for kind in alternatives(schema, openapi)
    )


class Field(NamedTuple):
    """One field of a JSON body, attacked: the body holds MARKER in its place."""

    body: dict[str, object]
    name: str  # dotted: credential.response.signature
    admits_long: bool
    valid: object  # a well-formed value for MARKER's place (an item, in a list)


def attacked_fields(
    model: dict[str, Any], openapi: dict[str, Any], prefix: str = ""
) -> list[Field]:
    """Every field of the model, nested objects included (a passkey credential's
    `response.signature`), each in a body of otherwise well-formed required fields."""
    fields = []
    for name, prop in model.get("properties", {}).items():
        base = required_sample(model, openapi)
        string, listed = is_string_field(prop, openapi)
        objects = [kind for kind in alternatives(prop, openapi) if kind.get("properties")]
        if objects:
            fields += [
                inner._replace(body={**base, name: inner.body})
                for inner in attacked_fields(objects[0], openapi, f"{prefix}{name}.")
            ]
        value: object = [MARKER] if listed and not string else MARKER
        valid = "placeholder" if listed and not string else sample(name, prop, openapi)
        fields.append(
            Field({**base, name: value}, prefix + name, admits_long(prop, openapi), valid)
        )
    return fields


def is_string_field(schema: dict[str, Any], openapi: dict[str, Any]) -> tuple[bool, bool]:
    """(takes a string, takes a list of strings)."""
    kinds = alternatives(schema, openapi)
    string = any(kind.get("type") == "string" for kind in kinds)
    listed = any(
        kind.get("type") == "array"
        and any(item.get("type") == "string" for item in alternatives(kind["items"], openapi))
        for kind in kinds
        if "items" in kind
    )
    return string, listed


def json_body_cases(app: FastAPI) -> list[tuple[str, str, str, Field]]:
    """(method, path, body with MARKER for one field, that field) for every field of every
    JSON route."""
    openapi = app.openapi()
    cases = []
    for path, operations in openapi["paths"].items():
        for method, operation in operations.items():
            content = operation.get("requestBody", {}).get("content", {})
            if "application/json" not in content:
                continue
            model = next(
                kind
                for kind in alternatives(content["application/json"]["schema"], openapi)
                if kind.get("type") == "object"
            )
            for field in attacked_fields(model, openapi):
                cases.append((method.upper(), path, json.dumps(field.body), field))
    assert len({case[1] for case in cases}) >= 10, "the walker found too few JSON routes"
    return cases


def concrete_path(path: str) -> str:
    """Path parameters are UUIDs in this API; any well-formed one reaches validation."""
    parts = path.split("/")
    return "/".join(str(uuid.uuid4()) if part.startswith("{") else part for part in parts)


async def bearer_admin(app: FastAPI, client: AsyncClient) -> dict[str, str]:
    """An admin holding every permission, authenticating with a bearer token (no CSRF)."""
    root = await create_user(app, "root@example.com")
    await grant_role(app, root, "admin")
    return bearer((await api_tokens(client, "root@example.com"))["access_token"])


def assert_refused_quietly(response: Response, *extra_secrets: str) -> None:
    """A 4xx with a detail; nothing the caller sent as a password comes back."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    assert "detail" in response.json()
    for secret in (SECRET, *extra_secrets):
        assert secret not in response.text


# --- malformed and oversized values in every field -----------------------------------------


class TestEveryJsonField:
    @pytest.fixture
    def settings(self) -> Settings:
        return no_limits()

    @pytest.mark.parametrize("attack", ATTACKS)
    async def test_every_string_field_refuses_malformed_or_oversized_values_with_422(
        self, app: FastAPI, client: AsyncClient, attack: str
    ) -> None:
        headers = await bearer_admin(app, client)
        failures = []
        for method, path, body, field in json_body_cases(app):
            content = body.replace(json.dumps(MARKER), ATTACKS[attack])
            response = await client.request(
                method,
                concrete_path(path),
                content=content.encode(),
                headers={**headers, "Content-Type": "application/json"},
            )
            refused = response.status_code == 422
            if attack == "long" and field.admits_long:  # within bounds: the service judges
                refused = 400 <= response.status_code < 500
            if not refused or SECRET in response.text or "x" * 100 in response.text:
                failures.append(
                    (method, path, field.name, response.status_code, response.text[:120])
                )
                continue
            payload = response.json()
            assert "detail" in payload and "code" in payload, (path, field.name)
            assert payload["code"] == "validation_failed" or response.status_code != 422
        assert failures == []

    async def test_the_walker_attacks_nested_fields_of_the_passkey_routes(
        self, app: FastAPI
    ) -> None:
        fields = {(path, field.name) for _, path, _, field in json_body_cases(app)}
        for path in ("/api/v1/auth/passkeys/login", "/api/v1/auth/passkeys/register"):
            for field in (
                "credential",
                "credential.rawId",
                "credential.response.signature",
                "credential.response.transports",
                "credential.clientExtensionResults",
            ):
                assert (path, field) in fields, (path, field)
        assert ("/api/v1/auth/mfa/verify", "code") in fields
        assert ("/api/v1/auth/reauthenticate", "password") in fields

    async def test_the_unattacked_bodies_pass_validation_and_reach_the_service(
        self, app: FastAPI, client: AsyncClient
    ) -> None:
        """So each 422 above is the attacked field's: the same body without the attack is
        well-formed (the service may still refuse what it says, with a 4xx and a code)."""
        headers = await bearer_admin(app, client)
        failures = []
        for method, path, body, field in json_body_cases(app):
            if not path.startswith(SECOND_STEP_PATHS):
                continue
            response = await client.request(
                method,
                concrete_path(path),
                content=body.replace(json.dumps(MARKER), json.dumps(field.valid)).encode(),
                headers={**headers, "Content-Type": "application/json"},
            )
            payload = response.json() if response.content else {}
            if response.status_code == 422 or response.status_code >= 500:
                failures.append((method, path, field.name, response.text[:160]))
            elif response.status_code >= 400:
                assert "detail" in payload and "code" in payload, (path, field.name)
        assert failures == []

    async def test_the_service_still_works_after_the_walk(
        self, app: FastAPI, client: AsyncClient
    ) -> None:
        headers = await bearer_admin(app, client)
        for method, path, body, _field in json_body_cases(app):
            content = body.replace(json.dumps(MARKER), ATTACKS["lone-surrogate"])
            await client.request(
                method,
                concrete_path(path),
                content=content.encode(),
                headers={**headers, "Content-Type": "application/json"},
            )
        assert (await client.get("/api/v1/users/me", headers=headers)).status_code == 200


# A body that is not the object a route reads.
WRONG_BODIES = {
    "list": "[]",
    "string": '"code"',
    "huge-integer": str(2**64),
    "null": "null",
    "lone-surrogate": '"\\ud800"',
}


@pytest.mark.parametrize("body", WRONG_BODIES.values(), ids=WRONG_BODIES)
async def test_a_body_of_the_wrong_type_is_a_422_on_every_json_route(
    app: FastAPI, client: AsyncClient, body: str
) -> None:
    headers = await bearer_admin(app, client)
    failures = []
    for method, path in sorted({(method, path) for method, path, _, _ in json_body_cases(app)}):
        operation = app.openapi()["paths"][path][method.lower()]
        if body == "null" and not operation["requestBody"].get("required"):
            continue  # no body at all is allowed there (logout: the cookie's session)
        response = await client.request(
            method,
            concrete_path(path),
            content=body.encode(),
            headers={**headers, "Content-Type": "application/json"},
        )
        if response.status_code != 422 or response.json().get("code") != "validation_failed":
            failures.append((method, path, response.status_code, response.text[:120]))
    assert failures == []


class TestTokenForm:
    @pytest.fixture
    def settings(self) -> Settings:
        return no_limits()

    @pytest.mark.parametrize(
        "field", ["username", "password", "grant_type", "scope", "client_id", "client_secret"]
    )
    @pytest.mark.parametrize(
        "value",
        ["%ED%A0%80", "abc%00def", "x" * 10_000, str(2**64)],
        ids=["surrogate-bytes", "nul", "long", "huge-integer"],
    )
    async def test_token_form_fields_are_bounded_and_well_formed(
        self, client: AsyncClient, alice: User, field: str, value: str
    ) -> None:
        fields = {"username": "alice@example.com", "password": SECRET, "grant_type": "password"}
        fields[field] = value
        body = "&".join(f"{name}={text}" for name, text in fields.items())
        response = await client.post(
            "/api/v1/auth/token",
            content=body.encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert_refused_quietly(response, "x" * 100)

    @pytest.mark.parametrize("field", ["username", "password"])
    async def test_an_oversized_token_username_or_password_is_refused_before_any_limiter_or_hash(
        self, app: FastAPI, client: AsyncClient, monkeypatch: pytest.MonkeyPatch, field: str
    ) -> None:
        limiter_hits = count_calls(monkeypatch, type(app.state.context.limiter), "hit")
        hashes = count_calls(monkeypatch, type(app.state.context.hasher), "verify_dummy")
        fields = {"username": "someone@example.com", "password": SECRET}
        fields[field] = "a" * 300 + ("@example.com" if field == "username" else "")
        response = await client.post("/api/v1/auth/token", data=fields)
        assert response.status_code == 422
        assert response.json()["code"] == "validation_failed"
        assert limiter_hits == [] and hashes == []

    async def test_token_username_is_the_same_normalised_email_as_login(
        self, client: AsyncClient, alice: User
    ) -> None:
        response = await client.post(
            "/api/v1/auth/token", data={"username": "  ALICE@Example.com ", "password": PASSWORD}
        )
        assert response.status_code == 200

    async def test_the_docs_authorize_button_still_points_at_the_token_form(
        self, app: FastAPI
    ) -> None:
        schemes = app.openapi()["components"]["securitySchemes"]
        flows = [scheme["flows"] for scheme in schemes.values() if scheme["type"] == "oauth2"]
        assert flows and flows[0]["password"]["tokenUrl"] == "/api/v1/auth/token"
        form = app.openapi()["paths"]["/api/v1/auth/token"]["post"]["requestBody"]["content"]
        assert "application/x-www-form-urlencoded" in form


class TestPagination:
    @pytest.fixture
    def settings(self) -> Settings:
        return no_limits()

    def paginated_routes(self, app: FastAPI) -> list[tuple[str, str]]:
        routes = [
            (path, param["name"])
            for path, operations in app.openapi()["paths"].items()
            for operation in operations.values()
            for param in operation.get("parameters", [])
            if param["in"] == "query" and param["name"] in {"offset", "limit", "cursor", "page"}
        ]
        assert ("/api/v1/admin/users", "limit") in routes
        assert ("/api/v1/admin/audit-events", "cursor") in routes
        return routes

    @pytest.mark.parametrize("value", OUT_OF_RANGE)
    async def test_out_of_range_pagination_is_a_4xx_on_every_paginated_route(
        self, app: FastAPI, client: AsyncClient, value: str
    ) -> None:
        headers = await bearer_admin(app, client)
        for path, name in self.paginated_routes(app):
            response = await client.get(path, params={name: value}, headers=headers)
            # A cursor in the right alphabet that is not one the service gave out: its own 400.
            refusals = {(422, "validation_failed"), (400, "invalid_cursor")}
            answer = (response.status_code, response.json().get("code"))
            assert answer in refusals, (path, name, value, response.text[:200])


# --- bodies over the size limit ------------------------------------------------------------


class CountingApp:
    """Wraps the app and counts the body bytes its receive() pulled from the client."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.delivered = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def counting_receive() -> Message:
            message = await receive()
            self.delivered += len(message.get("body", b""))
            return message

        await self.app(scope, counting_receive, send)


@pytest.fixture
async def counted(app: FastAPI, outbox: Outbox) -> AsyncIterator[tuple[AsyncClient, CountingApp]]:
    wrapper = CountingApp(app)
    async with AsyncClient(
        transport=ASGITransport(app=wrapper),
        base_url="https://testserver",
        headers={"User-Agent": BROWSER},
    ) as http:
        yield http, wrapper


def ten_mib_of_json() -> bytes:
    return json.dumps({"email": "a@example.com", "password": "p" * (10 * MIB)}).encode()


async def chunks(total: int, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        yield b"x" * size
        sent += size


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/auth/register",
        "/api/v1/auth/token",
        "/api/v1/auth/mfa/verify",
        "/api/v1/auth/mfa/totp/enable",
        "/api/v1/auth/reauthenticate",
        "/api/v1/auth/passkeys/login",
        "/api/v1/auth/passkeys/register",
    ],
)
async def test_a_10_mib_body_with_content_length_is_refused_before_it_is_read(
    counted: tuple[AsyncClient, CountingApp], alice: User, path: str
) -> None:
    http, wrapper = counted
    response = await http.post(
        path, content=ten_mib_of_json(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["code"] == "request_too_large"
    assert wrapper.delivered == 0
    assert len(response.content) < 1024
    assert response.headers["x-content-type-options"] == "nosniff"
    await login(http)  # the service is still usable


async def test_a_10_mib_chunked_body_without_content_length_is_cut_off_at_the_limit(
    counted: tuple[AsyncClient, CountingApp], app: FastAPI, alice: User
) -> None:
    http, wrapper = counted
    response = await http.post(
        "/api/v1/auth/register",
        content=chunks(10 * MIB),
        headers={"Content-Type": "application/json"},
    )
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert response.json()["code"] == "request_too_large"
    limit = app.state.settings.max_request_body_bytes
    assert wrapper.delivered <= limit + 64 * 1024
    await login(http)


async def test_a_lying_small_content_length_cannot_smuggle_a_big_body(app: FastAPI) -> None:
    limit = app.state.settings.max_request_body_bytes

    async def send_lie(scope: Scope, receive: Receive, send: Send) -> None:
        async def big_receive() -> Message:
            return {"type": "http.request", "body": b"x" * (limit * 4), "more_body": False}

        headers = [(k, v) for k, v in scope["headers"] if k != b"content-length"]
        scope = dict(scope, headers=[*headers, (b"content-length", b"10")])
        await app(scope, big_receive, send)

    async with AsyncClient(
        transport=ASGITransport(app=send_lie),
        base_url="https://testserver",
    ) as liar:
        response = await liar.post("/api/v1/auth/register", content=b"{}")
    assert response.status_code == 413


async def test_a_body_within_the_limit_is_served(client: AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/register", json={"email": "ok@example.com", "password": "w" * 10}
    )
    assert response.status_code == 400  # reached the password policy


class TestConfiguredLimit:
    @pytest.fixture
    def settings(self) -> Settings:
        return make_settings(max_request_body_bytes=2048)

    async def test_the_body_limit_follows_the_setting(
        self, client: AsyncClient, alice: User
    ) -> None:
        big = {"email": "alice@example.com", "password": "p" * 3000}
        assert (await client.post("/api/v1/auth/login", json=big)).status_code == 413
        small = {"email": "alice@example.com", "password": PASSWORD}
        assert (await client.post("/api/v1/auth/login", json=small)).status_code == 200


# --- what 422s and logs say --------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"email": "alice@example.com", "password": SECRET * 50}, id="too-long"),
        pytest.param({"email": "not-an-email", "password": SECRET}, id="bad-email"),
        pytest.param({"email": "alice@example.com", "password": [SECRET]}, id="wrong-type"),
        pytest.param({"email": "alice@example.com", "password": SECRET + "\x00"}, id="nul"),
    ],
)
async def test_a_422_never_echoes_what_was_submitted(
    client: AsyncClient, body: dict[str, object]
) -> None:
    response = await client.post("/api/v1/auth/register", json=body)
    assert response.status_code == 422
    payload = response.json()
    assert payload["code"] == "validation_failed"
    assert isinstance(payload["detail"], list) and payload["detail"]
    for error in payload["detail"]:
        assert {"loc", "msg", "type"} <= error.keys()
        assert "input" not in error
    assert SECRET not in response.text


async def test_an_unknown_field_holding_a_password_is_not_echoed(signed_in: AsyncClient) -> None:
    response = await signed_in.patch(
        "/api/v1/users/me",
        json={"email": "alice@example.com", "current_password": PASSWORD, "password": SECRET},
    )
    assert response.status_code == 422
    assert SECRET not in response.text and PASSWORD not in response.text


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/auth/login", '{"email": "alice@example.com", "password": "%s\\ud800"}'),
        ("/api/v1/auth/login", '{"email": "ali\\ud800ce@example.com", "password": "%s"}'),
        ("/api/v1/auth/register", '{"email": "alice@example.com", "password": "%s\\udc00x"}'),
        ("/api/v1/auth/mfa/verify", '{"mfa_token": "%s\\ud800", "code": "123456"}'),
        ("/api/v1/auth/mfa/verify", '{"mfa_token": "%s", "code": "12345\\udfff"}'),
        (
            "/api/v1/auth/passkeys/login",
            '{"credential": {"id": "%s\\ud800", "rawId": "AA", '
            '"type": "public-key", "response": {"clientDataJSON": "AA"}}}',
        ),
        ("/api/v1/auth/passkeys/login/options", '{"mfa_token": "%s\\ud800"}'),
    ],
)
async def test_a_lone_surrogate_logs_no_traceback_and_no_password(
    client: AsyncClient, alice: User, caplog: pytest.LogCaptureFixture, path: str, body: str
) -> None:
    caplog.set_level(logging.DEBUG)
    response = await client.post(
        path, content=(body % SECRET).encode(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert SECRET not in response.text
    assert "Traceback" not in caplog.text
    assert not [record for record in caplog.records if record.exc_info]
    assert SECRET not in caplog.text


@pytest.mark.parametrize(
    "email",
    [
        "a" * 65 + "@example.com",
        "a@" + "b" * 250 + ".com",
        "a\x00b@example.com",
        "a\ud800@example.com",
    ],
    ids=["local-part-65", "total-over-254", "nul", "surrogate"],
)
async def test_emails_are_bounded_everywhere(client: AsyncClient, email: str) -> None:
    for path, body in (
        ("/api/v1/auth/register", {"email": email, "password": SECRET}),
        ("/api/v1/auth/login", {"email": email, "password": SECRET}),
        ("/api/v1/auth/password/forgot", {"email": email}),
        ("/api/v1/auth/verify-email/resend", {"email": email}),
    ):
        content = json.dumps(body).encode()
        response = await client.post(
            path, content=content, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 422, (path, response.text[:200])


async def test_the_longest_allowed_email_is_accepted(
    client: AsyncClient, outbox: Outbox, app: FastAPI
) -> None:
    email = "a" * 64 + "@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 57 + ".com"
    assert len(email) == 254
    response = await client.post("/api/v1/auth/register", json={"email": email, "password": SECRET})
    assert response.status_code == 202


async def test_a_password_of_129_code_points_is_refused_before_any_hash(
    client: AsyncClient, app: FastAPI, alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    hashes = count_calls(monkeypatch, type(app.state.context.hasher), "verify")
    dummies = count_calls(monkeypatch, type(app.state.context.hasher), "verify_dummy")
    response = await client.post(
        "/api/v1/auth/login", json={"email": "alice@example.com", "password": "é" * 129}
    )
    assert response.status_code == 422
    assert hashes == [] and dummies == []


# --- NFKC ----------------------------------------------------------------------------------------

COMPOSED = unicodedata.normalize("NFC", "Ångström café naïve señor")
DECOMPOSED = unicodedata.normalize("NFD", COMPOSED)


def fullwidth(text: str) -> str:
    return "".join(chr(ord(char) + 0xFEE0) for char in text)


FULLWIDTH = "\ufb01sh \ufb01nd otter river " + fullwidth("1234")  # the ligature "fi" too
COMPATIBLE = "fish find otter river 1234"


async def register_and_verify(
    client: AsyncClient, app: FastAPI, outbox: Outbox, email: str, password: str
) -> None:
    response = await client.post(
        "/api/v1/auth/register", json={"email": email, "password": password}
    )
    assert response.status_code == 202, response.text
    await app.state.context.mailer.wait_idle()
    token = link_token(outbox.to(email, "Confirm")[0])
    assert (
        await client.post("/api/v1/auth/verify-email", json={"token": token})
    ).status_code == 200


async def sign_in(client: AsyncClient, email: str, password: str) -> Response:
    return await client.post("/api/v1/auth/login", json={"email": email, "password": password})


@pytest.mark.parametrize(
    ("registered", "typed"),
    [
        (COMPOSED, DECOMPOSED),
        (DECOMPOSED, COMPOSED),
        (FULLWIDTH, COMPATIBLE),
        (COMPATIBLE, FULLWIDTH),
    ],
    ids=["nfc-then-nfd", "nfd-then-nfc", "compat-then-plain", "plain-then-compat"],
)
async def test_a_password_typed_in_another_unicode_form_signs_in(
    client: AsyncClient, app: FastAPI, outbox: Outbox, registered: str, typed: str
) -> None:
    assert registered != typed
    await register_and_verify(client, app, outbox, "uni@example.com", registered)
    assert (await sign_in(client, "uni@example.com", typed)).status_code == 200
    await api_tokens(client, "uni@example.com", typed)


async def test_a_changed_password_is_normalised_too(signed_in: AsyncClient) -> None:
    response = await signed_in.post(
        "/api/v1/auth/password/change",
        json={"current_password": PASSWORD, "new_password": DECOMPOSED},
    )
    assert response.status_code == 204
    assert (await sign_in(signed_in, "alice@example.com", COMPOSED)).status_code == 200
    again = await signed_in.post(
        "/api/v1/auth/password/change",
        json={"current_password": DECOMPOSED, "new_password": FULLWIDTH},
        headers={"X-CSRF-Token": (await login(signed_in, password=COMPOSED)).json()["csrf_token"]},
    )
    assert again.status_code == 204, again.text
    assert (await sign_in(signed_in, "alice@example.com", COMPATIBLE)).status_code == 200


async def test_a_reset_password_is_normalised_too(
    client: AsyncClient, app: FastAPI, alice: User, outbox: Outbox
) -> None:
    await client.post("/api/v1/auth/password/forgot", json={"email": "alice@example.com"})
    await app.state.context.mailer.wait_idle()
    token = link_token(outbox.to("alice@example.com", "Reset")[0])
    response = await client.post(
        "/api/v1/auth/password/reset", json={"token": token, "new_password": FULLWIDTH}
    )
    assert response.status_code == 200
    assert (await sign_in(client, "alice@example.com", COMPATIBLE)).status_code == 200


async def test_the_policy_judges_the_normalised_password(client: AsyncClient) -> None:
    fullwidth_sequence = fullwidth("123456789012345")
    response = await client.post(
        "/api/v1/auth/register", json={"email": "fw@example.com", "password": fullwidth_sequence}
    )
    assert response.status_code == 400
    assert response.json()["code"] == "password_rejected"


def test_the_cli_reads_passwords_in_the_same_form(monkeypatch: pytest.MonkeyPatch) -> None:
    from app import cli

    monkeypatch.setattr(cli, "settings_or_exit", make_settings)
    monkeypatch.setenv("ADMIN_PASSWORD", FULLWIDTH)
    assert cli.read_password("ops@example.com") == COMPATIBLE
    monkeypatch.setenv("ADMIN_PASSWORD", DECOMPOSED)
    assert cli.read_password("ops@example.com") == COMPOSED


# --- predictable passwords of any allowed length --------------------------------------------

PREDICTABLE = {
    "repeated": [
        "aaaaaaaaaaaaaaa",
        "passwordpassword",
        "abcabcabcabcabcabc",
        "Ab1!Ab1!Ab1!Ab1!",
        "dragondragondragon",
        "🔑🔑🔑🔑🔑🔑🔑🔑🔑🔑🔑🔑🔑🔑🔑",
    ],
    "sequence": [
        "123456789012345",
        "987654321098765",
        "abcdefghijklmnop",
        "zyxwvutsrqponmlk",
        "abcdefgh12345678",
        "13579135791357913",
    ],
    "keyboard": [
        "qwertyuiopasdfghjkl",
        "1qaz2wsx3edc4rfv",
        "asdfghjkl;'qwertyuiop",
        "poiuytrewqlkjhgfdsa",
        "qwerty123456qwerty",
    ],
    "common-with-additions": [
        "password12345678",
        "iloveyou20242024",
        "!!!!sunshine!!!!",
        "football1234567890",
        "Monkey123456789!",
    ],
}
PASSPHRASES = [
    PASSWORD,
    "a much better passphrase 2026",
    "tangerine-otter-kettle-9413",
    "Ångström café naïve señor",
    "my cat likes abc and 123 best",
    "🔑🐍🌍🎲🚀🧩🎸🍀🦉🌙⚓🎯🧭🔔🪁",
]


@pytest.mark.parametrize(
    "password", [pw for group in PREDICTABLE.values() for pw in group], ids=lambda pw: pw[:20]
)
def test_predictable_passwords_of_the_allowed_length_are_refused_with_a_reason(
    password: str,
) -> None:
    assert len(password) >= 15
    problem = password_problem(password, "someone@example.com", 15)
    assert problem is not None
    assert "15 characters" not in problem


@pytest.mark.parametrize("password", PASSPHRASES, ids=lambda pw: pw[:20])
def test_real_passphrases_still_pass(password: str) -> None:
    assert password_problem(password, "someone@example.com", 15) is None


@pytest.mark.parametrize("password", ["123456789012345", "aaaaaaaaaaaaaaa", "passwordpassword"])
async def test_the_reported_long_blocklist_gaps_are_refused_at_registration(
    client: AsyncClient, password: str
) -> None:
    response = await client.post(
        "/api/v1/auth/register", json={"email": "gap@example.com", "password": password}
    )
    assert response.status_code == 400
    assert response.json()["code"] == "password_rejected"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/auth/login", '{"email": "alice@example.com", "password": "\\ud800"}'),
        ("/api/v1/auth/mfa/verify", '{"mfa_token": "\\ud800", "code": "123456"}'),
        (
            "/api/v1/auth/passkeys/login",
            '{"credential": {"id": "\\u0000", "rawId": "AA", '
            '"type": "public-key", "response": {"clientDataJSON": "AA"}}}',
        ),
    ],
    ids=["login", "mfa-verify", "passkey-login"],
)
async def test_concurrent_hostile_logins_leave_the_service_answering(
    client: AsyncClient, alice: User, path: str, body: str
) -> None:
    responses = await asyncio.gather(
        *(
            client.post(path, content=body, headers={"Content-Type": "application/json"})
            for _ in range(50)
        )
    )
    assert {response.status_code for response in responses} == {422}
    await login(client)


# --- passkey credentials: what the schema cannot see ---------------------------------------

# Well-formed base64url whose decoded `clientDataJSON` is hostile: the schema lets it through,
# the service must refuse it as a passkey, never answer 500 (a lone surrogate used to reach
# the challenge's hash, deep nesting the JSON parser's recursion limit).
HOSTILE_CLIENT_DATA = {
    "not-utf8": b"\xff\xfe\x00",
    "a-list": b"[]",
    "challenge-huge-integer": b'{"challenge": 18446744073709551616}',
    "challenge-infinite": b'{"challenge": 1e999}',
    "challenge-lone-surrogate": b'{"challenge": "\\ud800"}',
    "challenge-nul": b'{"challenge": "a\\u0000b"}',
    "challenge-not-base64url": b'{"challenge": "a b"}',
    "deeply-nested": b"[" * 12_000,
    "challenge-deeply-nested": b'{"challenge": ' + b"[" * 12_000,
}


@pytest.mark.parametrize("client_data", HOSTILE_CLIENT_DATA.values(), ids=HOSTILE_CLIENT_DATA)
@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/api/v1/auth/passkeys/login", "passkey_rejected"),
        ("/api/v1/auth/passkeys/register", "invalid_passkey"),
    ],
    ids=["sign-in", "register"],
)
async def test_hostile_client_data_is_a_refused_passkey_not_a_server_error(
    signed_in: AsyncClient, path: str, code: str, client_data: bytes
) -> None:
    credential = {
        "id": "AAAA",
        "rawId": "AAAA",
        "type": "public-key",
        "response": {
            "clientDataJSON": b64url(client_data),
            "authenticatorData": "AAAA",
            "signature": "AAAA",
            "attestationObject": "AAAA",
        },
    }
    response = await signed_in.post(path, json={"credential": credential})
    assert response.status_code in (400, 401), response.text[:200]
    assert response.json()["code"] == code
    assert "detail" in response.json()


# Extension outputs the service does not read: accepted and ignored, whatever they hold.
HOSTILE_EXTENSIONS = {
    "huge-integer": {"credProps": {"rk": 2**64}},
    "enormous-integer": {"x": 10**4000},
    "lone-surrogate": {"x": "\ud800"},
    "nul": {"x\u0000": "a\u0000b"},
    "nested-to-the-limit": {"x": [[[[[[{}]]]]]]},
}


@pytest.mark.parametrize("extensions", HOSTILE_EXTENSIONS.values(), ids=HOSTILE_EXTENSIONS)
async def test_hostile_extension_results_do_not_break_a_real_passkey_ceremony(
    app: FastAPI, signed_in: AsyncClient, extensions: dict[str, object]
) -> None:
    authenticator = SoftAuthenticator(app.state.settings.rp_origins[0])
    options = await signed_in.post("/api/v1/auth/passkeys/register/options")
    credential = authenticator.create(options.json())
    credential["clientExtensionResults"] = extensions
    registered = await signed_in.post(
        "/api/v1/auth/passkeys/register",
        content=json.dumps({"credential": credential, "name": "Laptop"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert registered.status_code == 201, registered.text[:200]
    options = await signed_in.post("/api/v1/auth/passkeys/login/options", json={})
    assertion = authenticator.get(options.json())
    assertion["clientExtensionResults"] = extensions
    signed = await signed_in.post(
        "/api/v1/auth/passkeys/login",
        content=json.dumps({"credential": assertion}).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert signed.status_code == 200, signed.text[:200]
    assert signed.json()["user"]["email"] == "alice@example.com"


async def test_extension_results_nested_past_the_limit_are_a_422(
    app: FastAPI, signed_in: AsyncClient
) -> None:
    authenticator = SoftAuthenticator(app.state.settings.rp_origins[0])
    options = await signed_in.post("/api/v1/auth/passkeys/register/options")
    credential = authenticator.create(options.json())
    credential["clientExtensionResults"] = {"x": [[[[[[[{}]]]]]]]}
    registered = await signed_in.post(
        "/api/v1/auth/passkeys/register", json={"credential": credential, "name": "Laptop"}
    )
    assert registered.status_code == 422
    assert registered.json()["code"] == "validation_failed"
    assert (await signed_in.get("/api/v1/auth/mfa")).json()["passkeys"] == []


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/auth/mfa/verify",
        "/api/v1/auth/passkeys/login",
        "/api/v1/auth/passkeys/login/options",
        "/api/v1/auth/reauthenticate",
    ],
)
async def test_a_deeply_nested_body_is_a_400_with_a_code(client: AsyncClient, path: str) -> None:
    body = '{"credential": ' + "[" * 30_000 + "]" * 30_000 + "}"
    response = await client.post(
        path, content=body.encode(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["code"] == "bad_request"
    assert "detail" in response.json()
