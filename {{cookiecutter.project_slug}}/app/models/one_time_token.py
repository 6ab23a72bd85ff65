import enum
import uuid
from datetime import datetime

from sqlmodel import Field, SQLModel

from app.models.base import created_field, id_field, required_timestamp_field, timestamp_field


class TokenPurpose(enum.StrEnum):
    VERIFY_EMAIL = "verify_email"
    RESET_PASSWORD = "reset_password"
    # A pending email change: the new address takes over only when this link is used.
    CHANGE_EMAIL = "change_email"


class OneTimeToken(SQLModel, table=True):
    """An emailed token. Only its hash is stored, so a database leak yields nothing usable."""

    __tablename__ = "one_time_token"

    id: uuid.UUID = id_field()
    user_id: uuid.UUID = Field(foreign_key="user.id", index=True, ondelete="CASCADE")
    purpose: str = Field(max_length=32)
    token_hash: str = Field(max_length=64, unique=True, index=True)
    created_at: datetime = created_field()
    # Indexed for the retention purge.
    expires_at: datetime = required_timestamp_field(index=True)
    used_at: datetime | None = timestamp_field(index=True)
    # The address a `change_email` token switches the account to.
    new_email: str | None = Field(default=None, max_length=320)
