"""The client's DP synthetic rows and DP models against a live gateway: DataFrames and
fitted objects with scikit-learn's attribute names; predict and transform run locally;
previews spend nothing; a held fit on restricted data waits for the review."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gateway.adapters.dp.synth import Tuning
from sandbox import DPPCA, DPLinearRegression, InvalidRequest, connect
from tests.api.test_client import LiveGateway, live_gateway
from tests.conftest import ADMIN

pytestmark = pytest.mark.xdist_group("client_fits")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory,
         demo_files: dict[str, Path]) -> Iterator[LiveGateway]:
    with live_gateway(tmp_path_factory.mktemp("home"), demo_files) as gateway:
        gateway.services.fits.tuning = Tuning(iters=100, aim_rounds=4)
        yield gateway


@pytest.fixture(autouse=True)
def _private_token_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DPSANDBOX_TOKEN_FILE", str(tmp_path / "token"))
    monkeypatch.delenv("DPSANDBOX_TOKEN", raising=False)


def test_synthetic_rows_models_and_previews(live: LiveGateway) -> None:
    gw = connect(live.url, token=live.token("rita"), quiet=True)
    exam = gw.dataset("exam")
    preview = exam.preview_synthetic(rows=100, columns=["schgend", "normexam"], epsilon=0.4,
                                     method="mst", bins=4)
    assert preview.epsilon == pytest.approx(0.4) and preview.accuracy["one_way_count"] > 0
    rows = exam.synthetic(rows=100, columns=["schgend", "normexam"], epsilon=0.4,
                          method="mst", bins=4)
    assert isinstance(rows, pd.DataFrame) and list(rows.columns) == ["schgend", "normexam"]
    assert len(rows) == 100 and str(rows["normexam"].dtype) == "Float64"
    assert rows.attrs["synthetic"] and "midpoint" in rows.attrs["note"]
    assert rows.attrs["epsilon_charged"] == pytest.approx(0.4, rel=1e-6)

    line = exam.linear_regression(y="normexam", x=["standLRT"], epsilon=0.5)
    assert isinstance(line, DPLinearRegression) and line.coef_.shape == (1,)
    predicted = line.predict(pd.DataFrame({"standLRT": [0.0, 1.0]}))
    assert predicted[1] - predicted[0] == pytest.approx(line.coef_[0])
    assert line.predict(np.array([[2.0]]))[0] == pytest.approx(2 * line.coef_[0] + line.intercept_)
    assert "DPLinearRegression" in repr(line)

    pca = exam.pca(columns=["standLRT", "normexam", "schavg"], n_components=2, epsilon=0.5)
    assert isinstance(pca, DPPCA) and pca.components_.shape == (2, 3)
    assert pca.explained_variance_.shape == (2,) and pca.n_components_ == 2
    projected = pca.transform(pd.DataFrame({"standLRT": [0.0, 1.0], "normexam": [0.0, 1.0],
                                            "schavg": [0.0, 0.5]}))
    assert projected.shape == (2, 2)
    model_preview = exam.preview_pca(columns=["standLRT", "normexam"], n_components=1,
                                     epsilon=0.1)
    assert model_preview.epsilon == pytest.approx(0.1)
    left = exam.epsilon_left
    assert left == pytest.approx(2.0 - 0.4 - 0.5 - 0.5, abs=1e-6)  # previews spent nothing
    with pytest.raises(InvalidRequest, match="did you mean normexam"):
        exam.synthetic(rows=10, columns=["normexm"], epsilon=0.1)


def test_a_restricted_fit_waits_for_the_review(live: LiveGateway) -> None:
    live.services.ledger.give(ADMIN, user="erin", org=None, dataset="credit", epsilon=1.0,
                              delta=None, days=30)

    def review() -> None:
        for _ in range(600):
            for query in live.admin("GET", "/v1/queries?status=pending_review&dataset=credit"):
                live.admin("POST", f"/v1/queries/{query['id']}/release", {"note": "fine"})
                return
            time.sleep(0.2)

    thread = threading.Thread(target=review, daemon=True)
    thread.start()
    gw = connect(live.url, token=live.token("erin"), quiet=True)
    line = gw.dataset("credit").linear_regression(y="amount", x="price", epsilon=0.3,
                                                  timeout=120)
    thread.join(timeout=10)
    assert line.epsilon_charged == pytest.approx(0.3, rel=1e-6) and line.coef_.shape == (1,)
