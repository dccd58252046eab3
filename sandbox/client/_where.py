"""``where`` strings -> the gateway's structured filter list, parsed on this side.

Accepted (case-insensitive keywords, conditions joined with AND)::

    month >= 6
    month between 6 and 8
    origin in ('JFK', 'LGA')
    a = 1 and b != 'x'

Operators: ``= == != <> < <= > >= between in``. Values: numbers, quoted strings
('it''s' doubles a quote), true/false. Anything else raises :class:`InvalidQuery` (a
:class:`ValueError`) saying where the problem is; nothing is sent to the gateway.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from sandbox.client._errors import InvalidQuery
from sandbox.client._i18n import _

Filter = dict[str, Any]
Where = str | Mapping[str, Any] | Iterable[Any] | None

_TOKEN = re.compile(r"""
    \s*(?:
      (?P<string>'(?:[^']|'')*'|"(?:[^"]|"")*")
    | (?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
    | (?P<op><=|>=|!=|<>|==|=|<|>)
    | (?P<punct>[(),])
    | (?P<word>[A-Za-z_][A-Za-z0-9_.]*)
    )""", re.VERBOSE)
_OPS = {"=": "=", "==": "=", "!=": "!=", "<>": "!=", "<": "<", "<=": "<=", ">": ">",
        ">=": ">="}
_LITERALS = {"true": True, "false": False}


def _tokenize(text: str) -> list[tuple[str, str, int]]:
    tokens, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise InvalidQuery(_("where: cannot read {part} (at character {at} of {text})").format(
                part=repr(text[pos:].strip()[:30]), at=pos + 1, text=repr(text)))
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind), match.start(kind)))
        pos = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0

    def fail(self, expected: str) -> InvalidQuery:
        if self.i < len(self.tokens):
            _kind, value, at = self.tokens[self.i]
            found = _("{value} at character {at}").format(value=repr(value), at=at + 1)
        else:
            found = _("the end")
        return InvalidQuery(_("where: expected {expected} but found {found} in {text}; write "
                              "conditions like \"month >= 6\", \"month between 6 and 8\", "
                              "\"origin in ('JFK', 'LGA')\", joined with and").format(
            expected=expected, found=found, text=repr(self.text)))

    def peek(self) -> tuple[str, str]:
        if self.i >= len(self.tokens):
            return "", ""
        kind, value, _at = self.tokens[self.i]
        return kind, value

    def take(self) -> tuple[str, str]:
        token = self.peek()
        self.i += 1
        return token

    def keyword(self, word: str) -> bool:
        kind, value = self.peek()
        if kind == "word" and value.lower() == word:
            self.i += 1
            return True
        return False

    def parse(self) -> list[Filter]:
        if not self.tokens:
            raise InvalidQuery(_("where: the condition is empty"))
        filters = [self.condition()]
        while self.i < len(self.tokens):
            kind, value = self.peek()
            if kind == "word" and value.lower() == "or":
                raise InvalidQuery(_("where: OR is not supported in {text}; use 'column in "
                                     "(...)' or run separate queries").format(text=repr(self.text)))
            if not self.keyword("and"):
                raise self.fail(_("'and' between conditions"))
            filters.append(self.condition())
        return filters

    def column(self) -> str:
        kind, value = self.take()
        if kind == "word" and value.lower() not in ("and", "or", "between", "in", "not"):
            return value
        if kind == "string" and value.startswith('"'):
            return value[1:-1].replace('""', '"')
        self.i -= 1
        raise self.fail(_("a column name"))

    def condition(self) -> Filter:
        column = self.column()
        if self.keyword("not"):
            raise InvalidQuery(_("where: NOT is not supported in {text}; the gateway takes "
                                 "= != < <= > >= between in").format(text=repr(self.text)))
        if self.keyword("between"):
            low = self.value()
            if not self.keyword("and"):
                raise self.fail(_("'and' inside between"))
            return {"column": column, "op": "between", "value": [low, self.value()]}
        if self.keyword("in"):
            return {"column": column, "op": "in", "value": self.value_list()}
        kind, op = self.take()
        if kind != "op":
            self.i -= 1
            raise self.fail(_("an operator (= != < <= > >= between in)"))
        return {"column": column, "op": _OPS[op], "value": self.value()}

    def value(self) -> Any:
        kind, value = self.take()
        if kind == "number":
            number = float(value)
            return int(number) if re.fullmatch(r"[-+]?\d+", value) else number
        if kind == "string":
            quote = value[0]
            return value[1:-1].replace(quote * 2, quote)
        if kind == "word" and value.lower() in _LITERALS:
            return _LITERALS[value.lower()]
        self.i -= 1
        raise self.fail(_("a value (a number or a quoted string)"))

    def value_list(self) -> list[Any]:
        if self.take() != ("punct", "("):
            self.i -= 1
            raise self.fail(_("'(' after in"))
        values = [self.value()]
        while self.peek() == ("punct", ","):
            self.i += 1
            values.append(self.value())
        if self.take() != ("punct", ")"):
            self.i -= 1
            raise self.fail(_("',' or ')' in the in-list"))
        return values


def parse_where(text: str) -> list[Filter]:
    """Parse one ``where`` string into the structured filter list."""
    return _Parser(text).parse()


def _from_item(item: Any) -> list[Filter]:
    if isinstance(item, str):
        return parse_where(item)
    if isinstance(item, Mapping):
        if set(item) != {"column", "op", "value"}:
            raise InvalidQuery(_("where: a filter dict needs exactly column, op and value, got "
                                 "{keys}").format(keys=sorted(item)))
        return [dict(item)]
    if isinstance(item, tuple) and len(item) == 3:
        column, op, value = item
        return [{"column": column, "op": _OPS.get(op, op),
                 "value": list(value) if isinstance(value, tuple | list) else value}]
    raise InvalidQuery(_("where: cannot use {item}; give a string like \"month >= 6\", a dict "
                         "(column, op, value) or a tuple (column, op, value)").format(
        item=repr(item)))


def normalize_where(where: Where) -> list[Filter]:
    """A string, one filter dict, or a list of strings / dicts / (column, op, value)."""
    if where is None:
        return []
    if isinstance(where, str | Mapping):
        return _from_item(where)
    out: list[Filter] = []
    for item in where:
        out.extend(_from_item(item))
    return out
