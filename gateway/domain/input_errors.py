"""What is wrong with a request body, a form or a parameter, in the reader's language.

Pydantic describes each problem by a stable ``type`` (``missing``, ``string_too_long``,
``greater_than`` ...) with its numbers in ``ctx``; its ``msg`` is English only. Here each
type maps to a message id of our catalogs (translated by gettext, docs/i18n.md), filled
with the same numbers. A validator of ours raises :func:`refusal` with a ``_l`` text, which
is shown as it is. A type not listed reads "invalid value" (in both languages), never
pydantic's English.

    raise InvalidRequest(describe(exc.errors()))   # English for the record, localized shown

Standard library only, as the whole domain: pydantic's errors are read as the plain
mappings ``errors()`` gives, and a refusal is a ``ValueError``, which pydantic reports as
a ``value_error`` carrying the exception itself in ``ctx["error"]``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from gateway.domain.text import Joined, Text, _l, lazy_ngettext

__all__ = ["MAX_PROBLEMS", "describe", "refusal"]

MAX_PROBLEMS = 5
SEPARATOR = _l("; ")
LIST_SEPARATOR = _l(", ")
# Location parts that name where a value came from rather than which field it is.
SOURCES = ("body", "query", "path", "header", "cookie")

Problem = Callable[[Mapping[str, Any]], Text]


class _Refusal(ValueError):
    def __init__(self, text: Text) -> None:
        super().__init__(text)
        self.text = text


def refusal(text: Text) -> ValueError:
    """An error for a validator to raise: pydantic keeps it, and so ``text``, for
    :func:`describe`."""
    return _Refusal(text)


def _fixed(text: Text) -> Problem:
    return lambda ctx: text


def _counted(limit: str, singular: str, plural: str) -> Problem:
    """A message in the plural form for the number pydantic gives as ``ctx[limit]``
    (extracted for translation as ``lazy_ngettext`` is: gateway/i18n_catalogs.py)."""
    return lambda ctx: lazy_ngettext(singular, plural, int(ctx[limit]))


def _same(text: Text, *types: str) -> dict[str, Problem]:
    """Several pydantic types that read the same: each maps to ``text``."""
    return dict.fromkeys(types, _fixed(text))


def _choices(expected: object) -> Joined:
    """Pydantic's ``'a', 'b' or 'c'`` as a list joined in the reader's language."""
    head, _sep, last = str(expected).rpartition(" or ")
    items = [*head.split(", "), last] if head else [last]
    return Joined(tuple(items), LIST_SEPARATOR)


NUMBER = _l("should be a number")
WHOLE = _l("should be a whole number")
TEXT = _l("should be text")
LIST = _l("should be a list")
OBJECT = _l("should be an object with named fields")
BOOLEAN = _l("should be true or false")
DATE = _l("should be a date such as 2026-12-01")
DATETIME = _l("should be a date and time such as 2026-12-01T08:00:00Z")
INVALID = _l("invalid value")

PROBLEMS: dict[str, Problem] = {
    "missing": _fixed(_l("is required")),
    "extra_forbidden": _fixed(_l("is not a known field here")),
    "json_invalid": _fixed(_l("is not valid JSON")),
    "json_type": _fixed(_l("should be JSON text")),
    "none_required": _fixed(_l("should be null")),
    **_same(OBJECT, "model_type", "model_attributes_type", "dict_type", "mapping_type"),
    **_same(LIST, "list_type", "tuple_type", "set_type", "iterable_type"),
    **_same(TEXT, "string_type", "bytes_type"),
    "string_unicode": _fixed(_l("should be valid Unicode text")),
    "string_too_short": _counted("min_length", "should have at least %(num)s character",
                                 "should have at least %(num)s characters"),
    "string_too_long": _counted("max_length", "should have at most %(num)s character",
                                "should have at most %(num)s characters"),
    "string_pattern_mismatch": lambda ctx: _l("should match the pattern %(pattern)s",
                                              pattern=ctx["pattern"]),
    "too_short": _counted("min_length", "should have at least %(num)s item",
                          "should have at least %(num)s items"),
    "too_long": _counted("max_length", "should have at most %(num)s item",
                         "should have at most %(num)s items"),
    **_same(WHOLE, "int_type", "int_parsing"),
    "int_from_float": _fixed(_l("should be a whole number, without a fraction")),
    "int_parsing_size": _fixed(_l("is too large a number")),
    **_same(NUMBER, "float_type", "float_parsing", "decimal_type", "decimal_parsing"),
    "finite_number": _fixed(_l("should be a finite number")),
    **_same(BOOLEAN, "bool_type", "bool_parsing"),
    "greater_than": lambda ctx: _l("should be greater than %(limit)s", limit=ctx["gt"]),
    "greater_than_equal": lambda ctx: _l("should be at least %(limit)s", limit=ctx["ge"]),
    "less_than": lambda ctx: _l("should be less than %(limit)s", limit=ctx["lt"]),
    "less_than_equal": lambda ctx: _l("should be at most %(limit)s", limit=ctx["le"]),
    "multiple_of": lambda ctx: _l("should be a multiple of %(step)s", step=ctx["multiple_of"]),
    **dict.fromkeys(("literal_error", "enum"), lambda ctx: _l(
        "should be one of %(choices)s", choices=_choices(ctx["expected"]))),
    **_same(DATE, "date_type", "date_parsing", "date_from_datetime_parsing"),
    **_same(DATETIME, "datetime_type", "datetime_parsing", "datetime_from_date_parsing"),
    **_same(_l("should be a UUID"), "uuid_type", "uuid_parsing"),
    **_same(_l("should be a URL"), "url_type", "url_parsing"),
}


def problem(error: Mapping[str, Any]) -> Text:
    """One pydantic error's problem, translatable."""
    ctx = error.get("ctx") or {}
    if error.get("type") == "value_error" and isinstance(ctx.get("error"), _Refusal):
        return ctx["error"].text
    describe_one = PROBLEMS.get(str(error.get("type")))
    try:
        return describe_one(ctx) if describe_one else INVALID
    except (KeyError, TypeError, ValueError):  # a ctx other than documented: say less
        return INVALID


def field_name(loc: Iterable[object], *, whole: Text) -> str | Text:
    """``select.0.agg`` (the API's own names, not translated), or ``whole`` for the body."""
    parts = [str(part) for part in loc]
    if parts and parts[0] in SOURCES:
        parts = parts[1:]
    return ".".join(parts) or whole


def describe(errors: Iterable[Mapping[str, Any]], *, whole: Text | None = None) -> Joined:
    """The first few problems, each as ``field: problem``; English by ``.english``, the
    reader's language by ``str()``."""
    owner = whole or _l("the request")
    found = [_l("%(field)s: %(problem)s", field=field_name(err.get("loc", ()), whole=owner),
                problem=problem(err))
             for err in list(errors)[:MAX_PROBLEMS]]
    return Joined(tuple(found or [_l("the request could not be read")]), SEPARATOR)
