"""From a row to a record: what every repository does with what it reads.

A record's field named like a column takes that column's value; the fields a row holds
differently (budgets as ``*_units`` columns, flags stored as NULL) are given by name.
"""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Connection

from gateway.domain.budget import Budget

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
