import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

from app.schemas.fields import EmailAddress, Jwt, Password, Token
from app.schemas.user import UserRead


class RegisterRequest(BaseModel):
    email: EmailAddress
    password: Password


class LoginRequest(BaseModel):
    email: EmailAddress
    password: Password


class TokenForm(BaseModel):
    """The OAuth2 password form (RFC 6749 section 4.3), with the same input rules as login."""

    grant_type: Literal["password"] | None = None
    username: EmailAddress = Field(description="The account's email address")
    password: Password
    scope: Annotated[str, StringConstraints(max_length=255)] = ""


class LoginResponse(BaseModel):
    user: UserRead
    csrf_token: str


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"  # noqa: S105


class RefreshRequest(BaseModel):
    refresh_token: Jwt | None = Field(
        default=None, description="For API clients; browsers send the refresh_token cookie."
    )


class CsrfToken(BaseModel):
    csrf_token: str


class VerifyEmailRequest(BaseModel):
    token: Token


class EmailRequest(BaseModel):
    email: EmailAddress


class ResetPasswordRequest(BaseModel):
    token: Token
    new_password: Password


class ChangePasswordRequest(BaseModel):
    current_password: Password
    new_password: Password


class SessionRead(BaseModel):
    id: uuid.UUID
    device: str
    ip_address: str | None
    created_at: datetime
    last_seen_at: datetime
    current: bool


class Accepted(BaseModel):
    detail: str
