"""The database adapter: SQLAlchemy tables (:mod:`.tables`), the store (:mod:`.store`)."""

from gateway.adapters.db.store import Store, StoreUnavailable, translate

__all__ = ["Store", "StoreUnavailable", "translate"]
