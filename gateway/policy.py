"""Dataset policies (policies/NAME.yaml): the public description of what may be released.

Validated with pydantic; a bad policy is refused with a message naming the file, the
field and the problem, e.g. ``policies/flights.yaml: columns.dep_delay.bounds: lower
bound 600 is above upper bound -60``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gateway.domain.errors import InvalidRequest
from gateway.domain.input_errors import describe, refusal
from gateway.domain.text import _l

NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
ColumnType = Literal["str", "int", "float", "bool"]
# a spark source: a path or URI (no whitespace, no quotes), or a table name [catalog.][db.]table
SPARK_SOURCE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)?[^\s'\"`;]+$")
TOP_LEVEL = _l("(top level)")
DEFAULT_DELTA_QUERIES = 10_000  # default dataset_delta_cap: this many queries at the policy's delta


class PolicyError(InvalidRequest):
    """A policy file (or data file) that cannot be registered."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Column(_Strict):
    type: ColumnType
    description: str = ""
    description_zh: str = ""  # the same in Simplified Chinese (shown to zh readers)
    bounds: tuple[float, float] | None = None
    categories: list[str | int | bool] | None = None
    nullable: bool = False
    null_rate: float | None = Field(default=None, ge=0, le=1)
    hidden: bool = False

    @field_validator("bounds")
    @classmethod
    def _bounds(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is None:
            return None
        lo, hi = value
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise refusal(_l("bounds must be finite numbers, got [%(low)s, %(high)s]", low=lo, high=hi))
        if lo > hi:
            raise refusal(_l("lower bound %(low)s is above upper bound %(high)s",
                              low=format(lo, "g"), high=format(hi, "g")))
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Column:
        if self.bounds is not None and self.type not in ("int", "float"):
            raise refusal(_l("bounds are only for int and float columns, not %(type)s",
                              type=self.type))
        if self.categories is not None:
            if not self.categories:
                raise refusal(_l("categories must not be empty"))
            if len(set(map(str, self.categories))) != len(self.categories):
                raise refusal(_l("categories must be distinct"))
            wanted = {"str": str, "int": int, "bool": bool, "float": float}[self.type]
            bad = [c for c in self.categories if type(c) is not wanted]
            if bad:
                raise refusal(_l("categories of a %(type)s column must be %(type)s: %(bad)s",
                                  type=self.type, bad=bad[:3]))
        if self.null_rate and not self.nullable:
            raise refusal(_l("null_rate needs nullable: true"))
        return self


class PrivacyUnit(_Strict):
    max_contributions: int = Field(default=1, ge=1, le=100_000)
    id_column: str | None = None


class BudgetPolicy(_Strict):
    default_epsilon: float = Field(gt=0)
    max_epsilon_per_grant: float = Field(gt=0)
    delta: float = Field(default=1e-7, ge=0, lt=1)
    dataset_epsilon_cap: float = Field(gt=0)
    # accounting: zcdp only: the dataset-wide cap in rho (default: OpenDP's conversion of
    # dataset_epsilon_cap at the policy's delta)
    dataset_rho_cap: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    dataset_delta_cap: float | None = Field(default=None, ge=0, lt=1)

    @property
    def delta_cap(self) -> float:
        """The dataset-wide delta cap: as written, else room for DEFAULT_DELTA_QUERIES
        thresholded queries at the policy's delta (never 1 or more)."""
        if self.dataset_delta_cap is not None:
            return self.dataset_delta_cap
        return min(self.delta * DEFAULT_DELTA_QUERIES, 0.5)

    @model_validator(mode="after")
    def _ordered(self) -> BudgetPolicy:
        for name in ("default_epsilon", "max_epsilon_per_grant", "delta", "dataset_epsilon_cap"):
            if not math.isfinite(getattr(self, name)):
                raise refusal(_l("%(name)s must be a finite number", name=name))
        if self.default_epsilon > self.max_epsilon_per_grant:
            raise refusal(_l("default_epsilon is above max_epsilon_per_grant"))
        if self.max_epsilon_per_grant > self.dataset_epsilon_cap:
            raise refusal(_l("max_epsilon_per_grant is above dataset_epsilon_cap"))
        return self


class SyntheticLimits(_Strict):
    """Caps on synthetic-data releases (``POST /v1/synthetic``), checked before any charge."""

    max_rows: int = Field(default=10_000, ge=1, le=1_000_000)
    max_columns: int = Field(default=8, ge=1, le=32)
    # product of the columns' category counts (bins, keys, plus a null category each)
    max_domain_size: int = Field(default=10_000_000, ge=1)


def _check_id_column(name: str, column: Column) -> None:
    """Every row with a missing id would count as one person, so the bound on what one
    person contributes would not hold: the id column can hold no missing value, declared
    (``nullable``, ``null_rate``) or hidden in the type (a float id can be NaN)."""
    if column.nullable or column.null_rate:
        raise refusal(_l("privacy_unit.id_column %(name)s is nullable: rows without an id "
                         "would all count as one person; make it nullable: false", name=name))
    if column.type == "float":
        raise refusal(_l("privacy_unit.id_column %(name)s is a float column, which can hold "
                         "NaN (a hidden missing id); use an int or str id", name=name))


class Policy(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    title: str = Field(min_length=1)
    title_zh: str = ""  # Simplified Chinese title and description, for zh readers
    description: str = ""
    description_zh: str = ""
    domain: str = "general"
    source: str = Field(min_length=1)
    # polars: source is a file under the gateway's data directory, copied there at
    # registration; spark: a Parquet directory or a table name, read in place (docs/spark.md)
    engine: Literal["polars", "spark"] = "polars"
    access: Literal["open", "conditional", "restricted"]
    # pure: (epsilon, delta)-DP, Laplace noise, basic composition; zcdp: rho-zCDP, Gaussian
    # noise, grants hold rho (docs/zcdp.md)
    accounting: Literal["pure", "zcdp"] = "pure"
    privacy_unit: PrivacyUnit = PrivacyUnit()
    max_rows: int = Field(gt=0)
    budget: BudgetPolicy
    columns: dict[str, Column] = Field(min_length=1)
    synthetic: SyntheticLimits = SyntheticLimits()

    @model_validator(mode="after")
    def _source(self) -> Policy:
        if self.engine == "spark":
            if not SPARK_SOURCE.match(self.source) or ".." in self.source.split("/"):
                raise refusal(_l("source of a spark dataset must be a Parquet directory (a "
                                 "path or a URI such as hdfs://...) or a table name (db.table)"))
            return self
        path = Path(self.source)
        if path.is_absolute() or ".." in path.parts:
            raise refusal(_l("source must be a file name relative to the data directory"))
        return self

    @model_validator(mode="after")
    def _unit(self) -> Policy:
        unit = self.privacy_unit.id_column
        if unit is not None and unit not in self.columns:
            raise refusal(_l("privacy_unit.id_column %(name)s is not among the columns", name=unit))
        if unit is not None:
            _check_id_column(unit, self.columns[unit])
        if not any(not c.hidden for c in self.columns.values()):
            raise refusal(_l("every column is hidden: nothing could be queried"))
        if self.accounting == "zcdp" and self.budget.delta <= 0:
            raise refusal(_l("accounting zcdp needs budget.delta > 0: grants are shown as "
                             "(epsilon, delta) at that delta"))
        if self.accounting == "pure" and self.budget.dataset_rho_cap is not None:
            raise refusal(_l("budget.dataset_rho_cap is only for accounting: zcdp"))
        return self

    @property
    def delta(self) -> float:
        return self.budget.delta

    def public(self) -> dict[str, Any]:
        """What analysts may see: the policy without hidden columns or the file location."""
        data = self.model_dump(mode="json", exclude={"source"})
        data["columns"] = {
            name: {k: v for k, v in col.items() if k != "hidden"}
            for name, col in data["columns"].items()
            if not self.columns[name].hidden
        }
        return data


def parse_policy(data: object, *, origin: str) -> Policy:
    if not isinstance(data, dict):
        raise PolicyError(_l("%(origin)s: (top level): expected a mapping of policy fields", origin=origin))
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        problems = describe(exc.errors(), whole=TOP_LEVEL)
        raise PolicyError(_l("%(origin)s: %(problems)s", origin=origin, problems=problems)) from exc


def load_policy(path: Path) -> Policy:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(_l("%(path)s: cannot be read (%(strerror)s)", path=path,
                             strerror=exc.strerror)) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(_l("%(path)s: not valid YAML (%(exc)s)", path=path, exc=exc)) from exc
    policy = parse_policy(data, origin=str(path))
    if path.stem != policy.name:
        raise PolicyError(_l(
            "%(path)s: name: %(name)s does not match the file name %(stem)s",
            path=path, name=policy.name, stem=path.stem))
    return policy


# -- a dataset's data against its policy (checked at registration, by every engine) -------


def check_present(policy: Policy, present: Sequence[str], origin: str) -> None:
    """Every policy column is in the data."""
    missing = [name for name in policy.columns if name not in present]
    if missing:
        raise PolicyError(_l(
            "%(origin)s: columns.%(value)s: not present in the data (data has %(value2)s)",
            origin=origin, value=missing[0], value2=", ".join(list(present)[:20])))


def null_free(policy: Policy) -> list[str]:
    """The columns whose data must hold no null: the id column and those not nullable."""
    unit = policy.privacy_unit.id_column
    return [name for name, col in policy.columns.items() if not col.nullable or name == unit]


def check_counts(policy: Policy, *, rows: int, nulls: Mapping[str, int], origin: str) -> None:
    """No nulls in :func:`null_free` columns (``nulls``: their null counts), no more rows
    than ``max_rows``."""
    unit = policy.privacy_unit.id_column
    for name, count in nulls.items():
        if count and name == unit:
            raise PolicyError(_l(
                "%(origin)s: privacy_unit.id_column: the data has %(null_count)s rows without"
                " an id in %(name)s; each person needs one (rows without would all count as "
                "one person)",
                origin=origin, null_count=count, name=name))
        if count:
            raise PolicyError(_l(
                "%(origin)s: columns.%(name)s.nullable: the data has %(null_count)s nulls but"
                " the policy says nullable: false",
                origin=origin, name=name, null_count=count))
    if rows > policy.max_rows:
        raise PolicyError(_l(
            "%(origin)s: max_rows: the data has %(height)s rows, more than the public "
            "bound %(max_rows)s",
            origin=origin, height=rows, max_rows=policy.max_rows))
