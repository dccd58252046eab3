"""Recovery's step for a DP query: recompute an orphan under its existing charge.

Called by :class:`gateway.services.recovery.Recovery` for an orphan it has claimed. The
query is prepared again from its stored spec against today's catalog; when the dataset's
data (its version), its policy (the loss the spec resolves to) or the grant changed since
the charge, the query is marked ``error`` with that reason (the charge stands). Otherwise
it is planned, computed with fresh OpenDP noise, and released through the same finish step
as any query. Either way it is audited with ``recovered: true``.
"""

from __future__ import annotations

import json

from gateway.domain.errors import Conflict, DomainError
from gateway.domain.records import QueryRecord
from gateway.i18n import _l
from gateway.services.common import Principal
from gateway.services.queries import ALPHA, QueryRequest, QueryService
from gateway.services.releases import Admitted, Result
from gateway.services.specs import spec_from_json


def _analyst(queries: QueryService, username: str) -> Principal:
    with queries.store.reading() as tx:
        user = tx.users.get(username)
    if user is None:
        return Principal(username, "researcher")
    return Principal(user.username, user.role, user.org)


def recompute_query(queries: QueryService, record: QueryRecord) -> str:
    """Finish one claimed orphan: ``released`` or ``error`` (both audited)."""
    actor = _analyst(queries, record.username)
    queries.releases.start(record.id)  # finish() or fail() below marks it done
    with queries.store.reading() as tx:
        grant = tx.grants.get(record.grant_id) if record.grant_id else None
    try:
        if grant is None or grant.status != "active":
            raise Conflict(_l("the grant was revoked since the charge"))
        prepared = queries.prepare(QueryRequest(
            spec=spec_from_json(json.loads(record.spec_json)), epsilon=record.cost.epsilon,
            delta=record.cost.delta, sql=record.sql_text))
        if prepared.dataset.version != record.dataset_version:
            raise Conflict(_l("the dataset's data or policy changed since the charge"))
        if prepared.loss != record.cost:
            raise Conflict(_l("the dataset's policy changed since the charge"))
        plan = queries.plan(prepared)
    except DomainError as exc:
        queries.releases.fail(actor, record.dataset, record.id, exc, recovered=True,
                              reason=f"not recomputed after a restart: {exc.message}; the "
                                     "charge stands")
        return "error"
    try:
        release = plan.release()
    except Exception as exc:  # noqa: BLE001 - any engine failure ends the query, audited
        queries.releases.fail(actor, record.dataset, record.id, exc, recovered=True)
        return "error"
    result = Result(release.columns, release.rows, {"alpha": ALPHA, **release.accuracy})
    queries.releases.finish(actor, Admitted(grant, record), prepared.ticket, result,
                            recovered=True)
    return "released"
