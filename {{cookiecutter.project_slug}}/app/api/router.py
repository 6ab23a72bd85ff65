"""Where every route is mounted.

The routers are included into the app one by one rather than under a parent `/api/v1` router:
each level of nesting makes FastAPI match the path again on every request. FastAPI tries routes
in order, so the most-called ones come first; `OPENAPI_TAGS` keeps the docs in reading order.
"""

from fastapi import FastAPI

from app.api.routes import admin, auth, health, users
from app.schemas.errors import ERROR_RESPONSES

API_PREFIX = "/api/v1"

OPENAPI_TAGS = [
    {"name": "auth", "description": "Sign-up, sign-in, tokens, sessions and passwords."},
    {"name": "users", "description": "The signed-in user's own account."},
    {"name": "admin", "description": "User, session and role management (permission-gated)."},
    {"name": "health", "description": "Liveness and readiness probes."},
]


def include_routes(app: FastAPI) -> None:
    app.include_router(health.router)
    for router in (users.router, auth.router, admin.router):
        app.include_router(router, prefix=API_PREFIX, responses=ERROR_RESPONSES)
