""""Did you mean ...?" for a mistyped column or dataset name."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from sandbox.client._i18n import _


def closest(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate closest to ``name`` (spelling or case), or None when none is close."""
    others = [c for c in candidates if c != name]
    close = difflib.get_close_matches(name, others, n=1, cutoff=0.6)
    if close:
        return close[0]
    lowered = {c.lower(): c for c in others}
    return lowered.get(name.lower())


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """``"; did you mean X?"`` (translated), or ``""``."""
    match = closest(name, candidates)
    return _("; did you mean {name}?").format(name=match) if match else ""
