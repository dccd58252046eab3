"""Schemathesis against the OpenAPI document, as a researcher and as an admin: no 5xx.

Every operation gets generated requests (valid and invalid by the document's own
schemas, bounds included); every answer must be below 500 and every error must have the
contract's shape. Afterwards the audit chain must still verify. Bounded to a few minutes:
``EXAMPLES`` requests per operation and role.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from gateway.app import create_app
from gateway.bootstrap import Services
from gateway.settings import Settings
from tests.conftest import ADMIN, PASSWORD, make_services
from tests.live import serve_gateway

EXAMPLES = 20
SENT: list[int] = []  # status of every request sent, for the summary check
# Signing out would end the token the rest of the run uses (tested in test_tokens.py).
SKIPPED_PATHS = ("/v1/auth/logout",)


class _DocumentOnly:
    """Enough of Services for create_app to build the OpenAPI document (no store)."""

    settings = Settings()


# The document is read at import (schemathesis parametrizes at collection); the requests
# go to a real gateway over HTTP.
schema = schemathesis.openapi.from_dict(
    create_app(services=cast(Services, _DocumentOnly())).openapi()
).exclude(path=list(SKIPPED_PATHS))


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory,
           demo_files: dict[str, Path]) -> Iterator[tuple[Services, str]]:
    services = make_services(tmp_path_factory.mktemp("fuzz"), demo_files)
    for user in ("rita", "ron"):
        for dataset in ("flights", "exam", "credit"):
            most = services.catalog.record(dataset).policy.budget.max_epsilon_per_grant
            services.ledger.give(ADMIN, user=user, org=None, dataset=dataset, epsilon=most,
                                 delta=None, days=None)
    with serve_gateway(services, name="fuzzed-gateway") as url:
        yield services, url
    services.store.dispose()


@pytest.fixture(scope="module")
def target(fuzzed: tuple[Services, str]) -> dict[str, str]:
    """The gateway's URL and a token per role."""
    services, url = fuzzed
    return {"url": url, **{user: services.users.login(user, PASSWORD)["access_token"]
                           for user in ("rita", "root_admin")}}


FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=list(HealthCheck))


def _check(case: Any, target: dict[str, str], user: str) -> None:
    response = case.call(base_url=target["url"],
                         headers={"Authorization": f"Bearer {target[user]}"}, timeout=60)
    SENT.append(response.status_code)
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:500]}")
    if response.status_code >= 400 and (response.headers.get("content-type") or [""])[0].startswith(
            "application/json"):
        error = response.json().get("error", {})
        assert error.get("code") and error.get("message"), response.text[:500]


@schema.parametrize()
@FUZZ
def test_fuzz_as_researcher(case: Any, target: dict[str, str]) -> None:
    _check(case, target, "rita")


@schema.parametrize()
@FUZZ
def test_fuzz_as_admin(case: Any, target: dict[str, str]) -> None:
    _check(case, target, "root_admin")


def test_zz_audit_chain_verifies_after_fuzzing(fuzzed: tuple[Services, str]) -> None:
    report = fuzzed[0].audit.verify()
    assert report.ok, report
    assert len(SENT) > 100 and report.entries > 100  # the fuzzing really went through
    assert sum(1 for status in SENT if status < 300) > 10  # and not only into refusals
    print(f"schemathesis: {len(SENT)} requests, {Counter(SENT)}")
