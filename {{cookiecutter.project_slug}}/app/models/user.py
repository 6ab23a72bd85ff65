import uuid
from datetime import datetime

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from app.models.base import created_field, id_field, timestamp_field, updated_field


class User(SQLModel, table=True):
    __tablename__ = "user"
    __table_args__ = (
        # Byte-wise operator class: the admin list's email-prefix search ranges over it too.
        Index(
            "ix_user_email", "email", unique=True, postgresql_ops={"email": "varchar_pattern_ops"}
        ),
        # The admin list's order (sign-up order, keyset pages).
        Index("ix_user_created_at_id", "created_at", "id"),
    )

    id: uuid.UUID = id_field()
    email: str = Field(max_length=320)
    password_hash: str = Field(max_length=255)
    is_active: bool = True
    is_verified: bool = False
    created_at: datetime = created_field()
    updated_at: datetime = updated_field()
    last_login_at: datetime | None = timestamp_field()
    password_changed_at: datetime = created_field()
