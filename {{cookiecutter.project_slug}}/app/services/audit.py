"""The audit trail. An event joins the transaction of the operation it describes.

The one exception is `record_now`: the evidence of an operation that is about to fail (a
failed sign-in, a reused refresh token, a session ended for a mismatched device or idleness)
must outlive the error that rolls that operation back.
"""

import uuid

from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from app.models import AuditEvent, AuditEventType
from app.services import users
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


async def record_now(
    db: AsyncSession,
    event: AuditEventType,
    client: ClientInfo | None,
    user_id: uuid.UUID | None = None,
    detail: str | None = None,
) -> None:
    """Record the event and commit it with whatever the transaction holds so far, before the
    caller raises: the only commit outside a public service method.

    An account deleted since the caller read it (a failed sign-in racing the deletion) cannot
    be pointed at: the event is kept without it, as for an address never registered, and what
    else the transaction held went with the account."""
    record(db, event, client, user_id, detail)
    try:
        await db.commit()
    except IntegrityError:
        await db.rollback()
        if user_id is None or await users.exists(db, user_id):
            raise
        record(db, event, client, None, detail)
        await db.commit()
