"""The dataset-wide epsilon cap bounds what all analysts together can spend."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gateway.domain.errors import BudgetExhausted
from gateway.domain.query import Aggregate, QuerySpec
from gateway.services.common import Principal
from gateway.services.queries import QueryRequest
from tests.conftest import ADMIN, make_services

POLICIES = Path(__file__).resolve().parents[2] / "policies"


def test_cap_stops_colluding_analysts(tmp_path: Path, store_url: str,
                                      demo_files: dict[str, Path]) -> None:
    svc = make_services(tmp_path, demo_files, db_url=store_url, datasets=())
    policy = yaml.safe_load((POLICIES / "exam.yaml").read_text())
    policy["access"] = "conditional"
    policy["budget"].update(default_epsilon=0.5, max_epsilon_per_grant=1.0,
                            dataset_epsilon_cap=1.0)
    path = tmp_path / "exam.yaml"
    path.write_text(yaml.safe_dump(policy))
    svc.catalog.register(ADMIN, name="exam", data=demo_files["exam"], policy_file=path)
    for user in ("rita", "ron"):
        svc.ledger.give(ADMIN, user=user, org=None, dataset="exam", epsilon=1.0, delta=None,
                        days=None)
    spec = QuerySpec(dataset="exam", select=(Aggregate("count"),))
    svc.queries.run(Principal("rita", "researcher"), QueryRequest(spec=spec, epsilon=0.6))
    with pytest.raises(BudgetExhausted, match="dataset-wide epsilon cap"):
        svc.queries.run(Principal("ron", "researcher"), QueryRequest(spec=spec, epsilon=0.6))
    svc.queries.run(Principal("ron", "researcher"), QueryRequest(spec=spec, epsilon=0.4))
    assert svc.catalog.record("exam").epsilon_spent_units == 10**9
    svc.store.dispose()
