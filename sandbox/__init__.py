"""dp-sandbox, the analyst's side: ``from sandbox import connect``.

The client library lives in :mod:`sandbox.client` and is imported lazily, so the hub's
modules (:mod:`sandbox.hub`) do not pull in pandas, and the sandbox image (which has the
client but not the hub) imports only what it has.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["connect"]


def __getattr__(name: str) -> Any:
    if name.startswith("_") or name == "hub":
        raise AttributeError(name)
    client = importlib.import_module("sandbox.client")
    if name == "client":
        return client
    try:
        return getattr(client, name)
    except AttributeError:
        raise AttributeError(f"module 'sandbox' has no attribute {name!r}") from None
