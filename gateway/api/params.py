"""Bounds for every path and query parameter, declared once and used by every route.

A value outside these bounds is refused with 422 ``invalid_request`` before any service
runs (the store never sees a 27-digit integer or a megabyte of path), and the bounds are
published in the OpenAPI document, which the fuzzing tests read.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Header, Path, Query

MAX_SEQ = 2**63 - 1  # the audit table's BIGINT
MAX_PAGE_NUMBER = 1_000_000
MAX_PAGE_SIZE = 500  # gateway.services.audit.MAX_PAGE
MAX_DUMMY_ROWS = 1_000_000  # hard ceiling; the setting dummy_max_rows is the real limit
ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"

AuditSeq = Annotated[int, Path(ge=1, le=MAX_SEQ, description="an audit entry's seq")]
RecordId = Annotated[str, Path(min_length=1, max_length=64, pattern=ID_PATTERN,
                               description="a query, request or grant id")]
DatasetName = Annotated[str, Path(min_length=1, max_length=63,
                                  pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$",
                                  description="a dataset's name")]
Username = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]{1,64}$",
                               description="an account's name")]
PageNumber = Annotated[int, Query(ge=1, le=MAX_PAGE_NUMBER)]
PageSize = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)]
DummyRows = Annotated[int, Query(ge=1, le=MAX_DUMMY_ROWS)]
ListLimit = Annotated[int, Query(ge=1, le=1000)]
FilterText = Annotated[str | None, Query(max_length=64)]
ExportFormat = Annotated[Literal["csv", "jsonl"], Query()]
IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key", min_length=8, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$",
    description="the same key from the same account returns the first attempt's query and "
                "result, and is never charged twice")]
