"""The OpenAPI schema as a client generator needs it: stable operation ids, the errors each
route can actually answer (with their codes), and the CSRF header declared as what it is, a
second credential of cookie-authenticated changes."""

from collections.abc import Iterable
from typing import Any

from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from app.api.deps import CSRF_HEADER, SAFE_METHODS
from app.api.raises import route_errors
from app.core.body_limit import RequestTooLarge
from app.schemas.errors import ERROR_STATUSES, ErrorMessage

OPENAPI_URL = "/openapi.json"
CSRF_SCHEME = "CsrfToken"
UNPARSABLE_BODY = "bad_request"  # the code of FastAPI's "There was an error parsing the body"
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


def document_errors(schema: dict[str, Any], routes: Iterable[BaseRoute]) -> dict[str, Any]:
    """Each operation lists the error statuses its route can answer, each with its codes."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["ErrorMessage"] = ErrorMessage.model_json_schema()
    reference = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorMessage"}}}
    for route in routes:
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        errors = route_errors(route)
        if route.body_field is not None:
            # Every body passes the size limit first, then must parse (FastAPI's 400).
            errors.setdefault(413, set()).add(RequestTooLarge.code)
            errors.setdefault(400, set()).add(UNPARSABLE_BODY)
        for method in route.methods or ():
            operation = schema["paths"][route.path][method.lower()]
            for status, codes in sorted(errors.items()):
                listed = ", ".join(f"`{code}`" for code in sorted(codes))
                operation["responses"][str(status)] = {
                    "description": f"{ERROR_STATUSES[status]} (`code`: {listed})",
                    "content": reference,
                }
    return schema
