"""How a finished (or half-finished) sign-in is answered, whichever route finished it."""

from typing import overload

from fastapi import Response

from app.domain import SecondStepRequired, SignedIn, SignInFlow
from app.schemas.auth import LoginResponse, TokenPair
from app.schemas.mfa import MfaRequired
from app.schemas.user import UserRead
from app.services.context import Context
from app.utils.cookies import set_auth_cookies


@overload
def signed_in_response(
    outcome: SignedIn, ctx: Context, response: Response
) -> LoginResponse | TokenPair: ...


@overload
def signed_in_response(
    outcome: SignedIn | SecondStepRequired, ctx: Context, response: Response
) -> LoginResponse | TokenPair | MfaRequired: ...


def signed_in_response(
    outcome: SignedIn | SecondStepRequired, ctx: Context, response: Response
) -> LoginResponse | TokenPair | MfaRequired:
    """Browsers get cookies and the CSRF token; API clients a token pair; either gets
    `mfa_required` while a second step is pending. The flow comes from the route that started
    the sign-in, so a second step answers the way its first step would have."""
    if isinstance(outcome, SecondStepRequired):
        return MfaRequired(mfa_token=outcome.mfa_token, methods=list(outcome.methods))
    tokens = outcome.tokens
    if outcome.flow is SignInFlow.API:
        return TokenPair(access_token=tokens.access_token, refresh_token=tokens.refresh_token)
    set_auth_cookies(response, ctx.settings, tokens)
    return LoginResponse(user=UserRead.of(outcome.user), csrf_token=tokens.csrf_token)
