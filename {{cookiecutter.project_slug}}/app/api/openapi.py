"""The OpenAPI schema as a client generator needs it: stable operation ids, and the CSRF
header declared as what it is, a second credential of cookie-authenticated changes."""

from typing import Any

from fastapi.routing import APIRoute

from app.api.deps import CSRF_HEADER, SAFE_METHODS

OPENAPI_URL = "/openapi.json"
CSRF_SCHEME = "CsrfToken"
CSRF_DESCRIPTION = (
    "Browsers signed in with cookies send the `csrf_token` cookie's value (also returned by "
    "login, refresh and `GET /auth/csrf`) in this header on every POST, PATCH and DELETE. "
    "In /docs: run `POST /auth/login`, then paste its `csrf_token` here. API clients using "
    "bearer tokens do not need it."
)


def operation_id(route: APIRoute) -> str:
    """`{tag}-{name}`, such as `auth-login`: what generated clients name their functions."""
    tag = str(route.tags[0]) if route.tags else "default"
    return f"{tag}-{route.name.replace('_', '-')}"


def document_csrf(schema: dict[str, Any]) -> dict[str, Any]:
    """Declare the CSRF header as a security scheme and ask for it beside the access token on
    every unsafe operation, so Swagger UI sends it after a cookie sign-in."""
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {})[CSRF_SCHEME] = {
        "type": "apiKey",
        "in": "header",
        "name": CSRF_HEADER,
        "description": CSRF_DESCRIPTION,
    }
    for operations in schema.get("paths", {}).values():
        for method, operation in operations.items():
            if method.upper() in SAFE_METHODS:
                continue
            for requirement in operation.get("security", []):
                if "AccessToken" in requirement:
                    requirement.setdefault(CSRF_SCHEME, [])
    return schema
