"""Leases on jobs that must run in one process at a time (`app/models/lease.py`).

Each step is one conditional UPDATE, so two workers asking at the same moment cannot both
win, on PostgreSQL and SQLite alike, without a lock server. The caller commits.
"""

from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlmodel import col, or_
from sqlmodel.ext.asyncio.session import AsyncSession

from app.models.lease import JobLease


async def acquire(
    db: AsyncSession, name: str, holder: str, now: datetime, until: datetime, *, due_only: bool
) -> bool:
    """Take the lease unless a live holder has it; with `due_only`, only once the job is due."""
    free = or_(col(JobLease.holder).is_(None), col(JobLease.held_until) <= now)
    condition = [col(JobLease.name) == name, free]
    if due_only:
        condition.append(col(JobLease.due_at) <= now)
    return await _update(db, condition, holder=holder, held_until=until)


async def renew(db: AsyncSession, name: str, holder: str, until: datetime) -> bool:
    """Keep the lease a while longer; False when it lapsed and another worker took it."""
    condition = [col(JobLease.name) == name, col(JobLease.holder) == holder]
    return await _update(db, condition, held_until=until)


async def release(db: AsyncSession, name: str, holder: str, next_due: datetime) -> None:
    condition = [col(JobLease.name) == name, col(JobLease.holder) == holder]
    await _update(db, condition, holder=None, held_until=None, due_at=next_due)


async def _update(db: AsyncSession, condition: list[Any], **values: Any) -> bool:
    result = await db.exec(update(JobLease).where(*condition).values(**values))
    return bool(result.rowcount)
