"""The database adapter: tables, the store, and one repository per aggregate.

    store.writing() as tx:   tx.users  tx.tokens  tx.datasets  tx.grants
                             tx.applications  tx.queries  tx.audit

Repositories return frozen values from :mod:`gateway.domain.records`, never rows.
SQLAlchemy's errors become :class:`StoreUnavailable` (503), :class:`IdempotencyKeyTaken`
(409) or :class:`StoreError` (500) in :mod:`.store`, once.
"""

from gateway.adapters.db.store import IdempotencyKeyTaken, Store, StoreError, StoreUnavailable
from gateway.adapters.db.unit import Tx

__all__ = ["IdempotencyKeyTaken", "Store", "StoreError", "StoreUnavailable", "Tx"]
