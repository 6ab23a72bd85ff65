import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from app.domain import Principal, UserView
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

    @classmethod
    def of(cls, user: UserView | Principal) -> "UserRead":
        """The one way an account becomes a response: an admin's view of it, or the caller's."""
        return cls(
            id=user.id,
            email=user.email,
            is_active=user.is_active,
            is_verified=user.is_verified,
            roles=list(user.roles),
            permissions=list(user.permissions),
            created_at=user.created_at,
            last_login_at=user.last_login_at,
        )


class UserUpdate(BaseModel):
    """What a user may change about themselves. Anything else is refused (mass assignment)."""

    model_config = ConfigDict(extra="forbid")

    email: EmailAddress
    current_password: Password


class DeleteAccount(BaseModel):
    """The current password, to delete one's own account."""

    model_config = ConfigDict(extra="forbid")

    password: Password
