"""Defect a: data whose id column has missing values is refused at registration (every row
without an id would otherwise count as one person, breaking the per-person bound)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import yaml

from gateway.policy import PolicyError
from tests.conftest import ADMIN, make_services

POLICIES = Path(__file__).resolve().parents[2] / "policies"


def test_null_ids_are_refused_at_registration(tmp_path: Path,
                                              demo_files: dict[str, Path]) -> None:
    svc = make_services(tmp_path / "home", demo_files, datasets=())
    policy = yaml.safe_load((POLICIES / "exam.yaml").read_text())
    policy["privacy_unit"] = {"id_column": "student", "max_contributions": 1}
    policy_path = tmp_path / "exam.yaml"
    policy_path.write_text(yaml.safe_dump(policy))
    frame = pl.read_parquet(demo_files["exam"])
    holes = frame.with_columns(
        pl.when(pl.int_range(pl.len()) % 5 == 0).then(None).otherwise(pl.col("student"))
        .alias("student"))
    missing = holes["student"].null_count()
    data = tmp_path / "exam_holes.parquet"
    holes.write_parquet(data)
    with pytest.raises(PolicyError, match=f"{missing} rows without an id in student"):
        svc.catalog.register(ADMIN, name="exam", data=data, policy_file=policy_path)
    assert svc.catalog.records() == []
    clean = tmp_path / "exam_clean.parquet"
    frame.write_parquet(clean)
    assert svc.catalog.register(ADMIN, name="exam", data=clean, policy_file=policy_path).name \
        == "exam"
    svc.store.dispose()
