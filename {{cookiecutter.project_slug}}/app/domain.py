"""What services hand back: plain snapshots, attached to no database session.

Routers shape them into response schemas; services never see a schema.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the user behind a live session, read for this request.

    A snapshot, not attached to any database session: services that change the user load it.
    """

    id: uuid.UUID
    session_id: uuid.UUID
    email: str
    is_verified: bool
    created_at: datetime
    last_login_at: datetime | None
    # When this session last proved who the user is (`RecentlyAuthenticated` reads it).
    authenticated_at: datetime
    has_second_factor: bool
    roles: tuple[str, ...]
    permissions: tuple[str, ...]

    @property
    def is_active(self) -> bool:
        """A principal only exists for an active user."""
        return True


@dataclass(frozen=True, slots=True)
class UserView:
    """An account with the roles and permissions it holds now."""

    id: uuid.UUID
    email: str
    is_active: bool
    is_verified: bool
    created_at: datetime
    last_login_at: datetime | None
    roles: tuple[str, ...]
    permissions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SessionView:
    """A live session as lists show it: the columns they need, not the whole row (the refresh
    state and the device fingerprint stay in the database)."""

    id: uuid.UUID
    device_label: str
    ip_address: str | None
    last_ip_address: str | None
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class RenderedJson:
    """A JSON document the database rendered, passed to the client as it is."""

    text: str


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    session_id: uuid.UUID
    access_token: str
    refresh_token: str
    csrf_token: str


class SignInFlow(StrEnum):
    """Which endpoint started a sign-in: its second step answers the same way."""

    BROWSER = "browser"  # /auth/login: cookies and a CSRF token
    API = "api"  # /auth/token: a token pair


@dataclass(frozen=True, slots=True)
class SignedIn:
    user: UserView
    tokens: IssuedTokens
    flow: SignInFlow


# What can finish a sign-in after the password, in the order a client should offer them.
SecondFactor = Literal["totp", "passkey", "recovery_code"]


@dataclass(frozen=True, slots=True)
class SecondStepRequired:
    """The password was right, but the account has a second factor: no session yet."""

    mfa_token: str
    methods: tuple[SecondFactor, ...]


@dataclass(frozen=True, slots=True)
class PasskeyView:
    id: uuid.UUID
    name: str
    created_at: datetime
    last_used_at: datetime | None


@dataclass(frozen=True, slots=True)
class MfaStatus:
    totp: bool
    passkeys: tuple[PasskeyView, ...]
    recovery_codes_left: int


@dataclass(frozen=True, slots=True)
class TotpSetup:
    secret: str
    otpauth_uri: str
    qr_svg: str


@dataclass(frozen=True, slots=True)
class RoleView:
    id: uuid.UUID
    name: str
    description: str
    permissions: tuple[str, ...]


class RevokeReason(StrEnum):
    """Why a session ended, as stored on the session and in its audit event.

    Reasons, not secrets: the `noqa`s silence the hard-coded password check their names trip.
    """

    LOGOUT = "logout"
    LOGOUT_ALL = "logout_all"
    REVOKED_BY_USER = "revoked_by_user"
    REVOKED_BY_ADMIN = "revoked_by_admin"
    REVOKED_BY_OPERATOR = "revoked_by_operator"
    PASSWORD_CHANGED = "password_changed"  # noqa: S105
    PASSWORD_RESET_BY_OPERATOR = "password_reset_by_operator"  # noqa: S105
    DEACTIVATED = "deactivated"
    IDLE_TIMEOUT = "idle_timeout"
    DEVICE_MISMATCH = "device_mismatch"
    REFRESH_TOKEN_REUSE = "refresh_token_reuse"  # noqa: S105
    MFA_ENABLED = "mfa_enabled"
