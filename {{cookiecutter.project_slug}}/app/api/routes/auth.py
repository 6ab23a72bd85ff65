import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request, Response, status

from app.api.deps import (
    AnySessionCredentials,
    Auth,
    Client,
    CookieSession,
    Ctx,
    CurrentUser,
    EnrollingUser,
    RecentlyAuthenticated,
    RefreshCredentials,
    Sessions,
)
from app.api.responses import signed_in_response
from app.api.routes import API_PREFIX
from app.domain import SignInFlow
from app.schemas.auth import (
    Accepted,
    ChangePasswordRequest,
    CsrfToken,
    EmailRequest,
    LoginRequest,
    LoginResponse,
    RegisterRequest,
    ResetPasswordRequest,
    SessionRead,
    TokenForm,
    TokenPair,
    VerifyEmailRequest,
)
from app.schemas.mfa import MfaRequired
from app.services.errors import UnsupportedMediaType
from app.utils.cookies import clear_auth_cookies, set_auth_cookies, set_csrf_cookie

router = APIRouter(prefix=f"{API_PREFIX}/auth", tags=["auth"])

ACCEPTED = "If the address can receive mail, a message is on its way."


async def require_json(request: Request) -> None:
    """Login CSRF: a foreign page can post a form, but not a JSON body."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise UnsupportedMediaType()


@router.post("/register", status_code=status.HTTP_202_ACCEPTED)
async def register(body: RegisterRequest, auth: Auth, client: Client) -> Accepted:
    """Same answer whether or not the address already has an account."""
    await auth.register(body.email, body.password, client)
    return Accepted(detail=ACCEPTED)


@router.post("/verify-email")
async def verify_email(body: VerifyEmailRequest, auth: Auth) -> Accepted:
    await auth.verify_email(body.token)
    return Accepted(detail="Email address verified")


@router.post("/verify-email/resend", status_code=status.HTTP_202_ACCEPTED)
async def resend_verification(body: EmailRequest, auth: Auth, client: Client) -> Accepted:
    await auth.resend_verification(body.email, client)
    return Accepted(detail=ACCEPTED)


@router.post(
    "/login", dependencies=[Depends(require_json)], response_model=LoginResponse | MfaRequired
)
async def login(
    body: LoginRequest, auth: Auth, client: Client, ctx: Ctx, response: Response
) -> LoginResponse | TokenPair | MfaRequired:
    """Browser sign-in: sets HttpOnly token cookies and returns the CSRF token. An account
    with a second factor gets `mfa_required` instead, and no cookies until the second step
    (`POST /auth/mfa/verify` or `/auth/passkeys/login`)."""
    outcome = await auth.login(body.email, body.password, client, SignInFlow.BROWSER)
    return signed_in_response(outcome, ctx, response)


@router.post("/token", response_model=TokenPair | MfaRequired)
async def token(
    form: Annotated[TokenForm, Form()], auth: Auth, client: Client, ctx: Ctx, response: Response
) -> LoginResponse | TokenPair | MfaRequired:
    """OAuth2 password flow for API clients and the /docs Authorize button; `mfa_required`
    for an account with a second factor, as for /auth/login."""
    outcome = await auth.login(form.username, form.password, client, SignInFlow.API)
    return signed_in_response(outcome, ctx, response)


@router.post(
    "/refresh",
    response_model=TokenPair | CsrfToken,
    # A token in the body needs nothing else; the refresh cookie needs the CSRF header.
    openapi_extra={"security": [{}, {"CsrfToken": []}]},
)
async def refresh(
    credentials: RefreshCredentials,
    sessions: Sessions,
    client: Client,
    ctx: Ctx,
    response: Response,
) -> TokenPair | CsrfToken:
    """Rotate the refresh token. API clients send it in the body and get a new pair;
    browsers send the cookie plus the X-CSRF-Token header and get new cookies."""
    tokens = await sessions.rotate(credentials.token, credentials.claims, client)
    if not credentials.from_cookie:
        return TokenPair(access_token=tokens.access_token, refresh_token=tokens.refresh_token)
    set_auth_cookies(response, ctx.settings, tokens)
    return CsrfToken(csrf_token=tokens.csrf_token)


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    openapi_extra={"security": [{"AccessToken": []}]},  # /docs sends its bearer token here too
)
async def logout(
    credentials: AnySessionCredentials, auth: Auth, client: Client, ctx: Ctx, response: Response
) -> None:
    """Ends this session. Any of its tokens will do (the refresh token once the access token
    has expired), and the cookies are cleared even when the session had already ended."""
    await auth.logout(credentials.claims.session_id, client)
    clear_auth_cookies(response, ctx.settings)


@router.get("/csrf")
async def csrf_token(
    credentials: CookieSession, sessions: Sessions, ctx: Ctx, response: Response
) -> CsrfToken:
    """A CSRF token for this browser's session, also set as the cookie: a reloaded page that
    lost the token it kept gets one back."""
    claims = credentials.claims
    await sessions.ensure_live(claims.session_id, claims.user_id)
    token = ctx.csrf.issue(str(claims.session_id))
    set_csrf_cookie(response, ctx.settings, token)
    return CsrfToken(csrf_token=token)


@router.post("/logout-all", status_code=status.HTTP_204_NO_CONTENT)
async def logout_all(
    principal: EnrollingUser, auth: Auth, client: Client, ctx: Ctx, response: Response
) -> None:
    """Sign out on every device, this one included."""
    await auth.logout_everywhere(principal.id, client)
    clear_auth_cookies(response, ctx.settings)


@router.get("/sessions", response_model=list[SessionRead])
async def list_sessions(principal: CurrentUser, sessions: Sessions) -> Response:
    """Where the account is signed in. `current` marks the session making this request."""
    listing = await sessions.list_own(principal)
    return Response(listing.text, media_type="application/json")


@router.delete("/sessions/{session_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_session(
    session_id: uuid.UUID, principal: CurrentUser, sessions: Sessions, client: Client
) -> None:
    await sessions.revoke_own(principal.id, session_id, client)


@router.post("/password/forgot", status_code=status.HTTP_202_ACCEPTED)
async def forgot_password(body: EmailRequest, auth: Auth, client: Client) -> Accepted:
    """Same answer whether or not the address has an account."""
    await auth.forgot_password(body.email, client)
    return Accepted(detail=ACCEPTED)


@router.post("/password/reset")
async def reset_password(body: ResetPasswordRequest, auth: Auth, client: Client) -> Accepted:
    """Sets the new password and signs the account out everywhere; sign in again after."""
    await auth.reset_password(body.token, body.new_password, client)
    return Accepted(detail="Password changed; sign in with the new password")


@router.post("/password/change", status_code=status.HTTP_204_NO_CONTENT)
async def change_password(
    body: ChangePasswordRequest, principal: RecentlyAuthenticated, auth: Auth, client: Client
) -> None:
    """Keeps this session and signs out every other one. Needs a recent sign-in."""
    await auth.change_password(principal, body.current_password, body.new_password, client)
