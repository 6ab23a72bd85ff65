import uuid
from datetime import datetime

from pydantic import BaseModel, Field

from app.schemas.fields import Email, Password, Token
from app.schemas.user import UserRead


class RegisterRequest(BaseModel):
    email: Email
    password: Password


class LoginRequest(BaseModel):
    email: Email
    password: Password


class LoginResponse(BaseModel):
    user: UserRead
    csrf_token: str


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"  # noqa: S105


class RefreshRequest(BaseModel):
    refresh_token: Token | None = Field(
        default=None, description="For API clients; browsers send the refresh_token cookie."
    )


class CsrfToken(BaseModel):
    csrf_token: str


class VerifyEmailRequest(BaseModel):
    token: Token


class EmailRequest(BaseModel):
    email: Email


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
