"""Retention: indexes on when sessions, one-time tokens and challenges end, and the lease that
lets one worker at a time purge what is past its retention.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ENDED_AT = {
    "session": ["expires_at", "revoked_at"],
    "one_time_token": ["expires_at", "used_at"],
    "mfa_challenge": ["expires_at", "used_at"],
}


def upgrade() -> None:
    for table, columns in ENDED_AT.items():
        for column in columns:
            op.create_index(f"ix_{table}_{column}", table, [column])
    lease = op.create_table(
        "job_lease",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=128), nullable=True),
        sa.Column("held_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_job_lease")),
    )
    # Due at once: a new deployment purges what it inherited on its first round.
    op.bulk_insert(lease, [{"name": "purge", "due_at": datetime(2000, 1, 1, tzinfo=UTC)}])


def downgrade() -> None:
    op.drop_table("job_lease")
    for table, columns in ENDED_AT.items():
        for column in columns:
            op.drop_index(f"ix_{table}_{column}", table_name=table)
