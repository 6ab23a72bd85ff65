"""Passkeys (WebAuthn): registration and sign-in ceremonies through py_webauthn.

A passkey signs in on its own (usernameless: the browser offers the user's passkeys for this
site) or finishes a password sign-in as its second step. User verification (a PIN or a
biometric on the device) is always required, so a passkey sign-in is multi-factor by itself.
Each ceremony's challenge is stored (as an `mfa_challenge`) and used once. The sign count is
checked after the signature: an authentic assertion whose count went backwards means a cloned
authenticator, and is refused and audited.
"""

import json
import re
import uuid
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import (
    base64url_to_bytes,
    bytes_to_base64url,
    decode_credential_public_key,
    decoded_public_key_to_cryptography,
)
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from app.domain import PasskeyView, Principal, SignedIn, SignInFlow
from app.models import AuditEventType, ChallengePurpose, MfaChallenge, Passkey, User
from app.models.base import utcnow
from app.services import audit, challenges
from app.services.context import ClientInfo, Context
from app.services.errors import (
    AlreadyExists,
    InvalidMfaToken,
    InvalidPasskey,
    NotFound,
    PasskeyRejected,
)
from app.services.mfa import MfaService, drop_codes_without_factor, notify, passkey_view
from app.services.sign_in import SignIns

TRANSPORTS = {transport.value for transport in AuthenticatorTransport}
Options = dict[str, Any]
# Every challenge this service issues is base64url (64 random bytes); anything else names none
# of ours, and must not reach the lookup (a lone surrogate cannot even be hashed).
CHALLENGE = re.compile(r"[A-Za-z0-9_-]{16,128}")
# py_webauthn raises its own exceptions for most malformed credentials, but lets some parsing
# errors of client-supplied bytes escape as builtins (a COSE key without a field, bad base64 in
# `userHandle`, an unparsable attestation certificate): each is a refused credential, not a 500.
MALFORMED = (WebAuthnException, ValueError, TypeError, KeyError, IndexError)


def challenge_of(credential: dict[str, Any]) -> str:
    """The challenge the browser signed, from `clientDataJSON`: it names the ceremony.

    The JSON is the client's: nested deep enough it exhausts the parser's recursion, and its
    challenge must be base64url like every challenge the service issues."""
    try:
        client_data = json.loads(base64url_to_bytes(credential["response"]["clientDataJSON"]))
        challenge = client_data["challenge"]
    except (KeyError, TypeError, ValueError, RecursionError):
        challenge = None
    if not isinstance(challenge, str) or not CHALLENGE.fullmatch(challenge):
        raise PasskeyRejected("The credential names no challenge")
    return challenge


class PasskeyService:
    def __init__(self, db: AsyncSession, ctx: Context) -> None:
        self.db = db
        self.ctx = ctx
        self.sign_ins = SignIns(db, ctx)

    # --- registration ------------------------------------------------------------------------

    async def registration_options(self, principal: Principal) -> Options:
        existing = await self._passkeys(principal.id)
        options = generate_registration_options(
            rp_id=self.ctx.settings.rp_id,
            rp_name=self.ctx.settings.project_name,
            user_id=principal.id.bytes,
            user_name=principal.email,
            user_display_name=principal.email,
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.PREFERRED,
                user_verification=UserVerificationRequirement.REQUIRED,
            ),
            exclude_credentials=[_descriptor(passkey) for passkey in existing],
        )
        challenges.add(
            self.db,
            self.ctx,
            bytes_to_base64url(options.challenge),
            ChallengePurpose.PASSKEY_REGISTRATION,
            user_id=principal.id,
            webauthn_challenge=options.challenge,
        )
        await self.db.commit()
        return _json(options_to_json(options))

    async def register(
        self, principal: Principal, credential: dict[str, Any], name: str, client: ClientInfo
    ) -> PasskeyView:
        try:
            challenge = await challenges.live(
                self.db, challenge_of(credential), ChallengePurpose.PASSKEY_REGISTRATION
            )
        except (InvalidMfaToken, PasskeyRejected):
            raise InvalidPasskey("Unknown or expired registration; ask for new options") from None
        if challenge.user_id != principal.id or challenge.webauthn_challenge is None:
            raise InvalidPasskey("Unknown or expired registration; ask for new options")
        await challenges.use(self.db, challenge)
        try:
            verified = verify_registration_response(
                credential=credential,
                expected_challenge=challenge.webauthn_challenge,
                expected_rp_id=self.ctx.settings.rp_id,
                expected_origin=self.ctx.settings.rp_origins,
                require_user_verification=True,
            )
            # A key that is no valid point would make every later sign-in with it fail.
            decoded_public_key_to_cryptography(
                decode_credential_public_key(verified.credential_public_key)
            )
        except MALFORMED as error:
            await self.db.commit()  # the challenge stays used
            reason = error if isinstance(error, WebAuthnException) else "malformed credential"
            raise InvalidPasskey(f"This passkey could not be registered: {reason}") from None
        if await self._by_credential_id(verified.credential_id) is not None:
            await self.db.commit()
            raise AlreadyExists("This passkey is already registered")
        transports = credential.get("response", {}).get("transports") or []
        passkey = Passkey(
            user_id=principal.id,
            credential_id=verified.credential_id,
            public_key=verified.credential_public_key,
            sign_count=verified.sign_count,
            transports=[t for t in transports if t in TRANSPORTS],
            aaguid=verified.aaguid,
            name=name,
        )
        self.db.add(passkey)
        audit.record(self.db, AuditEventType.PASSKEY_ADDED, client, principal.id, detail=name)
        notify(self.ctx, self.db, principal.email, f"A passkey was added: {name}.")
        await self.db.commit()
        return passkey_view(passkey)

    async def rename(self, principal: Principal, passkey_id: uuid.UUID, name: str) -> PasskeyView:
        passkey = await self._own(principal, passkey_id)
        passkey.name = name
        self.db.add(passkey)
        audit.record(self.db, AuditEventType.PASSKEY_RENAMED, None, principal.id, detail=name)
        await self.db.commit()
        return passkey_view(passkey)

    async def remove(self, principal: Principal, passkey_id: uuid.UUID, client: ClientInfo) -> None:
        passkey = await self._own(principal, passkey_id)
        name = passkey.name
        await self.db.delete(passkey)
        await drop_codes_without_factor(self.db, principal.id)
        audit.record(self.db, AuditEventType.PASSKEY_REMOVED, client, principal.id, detail=name)
        notify(self.ctx, self.db, principal.email, f"A passkey was removed: {name}.")
        await self.db.commit()

    # --- sign-in -----------------------------------------------------------------------------

    async def sign_in_options(self, mfa_token: str | None, client: ClientInfo) -> Options:
        """Without a token: a usernameless sign-in (any of the site's passkeys the browser
        has). With one: the second step of that password sign-in, with that user's passkeys."""
        rp_id = self.ctx.settings.rp_id
        if mfa_token is None:
            await self.ctx.limiter.hit(self.ctx.limits.login_ip, client.ip_key)
            options = generate_authentication_options(
                rp_id=rp_id, user_verification=UserVerificationRequirement.REQUIRED
            )
            challenges.add(
                self.db,
                self.ctx,
                bytes_to_base64url(options.challenge),
                ChallengePurpose.PASSKEY_SIGN_IN,
                webauthn_challenge=options.challenge,
            )
        else:
            challenge = await challenges.live(self.db, mfa_token, ChallengePurpose.SECOND_FACTOR)
            if challenge.user_id is None:  # second steps always have their user
                raise InvalidMfaToken()
            passkeys = await self._passkeys(challenge.user_id)
            if not passkeys:
                raise NotFound("This account has no passkey")
            options = generate_authentication_options(
                rp_id=rp_id,
                allow_credentials=[_descriptor(passkey) for passkey in passkeys],
                user_verification=UserVerificationRequirement.REQUIRED,
            )
            challenge.webauthn_challenge = options.challenge
            self.db.add(challenge)
        await self.db.commit()
        return _json(options_to_json(options))

    async def sign_in(
        self, credential: dict[str, Any], mfa_token: str | None, client: ClientInfo
    ) -> SignedIn:
        """Verify an assertion and finish the sign-in: a new session, as after /auth/login
        (or /auth/token, when the token came from there)."""
        await self.ctx.limiter.hit(self.ctx.limits.login_ip, client.ip_key)
        signed = challenge_of(credential)
        if mfa_token is None:
            challenge = await challenges.live(self.db, signed, ChallengePurpose.PASSKEY_SIGN_IN)
        else:
            challenge = await challenges.live(self.db, mfa_token, ChallengePurpose.SECOND_FACTOR)
            # As for a code: the attempt counts before the assertion is looked at.
            await challenges.reserve_attempt(self.db, challenge)
        expected = challenge.webauthn_challenge
        if expected is None or bytes_to_base64url(expected) != signed:
            raise PasskeyRejected("This credential answers another challenge")
        passkey = await self._by_credential_id(_raw_id(credential))
        if mfa_token is not None and (passkey is None or passkey.user_id != challenge.user_id):
            # Not one of this account's passkeys (another user's, or none we know).
            owner = await self.db.get(User, challenge.user_id) if challenge.user_id else None
            if owner is not None:
                await self._second_step_refused(owner, client, "unknown passkey")
            raise PasskeyRejected()
        if passkey is None or not _owner_named(credential, passkey, required=mfa_token is None):
            raise PasskeyRejected()
        user = await self.db.get(User, passkey.user_id)
        if user is None or not user.is_active or not user.is_verified:
            raise PasskeyRejected()
        if not await self._verified(user, passkey, credential, challenge, expected, client):
            raise PasskeyRejected()
        await challenges.use(self.db, challenge)
        method = "passkey" if mfa_token is None else "password+passkey"
        signed_in = await self.sign_ins.complete(user, client, method, SignInFlow(challenge.flow))
        await self.ctx.limiter.reset(self.ctx.limits.login_account, user.email)
        return signed_in

    async def _verified(
        self,
        user: User,
        passkey: Passkey,
        credential: dict[str, Any],
        challenge: MfaChallenge,
        expected: bytes,
        client: ClientInfo,
    ) -> bool:
        """The assertion's signature, origin, RP ID, user verification and sign count; each
        failure counts against the account's allowance and is audited."""
        new_count: int | None = None

        async def verify() -> bool:
            nonlocal new_count
            try:
                verified = verify_authentication_response(
                    credential=credential,
                    expected_challenge=expected,
                    expected_rp_id=self.ctx.settings.rp_id,
                    expected_origin=self.ctx.settings.rp_origins,
                    credential_public_key=passkey.public_key,
                    credential_current_sign_count=0,  # compared below, once it is authentic
                    require_user_verification=True,
                )
            except MALFORMED:
                return False
            new_count = verified.new_sign_count
            return True

        limit = self.ctx.limits.login_account
        authentic = await self.ctx.limiter.attempt(limit, user.email, verify, release=False)
        if not authentic or new_count is None:
            why = "passkey assertion refused"
            if challenge.user_id is None:  # a passkey alone: nobody entered the password
                await audit.record_now(self.db, AuditEventType.MFA_FAILED, client, user.id, why)
                return False
            await self._second_step_refused(user, client, why)
            return False
        if (new_count or passkey.sign_count) and new_count <= passkey.sign_count:
            detail = f"{passkey.name}: {new_count} after {passkey.sign_count}"
            await audit.record_now(
                self.db, AuditEventType.PASSKEY_SIGN_COUNT_REGRESSION, client, user.id, detail
            )
            return False
        passkey.sign_count = new_count
        passkey.last_used_at = utcnow()
        self.db.add(passkey)
        return True

    async def _second_step_refused(self, user: User, client: ClientInfo, why: str) -> None:
        """A failed second step, like a wrong code (its attempt was counted before the check):
        audited, and the owner told (whoever tried has the password)."""
        await MfaService(self.db, self.ctx).second_step_failed(user, client, why)

    # --- internals ---------------------------------------------------------------------------

    async def _passkeys(self, user_id: uuid.UUID) -> list[Passkey]:
        result = await self.db.exec(select(Passkey).where(col(Passkey.user_id) == user_id))
        return list(result.all())

    async def _by_credential_id(self, credential_id: bytes) -> Passkey | None:
        result = await self.db.exec(
            select(Passkey)
            .where(col(Passkey.credential_id) == credential_id)
            .execution_options(populate_existing=True)
        )
        return result.first()

    async def _own(self, principal: Principal, passkey_id: uuid.UUID) -> Passkey:
        """Another user's passkey answers exactly like an unknown one: 404."""
        passkey = await self.db.get(Passkey, passkey_id)
        if passkey is None or passkey.user_id != principal.id:
            raise NotFound("Passkey not found")
        return passkey


def _descriptor(passkey: Passkey) -> PublicKeyCredentialDescriptor:
    return PublicKeyCredentialDescriptor(
        id=passkey.credential_id,
        transports=[AuthenticatorTransport(t) for t in passkey.transports if t in TRANSPORTS],
    )


def _owner_named(credential: dict[str, Any], passkey: Passkey, *, required: bool) -> bool:
    """WebAuthn §7.2: `userHandle` (not covered by the signature) must name the passkey's
    owner, and a sign-in that names no user beforehand needs it (discoverable passkeys
    always return it; a security key may not, as a second step)."""
    handle = credential.get("response", {}).get("userHandle")
    if handle is None:
        return not required
    try:
        return base64url_to_bytes(handle) == passkey.user_id.bytes
    except (TypeError, ValueError):
        return False


def _raw_id(credential: dict[str, Any]) -> bytes:
    try:
        return base64url_to_bytes(credential["rawId"])
    except (KeyError, TypeError, ValueError):
        raise PasskeyRejected("Malformed credential id") from None


def _json(text: str) -> Options:
    options: Options = json.loads(text)
    return options
