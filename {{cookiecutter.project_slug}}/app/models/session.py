import uuid
from datetime import datetime

from sqlmodel import Field, SQLModel

from app.models.base import created_field, id_field, required_timestamp_field, timestamp_field


class DeviceSession(SQLModel, table=True):
    """One login on one device.

    The refresh token is never stored: only the hash of the current one and of its
    predecessor, plus the generation counter that rotation compares and swaps.
    """

    __tablename__ = "session"

    id: uuid.UUID = id_field()
    user_id: uuid.UUID = Field(foreign_key="user.id", index=True, ondelete="CASCADE")
    created_at: datetime = created_field()
    last_seen_at: datetime = created_field()
    # Indexed for the retention purge, which deletes by when a session ended.
    expires_at: datetime = required_timestamp_field(index=True)
    revoked_at: datetime | None = timestamp_field(index=True)
    revoked_reason: str | None = Field(default=None, max_length=64)

    ip_address: str | None = Field(default=None, max_length=45)
    last_ip_address: str | None = Field(default=None, max_length=45)
    user_agent: str = Field(default="", max_length=512)
    device_label: str = Field(default="Unknown device", max_length=128)
    fingerprint: str = Field(max_length=64)

    refresh_generation: int = 0
    refresh_token_hash: str = Field(max_length=64)
    previous_refresh_token_hash: str | None = Field(default=None, max_length=64)
    refresh_issued_at: datetime = created_field()

    # When the user last proved who they are on this session (sign-in or reauthentication):
    # sensitive changes need it to be recent. And how they signed in, for notices.
    authenticated_at: datetime = created_field()
    auth_method: str = Field(default="password", max_length=32)
