import enum
import uuid
from datetime import datetime

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from app.models.base import created_field, id_field


class AuditEventType(enum.StrEnum):
    LOGIN_SUCCEEDED = "login_succeeded"
    LOGIN_FAILED = "login_failed"
    REFRESH_REUSE_DETECTED = "refresh_reuse_detected"
    SESSION_REVOKED = "session_revoked"
    SESSION_FINGERPRINT_MISMATCH = "session_fingerprint_mismatch"
    SESSION_IP_CHANGED = "session_ip_changed"
    EMAIL_VERIFIED = "email_verified"
    EMAIL_CHANGED = "email_changed"
    PASSWORD_CHANGED = "password_changed"
    PASSWORD_RESET = "password_reset"
    USER_UPDATED = "user_updated"
    USER_DELETED = "user_deleted"
    ROLE_CREATED = "role_created"
    ROLE_UPDATED = "role_updated"
    REAUTHENTICATED = "reauthenticated"
    MFA_FAILED = "mfa_failed"
    TOTP_ENABLED = "totp_enabled"
    TOTP_DISABLED = "totp_disabled"
    RECOVERY_CODES_GENERATED = "recovery_codes_generated"
    RECOVERY_CODE_USED = "recovery_code_used"
    PASSKEY_ADDED = "passkey_added"
    PASSKEY_RENAMED = "passkey_renamed"
    PASSKEY_REMOVED = "passkey_removed"
    PASSKEY_SIGN_COUNT_REGRESSION = "passkey_sign_count_regression"
    MFA_RESET = "mfa_reset"


class AuditEvent(SQLModel, table=True):
    __tablename__ = "audit_event"
    # The admin log's pages, newest first: all events, one user's, one type's. The first also
    # serves the retention purge; the second the foreign key when a user is deleted.
    __table_args__ = (
        Index("ix_audit_event_created_at_id", "created_at", "id"),
        Index("ix_audit_event_user_id_created_at_id", "user_id", "created_at", "id"),
        Index("ix_audit_event_type_created_at_id", "type", "created_at", "id"),
    )

    id: uuid.UUID = id_field()
    user_id: uuid.UUID | None = Field(default=None, foreign_key="user.id", ondelete="SET NULL")
    type: str = Field(max_length=64)
    ip_address: str | None = Field(default=None, max_length=45)
    user_agent: str | None = Field(default=None, max_length=512)
    detail: str | None = Field(default=None, max_length=512)
    created_at: datetime = created_field()
