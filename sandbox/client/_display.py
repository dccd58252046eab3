"""Errors of this library in a notebook: one clear line, not this library's traceback.

Imported in IPython (a Jupyter kernel), the library registers a custom exception handler
for :class:`~sandbox.client.DPSandboxError` (IPython's ``set_custom_exc``). Such an error
then shows as::

    InvalidRequest: dataset flights has no column orign; did you mean origin? [invalid_request]
      cell line 2: flights.count(by="orign", epsilon=0.1)

The second line points at the analyst's own code; the frames inside ``sandbox.client``
and httpx are left out. ``DPSANDBOX_TRACEBACK=full`` shows IPython's full traceback
instead. Other exceptions are left to IPython as usual.
"""

from __future__ import annotations

import linecache
import os
import sys
from pathlib import Path
from types import TracebackType
from typing import Any

from sandbox.client._errors import DPSandboxError
from sandbox.client._i18n import _

__all__ = ["install", "short_traceback"]

_LIBRARY = str(Path(__file__).resolve().parent)
_RED, _RESET = "\x1b[0;31m", "\x1b[0m"


def _user_frame(tb: TracebackType | None) -> tuple[str, int] | None:
    """(file, line) of the innermost frame outside this library and its dependencies."""
    found = None
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if not filename.startswith(_LIBRARY) and "site-packages" not in filename:
            found = (filename, tb.tb_lineno)
        tb = tb.tb_next
    return found


def short_traceback(value: BaseException, tb: TracebackType | None) -> list[str]:
    """The lines shown for one of this library's errors: the error, then where."""
    lines = [f"{_RED}{type(value).__name__}{_RESET}: {value}"]
    where = _user_frame(tb)
    if where is not None:
        code = linecache.getline(where[0], where[1]).strip()
        if code:
            lines.append("  " + _("cell line {line}: {code}").format(line=where[1], code=code))
    return lines


def _handler(shell: Any, etype: type[BaseException], value: BaseException,
             tb: TracebackType | None, tb_offset: int | None = None) -> list[str]:
    if os.environ.get("DPSANDBOX_TRACEBACK", "").lower() == "full":
        stb: list[str] = shell.InteractiveTB.structured_traceback(etype, value, tb,
                                                                  tb_offset=tb_offset)
    else:
        stb = short_traceback(value, tb)
    shell._showtraceback(etype, value, stb)  # the kernel sends it as the cell's error
    return stb


def install() -> bool:
    """Register the handler in the running IPython, if any; True when it is in place."""
    ipython = sys.modules.get("IPython")
    get = getattr(ipython, "get_ipython", None)
    shell = get() if callable(get) else None
    if shell is None or not hasattr(shell, "set_custom_exc"):
        return False
    current = tuple(getattr(shell, "custom_exceptions", ()) or ())
    if current and current != (DPSandboxError,):
        return False  # someone else's handler: leave it alone
    shell.set_custom_exc((DPSandboxError,), _handler)
    return True
