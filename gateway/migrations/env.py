"""Alembic environment: runs on the connection the Store hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from gateway.adapters.db.tables import metadata

target_metadata = metadata


def run() -> None:
    conn = context.config.attributes.get("connection")
    if conn is None:
        engine = create_engine(context.config.get_main_option("sqlalchemy.url"))
        with engine.begin() as new_conn:
            context.configure(connection=new_conn, target_metadata=metadata)
            context.run_migrations()
        return
    context.configure(connection=conn, target_metadata=metadata)
    context.run_migrations()


run()
