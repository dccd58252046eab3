"""Fixtures the engine's tests share: each module says what its data is (a ``frame``
fixture), and gets it as a Parquet file and an engine of its own."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from gateway.adapters.dp import Engine


@pytest.fixture(scope="module")
def parquet(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest, frame: pl.DataFrame
) -> Path:
    """The module's ``frame`` as a Parquet file (the engine is given its path)."""
    path = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1]) / "data.parquet"
    frame.write_parquet(path)
    return path


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine()
