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
from gateway.domain.text import _l

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
_IN_PANDAS = "compute with the released values in pandas"
_SUBQUERY = "subqueries are not supported: a query reads one dataset directly"
_CLAUSES = ("expressions", "from_", "where", "group", "order", "limit")
_CLAUSE_REFUSALS = {
    "with_": "WITH (common table expressions) is not supported; send the inner query on its own",
    "joins": "JOIN is not supported: a query reads exactly one dataset",
    "laterals": "LATERAL is not supported: a query reads exactly one dataset",
    "having": "HAVING filters on released values; filter the result in pandas instead",
    "distinct": "DISTINCT is not supported; use GROUP BY col with COUNT(*) to see the groups",
    "windows": "window functions (WINDOW ...) are not supported",
    "qualify": "QUALIFY (window filters) is not supported; filter the result in pandas instead",
    "offset": "OFFSET is not supported; use LIMIT n and slice the result in pandas",
    "into": "SELECT INTO is not supported: queries only read",
    "sample": "SAMPLE is not supported: DP noise already accounts for every row",
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
        raise InvalidRequest("sql must be a string")
    if len(text) > MAX_SQL_CHARS:
        raise InvalidRequest(f"sql is {len(text)} characters long; at most {MAX_SQL_CHARS} accepted")
    if not text.strip():
        raise InvalidRequest("sql is empty; send one SELECT statement")
    for position, char in enumerate(text):
        if unicodedata.category(char) in ("Cc", "Cf") and char not in "\t\n\r":
            raise InvalidRequest(f"sql contains the control character U+{ord(char):04X} at "
                                 f"position {position}; remove it")
    return text


def _parse(text: str) -> list[exp.Expr]:
    try:
        statements = sqlglot.parse(text, read=DIALECT)
    except ParseError as exc:
        raise InvalidRequest(_parse_error_message(exc)) from exc
    except TokenError as exc:
        raise InvalidRequest(_token_error_message(text, exc)) from exc
    except RecursionError as exc:
        raise UnsupportedQuery("sql is nested too deeply; remove redundant parentheses") from exc
    except Exception as exc:  # adversarial text: any parser failure is a refusal, never a 500
        raise InvalidRequest(f"sql could not be parsed ({type(exc).__name__}: {exc})") from exc
    return [s for s in statements if isinstance(s, exp.Expr)]


def _parse_error_message(exc: ParseError) -> str:
    if not exc.errors:
        return f"SQL syntax error: {_strip_ansi(str(exc))}"
    first = exc.errors[0]
    description = re.sub(
        r"<class '[\w.]*?(\w+)'>", lambda m: m.group(1).upper(), str(first.get("description"))
    )
    near = f" (near {first['highlight']!r})" if first.get("highlight") else ""
    return f"SQL syntax error at line {first.get('line')}, column {first.get('col')}: {description}{near}"


def _token_error_message(text: str, exc: TokenError) -> str:
    cause = f": {exc.__cause__}" if exc.__cause__ is not None else ""
    # sqlglot quotes text[start:end], 50 characters either side of where it stopped.
    if exc.start:
        offset = exc.start + 50
    elif exc.end is not None and exc.end < len(text) - 1:
        offset = max(exc.end - 50, 0)
    else:
        return f"SQL could not be read (unterminated string, comment or bad character){cause}"
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return f"SQL could not be read at line {line}, column {column}{cause}"


def _strip_ansi(message: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", message).splitlines()[0]


def _single_select(statements: list[exp.Expr]) -> exp.Select:
    if not statements:
        raise InvalidRequest("sql holds no statement (only comments?); send one SELECT")
    if len(statements) > 1:
        kinds = "; ".join(_statement_kind(s) for s in statements[:5])
        raise UnsupportedQuery(
            f"sql holds {len(statements)} statements ({kinds}); send exactly one SELECT per query"
        )
    statement = statements[0]
    _check_nesting(statement)
    if isinstance(statement, exp.SetOperation):
        raise UnsupportedQuery(
            f"{_statement_kind(statement)} is not supported; send each SELECT as its own query"
        )
    if isinstance(statement, exp.Subquery):
        raise UnsupportedQuery(f"{_SUBQUERY}; remove the outer parentheses")
    if not isinstance(statement, exp.Select):
        raise UnsupportedQuery(f"only SELECT statements are accepted, not {_statement_kind(statement)}")
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
            raise UnsupportedQuery(f"sql is nested too deeply (at most {MAX_NESTING} levels)")
        stack.extend((child, depth + 1) for child in node.iter_expressions())


def _check_clauses(select: exp.Select) -> None:
    for key, value in select.args.items():
        if key in _CLAUSES or not _present(value):
            continue
        raise UnsupportedQuery(
            _CLAUSE_REFUSALS.get(key, f"the {key.rstrip('_').upper()} clause is not supported")
        )


def _present(value: object) -> bool:
    return value is not None and value is not False and value != [] and value != ""


# --- names ---------------------------------------------------------------------------------


def _identifier(node: object, role: str) -> str:
    if not isinstance(node, exp.Identifier) or not isinstance(node.this, str) or not node.this:
        raise UnsupportedQuery(f"{role} must be a plain name, not {_snippet(node)}")
    return node.this


def _dataset(select: exp.Select) -> tuple[str, _Scope]:
    source = select.args.get("from_")
    if source is None:
        raise UnsupportedQuery("the query needs FROM <dataset>")
    table = _unparen(source.this)
    if isinstance(table, exp.Subquery | exp.Query):
        raise UnsupportedQuery(f"{_SUBQUERY}; put its filters in WHERE")
    if not isinstance(table, exp.Table) or not isinstance(table.this, exp.Identifier):
        raise UnsupportedQuery(f"FROM takes one dataset name, not {_snippet(table)}")
    if table.args.get("db") or table.args.get("catalog"):
        raise UnsupportedQuery(
            f"FROM takes a bare dataset name; {_snippet(table)} is qualified with a schema"
        )
    _only_args(table, {"this", "alias"}, "FROM")
    name = _identifier(table.this, "the dataset")
    if _DATASET.fullmatch(name.lower()) and not _DATASET.fullmatch(name):
        raise UnsupportedQuery(f"FROM {name}: dataset names are lowercase; use {name.lower()}")
    if not _DATASET.fullmatch(name):
        raise UnsupportedQuery(
            f"FROM {name!r}: not a dataset name (lowercase letters, digits and _); "
            "files and paths cannot be read"
        )
    qualifiers = {name}
    alias = table.args.get("alias")
    if alias is not None:
        _only_args(alias, {"this"}, "a dataset alias")
        qualifiers.add(_identifier(alias.this, "a dataset alias"))
    return name, _Scope(frozenset(qualifiers))


def _column(node: exp.Expr | None, scope: _Scope, clause: str | None = None) -> str:
    """The column's name; with ``clause``, it must be one of the dataset's columns."""
    if not isinstance(node, exp.Column):
        raise UnsupportedQuery(f"expected a column name, not {_snippet(node)}")
    if isinstance(node.this, exp.Star):
        raise UnsupportedQuery(f"SELECT * is not supported; list aggregates ({SUPPORTED_AGGREGATES})")
    if node.args.get("db") or node.args.get("catalog"):
        raise UnsupportedQuery(f"column {_snippet(node)}: write the column name alone")
    _only_args(node, {"this", "table"}, "a column")
    table = node.args.get("table")
    if table is not None and _identifier(table, "a column qualifier") not in scope.qualifiers:
        raise UnsupportedQuery(
            f"column {_snippet(node)} refers to {table.name}, which is not the dataset in FROM"
        )
    name = _identifier(node.this, "a column")
    return name if clause is None else scope.known(name, clause)


def _only_args(node: exp.Expr, allowed: set[str], where: str) -> None:
    for key, value in node.args.items():
        if key not in allowed and _present(value):
            raise UnsupportedQuery(f"{_snippet(node)}: {key} is not supported in {where}")


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
            "GROUP BY ALL / ROLLUP / CUBE / GROUPING SETS are not supported; list the columns "
            "(one query per grouping)"
        )
    names = []
    for item in group.expressions:
        item = _unparen(item)
        if not isinstance(item, exp.Column):
            raise UnsupportedQuery(
                f"GROUP BY {_snippet(item)}: GROUP BY takes column names, not positions or expressions"
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
        raise InvalidRequest(f"output column named twice: {', '.join(twice)}")
    if not aggregates:
        raise UnsupportedQuery(
            f"SELECT needs at least one aggregate ({SUPPORTED_AGGREGATES}); group keys alone are not released"
        )
    return tuple(aggregates)


def _alias(node: exp.Alias) -> str:
    alias = _identifier(node.args.get("alias"), "an alias")
    if not _ALIAS.fullmatch(alias):
        raise InvalidRequest(
            f"alias {alias!r}: an alias is a letter or _ then letters, digits or _ (at most 63)"
        )
    return alias


def _group_key(node: exp.Column, alias: str | None, group_by: tuple[str, ...], scope: _Scope) -> str:
    name = _column(node, scope, "SELECT")
    if name not in group_by:
        raise UnsupportedQuery(
            f"column {name} is selected but not grouped: add GROUP BY {name}, or use it inside "
            f"an aggregate ({SUPPORTED_AGGREGATES})"
        )
    if alias is not None and alias != name:
        raise UnsupportedQuery(
            f"renaming a group key ({name} AS {alias}) is not supported; select it as {name}"
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
        raise UnsupportedQuery(f"{_snippet(node)}: COUNT takes * or one column")
    _only_args(node, {"this", "big_int"}, "COUNT")
    target = _unparen(node.this)
    if isinstance(target, exp.Star):
        return "count", None, None
    if target is None:
        raise UnsupportedQuery("COUNT() needs an argument: COUNT(*) or COUNT(col)")
    return "count", _aggregate_column(node, scope), None


def _plain(agg: str, q: float | None = None) -> Callable[[Any, _Scope], _Built]:
    """SUM(col), AVG(col), MEDIAN(col): one column, nothing else."""
    return lambda node, scope: (agg, _aggregate_column(node, scope), q)


def _quantile(node: exp.Expr, scope: _Scope) -> _Built:
    """QUANTILE(col, q) and QUANTILE_CONT / QUANTILE_DISC / PERCENTILE_CONT(col, q)."""
    q_node = node.args.get("quantile") or node.args.get("expression")
    if q_node is None:
        raise UnsupportedQuery(
            f"{_snippet(node)}: write PERCENTILE_CONT(q) WITHIN GROUP (ORDER BY col) or QUANTILE(col, q)"
        )
    _only_args(node, {"this", "quantile", "expression"}, "a quantile")
    return "quantile", _aggregate_column(node, scope), _fraction(q_node)


def _within_group(node: exp.Expr, scope: _Scope) -> _Built:
    """PERCENTILE_CONT(q) WITHIN GROUP (ORDER BY col), also PERCENTILE_DISC."""
    function, order = node.this, node.expression
    if not isinstance(function, exp.PercentileCont | exp.PercentileDisc):
        raise UnsupportedQuery(f"{_snippet(node)}: WITHIN GROUP is only for PERCENTILE_CONT")
    _only_args(function, {"this"}, "PERCENTILE_CONT")
    if not isinstance(order, exp.Order) or len(order.expressions) != 1:
        raise UnsupportedQuery(f"{_snippet(node)}: WITHIN GROUP needs (ORDER BY one column)")
    ordered = order.expressions[0]
    _only_args(order, {"expressions"}, "WITHIN GROUP")
    if not isinstance(ordered, exp.Ordered) or ordered.args.get("desc"):
        raise UnsupportedQuery(
            "PERCENTILE_CONT(q) WITHIN GROUP (ORDER BY col DESC) is not supported; "
            "order ascending and use 1 - q"
        )
    return "quantile", _column(_unparen(ordered.this), scope, "SELECT"), _fraction(function.this)


def _aggregate_column(node: exp.Expr, scope: _Scope) -> str:
    name = _function_name(node)
    target = _unparen(node.this)
    if isinstance(target, exp.Distinct):
        raise UnsupportedQuery(
            f"{name}(DISTINCT ...) is not supported: distinct counts are not released; "
            f"use GROUP BY col with COUNT(*) instead"
        )
    if isinstance(target, exp.Star):
        raise UnsupportedQuery(f"{name}(*) is not supported; name a column: {name}(col)")
    if not isinstance(target, exp.Column):
        raise UnsupportedQuery(
            f"{_snippet(node)}: aggregates take a plain column, not an expression; {_IN_PANDAS}"
        )
    if node.args.get("expressions"):
        raise UnsupportedQuery(f"{_snippet(node)}: {name} takes one column")
    return _column(target, scope, "SELECT")


def _fraction(node: exp.Expr | None) -> float:
    if isinstance(node, exp.Array):
        raise UnsupportedQuery("one quantile per aggregate: write QUANTILE(col, q) once per q")
    value = _literal(node)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UnsupportedQuery(f"a quantile needs a number q between 0 and 1, got {value!r}")
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


def _refusal(node: exp.Expr, refusals: _Refusals, default: str) -> UnsupportedQuery:
    """The first matching entry words the refusal: {sql} is the construct, {name} its function."""
    message = next((text for types, text in refusals if isinstance(node, types)), default)
    return UnsupportedQuery(message.format(sql=_snippet(node), name=_function_name(node)))


_Refusals = tuple[tuple[tuple[type[exp.Expr], ...], str], ...]
_SELECT_REFUSALS: _Refusals = (
    ((exp.Star,), f"SELECT * is not supported; list aggregates: {SUPPORTED_AGGREGATES}"),
    ((exp.Window,), "window functions ({sql}) are not supported; use GROUP BY"),
    ((exp.Filter,), "FILTER (WHERE ...) on an aggregate is not supported; move it to WHERE"),
    ((exp.Subquery, exp.Query, exp.Exists), _SUBQUERY),
    ((exp.Binary, exp.Neg), "arithmetic in SELECT ({sql}) is not supported; " + _IN_PANDAS),
    ((exp.Literal, exp.Boolean, exp.Null), "constant {sql} in SELECT is not supported"),
    (
        (exp.Min, exp.Max),
        "{name} is not supported; use a high or low quantile, e.g. QUANTILE(col, 0.99)",
    ),
    (
        (exp.Anonymous,),
        "unknown function {name}: user-defined and unknown functions are not "
        f"supported; supported aggregates: {SUPPORTED_AGGREGATES}",
    ),
    ((exp.Func,), f"{{name}} is not a supported aggregate; supported: {SUPPORTED_AGGREGATES}"),
)
_SELECT_DEFAULT = "{sql} in SELECT is not supported; SELECT lists group keys and aggregates"


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
        raise InvalidRequest(f"WHERE takes at most {MAX_FILTERS} conditions")
    return tuple(_filter(node, scope) for node in conditions)


def _filter(node: exp.Expr, scope: _Scope) -> Filter:
    op = _COMPARISONS.get(type(node))
    if op is not None:
        return _comparison(node, op, scope)
    if isinstance(node, exp.Between):
        if node.args.get("symmetric"):
            raise UnsupportedQuery("BETWEEN SYMMETRIC is not supported; write BETWEEN low AND high")
        _only_args(node, {"this", "low", "high"}, "BETWEEN")
        column = _column(_unparen(node.this), scope, "WHERE")
        low, high = _literal(node.args.get("low")), _literal(node.args.get("high"))
        return Filter(column, "between", (low, high))
    if isinstance(node, exp.In):
        if node.args.get("query") is not None:
            raise UnsupportedQuery(f"{_SUBQUERY}; IN takes a list of literal values")
        _only_args(node, {"this", "expressions"}, "IN")
        column = _column(_unparen(node.this), scope, "WHERE")
        return Filter(column, "in", tuple(_literal(v) for v in node.expressions))
    if isinstance(node, exp.Not):
        raise _not_refusal(node)
    raise _refusal(node, _FILTER_REFUSALS, _FILTER_DEFAULT)


def _comparison(node: exp.Expr, op: str, scope: _Scope) -> Filter:
    left, right = _unparen(node.this), _unparen(node.expression)
    if isinstance(left, exp.Column) and isinstance(right, exp.Column):
        raise UnsupportedQuery(f"{_snippet(node)} compares two columns; compare a column with a constant")
    if isinstance(right, exp.Column):  # 5 < month  ->  month > 5
        left, right, op = right, left, _FLIPPED[op]
    if not isinstance(left, exp.Column):
        raise UnsupportedQuery(f"{_snippet(node)}: a filter compares a column with a constant")
    return Filter(_column(left, scope, "WHERE"), op, _literal(right))


_FILTER_REFUSALS: _Refusals = (
    (
        (exp.Or,),
        "OR is not supported ({sql}); split into separate queries, or use col IN (...) "
        "for several values of one column",
    ),
    ((exp.Is,), "IS is not supported ({sql}); nulls follow the policy; use = TRUE or = FALSE"),
    (
        (exp.Like, exp.ILike, exp.SimilarTo, exp.RegexpLike),
        "pattern matching ({sql}) is not supported; use = or IN (...) with exact values",
    ),
    ((exp.Subquery, exp.Query, exp.Exists), _SUBQUERY),
)
_FILTER_DEFAULT = f"{{sql}} is not a supported filter; supported: {_SUPPORTED_FILTERS}"


def _not_refusal(node: exp.Not) -> UnsupportedQuery:
    inner = _unparen(node.this)
    if isinstance(inner, exp.In):
        return UnsupportedQuery("NOT IN is not supported; list the values wanted with IN (...)")
    if isinstance(inner, exp.Between):
        return UnsupportedQuery(
            "NOT BETWEEN is not supported; send col < low and col > high as separate queries"
        )
    return UnsupportedQuery(f"NOT is not supported ({_snippet(node)}); use != or IN (...)")


def _literal(node: exp.Expr | None) -> str | int | float | bool:
    node = _unparen(node)
    negative = isinstance(node, exp.Neg)
    if negative:
        node = _unparen(node.this)
        if not isinstance(node, exp.Literal) or node.is_string:
            raise UnsupportedQuery(f"-{_snippet(node)}: only a number can be negated")
    if isinstance(node, exp.Literal):
        if node.is_string:
            return str(node.this)
        number = _number(str(node.this))
        return -number if negative else number
    if isinstance(node, exp.Boolean):
        return bool(node.this)
    if isinstance(node, exp.Null):
        raise UnsupportedQuery("comparing with NULL is not supported (it is never true in SQL)")
    if isinstance(node, exp.Cast):
        raise UnsupportedQuery(
            f"casts and typed literals ({_snippet(node)}) are not supported; write a plain value"
        )
    if isinstance(node, exp.Subquery | exp.Query):
        raise UnsupportedQuery(_SUBQUERY)
    raise UnsupportedQuery(f"{_snippet(node)} is not a constant; write a number, a 'string', TRUE or FALSE")


def _number(text: str) -> int | float:
    try:
        value: int | float = int(text) if _is_whole(text.replace("_", "")) else float(text)
    except (ValueError, OverflowError) as exc:
        raise InvalidRequest(f"number {text[:30]} is not valid or out of range") from exc
    if not math.isfinite(value) or abs(value) > _MAX_INT:
        raise InvalidRequest(f"number {text[:30]} is out of range")
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
            raise UnsupportedQuery(f"ORDER BY {_snippet(ordered)} is not supported")
        _only_args(ordered, {"this", "desc", "nulls_first"}, "ORDER BY")
        name = _order_key(_unparen(ordered.this), aggregates, scope)
        if name not in outputs:
            raise UnsupportedQuery(
                f"ORDER BY {name}: not an output column; order by one of {', '.join(outputs)} "
                "(sorting applies to the released rows)"
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
        f"ORDER BY {_snippet(node)}: order by the name or alias of an output column "
        "(positions and expressions are not supported)"
    )


def _limit(select: exp.Select) -> int | None:
    limit = select.args.get("limit")
    if limit is None:
        return None
    if not isinstance(limit, exp.Limit):
        raise UnsupportedQuery(f"{_snippet(limit)} is not supported; use LIMIT n")
    if limit.args.get("limit_options") or limit.args.get("offset"):
        raise UnsupportedQuery("LIMIT takes a number of rows only (no PERCENT, WITH TIES, OFFSET)")
    _only_args(limit, {"expression"}, "LIMIT")
    count = limit.expression
    if not isinstance(count, exp.Literal) or count.is_string or not _is_whole(str(count.this)):
        raise UnsupportedQuery(
            f"LIMIT {_snippet(count)} is not supported; LIMIT takes a non-negative whole number"
        )
    digits = str(count.this).lstrip("0") or "0"
    # Length first: int() refuses strings of more than 4300 digits with a ValueError.
    if len(digits) > len(str(MAX_LIMIT)) or int(digits) > MAX_LIMIT:
        raise InvalidRequest(f"LIMIT takes at most {MAX_LIMIT} rows")
    return int(digits)
