"""Release kinds beyond aggregates: DP synthetic data and DP models, as immutable specs.

A spec says what to fit; the OpenDP adapters (``gateway/adapters/dp/synth.py`` and
``models.py``) check it against the policy and decide how. Like a query spec, a fit spec
has a canonical form, so the same request under the same grant is a free replay.

    SyntheticSpec(dataset, columns, rows, method="aim", bins=10)
    ModelSpec(dataset, kind="linear_regression", x=("age",), y="amount")
    ModelSpec(dataset, kind="pca", columns=("a", "b", "c"), components=2)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.domain.errors import InvalidRequest, UnsupportedQuery
from gateway.domain.text import Text, _l

METHODS = ("aim", "mst")
MODEL_KINDS = ("linear_regression", "pca")
DEFAULT_BINS = 10
MAX_COLUMNS = 64


def _names(values: Any, what: str) -> tuple[str, ...]:
    if isinstance(values, str) or not isinstance(values, list | tuple):
        raise InvalidRequest(_l("%(field)s must be a list of column names", field=what))
    if not values or len(values) > MAX_COLUMNS:
        raise InvalidRequest(_l("%(field)s must name 1 to %(max)s columns", field=what, max=MAX_COLUMNS))
    if not all(isinstance(v, str) and v for v in values):
        raise InvalidRequest(_l("%(field)s must be column names", field=what))
    if len(set(values)) != len(values):
        raise InvalidRequest(_l("%(field)s must be distinct", field=what))
    return tuple(values)


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidRequest(_l("%(field)s must be a positive integer, got %(value)s",
            field=what, value=repr(value)))
    return value


@dataclass(frozen=True)
class SyntheticSpec:
    dataset: str
    columns: tuple[str, ...]
    rows: int
    method: str = "aim"
    bins: int = DEFAULT_BINS

    kind = "synthetic"

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", _names(self.columns, "columns"))
        _positive_int(self.rows, "rows")
        _positive_int(self.bins, "bins")
        if self.method not in METHODS:
            raise UnsupportedQuery(_l("method must be one of %(methods)s, got %(value)s",
                                      methods=", ".join(METHODS), value=repr(self.method)))

    def canonical(self) -> dict[str, Any]:
        return {"kind": self.kind, "dataset": self.dataset, "columns": list(self.columns),
                "rows": self.rows, "method": self.method, "bins": self.bins}

    def summary(self) -> Text:
        """What will leave, for a reviewer."""
        return _l("%(rows)s synthetic rows of %(columns)s (%(method)s, numeric columns in %(bins)s "
                  "bins), plus the noisy marginals measured", rows=self.rows,
                  columns=", ".join(self.columns), method=self.method.upper(), bins=self.bins)


@dataclass(frozen=True)
class ModelSpec:
    dataset: str
    kind: str
    x: tuple[str, ...] = ()
    y: str | None = None
    columns: tuple[str, ...] = ()
    components: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in MODEL_KINDS:
            raise UnsupportedQuery(_l("kind must be one of %(kinds)s, got %(value)s",
                                      kinds=", ".join(MODEL_KINDS), value=repr(self.kind)))
        if self.kind == "linear_regression":
            if self.columns or self.components is not None:
                raise InvalidRequest(_l("linear_regression takes x and y, not columns or components"))
            object.__setattr__(self, "x", _names(self.x, "x"))
            if not isinstance(self.y, str) or not self.y:
                raise InvalidRequest(_l("linear_regression needs y, a column name"))
        else:
            if self.x or self.y is not None:
                raise InvalidRequest(_l("pca takes columns and components, not x or y"))
            object.__setattr__(self, "columns", _names(self.columns, "columns"))
            _positive_int(self.components, "components")

    def canonical(self) -> dict[str, Any]:
        if self.kind == "linear_regression":
            return {"kind": self.kind, "dataset": self.dataset, "x": list(self.x), "y": self.y}
        return {"kind": self.kind, "dataset": self.dataset, "columns": list(self.columns),
                "components": self.components}

    def summary(self) -> Text:
        """What will leave, for a reviewer."""
        if self.kind == "linear_regression":
            return _l("a linear regression of %(y)s on %(x)s: %(count)s coefficient(s) and an "
                      "intercept", y=self.y, x=", ".join(self.x), count=len(self.x))
        return _l("a PCA of %(columns)s: %(components)s component(s) of %(count)s values, their "
                  "explained variance, and the column means", columns=", ".join(self.columns),
                  components=self.components, count=len(self.columns))
