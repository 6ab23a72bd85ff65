"""The API: every module of `app/api/routes` that defines a `router`, in one router.

A new feature is a new module there, with nothing else to edit. The busiest areas come first
(Starlette tries routes in order), the others follow alphabetically; `OPENAPI_TAGS` keeps the
docs in reading order. `create_app` hands the app these routes flat (`api_routes`), and
`Service.include_router` (app/main.py) flattens any router included later the same way.
"""

import importlib
import inspect
import pkgutil
from collections.abc import Sequence
from functools import cache

from fastapi import APIRouter
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from starlette.routing import BaseRoute

from app.api import routes
from app.api.openapi import operation_id

FIRST = ("users", "auth", "admin", "health")

OPENAPI_TAGS = [
    {"name": "auth", "description": "Sign-up, sign-in, tokens, sessions and passwords."},
    {"name": "mfa", "description": "Second factors, passkeys and reauthentication."},
    {"name": "users", "description": "The signed-in user's own account."},
    {"name": "admin", "description": "User, session and role management (permission-gated)."},
    {"name": "health", "description": "Liveness and readiness probes."},
]


# Everything an APIRoute is built from: its path, endpoint and options.
ROUTE_ARGUMENTS = tuple(inspect.signature(APIRoute).parameters)


def api_router() -> APIRouter:
    names = [module.name for module in pkgutil.iter_modules(routes.__path__)]
    api = APIRouter(generate_unique_id_function=operation_id)
    for name in sorted(names, key=_mount_order):
        router = getattr(importlib.import_module(f"{routes.__name__}.{name}"), "router", None)
        if isinstance(router, APIRouter):
            api.include_router(router)
    return api


@cache
def api_routes() -> tuple[BaseRoute, ...]:
    """The API's routes, flat, built once per process and shared by every app made from them.

    A route holds no settings (its dependencies read them from `request.app.state` on each
    request), and building the routes is most of what `create_app` costs: a test suite that
    makes an app per test pays for them once. Change a route through the app that holds it
    (`app.include_router`, `app.dependency_overrides`), never by editing a shared route.
    """
    return tuple(flat_routes(api_router().routes))


def _mount_order(name: str) -> tuple[int, str]:
    return (FIRST.index(name) if name in FIRST else len(FIRST), name)


def flat_routes(routes: Sequence[BaseRoute]) -> list[BaseRoute]:
    """`routes` with each included router replaced by its routes, complete on their own.

    Since 0.137 FastAPI keeps an included router as one node and matches the path again inside
    it on every request, a cost every authenticated request would pay. A router holding
    anything but API routes (a websocket, a mount) stays a node: FastAPI serves it either way,
    only slower.
    """
    flattened: list[BaseRoute] = []
    for node in routes:
        contexts = list(iter_route_contexts([node]))
        included = all(context.original_route is not node for context in contexts)
        api_routes = [
            (context, context.original_route)
            for context in contexts
            if isinstance(context.original_route, APIRoute)
        ]
        if included and len(api_routes) == len(contexts):
            flattened.extend(_standalone(context, route) for context, route in api_routes)
        else:
            flattened.append(node)
    return flattened


def _standalone(context: RouteContext, route: APIRoute) -> APIRoute:
    """The route as its include made it: full path, merged dependencies, tags and responses."""
    arguments = {name: getattr(context, name, getattr(route, name)) for name in ROUTE_ARGUMENTS}
    return type(route)(**arguments)
