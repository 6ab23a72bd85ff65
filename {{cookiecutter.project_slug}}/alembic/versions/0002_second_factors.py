"""Second factors and passkeys: TOTP, recovery codes, passkeys, pending second steps; when
and how each session last authenticated.

Existing sessions count as authenticated when they were created, by password.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def timestamp(name: str, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def user_id(table: str, nullable: bool = False) -> list[Any]:
    """The owner column, its cascading foreign key and its index name."""
    return [
        sa.Column("user_id", sa.Uuid(), nullable=nullable),
        sa.ForeignKeyConstraint(
            ["user_id"], ["user.id"], name=f"fk_{table}_user_id_user", ondelete="CASCADE"
        ),
    ]


def upgrade() -> None:
    op.create_table(
        "totp_factor",
        sa.Column("id", sa.Uuid(), nullable=False),
        *user_id("totp_factor"),
        sa.Column("secret_encrypted", sa.LargeBinary(), nullable=False),
        sa.Column("last_used_step", sa.Integer(), nullable=True),
        timestamp("created_at"),
        timestamp("confirmed_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_totp_factor"),
        sa.UniqueConstraint("user_id", name="uq_totp_factor_user_id"),
    )

    op.create_table(
        "recovery_code",
        sa.Column("id", sa.Uuid(), nullable=False),
        *user_id("recovery_code"),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        timestamp("created_at"),
        timestamp("used_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_recovery_code"),
    )
    op.create_index("ix_recovery_code_user_id", "recovery_code", ["user_id"])

    op.create_table(
        "passkey",
        sa.Column("id", sa.Uuid(), nullable=False),
        *user_id("passkey"),
        sa.Column("credential_id", sa.LargeBinary(), nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("sign_count", sa.Integer(), nullable=False),
        sa.Column("transports", sa.JSON(), nullable=False),
        sa.Column("aaguid", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        timestamp("created_at"),
        timestamp("last_used_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_passkey"),
    )
    op.create_index("ix_passkey_credential_id", "passkey", ["credential_id"], unique=True)
    op.create_index("ix_passkey_user_id", "passkey", ["user_id"])

    op.create_table(
        "mfa_challenge",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        *user_id("mfa_challenge", nullable=True),
        sa.Column("purpose", sa.String(length=32), nullable=False),
        sa.Column("flow", sa.String(length=16), nullable=False),
        sa.Column("webauthn_challenge", sa.LargeBinary(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        timestamp("created_at"),
        timestamp("expires_at"),
        timestamp("used_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_mfa_challenge"),
    )
    op.create_index("ix_mfa_challenge_token_hash", "mfa_challenge", ["token_hash"], unique=True)
    op.create_index("ix_mfa_challenge_user_id", "mfa_challenge", ["user_id"])

    with op.batch_alter_table("session") as batch:
        # Existing rows get their creation time, then the column needs no default.
        batch.add_column(
            sa.Column(
                "authenticated_at",
                sa.DateTime(timezone=True),
                nullable=False,
                server_default=sa.text("CURRENT_TIMESTAMP"),
            )
        )
        batch.add_column(
            sa.Column(
                "auth_method", sa.String(length=32), nullable=False, server_default="password"
            )
        )
    op.execute(sa.text("UPDATE session SET authenticated_at = created_at"))
    with op.batch_alter_table("session") as batch:
        batch.alter_column("authenticated_at", server_default=None)
        batch.alter_column("auth_method", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("session") as batch:
        batch.drop_column("auth_method")
        batch.drop_column("authenticated_at")
    op.drop_table("mfa_challenge")
    op.drop_table("passkey")
    op.drop_table("recovery_code")
    op.drop_table("totp_factor")
