"""The dataset catalog: registration (data -> private Parquet), public views, dummy rows."""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from gateway.adapters.db import Store, Tx
from gateway.domain.audit import canonical_json
from gateway.domain.budget import Budget
from gateway.domain.errors import Forbidden, InvalidRequest, NotFound
from gateway.domain.records import DatasetRow
from gateway.i18n import _l
from gateway.policy import (
    Policy,
    PolicyError,
    check_counts,
    check_present,
    load_policy,
    null_free,
    parse_policy,
)
from gateway.services import accounting
from gateway.services.audit import AuditLog
from gateway.services.common import READERS, Principal, iso, now
from gateway.settings import Settings

POLARS_TYPES = {"str": pl.Utf8, "int": pl.Int64, "float": pl.Float64, "bool": pl.Boolean}
REPO_POLICIES = Path(__file__).resolve().parents[2] / "policies"


@dataclass(frozen=True)
class DatasetRecord:
    name: str
    policy: Policy
    version: str
    parquet: Path
    row_count: int
    spent: Budget
    registered_at: str
    location: str = ""  # what the engine reads: the Parquet file, or a Spark source in place

    @property
    def epsilon_spent_units(self) -> int:
        return self.spent.epsilon_units


def _read_source(path: Path) -> pl.DataFrame:
    if not path.is_file():
        raise PolicyError(_l("%(path)s: data file not found", path=path))
    try:
        if path.suffix.lower() == ".parquet":
            return pl.read_parquet(path)
        if path.suffix.lower() == ".csv":
            return pl.read_csv(path, infer_schema_length=100_000, null_values=["", "NA"])
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise PolicyError(_l(
            "%(path)s: cannot be read as %(value)s (%(exc)s)",
            path=path, value=path.suffix[1:], exc=exc)) from exc
    raise PolicyError(_l("%(path)s: data must be .csv or .parquet", path=path))


def conform(frame: pl.DataFrame, policy: Policy, origin: str) -> pl.DataFrame:
    """Keep the policy's columns, cast to their types, and check nulls and row count."""
    check_present(policy, frame.columns, origin)
    out = {}
    for name, col in policy.columns.items():
        try:
            out[name] = frame[name].cast(POLARS_TYPES[col.type], strict=True)
        except pl.exceptions.PolarsError as exc:
            raise PolicyError(_l(
                "%(origin)s: columns.%(name)s.type: values cannot be cast to %(type)s "
                "(%(value)s)",
                origin=origin, name=name, type=col.type, value=str(exc).splitlines()[0])) from exc
    check_counts(policy, rows=frame.height, origin=origin,
                 nulls={name: out[name].null_count() for name in null_free(policy)})
    return pl.DataFrame(out)


class Catalog:
    def __init__(self, store: Store, audit: AuditLog, settings: Settings, *,
                 spark: Any = None) -> None:
        self.store, self.audit, self.settings = store, audit, settings
        self.spark = spark  # SparkSessions: registers datasets with engine: spark
        self.refusals = audit.refusals
        self._lock = threading.Lock()
        self._policies: dict[tuple[str, str], Policy] = {}

    # -- registration --------------------------------------------------------------------

    def register(
        self, actor: Principal, *, name: str, data: Path | None = None,
        policy_file: Path | None = None
    ) -> DatasetRecord:
        with self.refusals(actor, "dataset.register", dataset=name[:63]):
            return self._register(actor, name=name, data=data, policy_file=policy_file)

    def _register(
        self, actor: Principal, *, name: str, data: Path | None, policy_file: Path | None
    ) -> DatasetRecord:
        actor.require("admin", full_scope=True)
        policy_path = policy_file or REPO_POLICIES / f"{name}.yaml"
        policy = load_policy(policy_path)
        if policy.name != name:
            raise PolicyError(_l(
                "%(policy_path)s: name: %(name)s does not match dataset %(name2)s",
                policy_path=policy_path, name=policy.name, name2=name))
        policy_json = canonical_json(policy.model_dump(mode="json"))
        if policy.engine == "spark":
            file_name, rows, digest = self._in_place(policy, data, str(policy_path), policy_json)
        else:
            file_name, rows, digest = self._copied(policy, data, str(policy_path), policy_json)
        with self.store.writing() as tx:
            existing = tx.datasets.get(name)
            if existing is not None and existing.version == digest:
                return self._to_record(existing)  # same data, same policy: nothing to change
            tx.datasets.save(name, new=existing is None, title=policy.title, domain=policy.domain,
                             access=policy.access, policy_json=policy_json, version=digest,
                             file_name=file_name, row_count=rows,
                             registered_at=iso(now()), registered_by=actor.username)
            self.audit.append(tx, action="dataset.register", outcome="ok", actor=actor,
                              dataset=name, detail={"version": digest, "access": policy.access,
                                                    "engine": policy.engine,
                                                    "replaced": existing.version if existing else None})
        return self.record(name)

    def _copied(self, policy: Policy, data: Path | None, origin: str,
                policy_json: str) -> tuple[str, int, str]:
        """The polars engine's data: conformed and copied into the private data directory."""
        if data is None:
            raise PolicyError(_l("%(origin)s: the data file is missing (--data)", origin=origin))
        frame = conform(_read_source(data), policy, origin)
        self.settings.ensure_dirs()
        tmp = self.settings.datasets_dir / f".{policy.name}.{os.getpid()}.tmp"
        frame.write_parquet(tmp)
        digest = hashlib.sha256(tmp.read_bytes() + policy_json.encode()).hexdigest()[:20]
        target = self.settings.datasets_dir / f"{policy.name}-{digest}.parquet"
        tmp.chmod(0o600)
        tmp.replace(target)
        return target.name, frame.height, digest

    def _in_place(self, policy: Policy, data: Path | None, origin: str,
                  policy_json: str) -> tuple[str, int, str]:
        """The Spark engine's data: checked where it is (docs/spark.md), never copied."""
        if data is not None:
            raise PolicyError(_l(
                "%(origin)s: engine: spark reads the policy's source in place; register it "
                "without a data file", origin=origin))
        if self.spark is None:
            raise PolicyError(_l("%(origin)s: engine: spark is not available here",
                                 origin=origin))
        from gateway.adapters.spark.source import inspect_source

        facts = inspect_source(self.spark, policy, data_dir=self.settings.datasets_dir,
                               origin=origin)
        digest = hashlib.sha256((facts.fingerprint + policy_json).encode()).hexdigest()[:20]
        return facts.location, facts.row_count, digest

    # -- reading -------------------------------------------------------------------------

    def _policy(self, name: str, version: str, policy_json: str) -> Policy:
        key = (name, version)
        with self._lock:
            cached = self._policies.get(key)
        if cached is None:
            cached = parse_policy(json.loads(policy_json), origin=f"dataset {name}")
            with self._lock:
                self._policies[key] = cached
        return cached

    def _to_record(self, row: DatasetRow) -> DatasetRecord:
        policy = self._policy(row.name, row.version, row.policy_json)
        parquet = self.settings.datasets_dir / row.file_name
        return DatasetRecord(
            name=row.name, policy=policy, version=row.version, parquet=parquet,
            row_count=row.row_count, spent=row.spent, registered_at=row.registered_at,
            location=row.file_name if policy.engine == "spark" else str(parquet),
        )

    def record(self, name: str, tx: Tx | None = None) -> DatasetRecord:
        if tx is None:
            with self.store.reading() as own:
                return self.record(name, own)
        row = tx.datasets.get(name)
        if row is None:
            raise NotFound(_l("no dataset named %(name)s", name=name))
        return self._to_record(row)

    def records(self) -> list[DatasetRecord]:
        with self.store.reading() as tx:
            rows = tx.datasets.all()
        return [self._to_record(r) for r in rows]

    def summary(self, rec: DatasetRecord, *, for_admin: bool = False) -> dict[str, Any]:
        pol = rec.policy
        out: dict[str, Any] = {
            "name": rec.name, "title": pol.title, "title_zh": pol.title_zh,
            "description": pol.description, "description_zh": pol.description_zh,
            "domain": pol.domain, "access": pol.access,
            "columns": {n: {"type": c.type, "description": c.description,
                            "description_zh": c.description_zh}
                        for n, c in pol.columns.items() if not c.hidden},
            "default_epsilon": pol.budget.default_epsilon,
            "max_epsilon_per_grant": pol.budget.max_epsilon_per_grant,
            "version": rec.version, "accounting": pol.accounting,
        }
        if for_admin:
            out["epsilon_spent"] = rec.spent.epsilon_float
            out["dataset_epsilon_cap"] = pol.budget.dataset_epsilon_cap
            out["registered_at"] = rec.registered_at
            if accounting.is_zcdp(pol):  # the cap that binds, in rho (docs/zcdp.md)
                out["rho_spent"] = rec.spent.rho_float
                out["dataset_rho_cap"] = accounting.dataset_cap(pol).rho_float
        return out

    def list(self, actor: Principal) -> list[dict[str, Any]]:
        recs = self.records()
        self.audit.record(action="catalog.list", outcome="ok", actor=actor,
                          detail={"datasets": len(recs)})
        return [self.summary(r, for_admin=actor.role in READERS) for r in recs]

    def describe(self, actor: Principal, name: str) -> dict[str, Any]:
        with self.refusals(actor, "catalog.describe", detail={"name": name[:64]}):
            rec = self.record(name)
        self.audit.record(action="catalog.describe", outcome="ok", actor=actor, dataset=name)
        out = self.summary(rec, for_admin=actor.role in READERS)
        out["policy"] = rec.policy.public()
        return out

    # -- dummy rows ----------------------------------------------------------------------

    def dummy(self, actor: Principal, name: str, rows: int) -> dict[str, Any]:
        with self.refusals(actor, "catalog.dummy", detail={"name": name[:64]}):
            if not actor.is_analyst and actor.role != "admin":
                raise Forbidden(_l("dummy data is for analysts"))
            if not 1 <= rows <= self.settings.dummy_max_rows:
                raise InvalidRequest(_l(
                    "rows must be between 1 and %(dummy_max_rows)s",
                    dummy_max_rows=self.settings.dummy_max_rows))
            rec = self.record(name)
        self.audit.record(action="catalog.dummy", outcome="ok", actor=actor, dataset=name,
                          detail={"rows": rows})
        return synthetic_rows(rec.policy, rows)


def synthetic_rows(policy: Policy, rows: int) -> dict[str, Any]:
    """Rows drawn from the public policy alone (types, bounds, categories, null rate).

    They share nothing with the real data; they only let analysts write code before
    they have access. (Not noise: nothing here is released about the data.)
    """
    rng = random.Random()  # noqa: S311 - not a privacy mechanism
    columns = [n for n, c in policy.columns.items() if not c.hidden]
    data: dict[str, list[Any]] = {}
    for name in columns:
        col = policy.columns[name]
        null_rate = col.null_rate if col.null_rate is not None else (0.05 if col.nullable else 0)
        values: list[Any] = []
        for _ in range(rows):
            if null_rate and rng.random() < null_rate:
                values.append(None)
            elif col.categories:
                values.append(rng.choice(col.categories))
            elif col.type == "bool":
                values.append(rng.random() < 0.5)
            elif col.type in ("int", "float"):
                lo, hi = col.bounds or (0.0, 100.0)
                values.append(rng.randint(int(lo), int(hi)) if col.type == "int"
                              else round(rng.uniform(lo, hi), 3))
            else:
                values.append(f"{name}_{rng.randint(1, 50)}")
        data[name] = values
    return {"dataset": policy.name, "synthetic": True, "columns": columns,
            "rows": [list(r) for r in zip(*(data[c] for c in columns), strict=True)]}
