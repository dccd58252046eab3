"""the audit chain's verification checkpoint: how far it was verified, and when it was last
verified in full, so the audit page recomputes only the entries appended since

Revision ID: r18_audit_checkpoint
Revises: r18_held_review
"""

import sqlalchemy as sa
from alembic import op

revision = "r18_audit_checkpoint"
down_revision = "r18_held_review"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_checkpoint",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("full_at", sa.String(length=40), nullable=True),
        sa.Column("full_seq", sa.BigInteger(), nullable=False),
        sa.Column("full_bad_seq", sa.BigInteger(), nullable=True),
        sa.Column("mac", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("audit_checkpoint")
