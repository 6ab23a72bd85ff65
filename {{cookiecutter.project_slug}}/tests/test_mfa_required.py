"""MFA_REQUIRED_ROLES: holders of these roles have no access until they set up a second factor
(SPEC §8), except to the routes that let them do it, see who they are, or leave.

The check is one dependency (the access-token principal), so a route a team adds is covered
without remembering it; the walker below proves which routes skip it, and that they are exactly
the ones the SPEC exempts.
"""

from collections.abc import AsyncIterator

import pytest
from fastapi import APIRouter, FastAPI
from httpx import AsyncClient, Response
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.deps import EnrollingUser, get_enrolling_principal, get_principal
from app.core.config import Settings
from app.core.permissions import RoleName
from app.models import DeviceSession, User
from tests.authenticator import SoftAuthenticator
from tests.helpers import (
    PASSWORD,
    Clock,
    api_tokens,
    bearer,
    browser,
    create_user,
    enable_totp,
    give_role,
    make_settings,
)
from tests.test_rbac import (
    ADMIN_ROUTES,
    PUBLIC_PATHS,
    SOME_ID,
    calls,
    describe,
    expanded_routes,
    is_api_route,
)

ROOT = "root@example.com"
ENROLMENT_REQUIRED = "mfa_enrollment_required"

# Routes of the account's own session that are not admin routes, with bodies that pass
# validation: each must be refused before it does anything.
OTHER_ROUTES = [
    ("GET", "/api/v1/auth/sessions", None),
    ("DELETE", f"/api/v1/auth/sessions/{SOME_ID}", None),
    (
        "POST",
        "/api/v1/auth/password/change",
        {"current_password": PASSWORD, "new_password": "another long passphrase, please"},
    ),
]
# The SPEC's exemptions: /users/me, /auth/mfa*, /auth/passkeys*, /auth/reauthenticate, logout.
EXEMPT_PATHS = ("/api/v1/users/me", "/api/v1/auth/reauthenticate")
EXEMPT_PREFIXES = ("/api/v1/auth/mfa", "/api/v1/auth/passkeys")
LOGOUT_PATHS = ("/api/v1/auth/logout", "/api/v1/auth/logout-all")
# Authenticated by any token of the session, and holding no account data: logout, and the CSRF
# token a reloaded browser page needs to send anything at all (enrolment included).
SESSION_TOKEN_ROUTES = frozenset({"POST /api/v1/auth/logout", "GET /api/v1/auth/csrf"})


@pytest.fixture
def settings() -> Settings:
    return make_settings(mfa_required_roles=["admin"], rate_limit_login_ip="1000/minute")


@pytest.fixture
async def root(app: FastAPI) -> User:
    user = await create_user(app, ROOT)
    await give_role(app, user, RoleName.ADMIN)
    return user


@pytest.fixture
async def admin(app: FastAPI, root: User) -> AsyncIterator[AsyncClient]:
    """The admin, signed in with the password (no factor yet), CSRF header set."""
    async with browser(app, ROOT) as http:
        yield http


def assert_enrolment_required(response: Response) -> None:
    assert response.status_code == 403, response.text
    assert response.json()["code"] == ENROLMENT_REQUIRED


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [route[:3] for route in ADMIN_ROUTES],
    ids=[f"{m} {p}" for m, p, *_ in ADMIN_ROUTES],
)
async def test_an_admin_without_a_factor_is_refused_on_admin_routes(
    admin: AsyncClient, method: str, path: str, body: dict[str, object] | None
) -> None:
    assert_enrolment_required(await admin.request(method, path, json=body))


@pytest.mark.parametrize(
    ("method", "path", "body"), OTHER_ROUTES, ids=[f"{m} {p}" for m, p, _ in OTHER_ROUTES]
)
async def test_an_admin_without_a_factor_is_refused_elsewhere(
    admin: AsyncClient, method: str, path: str, body: dict[str, object] | None
) -> None:
    assert_enrolment_required(await admin.request(method, path, json=body))


async def test_the_refusal_holds_for_bearer_tokens(client: AsyncClient, root: User) -> None:
    tokens = await api_tokens(client, ROOT)
    response = await client.get("/api/v1/admin/users", headers=bearer(tokens["access_token"]))
    assert_enrolment_required(response)


async def test_an_admin_without_a_factor_can_still_see_who_they_are(admin: AsyncClient) -> None:
    me = await admin.get("/api/v1/users/me")
    assert me.status_code == 200
    assert "admin" in me.json()["roles"]
    status = await admin.get("/api/v1/auth/mfa")
    assert status.json() == {"totp": False, "passkeys": [], "recovery_codes_left": 0}
    reauthenticated = await admin.post("/api/v1/auth/reauthenticate", json={"password": PASSWORD})
    assert reauthenticated.status_code == 204


async def test_an_admin_without_a_factor_can_enrol_and_then_administer(
    admin: AsyncClient, clock: Clock
) -> None:
    assert_enrolment_required(await admin.get("/api/v1/admin/users"))
    await enable_totp(admin, clock)
    assert (await admin.get("/api/v1/admin/users")).status_code == 200
    assert (await admin.get("/api/v1/auth/sessions")).status_code == 200


async def test_a_passkey_satisfies_the_requirement_too(admin: AsyncClient) -> None:
    authenticator = SoftAuthenticator("https://frontend.example")
    options = await admin.post("/api/v1/auth/passkeys/register/options")
    assert options.status_code == 200, options.text
    body = {"credential": authenticator.create(options.json()), "name": "Laptop"}
    assert (await admin.post("/api/v1/auth/passkeys/register", json=body)).status_code == 201
    assert (await admin.get("/api/v1/admin/users")).status_code == 200


async def test_removing_the_only_factor_locks_the_admin_out_again(
    admin: AsyncClient, clock: Clock
) -> None:
    await enable_totp(admin, clock)
    assert (await admin.delete("/api/v1/auth/mfa/totp")).status_code == 204
    assert_enrolment_required(await admin.get("/api/v1/admin/users"))


@pytest.mark.parametrize("path", LOGOUT_PATHS)
async def test_an_admin_without_a_factor_can_sign_out(
    admin: AsyncClient, root: User, db: AsyncSession, path: str
) -> None:
    assert (await admin.post(path)).status_code == 204
    live = await db.exec(
        select(DeviceSession).where(
            DeviceSession.user_id == root.id, col(DeviceSession.revoked_at).is_(None)
        )
    )
    assert live.all() == []


async def test_a_user_without_the_role_is_unaffected(signed_in: AsyncClient) -> None:
    assert (await signed_in.get("/api/v1/auth/sessions")).status_code == 200
    assert (await signed_in.get("/api/v1/users/me")).status_code == 200


# --- the walker ---------------------------------------------------------------------------------


def is_exempt(path: str) -> bool:
    return path in EXEMPT_PATHS or path in LOGOUT_PATHS or path.startswith(EXEMPT_PREFIXES)


def enrolment_problems(app: FastAPI) -> list[str]:
    """Authenticated routes that skip the MFA_REQUIRED_ROLES check without being exempt, and
    exempt routes that enforce it (a user could not enrol through them)."""
    problems = []
    for route in expanded_routes(app):
        if not is_api_route(route) or route.path in PUBLIC_PATHS:
            continue
        dependencies = set(calls(route.dependant))
        name = describe(route)
        if is_exempt(route.path):
            if get_principal in dependencies:
                problems.append(f"{name} is exempt but refuses users who must enrol")
            elif get_enrolling_principal not in dependencies and name not in SESSION_TOKEN_ROUTES:
                problems.append(f"{name} is exempt but takes neither principal")
        elif get_principal not in dependencies and name not in SESSION_TOKEN_ROUTES:
            problems.append(f"{name} skips the MFA_REQUIRED_ROLES check")
    return problems


def test_only_the_exempt_routes_skip_the_enrolment_check(app: FastAPI) -> None:
    problems = enrolment_problems(app)
    assert not problems, "\n".join(problems)


def test_the_exempt_routes_are_the_specs_list(app: FastAPI) -> None:
    enrolling = sorted(
        describe(route)
        for route in expanded_routes(app)
        if is_api_route(route) and get_enrolling_principal in set(calls(route.dependant))
    )
    assert enrolling == [
        "DELETE /api/v1/auth/mfa/totp",
        "DELETE /api/v1/auth/passkeys/{passkey_id}",
        "DELETE /api/v1/users/me",
        "GET /api/v1/auth/mfa",
        "GET /api/v1/users/me",
        "PATCH /api/v1/auth/passkeys/{passkey_id}",
        "PATCH /api/v1/users/me",
        "POST /api/v1/auth/logout-all",
        "POST /api/v1/auth/mfa/recovery-codes",
        "POST /api/v1/auth/mfa/totp/enable",
        "POST /api/v1/auth/mfa/totp/setup",
        "POST /api/v1/auth/passkeys/register",
        "POST /api/v1/auth/passkeys/register/options",
        "POST /api/v1/auth/reauthenticate",
    ]


def test_the_walker_names_a_route_that_skips_the_check() -> None:
    """On an app of its own, so the real app's routes fail only the tests above."""
    router = APIRouter(prefix="/api/v1/notes")

    @router.get("")
    async def notes(principal: EnrollingUser) -> list[str]:
        return []

    planted = FastAPI()
    planted.include_router(router)
    assert enrolment_problems(planted) == ["GET /api/v1/notes skips the MFA_REQUIRED_ROLES check"]
