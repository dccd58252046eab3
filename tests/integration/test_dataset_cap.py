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


def test_dataset_delta_cap_is_charged_with_the_epsilon_cap(tmp_path: Path, store_url: str,
                                                           demo_files: dict[str, Path]) -> None:
    """Defect e: thresholded keys spend delta; the dataset-wide delta cap stops the total,
    in the same transaction as the epsilon cap (a refused query charges nothing)."""
    svc = make_services(tmp_path, demo_files, db_url=store_url, datasets=())
    policy = yaml.safe_load((POLICIES / "flights.yaml").read_text())
    policy["budget"]["dataset_delta_cap"] = 1.5e-7  # room for one query at delta 1e-7
    path = tmp_path / "flights.yaml"
    path.write_text(yaml.safe_dump(policy))
    svc.catalog.register(ADMIN, name="flights", data=demo_files["flights"], policy_file=path)
    assert svc.catalog.record("flights").policy.budget.delta_cap == 1.5e-7
    for user in ("rita", "ron"):
        svc.ledger.give(ADMIN, user=user, org=None, dataset="flights", epsilon=1.0, delta=None,
                        days=None)
    spec = QuerySpec(dataset="flights", select=(Aggregate("count"),), group_by=("carrier",))
    svc.queries.run(Principal("rita", "researcher"), QueryRequest(spec=spec, epsilon=0.1))
    with pytest.raises(BudgetExhausted, match="dataset-wide delta cap"):
        svc.queries.run(Principal("ron", "researcher"), QueryRequest(spec=spec, epsilon=0.1))
    [ron] = [g for g in svc.ledger.list(ADMIN) if g["user"] == "ron"]
    assert ron["epsilon_spent"] == 0 and ron["delta_spent"] == 0
    assert svc.catalog.record("flights").epsilon_spent_units == 10**8  # rita's only
    public = QuerySpec(dataset="flights", select=(Aggregate("count"),), group_by=("origin",))
    svc.queries.run(Principal("ron", "researcher"), QueryRequest(spec=public, epsilon=0.1))
    svc.store.dispose()
