"""zcdp rho: grants, queries and the dataset-wide cap count rho (1e-12 units) under zCDP

Revision ID: zcdp_rho
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "zcdp_rho"
down_revision = "0003"
branch_labels = None
depends_on = None

COLUMNS = {
    "grants": ("rho_total_units", "rho_spent_units", "conversion_delta_units"),
    "datasets": ("rho_spent_units",),
    "queries": ("rho_units",),
}


def upgrade() -> None:
    for table, names in COLUMNS.items():
        with op.batch_alter_table(table) as batch:
            for name in names:
                batch.add_column(sa.Column(name, sa.BigInteger(), nullable=False, server_default="0"))


def downgrade() -> None:
    for table, names in COLUMNS.items():
        with op.batch_alter_table(table) as batch:
            for name in names:
                batch.drop_column(name)
