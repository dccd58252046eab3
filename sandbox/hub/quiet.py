"""A healthy start logs no warning: two known, harmless warnings are dropped.

- JupyterHub's "Running JupyterHub without SSL" when the hub listens on loopback only
  (the demo, a laptop): nothing leaves the machine, so there is nothing to terminate TLS
  for. A hub on any other address keeps the warning.
- jupyterhub-idle-culler's "Could not load pycurl" advice (recommended only for a large
  number of users): the culler runs as ``python -m sandbox.hub.culler``.
"""

from __future__ import annotations

import logging

__all__ = ["DropMessages", "quiet_hub_log"]

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
NO_SSL = "Running JupyterHub without SSL"
NO_PYCURL = "Could not load pycurl"


class DropMessages(logging.Filter):
    """Drop records whose message starts with one of ``prefixes``."""

    def __init__(self, *prefixes: str) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


def quiet_hub_log(hub_ip: str) -> None:
    """Called by jupyterhub_config.py in the hub's process."""
    if hub_ip in LOOPBACK:
        logging.getLogger("JupyterHub").addFilter(DropMessages(NO_SSL))
