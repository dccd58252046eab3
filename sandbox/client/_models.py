"""DP synthetic rows and DP models, fitted by the gateway with OpenDP, used in the notebook.

``ds.synthetic(...)`` gives a DataFrame; ``ds.linear_regression(...)`` and ``ds.pca(...)``
give small fitted objects with scikit-learn's attribute names (``coef_``, ``intercept_``,
``components_``, ``explained_variance_``) whose ``predict`` / ``transform`` run here, on
your own rows, with nothing sent to the gateway. On restricted data the release waits for
an admin's review (``timeout`` seconds at most).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from sandbox.client._errors import DPSandboxError
from sandbox.client._i18n import _
from sandbox.client._pending import REVIEW_TIMEOUT
from sandbox.client._session import Session

__all__ = ["DPPCA", "DPLinearRegression", "wait_for_release"]

_POLL = 0.5


def wait_for_release(session: Session, answer: Mapping[str, Any], *,
                     timeout: float | None) -> dict[str, Any]:
    """A direct answer as is; a held one polled until an admin decides (or ``timeout``)."""
    if answer.get("status") == "released":
        return dict(answer)
    deadline = time.monotonic() + (REVIEW_TIMEOUT if timeout is None else timeout)
    view = dict(answer)
    while view.get("status") in ("pending_review", "running"):
        if time.monotonic() > deadline:
            raise DPSandboxError(_("release {id} is still {status}; ask again later with "
                                   "gw.runner.get('/v1/queries/{id}')").format(
                id=view.get("id"), status=view.get("status")))
        time.sleep(_POLL)
        view = dict(session.get(f"/v1/queries/{view['id']}"))
    if view.get("status") != "released":
        raise DPSandboxError(_("release {id} was not released: {status} {note}").format(
            id=view.get("id"), status=view.get("status"), note=view.get("review_note") or ""))
    return view


def release_fields(answer: Mapping[str, Any]) -> dict[str, Any]:
    """The release's own fields, from a direct answer or from a reviewed release's view."""
    stored = (answer.get("accuracy") or {}).get("release") or {}
    return {**stored, **answer}


def _charged(answer: Mapping[str, Any]) -> float:
    """Epsilon charged: a direct answer says so; a reviewed release's view gives its cost."""
    return float(answer.get("epsilon_charged", answer.get("epsilon")) or 0.0)


def _matrix(X: Any, names: Sequence[str]) -> np.ndarray:
    if isinstance(X, pd.DataFrame):
        missing = [n for n in names if n not in X.columns]
        if missing:
            raise ValueError(_("X lacks the column(s) {names}").format(names=", ".join(missing)))
        X = X[list(names)]
    array = np.asarray(X, dtype=float)
    if array.ndim == 1:
        array = array.reshape(-1, 1) if len(names) == 1 else array.reshape(1, -1)
    if array.shape[1] != len(names):
        raise ValueError(_("X must have {n} column(s): {names}").format(
            n=len(names), names=", ".join(names)))
    return array


@dataclass(frozen=True, kw_only=True)
class _FittedRelease:
    """What a fitted model keeps of the gateway's answer: which release it is, what it cost
    and whether it was a replay of an earlier one (also in a synthetic frame's ``attrs``)."""

    epsilon_charged: float
    release_id: str
    cached: bool = False

    @staticmethod
    def provenance(answer: Mapping[str, Any]) -> dict[str, Any]:
        return {"epsilon_charged": _charged(answer), "release_id": str(answer.get("id")),
                "cached": bool(answer.get("cached"))}


@dataclass(frozen=True)
class DPLinearRegression(_FittedRelease):
    """A DP linear regression (OpenDP's Theil-Sen) fitted on the real data by the gateway."""

    coef_: np.ndarray
    intercept_: float
    feature_names_in_: list[str]
    target: str

    @classmethod
    def from_answer(cls, answer: Mapping[str, Any]) -> DPLinearRegression:
        f = release_fields(answer)
        return cls(coef_=np.asarray(f["coef_"], dtype=float), intercept_=float(f["intercept_"]),
                   feature_names_in_=list(f["x"]), target=str(f["y"]), **cls.provenance(answer))

    @property
    def n_features_in_(self) -> int:
        return len(self.feature_names_in_)

    def predict(self, X: Any) -> np.ndarray:
        return _matrix(X, self.feature_names_in_) @ self.coef_ + self.intercept_

    def __repr__(self) -> str:
        terms = " + ".join(f"{c:.4g}*{n}" for c, n in zip(self.coef_, self.feature_names_in_,
                                                           strict=True))
        return _("DPLinearRegression({y} = {terms} + {b}; epsilon {eps:g})").format(
            y=self.target, terms=terms, b=f"{self.intercept_:.4g}", eps=self.epsilon_charged)


@dataclass(frozen=True)
class DPPCA(_FittedRelease):
    """A DP PCA (OpenDP, Amin et al.) fitted by the gateway on columns rescaled to [0, 1]
    by their public policy bounds; :meth:`transform` applies the same rescaling."""

    components_: np.ndarray
    explained_variance_: np.ndarray
    explained_variance_ratio_: np.ndarray
    mean_: np.ndarray
    feature_names_in_: list[str]
    scale_lower: np.ndarray
    scale_span: np.ndarray
    n_samples_: int

    @classmethod
    def from_answer(cls, answer: Mapping[str, Any]) -> DPPCA:
        f = release_fields(answer)
        arr = lambda key: np.asarray(f[key], dtype=float)  # noqa: E731
        return cls(components_=arr("components_"), explained_variance_=arr("explained_variance_"),
                   explained_variance_ratio_=arr("explained_variance_ratio_"), mean_=arr("mean_"),
                   feature_names_in_=list(f["feature_names_in_"]), scale_lower=arr("scale_lower"),
                   scale_span=arr("scale_span"), n_samples_=int(f.get("n_samples") or 0),
                   **cls.provenance(answer))

    @property
    def n_components_(self) -> int:
        return int(self.components_.shape[0])

    def transform(self, X: Any) -> np.ndarray:
        scaled = (_matrix(X, self.feature_names_in_) - self.scale_lower) / self.scale_span
        return (scaled - self.mean_) @ self.components_.T

    def __repr__(self) -> str:
        ratios = ", ".join(f"{r:.2f}" for r in self.explained_variance_ratio_)
        return _("DPPCA({n} components of {cols}; explained variance ratio {ratios}; "
                 "epsilon {eps:g})").format(n=self.n_components_,
                                            cols=", ".join(self.feature_names_in_),
                                            ratios=ratios, eps=self.epsilon_charged)


def synthetic_frame(answer: Mapping[str, Any], policy_columns: Mapping[str, Any]) -> pd.DataFrame:
    """Synthetic rows as a DataFrame; ``attrs`` hold the note, the marginals and the cost."""
    f = release_fields(answer)
    frame = pd.DataFrame(answer.get("rows") or [], columns=list(answer.get("columns") or []))
    dtypes = {"int": "Int64", "float": "Float64", "bool": "boolean", "str": "string"}
    for name in frame.columns:
        dtype = dtypes.get((policy_columns.get(name) or {}).get("type", ""))
        if dtype:
            frame[name] = frame[name].astype(dtype)  # type: ignore[call-overload]
    frame.attrs.update(synthetic=True, differentially_private=True, note=f.get("note"),
                       marginals=f.get("marginals") or [], method=f.get("method"),
                       **_FittedRelease.provenance(answer),
                       delta_charged=float(answer.get("delta_charged", answer.get("delta")) or 0))
    return frame
