import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from app.schemas.fields import EmailAddress, Password


class UserRead(BaseModel):
    id: uuid.UUID
    email: str
    is_active: bool
    is_verified: bool
    roles: list[str]
    permissions: list[str]
    created_at: datetime
    last_login_at: datetime | None


class UserUpdate(BaseModel):
    """What a user may change about themselves. Anything else is refused (mass assignment)."""

    model_config = ConfigDict(extra="forbid")

    email: EmailAddress
    current_password: Password
