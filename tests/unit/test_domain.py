"""The domain layer: exact budgets, spec validation, the audit chain, and its purity."""

from __future__ import annotations

import ast
import math
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.domain.audit import GENESIS, entry_hash, verify_chain
from gateway.domain.budget import Budget
from gateway.domain.errors import InvalidRequest, UnsupportedQuery
from gateway.domain.query import (
    Aggregate,
    Filter,
    QuerySpec,
    needs_delta,
    public_keys,
    query_key,
    resolve_loss,
    validate,
)
from gateway.policy import load_policy

DOMAIN = Path(__file__).resolve().parents[2] / "gateway" / "domain"
FLIGHTS = load_policy(Path(__file__).resolve().parents[2] / "policies" / "flights.yaml")


def test_domain_imports_only_the_standard_library() -> None:
    for path in DOMAIN.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                assert top in sys.stdlib_module_names or name.startswith("gateway.domain") or (
                    top == "__future__"), f"{path.name} imports {name}"


def test_budget_is_exact_where_floats_drift() -> None:
    total = Budget()
    for _ in range(10):
        total += Budget.of(0.1)
    assert total == Budget.of(1.0)
    assert sum([0.1] * 10) != 1.0  # what the ledger avoids
    assert Budget.of("0.3").epsilon == Decimal("0.3")
    assert Budget.of(1, 1e-7).delta_units == 10**11


@pytest.mark.parametrize("epsilon", [0, -1, math.nan, math.inf, -math.inf, "abc", True, 1e-12])
def test_query_loss_refuses_bad_epsilon(epsilon: object) -> None:
    with pytest.raises(InvalidRequest):
        Budget.query_loss(epsilon, 0)


@pytest.mark.parametrize("delta", [-1e-9, 1, 1.5, math.nan])
def test_query_loss_refuses_bad_delta(delta: float) -> None:
    with pytest.raises(InvalidRequest):
        Budget.query_loss(0.5, delta)


def spec(**kw: object) -> QuerySpec:
    base: dict[str, object] = {"dataset": "flights", "select": (Aggregate("count"),)}
    base.update(kw)
    return QuerySpec(**base)  # type: ignore[arg-type]


def test_validation_refuses_what_the_policy_does_not_allow() -> None:
    cases = [
        (spec(select=(Aggregate("mean", "tailnum"),)), "no queryable column tailnum"),
        (spec(select=(Aggregate("sum", "nope"),)), "no queryable column nope"),
        (spec(select=(Aggregate("mean", "carrier"),)), "needs a numeric column"),
        (spec(group_by=("tailnum",)), "no queryable column tailnum"),
        (spec(where=(Filter("origin", "<", "JFK"),)), "not supported on text column"),
        (spec(where=(Filter("month", "=", "june"),)), "needs numbers"),
        (spec(where=(Filter("month", "between", (8, 6)),)), "low 8 is above high 6"),
    ]
    for bad, message in cases:
        with pytest.raises(InvalidRequest, match=message):
            validate(bad, FLIGHTS)


def test_spec_construction_refuses_malformed_aggregates() -> None:
    with pytest.raises(UnsupportedQuery, match="unknown aggregate"):
        Aggregate("stddev", "dep_delay")
    with pytest.raises(InvalidRequest, match="q between 0 and 1"):
        Aggregate("quantile", "air_time", q=1.5)
    with pytest.raises(InvalidRequest, match="strictly increasing"):
        Aggregate("histogram", "distance", bins=(0, 500, 400))
    with pytest.raises(InvalidRequest, match="output column named twice"):
        spec(select=(Aggregate("count"), Aggregate("count")))


def test_public_keys_and_delta_rules() -> None:
    assert public_keys(FLIGHTS.columns["origin"]) == ["EWR", "JFK", "LGA"]
    assert public_keys(FLIGHTS.columns["month"]) == list(range(1, 13))
    assert public_keys(FLIGHTS.columns["carrier"]) is None
    assert not needs_delta(spec(group_by=("origin",)), FLIGHTS)
    assert needs_delta(spec(group_by=("carrier",)), FLIGHTS)
    loss = resolve_loss(spec(group_by=("carrier",)), FLIGHTS, epsilon=0.5, delta=None)
    assert loss.delta_float == pytest.approx(FLIGHTS.budget.delta)
    with pytest.raises(InvalidRequest, match="needs delta > 0"):
        resolve_loss(spec(group_by=("carrier",)), FLIGHTS, epsilon=0.5, delta=0)
    with pytest.raises(InvalidRequest, match="needs no delta"):
        resolve_loss(spec(group_by=("origin",)), FLIGHTS, epsilon=0.5, delta=1e-9)
    with pytest.raises(InvalidRequest, match="above the per-query delta"):
        resolve_loss(spec(group_by=("carrier",)), FLIGHTS, epsilon=0.5, delta=1e-3)


def test_query_key_ignores_filter_order_and_aliases_but_not_loss() -> None:
    f1, f2 = Filter("month", ">=", 6), Filter("origin", "in", ("JFK", "EWR"))
    a = spec(where=(f1, f2))
    b = spec(where=(Filter("origin", "in", ("EWR", "JFK")), f1),
             select=(Aggregate("count", alias="n"),))
    loss = Budget.of(0.5)
    assert query_key(a, loss, "v1") == query_key(b, loss, "v1")
    assert query_key(a, loss, "v1") != query_key(a, Budget.of(0.25), "v1")
    assert query_key(a, loss, "v1") != query_key(a, loss, "v2")


def _chain(n: int) -> list[dict[str, object]]:
    rows, prev = [], GENESIS
    for seq in range(1, n + 1):
        row: dict[str, object] = {"seq": seq, "at": f"t{seq}", "actor": "a", "role": "admin",
                                  "action": "x", "dataset": None, "request_id": None,
                                  "grant_id": None, "query_id": None, "epsilon": "0.5",
                                  "delta": None, "outcome": "ok", "detail": "{}",
                                  "prev_hash": prev}
        row["hash"] = entry_hash(row)
        prev = str(row["hash"])
        rows.append(row)
    return rows


def test_chain_names_the_first_damaged_entry() -> None:
    rows = _chain(6)
    assert verify_chain(rows).ok
    edited = [dict(r) for r in rows]
    edited[3]["epsilon"] = "0.1"
    assert verify_chain(edited).first_bad_seq == 4
    deleted = rows[:2] + rows[3:]
    assert verify_chain(deleted).first_bad_seq == 3
    swapped = rows[:1] + [rows[2], rows[1]] + rows[3:]
    assert verify_chain(swapped).first_bad_seq == 2
    truncated_head = rows[1:]
    assert verify_chain(truncated_head).first_bad_seq == 1


def test_a_chain_must_reach_its_anchor_with_its_hash() -> None:
    rows = _chain(6)
    anchor = (5, str(rows[4]["hash"]))
    assert verify_chain(rows, anchor=anchor).ok
    assert verify_chain(rows[:3]).ok  # cut short: links up, but not to the anchor
    cut = verify_chain(rows[:3], anchor=anchor)
    assert not cut.ok and cut.first_bad_seq == 4 and cut.entries == 3
    rewritten = [{**r, "outcome": "x"} for r in rows]  # every entry rewritten and rehashed
    prev = GENESIS
    for row in rewritten:
        row["prev_hash"] = prev
        row["hash"] = prev = entry_hash(row)
    assert verify_chain(rewritten).ok
    found = verify_chain(rewritten, anchor=anchor)
    assert not found.ok and found.first_bad_seq == 5 and found.entries == 4


def test_histogram_labels_are_exact() -> None:
    from gateway.domain.query import histogram_labels

    assert histogram_labels([0, 500, 1_000_000]) == ["[0, 500)", "[500, 1000000)"]
    assert histogram_labels([0.1, 0.1000001]) == ["[0.1, 0.1000001)"]
    with pytest.raises(InvalidRequest, match="output column named twice"):
        spec(select=(Aggregate("histogram", "distance", bins=(0, 1)),
                     Aggregate("count", alias="histogram_distance [0, 1)")))
