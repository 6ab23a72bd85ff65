"""Dependencies that turn a request into what services need: database, client, principal.

They are `async def` even when they never await: FastAPI runs plain `def` dependencies in a
worker thread, a needless hop on every request.
"""

import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.openapi.models import OAuth2 as OAuth2Model
from fastapi.openapi.models import OAuthFlowPassword, OAuthFlows
from fastapi.security.base import SecurityBase
from fastapi.security.utils import get_authorization_scheme_param
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.routes import API_PREFIX
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
    # Every line, in order: a proxy that adds its own line leaves the client's line first.
    forwarded_for = ",".join(request.headers.getlist("x-forwarded-for"))
    return ClientInfo(
        ip=client_ip(peer, forwarded_for, ctx.settings.trusted_networks),
        user_agent=request.headers.get("user-agent", "")[:512],
    )


Client = Annotated[ClientInfo, Depends(get_client)]


async def get_auth_service(db: Db, ctx: Ctx) -> AuthService:
    return AuthService(db, ctx)


async def get_session_service(db: Db, ctx: Ctx) -> SessionService:
    return SessionService(db, ctx)


Auth = Annotated[AuthService, Depends(get_auth_service)]
Sessions = Annotated[SessionService, Depends(get_session_service)]


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


class AccessTokenAuth(SecurityBase):
    """The security scheme of every protected route: it turns the access token into the caller.

    API clients send `Authorization: Bearer <token>` (the /docs Authorize button gets one from
    /auth/token); browsers send the HttpOnly access cookie set by /auth/login. One dependency
    reads both, because FastAPI solves each sub-dependency on every request, and two
    header-reading schemes under this one cost a tenth of an authenticated request.
    """

    def __init__(self, form_url: str) -> None:
        self.scheme_name = "AccessToken"
        self.model = OAuth2Model(
            flows=OAuthFlows(password=OAuthFlowPassword(tokenUrl=form_url)),
            description=f"A bearer token, or the HttpOnly `{ACCESS_COOKIE}` cookie.",
        )

    async def __call__(self, request: Request) -> Principal:
        """The caller, read afresh on every request: a revoked session is refused at once."""
        scheme, bearer = get_authorization_scheme_param(request.headers.get("authorization"))
        from_cookie = scheme.lower() != "bearer" or not bearer
        token = request.cookies.get(ACCESS_COOKIE) if from_cookie else bearer
        if not token:
            raise NotAuthenticated()
        ctx: Context = request.app.state.context  # read directly: this runs on every request
        principal = await authenticate(ctx, request.app.state.principals, token)
        if from_cookie and request.method not in SAFE_METHODS:
            check_csrf(request, ctx, str(principal.session_id))
        return principal


get_principal = AccessTokenAuth(form_url=f"{API_PREFIX}/auth/token")  # the OAuth2 password form


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
