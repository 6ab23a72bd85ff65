"""Query pieces for lists that grow: keyset pages and email-prefix search.

A keyset page continues after the last row the client saw, `(created_at, id)`, instead of
skipping `offset` rows: each page costs the same however deep it is, and rows inserted meanwhile
neither repeat nor shift the rows of the next page.
"""

import uuid
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, tuple_
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Mapped
from sqlalchemy.sql.expression import FunctionElement
from sqlalchemy.types import Boolean
from sqlmodel.sql.expression import SelectOfScalar

Position = tuple[datetime, uuid.UUID]
T = TypeVar("T")


def page(
    query: SelectOfScalar[T],
    created_at: Any,
    ident: Any,
    after: Position | None,
    limit: int,
    *,
    newest_first: bool = False,
) -> SelectOfScalar[T]:
    """`limit + 1` rows after `after` in `(created_at, id)` order: the extra row tells the
    caller whether there is a next page. An index on `(created_at, id)` serves it."""
    if after is not None:
        # A row-value comparison, not `a > x OR (a = x AND id > y)`: both databases turn it
        # into a range of the index, where the OR form makes them filter every row before it.
        position, last = tuple_(created_at, ident), tuple_(*after)
        query = query.where(position < last if newest_first else position > last)
    if newest_first:
        query = query.order_by(created_at.desc(), ident.desc())
    else:
        query = query.order_by(created_at, ident)
    return query.limit(limit + 1)


class starts_with(FunctionElement[bool]):
    """`column` begins with `prefix`, compared byte by byte so that an index can serve it.

    `LIKE 'prefix%'` would need escaping, is case-insensitive on SQLite (no index), and on
    PostgreSQL needs a constant pattern. A range does neither: on SQLite plain `>=`/`<` (binary
    collation); on PostgreSQL the `~>=~`/`~<~` operators, which the email index's
    `varchar_pattern_ops` class serves whatever the database's collation.
    """

    type = Boolean()
    inherit_cache = True
    name = "starts_with"

    def __init__(self, column: ColumnElement[str] | Mapped[str], prefix: str) -> None:
        # Nothing a valid string continues with sorts after U+10FFFF, byte-wise in UTF-8.
        super().__init__(column, prefix, prefix + "\U0010ffff")


def _range(element: starts_with, low: str, high: str, compiler: Any, **kw: Any) -> str:
    column, start, end = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"({column} {low} {start} AND {column} {high} {end})"


@compiles(starts_with)
def _starts_with(element: starts_with, compiler: Any, **kw: Any) -> str:
    return _range(element, ">=", "<", compiler, **kw)


@compiles(starts_with, "postgresql")
def _starts_with_postgresql(element: starts_with, compiler: Any, **kw: Any) -> str:
    return _range(element, "~>=~", "~<~", compiler, **kw)
