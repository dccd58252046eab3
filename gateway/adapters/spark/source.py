"""Registering a Spark dataset: its source is checked where it is, never copied.

The checks are the polars registration's (``services.catalog.conform``), run as one Spark
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
from gateway.domain.errors import InternalError
from gateway.domain.text import _l
from gateway.policy import Policy, PolicyError

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


def inspect_source(spark: Any, policy: Policy, *, data_dir: Path, origin: str) -> SourceFacts:
    location = location_of(policy.source, data_dir)
    if len(location) > MAX_LOCATION:
        raise PolicyError(_l("%(origin)s: source: longer than %(limit)s characters",
                             origin=origin, limit=MAX_LOCATION))
    try:
        with spark_errors("plan"):
            frame = read_source(spark, location)
            stored = {f.name: f.dataType for f in frame.schema.fields}
            _check_types(policy, stored, origin)
            nulls = _null_checked(policy)
            counts = frame.agg(F.count(F.lit(1)).alias("__rows"), *[
                F.sum(F.col(name).isNull().cast("bigint")).alias(name) for name in nulls
            ]).collect()[0]
            files = sorted(frame.inputFiles())
    except InternalError as exc:
        raise PolicyError(_l("%(origin)s: source: %(location)s cannot be read by Spark",
                             origin=origin, location=location)) from exc
    for name in nulls:
        if counts[name]:
            raise PolicyError(_l(
                "%(origin)s: columns.%(name)s.nullable: the data has %(null_count)s nulls but"
                " the policy says nullable: false",
                origin=origin, name=name, null_count=counts[name]))
    if counts["__rows"] > policy.max_rows:
        raise PolicyError(_l(
            "%(origin)s: max_rows: the data has %(height)s rows, more than the public "
            "bound %(max_rows)s",
            origin=origin, height=counts["__rows"], max_rows=policy.max_rows))
    digest = hashlib.sha256("\n".join([location, str(counts["__rows"]), str(sorted(
        (n, str(t)) for n, t in stored.items())), *files]).encode()).hexdigest()
    return SourceFacts(location, int(counts["__rows"]), digest)


def _check_types(policy: Policy, stored: dict[str, Any], origin: str) -> None:
    for name, col in policy.columns.items():
        if name not in stored:
            raise PolicyError(_l(
                "%(origin)s: columns.%(value)s: not present in the data (data has %(value2)s)",
                origin=origin, value=name, value2=", ".join(list(stored)[:20])))
        if not compatible(col.type, stored[name]):
            raise PolicyError(_l(
                "%(origin)s: columns.%(name)s.type: values cannot be cast to %(type)s "
                "(%(value)s)", origin=origin, name=name, type=col.type, value=str(stored[name])))


def _null_checked(policy: Policy) -> list[str]:
    unit = policy.privacy_unit.id_column
    return [name for name, col in policy.columns.items() if not col.nullable or name == unit]
