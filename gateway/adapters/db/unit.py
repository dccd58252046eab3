"""One transaction seen through the repositories (one per aggregate)."""

from __future__ import annotations

from sqlalchemy import Connection

from gateway.adapters.db.audit import AuditRepo
from gateway.adapters.db.datasets import DatasetRepo
from gateway.adapters.db.grants import GrantRepo
from gateway.adapters.db.instances import InstanceRepo
from gateway.adapters.db.queries import QueryRepo
from gateway.adapters.db.requests import ApplicationRepo
from gateway.adapters.db.users import TokenRepo, UserRepo


class Tx:
    """``store.writing()`` / ``store.reading()`` yield one; every repository shares its
    connection, so what they do commits or rolls back together."""

    def __init__(self, conn: Connection) -> None:
        self.users = UserRepo(conn)
        self.tokens = TokenRepo(conn)
        self.datasets = DatasetRepo(conn)
        self.grants = GrantRepo(conn)
        self.applications = ApplicationRepo(conn)
        self.queries = QueryRepo(conn)
        self.audit = AuditRepo(conn)
        self.instances = InstanceRepo(conn)
