"""Registering a Spark dataset: its source is checked where it is, never copied.

The checks are the polars registration's (``gateway.policy.check_present`` and
``check_counts``, which ``services.catalog.conform`` runs too), the counts from one Spark
job: every policy column present in a compatible type, no nulls where the policy says
``nullable: false`` (and never in the id column), no more rows than ``max_rows``. The
version is a digest of the policy, the location, the row count, the schema and the list of
files Spark reads, so a replaced or appended table registered again gets a new version
(and the release cache starts afresh).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyspark.sql import functions as F

from gateway.adapters.spark.engine import spark_errors
from gateway.adapters.spark.frames import compatible, is_table, read_source
from gateway.adapters.spark.session import SparkSessions
from gateway.domain.errors import InternalError
from gateway.domain.text import _l
from gateway.policy import Policy, PolicyError, check_counts, check_present, null_free

MAX_LOCATION = 255  # the store keeps the location in the dataset's file_name


@dataclass(frozen=True)
class SourceFacts:
    location: str
    row_count: int
    fingerprint: str


def location_of(source: str, data_dir: Path) -> str:
    """A table name or URI as written; a relative path under the gateway's data directory."""
    if is_table(source) or "://" in source or source.startswith("/"):
        return source
    return str(data_dir / source)


def inspect_source(sessions: SparkSessions, policy: Policy, *, data_dir: Path,
                   origin: str) -> SourceFacts:
    location = location_of(policy.source, data_dir)
    if len(location) > MAX_LOCATION:
        raise PolicyError(_l("%(origin)s: source: longer than %(limit)s characters",
                             origin=origin, limit=MAX_LOCATION))
    with spark_errors("plan"):  # a Spark that does not start is no fault of the policy
        spark = sessions.get()
    try:
        with spark_errors("plan"):
            frame = read_source(spark, location)
            stored = {f.name: f.dataType for f in frame.schema.fields}
            _check_types(policy, stored, origin)
            nulls = null_free(policy)
            counts = frame.agg(F.count(F.lit(1)).alias("__rows"), *[
                F.sum(F.col(name).isNull().cast("bigint")).alias(name) for name in nulls
            ]).collect()[0]
            files = sorted(frame.inputFiles())
    except InternalError as exc:
        raise PolicyError(_l("%(origin)s: source: %(location)s cannot be read by Spark",
                             origin=origin, location=location)) from exc
    check_counts(policy, rows=counts["__rows"], origin=origin,
                 nulls={name: counts[name] for name in nulls})
    digest = hashlib.sha256("\n".join([location, str(counts["__rows"]), str(sorted(
        (n, str(t)) for n, t in stored.items())), *files]).encode()).hexdigest()
    return SourceFacts(location, int(counts["__rows"]), digest)


def _check_types(policy: Policy, stored: dict[str, Any], origin: str) -> None:
    check_present(policy, list(stored), origin)
    for name, col in policy.columns.items():
        if not compatible(col.type, stored[name]):
            raise PolicyError(_l(
                "%(origin)s: columns.%(name)s.type: values cannot be cast to %(type)s "
                "(%(value)s)", origin=origin, name=name, type=col.type, value=str(stored[name])))
