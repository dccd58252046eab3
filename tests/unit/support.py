"""What the engine's tests build their datasets with (fixtures are in conftest.py)."""

from __future__ import annotations

from typing import Any

from gateway.policy import Policy, parse_policy

BUDGET = {"default_epsilon": 1.0, "max_epsilon_per_grant": 10.0, "dataset_epsilon_cap": 100.0}


def policy_of(name: str, columns: dict[str, Any], /, **overrides: Any) -> Policy:
    """An open test dataset ``name`` with ``columns``; ``overrides`` replace top-level keys."""
    data: dict[str, Any] = {
        "name": name,
        "title": f"test {name}",
        "source": f"{name}.parquet",
        "access": "open",
        "max_rows": 10_000,
        "budget": BUDGET,
        "columns": columns,
    }
    data.update(overrides)
    return parse_policy(data, origin="test")
