"""Policies: the bundled ones load; bad ones are refused naming file, field and problem."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gateway.policy import PolicyError, load_policy

POLICIES = Path(__file__).resolve().parents[2] / "policies"


def test_bundled_policies_load() -> None:
    names = {load_policy(p).name for p in POLICIES.glob("*.yaml")}
    assert names == {"flights", "exam", "credit"}
    accesses = {load_policy(p).access for p in POLICIES.glob("*.yaml")}
    assert accesses == {"open", "conditional", "restricted"}


def _write(tmp_path: Path, mutate: dict[str, object]) -> Path:
    data = yaml.safe_load((POLICIES / "flights.yaml").read_text())
    for dotted, value in mutate.items():
        node = data
        *parents, last = dotted.split(".")
        for key in parents:
            node = node[key]
        if value is ...:
            del node[last]
        else:
            node[last] = value
    path = tmp_path / "flights.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("mutate", "field", "problem"),
    [
        ({"columns.month.type": "date"}, "columns.month.type", "should be one of 'str'"),
        ({"columns.dep_delay.bounds": [600, -60]}, "columns.dep_delay.bounds",
         "lower bound 600 is above upper bound -60"),
        ({"columns.dep_delay.bounds": [float("nan"), 1]}, "columns.dep_delay.bounds", "finite"),
        ({"source": ...}, "source", "is required"),
        ({"access": "secret"}, "access", "should be one of 'open'"),
        ({"budget.default_epsilon": 10.0}, "budget", "default_epsilon is above"),
        ({"columns.origin.colour": "red"}, "columns.origin.colour", "is not a known field"),
        ({"privacy_unit.id_column": "nope"}, "(top level)", "id_column nope"),
        ({"accounting": "renyi"}, "accounting", "should be one of 'pure', 'zcdp'"),
        ({"budget.dataset_rho_cap": 1.0}, "(top level)", "dataset_rho_cap is only for"),
        ({"accounting": "zcdp", "budget.delta": 0}, "(top level)", "zcdp needs budget.delta > 0"),
        ({"accounting": "zcdp", "budget.dataset_rho_cap": -1}, "budget.dataset_rho_cap",
         "greater than 0"),
        ({"engine": "duckdb"}, "engine", "should be one of 'polars', 'spark'"),
        ({"source": "/srv/lake/flights"}, "(top level)", "relative to the data directory"),
        ({"engine": "spark", "source": "lake.flights; DROP"}, "(top level)",
         "a Parquet directory"),
        ({"engine": "spark", "source": "hdfs://nn/lake/../secret"}, "(top level)",
         "a Parquet directory"),
    ],
)
def test_bad_policy_message_names_file_field_problem(
    tmp_path: Path, mutate: dict[str, object], field: str, problem: str
) -> None:
    path = _write(tmp_path, mutate)
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    message = info.value.message
    assert str(path) in message and field in message and problem in message, message


def test_name_must_match_file(tmp_path: Path) -> None:
    path = _write(tmp_path, {"name": "other"})
    with pytest.raises(PolicyError, match="does not match the file name flights"):
        load_policy(path)


def test_accounting_defaults_to_pure_and_may_be_zcdp(tmp_path: Path) -> None:
    assert {load_policy(p).accounting for p in POLICIES.glob("*.yaml")} == {"pure"}
    policy = load_policy(_write(tmp_path, {"accounting": "zcdp", "budget.dataset_rho_cap": 2.5}))
    assert (policy.accounting, policy.budget.dataset_rho_cap) == ("zcdp", 2.5)
    assert policy.public()["accounting"] == "zcdp"


@pytest.mark.parametrize("source", ["hdfs://namenode:8020/lake/trips", "/srv/lake/trips",
                                    "lake/trips", "warehouse.trips", "trips.parquet"])
def test_a_spark_source_is_a_parquet_directory_or_a_table(tmp_path: Path, source: str) -> None:
    assert {load_policy(p).engine for p in POLICIES.glob("*.yaml")} == {"polars"}
    policy = load_policy(_write(tmp_path, {"engine": "spark", "source": source}))
    assert (policy.engine, policy.source) == ("spark", source)
    assert "source" not in policy.public()


def test_the_zcdp_variant_of_exam_loads() -> None:
    policy = load_policy(POLICIES / "variants" / "exam_zcdp.yaml")
    assert (policy.name, policy.accounting, policy.source) == ("exam_zcdp", "zcdp", "exam.parquet")


@pytest.mark.parametrize(("column", "problem"), [
    ({"type": "int", "hidden": True, "nullable": True}, "is nullable"),
    ({"type": "int", "hidden": True, "nullable": True, "null_rate": 0.1}, "is nullable"),
    ({"type": "float", "hidden": True}, "can hold NaN"),
])
def test_a_nullable_or_hidden_nullable_id_column_is_refused(
        tmp_path: Path, column: dict[str, object], problem: str) -> None:
    """Defect a: rows without an id would all count as one person."""
    path = _write(tmp_path, {"privacy_unit.id_column": "tailnum", "columns.tailnum": column})
    with pytest.raises(PolicyError, match=problem):
        load_policy(path)


def test_a_bad_policy_reads_in_chinese_for_a_chinese_reader(tmp_path: Path) -> None:
    """The CLI shows policy problems in DPSANDBOX_LANG's language; the record stays English."""
    from gateway.domain.text import use_locale

    path = _write(tmp_path, {"columns.dep_delay.bounds": [600, -60], "access": "secret",
                             "columns.origin.colour": "red"})
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert info.value.message == (
        f"{path}: access: should be one of 'open', 'conditional', 'restricted'; "
        "columns.dep_delay.bounds: lower bound 600 is above upper bound -60; "
        "columns.origin.colour: is not a known field here")
    with use_locale("zh_CN"):
        assert info.value.localized() == (
            f"{path}：access：应为以下之一：'open'、'conditional'、'restricted'；"
            "columns.dep_delay.bounds：下限 600 大于上限 -60；"
            "columns.origin.colour：不是此处可用的字段")
