"""Second factors and passkeys: what the `/auth/mfa`, `/auth/passkeys` and
`/auth/reauthenticate` routes read and answer."""

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from app.domain import MfaStatus, PasskeyView, SecondFactor
from app.schemas.fields import Name, Password, Token

# A TOTP code (6 digits) or a recovery code (letters and digits, dashes and spaces allowed).
Code = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=6, max_length=32, pattern=r"^[A-Za-z0-9 -]+$"
    ),
]
# What the browser's `PublicKeyCredential.toJSON()` gives: base64url strings, bounded.
Base64Url = Annotated[str, StringConstraints(max_length=16384, pattern=r"^[A-Za-z0-9_-]*$")]
Transport = Annotated[str, StringConstraints(max_length=32, pattern=r"^[a-z-]+$")]
MAX_EXTENSION_DEPTH = 8


class MfaRequired(BaseModel):
    """The password was right; finish with POST /auth/mfa/verify or /auth/passkeys/login."""

    # Required in the documented response, so a generated client can tell it from a sign-in.
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)

    mfa_required: Literal[True] = True
    mfa_token: str
    methods: list[SecondFactor]


class MfaVerifyRequest(BaseModel):
    mfa_token: Token
    code: Code = Field(description="A code from the authenticator app, or a recovery code")


class CodeRequest(BaseModel):
    code: Code


class ReauthenticateRequest(BaseModel):
    """The password, or a code from a second factor: exactly one."""

    password: Password | None = None
    code: Code | None = None

    @model_validator(mode="after")
    def exactly_one(self) -> "ReauthenticateRequest":
        if (self.password is None) == (self.code is None):
            raise ValueError("send either password or code")
        return self


class PasskeyRead(BaseModel):
    id: uuid.UUID
    name: str
    created_at: datetime
    last_used_at: datetime | None

    @classmethod
    def of(cls, view: PasskeyView) -> "PasskeyRead":
        return cls(
            id=view.id, name=view.name, created_at=view.created_at, last_used_at=view.last_used_at
        )


class MfaStatusRead(BaseModel):
    totp: bool
    passkeys: list[PasskeyRead]
    recovery_codes_left: int

    @classmethod
    def of(cls, status: MfaStatus) -> "MfaStatusRead":
        return cls(
            totp=status.totp,
            passkeys=[PasskeyRead.of(passkey) for passkey in status.passkeys],
            recovery_codes_left=status.recovery_codes_left,
        )


class TotpSetupRead(BaseModel):
    secret: str = Field(description="Base32, for apps that cannot scan the QR code")
    otpauth_uri: str
    qr_svg: str = Field(description="The otpauth URI as an SVG QR code")


class RecoveryCodes(BaseModel):
    recovery_codes: list[str] = Field(description="Shown once: store them somewhere safe")


class CredentialResponse(BaseModel):
    clientDataJSON: Base64Url
    attestationObject: Base64Url | None = None
    authenticatorData: Base64Url | None = None
    signature: Base64Url | None = None
    userHandle: Base64Url | None = None
    # AuthenticatorTransport names (usb, nfc, ble, smart-card, hybrid, internal); a newer
    # one is accepted here and ignored when stored.
    transports: list[Transport] = Field(default=[], max_length=8)


class PublicKeyCredential(BaseModel):
    """The JSON of `PublicKeyCredential.toJSON()` (WebAuthn Level 3)."""

    id: Base64Url
    rawId: Base64Url
    type: Literal["public-key"]
    response: CredentialResponse
    authenticatorAttachment: Literal["platform", "cross-platform"] | None = None
    clientExtensionResults: dict[str, Any] = Field(default={}, max_length=16)

    @field_validator("clientExtensionResults")
    @classmethod
    def _shallow(cls, results: dict[str, Any]) -> dict[str, Any]:
        """Extension outputs nest a few levels (`prf.results.first`). Deeper JSON is refused
        here, not left to the JSON parser's recursion limit, which differs between Pythons
        (3.13 parses what 3.12 refuses)."""
        level: list[Any] = [results]
        for _ in range(MAX_EXTENSION_DEPTH):
            level = [
                child
                for value in level
                for child in (value.values() if isinstance(value, dict) else value)
                if isinstance(child, dict | list)
            ]
            if not level:
                return results
        raise ValueError(f"nested deeper than {MAX_EXTENSION_DEPTH} levels")


class PasskeyRegisterRequest(BaseModel):
    credential: PublicKeyCredential
    name: Name = "Passkey"


class PasskeyRename(BaseModel):
    name: Name


class PasskeyLoginOptionsRequest(BaseModel):
    mfa_token: Token | None = None


class PasskeyLoginRequest(BaseModel):
    credential: PublicKeyCredential
    mfa_token: Token | None = None
