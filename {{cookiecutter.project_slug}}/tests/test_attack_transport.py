"""Attacks on the transport: forged CSRF tokens and origins, 500s, cookie names, the DB file."""

import base64
import hashlib
import re
from urllib.parse import urlsplit

import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient, Response

from app.core.config import Settings
from app.main import create_app
from app.models import User
from app.utils.cookies import CookieNames, cookie_names
from tests.helpers import BROWSER, PASSWORD, api_tokens, bearer, device, make_settings
from tests.test_errors import crash

SIGNATURE = "0" * 64  # the shape of a real token's signature part


def raw_cookie_client(
    app: FastAPI, cookies: dict[str, bytes], **headers: bytes | str
) -> AsyncClient:
    """A client that sends exactly these cookie bytes, as a hand-written request would."""
    sent = {"User-Agent": BROWSER.encode()}
    sent["Cookie"] = b"; ".join(name.encode() + b"=" + value for name, value in cookies.items())
    sent.update(
        (name, value if isinstance(value, bytes) else value.encode())
        for name, value in headers.items()
    )
    return AsyncClient(
        transport=ASGITransport(app=app),
        base_url="https://testserver",
        headers={name.encode(): value for name, value in sent.items()},
    )


# --- CSRF tokens an attacker controls --------------------------------------------------------
MALFORMED_TOKENS = {
    "non-ascii signature": f"nonce.{'é' * 64}".encode(),
    "non-ascii nonce": f"{'ü' * 22}.{SIGNATURE}".encode(),
    "latin-1 bytes": b"\xff\xfe." + b"\xff" * 64,
    "huge": b"a" * 40_000 + b"." + b"b" * 40_000,
    "no separator": b"a" * 87,
    "empty nonce": b"." + SIGNATURE.encode(),
    "empty signature": b"nonce.",
    "nul": b"nonce\x00." + SIGNATURE.encode(),
}


@pytest.mark.parametrize("token", MALFORMED_TOKENS.values(), ids=MALFORMED_TOKENS.keys())
async def test_a_malformed_csrf_token_is_a_403_never_a_500(
    app: FastAPI, signed_in: AsyncClient, cookie: CookieNames, token: bytes
) -> None:
    """The attacker sends the same bytes as header and cookie, so the double submit matches."""
    access = signed_in.cookies[cookie.access].encode()
    async with raw_cookie_client(
        app, {cookie.access: access, cookie.csrf: token}, **{"X-CSRF-Token": token}
    ) as attacker:
        response = await attacker.post("/api/v1/auth/logout")
    assert response.status_code == 403
    assert response.json()["code"] == "csrf_failed"
    assert (await signed_in.get("/api/v1/users/me")).status_code == 200


# --- Origin ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "origin", ["https://evil.example", "null", "https://frontend.example.evil.example"]
)
async def test_a_cookie_request_from_a_foreign_origin_is_refused(
    signed_in: AsyncClient, origin: str
) -> None:
    response = await signed_in.post("/api/v1/auth/logout", headers={"Origin": origin})
    assert response.status_code == 403
    assert response.json()["code"] == "csrf_failed"
    assert (await signed_in.get("/api/v1/users/me")).status_code == 200


async def test_a_cookie_refresh_from_a_foreign_origin_is_refused(signed_in: AsyncClient) -> None:
    response = await signed_in.post(
        "/api/v1/auth/refresh", headers={"Origin": "https://evil.example"}
    )
    assert response.status_code == 403


@pytest.mark.parametrize("origin", ["https://frontend.example", "https://testserver"])
async def test_the_frontend_and_the_apis_own_origin_pass(
    signed_in: AsyncClient, origin: str
) -> None:
    response = await signed_in.post("/api/v1/auth/logout", headers={"Origin": origin})
    assert response.status_code == 204


async def test_bearer_requests_ignore_the_origin(client: AsyncClient, alice: User) -> None:
    tokens = await api_tokens(client)
    response = await client.post(
        "/api/v1/auth/logout",
        headers={**bearer(tokens["access_token"]), "Origin": "https://evil.example"},
    )
    assert response.status_code == 204


# --- 500s and the Content-Security-Policy ----------------------------------------------------
def csp(response: Response) -> dict[str, set[str]]:
    policy = response.headers["content-security-policy"]
    directives = (part.split() for part in policy.split(";") if part.strip())
    return {name: set(sources) for name, *sources in directives}


async def test_a_500_carries_every_security_header_and_the_error_body(app: FastAPI) -> None:
    response = await crash(app, "/api/v1/boom")
    assert response.status_code == 500
    assert response.json() == {"detail": "Internal Server Error", "code": "internal_error"}
    headers = response.headers
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["cache-control"] == "no-store"
    assert headers["strict-transport-security"].startswith("max-age=")
    assert csp(response)["default-src"] == {"'none'"}


@pytest.mark.parametrize("path", ["/api/v1/users/me", "/api/v1/auth/login", "/health/live"])
async def test_api_responses_carry_a_strict_content_security_policy(
    client: AsyncClient, path: str
) -> None:
    policy = csp(await client.get(path))
    assert policy["default-src"] == {"'none'"}
    assert policy["frame-ancestors"] == {"'none'"}


def allowed(policy: dict[str, set[str]], directive: str, url: str) -> bool:
    sources = policy.get(directive, policy.get("default-src", set()))
    parts = urlsplit(url)
    if not parts.netloc:
        return "'self'" in sources
    return f"{parts.scheme}://{parts.netloc}" in sources or f"{parts.scheme}:" in sources


async def test_the_docs_page_may_load_everything_it_references(client: AsyncClient) -> None:
    response = await client.get("/docs")
    assert response.status_code == 200
    policy, html = csp(response), response.text
    assert policy["frame-ancestors"] == {"'none'"}
    for url in re.findall(r'<script src="([^"]+)"', html):
        assert allowed(policy, "script-src", url), url
    for url in re.findall(r'<link type="text/css" rel="stylesheet" href="([^"]+)"', html):
        assert allowed(policy, "style-src", url), url
    for url in re.findall(r'<link rel="shortcut icon" href="([^"]+)"', html):
        assert allowed(policy, "img-src", url), url
    for inline in re.findall(r"<script>(.*?)</script>", html, re.S):
        digest = base64.b64encode(hashlib.sha256(inline.encode()).digest()).decode()
        assert policy["script-src"] & {"'unsafe-inline'", f"'sha256-{digest}'"}
    assert "'self'" in policy["connect-src"]  # Swagger UI fetches /openapi.json
    redirect = await client.get("/docs/oauth2-redirect")
    assert csp(redirect)["script-src"] & {"'unsafe-inline'", "'self'"}


# --- Cookie names ----------------------------------------------------------------------------
def set_cookies(response: Response) -> dict[str, str]:
    return {c.split("=", 1)[0]: c for c in response.headers.get_list("set-cookie")}


async def test_host_only_secure_cookies_carry_the_host_prefix(
    client: AsyncClient, alice: User
) -> None:
    response = await client.post(
        "/api/v1/auth/login", json={"email": "alice@example.com", "password": PASSWORD}
    )
    cookies = set_cookies(response)
    assert set(cookies) == {"__Host-access_token", "__Secure-refresh_token", "__Host-csrf_token"}
    for name, header in cookies.items():
        assert "Secure" in header and "Domain" not in header
        if name.startswith("__Host-"):
            assert "Path=/;" in header


async def test_apps_in_one_process_share_routes_but_each_keeps_its_own_settings(
    app: FastAPI, alice: User
) -> None:
    """The API's routes are built once per process (app/api/router.py `api_routes`); what they
    do must still follow the settings of the app that serves the request."""
    plain = create_app(make_settings(cookie_secure=False))
    assert plain.router.routes[0] is app.router.routes[0]
    async with LifespanManager(plain), device(plain) as on_plain, device(app) as on_secure:
        for http, expected in ((on_plain, "access_token"), (on_secure, "__Host-access_token")):
            response = await http.post(
                "/api/v1/auth/login", json={"email": alice.email, "password": PASSWORD}
            )
            assert response.status_code == 200, response.text
            assert expected in set_cookies(response)


async def test_a_cookie_without_the_prefix_is_ignored(
    app: FastAPI, signed_in: AsyncClient, cookie: CookieNames
) -> None:
    """A sibling subdomain can toss `access_token=...`; only the prefixed name is read."""
    token = signed_in.cookies[cookie.access].encode()
    async with raw_cookie_client(app, {"access_token": token}) as tossed:
        assert (await tossed.get("/api/v1/users/me")).status_code == 401


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"cookie_domain": "example.com"}, ("__Secure-",) * 3),
        ({"cookie_secure": False}, ("",) * 3),
        ({"cookie_secure": False, "cookie_domain": "example.com"}, ("",) * 3),
        ({}, ("__Host-", "__Secure-", "__Host-")),
    ],
)
def test_cookie_prefixes_follow_cookie_domain_and_cookie_secure(
    overrides: dict[str, object], expected: tuple[str, str, str]
) -> None:
    names = cookie_names(make_settings(**overrides))
    assert names.all() == tuple(
        prefix + name
        for prefix, name in zip(
            expected, ("access_token", "refresh_token", "csrf_token"), strict=True
        )
    )


class TestSharedDomain:
    @pytest.fixture
    def settings(self) -> Settings:
        return make_settings(cookie_domain="testserver.local")

    async def test_domain_cookies_carry_the_secure_prefix_and_the_domain(
        self, client: AsyncClient, alice: User
    ) -> None:
        response = await client.post(
            "/api/v1/auth/login", json={"email": "alice@example.com", "password": PASSWORD}
        )
        cookies = set_cookies(response)
        assert all(name.startswith("__Secure-") for name in cookies)
        assert all("Domain=testserver.local" in header for header in cookies.values())
