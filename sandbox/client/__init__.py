"""The notebook library: differentially private queries through the dp-sandbox gateway.

    from sandbox import connect
    gw = connect()                      # URL and token from the sandbox environment
    gw.datasets()                       # the catalog
    ds = gw.dataset("flights")
    ds.schema; ds.dummy(200)            # develop on synthetic rows, free
    gw.request_access("flights", epsilon=2.0, purpose="delay study", days=30)
    ds.preview(count=True, mean="dep_delay", by=["origin"], epsilon=0.5)   # free
    ds.mean("dep_delay", by=["origin"], where="month >= 6", epsilon=0.3)   # spends 0.3

Errors are typed (see :mod:`sandbox.client._errors` for the tree) and carry the
gateway's message; in a notebook they show as one line (:mod:`sandbox.client._display`).
Messages and displays speak Chinese or English (``DPSANDBOX_LANG``, else the locale).
Queries on restricted data return a :class:`PendingQuery` at once; ``.result()`` waits.
"""

from sandbox.client import _display
from sandbox.client._dataset import Dataset, Preview
from sandbox.client._errors import (
    AccessDenied,
    BudgetExhausted,
    Conflict,
    DPSandboxError,
    GatewayUnreachable,
    GrantExpired,
    GrantRequired,
    InvalidQuery,
    InvalidRequest,
    NotFound,
    QueryRejected,
    ReleasePending,
    ReviewTimeout,
    ServerError,
    Unauthenticated,
    UnsupportedQuery,
)
from sandbox.client._gateway import Gateway, connect
from sandbox.client._models import DPPCA, DPLinearRegression
from sandbox.client._pending import REVIEW_TIMEOUT, PendingQuery
from sandbox.client._results import DPResult
from sandbox.client._runner import QueryRunner
from sandbox.client._session import HTTP_TIMEOUT
from sandbox.client._shapes import Account, Application, BudgetLeft, Grant, GrantBudget, QueryStatus
from sandbox.client._where import parse_where

__all__ = [
    "DPPCA",
    "HTTP_TIMEOUT",
    "REVIEW_TIMEOUT",
    "AccessDenied",
    "Account",
    "Application",
    "BudgetExhausted",
    "BudgetLeft",
    "Conflict",
    "DPLinearRegression",
    "DPResult",
    "DPSandboxError",
    "Dataset",
    "Gateway",
    "GatewayUnreachable",
    "Grant",
    "GrantBudget",
    "GrantExpired",
    "GrantRequired",
    "InvalidQuery",
    "InvalidRequest",
    "NotFound",
    "PendingQuery",
    "Preview",
    "QueryRejected",
    "QueryRunner",
    "QueryStatus",
    "ReleasePending",
    "ReviewTimeout",
    "ServerError",
    "Unauthenticated",
    "UnsupportedQuery",
    "connect",
    "parse_where",
]

_display.install()  # one-line errors in IPython / Jupyter
