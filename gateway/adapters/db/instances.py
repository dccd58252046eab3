"""Gateway processes and their heartbeats: a query whose runner stopped beating is an orphan."""

from __future__ import annotations

from sqlalchemy import delete, insert, select, update

from gateway.adapters.db import tables as t
from gateway.adapters.db.rows import Repo

I = t.gateway_instances.c  # noqa: E741 - the table's columns, as elsewhere


class InstanceRepo(Repo):
    def beat(self, instance_id: str, *, host: str, pid: int, started_at: str, at: str) -> None:
        """Say this process is alive (registering it on its first beat)."""
        if not self.conn.execute(update(t.gateway_instances).where(I.id == instance_id)
                                 .values(heartbeat_at=at)).rowcount:
            self.conn.execute(insert(t.gateway_instances).values(
                id=instance_id, host=host[:255], pid=pid, started_at=started_at,
                heartbeat_at=at))

    def live(self, *, since: str) -> set[str]:
        """The processes that beat at or after ``since``."""
        return set(self.conn.execute(select(I.id).where(I.heartbeat_at >= since)).scalars())

    def forget(self, *, before: str) -> None:
        """Drop processes silent since long before (their orphans are found without them)."""
        self.conn.execute(delete(t.gateway_instances).where(I.heartbeat_at < before))

    def leave(self, instance_id: str) -> None:
        self.conn.execute(delete(t.gateway_instances).where(I.id == instance_id))
