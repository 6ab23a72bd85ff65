"""Dependencies that turn a request into what services need: database, client, principal.

They are `async def` even when they never await: FastAPI runs plain `def` dependencies in a
worker thread, a needless hop on every request.
"""

import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request
from fastapi.openapi.models import OAuth2 as OAuth2Model
from fastapi.openapi.models import OAuthFlowPassword, OAuthFlows
from fastapi.security.base import SecurityBase
from fastapi.security.utils import get_authorization_scheme_param
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.routes import API_PREFIX
from app.core.config import Settings
from app.core.security import CSRF_TOKEN_MAX_LENGTH
from app.core.tokens import TokenClaims, TokenError, TokenType
from app.domain import Principal as Principal  # re-exported: routes annotate with it
from app.models.base import utcnow
from app.schemas.auth import RefreshRequest
from app.services.auth import AuthService
from app.services.context import ClientInfo, Context
from app.services.errors import (
    CsrfFailed,
    InvalidToken,
    MfaEnrollmentRequired,
    NotAuthenticated,
    PermissionDenied,
    ReauthenticationRequired,
)
from app.services.mfa import MfaService
from app.services.passkeys import PasskeyService
from app.services.sessions import SessionService, authenticate
from app.utils.client_ip import client_ip
from app.utils.cookies import cookie_names

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "X-CSRF-Token"


async def get_context(request: Request) -> Context:
    context: Context = request.app.state.context
    return context


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


async def get_session_service(request: Request, db: Db, ctx: Ctx) -> SessionService:
    return SessionService(db, ctx, request.app.state.session_statements)


async def get_mfa_service(db: Db, ctx: Ctx) -> MfaService:
    return MfaService(db, ctx)


async def get_passkey_service(db: Db, ctx: Ctx) -> PasskeyService:
    return PasskeyService(db, ctx)


Auth = Annotated[AuthService, Depends(get_auth_service)]
Sessions = Annotated[SessionService, Depends(get_session_service)]
Mfa = Annotated[MfaService, Depends(get_mfa_service)]
Passkeys = Annotated[PasskeyService, Depends(get_passkey_service)]


def check_origin(request: Request, settings: Settings) -> None:
    """Refuse a cookie-carrying request that a foreign page made the browser send.

    `Origin`, when sent, must be a CORS origin or the API's own (the host the browser
    addressed, from `Host`, which a page cannot forge). A sandboxed page sends `null`.
    """
    if request.headers.get("sec-fetch-site") == "cross-site":
        raise CsrfFailed("Cross-site requests are not allowed")
    origin = request.headers.get("origin")
    if origin is None or origin in settings.cors_origins:
        return
    host = request.headers.get("host", "")
    if not host or urlsplit(origin).netloc.lower() != host.lower():
        raise CsrfFailed("Origin not allowed")


def check_csrf(request: Request, ctx: Context, session_id: str) -> None:
    """Cookie-authenticated unsafe requests must echo a token signed for this session."""
    check_origin(request, ctx.settings)
    header = request.headers.get(CSRF_HEADER, "")
    cookie = request.cookies.get(cookie_names(ctx.settings).csrf, "")
    if not header or len(header) > CSRF_TOKEN_MAX_LENGTH or not header.isascii():
        raise CsrfFailed()
    if not hmac.compare_digest(header.encode(), cookie.encode()):
        raise CsrfFailed()
    if not ctx.csrf.is_valid(header, session_id):
        raise CsrfFailed()


@dataclass(frozen=True, slots=True)
class SessionCredentials:
    """A genuine, unexpired token naming the caller's session (not yet looked up)."""

    token: str
    claims: TokenClaims
    from_cookie: bool


def session_credentials(
    request: Request, *, access: bool, bearer: bool, refresh_body: str | None
) -> SessionCredentials:
    """The first genuine token among those allowed, decoded once, CSRF checked for cookies.

    Access first (bearer, then cookie), then refresh (body, then cookie): an expired access
    token falls through to the refresh token, so logout works after the access token died.
    """
    ctx: Context = request.app.state.context
    names = cookie_names(ctx.settings)
    candidates: list[tuple[str | None, TokenType, bool]] = []
    if bearer:
        scheme, value = get_authorization_scheme_param(request.headers.get("authorization"))
        if scheme.lower() == "bearer":
            candidates.append((value, "access", False))
    if access:
        candidates.append((request.cookies.get(names.access), "access", True))
    candidates.append((refresh_body, "refresh", False))
    candidates.append((request.cookies.get(names.refresh), "refresh", True))
    presented = False
    for token, token_type, from_cookie in candidates:
        if not token:
            continue
        presented = True
        try:
            claims = ctx.tokens.decode(token, token_type)
        except TokenError:
            continue
        if from_cookie and request.method in SAFE_METHODS:
            check_origin(request, ctx.settings)
        elif from_cookie:
            check_csrf(request, ctx, str(claims.session_id))
        return SessionCredentials(token, claims, from_cookie)
    if presented:
        raise InvalidToken("Invalid or expired token")
    raise NotAuthenticated()


async def get_refresh_credentials(
    request: Request, body: RefreshRequest | None = None
) -> SessionCredentials:
    """The refresh token: API clients send it in the body, browsers the cookie (+ CSRF).

    Read, decoded and CSRF-checked here, once: `SessionService.rotate` gets the claims."""
    token = body.refresh_token if body is not None else None
    return session_credentials(request, access=False, bearer=False, refresh_body=token)


async def get_session_credentials(
    request: Request, body: RefreshRequest | None = None
) -> SessionCredentials:
    """Any token of the session: access (bearer or cookie), else refresh (body or cookie)."""
    token = body.refresh_token if body is not None else None
    return session_credentials(request, access=True, bearer=True, refresh_body=token)


async def get_cookie_session(request: Request) -> SessionCredentials:
    """The session of a browser's cookies: the access cookie, else the refresh cookie."""
    return session_credentials(request, access=True, bearer=False, refresh_body=None)


RefreshCredentials = Annotated[SessionCredentials, Depends(get_refresh_credentials)]
AnySessionCredentials = Annotated[SessionCredentials, Depends(get_session_credentials)]
CookieSession = Annotated[SessionCredentials, Depends(get_cookie_session)]


class AccessTokenAuth(SecurityBase):
    """The security scheme of every protected route: it turns the access token into the caller.

    API clients send `Authorization: Bearer <token>` (the /docs Authorize button gets one from
    /auth/token); browsers send the HttpOnly access cookie set by /auth/login. One dependency
    reads both, because FastAPI solves each sub-dependency on every request, and two
    header-reading schemes under this one would add their own work to every request.
    """

    def __init__(self, form_url: str, *, enforce_mfa: bool = True) -> None:
        self.enforce_mfa = enforce_mfa
        self.scheme_name = "AccessToken"
        self.model = OAuth2Model(
            flows=OAuthFlows(password=OAuthFlowPassword(tokenUrl=form_url)),
            description="A bearer token, or the HttpOnly access cookie set by /auth/login.",
        )

    async def __call__(self, request: Request) -> Principal:
        """The caller, read afresh on every request: a revoked session is refused at once."""
        scheme, bearer = get_authorization_scheme_param(request.headers.get("authorization"))
        from_cookie = scheme.lower() != "bearer" or not bearer
        ctx: Context = request.app.state.context  # read directly: this runs on every request
        token = request.cookies.get(cookie_names(ctx.settings).access) if from_cookie else bearer
        if not token:
            raise NotAuthenticated()
        principal = await authenticate(ctx, request.app.state.principals, token)
        if from_cookie and request.method not in SAFE_METHODS:
            check_csrf(request, ctx, str(principal.session_id))
        if self.enforce_mfa and needs_enrollment(principal, ctx.settings):
            raise MfaEnrollmentRequired()
        return principal


def needs_enrollment(principal: Principal, settings: Settings) -> bool:
    """MFA_REQUIRED_ROLES: holders of these roles have no access until they have a factor."""
    required = settings.mfa_required_roles
    return (
        bool(required)
        and not principal.has_second_factor
        and any(role in required for role in principal.roles)
    )


TOKEN_URL = f"{API_PREFIX}/auth/token"  # the OAuth2 password form of /docs
get_principal = AccessTokenAuth(form_url=TOKEN_URL)
# The routes a user must reach to set up the factor their role requires (and to see who they
# are, or leave): the only ones that take this instead of `CurrentUser`.
get_enrolling_principal = AccessTokenAuth(form_url=TOKEN_URL, enforce_mfa=False)

CurrentUser = Annotated[Principal, Depends(get_principal)]
EnrollingUser = Annotated[Principal, Depends(get_enrolling_principal)]


def _require_recent(principal: Principal, settings: Settings) -> Principal:
    """Step-up: sensitive changes need a session that proved who it is a moment ago, so a
    stolen session (or an unlocked device) cannot change the password or the factors."""
    age = (utcnow() - principal.authenticated_at).total_seconds()
    if age > settings.reauth_max_age_seconds:
        raise ReauthenticationRequired()
    return principal


async def require_recent(principal: CurrentUser, ctx: Ctx) -> Principal:
    return _require_recent(principal, ctx.settings)


async def require_recent_enrolling(principal: EnrollingUser, ctx: Ctx) -> Principal:
    return _require_recent(principal, ctx.settings)


RecentlyAuthenticated = Annotated[Principal, Depends(require_recent)]
# The same for the enrolment routes, reachable before MFA_REQUIRED_ROLES is satisfied.
RecentlyAuthenticatedEnrolling = Annotated[Principal, Depends(require_recent_enrolling)]


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
