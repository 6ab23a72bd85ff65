"""Deny by default, and permission checks on every admin route."""

import secrets
import uuid
from collections.abc import Iterator
from typing import Annotated, Any

import pytest
from fastapi import APIRouter, Depends, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from httpx import AsyncClient
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.routing import Route

from app.api.deps import (
    get_cookie_session,
    get_enrolling_principal,
    get_principal,
    get_session_credentials,
    require_permissions,
    require_roles,
)
from app.api.metrics import require_metrics_token
from app.core.permissions import PermissionName, RoleName
from app.db.principals import PrincipalReader
from app.domain import Principal
from app.main import create_app
from app.models import Role, User, UserRole
from tests.helpers import count_calls, make_settings

# Routes anyone may call. Everything else must authenticate. Some entries may not exist yet.
PUBLIC_PATHS = frozenset(
    {
        "/health/live",
        "/health/ready",
        "/api/v1/auth/register",
        "/api/v1/auth/login",
        "/api/v1/auth/token",
        "/api/v1/auth/refresh",  # authenticated by the refresh token itself
        "/api/v1/auth/verify-email",
        "/api/v1/auth/verify-email/resend",
        "/api/v1/auth/password/forgot",
        "/api/v1/auth/password/reset",
        # authenticated by a pending sign-in's mfa_token, or a passkey's signature
        "/api/v1/auth/mfa/verify",
        "/api/v1/auth/passkeys/login/options",
        "/api/v1/auth/passkeys/login",
        "/docs",
        "/docs/oauth2-redirect",
        "/docs/assets/{name}",  # Swagger UI's and ReDoc's files
        "/redoc",
        "/openapi.json",
    }
)

# What authenticates a caller: the access token (with or without the MFA_REQUIRED_ROLES check),
# or (logout, GET /auth/csrf) any token of the caller's session, or (GET /metrics, only with
# METRICS_ENABLED) the scraper's METRICS_TOKEN. The walker accepts nothing else.
AUTHENTICATORS = frozenset(
    {
        get_principal,
        get_enrolling_principal,
        get_session_credentials,
        get_cookie_session,
        require_metrics_token,
    }
)

SOME_ID = uuid.UUID(int=1)  # fixed, so test ids match between runs and pytest-xdist workers
ADMIN_ROUTES = [
    ("GET", "/api/v1/admin/users", None, "users:read"),
    ("GET", f"/api/v1/admin/users/{SOME_ID}", None, "users:read"),
    ("PATCH", f"/api/v1/admin/users/{SOME_ID}", {"is_active": False}, "users:write"),
    ("DELETE", f"/api/v1/admin/users/{SOME_ID}", None, "users:write"),
    ("GET", f"/api/v1/admin/users/{SOME_ID}/sessions", None, "sessions:read"),
    ("DELETE", f"/api/v1/admin/users/{SOME_ID}/sessions", None, "sessions:write"),
    ("DELETE", f"/api/v1/admin/users/{SOME_ID}/mfa", None, "users:write"),
    ("GET", "/api/v1/admin/roles", None, "roles:read"),
    ("GET", "/api/v1/admin/permissions", None, "roles:read"),
    ("GET", "/api/v1/admin/audit-events", None, "audit:read"),
    ("POST", "/api/v1/admin/roles", {"name": "sneaky", "permissions": []}, "roles:write"),
    ("PATCH", f"/api/v1/admin/roles/{SOME_ID}", {"description": "x"}, "roles:write"),
]


def expanded_routes(app: FastAPI) -> list[Any]:
    """Every route with its full path and dependencies, included routers expanded."""
    return list(iter_route_contexts(app.routes))


def is_api_route(route: Any) -> bool:
    return isinstance(getattr(route, "original_route", route), APIRoute)


def calls(dependant: Dependant) -> Iterator[object]:
    for dependency in dependant.dependencies:
        yield dependency.call
        yield from calls(dependency)


def describe(route: Any) -> str:
    """`GET /api/v1/notes/count`: how a person names a route."""
    methods = ",".join(sorted(getattr(route, "methods", None) or [])) or type(route).__name__
    path = getattr(route, "path", None) or repr(route)
    return f"{methods} {path}"


def unprotected_routes(app: FastAPI) -> list[str]:
    """Routes outside PUBLIC_PATHS that depend on none of the AUTHENTICATORS anywhere."""
    found = []
    for route in expanded_routes(app):
        if getattr(route, "path", None) in PUBLIC_PATHS:
            continue
        if not is_api_route(route) or not AUTHENTICATORS & set(calls(route.dependant)):
            found.append(f"{describe(route)} has no authentication dependency")
    return found


def test_every_non_public_route_requires_authentication(app: FastAPI) -> None:
    checked = {route.path for route in expanded_routes(app)} - PUBLIC_PATHS
    assert {"/api/v1/users/me", "/api/v1/admin/users", "/api/v1/auth/logout"} <= checked
    problems = unprotected_routes(app)
    assert not problems, "\n".join(problems)


def test_with_metrics_on_every_route_still_requires_authentication() -> None:
    app = create_app(make_settings(metrics_enabled=True, metrics_token=secrets.token_urlsafe(32)))
    assert "/metrics" in {route.path for route in expanded_routes(app)}
    problems = unprotected_routes(app)
    assert not problems, "\n".join(problems)


def test_the_walker_names_an_unprotected_route() -> None:
    """On an app of its own, so an unprotected route of the real app fails only the test above."""
    router = APIRouter(prefix="/api/v1/notes")

    @router.get("/count")
    async def count() -> int:
        return 0

    @router.get("", dependencies=[Depends(require_permissions(PermissionName.USERS_READ))])
    async def guarded() -> list[str]:
        return []

    planted = FastAPI()
    planted.include_router(router)
    assert unprotected_routes(planted) == [
        "GET /api/v1/notes/count has no authentication dependency"
    ]


def test_routes_are_mounted_flat(app: FastAPI) -> None:
    """An included router is a node FastAPI matches again on every request (app/api/router.py)."""
    nodes = [
        "a router of " + ", ".join(describe(inner) for inner in iter_route_contexts([route]))
        for route in app.routes
        if not isinstance(route, Route)
    ]
    assert not nodes, "\n".join(nodes)


async def test_a_router_included_the_fastapi_way_is_served_flat_and_protected(
    app: FastAPI, signed_in: AsyncClient
) -> None:
    router = APIRouter(prefix="/extra")

    @router.get("/ping")
    async def ping() -> str:
        return "pong"

    @router.get("/users", dependencies=[Depends(require_permissions(PermissionName.USERS_READ))])
    async def users() -> list[str]:
        return []

    app.include_router(router, prefix="/api/v1", dependencies=[Depends(require_permissions())])

    test_routes_are_mounted_flat(app)
    assert unprotected_routes(app) == []
    assert (await signed_in.get("/api/v1/extra/ping")).json() == "pong"
    refused = await signed_in.get("/api/v1/extra/users")
    assert refused.json() == {
        "detail": f"Missing permission: {PermissionName.USERS_READ}",
        "code": "permission_denied",
    }
    signed_in.cookies.clear()
    assert (await signed_in.get("/api/v1/extra/ping")).status_code == 401


def test_every_admin_route_checks_a_permission(app: FastAPI) -> None:
    admin_routes = [
        r for r in expanded_routes(app) if is_api_route(r) and r.path.startswith("/api/v1/admin/")
    ]
    assert len(admin_routes) == len(ADMIN_ROUTES)
    for route in admin_routes:
        names = {getattr(call, "__name__", "") for call in calls(route.dependant)}
        assert "check_permissions" in names, route.path


@pytest.mark.parametrize(("method", "path", "body", "permission"), ADMIN_ROUTES)
async def test_a_normal_user_gets_403_on_admin_routes(
    signed_in: AsyncClient, method: str, path: str, body: dict[str, object] | None, permission: str
) -> None:
    response = await signed_in.request(method, path, json=body)
    assert response.status_code == 403
    assert response.json() == {
        "detail": f"Missing permission: {permission}",
        "code": "permission_denied",
    }


@pytest.mark.parametrize(("method", "path", "body", "permission"), ADMIN_ROUTES)
async def test_admin_routes_need_authentication(
    client: AsyncClient, method: str, path: str, body: dict[str, object] | None, permission: str
) -> None:
    response = await client.request(method, path, json=body)
    assert response.status_code == 401


async def test_the_principal_is_read_once_per_request(
    app: FastAPI, signed_in: AsyncClient, alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    @app.get(
        "/api/v1/rbac-probe",
        dependencies=[Depends(require_roles(RoleName.USER)), Depends(require_permissions())],
    )
    async def probe(principal: Annotated[Principal, Depends(require_roles(RoleName.USER))]) -> str:
        return principal.email

    lookups = count_calls(monkeypatch, PrincipalReader, "read")
    response = await signed_in.get("/api/v1/rbac-probe")
    assert response.status_code == 200
    assert response.json() == "alice@example.com"
    assert len(lookups) == 1


async def test_require_roles(
    app: FastAPI, signed_in: AsyncClient, alice: User, db: AsyncSession
) -> None:
    @app.get("/api/v1/rbac-admins", dependencies=[Depends(require_roles(RoleName.ADMIN))])
    async def admins_only() -> str:
        return "ok"

    refused = await signed_in.get("/api/v1/rbac-admins")
    assert refused.status_code == 403
    assert refused.json() == {"detail": "Missing role: admin", "code": "permission_denied"}

    admin = (await db.exec(select(Role).where(Role.name == RoleName.ADMIN))).one()
    db.add(UserRole(user_id=alice.id, role_id=admin.id))
    await db.commit()
    assert (await signed_in.get("/api/v1/rbac-admins")).status_code == 200
