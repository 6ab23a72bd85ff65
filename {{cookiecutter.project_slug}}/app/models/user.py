import uuid
from datetime import datetime

from sqlmodel import Field, SQLModel

from app.models.base import created_field, id_field, timestamp_field, updated_field


class User(SQLModel, table=True):
    __tablename__ = "user"

    id: uuid.UUID = id_field()
    email: str = Field(max_length=320, unique=True, index=True)
    password_hash: str = Field(max_length=255)
    is_active: bool = True
    is_verified: bool = False
    created_at: datetime = created_field()
    updated_at: datetime = updated_field()
    last_login_at: datetime | None = timestamp_field()
    password_changed_at: datetime = created_field()
