"""SQLAlchemy table definitions (Core). Migrations live in gateway/migrations."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
    Column("role", String(16), nullable=False),
    Column("org", String(128), nullable=True),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("failed_logins", Integer, nullable=False, default=0),
    Column("locked_until", String(40), nullable=True),
    Column("created_at", String(40), nullable=False),
    Column("created_by", String(64), nullable=True),
)

datasets = Table(
    "datasets",
    metadata,
    Column("name", String(63), primary_key=True),
    Column("title", String(255), nullable=False),
    Column("domain", String(64), nullable=False),
    Column("access", String(16), nullable=False),
    Column("policy_json", Text, nullable=False),
    Column("version", String(64), nullable=False),
    Column("file_name", String(255), nullable=False),
    Column("row_count", BigInteger, nullable=False),
    Column("epsilon_spent_units", BigInteger, nullable=False, default=0),
    Column("delta_spent_units", BigInteger, nullable=False, default=0, server_default="0"),
    Column("rho_spent_units", BigInteger, nullable=False, default=0, server_default="0"),  # zCDP, 1e-12
    Column("registered_at", String(40), nullable=False),
    Column("registered_by", String(64), nullable=True),
)

applications = Table(
    "applications",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("applicant", String(64), nullable=False, index=True),
    Column("org", String(128), nullable=True),
    Column("dataset", String(63), nullable=False, index=True),
    Column("purpose", Text, nullable=False),
    Column("epsilon_units", BigInteger, nullable=False),
    Column("days", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("auto_approved", Boolean, nullable=False, default=False),
    Column("created_at", String(40), nullable=False),
    Column("decided_by", String(64), nullable=True),
    Column("decided_at", String(40), nullable=True),
    Column("note", Text, nullable=True),
    Column("grant_id", String(32), nullable=True),
)

grants = Table(
    "grants",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("username", String(64), nullable=True, index=True),
    Column("org", String(128), nullable=True, index=True),
    Column("dataset", String(63), nullable=False, index=True),
    Column("epsilon_total_units", BigInteger, nullable=False),
    Column("epsilon_spent_units", BigInteger, nullable=False, default=0),
    Column("delta_total_units", BigInteger, nullable=False),
    Column("delta_spent_units", BigInteger, nullable=False, default=0),
    Column("rho_total_units", BigInteger, nullable=False, default=0, server_default="0"),  # zCDP, 1e-12
    Column("rho_spent_units", BigInteger, nullable=False, default=0, server_default="0"),  # zCDP, 1e-12
    # zCDP: the delta (1e-18 units) at which the grant's rho is shown as epsilon
    Column("conversion_delta_units", BigInteger, nullable=False, default=0, server_default="0"),
    Column("status", String(16), nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("expires_at", String(40), nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("request_id", String(32), nullable=True),
    Column("revoked_by", String(64), nullable=True),
    Column("revoked_at", String(40), nullable=True),
    Column("revoke_reason", Text, nullable=True),  # the admin's reason, shown to the holder
)

queries = Table(
    "queries",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("username", String(64), nullable=False, index=True),
    Column("dataset", String(63), nullable=False, index=True),
    Column("dataset_version", String(64), nullable=False),
    Column("grant_id", String(32), nullable=True),
    Column("query_key", String(64), nullable=False),
    Column("spec_json", Text, nullable=False),
    Column("sql_text", Text, nullable=True),
    Column("status", String(16), nullable=False),
    Column("epsilon_units", BigInteger, nullable=False),
    Column("delta_units", BigInteger, nullable=False),
    Column("rho_units", BigInteger, nullable=False, default=0, server_default="0"),  # zCDP, 1e-12
    Column("result_json", Text, nullable=True),
    Column("accuracy_json", Text, nullable=True),
    Column("created_at", String(40), nullable=False),
    Column("finished_at", String(40), nullable=True),
    Column("reviewed_by", String(64), nullable=True),
    Column("review_note", Text, nullable=True),
    Column("error", Text, nullable=True),
    # recovery (gateway/services/recovery.py): the process computing a running query, and
    # whether a restarted or another gateway finished it; a retried request's key
    Column("runner", String(32), nullable=True),
    Column("idempotency_key", String(128), nullable=True),
    Column("recovered", Boolean, nullable=True),
    # a held query's preview for its reviewers (the accuracy its release would have),
    # computed once when it was held (gateway/services/queries.py)
    Column("review_json", Text, nullable=True),
    Index("ix_queries_grant_key", "grant_id", "query_key"),
    Index("ux_queries_idempotency", "username", "idempotency_key", unique=True),
    Index("ix_queries_status", "status"),
)

audit = Table(
    "audit",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("at", String(40), nullable=False),
    Column("actor", String(64), nullable=True),
    Column("role", String(16), nullable=True),
    Column("action", String(48), nullable=False, index=True),
    Column("dataset", String(63), nullable=True, index=True),
    Column("request_id", String(32), nullable=True),
    Column("grant_id", String(32), nullable=True),
    Column("query_id", String(32), nullable=True),
    Column("epsilon", String(40), nullable=True),
    Column("delta", String(40), nullable=True),
    Column("outcome", String(8), nullable=False),
    Column("detail", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

# How far the audit chain was verified (one row, id 1): see gateway/domain/audit.py
audit_checkpoint = Table(
    "audit_checkpoint",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("full_at", String(40), nullable=True),
    Column("full_seq", BigInteger, nullable=False),
    Column("full_bad_seq", BigInteger, nullable=True),
    Column("mac", String(64), nullable=False),
)

revoked_tokens = Table(
    "revoked_tokens",
    metadata,
    Column("jti", String(64), primary_key=True),
    Column("username", String(64), nullable=False),
    Column("expires_at", BigInteger, nullable=False),  # the token's exp (unix seconds)
    Column("revoked_at", String(40), nullable=False),
)

gateway_instances = Table(
    "gateway_instances",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", String(40), nullable=False),
    Column("heartbeat_at", String(40), nullable=False),
)
