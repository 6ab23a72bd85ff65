"""Pages of lists that grow, and the opaque cursor that continues them.

The cursor is the position of a page's last row, `(created_at, id)`, base64-encoded so that
clients treat it as a token rather than a value to build. It carries no secret: an admin who
edits one only moves to another place of a list they may read anyway.
"""

import base64
import binascii
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from app.db.keyset import Position
from app.services.errors import InvalidCursor

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    # None on the last page.
    next_cursor: str | None


def encode_cursor(position: Position) -> str:
    moment, ident = position
    raw = f"{moment.isoformat()}|{ident}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> Position | None:
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        moment, ident = raw.split("|")
        position = datetime.fromisoformat(moment), uuid.UUID(ident)
    except (binascii.Error, UnicodeError, ValueError) as error:
        raise InvalidCursor from error
    if position[0].tzinfo is None:
        raise InvalidCursor
    return position


def cut(
    rows: Sequence[R], limit: int, position: Callable[[R], Position]
) -> tuple[list[R], str | None]:
    """The page's rows (the query asked for one more) and the cursor after the last one."""
    shown = list(rows[:limit])
    more = len(rows) > limit
    return shown, encode_cursor(position(shown[-1])) if more else None
