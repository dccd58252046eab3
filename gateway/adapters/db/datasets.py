"""Registered datasets and what has been spent on each (the dataset-wide caps)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select, update

from gateway.adapters.db import tables as t
from gateway.adapters.db.rows import RecordRepo, budget_of, record_of
from gateway.domain.budget import Budget
from gateway.domain.records import DatasetRow

D = t.datasets.c


def _dataset(row: Any) -> DatasetRow:
    return record_of(DatasetRow, row, spent=budget_of(row, "spent_units"))


class DatasetRepo(RecordRepo[DatasetRow]):
    table = t.datasets
    to_record = staticmethod(_dataset)

    def get(self, name: str) -> DatasetRow | None:
        return self.first(D.name == name)

    def all(self) -> list[DatasetRow]:
        return [_dataset(r) for r in self.conn.execute(select(t.datasets).order_by(D.name))]

    def save(self, name: str, *, new: bool, **values: Any) -> None:
        """Insert a dataset (nothing spent yet) or replace its registration."""
        if new:
            self.conn.execute(insert(t.datasets).values(name=name, epsilon_spent_units=0,
                                                        delta_spent_units=0, **values))
        else:
            self.conn.execute(update(t.datasets).where(D.name == name).values(**values))

    def spent(self, name: str) -> Budget:
        row = self.conn.execute(select(D.epsilon_spent_units, D.delta_spent_units,
                                       D.rho_spent_units)
                                .where(D.name == name)).one()
        return Budget(row.epsilon_spent_units, row.delta_spent_units, row.rho_spent_units)

    def spend(self, name: str, cost: Budget) -> None:
        self.conn.execute(update(t.datasets).where(D.name == name).values(
            epsilon_spent_units=D.epsilon_spent_units + cost.epsilon_units,
            delta_spent_units=D.delta_spent_units + cost.delta_units,
            rho_spent_units=D.rho_spent_units + cost.rho_units))
