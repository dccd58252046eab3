"""A Spark dataset through the gateway's API: registered in place, queried (JSON and DP SQL)
with the same charge, cache and audit as the polars engine, refusals charging nothing.

The data is a Spark copy of the demo dataset exam (a Parquet directory under the data
directory); the policy is policies/variants/exam_spark.yaml (``engine: spark``, source
``lake/exam``). The gateway
runs one local SparkSession (DPSANDBOX_SPARK_MASTER=local[1]), stopped with the app.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.bootstrap import bootstrap
from gateway.domain.errors import InvalidRequest
from gateway.services.queries import QueryRequest
from gateway.settings import Settings
from tests.conftest import ACCOUNTS, ADMIN, PASSWORD, GatewayEnv

POLICIES = Path(__file__).resolve().parents[2] / "policies"


def spark_policy(directory: Path, source: Path | str, name: str = "exam_spark", **extra: Any) -> Path:
    policy = yaml.safe_load((POLICIES / "variants" / "exam_spark.yaml").read_text(encoding="utf-8"))
    policy.update(name=name, engine="spark", source=str(source), **extra)
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(policy), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory,
        demo_files: dict[str, Path]) -> Iterator[GatewayEnv]:
    home = tmp_path_factory.mktemp("home")
    settings = Settings(home=home, spark_master="local[1]")
    lake = settings.datasets_dir / "lake" / "exam"  # the variant's source: lake/exam
    lake.mkdir(parents=True)
    frame = pl.read_parquet(demo_files["exam"])
    half = frame.height // 2
    frame.head(half).write_parquet(lake / "part-0.parquet")
    frame.tail(frame.height - half).write_parquet(lake / "part-1.parquet")
    services = bootstrap(settings)
    for user, (role, org) in ACCOUNTS.items():
        services.users.create(ADMIN, username=user, role=role, password=PASSWORD, org=org)
    services.catalog.register(ADMIN, name="exam", data=demo_files["exam"])
    rec = services.catalog.register(ADMIN, name="exam_spark",
                                    policy_file=POLICIES / "variants" / "exam_spark.yaml")
    assert rec.row_count == frame.height and rec.location == str(lake)
    services.catalog.register(ADMIN, name="exam_held",
                              policy_file=spark_policy(home, lake, "exam_held", access="restricted"))
    with TestClient(create_app(services=services)) as client:
        yield GatewayEnv(services, client)
    assert not services.catalog.spark.started  # the app's shutdown stopped it


def body(dataset: str, **extra: Any) -> dict[str, Any]:
    return {"dataset": dataset, "select": [{"agg": "count"}, {"agg": "mean", "column": "normexam"}],
            "group_by": ["sex"], "epsilon": 0.5, **extra}


def spent(env: GatewayEnv, user: str, dataset: str) -> float:
    grants = env.get(user, "/v1/grants").json()
    return sum(g["epsilon_spent"] for g in grants if g["dataset"] == dataset)


def audit(env: GatewayEnv, **query: str) -> list[dict[str, Any]]:
    params = "&".join(f"{k}={v}" for k, v in query.items())
    return env.get("audrey", f"/v1/audit?{params}&size=200").json()["entries"]


def test_a_spark_dataset_answers_like_the_polars_one(env: GatewayEnv,
                                                     demo_files: dict[str, Path]) -> None:
    resp = env.post("rita", "/v1/queries", body("exam_spark"))
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["epsilon_charged"] == 0.5 and not out["cached"]
    assert out["columns"] == ["sex", "count", "mean_normexam"]
    truth = dict(pl.read_parquet(demo_files["exam"]).group_by("sex").len().iter_rows())
    accuracy = out["accuracy"]["count"]
    assert accuracy > 0 and out["accuracy"]["alpha"] == 0.05
    assert [row[0] for row in out["rows"]] == ["F", "M"]
    for sex, count, mean in out["rows"]:
        # 7 half-widths of Laplace noise at alpha 0.05: exceeded with probability about
        # 0.05^7 ~ 8e-10 per cell (at 5: 3e-7 per cell, ~1e-6 over this module)
        assert abs(count - truth[sex]) <= 7 * accuracy
        assert -4 <= mean <= 4
    polars = env.post("rita", "/v1/queries", body("exam")).json()
    assert polars["accuracy"]["count"] == pytest.approx(accuracy)  # the same accuracy report
    [charge] = audit(env, query_id=out["id"], action="query.charge")
    assert charge["detail"]["spec"]["dataset"] == "exam_spark"
    # the charge is what OpenDP's maps of the measurements this plan applies spend
    request = body("exam_spark")
    prepared = env.services.queries.prepare(QueryRequest(
        spec=None, body={k: v for k, v in request.items() if k != "epsilon"}, epsilon=0.5))
    plan = env.services.queries.plan(prepared)
    assert plan.spent[0] == pytest.approx(out["epsilon_charged"], rel=1e-6)
    assert plan.spent[0] <= out["epsilon_charged"] and plan.spent[1] == 0
    assert spent(env, "rita", "exam_spark") == pytest.approx(0.5)


def test_a_repeated_query_is_served_from_the_cache_at_no_charge(env: GatewayEnv) -> None:
    first = env.post("ron", "/v1/queries", body("exam_spark", epsilon=0.25)).json()
    again = env.post("ron", "/v1/queries", body("exam_spark", epsilon=0.25)).json()
    assert again["cached"] and again["epsilon_charged"] == 0 and again["rows"] == first["rows"]
    assert spent(env, "ron", "exam_spark") == pytest.approx(0.25)


def test_dp_sql_on_a_spark_dataset(env: GatewayEnv) -> None:
    resp = env.post("erin", "/v1/queries", {
        "sql": "SELECT schgend, SUM(normexam) AS total FROM exam_spark WHERE standLRT > 0 "
               "GROUP BY schgend", "epsilon": 0.3})
    assert resp.status_code == 200, resp.text
    assert [row[0] for row in resp.json()["rows"]] == ["mixed", "boys", "girls"]


@pytest.mark.parametrize("query", [
    body("exam_spark", select=[{"agg": "quantile", "column": "normexam", "q": 0.5}]),
    {"sql": "SELECT MEDIAN(normexam) FROM exam_spark", "epsilon": 0.5},
])
def test_a_query_it_cannot_bound_is_refused_and_charges_nothing(
        env: GatewayEnv, query: dict[str, Any]) -> None:
    before = spent(env, "eve", "exam_spark")
    charges = len(audit(env, action="query.charge"))
    resp = env.post("eve", "/v1/queries", query)
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["code"] == "unsupported_query"
    assert "Spark engine cannot release quantile" in resp.json()["error"]["message"]
    assert spent(env, "eve", "exam_spark") == before
    assert len(audit(env, action="query.charge")) == charges
    refusal = audit(env, actor="eve", action="query", outcome="denied")[0]
    assert refusal["detail"].get("sql", refusal["dataset"]) == query.get("sql", "exam_spark")
    assert refusal["detail"]["code"] == "unsupported_query"
    assert "Spark engine" in refusal["detail"]["reason"], refusal
    assert not refusal.get("epsilon") and not refusal.get("grant_id"), refusal


def test_a_restricted_spark_dataset_holds_queries_for_review(env: GatewayEnv) -> None:
    env.grant("ron", "exam_held", 1.0)
    held = env.post("ron", "/v1/queries", body("exam_held")).json()
    assert held["status"] == "pending_review" and "rows" not in held
    assert spent(env, "ron", "exam_held") == 0
    review = env.get("root_admin", f"/v1/queries/{held['id']}").json()["review"]
    assert review["accuracy"]["count"] > 0, review
    resp = env.post("root_admin", f"/v1/queries/{held['id']}/release", {"note": "aggregates"})
    assert resp.status_code == 200, resp.text
    released = env.get("ron", f"/v1/queries/{held['id']}").json()
    assert released["status"] == "released" and [r[0] for r in released["rows"]] == ["F", "M"]
    assert spent(env, "ron", "exam_held") == pytest.approx(0.5)
    [charge] = audit(env, query_id=held["id"], action="query.charge")
    assert charge["actor"] == "root_admin" and charge["detail"]["analyst"] == "ron"


def test_synthetic_data_is_refused_on_a_spark_dataset(env: GatewayEnv) -> None:
    resp = env.post("eve", "/v1/synthetic", {"dataset": "exam_spark", "columns": ["sex", "vr"],
                                             "rows": 10, "epsilon": 0.5})
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "unsupported_query"


def test_registration_checks_the_source_in_place(env: GatewayEnv, tmp_path: Path) -> None:
    catalog = env.services.catalog
    lake = Path(catalog.record("exam_spark").location)
    with pytest.raises(InvalidRequest, match="without a data file"):
        catalog.register(ADMIN, name="exam_s2", data=lake / "part-0.parquet",
                         policy_file=spark_policy(tmp_path, lake, "exam_s2"))
    with pytest.raises(InvalidRequest, match="more than the public bound 100"):
        catalog.register(ADMIN, name="exam_s3",
                         policy_file=spark_policy(tmp_path, lake, "exam_s3", max_rows=100))
    with pytest.raises(InvalidRequest, match="cannot be read by Spark"):
        catalog.register(ADMIN, name="exam_s4",
                         policy_file=spark_policy(tmp_path, tmp_path / "absent", "exam_s4"))


def test_a_table_name_source_is_read_from_sparks_catalog(env: GatewayEnv,
                                                         demo_files: dict[str, Path]) -> None:
    """``source`` may name a table Spark's catalog holds (here the qualified name of a global
    temporary view over the lake's Parquet parts): registered and answered in place, and
    queried like the directory it is read from."""
    catalog = env.services.catalog
    spark = catalog.spark.get()
    lake = catalog.record("exam_spark").location
    spark.read.parquet(lake).createOrReplaceGlobalTempView("exam_table")
    home = Path(env.services.settings.home)
    # Spark's catalog keeps its warehouse under DPSANDBOX_HOME, not in the working directory
    assert str(home / "spark-warehouse") in spark.conf.get("spark.sql.warehouse.dir")
    assert not (Path.cwd() / "spark-warehouse").exists()
    rec = catalog.register(ADMIN, name="exam_tbl",
                           policy_file=spark_policy(home, "global_temp.exam_table", "exam_tbl"))
    assert rec.location == "global_temp.exam_table"
    assert rec.row_count == pl.read_parquet(demo_files["exam"]).height
    resp = env.post("rita", "/v1/queries", body("exam_tbl", epsilon=0.4))
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["epsilon_charged"] == 0.4 and [row[0] for row in out["rows"]] == ["F", "M"]
    truth = dict(pl.read_parquet(demo_files["exam"]).group_by("sex").len().iter_rows())
    for sex, count, _mean in out["rows"]:
        assert abs(count - truth[sex]) <= 7 * out["accuracy"]["count"]  # as above
    assert spent(env, "rita", "exam_tbl") == pytest.approx(0.4)
    # a table the catalog does not hold is refused at registration
    with pytest.raises(InvalidRequest, match="cannot be read by Spark"):
        catalog.register(ADMIN, name="exam_tbl2",
                         policy_file=spark_policy(home, "global_temp.no_such_table", "exam_tbl2"))

