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
gateway's message.
"""

from sandbox.client._dataset import Dataset, Preview
from sandbox.client._errors import (
    AccessDenied,
    BudgetExhausted,
    Conflict,
    DPSandboxError,
    GatewayUnreachable,
    GrantExpired,
    GrantRequired,
    InvalidRequest,
    NotFound,
    QueryRejected,
    ReviewTimeout,
    ServerError,
    Unauthenticated,
    UnsupportedQuery,
)
from sandbox.client._gateway import Gateway, connect
from sandbox.client._pending import PendingQuery
from sandbox.client._results import DPResult
from sandbox.client._where import parse_where

__all__ = [
    "AccessDenied",
    "BudgetExhausted",
    "Conflict",
    "DPResult",
    "DPSandboxError",
    "Dataset",
    "Gateway",
    "GatewayUnreachable",
    "GrantExpired",
    "GrantRequired",
    "InvalidRequest",
    "NotFound",
    "PendingQuery",
    "Preview",
    "QueryRejected",
    "ReviewTimeout",
    "ServerError",
    "Unauthenticated",
    "UnsupportedQuery",
    "connect",
    "parse_where",
]
