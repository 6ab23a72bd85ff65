import uuid

from sqlmodel.ext.asyncio.session import AsyncSession

from app.models import AuditEvent, AuditEventType
from app.services.context import ClientInfo


def record(
    db: AsyncSession,
    event: AuditEventType,
    client: ClientInfo | None,
    user_id: uuid.UUID | None = None,
    detail: str | None = None,
) -> None:
    """Add an audit row to the caller's transaction; it is saved when the caller commits."""
    db.add(
        AuditEvent(
            user_id=user_id,
            type=event,
            ip_address=client.ip if client else None,
            user_agent=client.user_agent[:512] if client else None,
            detail=detail,
        )
    )
