"""The layout keeps its promises: services speak to the store only through repositories,
budget units are converted in one place, refusals carry no flag, the CLI has no cycle."""

from __future__ import annotations

import ast
import re
from pathlib import Path

GATEWAY = Path(__file__).resolve().parents[2] / "gateway"


def _imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
            if node.module == "gateway":  # from gateway import services
                names += [f"gateway.{a.name}" for a in node.names]
    return names


def _within(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def test_services_import_no_sqlalchemy_and_no_tables() -> None:
    for path in (GATEWAY / "services").glob("*.py"):
        for name in _imports(path):
            assert name.split(".")[0] != "sqlalchemy", f"{path.name} imports {name}"
            assert name != "gateway.adapters.db.tables", f"{path.name} imports the tables"


def test_the_policy_and_the_adapters_import_no_layer_above_them() -> None:
    """Use cases (services) build on the policy and the adapters, and the API, the console and
    the CLI on the use cases; never the other way round (the domain: test_domain.py)."""
    above = ("gateway.services", "gateway.api", "gateway.web", "gateway.cli", "gateway.app",
             "gateway.bootstrap", "gateway.server", "gateway.demo")
    below = [GATEWAY / "policy.py", *sorted((GATEWAY / "adapters").rglob("*.py"))]
    assert len(below) > 20
    for path in below:
        for name in _imports(path):
            assert not _within(name, above), f"{path.relative_to(GATEWAY)} imports {name}"


def test_only_budget_converts_units_to_numbers() -> None:
    """No hand-written 1e9 / 1e12 / 1e18 factors (epsilon, rho, delta units) or unit constants
    outside gateway/domain/budget.py."""
    factor = re.compile(r"[*/]\s*(1e-?(9|12|18)|10\s*\*\*\s*-?(9|12|18))\b"
                        r"|\b(EPSILON|DELTA|RHO)_(SCALE|UNIT)\b")
    for path in GATEWAY.rglob("*.py"):
        if path == GATEWAY / "domain" / "budget.py" or "migrations" in path.parts:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            assert not factor.search(line), f"{path.relative_to(GATEWAY)}:{number}: {line.strip()}"


def test_refusals_carry_no_audited_flag() -> None:
    for path in GATEWAY.rglob("*.py"):
        assert not re.search(r"\.audited\b|\baudited\s*=", path.read_text()), path


def test_cli_modules_do_not_import_each_other_in_a_cycle() -> None:
    cli = GATEWAY / "cli"
    for path in cli.glob("*.py"):
        text = path.read_text()
        assert "except ImportError" not in text, path.name
        if path.name not in ("__init__.py", "__main__.py"):
            assert "gateway.cli import" not in text.replace("gateway.cli.common import", ""), \
                f"{path.name} imports the cli package"


def test_the_dp_engine_is_entered_through_its_package() -> None:
    """gateway/adapters/dp has one entry; only the Spark engine (the shared blueprint) and
    the fits' lazy imports of synthetic data and models reach its modules."""
    inside = (GATEWAY / "adapters" / "dp", GATEWAY / "adapters" / "spark")
    for path in GATEWAY.rglob("*.py"):
        if path.parent in inside:
            continue
        for name in _imports(path):
            if name.startswith("gateway.adapters.dp."):
                module = name.split(".")[3]
                lazy = path == GATEWAY / "services" / "fits.py" and module in ("synth", "models")
                assert lazy, f"{path.relative_to(GATEWAY)} imports {name}"
