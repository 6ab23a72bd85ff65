"""Dependencies that turn a request into what services need: database, client, principal.

They are `async def` even when they never await: FastAPI runs plain `def` dependencies in a
worker thread, a needless hop on every request.
"""

import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyCookie, OAuth2PasswordBearer
from sqlmodel.ext.asyncio.session import AsyncSession

from app.db.principals import Principal
from app.services.auth import AuthService
from app.services.context import ClientInfo, Context
from app.services.errors import CsrfFailed, NotAuthenticated, PermissionDenied
from app.services.sessions import SessionService, authenticate
from app.utils.client_ip import client_ip
from app.utils.cookies import ACCESS_COOKIE, CSRF_COOKIE

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "X-CSRF-Token"


async def get_context(request: Request) -> Context:
    return request.app.state.context


Ctx = Annotated[Context, Depends(get_context)]


async def get_db(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessionmaker() as session:
        yield session


Db = Annotated[AsyncSession, Depends(get_db)]


async def get_client(request: Request, ctx: Ctx) -> ClientInfo:
    peer = request.client.host if request.client else None
    return ClientInfo(
        ip=client_ip(peer, request.headers.get("x-forwarded-for"), ctx.settings.trusted_networks),
        user_agent=request.headers.get("user-agent", "")[:512],
    )


Client = Annotated[ClientInfo, Depends(get_client)]


async def get_auth_service(db: Db, ctx: Ctx) -> AuthService:
    return AuthService(db, ctx)


async def get_session_service(db: Db, ctx: Ctx) -> SessionService:
    return SessionService(db, ctx)


Auth = Annotated[AuthService, Depends(get_auth_service)]
Sessions = Annotated[SessionService, Depends(get_session_service)]

bearer_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)
cookie_scheme = APIKeyCookie(name=ACCESS_COOKIE, auto_error=False)


def check_csrf(request: Request, ctx: Context, session_id: str) -> None:
    """Cookie-authenticated unsafe requests must echo a token signed for this session."""
    if request.headers.get("sec-fetch-site") == "cross-site":
        raise CsrfFailed("Cross-site requests are not allowed")
    header = request.headers.get(CSRF_HEADER, "")
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not header or not hmac.compare_digest(header.encode(), cookie.encode()):
        raise CsrfFailed()
    if not ctx.csrf.is_valid(header, session_id):
        raise CsrfFailed()


async def get_principal(
    request: Request,
    bearer: Annotated[str | None, Depends(bearer_scheme)],
    cookie: Annotated[str | None, Depends(cookie_scheme)],
) -> Principal:
    """The caller, read afresh on every request: a revoked session is refused at once."""
    token = bearer or cookie
    if not token:
        raise NotAuthenticated()
    ctx: Context = request.app.state.context  # read directly: this runs on every request
    principal = await authenticate(ctx, request.app.state.principals, token)
    if bearer is None and request.method not in SAFE_METHODS:
        check_csrf(request, ctx, str(principal.session_id))
    return principal


CurrentUser = Annotated[Principal, Depends(get_principal)]


# --- Role-based access control -------------------------------------------------------------
# Roles and permissions come with the principal (the same query), so a role change applies to
# tokens already issued.


def require_permissions(*names: str) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency that lets the request through only with every named permission.

    Use it as `dependencies=[Depends(require_permissions("users:read"))]`, or as a
    parameter annotated `Annotated[Principal, Depends(require_permissions(...))]`.
    """
    return _require("permission", frozenset(names), lambda principal: principal.permissions)


def require_roles(*names: str) -> Callable[[Principal], Awaitable[Principal]]:
    """Like `require_permissions`, for role names (the user must hold every one)."""
    return _require("role", frozenset(names), lambda principal: principal.roles)


def _require(
    kind: str, required: frozenset[str], held: Callable[[Principal], tuple[str, ...]]
) -> Callable[[Principal], Awaitable[Principal]]:
    async def check(principal: CurrentUser) -> Principal:
        missing = required.difference(held(principal))
        if missing:
            raise PermissionDenied(f"Missing {kind}: {', '.join(sorted(missing))}")
        return principal

    check.__name__ = f"check_{kind}s"  # names the check in tracebacks and route introspection
    return check
