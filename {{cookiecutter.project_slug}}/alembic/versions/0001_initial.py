"""Initial schema; seeds the `user` and `admin` roles and their permissions.

No user is created here: the first admin comes from `python -m app.cli create-admin`.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEED_NAMESPACE = uuid.UUID("6f1c2b9e-3d5a-4c1e-9a43-0d7c1e2f8b10")
PERMISSIONS = {
    "users:read": "List and view users",
    "users:write": "Change, deactivate and delete users",
    "roles:read": "List roles and their permissions",
    "roles:write": "Create roles and change their permissions",
    "sessions:read": "View any user's sessions",
    "sessions:write": "Revoke any user's sessions",
}
ROLES = {
    "user": ("Default role of every new account", []),
    "admin": ("Every permission", list(PERMISSIONS)),
}


def seed_id(kind: str, name: str) -> uuid.UUID:
    return uuid.uuid5(SEED_NAMESPACE, f"{kind}:{name}")


def timestamp(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "user",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("is_verified", sa.Boolean(), nullable=False),
        timestamp("created_at"),
        timestamp("updated_at"),
        timestamp("last_login_at", nullable=True),
        timestamp("password_changed_at"),
    )
    op.create_index("ix_user_email", "user", ["email"], unique=True)

    role = op.create_table(
        "role",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.String(length=255), nullable=False),
    )
    op.create_index("ix_role_name", "role", ["name"], unique=True)

    permission = op.create_table(
        "permission",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.String(length=255), nullable=False),
    )
    op.create_index("ix_permission_name", "permission", ["name"], unique=True)

    op.create_table(
        "user_role",
        sa.Column("user_id", sa.Uuid(), primary_key=True),
        sa.Column("role_id", sa.Uuid(), primary_key=True),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["role_id"], ["role.id"], ondelete="CASCADE"),
    )
    role_permission = op.create_table(
        "role_permission",
        sa.Column("role_id", sa.Uuid(), primary_key=True),
        sa.Column("permission_id", sa.Uuid(), primary_key=True),
        sa.ForeignKeyConstraint(["role_id"], ["role.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["permission_id"], ["permission.id"], ondelete="CASCADE"),
    )

    op.create_table(
        "session",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        timestamp("created_at"),
        timestamp("last_seen_at"),
        timestamp("expires_at"),
        timestamp("revoked_at", nullable=True),
        sa.Column("revoked_reason", sa.String(length=64), nullable=True),
        sa.Column("ip_address", sa.String(length=45), nullable=True),
        sa.Column("last_ip_address", sa.String(length=45), nullable=True),
        sa.Column("user_agent", sa.String(length=512), nullable=False),
        sa.Column("device_label", sa.String(length=128), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("refresh_generation", sa.Integer(), nullable=False),
        sa.Column("refresh_token_hash", sa.String(length=64), nullable=False),
        sa.Column("previous_refresh_token_hash", sa.String(length=64), nullable=True),
        timestamp("refresh_issued_at"),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"], ondelete="CASCADE"),
    )
    op.create_index("ix_session_user_id", "session", ["user_id"])

    op.create_table(
        "one_time_token",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("purpose", sa.String(length=32), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        timestamp("created_at"),
        timestamp("expires_at"),
        timestamp("used_at", nullable=True),
        sa.Column("new_email", sa.String(length=320), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"], ondelete="CASCADE"),
    )
    op.create_index("ix_one_time_token_token_hash", "one_time_token", ["token_hash"], unique=True)
    op.create_index("ix_one_time_token_user_id", "one_time_token", ["user_id"])

    op.create_table(
        "audit_event",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("ip_address", sa.String(length=45), nullable=True),
        sa.Column("user_agent", sa.String(length=512), nullable=True),
        sa.Column("detail", sa.String(length=512), nullable=True),
        timestamp("created_at"),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"], ondelete="SET NULL"),
    )
    op.create_index("ix_audit_event_type", "audit_event", ["type"])
    op.create_index("ix_audit_event_user_id", "audit_event", ["user_id"])

    op.bulk_insert(
        permission,
        [
            {"id": seed_id("permission", name), "name": name, "description": description}
            for name, description in PERMISSIONS.items()
        ],
    )
    op.bulk_insert(
        role,
        [
            {"id": seed_id("role", name), "name": name, "description": description}
            for name, (description, _permissions) in ROLES.items()
        ],
    )
    op.bulk_insert(
        role_permission,
        [
            {"role_id": seed_id("role", name), "permission_id": seed_id("permission", perm)}
            for name, (_description, permissions) in ROLES.items()
            for perm in permissions
        ],
    )


def downgrade() -> None:
    for table in (
        "audit_event",
        "one_time_token",
        "session",
        "role_permission",
        "user_role",
        "permission",
        "role",
        "user",
    ):
        op.drop_table(table)
