"""a revoked grant keeps its reason, so its holder reads it with the grant

Revision ID: r16_revoke_reason
Revises: r15_recovery

The reasons of grants revoked before this revision are copied from the notes of their
``grant.revoke`` audit entries (the audit log itself is not changed).
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "r16_revoke_reason"
down_revision = "r15_recovery"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("grants") as batch:
        batch.add_column(sa.Column("revoke_reason", sa.Text(), nullable=True))
    grants = sa.table("grants", sa.column("id", sa.String), sa.column("revoke_reason", sa.Text))
    audit = sa.table("audit", sa.column("seq", sa.BigInteger), sa.column("action", sa.String),
                     sa.column("outcome", sa.String), sa.column("grant_id", sa.String),
                     sa.column("detail", sa.Text))
    conn = op.get_bind()
    revokes = conn.execute(
        sa.select(audit.c.grant_id, audit.c.detail)
        .where(audit.c.action == "grant.revoke", audit.c.outcome == "ok")
        .order_by(audit.c.seq))
    for grant_id, detail in revokes.all():
        try:
            note = json.loads(detail).get("note")
        except (ValueError, AttributeError):
            continue
        if grant_id and note:
            conn.execute(sa.update(grants).where(grants.c.id == grant_id)
                         .values(revoke_reason=str(note)))


def downgrade() -> None:
    with op.batch_alter_table("grants") as batch:
        batch.drop_column("revoke_reason")
