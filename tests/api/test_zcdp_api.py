"""zCDP datasets through the API and the client library: grants shown as rho and as OpenDP's
(epsilon, delta), queries asked in epsilon or rho and charged in rho, Gaussian accuracy in
previews, the cache, and one session (one notebook) on a pure and a zCDP dataset."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import opendp.prelude as dp
import pytest
import yaml
from fastapi.testclient import TestClient

from gateway.adapters.dp import rho_units_for_epsilon
from gateway.app import create_app
from sandbox import connect
from tests.conftest import ADMIN, PASSWORD, GatewayEnv, make_services, serve
from tests.live import serve_gateway

POLICIES = Path(__file__).resolve().parents[2] / "policies"
DELTA = 1e-7  # exam_zcdp's policy delta
RHO_UNIT = 1e-12


def opendp_epsilon(rho: float, delta: float = DELTA) -> float:
    """OpenDP's conversion of a real Gaussian mechanism whose privacy map is ``rho``."""
    gaussian = dp.m.make_gaussian(dp.atom_domain(T=float, nan=False), dp.absolute_distance(T=float),
                                  1 / math.sqrt(2 * rho))
    return float(dp.c.make_fix_delta(dp.c.make_zCDP_to_approxDP(gaussian), delta).map(1.0)[0])


def mixed_services(home: Path, demo_files: dict[str, Path]) -> Any:
    services = make_services(home, demo_files, datasets=("exam",))
    services.catalog.register(ADMIN, name="exam_zcdp", data=demo_files["exam"],
                              policy_file=POLICIES / "variants" / "exam_zcdp.yaml")
    return services


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory,
        demo_files: dict[str, Path]) -> Iterator[GatewayEnv]:
    yield from serve(mixed_services(tmp_path_factory.mktemp("home"), demo_files))


def count_body(dataset: str, i: int = 0, **loss: Any) -> dict[str, Any]:
    return {"dataset": dataset, "select": [{"agg": "count"}, {"agg": "mean", "column": "normexam"}],
            "where": [{"column": "normexam", "op": ">=", "value": -5 + i / 1000}], **loss}


def test_a_zcdp_grant_is_rho_shown_as_opendps_epsilon(env: GatewayEnv) -> None:
    resp = env.post("root_admin", "/v1/grants",
                    {"user": "rita", "dataset": "exam_zcdp", "epsilon": 1.0})
    assert resp.status_code in (200, 201), resp.text
    grant = resp.json()
    assert grant["accounting"] == "zcdp" and grant["conversion_delta"] == DELTA
    assert grant["rho_total"] == rho_units_for_epsilon(1.0, DELTA) * RHO_UNIT
    assert grant["epsilon_total"] == pytest.approx(opendp_epsilon(grant["rho_total"]), abs=1e-9)
    assert grant["epsilon_total"] == pytest.approx(1.0, abs=1e-9)
    listed = {g["id"]: g for g in env.get("rita", "/v1/grants").json()}
    assert listed[grant["id"]]["rho_total"] == grant["rho_total"]


def test_a_query_in_epsilon_is_charged_in_rho_and_shown_both_ways(env: GatewayEnv) -> None:
    before = next(g for g in env.get("rita", "/v1/grants").json() if g["dataset"] == "exam_zcdp")
    resp = env.post("rita", "/v1/queries", count_body("exam_zcdp", 1, epsilon=0.1))
    assert resp.status_code == 200, resp.text
    out = resp.json()
    rho = rho_units_for_epsilon(0.1, DELTA) * RHO_UNIT
    assert out["accounting"] == "zcdp" and out["rho_charged"] == pytest.approx(rho, abs=1e-13)
    assert out["epsilon_charged"] == pytest.approx(0.1, abs=1e-9)
    assert out["epsilon_charged"] == pytest.approx(opendp_epsilon(out["rho_charged"]), abs=1e-9)
    left = out["budget"]["rho_remaining"]
    assert left == pytest.approx(before["rho_total"] - before["rho_spent"] - rho, abs=1e-12)
    assert out["budget"]["epsilon_remaining"] == pytest.approx(opendp_epsilon(left), abs=1e-9)
    after = next(g for g in env.get("rita", "/v1/grants").json() if g["id"] == before["id"])
    assert after["rho_spent"] == pytest.approx(before["rho_spent"] + rho, abs=1e-12)
    assert after["epsilon_spent"] == pytest.approx(opendp_epsilon(after["rho_spent"]), abs=1e-9)


def test_a_query_in_rho_and_the_cache(env: GatewayEnv) -> None:
    body = count_body("exam_zcdp", 2, rho=0.001)
    first = env.post("rita", "/v1/queries", body).json()
    assert first["rho_charged"] == 0.001 and not first["cached"]
    again = env.post("rita", "/v1/queries", body).json()
    assert again["cached"] and again["rows"] == first["rows"] and again["rho_charged"] == 0
    assert again["budget"]["rho_remaining"] == first["budget"]["rho_remaining"]


@pytest.mark.parametrize(("dataset", "loss", "message"), [
    ("exam", {"rho": 0.01}, "pure accounting"),
    ("exam_zcdp", {"rho": 0.01, "epsilon": 0.1}, "either epsilon or rho"),
    ("exam_zcdp", {}, "either epsilon or rho"),
    ("exam_zcdp", {"rho": True}, "number"),
    ("exam_zcdp", {"rho": -0.1}, "greater than 0"),
    ("exam_zcdp", {"rho": 1e300}, "at most"),
])
def test_bad_losses_are_refused_and_charge_nothing(env: GatewayEnv, dataset: str,
                                                  loss: dict[str, Any], message: str) -> None:
    before = env.get("rita", "/v1/grants").json()
    resp = env.post("rita", "/v1/queries", count_body(dataset, 3, **loss))
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["code"] == "invalid_request"
    assert message in resp.json()["error"]["message"]
    assert env.get("rita", "/v1/grants").json() == before


def test_preview_reports_gaussian_accuracy_and_both_costs(env: GatewayEnv) -> None:
    rho = 0.002
    body = {"dataset": "exam_zcdp", "select": [{"agg": "count"}], "rho": rho}
    preview = env.post("rita", "/v1/queries/preview", body).json()
    assert preview["accounting"] == "zcdp" and preview["rho"] == rho
    assert preview["epsilon"] == pytest.approx(opendp_epsilon(rho), abs=1e-9)
    gaussian = dp.discrete_gaussian_scale_to_accuracy(1 / math.sqrt(2 * rho), 0.05)
    assert preview["accuracy"]["alpha"] == 0.05
    assert abs(preview["accuracy"]["count"] - gaussian) <= 1
    pure = env.post("rita", "/v1/queries/preview",
                    {"dataset": "exam", "select": [{"agg": "count"}], "epsilon": 0.1}).json()
    assert pure["accounting"] == "pure" and "rho" not in pure


def test_an_open_zcdp_dataset_grants_itself_in_rho(env: GatewayEnv) -> None:
    out = env.post("ron", "/v1/queries", count_body("exam_zcdp", 4, epsilon=0.2)).json()
    grant = next(g for g in env.get("ron", "/v1/grants").json() if g["dataset"] == "exam_zcdp")
    assert grant["accounting"] == "zcdp"
    assert grant["epsilon_total"] == pytest.approx(2.0, abs=1e-9)  # the policy's default_epsilon
    assert grant["rho_spent"] == out["rho_charged"]


def test_one_notebook_on_a_pure_and_a_zcdp_dataset(tmp_path: Path,
                                                   demo_files: dict[str, Path]) -> None:
    """The client library in one session: each dataset charges its own grant in its own unit."""
    services = mixed_services(tmp_path / "home", demo_files)
    for dataset in ("exam", "exam_zcdp"):
        services.ledger.give(ADMIN, user="rita", org=None, dataset=dataset, epsilon=1.0,
                             delta=None, days=None)
    with serve_gateway(services) as url:
        gw = connect(url, username="rita", password=PASSWORD)
        pure, zcdp = gw.dataset("exam"), gw.dataset("exam_zcdp")
        for i in range(3):
            where = f"normexam >= {-5 + i / 100}"
            pure.count(epsilon=0.1, where=where)
            zcdp.count(epsilon=0.1, where=where)
        zcdp.query(count=True, rho=0.0005)
        grants = gw.grants().set_index("dataset")
        assert list(grants.loc[["exam", "exam_zcdp"], "accounting"]) == ["pure", "zcdp"]
        assert grants.loc["exam", "epsilon_spent"] == pytest.approx(0.3)
        rho = 3 * rho_units_for_epsilon(0.1, DELTA) * RHO_UNIT + 0.0005
        assert grants.loc["exam_zcdp", "rho_spent"] == pytest.approx(rho, abs=1e-12)
        assert grants.loc["exam_zcdp", "epsilon_spent"] == pytest.approx(
            opendp_epsilon(grants.loc["exam_zcdp", "rho_spent"]), abs=1e-9)
        left = zcdp.budget_left()
        assert left.rho == pytest.approx(grants.loc["exam_zcdp", "rho_remaining"])
        assert "rho left" in repr(left) and "epsilon" in repr(left)
        assert "rho" not in repr(pure.budget_left())
        with pytest.raises(Exception, match="pure accounting"):
            pure.query(count=True, rho=0.001)


def test_an_application_on_a_zcdp_dataset_is_granted_in_rho(env: GatewayEnv) -> None:
    applied = env.post("erin", "/v1/requests", {"dataset": "exam_zcdp", "epsilon": 1.5,
                                                "purpose": "school effects over many cells",
                                                "days": 10})
    assert applied.status_code in (200, 201), applied.text
    request_id = applied.json()["id"]
    if applied.json()["status"] == "pending":
        seen = env.get("root_admin", f"/v1/requests/{request_id}").json()
        context = seen.get("context", {}).get("dataset", {})
        if context:
            assert context["accounting"] == "zcdp"
            assert context["rho_asked"] == rho_units_for_epsilon(1.5, DELTA) * RHO_UNIT
        approved = env.post("root_admin", f"/v1/requests/{request_id}/approve", {"note": "ok"})
        assert approved.status_code == 200, approved.text
    grant = next(g for g in env.get("erin", "/v1/grants").json()
                 if g["dataset"] == "exam_zcdp")
    assert grant["accounting"] == "zcdp"
    assert grant["rho_total"] == rho_units_for_epsilon(1.5, DELTA) * RHO_UNIT
    assert grant["epsilon_total"] == pytest.approx(opendp_epsilon(grant["rho_total"]), abs=1e-9)


def test_a_restricted_zcdp_query_is_reviewed_then_charged_in_rho(
        tmp_path: Path, demo_files: dict[str, Path]) -> None:
    policy = yaml.safe_load((POLICIES / "variants" / "exam_zcdp.yaml").read_text())
    policy.update(name="exam_zr", access="restricted")
    policy_file = tmp_path / "exam_zr.yaml"
    policy_file.write_text(yaml.safe_dump(policy))
    services = make_services(tmp_path / "home", demo_files, datasets=())
    services.catalog.register(ADMIN, name="exam_zr", data=demo_files["exam"],
                              policy_file=policy_file)
    grant = services.ledger.give(ADMIN, user="rita", org=None, dataset="exam_zr", epsilon=1.0,
                                 delta=None, days=None)
    with TestClient(create_app(services=services)) as client:
        review_env = GatewayEnv(services, client)
        held = review_env.post("rita", "/v1/queries", count_body("exam_zr", 1, rho=0.001)).json()
        assert held["status"] == "pending_review"
        assert review_env.get("rita", f"/v1/grants/{grant['id']}").json()["rho_spent"] == 0
        seen = review_env.get("root_admin", f"/v1/queries/{held['id']}").json()
        assert seen["rho"] == 0.001 and seen["review"]["rho"] == 0.001
        assert seen["review"]["accuracy"]["count"] > 0  # Gaussian accuracy before release
        released = review_env.post("root_admin", f"/v1/queries/{held['id']}/release",
                                   {"note": "fine"})
        assert released.status_code == 200, released.text
        assert released.json()["status"] == "released"
        after = review_env.get("rita", f"/v1/grants/{grant['id']}").json()
        assert after["rho_spent"] == 0.001
        assert after["epsilon_spent"] == pytest.approx(opendp_epsilon(0.001), abs=1e-9)


def test_openapi_documents_the_zcdp_fields(env: GatewayEnv) -> None:
    schemas = env.client.get("/v1/openapi.json").json()["components"]["schemas"]
    assert {"accounting", "rho_total", "rho_remaining", "conversion_delta"} <= set(
        schemas["GrantAnswer"]["properties"])
    assert "rho_charged" in schemas["QueryAnswer"]["properties"]
    assert "rho" in schemas["PreviewAnswer"]["properties"]
    assert "rho" in schemas["QueryBody"]["properties"]
