"""From a row to a record: what every repository does with what it reads.

A record's field named like a column takes that column's value; the fields a row holds
differently (budgets as ``*_units`` columns, flags stored as NULL) are given by name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import fields
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from sqlalchemy import ColumnElement, Connection, Row, Select, Table, func, or_, select

from gateway.domain.budget import Budget
from gateway.domain.paging import Found, Window

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

R = TypeVar("R", bound="DataclassInstance")


def record_of(kind: type[R], row: Any, **given: Any) -> R:
    """The ``kind`` record of ``row``: same-named columns, then ``given``."""
    columns = row._mapping
    same = {f.name: columns[f.name] for f in fields(kind) if f.name in columns and f.name not in given}
    return kind(**same, **given)


def budget_of(row: Any, suffix: str) -> Budget:
    """The budget in the row's ``epsilon_<suffix>``, ``delta_<suffix>``, ``rho_<suffix>`` columns."""
    columns = row._mapping
    return Budget(columns[f"epsilon_{suffix}"], columns[f"delta_{suffix}"], columns[f"rho_{suffix}"])


class Repo:
    """A repository works on the connection of the transaction it belongs to (``unit.Tx``)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def window(self, query: Select[Any], window: Window, *, searched: Sequence[ColumnElement[Any]],
               order: Sequence[ColumnElement[Any]],
               equal: Sequence[tuple[ColumnElement[Any], Any]] = ()) -> Found[Row[Any]]:
        """One page of ``query``'s rows: those where each ``equal`` column given a value (not
        None) has it, and any ``searched`` column holds the search text (case-insensitive,
        ``%`` and ``_`` taken literally), counted, then cut."""
        query = query.where(*(column == value for column, value in equal if value is not None))
        if window.needle:
            query = query.where(or_(*(column.icontains(window.needle, autoescape=True)
                                      for column in searched)))
        total = int(self.conn.execute(select(func.count()).select_from(query.subquery()))
                    .scalar() or 0)
        rows = self.conn.execute(query.order_by(*order).limit(window.size)
                                 .offset(window.offset(total))).all()
        return Found(list(rows), total, window.shown_page(total))

class RecordRepo(Repo, Generic[R]):
    """A repository of one table whose rows are one kind of record."""

    table: ClassVar[Table]
    to_record: Callable[[Any], R]  # a module's row mapper, as a staticmethod

    def first(self, *where: Any, order_by: Any = None) -> R | None:
        """The first row matching every condition (in ``order_by``), as a record."""
        statement = select(self.table).where(*where)
        if order_by is not None:
            statement = statement.order_by(order_by)
        row = self.conn.execute(statement).first()
        return self.to_record(row) if row else None
