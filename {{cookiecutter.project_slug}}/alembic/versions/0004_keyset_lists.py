"""Indexes for the lists that grow: users in sign-up order and by email prefix, the audit log
newest first (all, per user, per type).

The email index is rebuilt with PostgreSQL's byte-wise operator class, which still enforces
uniqueness and serves equality, and also serves prefix ranges whatever the collation.

Revision ID: 0004
Revises: 0002
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AUDIT_INDEXES = {
    "ix_audit_event_created_at_id": ["created_at", "id"],
    "ix_audit_event_user_id_created_at_id": ["user_id", "created_at", "id"],
    "ix_audit_event_type_created_at_id": ["type", "created_at", "id"],
}


def upgrade() -> None:
    op.drop_index("ix_user_email", table_name="user")
    op.create_index(
        "ix_user_email",
        "user",
        ["email"],
        unique=True,
        postgresql_ops={"email": "varchar_pattern_ops"},
    )
    op.create_index("ix_user_created_at_id", "user", ["created_at", "id"])
    for name, columns in AUDIT_INDEXES.items():
        op.create_index(name, "audit_event", columns)
    # Each is now the leading part of a wider index above.
    op.drop_index("ix_audit_event_user_id", table_name="audit_event")
    op.drop_index("ix_audit_event_type", table_name="audit_event")


def downgrade() -> None:
    op.create_index("ix_audit_event_type", "audit_event", ["type"])
    op.create_index("ix_audit_event_user_id", "audit_event", ["user_id"])
    for name in AUDIT_INDEXES:
        op.drop_index(name, table_name="audit_event")
    op.drop_index("ix_user_created_at_id", table_name="user")
    op.drop_index("ix_user_email", table_name="user")
    op.create_index("ix_user_email", "user", ["email"], unique=True)
