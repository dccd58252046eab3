"""The console's forms: what was typed, and what is wrong with it, field by field.

A POSTed form is read as plain text (never refused by the framework before we can answer
next to the field), checked here, and on any problem the page is rendered again with the
input kept and each message beside its field (HTTP 422). What the services refuse after
these checks (a conflict, a budget rule) is shown at the top of the same form, input kept.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Form as FormParam

from gateway.domain.errors import DomainError
from gateway.i18n import _

# Every form field arrives as text (the gateway's body limit bounds its size).
Text = Annotated[str, FormParam()]
WHOLE_FORM = "_form"


@dataclass
class Form:
    name: str  # which form on the page the messages belong to
    values: Mapping[str, str]
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors

    def value(self, key: str, default: str = "") -> str:
        return self.values.get(key, default)

    def error(self, key: str, message: str) -> None:
        self.errors.setdefault(key, message)

    def refused(self, exc: DomainError) -> None:
        """A refusal from a service, shown at the top of the form."""
        self.error(WHOLE_FORM, exc.localized())

    def text(self, key: str, *, required: str | None = None, min_length: int = 0,
             max_length: int = 4000) -> str:
        value = self.value(key).strip()
        if not value and required:
            self.error(key, required)
        elif value and len(value) < min_length:
            self.error(key, _("At least %(min)s characters, please (now %(now)s).")
                       % {"min": min_length, "now": len(value)})
        elif len(value) > max_length:
            self.error(key, _("At most %(max)s characters, please (now %(now)s).")
                       % {"max": max_length, "now": len(value)})
        return value

    def number(self, key: str, *, required: bool = False, low: float | None = None,
               high: float | None = None) -> float | None:
        """A positive decimal (epsilon) in ``(low, high]``; empty is None unless required."""
        raw = self.value(key).strip()
        if not raw:
            if required:
                self.error(key, _("Enter a number."))
            return None
        try:
            value = float(raw.replace(",", "."))
        except ValueError:
            self.error(key, _("Enter a number, such as 0.5."))
            return None
        if not math.isfinite(value) or value <= (low or 0.0):
            self.error(key, _("Enter a number greater than %(low)s.") % {"low": format(low or 0, "g")})
        elif high is not None and value > high:
            self.error(key, _("At most %(high)s here.") % {"high": format(high, "g")})
        return value

    def whole(self, key: str, *, low: int, high: int) -> int | None:
        """A whole number in ``[low, high]`` (days); empty is None."""
        raw = self.value(key).strip()
        if not raw:
            return None
        if not raw.isdigit() or not low <= int(raw) <= high:
            self.error(key, _("Enter a whole number from %(low)s to %(high)s.")
                       % {"low": low, "high": high})
            return None
        return int(raw)

    def choice(self, key: str, choices: Mapping[str, object] | list[str], *,
               message: str) -> str:
        value = self.value(key).strip()
        if value not in choices:
            self.error(key, message)
        return value

    def confirmed(self, key: str = "confirm") -> None:
        if self.value(key) != "yes":
            self.error(key, _("Tick this box to confirm: this cannot be undone."))
