"""recovery and idempotent retries: who computes a running query, a retried request's key,
and the gateway processes' heartbeats

Revision ID: r15_recovery
Revises: zcdp_rho
"""

import sqlalchemy as sa
from alembic import op

revision = "r15_recovery"
down_revision = "zcdp_rho"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("queries") as batch:
        batch.add_column(sa.Column("runner", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("idempotency_key", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("recovered", sa.Boolean(), nullable=True))
    op.create_index("ux_queries_idempotency", "queries", ["username", "idempotency_key"],
                    unique=True)
    op.create_index("ix_queries_status", "queries", ["status"])
    op.create_table(
        "gateway_instances",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.String(length=40), nullable=False),
        sa.Column("heartbeat_at", sa.String(length=40), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("gateway_instances")
    op.drop_index("ix_queries_status", table_name="queries")
    op.drop_index("ux_queries_idempotency", table_name="queries")
    with op.batch_alter_table("queries") as batch:
        batch.drop_column("recovered")
        batch.drop_column("idempotency_key")
        batch.drop_column("runner")
