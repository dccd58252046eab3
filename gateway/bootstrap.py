"""Wire the gateway's parts together in one place (tests pass their own settings)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.adapters.auth import TokenService
from gateway.adapters.db import Store
from gateway.adapters.secrets import load_secrets
from gateway.adapters.spark import SparkSessions
from gateway.services.access import AccessService
from gateway.services.audit import AuditLog, checkpoint_key
from gateway.services.catalog import Catalog
from gateway.services.fits import FIT_KINDS, FitService
from gateway.services.grants import Ledger
from gateway.services.queries import Engine, QueryService
from gateway.services.query_recovery import recompute_fit, recompute_query
from gateway.services.recovery import Instance, Recovery
from gateway.services.users import UserService
from gateway.settings import Settings


@dataclass
class Services:
    settings: Settings
    store: Store
    tokens: TokenService
    hub_secret: str
    console_secret: str  # the key of the console's CSRF tokens (gateway/web/session.py)
    audit: AuditLog
    users: UserService
    catalog: Catalog
    ledger: Ledger
    queries: QueryService
    fits: FitService
    access: AccessService
    extra: dict[str, Any]
    recovery: Recovery | None = None


class LazyEngine:
    """The engines behind the query port, each imported on first use (CLI commands never pay
    for them): the OpenDP polars engine, or the Spark engine for a policy with ``engine:
    spark`` (one SparkSession per process, on ``settings.spark_master``)."""

    def __init__(self, spark_sessions: SparkSessions | None = None) -> None:
        self._engine: Engine | None = None
        self._spark: Engine | None = None
        self.spark_sessions = spark_sessions or SparkSessions()

    def plan(self, spec: Any, policy: Any, **kwargs: Any) -> Any:
        if getattr(policy, "engine", "polars") == "spark":
            if self._spark is None:
                from gateway.adapters.spark.engine import SparkEngine  # imports pyspark

                self._spark = SparkEngine(self.spark_sessions)
            return self._spark.plan(spec, policy, **kwargs)
        if self._engine is None:
            from gateway.adapters.dp import Engine as OpenDPEngine

            self._engine = OpenDPEngine()
        return self._engine.plan(spec, policy, **kwargs)


def bootstrap(settings: Settings | None = None, *, engine: Engine | None = None,
              migrate: bool = True) -> Services:
    settings = settings or Settings()
    settings.ensure_dirs()
    store = Store(settings.db_url)
    if migrate:
        store.migrate()
    secrets = load_secrets(settings.state_dir, settings.secrets_dir)
    tokens = TokenService(secrets.signing_key, verify_keys=secrets.verify_keys,
                          issuer=settings.issuer, audience=settings.audience)
    audit = AuditLog(store, checkpoint_key=checkpoint_key(secrets.console_secret))
    spark = SparkSessions(settings.spark_master,  # started only if a Spark dataset is used
                          {"spark.sql.warehouse.dir": str(settings.home / "spark-warehouse")})
    catalog = Catalog(store, audit, settings, spark=spark)
    ledger = Ledger(store, audit, catalog)
    instance = Instance()
    queries = QueryService(store, audit, catalog, ledger, engine or LazyEngine(spark),
                           runner=instance.id)
    recovery = Recovery(store, instance, stale_seconds=settings.instance_stale_seconds,
                        in_flight=queries.releases.computing)
    recovery.register("query", lambda record: recompute_query(queries, record))
    for kind in FIT_KINDS:  # synthetic data and models: the same unit of work, recovered too
        recovery.register(kind, lambda record: recompute_fit(queries.fits, record))
    return Services(
        settings=settings, store=store, tokens=tokens,
        hub_secret=secrets.hub_secret, console_secret=secrets.console_secret,
        audit=audit, users=UserService(store, audit, tokens, settings), catalog=catalog,
        ledger=ledger,
        queries=queries,
        fits=queries.fits,
        access=AccessService(store, audit, catalog, ledger),
        extra={}, recovery=recovery,
    )
