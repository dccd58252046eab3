"""Recovery's steps for a DP query and for a fit (synthetic data, a model): recompute an
orphan under its existing charge.

Called by :class:`gateway.services.recovery.Recovery` for an orphan it has claimed. The
query is prepared again from its stored spec against today's catalog; when the dataset's
data (its version), its policy (the loss the spec resolves to) or the grant changed since
the charge, the query is marked ``error`` with that reason (the charge stands). Otherwise
it is planned, computed with fresh OpenDP noise, and released through the same finish step
as any query. Either way it is audited with ``recovered: true``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.domain.errors import Conflict, DomainError
from gateway.domain.records import QueryRecord
from gateway.i18n import _l
from gateway.services.common import Principal
from gateway.services.fits import FitService, as_result
from gateway.services.queries import ALPHA, QueryService, stored_request
from gateway.services.releases import Admitted, Releases, Result


def _analyst(store: Any, username: str) -> Principal:
    with store.reading() as tx:
        user = tx.users.get(username)
    if user is None:
        return Principal(username, "researcher")
    return Principal(user.username, user.role, user.org)


def _recompute(releases: Releases, store: Any, record: QueryRecord,
               prepare: Callable[[], Any], plan_of: Callable[[Any], Any],
               result_of: Callable[[Any, Any], Result]) -> str:
    """Prepare again from the stored spec, refuse what changed, compute, finish once."""
    actor = _analyst(store, record.username)
    releases.start(record.id)
    try:
        return _finish(releases, store, record, actor, prepare, plan_of, result_of)
    finally:  # whatever fails (the store, a stored spec), a later round may try it again
        releases.done(record.id)


def _finish(releases: Releases, store: Any, record: QueryRecord, actor: Principal,
            prepare: Callable[[], Any], plan_of: Callable[[Any], Any],
            result_of: Callable[[Any, Any], Result]) -> str:
    with store.reading() as tx:
        grant = tx.grants.get(record.grant_id) if record.grant_id else None
    try:
        if grant is None or grant.status != "active":
            raise Conflict(_l("the grant was revoked since the charge"))
        prepared = prepare()
        if prepared.dataset.version != record.dataset_version:
            raise Conflict(_l("the dataset's data or policy changed since the charge"))
        if prepared.loss != record.cost:
            raise Conflict(_l("the dataset's policy changed since the charge"))
        plan = plan_of(prepared)
    except DomainError as exc:
        releases.fail(actor, record.dataset, record.id, exc, recovered=True,
                      reason=f"not recomputed after a restart: {exc.message}; the "
                             "charge stands")
        return "error"
    try:
        result = result_of(prepared, plan)
    except Exception as exc:  # noqa: BLE001 - any engine failure ends the query, audited
        releases.fail(actor, record.dataset, record.id, exc, recovered=True)
        return "error"
    releases.finish(actor, Admitted(grant, record), prepared.ticket, result, recovered=True)
    return "released"


def recompute_query(queries: QueryService, record: QueryRecord) -> str:
    """Finish one claimed orphaned DP query: ``released`` or ``error`` (both audited)."""
    def prepare() -> Any:
        return queries.prepare(stored_request(record))

    def result_of(_prepared: Any, plan: Any) -> Result:
        release = plan.release()
        return Result(release.columns, release.rows, {"alpha": ALPHA, **release.accuracy})

    return _recompute(queries.releases, queries.store, record, prepare, queries.plan, result_of)


def recompute_fit(fits: FitService, record: QueryRecord) -> str:
    """Finish one claimed orphaned fit (synthetic rows, a model)."""
    def result_of(_prepared: Any, plan: Any) -> Result:
        return as_result(plan.release(), plan.accuracy(ALPHA))

    return _recompute(fits.releases, fits.store, record, lambda: fits.prepare_stored(record),
                      fits.plan, result_of)
