"""Second factors: TOTP, recovery codes and passkeys, and the challenges of a second step.

No secret is stored in a usable form: the TOTP secret is encrypted (`core/secretbox.py`),
recovery codes and `mfa_token`s are kept as hashes, a passkey is only its public key.
"""

import enum
import uuid
from datetime import datetime

from sqlalchemy import JSON, LargeBinary
from sqlmodel import Field, SQLModel

from app.domain import SignInFlow
from app.models.base import created_field, id_field, required_timestamp_field, timestamp_field


class TotpFactor(SQLModel, table=True):
    """An authenticator app. One per user: a new setup replaces a pending one."""

    __tablename__ = "totp_factor"

    id: uuid.UUID = id_field()
    user_id: uuid.UUID = Field(foreign_key="user.id", unique=True, ondelete="CASCADE")
    secret_encrypted: bytes = Field(sa_type=LargeBinary)
    # The time step of the last accepted code: a code is good once, and never an older one.
    last_used_step: int | None = None
    created_at: datetime = created_field()
    confirmed_at: datetime | None = timestamp_field()


class RecoveryCode(SQLModel, table=True):
    __tablename__ = "recovery_code"

    id: uuid.UUID = id_field()
    user_id: uuid.UUID = Field(foreign_key="user.id", index=True, ondelete="CASCADE")
    code_hash: str = Field(max_length=64)
    created_at: datetime = created_field()
    used_at: datetime | None = timestamp_field()


class Passkey(SQLModel, table=True):
    """A WebAuthn credential: the authenticator keeps the private key."""

    __tablename__ = "passkey"

    id: uuid.UUID = id_field()
    user_id: uuid.UUID = Field(foreign_key="user.id", index=True, ondelete="CASCADE")
    credential_id: bytes = Field(sa_type=LargeBinary, unique=True, index=True)
    public_key: bytes = Field(sa_type=LargeBinary)
    sign_count: int = 0
    transports: list[str] = Field(default_factory=list, sa_type=JSON)
    aaguid: str = Field(default="", max_length=36)
    name: str = Field(max_length=64)
    created_at: datetime = created_field()
    last_used_at: datetime | None = timestamp_field()


class ChallengePurpose(enum.StrEnum):
    """What a challenge is waiting for."""

    SECOND_FACTOR = "second_factor"  # a password was right; a code or a passkey completes it
    PASSKEY_SIGN_IN = "passkey_sign_in"  # a passkey alone (usernameless)
    PASSKEY_REGISTRATION = "passkey_registration"


class MfaChallenge(SQLModel, table=True):
    """A pending second step or passkey ceremony. Found by the hash of its `mfa_token`, or of
    the WebAuthn challenge when there is no token (a usernameless passkey sign-in)."""

    __tablename__ = "mfa_challenge"

    id: uuid.UUID = id_field()
    token_hash: str = Field(max_length=64, unique=True, index=True)
    user_id: uuid.UUID | None = Field(
        default=None, foreign_key="user.id", index=True, ondelete="CASCADE"
    )
    purpose: str = Field(max_length=32)
    flow: str = Field(default=SignInFlow.BROWSER, max_length=16)
    # The pending WebAuthn challenge, if a passkey ceremony was started for this step.
    webauthn_challenge: bytes | None = Field(default=None, sa_type=LargeBinary)
    attempts: int = 0
    created_at: datetime = created_field()
    # Indexed for the retention purge.
    expires_at: datetime = required_timestamp_field(index=True)
    used_at: datetime | None = timestamp_field(index=True)
