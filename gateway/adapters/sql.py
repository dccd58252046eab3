"""DP SQL: one SELECT statement compiled to the same :class:`QuerySpec` as the JSON API.

The SQL text is parsed with sqlglot (dialect ``duckdb``, which accepts MEDIAN, QUANTILE,
QUANTILE_CONT and the standard ``PERCENTILE_CONT(q) WITHIN GROUP (ORDER BY col)``), then
walked against a whitelist: every node that is not understood is refused. The text itself is
never executed anywhere; only the resulting spec is, so a comment can hide nothing.

Errors raised (and nothing else, whatever the input)::

    InvalidRequest            empty or over-long text, syntax errors (with line and column),
     │                        numbers out of range, an output column named twice
     └── UnsupportedQuery     valid SQL outside the DP subset (joins, OR, HAVING, ...);
                              the message names the construct and the alternative

Column and dataset names are taken exactly as written (quoted or not, case preserved), so
they match the structured API's names. Given ``columns`` (the dataset's public column names,
looked up once FROM is read), a name that is not one of them is refused first, with the
closest public name suggested; the full check against the policy stays the caller's
(``domain.query.validate``).
"""

from __future__ import annotations

import logging
import math
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from gateway.domain.errors import InvalidRequest, UnsupportedQuery
from gateway.domain.query import Aggregate, Filter, QuerySpec, closest
from gateway.domain.text import Text, _l

# sqlglot logs unparsable statements (analysts' text) at WARNING; keep it out of the logs.
logging.getLogger("sqlglot").setLevel(logging.ERROR)

__all__ = ["DIALECT", "MAX_FILTERS", "MAX_LIMIT", "MAX_NESTING", "MAX_SQL_CHARS", "compile_sql"]

DIALECT = "duckdb"
MAX_SQL_CHARS = 10_000
MAX_NESTING = 128
_MAX_INT = 2**63 - 1
# The structured API's limits (gateway/services/specs.py), so both forms accept the same queries.
MAX_FILTERS = 32
MAX_LIMIT = 1_000_000
_ALIAS = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_DATASET = re.compile(r"[a-z][a-z0-9_]{0,62}")  # policy names (gateway/policy.py)
SUPPORTED_AGGREGATES = (
    "COUNT(*), COUNT(col), SUM(col), AVG(col), MEDIAN(col), QUANTILE(col, q), "
    "QUANTILE_CONT(col, q), PERCENTILE_CONT(q) WITHIN GROUP (ORDER BY col)"
)
_SUPPORTED_FILTERS = "= != <> < <= > >= BETWEEN IN (...), combined with AND"
_IN_PANDAS = _l("compute with the released values in pandas")
_SUBQUERY = _l("subqueries are not supported: a query reads one dataset directly")
_CLAUSES = ("expressions", "from_", "where", "group", "order", "limit")
_CLAUSE_REFUSALS = {
    "with_": _l("WITH (common table expressions) is not supported; send the inner query on its "
                "own"),
    "joins": _l("JOIN is not supported: a query reads exactly one dataset"),
    "laterals": _l("LATERAL is not supported: a query reads exactly one dataset"),
    "having": _l("HAVING filters on released values; filter the result in pandas instead"),
    "distinct": _l("DISTINCT is not supported; use GROUP BY col with COUNT(*) to see the groups"),
    "windows": _l("window functions (WINDOW ...) are not supported"),
    "qualify": _l("QUALIFY (window filters) is not supported; filter the result in pandas "
                  "instead"),
    "offset": _l("OFFSET is not supported; use LIMIT n and slice the result in pandas"),
    "into": _l("SELECT INTO is not supported: queries only read"),
    "sample": _l("SAMPLE is not supported: DP noise already accounts for every row"),
}
_COMPARISONS: dict[type[exp.Expr], str] = {
    exp.EQ: "=",
    exp.NEQ: "!=",
    exp.LT: "<",
    exp.LTE: "<=",
    exp.GT: ">",
    exp.GTE: ">=",
}
_FLIPPED = {"=": "=", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


@dataclass(frozen=True)
class _Scope:
    """Names a column may be qualified with: the dataset and its alias."""

    qualifiers: frozenset[str]
    dataset: str = ""
    columns: tuple[str, ...] | None = None  # the dataset's public columns, when known

    def known(self, name: str, clause: str) -> str:
        """``name`` when the dataset has it (or nothing is known); else the unknown name, first."""
        if self.columns is None or name in self.columns:
            return name
        suggestion = closest(name, self.columns)
        if suggestion is None:
            raise InvalidRequest(_l("unknown column %(column)s in %(clause)s: dataset %(dataset)s "
                                    "has no queryable column %(column)s",
                                    column=name, clause=clause, dataset=self.dataset))
        raise InvalidRequest(_l("unknown column %(column)s in %(clause)s: dataset %(dataset)s has "
                                "no queryable column %(column)s; did you mean %(suggestion)s?",
                                column=name, clause=clause, dataset=self.dataset,
                                suggestion=suggestion))


def compile_sql(text: str, *, columns: Callable[[str], Sequence[str]] | None = None) -> QuerySpec:
    """Compile one DP SQL SELECT into a QuerySpec; refuse anything else with a clear message.

    ``columns(dataset)``, when given, returns the dataset's public column names, so that an
    unknown column is named before anything else is said about the query.
    """
    select = _single_select(_parse(_checked_text(text)))
    _check_clauses(select)
    dataset, scope = _dataset(select)
    if columns is not None:
        scope = replace(scope, dataset=dataset, columns=tuple(columns(dataset)))
    group_by = _group_by(select, scope)
    aggregates = _select_list(select, group_by, scope)
    return QuerySpec(
        dataset=dataset,
        select=aggregates,
        where=_where(select, scope),
        group_by=group_by,
        order_by=_order_by(select, group_by, aggregates, scope),
        limit=_limit(select),
    )


# --- text and statement -------------------------------------------------------------------


def _checked_text(text: object) -> str:
    if not isinstance(text, str):
        raise InvalidRequest(_l("sql must be a string"))
    if len(text) > MAX_SQL_CHARS:
        raise InvalidRequest(_l(
            "sql is %(length)s characters long; at most %(max_sql_chars)s accepted",
            length=len(text), max_sql_chars=MAX_SQL_CHARS))
    if not text.strip():
        raise InvalidRequest(_l("sql is empty; send one SELECT statement"))
    for position, char in enumerate(text):
        if unicodedata.category(char) in ("Cc", "Cf") and char not in "\t\n\r":
            raise InvalidRequest(_l(
                "sql contains the control character U+%(char)s at position %(position)s; "
                "remove it",
                char=format(ord(char), "04X"), position=position))
    return text


def _parse(text: str) -> list[exp.Expr]:
    try:
        statements = sqlglot.parse(text, read=DIALECT)
    except ParseError as exc:
        raise InvalidRequest(_parse_error_message(exc)) from exc
    except TokenError as exc:
        raise InvalidRequest(_token_error_message(text, exc)) from exc
    except RecursionError as exc:
        raise UnsupportedQuery(_l("sql is nested too deeply; remove redundant parentheses")) from exc
    except Exception as exc:  # adversarial text: any parser failure is a refusal, never a 500
        raise InvalidRequest(_l(
            "sql could not be parsed (%(name)s: %(exc)s)",
            name=type(exc).__name__, exc=exc)) from exc
    return [s for s in statements if isinstance(s, exp.Expr)]


def _parse_error_message(exc: ParseError) -> Text:
    if not exc.errors:
        return _l("SQL syntax error: %(problem)s", problem=_strip_ansi(str(exc)))
    first = exc.errors[0]
    description = re.sub(
        r"<class '[\w.]*?(\w+)'>", lambda m: m.group(1).upper(), str(first.get("description"))
    )
    where = {"line": first.get("line"), "column": first.get("col"), "problem": description}
    if first.get("highlight"):
        return _l("SQL syntax error at line %(line)s, column %(column)s: %(problem)s (near "
                  "%(near)s)", near=repr(first["highlight"]), **where)
    return _l("SQL syntax error at line %(line)s, column %(column)s: %(problem)s", **where)


def _token_error_message(text: str, exc: TokenError) -> Text:
    cause = f": {exc.__cause__}" if exc.__cause__ is not None else ""
    # sqlglot quotes text[start:end], 50 characters either side of where it stopped.
    if exc.start:
        offset = exc.start + 50
    elif exc.end is not None and exc.end < len(text) - 1:
        offset = max(exc.end - 50, 0)
    else:
        return _l("SQL could not be read (unterminated string, comment or bad character)%(cause)s",
                  cause=cause)
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return _l("SQL could not be read at line %(line)s, column %(column)s%(cause)s", line=line,
              column=column, cause=cause)


def _strip_ansi(message: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", message).splitlines()[0]


def _single_select(statements: list[exp.Expr]) -> exp.Select:
    if not statements:
        raise InvalidRequest(_l("sql holds no statement (only comments?); send one SELECT"))
    if len(statements) > 1:
        kinds = "; ".join(_statement_kind(s) for s in statements[:5])
        raise UnsupportedQuery(
            _l(
                "sql holds %(statements)s statements (%(kinds)s); send exactly one SELECT per"
                " query",
                statements=len(statements), kinds=kinds)
        )
    statement = statements[0]
    _check_nesting(statement)
    if isinstance(statement, exp.SetOperation):
        raise UnsupportedQuery(
            _l(
                "%(statement)s is not supported; send each SELECT as its own query",
                statement=_statement_kind(statement))
        )
    if isinstance(statement, exp.Subquery):
        raise UnsupportedQuery(_l("%(subquery)s; remove the outer parentheses", subquery=_SUBQUERY))
    if not isinstance(statement, exp.Select):
        raise UnsupportedQuery(_l(
            "only SELECT statements are accepted, not %(statement)s",
            statement=_statement_kind(statement)))
    return statement


def _statement_kind(statement: exp.Expr) -> str:
    if isinstance(statement, exp.Command):
        return str(statement.this).upper()
    return statement.key.upper()


def _check_nesting(root: exp.Expr) -> None:
    # Iterative, so that later (recursive) passes only ever see shallow trees.
    stack: list[tuple[exp.Expr, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_NESTING:
            raise UnsupportedQuery(_l(
                "sql is nested too deeply (at most %(max_nesting)s levels)",
                max_nesting=MAX_NESTING))
        stack.extend((child, depth + 1) for child in node.iter_expressions())


def _check_clauses(select: exp.Select) -> None:
    for key, value in select.args.items():
        if key in _CLAUSES or not _present(value):
            continue
        raise UnsupportedQuery(_CLAUSE_REFUSALS.get(key) or _l(
            "the %(clause)s clause is not supported", clause=key.rstrip("_").upper()))


def _present(value: object) -> bool:
    return value is not None and value is not False and value != [] and value != ""


# --- names ---------------------------------------------------------------------------------


def _identifier(node: object, role: str) -> str:
    if not isinstance(node, exp.Identifier) or not isinstance(node.this, str) or not node.this:
        raise UnsupportedQuery(_l(
            "%(role)s must be a plain name, not %(node)s",
            role=role, node=_snippet(node)))
    return node.this


def _matching_name(node: object, role: str, pattern: re.Pattern[str],
                   refusal: Callable[[str], Exception]) -> str:
    """A plain name (``_identifier``) that ``pattern`` matches whole; else ``refusal(name)``."""
    name = _identifier(node, role)
    if not pattern.fullmatch(name):
        raise refusal(name)
    return name


def _not_a_dataset(name: str) -> Exception:
    if _DATASET.fullmatch(name.lower()):
        return UnsupportedQuery(_l(
            "FROM %(name)s: dataset names are lowercase; use %(lower)s",
            name=name, lower=name.lower()))
    return UnsupportedQuery(
        _l(
            "FROM %(name)s: not a dataset name (lowercase letters, digits and _); files "
            "and paths cannot be read",
            name=repr(name))
    )


def _not_an_alias(alias: str) -> Exception:
    return InvalidRequest(
        _l(
            "alias %(alias)s: an alias is a letter or _ then letters, digits or _ (at "
            "most 63)",
            alias=repr(alias))
    )


def _dataset(select: exp.Select) -> tuple[str, _Scope]:
    source = select.args.get("from_")
    if source is None:
        raise UnsupportedQuery(_l("the query needs FROM <dataset>"))
    table = _unparen(source.this)
    if isinstance(table, exp.Subquery | exp.Query):
        raise UnsupportedQuery(_l("%(subquery)s; put its filters in WHERE", subquery=_SUBQUERY))
    if not isinstance(table, exp.Table) or not isinstance(table.this, exp.Identifier):
        raise UnsupportedQuery(_l("FROM takes one dataset name, not %(table)s", table=_snippet(table)))
    if table.args.get("db") or table.args.get("catalog"):
        raise UnsupportedQuery(
            _l(
                "FROM takes a bare dataset name; %(table)s is qualified with a schema",
                table=_snippet(table))
        )
    _only_args(table, {"this", "alias"}, "FROM")
    name = _matching_name(table.this, "the dataset", _DATASET, _not_a_dataset)
    qualifiers = {name}
    alias = table.args.get("alias")
    if alias is not None:
        _only_args(alias, {"this"}, "a dataset alias")
        qualifiers.add(_identifier(alias.this, "a dataset alias"))
    return name, _Scope(frozenset(qualifiers))


def _column(node: exp.Expr | None, scope: _Scope, clause: str | None = None) -> str:
    """The column's name; with ``clause``, it must be one of the dataset's columns."""
    if not isinstance(node, exp.Column):
        raise UnsupportedQuery(_l("expected a column name, not %(node)s", node=_snippet(node)))
    if isinstance(node.this, exp.Star):
        raise UnsupportedQuery(_l(
            "SELECT * is not supported; list aggregates (%(supported_aggregates)s)",
            supported_aggregates=SUPPORTED_AGGREGATES))
    if node.args.get("db") or node.args.get("catalog"):
        raise UnsupportedQuery(_l("column %(node)s: write the column name alone", node=_snippet(node)))
    _only_args(node, {"this", "table"}, "a column")
    table = node.args.get("table")
    if table is not None and _identifier(table, "a column qualifier") not in scope.qualifiers:
        raise UnsupportedQuery(
            _l(
                "column %(node)s refers to %(name)s, which is not the dataset in FROM",
                node=_snippet(node), name=table.name)
        )
    name = _identifier(node.this, "a column")
    return name if clause is None else scope.known(name, clause)


def _only_args(node: exp.Expr, allowed: set[str], where: str) -> None:
    for key, value in node.args.items():
        if key not in allowed and _present(value):
            raise UnsupportedQuery(_l(
                "%(node)s: %(key)s is not supported in %(where)s",
                node=_snippet(node), key=key, where=where))


def _unparen(node: Any) -> Any:
    while isinstance(node, exp.Paren):
        node = node.this
    return node


def _snippet(node: object) -> str:
    if not isinstance(node, exp.Expr):
        return repr(node)
    try:
        sql = node.sql(dialect=DIALECT)
    except Exception:  # noqa: BLE001 - only used to word an error message
        sql = node.key.upper()
    return sql if len(sql) <= 60 else sql[:57] + "..."


# --- SELECT and GROUP BY -------------------------------------------------------------------


def _group_by(select: exp.Select, scope: _Scope) -> tuple[str, ...]:
    group = select.args.get("group")
    if group is None:
        return ()
    if any(_present(v) for k, v in group.args.items() if k != "expressions"):
        raise UnsupportedQuery(
            _l(
                "GROUP BY ALL / ROLLUP / CUBE / GROUPING SETS are not supported; list the "
                "columns (one query per grouping)")
        )
    names = []
    for item in group.expressions:
        item = _unparen(item)
        if not isinstance(item, exp.Column):
            raise UnsupportedQuery(
                _l(
                    "GROUP BY %(item)s: GROUP BY takes column names, not positions or expressions",
                    item=_snippet(item))
            )
        names.append(_column(item, scope, "GROUP BY"))
    return tuple(names)


def _select_list(select: exp.Select, group_by: tuple[str, ...], scope: _Scope) -> tuple[Aggregate, ...]:
    aggregates: list[Aggregate] = []
    keys: list[str] = []
    for item in select.expressions:
        alias = None
        if isinstance(item, exp.Alias):
            alias = _alias(item)
            item = item.this
        item = _unparen(item)
        if isinstance(item, exp.Column):
            keys.append(_group_key(item, alias, group_by, scope))
        else:
            aggregates.append(_aggregate(item, scope, alias))
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise InvalidRequest(_l("output column named twice: %(twice)s", twice=', '.join(twice)))
    if not aggregates:
        raise UnsupportedQuery(
            _l(
                "SELECT needs at least one aggregate (%(supported_aggregates)s); group keys "
                "alone are not released",
                supported_aggregates=SUPPORTED_AGGREGATES)
        )
    return tuple(aggregates)


def _alias(node: exp.Alias) -> str:
    return _matching_name(node.args.get("alias"), "an alias", _ALIAS, _not_an_alias)


def _group_key(node: exp.Column, alias: str | None, group_by: tuple[str, ...], scope: _Scope) -> str:
    name = _column(node, scope, "SELECT")
    if name not in group_by:
        raise UnsupportedQuery(
            _l(
                "column %(name)s is selected but not grouped: add GROUP BY %(name)s, or use "
                "it inside an aggregate (%(supported_aggregates)s)",
                name=name, supported_aggregates=SUPPORTED_AGGREGATES)
        )
    if alias is not None and alias != name:
        raise UnsupportedQuery(
            _l(
                "renaming a group key (%(name)s AS %(alias)s) is not supported; select it as "
                "%(name)s",
                name=name, alias=alias)
        )
    return name


def _aggregate(node: exp.Expr, scope: _Scope, alias: str | None) -> Aggregate:
    builder = _AGGREGATE_BUILDERS.get(type(node))
    if builder is None:
        raise _refusal(node, _SELECT_REFUSALS, _SELECT_DEFAULT)
    agg, column, q = builder(node, scope)
    return Aggregate(agg, column, q=q, alias=alias)


_Built = tuple[str, str | None, float | None]


def _count(node: exp.Expr, scope: _Scope) -> _Built:
    if node.args.get("expressions"):
        raise UnsupportedQuery(_l("%(node)s: COUNT takes * or one column", node=_snippet(node)))
    _only_args(node, {"this", "big_int"}, "COUNT")
    target = _unparen(node.this)
    if isinstance(target, exp.Star):
        return "count", None, None
    if target is None:
        raise UnsupportedQuery(_l("COUNT() needs an argument: COUNT(*) or COUNT(col)"))
    return "count", _aggregate_column(node, scope), None


def _plain(agg: str, q: float | None = None) -> Callable[[Any, _Scope], _Built]:
    """SUM(col), AVG(col), MEDIAN(col): one column, nothing else."""
    return lambda node, scope: (agg, _aggregate_column(node, scope), q)


def _quantile(node: exp.Expr, scope: _Scope) -> _Built:
    """QUANTILE(col, q) and QUANTILE_CONT / QUANTILE_DISC / PERCENTILE_CONT(col, q)."""
    q_node = node.args.get("quantile") or node.args.get("expression")
    if q_node is None:
        raise UnsupportedQuery(
            _l(
                "%(node)s: write PERCENTILE_CONT(q) WITHIN GROUP (ORDER BY col) or "
                "QUANTILE(col, q)",
                node=_snippet(node))
        )
    _only_args(node, {"this", "quantile", "expression"}, "a quantile")
    return "quantile", _aggregate_column(node, scope), _fraction(q_node)


def _within_group(node: exp.Expr, scope: _Scope) -> _Built:
    """PERCENTILE_CONT(q) WITHIN GROUP (ORDER BY col), also PERCENTILE_DISC."""
    function, order = node.this, node.expression
    if not isinstance(function, exp.PercentileCont | exp.PercentileDisc):
        raise UnsupportedQuery(_l(
            "%(node)s: WITHIN GROUP is only for PERCENTILE_CONT",
            node=_snippet(node)))
    _only_args(function, {"this"}, "PERCENTILE_CONT")
    if not isinstance(order, exp.Order) or len(order.expressions) != 1:
        raise UnsupportedQuery(_l(
            "%(node)s: WITHIN GROUP needs (ORDER BY one column)",
            node=_snippet(node)))
    ordered = order.expressions[0]
    _only_args(order, {"expressions"}, "WITHIN GROUP")
    if not isinstance(ordered, exp.Ordered) or ordered.args.get("desc"):
        raise UnsupportedQuery(
            _l(
                "PERCENTILE_CONT(q) WITHIN GROUP (ORDER BY col DESC) is not supported; order "
                "ascending and use 1 - q")
        )
    return "quantile", _column(_unparen(ordered.this), scope, "SELECT"), _fraction(function.this)


def _aggregate_column(node: exp.Expr, scope: _Scope) -> str:
    name = _function_name(node)
    target = _unparen(node.this)
    if isinstance(target, exp.Distinct):
        raise UnsupportedQuery(
            _l(
                "%(name)s(DISTINCT ...) is not supported: distinct counts are not released; "
                "use GROUP BY col with COUNT(*) instead",
                name=name)
        )
    if isinstance(target, exp.Star):
        raise UnsupportedQuery(_l("%(name)s(*) is not supported; name a column: %(name)s(col)", name=name))
    if not isinstance(target, exp.Column):
        raise UnsupportedQuery(
            _l(
                "%(node)s: aggregates take a plain column, not an expression; %(in_pandas)s",
                node=_snippet(node), in_pandas=_IN_PANDAS)
        )
    if node.args.get("expressions"):
        raise UnsupportedQuery(_l("%(node)s: %(name)s takes one column", node=_snippet(node), name=name))
    return _column(target, scope, "SELECT")


def _fraction(node: exp.Expr | None) -> float:
    if isinstance(node, exp.Array):
        raise UnsupportedQuery(_l("one quantile per aggregate: write QUANTILE(col, q) once per q"))
    value = _literal(node)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UnsupportedQuery(_l(
            "a quantile needs a number q between 0 and 1, got %(value)s",
            value=repr(value)))
    return float(value)


_AGGREGATE_BUILDERS: dict[type[exp.Expr], Callable[[Any, _Scope], _Built]] = {
    exp.Count: _count,
    exp.Sum: _plain("sum"),
    exp.Avg: _plain("mean"),
    exp.Median: _plain("quantile", 0.5),
    exp.Quantile: _quantile,
    exp.PercentileCont: _quantile,
    exp.PercentileDisc: _quantile,
    exp.WithinGroup: _within_group,
}


def _function_name(node: object) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.name).upper()
    if isinstance(node, exp.Func):
        return node.sql_names()[0]
    return node.key.upper() if isinstance(node, exp.Expr) else repr(node)


def _refusal(node: exp.Expr, refusals: _Refusals, default: Text) -> UnsupportedQuery:
    """The first matching entry words the refusal: %(sql)s is the construct, %(name)s its
    function, %(supported)s the aggregates or filters there are."""
    message = next((text for types, text in refusals if isinstance(node, types)), default)
    return UnsupportedQuery(Text(message.msgid, (
        ("sql", _snippet(node)), ("name", _function_name(node)),
        ("aggregates", SUPPORTED_AGGREGATES), ("filters", _SUPPORTED_FILTERS),
        ("in_pandas", _IN_PANDAS), ("subquery", _SUBQUERY))))


_Refusals = tuple[tuple[tuple[type[exp.Expr], ...], Text], ...]
_SELECT_REFUSALS: _Refusals = (
    ((exp.Star,), _l("SELECT * is not supported; list aggregates: %(aggregates)s")),
    ((exp.Window,), _l("window functions (%(sql)s) are not supported; use GROUP BY")),
    ((exp.Filter,), _l("FILTER (WHERE ...) on an aggregate is not supported; move it to WHERE")),
    ((exp.Subquery, exp.Query, exp.Exists), _SUBQUERY),
    ((exp.Binary, exp.Neg), _l("arithmetic in SELECT (%(sql)s) is not supported; %(in_pandas)s")),
    ((exp.Literal, exp.Boolean, exp.Null), _l("constant %(sql)s in SELECT is not supported")),
    (
        (exp.Min, exp.Max),
        _l("%(name)s is not supported; use a high or low quantile, e.g. QUANTILE(col, 0.99)"),
    ),
    (
        (exp.Anonymous,),
        _l("unknown function %(name)s: user-defined and unknown functions are not supported; "
           "supported aggregates: %(aggregates)s"),
    ),
    ((exp.Func,), _l("%(name)s is not a supported aggregate; supported: %(aggregates)s")),
)
_SELECT_DEFAULT = _l("%(sql)s in SELECT is not supported; SELECT lists group keys and "
                     "aggregates")


# --- WHERE ---------------------------------------------------------------------------------


def _where(select: exp.Select, scope: _Scope) -> tuple[Filter, ...]:
    where = select.args.get("where")
    if where is None:
        return ()
    conditions: list[exp.Expr] = []
    stack = [where.this]
    while stack:  # iterative: AND chains are as deep as they are long
        node = _unparen(stack.pop())
        if isinstance(node, exp.And):
            stack += [node.expression, node.this]
        else:
            conditions.append(node)
    if len(conditions) > MAX_FILTERS:
        raise InvalidRequest(_l("WHERE takes at most %(max_filters)s conditions", max_filters=MAX_FILTERS))
    return tuple(_filter(node, scope) for node in conditions)


def _filter(node: exp.Expr, scope: _Scope) -> Filter:
    op = _COMPARISONS.get(type(node))
    if op is not None:
        return _comparison(node, op, scope)
    if isinstance(node, exp.Between):
        if node.args.get("symmetric"):
            raise UnsupportedQuery(_l("BETWEEN SYMMETRIC is not supported; write BETWEEN low AND high"))
        _only_args(node, {"this", "low", "high"}, "BETWEEN")
        column = _column(_unparen(node.this), scope, "WHERE")
        low, high = _literal(node.args.get("low")), _literal(node.args.get("high"))
        return Filter(column, "between", (low, high))
    if isinstance(node, exp.In):
        if node.args.get("query") is not None:
            raise UnsupportedQuery(_l(
                "%(subquery)s; IN takes a list of literal values",
                subquery=_SUBQUERY))
        _only_args(node, {"this", "expressions"}, "IN")
        column = _column(_unparen(node.this), scope, "WHERE")
        return Filter(column, "in", tuple(_literal(v) for v in node.expressions))
    if isinstance(node, exp.Not):
        raise _not_refusal(node)
    raise _refusal(node, _FILTER_REFUSALS, _FILTER_DEFAULT)


def _comparison(node: exp.Expr, op: str, scope: _Scope) -> Filter:
    left, right = _unparen(node.this), _unparen(node.expression)
    if isinstance(left, exp.Column) and isinstance(right, exp.Column):
        raise UnsupportedQuery(_l(
            "%(node)s compares two columns; compare a column with a constant",
            node=_snippet(node)))
    if isinstance(right, exp.Column):  # 5 < month  ->  month > 5
        left, right, op = right, left, _FLIPPED[op]
    if not isinstance(left, exp.Column):
        raise UnsupportedQuery(_l(
            "%(node)s: a filter compares a column with a constant",
            node=_snippet(node)))
    return Filter(_column(left, scope, "WHERE"), op, _literal(right))


_FILTER_REFUSALS: _Refusals = (
    (
        (exp.Or,),
        _l("OR is not supported (%(sql)s); split into separate queries, or use col IN (...) "
           "for several values of one column"),
    ),
    ((exp.Is,), _l("IS is not supported (%(sql)s); nulls follow the policy; use = TRUE or = "
                   "FALSE")),
    (
        (exp.Like, exp.ILike, exp.SimilarTo, exp.RegexpLike),
        _l("pattern matching (%(sql)s) is not supported; use = or IN (...) with exact values"),
    ),
    ((exp.Subquery, exp.Query, exp.Exists), _SUBQUERY),
)
_FILTER_DEFAULT = _l("%(sql)s is not a supported filter; supported: %(filters)s")


def _not_refusal(node: exp.Not) -> UnsupportedQuery:
    inner = _unparen(node.this)
    if isinstance(inner, exp.In):
        return UnsupportedQuery(_l("NOT IN is not supported; list the values wanted with IN (...)"))
    if isinstance(inner, exp.Between):
        return UnsupportedQuery(
            _l("NOT BETWEEN is not supported; send col < low and col > high as separate queries")
        )
    return UnsupportedQuery(_l("NOT is not supported (%(node)s); use != or IN (...)", node=_snippet(node)))


def _literal(node: exp.Expr | None) -> str | int | float | bool:
    node = _unparen(node)
    negative = isinstance(node, exp.Neg)
    if negative:
        node = _unparen(node.this)
        if not isinstance(node, exp.Literal) or node.is_string:
            raise UnsupportedQuery(_l("-%(node)s: only a number can be negated", node=_snippet(node)))
    if isinstance(node, exp.Literal):
        if node.is_string:
            return str(node.this)
        number = _number(str(node.this))
        return -number if negative else number
    if isinstance(node, exp.Boolean):
        return bool(node.this)
    if isinstance(node, exp.Null):
        raise UnsupportedQuery(_l("comparing with NULL is not supported (it is never true in SQL)"))
    if isinstance(node, exp.Cast):
        raise UnsupportedQuery(
            _l(
                "casts and typed literals (%(node)s) are not supported; write a plain value",
                node=_snippet(node))
        )
    if isinstance(node, exp.Subquery | exp.Query):
        raise UnsupportedQuery(_SUBQUERY)
    raise UnsupportedQuery(_l(
        "%(node)s is not a constant; write a number, a 'string', TRUE or FALSE",
        node=_snippet(node)))


def _number(text: str) -> int | float:
    try:
        value: int | float = int(text) if _is_whole(text.replace("_", "")) else float(text)
    except (ValueError, OverflowError) as exc:
        raise InvalidRequest(_l("number %(value)s is not valid or out of range", value=text[:30])) from exc
    if not math.isfinite(value) or abs(value) > _MAX_INT:
        raise InvalidRequest(_l("number %(value)s is out of range", value=text[:30]))
    return value


def _is_whole(text: str) -> bool:
    return text.isascii() and text.isdigit()


# --- ORDER BY and LIMIT --------------------------------------------------------------------


def _order_by(
    select: exp.Select, group_by: tuple[str, ...], aggregates: tuple[Aggregate, ...], scope: _Scope
) -> tuple[tuple[str, bool], ...]:
    order = select.args.get("order")
    if order is None:
        return ()
    _only_args(order, {"expressions"}, "ORDER BY")
    outputs = [*group_by, *(a.name for a in aggregates)]
    keys = []
    for ordered in order.expressions:
        if not isinstance(ordered, exp.Ordered):
            raise UnsupportedQuery(_l("ORDER BY %(ordered)s is not supported", ordered=_snippet(ordered)))
        _only_args(ordered, {"this", "desc", "nulls_first"}, "ORDER BY")
        name = _order_key(_unparen(ordered.this), aggregates, scope)
        if name not in outputs:
            raise UnsupportedQuery(
                _l(
                    "ORDER BY %(name)s: not an output column; order by one of %(outputs)s "
                    "(sorting applies to the released rows)",
                    name=name, outputs=', '.join(outputs))
            )
        keys.append((name, bool(ordered.args.get("desc"))))
    return tuple(keys)


def _order_key(node: exp.Expr, aggregates: tuple[Aggregate, ...], scope: _Scope) -> str:
    if isinstance(node, exp.Column):
        return _column(node, scope)
    if type(node) in _AGGREGATE_BUILDERS:
        wanted = _aggregate(node, scope, alias=None).canonical()
        for agg in aggregates:
            if agg.canonical() == wanted:
                return agg.name
    raise UnsupportedQuery(
        _l(
            "ORDER BY %(node)s: order by the name or alias of an output column (positions"
            " and expressions are not supported)",
            node=_snippet(node))
    )


def _limit(select: exp.Select) -> int | None:
    limit = select.args.get("limit")
    if limit is None:
        return None
    if not isinstance(limit, exp.Limit):
        raise UnsupportedQuery(_l("%(limit)s is not supported; use LIMIT n", limit=_snippet(limit)))
    if limit.args.get("limit_options") or limit.args.get("offset"):
        raise UnsupportedQuery(_l("LIMIT takes a number of rows only (no PERCENT, WITH TIES, OFFSET)"))
    _only_args(limit, {"expression"}, "LIMIT")
    count = limit.expression
    if not isinstance(count, exp.Literal) or count.is_string or not _is_whole(str(count.this)):
        raise UnsupportedQuery(
            _l(
                "LIMIT %(count)s is not supported; LIMIT takes a non-negative whole number",
                count=_snippet(count))
        )
    digits = str(count.this).lstrip("0") or "0"
    # Length first: int() refuses strings of more than 4300 digits with a ValueError.
    if len(digits) > len(str(MAX_LIMIT)) or int(digits) > MAX_LIMIT:
        raise InvalidRequest(_l("LIMIT takes at most %(max_limit)s rows", max_limit=MAX_LIMIT))
    return int(digits)
