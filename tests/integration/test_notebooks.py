"""Every scenario notebook runs to the end in a real kernel against a live gateway.

The kernel gets only what a sandbox gets: ``DPSANDBOX_GATEWAY_URL`` and a sandbox-scoped
``DPSANDBOX_TOKEN`` (issued the way the hub asks for one).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from tests.api.test_client import LiveGateway, live_gateway
from tests.conftest import ADMIN, PASSWORD

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "notebooks_templates"
pytestmark = pytest.mark.xdist_group("notebooks")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory,
         demo_files: dict[str, Path]) -> Iterator[LiveGateway]:
    with live_gateway(tmp_path_factory.mktemp("home"), demo_files) as gateway:
        yield gateway


LANGUAGES = ("en", "zh")
DPSANDBOX_LANG = {"en": "en", "zh": "zh_CN"}


def analyst(live: LiveGateway, base: str, lang: str) -> str:
    """``base`` for English; for Chinese a fresh account of the same role and org, so that
    the two runs of a scenario do not share grants and applications."""
    if lang == "en":
        return base
    name = f"{base}-{lang}"
    if not any(u["username"] == name for u in live.admin("GET", "/v1/users")):
        role, org = {"ron": ("researcher", None), "rita": ("researcher", None),
                     "erin": ("enterprise", "acme"), "eve": ("enterprise", "acme")}[base]
        live.services.users.create(ADMIN, username=name, role=role, password=PASSWORD, org=org)
    return name


def granted(live: LiveGateway, base: str, lang: str, dataset: str) -> tuple[str, dict[str, Any]]:
    """An analyst (as :func:`analyst`) given epsilon 3 on ``dataset`` for 30 days by an admin:
    the name and the grant."""
    name = analyst(live, base, lang)
    return name, live.services.ledger.give(ADMIN, user=name, org=None, dataset=dataset,
                                           epsilon=3.0, delta=None, days=30)


def execute(notebook: Any, live: LiveGateway, user: str, workdir: Path, *, timeout: int,
            allow_errors: bool = False, **env_extra: str) -> list[dict[str, Any]]:
    """Run ``notebook`` in a real kernel with what a sandbox gets (the gateway's URL and a
    sandbox token for ``user``); its error outputs."""
    env = {**os.environ, "DPSANDBOX_GATEWAY_URL": live.url,
           "DPSANDBOX_TOKEN": live.sandbox_token(user),
           "DPSANDBOX_TOKEN_FILE": str(workdir / ".dpsandbox_token"),
           "PYTHONPATH": str(ROOT), **env_extra}
    env.pop("MPLBACKEND", None)  # the kernel's inline backend puts plots in the outputs
    NotebookClient(notebook, timeout=timeout, kernel_name="python3", allow_errors=allow_errors,
                   resources={"metadata": {"path": str(workdir)}}).execute(env=env)
    return [o for c in notebook.cells for o in c.get("outputs", [])
            if o.get("output_type") == "error"]


def run_notebook(name: str, live: LiveGateway, user: str, workdir: Path,
                 lang: str = "en") -> Any:
    notebook = nbformat.read(TEMPLATES / lang / name, as_version=4)
    assert all(not c.get("outputs") for c in notebook.cells if c.cell_type == "code"), \
        f"{lang}/{name} is committed with outputs; regenerate it with make_templates.py"
    errors = execute(notebook, live, user, workdir, timeout=600,
                     DPSANDBOX_LANG=DPSANDBOX_LANG[lang])
    assert not errors, errors
    return notebook


def run_as(live: LiveGateway, base: str, name: str, workdir: Path, lang: str) -> tuple[str, Any]:
    """The analyst (as :func:`analyst`) and notebook ``name`` as it ran in their kernel."""
    user = analyst(live, base, lang)
    return user, run_notebook(name, live, user, workdir, lang)


def text_of(notebook: Any) -> str:
    parts = []
    for cell in notebook.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            parts.append(json.dumps(out.get("data", {}).get("text/plain", ""), ensure_ascii=False))
    return "\n".join(parts)


def images_in(notebook: Any) -> int:
    return sum("image/png" in out.get("data", {})
               for cell in notebook.cells for out in cell.get("outputs", []))


def audit(live: LiveGateway, **filters: str) -> list[dict[str, Any]]:
    query = "&".join(f"{k}={v}" for k, v in filters.items())
    return list(live.admin("GET", f"/v1/audit?page_size=500&{query}")["entries"])


def run_reviewed(name: str, live: LiveGateway, user: str, workdir: Path,
                 lang: str) -> tuple[Any, list[dict[str, Any]]]:
    """Run a notebook on the restricted credit data while an admin releases (note "ok") each
    of ``user``'s queries held for review: the notebook, and each query as the admin saw it."""
    stop = threading.Event()
    reviews: list[dict[str, Any]] = []

    def reviewer() -> None:
        while not stop.wait(0.3):
            for query in live.admin("GET", "/v1/queries?status=pending_review&dataset=credit"):
                if query["user"] == user:
                    reviews.append(live.admin("GET", f"/v1/queries/{query['id']}"))
                    live.admin("POST", f"/v1/queries/{query['id']}/release", {"note": "ok"})

    thread = threading.Thread(target=reviewer, daemon=True)
    thread.start()
    try:
        notebook = run_notebook(name, live, user, workdir, lang)
    finally:
        stop.set()
        thread.join(timeout=10)
    return notebook, reviews


def test_templates_are_current() -> None:
    """The committed .ipynb files are what make_templates.py writes, in both languages."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_templates",
                                                  TEMPLATES / "make_templates.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    committed = sorted(str(p.relative_to(TEMPLATES)) for p in TEMPLATES.glob("*/*.ipynb"))
    assert committed == sorted(module.TEMPLATES)
    assert {name.split("/")[0] for name in committed} == set(LANGUAGES)
    for name, cells in module.TEMPLATES.items():
        notebook = nbformat.read(TEMPLATES / name, as_version=4)
        assert [c.source for c in notebook.cells] == [c.source for c in cells], name
    chinese = nbformat.read(TEMPLATES / "zh" / "01_getting_started.ipynb", as_version=4)
    assert "可用不可见" in chinese.cells[0].source


@pytest.mark.parametrize("lang", LANGUAGES)
def test_getting_started(live: LiveGateway, tmp_path: Path, lang: str) -> None:
    ron, notebook = run_as(live, "ron", "01_getting_started.ipynb", tmp_path, lang)
    out = text_of(notebook)
    # the conditional dataset refused a query before approval
    assert {"en": "not yet:", "zh": "暂不可用："}[lang] in out
    applications = [a for a in live.admin("GET", "/v1/requests")
                    if a["applicant"] == ron and a["dataset"] == "flights"]
    assert [a["status"] for a in applications] == ["pending"]
    assert audit(live, actor=ron, action="catalog.dummy")
    released = audit(live, actor=ron, action="query.release", dataset="exam")
    assert len(released) == 1 and released[0]["outcome"] == "ok"
    assert not audit(live, actor=ron, action="query.release", dataset="flights")


@pytest.mark.parametrize("lang", LANGUAGES)
def test_transport_delays(live: LiveGateway, tmp_path: Path, lang: str) -> None:
    rita, grant = granted(live, "rita", lang, "flights")
    notebook = run_notebook("02_transport_delays.ipynb", live, rita, tmp_path, lang)
    assert images_in(notebook) >= 2  # the monthly plot and the histogram
    released = audit(live, actor=rita, action="query.release", dataset="flights")
    assert len(released) == 5 and all(e["outcome"] == "ok" for e in released)
    after = live.admin("GET", f"/v1/grants/{grant['id']}")
    assert after["epsilon_spent"] == pytest.approx(1.8)
    monthly = live.admin("GET", f"/v1/queries/{released[0]['query_id']}")
    assert monthly["status"] == "released" and monthly["user"] == rita
    # the last cell: the budget left over all the analyst's grants on flights
    assert {"en": "epsilon left 1.2", "zh": "共剩余 epsilon 1.2"}[lang] in text_of(notebook)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_education_preview(live: LiveGateway, tmp_path: Path, lang: str) -> None:
    rita, notebook = run_as(live, "rita", "03_education_preview.ipynb", tmp_path, lang)
    out = text_of(notebook)
    assert {"en": "spending epsilon", "zh": "花费 epsilon"}[lang] in out
    assert images_in(notebook) >= 2
    previews = audit(live, actor=rita, action="query.preview", dataset="exam")
    assert len(previews) >= 8  # the epsilon search spent nothing
    released = audit(live, actor=rita, action="query.release", dataset="exam")
    assert len(released) == 2
    grant = next(g for g in live.admin("GET", "/v1/grants")
                 if g["user"] == rita and g["dataset"] == "exam")
    charged = sum(float(e["epsilon"] or 0) for e in audit(
        live, actor=rita, action="query.charge", dataset="exam"))
    assert grant["epsilon_spent"] == pytest.approx(charged) and charged < 2.0


@pytest.mark.parametrize("lang", LANGUAGES)
def test_credit_risk_restricted(live: LiveGateway, tmp_path: Path, lang: str) -> None:
    erin, _grant = granted(live, "erin", lang, "credit")
    notebook, reviews = run_reviewed("04_credit_risk_restricted.ipynb", live, erin, tmp_path, lang)
    reviewed = [review["id"] for review in reviews]
    assert len(reviewed) == 3 and images_in(notebook) >= 1
    assert "pending_review" in text_of(notebook)
    for query_id in reviewed:
        query = live.admin("GET", f"/v1/queries/{query_id}")
        assert query["status"] == "released" and query["user"] == erin
        assert query["reviewed_by"] == "root_admin" and query["rows"]
    submitted = audit(live, actor=erin, action="query.submit", dataset="credit")
    released = [e for e in audit(live, actor="root_admin", action="query.release",
                                 dataset="credit") if e["detail"].get("analyst") == erin]
    assert len(submitted) == 3 and len(released) == 3  # a release is the admin's act
    assert {e["detail"]["note"] for e in released} == {"ok"}


@pytest.mark.parametrize("lang", LANGUAGES)
def test_credit_synthetic_model(live: LiveGateway, tmp_path: Path, lang: str) -> None:
    """Synthetic credit rows -> a pipeline built on them -> the DP regression -> compared;
    both releases reviewed by an admin, charged and audited with their kind."""
    eve, _grant = granted(live, "eve", lang, "credit")
    notebook, reviews = run_reviewed("05_credit_synthetic_model.ipynb", live, eve, tmp_path, lang)
    reviewed = [review["id"] for review in reviews]
    assert all(review["review"]["summary"] for review in reviews)  # what will leave, shown
    assert len(reviewed) == 2
    text = text_of(notebook)
    assert "DPLinearRegression" in text and "predicted_amount" in text
    assert "DP regression on the real data" in text  # the comparison table
    kinds = {entry["detail"].get("kind") for entry in audit(live, action="query.charge",
                                                            dataset="credit")
             if entry["detail"].get("analyst") == eve}  # charged on release, by the reviewer
    assert kinds == {"synthetic", "linear_regression"}
    released = audit(live, action="query.release", dataset="credit")
    assert {e["query_id"] for e in released} >= set(reviewed)


def _error_of(cells: list[str], live: LiveGateway, user: str, workdir: Path,
              **env_extra: str) -> dict[str, Any]:
    """Run ``cells`` in a real kernel (errors allowed) and return the one error output."""
    from nbformat.v4 import new_code_cell, new_notebook

    notebook = new_notebook(cells=[new_code_cell(c) for c in cells])
    errors = execute(notebook, live, user, workdir, timeout=120, allow_errors=True,
                     **env_extra)
    assert len(errors) == 1, errors
    return dict(errors[0])


@pytest.mark.parametrize(("lang", "suggestion"), [("en", "did you mean origin?"),
                                                  ("zh_CN", "您是不是要找 origin？")])
def test_a_typo_in_a_column_is_one_short_error_with_the_right_name(
        live: LiveGateway, tmp_path: Path, lang: str, suggestion: str) -> None:
    error = _error_of(["from sandbox import connect\ngw = connect()\n"
                       "flights = gw.dataset('flights')",
                       "flights.count(by=['orign'], epsilon=0.1)"],
                      live, "ron", tmp_path, DPSANDBOX_LANG=lang)
    lines = "\n".join(error["traceback"]).splitlines()
    assert len(lines) <= 3, lines  # the library's own frames are not shown
    assert error["ename"] == "InvalidRequest" and suggestion in lines[0]
    assert "flights.count(by=['orign']" in "\n".join(lines)  # where, in the analyst's code
    assert not any("sandbox/client" in line or "site-packages" in line for line in lines)


def test_an_unknown_dataset_and_a_sql_typo_are_short_too(live: LiveGateway,
                                                         tmp_path: Path) -> None:
    error = _error_of(["from sandbox import connect\ngw = connect()",
                       "gw.sql('SELECT origin, COUNT(*) FROM flights GROUP BY orign', "
                       "epsilon=0.1)"], live, "ron", tmp_path)
    lines = "\n".join(error["traceback"]).splitlines()
    assert len(lines) <= 3 and "unknown column orign in GROUP BY" in lines[0], lines
    assert "did you mean origin?" in lines[0]
    error = _error_of(["from sandbox import connect\ngw = connect()", "gw.dataset('flight')"],
                      live, "ron", tmp_path)
    assert error["ename"] == "NotFound" and "did you mean flights?" in error["traceback"][0]
