"""The outbox: every email, written in the transaction of the event that causes it.

A message is `pending` until a worker delivers it (`sent`) or gives up after
`MAIL_MAX_ATTEMPTS` (`dead`). Its body holds live links, so it is stored encrypted
(`app/services/outbox.py`) and erased once sent; the row itself (recipient, template, when)
stays for support until the retention purge. A worker claims a row before it sends it
(`claim`, `claimed_until`), so that two workers never send the same message; a claim whose
worker died runs out and the message goes out later.
"""

import enum
import uuid
from datetime import datetime

from sqlalchemy import Index, LargeBinary
from sqlmodel import Field, SQLModel

from app.models.base import created_field, id_field, required_timestamp_field, timestamp_field


class MailStatus(enum.StrEnum):
    PENDING = "pending"
    SENT = "sent"
    DEAD = "dead"


class OutboxMessage(SQLModel, table=True):
    __tablename__ = "outbox_message"
    # The workers' question: which pending messages are due now, oldest first.
    __table_args__ = (
        Index("ix_outbox_message_status_next_attempt_at", "status", "next_attempt_at"),
    )

    id: uuid.UUID = id_field()
    recipient: str = Field(max_length=320)
    template: str = Field(max_length=64)
    subject: str = Field(max_length=200)
    # The rendered text and HTML, sealed with the outbox's own key; NULL once sent.
    body: bytes | None = Field(default=None, sa_type=LargeBinary, nullable=True)
    status: str = Field(default=MailStatus.PENDING, max_length=16)
    attempts: int = 0
    next_attempt_at: datetime = required_timestamp_field()
    # The exception's type name only: messages may quote addresses.
    last_error: str | None = Field(default=None, max_length=64)
    created_at: datetime = created_field()
    # Indexed for the retention purge.
    sent_at: datetime | None = timestamp_field(index=True)
    dead_at: datetime | None = timestamp_field(index=True)
    claim: str | None = Field(default=None, max_length=32)
    claimed_until: datetime | None = timestamp_field()
