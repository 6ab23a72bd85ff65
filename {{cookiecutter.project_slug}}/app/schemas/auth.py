import uuid
from datetime import datetime

from pydantic import BaseModel, EmailStr, Field

from app.schemas.user import UserRead

# Long enough for any allowed password; the policy gives the precise reason below this.
Password = Field(min_length=1, max_length=1024)


class RegisterRequest(BaseModel):
    email: EmailStr
    password: str = Password


class LoginRequest(BaseModel):
    email: EmailStr
    password: str = Password


class LoginResponse(BaseModel):
    user: UserRead
    csrf_token: str


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"  # noqa: S105


class RefreshRequest(BaseModel):
    refresh_token: str | None = Field(
        default=None, description="For API clients; browsers send the refresh_token cookie."
    )


class CsrfToken(BaseModel):
    csrf_token: str


class VerifyEmailRequest(BaseModel):
    token: str = Field(min_length=1, max_length=256)


class EmailRequest(BaseModel):
    email: EmailStr


class ResetPasswordRequest(BaseModel):
    token: str = Field(min_length=1, max_length=256)
    new_password: str = Password


class ChangePasswordRequest(BaseModel):
    current_password: str = Password
    new_password: str = Password


class SessionRead(BaseModel):
    id: uuid.UUID
    device: str
    ip_address: str | None
    created_at: datetime
    last_seen_at: datetime
    current: bool


class Accepted(BaseModel):
    detail: str
