"""a held query keeps its reviewers' preview (the accuracy its release would have), computed
once when it is held, so the review pages read it instead of planning the query again

Revision ID: r18_held_review
Revises: r16_revoke_reason

Queries held before this revision have none; the first reviewer to look computes and
stores it (gateway/services/queries.py).
"""

import sqlalchemy as sa
from alembic import op

revision = "r18_held_review"
down_revision = "r16_revoke_reason"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("queries") as batch:
        batch.add_column(sa.Column("review_json", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("queries") as batch:
        batch.drop_column("review_json")
