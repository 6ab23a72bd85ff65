"""Second factors and passkeys (SPEC section 8): enrolment, the second step of a sign-in,
passkey sign-in and reauthentication.

Enrolment routes take `RecentlyAuthenticatedEnrolling`: they need a recent sign-in, and stay
reachable for a user whose role requires a factor they have not set up yet.
"""

import uuid
from typing import Any

from fastapi import APIRouter, Response, status

from app.api.deps import (
    Client,
    Ctx,
    EnrollingUser,
    Mfa,
    Passkeys,
    RecentlyAuthenticatedEnrolling,
)
from app.api.responses import signed_in_response
from app.api.routes import API_PREFIX
from app.schemas.auth import LoginResponse, TokenPair
from app.schemas.errors import ERROR_RESPONSES
from app.schemas.mfa import (
    CodeRequest,
    MfaStatusRead,
    MfaVerifyRequest,
    PasskeyLoginOptionsRequest,
    PasskeyLoginRequest,
    PasskeyRead,
    PasskeyRegisterRequest,
    PasskeyRename,
    ReauthenticateRequest,
    RecoveryCodes,
    TotpSetupRead,
)

router = APIRouter(prefix=f"{API_PREFIX}/auth", tags=["mfa"], responses=ERROR_RESPONSES)

SignInAnswer = LoginResponse | TokenPair


@router.get("/mfa")
async def read_status(principal: EnrollingUser, mfa: Mfa) -> MfaStatusRead:
    return MfaStatusRead.of(await mfa.status(principal))


@router.post("/mfa/totp/setup")
async def totp_setup(principal: RecentlyAuthenticatedEnrolling, mfa: Mfa) -> TotpSetupRead:
    """A new secret for an authenticator app, pending until `/mfa/totp/enable` confirms it."""
    setup = await mfa.start_totp(principal)
    return TotpSetupRead(secret=setup.secret, otpauth_uri=setup.otpauth_uri, qr_svg=setup.qr_svg)


@router.post("/mfa/totp/enable")
async def totp_enable(
    body: CodeRequest, principal: RecentlyAuthenticatedEnrolling, mfa: Mfa, client: Client
) -> RecoveryCodes:
    """Turns the app on with a code from it; signs out every other session and returns the
    recovery codes, shown this once."""
    return RecoveryCodes(recovery_codes=await mfa.enable_totp(principal, body.code, client))


@router.delete("/mfa/totp", status_code=status.HTTP_204_NO_CONTENT)
async def totp_disable(principal: RecentlyAuthenticatedEnrolling, mfa: Mfa, client: Client) -> None:
    """Turns the app off (and the recovery codes with it, when no passkey is left)."""
    await mfa.disable_totp(principal, client)


@router.post("/mfa/recovery-codes")
async def recovery_codes(
    principal: RecentlyAuthenticatedEnrolling, mfa: Mfa, client: Client
) -> RecoveryCodes:
    """A new set of recovery codes; the old set stops working."""
    return RecoveryCodes(recovery_codes=await mfa.new_recovery_codes(principal, client))


@router.post("/mfa/verify", response_model=SignInAnswer)
async def verify(
    body: MfaVerifyRequest, mfa: Mfa, client: Client, ctx: Ctx, response: Response
) -> SignInAnswer:
    """The second step, with an app code or a recovery code: answers as the first step would
    have (cookies after /auth/login, a token pair after /auth/token)."""
    signed_in = await mfa.verify(body.mfa_token, body.code, client)
    return signed_in_response(signed_in, ctx, response)


@router.post("/passkeys/register/options")
async def passkey_registration_options(
    principal: RecentlyAuthenticatedEnrolling, passkeys: Passkeys
) -> dict[str, Any]:
    """`PublicKeyCredentialCreationOptions` as JSON, for `navigator.credentials.create()`
    (`PublicKeyCredential.parseCreationOptionsFromJSON`)."""
    return await passkeys.registration_options(principal)


@router.post("/passkeys/register", status_code=status.HTTP_201_CREATED)
async def passkey_register(
    body: PasskeyRegisterRequest,
    principal: RecentlyAuthenticatedEnrolling,
    passkeys: Passkeys,
    client: Client,
) -> PasskeyRead:
    credential = body.credential.model_dump(exclude_none=True)
    return PasskeyRead.of(await passkeys.register(principal, credential, body.name, client))


@router.patch("/passkeys/{passkey_id}")
async def passkey_rename(
    passkey_id: uuid.UUID,
    body: PasskeyRename,
    principal: RecentlyAuthenticatedEnrolling,
    passkeys: Passkeys,
) -> PasskeyRead:
    return PasskeyRead.of(await passkeys.rename(principal, passkey_id, body.name))


@router.delete("/passkeys/{passkey_id}", status_code=status.HTTP_204_NO_CONTENT)
async def passkey_remove(
    passkey_id: uuid.UUID,
    principal: RecentlyAuthenticatedEnrolling,
    passkeys: Passkeys,
    client: Client,
) -> None:
    await passkeys.remove(principal, passkey_id, client)


@router.post("/passkeys/login/options")
async def passkey_login_options(
    body: PasskeyLoginOptionsRequest, passkeys: Passkeys, client: Client
) -> dict[str, Any]:
    """`PublicKeyCredentialRequestOptions` as JSON. Without `mfa_token`, `allowCredentials`
    is empty: the browser offers every passkey it has for this site (usernameless)."""
    return await passkeys.sign_in_options(body.mfa_token, client)


@router.post("/passkeys/login", response_model=SignInAnswer)
async def passkey_login(
    body: PasskeyLoginRequest, passkeys: Passkeys, client: Client, ctx: Ctx, response: Response
) -> SignInAnswer:
    """A passkey sign-in, on its own or as the second step after a password."""
    credential = body.credential.model_dump(exclude_none=True)
    signed_in = await passkeys.sign_in(credential, body.mfa_token, client)
    return signed_in_response(signed_in, ctx, response)


@router.post("/reauthenticate", status_code=status.HTTP_204_NO_CONTENT)
async def reauthenticate(
    body: ReauthenticateRequest, principal: EnrollingUser, mfa: Mfa, client: Client
) -> None:
    """Confirms it is still you (password or a second-factor code), for the sensitive routes
    that answer `reauthentication_required`."""
    await mfa.reauthenticate(principal, client, password=body.password, code=body.code)
