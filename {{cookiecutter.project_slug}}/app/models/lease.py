"""Leases: which process may run a job that must never run twice at once (the purge).

One row per job. A lease is a row that names its holder until `held_until`; a holder that dies
loses it when that time passes. `due_at` is when the job is next due, shared by every worker
and kept across restarts, so a service redeployed every few minutes still purges on schedule.
"""

from datetime import datetime

from sqlmodel import Field, SQLModel

from app.models.base import required_timestamp_field, timestamp_field


class JobLease(SQLModel, table=True):
    __tablename__ = "job_lease"

    name: str = Field(primary_key=True, max_length=64)
    holder: str | None = Field(default=None, max_length=128)
    held_until: datetime | None = timestamp_field()
    due_at: datetime = required_timestamp_field()
