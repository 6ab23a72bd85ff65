"""The schema is fit for client generators, and the docs pages work offline."""

import re
from typing import Any

from fastapi import FastAPI
from httpx import AsyncClient

UNSAFE = {"post", "patch", "put", "delete"}


def operations(app: FastAPI) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, methods in app.openapi()["paths"].items()
        for method, operation in methods.items()
    ]


def test_operation_ids_are_tag_dash_name_and_unique(app: FastAPI) -> None:
    ids = [operation["operationId"] for _, _, operation in operations(app)]
    assert "auth-login" in ids and "mfa-verify" in ids
    assert len(ids) == len(set(ids))
    for _, _, operation in operations(app):
        assert re.fullmatch(r"[a-z]+-[a-z0-9-]+", operation["operationId"])
        assert operation["operationId"].startswith(f"{operation['tags'][0]}-")


def test_the_csrf_header_is_a_declared_security_scheme(app: FastAPI) -> None:
    scheme = app.openapi()["components"]["securitySchemes"]["CsrfToken"]
    assert scheme == {**scheme, "type": "apiKey", "in": "header", "name": "X-CSRF-Token"}


def test_every_unsafe_signed_in_operation_asks_for_the_csrf_header(app: FastAPI) -> None:
    signed_in = [
        (method, path, operation)
        for method, path, operation in operations(app)
        if method in UNSAFE and any("AccessToken" in r for r in operation.get("security", []))
    ]
    assert len(signed_in) > 10
    for method, path, operation in signed_in:
        assert all("CsrfToken" in r for r in operation["security"]), (method, path)
    for method, path, operation in operations(app):
        if method not in UNSAFE:
            assert all("CsrfToken" not in r for r in operation.get("security", [])), path


def test_refresh_documents_the_csrf_header_for_its_cookie(app: FastAPI) -> None:
    refresh = app.openapi()["paths"]["/api/v1/auth/refresh"]["post"]
    assert refresh["security"] == [{}, {"CsrfToken": []}]


def test_readiness_documents_its_503(app: FastAPI) -> None:
    assert "503" in app.openapi()["paths"]["/health/ready"]["get"]["responses"]


async def test_the_docs_pages_load_their_files_from_the_service(client: AsyncClient) -> None:
    for page in ("/docs", "/redoc"):
        response = await client.get(page)
        assert response.status_code == 200
        sources = re.findall(r'(?:src|href)="([^"]+)"', response.text)
        assert sources, page
        assert all(source.startswith("/docs/assets/") for source in sources), sources
        policy = response.headers["content-security-policy"]
        assert "https:" not in policy and "cdn" not in policy
        for source in sources:
            asset = await client.get(source)
            assert asset.status_code == 200, source
            assert len(asset.content) > 1000, source


def error_statuses(app: FastAPI, method: str, path: str) -> set[str]:
    responses = app.openapi()["paths"][path][method]["responses"]
    return {status for status in responses if status[0] in "45"}


def test_each_route_documents_the_errors_it_can_answer(app: FastAPI) -> None:
    """Derived from the code: a read of the caller needs no 415, and sign-in no 404 (its 400
    is a body that does not parse)."""
    assert error_statuses(app, "get", "/api/v1/users/me") == {"401", "403"}
    assert error_statuses(app, "post", "/api/v1/auth/login") == {
        "400", "401", "403", "413", "415", "422", "429"
    }  # fmt: skip
    assert "404" in error_statuses(app, "delete", "/api/v1/auth/sessions/{session_id}")
    assert "409" in error_statuses(app, "patch", "/api/v1/admin/users/{user_id}")


def test_an_error_status_names_its_codes(app: FastAPI) -> None:
    responses = app.openapi()["paths"]["/api/v1/auth/mfa/verify"]["post"]["responses"]
    assert "`invalid_mfa_code`" in responses["401"]["description"]
    assert "`invalid_mfa_token`" in responses["401"]["description"]
    schema = responses["401"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/ErrorMessage"}
