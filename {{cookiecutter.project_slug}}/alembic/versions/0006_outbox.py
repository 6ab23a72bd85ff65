"""The outbox: emails written with the event that causes them, delivered by a worker with
retries (`app/services/outbox.py`).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-08
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def timestamp(name: str, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "outbox_message",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("template", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        timestamp("next_attempt_at"),
        sa.Column("last_error", sa.String(length=64), nullable=True),
        timestamp("created_at"),
        timestamp("sent_at", nullable=True),
        timestamp("dead_at", nullable=True),
        sa.Column("claim", sa.String(length=32), nullable=True),
        timestamp("claimed_until", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_outbox_message"),
    )
    op.create_index(
        "ix_outbox_message_status_next_attempt_at",
        "outbox_message",
        ["status", "next_attempt_at"],
    )
    op.create_index("ix_outbox_message_sent_at", "outbox_message", ["sent_at"])
    op.create_index("ix_outbox_message_dead_at", "outbox_message", ["dead_at"])


def downgrade() -> None:
    op.drop_table("outbox_message")
