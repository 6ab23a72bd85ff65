"""Every route of the app, in the order FastAPI tries them.

The routes go to `FastAPI(routes=...)` flat, not through `app.include_router`: since 0.137
FastAPI keeps an included router as a node and matches the path again inside it on every
request, which cost about 8% of an authenticated request. The most-called routes come first;
`OPENAPI_TAGS` keeps the docs in reading order.
"""

from starlette.routing import BaseRoute

from app.api.routes import admin, auth, health, users

OPENAPI_TAGS = [
    {"name": "auth", "description": "Sign-up, sign-in, tokens, sessions and passwords."},
    {"name": "users", "description": "The signed-in user's own account."},
    {"name": "admin", "description": "User, session and role management (permission-gated)."},
    {"name": "health", "description": "Liveness and readiness probes."},
]


def all_routes() -> list[BaseRoute]:
    return [*users.router.routes, *auth.router.routes, *admin.router.routes, *health.router.routes]
