"""The one way a refusal is audited: ``with refusals(actor, action, **fields): ...``.

Every public use case runs inside it; a :class:`DomainError` raised inside is written to the
audit log as ``denied`` (code, reason and the given fields) and then propagates unchanged.
A use case never calls another use case's public method, so nothing is audited twice and
exceptions carry no "already audited" flag. The API and the console only translate errors
into responses; a refusal made before any service runs (a token, a form, a body that cannot
be read) is handed to the same helper where it is made.

An :class:`Unavailable` store is not audited (the log is in that store); its caller retries.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from gateway.domain.errors import DomainError, Unavailable
from gateway.services.common import Principal

log = logging.getLogger(__name__)

Record = Callable[..., int]  # AuditLog.record: append one entry in its own transaction


class Refusals:
    def __init__(self, record: Record) -> None:
        self._record = record

    def audit(self, actor: Principal | None, action: str, exc: DomainError, **fields: Any) -> None:
        """Write one ``denied`` entry for ``exc`` (an audit failure never hides the refusal)."""
        if isinstance(exc, Unavailable):
            return
        detail = {"code": exc.code, "reason": exc.message, **fields.pop("detail", {})}
        try:
            self._record(action=action[:48], outcome="denied", actor=actor, detail=detail,
                         **fields)
        except DomainError:
            log.exception("could not audit a refusal of %s", action)

    @contextmanager
    def __call__(self, actor: Principal | None, action: str, **fields: Any) -> Iterator[None]:
        try:
            yield
        except DomainError as exc:
            self.audit(actor, action, exc, **fields)
            raise
