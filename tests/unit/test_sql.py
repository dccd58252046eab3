"""DP SQL compiles to the same QuerySpec as the structured API, and refuses the rest clearly."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.adapters.sql import MAX_SQL_CHARS, compile_sql
from gateway.domain.errors import InvalidRequest, UnsupportedQuery
from gateway.domain.query import Aggregate, Filter, QuerySpec
from gateway.services.specs import spec_from_json

# --- supported forms: SQL == the structured spec --------------------------------------------

EQUIVALENT: list[tuple[str, dict[str, Any]]] = [
    (
        "SELECT COUNT(*) FROM flights",
        {"dataset": "flights", "select": [{"agg": "count"}]},
    ),
    (
        "SELECT origin, COUNT(*) AS n, AVG(dep_delay) FROM flights "
        "WHERE month BETWEEN 6 AND 8 GROUP BY origin",
        {
            "dataset": "flights",
            "select": [{"agg": "count", "alias": "n"}, {"agg": "mean", "column": "dep_delay"}],
            "where": [{"column": "month", "op": "between", "value": [6, 8]}],
            "group_by": ["origin"],
        },
    ),
    (
        "SELECT COUNT(air_time), SUM(distance), AVG(arr_delay) FROM flights",
        {
            "dataset": "flights",
            "select": [
                {"agg": "count", "column": "air_time"},
                {"agg": "sum", "column": "distance"},
                {"agg": "mean", "column": "arr_delay"},
            ],
        },
    ),
    (
        "SELECT MEDIAN(air_time), QUANTILE(air_time, 0.9), QUANTILE_CONT(dep_delay, 0.1), "
        "PERCENTILE_CONT(0.25) WITHIN GROUP (ORDER BY arr_delay), "
        "PERCENTILE_DISC(0.75) WITHIN GROUP (ORDER BY distance) FROM flights",
        {
            "dataset": "flights",
            "select": [
                {"agg": "quantile", "column": "air_time", "q": 0.5},
                {"agg": "quantile", "column": "air_time", "q": 0.9},
                {"agg": "quantile", "column": "dep_delay", "q": 0.1},
                {"agg": "quantile", "column": "arr_delay", "q": 0.25},
                {"agg": "quantile", "column": "distance", "q": 0.75},
            ],
        },
    ),
    (
        "SELECT COUNT(*) FROM flights WHERE origin = 'JFK' AND carrier != 'UA' "
        "AND carrier <> 'AA' AND month < 7 AND month <= 6 AND dep_delay > -10.5 "
        "AND air_time >= 30 AND origin IN ('EWR', 'LGA')",
        {
            "dataset": "flights",
            "select": [{"agg": "count"}],
            "where": [
                {"column": "origin", "op": "=", "value": "JFK"},
                {"column": "carrier", "op": "!=", "value": "UA"},
                {"column": "carrier", "op": "!=", "value": "AA"},
                {"column": "month", "op": "<", "value": 7},
                {"column": "month", "op": "<=", "value": 6},
                {"column": "dep_delay", "op": ">", "value": -10.5},
                {"column": "air_time", "op": ">=", "value": 30},
                {"column": "origin", "op": "in", "value": ["EWR", "LGA"]},
            ],
        },
    ),
    (  # constant on the left: the comparison is turned around
        "SELECT COUNT(*) FROM flights WHERE 5 < month AND -3 >= dep_delay",
        {
            "dataset": "flights",
            "select": [{"agg": "count"}],
            "where": [
                {"column": "month", "op": ">", "value": 5},
                {"column": "dep_delay", "op": "<=", "value": -3},
            ],
        },
    ),
    (
        "SELECT origin, month, COUNT(*) AS n FROM flights GROUP BY origin, month "
        "ORDER BY n DESC, month LIMIT 5",
        {
            "dataset": "flights",
            "select": [{"agg": "count", "alias": "n"}],
            "group_by": ["origin", "month"],
            "order_by": [{"column": "n", "desc": True}, {"column": "month"}],
            "limit": 5,
        },
    ),
    (  # ORDER BY an aggregate written out again: it names that output column
        "SELECT carrier, AVG(dep_delay) FROM flights GROUP BY carrier ORDER BY AVG(dep_delay) ASC",
        {
            "dataset": "flights",
            "select": [{"agg": "mean", "column": "dep_delay"}],
            "group_by": ["carrier"],
            "order_by": [{"column": "mean_dep_delay"}],
        },
    ),
    (  # names keep their case, quoted or not: exam's standLRT is spelled as in its policy
        'SELECT schgend, AVG("standLRT") AS mean_lrt, MEDIAN(normexam) FROM "exam" '
        "WHERE standLRT >= -1 AND vr IN ('top 25%', 'mid 50%') GROUP BY \"schgend\"",
        {
            "dataset": "exam",
            "select": [
                {"agg": "mean", "column": "standLRT", "alias": "mean_lrt"},
                {"agg": "quantile", "column": "normexam", "q": 0.5},
            ],
            "where": [
                {"column": "standLRT", "op": ">=", "value": -1},
                {"column": "vr", "op": "in", "value": ["top 25%", "mid 50%"]},
            ],
            "group_by": ["schgend"],
        },
    ),
    (  # a dataset alias and qualified columns; parentheses around AND
        "SELECT e.school, COUNT(*) FROM exam AS e "
        "WHERE (e.normexam > 0.5 AND (exam.gender = 'F')) GROUP BY e.school",
        {
            "dataset": "exam",
            "select": [{"agg": "count"}],
            "where": [
                {"column": "normexam", "op": ">", "value": 0.5},
                {"column": "gender", "op": "=", "value": "F"},
            ],
            "group_by": ["school"],
        },
    ),
    (  # a GROUP BY column not in SELECT still comes out as a group key
        "SELECT SUM(amount) FROM credit WHERE records = 'no' AND debt = 0 GROUP BY job",
        {
            "dataset": "credit",
            "select": [{"agg": "sum", "column": "amount"}],
            "where": [
                {"column": "records", "op": "=", "value": "no"},
                {"column": "debt", "op": "=", "value": 0},
            ],
            "group_by": ["job"],
        },
    ),
    (  # comments are ignored; a trailing semicolon is fine; FROM-first is duckdb sugar
        "-- delays by airport\nFROM flights SELECT /* all */ COUNT(*) WHERE month = 1;",
        {
            "dataset": "flights",
            "select": [{"agg": "count"}],
            "where": [{"column": "month", "op": "=", "value": 1}],
        },
    ),
    (
        "select count(*) as n from flights where carrier = 'it''s' and month in (1) limit 0",
        {
            "dataset": "flights",
            "select": [{"agg": "count", "alias": "n"}],
            "where": [
                {"column": "carrier", "op": "=", "value": "it's"},
                {"column": "month", "op": "in", "value": [1]},
            ],
            "limit": 0,
        },
    ),
]


@pytest.mark.parametrize(("sql", "structured"), EQUIVALENT, ids=[s for s, _ in EQUIVALENT])
def test_sql_compiles_to_the_structured_spec(sql: str, structured: dict[str, Any]) -> None:
    spec = compile_sql(sql)
    expected = spec_from_json(structured)
    assert spec.canonical() == expected.canonical()
    assert spec.output_columns == expected.output_columns
    assert spec.to_json() == expected.to_json()
    assert spec == expected


def test_output_columns_are_group_keys_then_aggregates() -> None:
    spec = compile_sql(
        "SELECT COUNT(*) AS n, origin, AVG(dep_delay), MEDIAN(air_time) FROM flights GROUP BY origin"
    )
    assert spec.output_columns == ["origin", "n", "mean_dep_delay", "quantile_air_time_0.5"]


def test_literal_types() -> None:
    spec = compile_sql(
        "SELECT COUNT(*) FROM t WHERE a = -2 AND b = 2.5 AND c = -0.25 AND d = 'x y' "
        "AND e = TRUE AND f = false AND g = 1e3 AND h IN (1, -1.5, 'z', TRUE)"
    )
    values = {f.column: f.value for f in spec.where}
    assert values == {
        "a": -2,
        "b": 2.5,
        "c": -0.25,
        "d": "x y",
        "e": True,
        "f": False,
        "g": 1000.0,
        "h": (1, -1.5, "z", True),
    }
    assert type(values["a"]) is int and type(values["e"]) is bool


def test_names_are_kept_exactly_as_written() -> None:
    spec = compile_sql("SELECT schgend, AVG(standLRT) FROM exam GROUP BY schgend")
    assert spec.select == (Aggregate("mean", "standLRT"),)  # not standlrt: as in the policy
    assert compile_sql('SELECT AVG("standLRT") FROM exam') == QuerySpec(
        dataset="exam", select=(Aggregate("mean", "standLRT"),)
    )


def test_comments_cannot_smuggle_a_statement() -> None:
    for sql in (
        "SELECT COUNT(*) FROM flights -- ; DROP TABLE flights",
        "SELECT COUNT(*) /* ; DROP TABLE flights; */ FROM flights",
    ):
        spec = compile_sql(sql)
        assert spec == QuerySpec(dataset="flights", select=(Aggregate("count"),))
    with pytest.raises(UnsupportedQuery, match=r"2 statements \(SELECT; DROP\)"):
        compile_sql("SELECT COUNT(*) FROM flights /* x */; DROP TABLE flights")
    with pytest.raises(UnsupportedQuery, match="2 statements"):
        compile_sql("SELECT COUNT(*) FROM flights --\n; DELETE FROM flights")


def test_where_is_a_conjunction_of_filters() -> None:
    spec = compile_sql("SELECT COUNT(*) FROM t WHERE a = 1 AND (b = 2 AND (c = 3 AND d = 4))")
    assert spec.where == tuple(Filter(c, "=", v) for c, v in zip("abcd", range(1, 5), strict=True))


# --- refused: each with its own message -------------------------------------------------------

REFUSED: list[tuple[str, type[InvalidRequest], tuple[str, ...]]] = [
    # statements
    ("DROP TABLE flights", UnsupportedQuery, ("only SELECT", "DROP")),
    ("INSERT INTO flights VALUES (1)", UnsupportedQuery, ("only SELECT", "INSERT")),
    ("UPDATE flights SET month = 1", UnsupportedQuery, ("only SELECT", "UPDATE")),
    ("DELETE FROM flights", UnsupportedQuery, ("only SELECT", "DELETE")),
    ("ATTACH 'other.db'", UnsupportedQuery, ("only SELECT", "ATTACH")),
    ("PRAGMA table_info(flights)", UnsupportedQuery, ("only SELECT", "PRAGMA")),
    ("CREATE TABLE x (a INT)", UnsupportedQuery, ("only SELECT", "CREATE")),
    ("EXPLAIN SELECT COUNT(*) FROM flights", UnsupportedQuery, ("only SELECT", "EXPLAIN")),
    (
        "SELECT COUNT(*) FROM flights; DROP TABLE flights",
        UnsupportedQuery,
        ("2 statements", "SELECT; DROP", "exactly one SELECT"),
    ),
    ("SELECT COUNT(*) FROM a; SELECT COUNT(*) FROM b", UnsupportedQuery, ("2 statements",)),
    (
        "SELECT COUNT(*) FROM a UNION SELECT COUNT(*) FROM b",
        UnsupportedQuery,
        ("UNION", "its own query"),
    ),
    ("(SELECT COUNT(*) FROM flights)", UnsupportedQuery, ("subqueries", "parentheses")),
    # FROM
    (
        "SELECT COUNT(*) FROM flights JOIN planes ON flights.tailnum = planes.tailnum",
        UnsupportedQuery,
        ("JOIN", "exactly one dataset"),
    ),
    ("SELECT COUNT(*) FROM flights, planes", UnsupportedQuery, ("JOIN", "one dataset")),
    ("SELECT COUNT(*) FROM (SELECT * FROM flights)", UnsupportedQuery, ("subqueries", "WHERE")),
    (
        "WITH f AS (SELECT * FROM flights) SELECT COUNT(*) FROM f",
        UnsupportedQuery,
        ("WITH", "inner query"),
    ),
    ("SELECT COUNT(*) FROM main.flights", UnsupportedQuery, ("bare dataset name", "schema")),
    (
        "SELECT COUNT(*) FROM read_parquet('/etc/passwd')",
        UnsupportedQuery,
        ("one dataset name", "READ_PARQUET"),
    ),
    ("SELECT COUNT(*)", UnsupportedQuery, ("FROM <dataset>",)),
    ("SELECT COUNT(*) FROM 'flights.csv'", UnsupportedQuery, ("not a dataset name", "files")),
    ('SELECT COUNT(*) FROM "../flights"', UnsupportedQuery, ("not a dataset name",)),
    ("SELECT COUNT(*) FROM Flights", UnsupportedQuery, ("lowercase", "use flights")),
    ("SELECT COUNT(*) FROM flights USING SAMPLE 10%", UnsupportedQuery, ("SAMPLE",)),
    # SELECT list
    ("SELECT * FROM flights", UnsupportedQuery, ("SELECT *", "COUNT(*)")),
    (
        "SELECT origin, COUNT(*) FROM flights",
        UnsupportedQuery,
        ("origin", "not grouped", "GROUP BY origin"),
    ),
    ("SELECT origin FROM flights GROUP BY origin", UnsupportedQuery, ("at least one aggregate",)),
    (
        "SELECT origin AS o, COUNT(*) FROM flights GROUP BY origin",
        UnsupportedQuery,
        ("renaming a group key", "select it as origin"),
    ),
    ("SELECT DISTINCT origin FROM flights", UnsupportedQuery, ("DISTINCT", "GROUP BY")),
    (
        "SELECT COUNT(DISTINCT carrier) FROM flights",
        UnsupportedQuery,
        ("COUNT(DISTINCT", "GROUP BY col with COUNT(*)"),
    ),
    ("SELECT AVG(DISTINCT dep_delay) FROM flights", UnsupportedQuery, ("AVG(DISTINCT",)),
    ("SELECT COUNT(*) OVER () FROM flights", UnsupportedQuery, ("window functions", "GROUP BY")),
    (
        "SELECT AVG(dep_delay) OVER (PARTITION BY origin) FROM flights",
        UnsupportedQuery,
        ("window functions",),
    ),
    (
        "SELECT my_udf(dep_delay) FROM flights",
        UnsupportedQuery,
        ("unknown function MY_UDF", "supported aggregates"),
    ),
    ("SELECT MAX(dep_delay) FROM flights", UnsupportedQuery, ("MAX", "QUANTILE(col, 0.99)")),
    (
        "SELECT STDDEV(dep_delay) FROM flights",
        UnsupportedQuery,
        ("STDDEV is not a supported aggregate", "AVG(col)"),
    ),
    ("SELECT COUNT(*) + 1 FROM flights", UnsupportedQuery, ("arithmetic in SELECT", "pandas")),
    ("SELECT SUM(distance) / COUNT(*) FROM flights", UnsupportedQuery, ("arithmetic",)),
    (
        "SELECT AVG(dep_delay * 60) FROM flights",
        UnsupportedQuery,
        ("plain column, not an expression",),
    ),
    ("SELECT COUNT(*), 1 FROM flights", UnsupportedQuery, ("constant 1",)),
    ("SELECT SUM(*) FROM flights", UnsupportedQuery, ("SUM(*)", "name a column")),
    ("SELECT COUNT() FROM flights", UnsupportedQuery, ("COUNT(*) or COUNT(col)",)),
    (
        "SELECT COUNT(*) FILTER (WHERE month = 1) FROM flights",
        UnsupportedQuery,
        ("FILTER", "WHERE"),
    ),
    (
        "SELECT QUANTILE(air_time, [0.1, 0.9]) FROM flights",
        UnsupportedQuery,
        ("one quantile per aggregate",),
    ),
    ("SELECT QUANTILE(air_time, 1.5) FROM flights", InvalidRequest, ("between 0 and 1",)),
    ("SELECT QUANTILE(air_time, TRUE) FROM flights", UnsupportedQuery, ("number q",)),
    (
        "SELECT PERCENTILE_CONT(0.5) WITHIN GROUP (ORDER BY air_time DESC) FROM flights",
        UnsupportedQuery,
        ("DESC", "1 - q"),
    ),
    ("SELECT PERCENTILE_CONT(0.5) FROM flights", UnsupportedQuery, ("WITHIN GROUP",)),
    ("SELECT COUNT(*), COUNT(*) FROM flights", InvalidRequest, ("named twice: count",)),
    ('SELECT COUNT(*) AS "my n" FROM flights', InvalidRequest, ("alias 'my n'",)),
    (
        "SELECT COUNT(*) FROM flights WHERE other.month = 1",
        UnsupportedQuery,
        ("refers to other", "not the dataset in FROM"),
    ),
    # WHERE
    (
        "SELECT COUNT(*) FROM flights WHERE month = 1 OR month = 2",
        UnsupportedQuery,
        ("OR is not supported", "separate queries", "IN (...)"),
    ),
    (
        "SELECT COUNT(*) FROM flights WHERE NOT month = 1",
        UnsupportedQuery,
        ("NOT is not supported", "!="),
    ),
    (
        "SELECT COUNT(*) FROM flights WHERE month NOT IN (1, 2)",
        UnsupportedQuery,
        ("NOT IN", "IN (...)"),
    ),
    (
        "SELECT COUNT(*) FROM flights WHERE month NOT BETWEEN 1 AND 2",
        UnsupportedQuery,
        ("NOT BETWEEN", "separate queries"),
    ),
    (
        "SELECT COUNT(*) FROM flights WHERE dep_delay IS NULL",
        UnsupportedQuery,
        ("IS is not supported", "policy"),
    ),
    (
        "SELECT COUNT(*) FROM flights WHERE carrier LIKE 'U%'",
        UnsupportedQuery,
        ("pattern matching", "IN (...)"),
    ),
    (
        "SELECT COUNT(*) FROM flights WHERE dep_delay > arr_delay",
        UnsupportedQuery,
        ("compares two columns", "constant"),
    ),
    ("SELECT COUNT(*) FROM flights WHERE month = 1 + 1", UnsupportedQuery, ("not a constant",)),
    ("SELECT COUNT(*) FROM flights WHERE month = NULL", UnsupportedQuery, ("NULL",)),
    (
        "SELECT COUNT(*) FROM flights WHERE month = CAST('1' AS INT)",
        UnsupportedQuery,
        ("casts", "plain value"),
    ),
    (
        "SELECT COUNT(*) FROM flights WHERE month IN (SELECT 1)",
        UnsupportedQuery,
        ("subqueries", "literal values"),
    ),
    ("SELECT COUNT(*) FROM flights WHERE EXISTS (SELECT 1)", UnsupportedQuery, ("subqueries",)),
    (
        "SELECT COUNT(*) FROM flights WHERE month",
        UnsupportedQuery,
        ("not a supported filter", "BETWEEN"),
    ),
    ("SELECT COUNT(*) FROM flights WHERE month = 1e999", InvalidRequest, ("out of range",)),
    ("SELECT COUNT(*) FROM flights WHERE month = " + "9" * 5000, InvalidRequest, ("out of range",)),
    (
        "SELECT COUNT(*) FROM flights WHERE month BETWEEN SYMMETRIC 1 AND 3",
        UnsupportedQuery,
        ("SYMMETRIC",),
    ),
    ("SELECT COUNT(*) FROM flights WHERE month = - -1", UnsupportedQuery, ("negated",)),
    (
        "SELECT COUNT(*) FROM t WHERE " + " AND ".join(f"c{i} = 1" for i in range(33)),
        InvalidRequest,
        ("at most 32 conditions",),
    ),
    # GROUP BY, HAVING, ORDER BY, LIMIT
    (
        "SELECT origin, COUNT(*) FROM flights GROUP BY origin HAVING COUNT(*) > 100",
        UnsupportedQuery,
        ("HAVING filters on released values", "pandas"),
    ),
    ("SELECT COUNT(*) FROM flights GROUP BY 1", UnsupportedQuery, ("not positions",)),
    ("SELECT COUNT(*) FROM flights GROUP BY month + 1", UnsupportedQuery, ("expressions",)),
    ("SELECT COUNT(*) FROM flights GROUP BY ROLLUP (origin)", UnsupportedQuery, ("ROLLUP",)),
    ("SELECT COUNT(*) FROM flights GROUP BY ALL", UnsupportedQuery, ("GROUP BY ALL",)),
    ("SELECT COUNT(*) FROM t GROUP BY a, b, c, d", UnsupportedQuery, ("at most 3",)),
    (
        "SELECT COUNT(*) FROM flights ORDER BY dep_delay",
        UnsupportedQuery,
        ("ORDER BY dep_delay", "not an output column", "count"),
    ),
    ("SELECT COUNT(*) FROM flights ORDER BY 1", UnsupportedQuery, ("name or alias",)),
    (
        "SELECT COUNT(*) FROM flights ORDER BY SUM(distance)",
        UnsupportedQuery,
        ("name or alias of an output column",),
    ),
    ("SELECT COUNT(*) FROM flights LIMIT 5 OFFSET 10", UnsupportedQuery, ("OFFSET", "pandas")),
    ("SELECT COUNT(*) FROM flights LIMIT month", UnsupportedQuery, ("non-negative whole",)),
    ("SELECT COUNT(*) FROM flights LIMIT -1", UnsupportedQuery, ("non-negative whole",)),
    ("SELECT COUNT(*) FROM flights LIMIT 1 + 1", UnsupportedQuery, ("non-negative whole",)),
    ("SELECT COUNT(*) FROM flights LIMIT 10%", UnsupportedQuery, ("PERCENT",)),
    ("SELECT COUNT(*) FROM flights LIMIT 2000000", InvalidRequest, ("at most 1000000",)),
    ("SELECT COUNT(*) FROM flights QUALIFY COUNT(*) > 1", UnsupportedQuery, ("QUALIFY",)),
    # text
    ("", InvalidRequest, ("empty",)),
    ("   \n\t ", InvalidRequest, ("empty",)),
    ("-- nothing but a comment", InvalidRequest, ("no statement",)),
    ("SELECT COUNT(* FROM flights", InvalidRequest, ("syntax error at line 1, column 19",)),
    ("SELECT\n  origin,\n  COUNT(*\nFROM flights", InvalidRequest, ("line 4",)),
    ("SELECT COUNT(*) FROM flights WHERE origin = 'JFK", InvalidRequest, ("could not be read",)),
    ("SELECT COUNT(*) FROM flights /* never closed", InvalidRequest, ("could not be read",)),
    ("SELECT " + "(" * 400 + "1" + ")" * 400 + " FROM t", UnsupportedQuery, ("nested too deeply",)),
    (
        "SELECT COUNT(*) FROM t WHERE " + "(" * 200 + "a = 1" + ")" * 200,
        UnsupportedQuery,
        ("nested too deeply",),
    ),
]


@pytest.mark.parametrize(("sql", "error", "fragments"), REFUSED, ids=[s[:70] for s, _, _ in REFUSED])
def test_refused_with_a_clear_message(
    sql: str, error: type[InvalidRequest], fragments: tuple[str, ...]
) -> None:
    with pytest.raises(error) as caught:
        compile_sql(sql)
    message = caught.value.message
    for fragment in fragments:
        assert fragment in message, message
    assert "\x1b" not in message and "Traceback" not in message


def test_over_long_sql_is_refused_before_parsing() -> None:
    sql = "SELECT COUNT(*) FROM flights WHERE month = 1" + " " * MAX_SQL_CHARS
    with pytest.raises(InvalidRequest, match=f"at most {MAX_SQL_CHARS}"):
        compile_sql(sql)


def test_non_string_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="string"):
        compile_sql(b"SELECT COUNT(*) FROM flights")  # type: ignore[arg-type]


def test_refusal_messages_are_distinct() -> None:
    messages = []
    for sql, _error, _fragments in REFUSED:
        with pytest.raises(InvalidRequest) as caught:
            compile_sql(sql)
        messages.append(caught.value.message)
    # Only inputs refused for the same reason share a message.
    assert len(set(messages)) >= len(messages) - 12


# --- fuzzing: only a QuerySpec or InvalidRequest (or its subclass), ever ----------------------


def _outcome(sql: str) -> QuerySpec | InvalidRequest:
    try:
        return compile_sql(sql)
    except InvalidRequest as exc:  # UnsupportedQuery included
        assert exc.message and "\x1b" not in exc.message
        return exc


FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_VOCABULARY = [
    "SELECT",
    "FROM",
    "WHERE",
    "GROUP",
    "BY",
    "ORDER",
    "LIMIT",
    "OFFSET",
    "AND",
    "OR",
    "NOT",
    "IN",
    "BETWEEN",
    "AS",
    "DESC",
    "ASC",
    "HAVING",
    "JOIN",
    "ON",
    "UNION",
    "WITH",
    "DISTINCT",
    "COUNT(*)",
    "COUNT",
    "SUM",
    "AVG",
    "MEDIAN",
    "QUANTILE",
    "PERCENTILE_CONT",
    "WITHIN",
    "OVER",
    "CASE",
    "WHEN",
    "THEN",
    "END",
    "NULL",
    "TRUE",
    "FALSE",
    "IS",
    "LIKE",
    "*",
    "(",
    ")",
    ",",
    ";",
    ".",
    "=",
    "!=",
    "<>",
    "<",
    "<=",
    ">",
    ">=",
    "+",
    "-",
    "/",
    "||",
    "::",
    "'",
    '"',
    "`",
    "--",
    "/*",
    "*/",
    "\n",
    "0",
    "-1",
    "0.5",
    "1e999",
    "'x'",
    "flights",
    "origin",
    "month",
    "dep_delay",
    '"Status"',
    "DROP TABLE flights",
    "[1, 2]",
    "{'a': 1}",
    "$1",
    "?",
    ":name",
    "@x",
    "\\",
    "ATTACH",
    "PRAGMA",
    "INSERT",
    "EXPLAIN",
    "COPY",
]
_VALID = [sql for sql, _ in EQUIVALENT]


@st.composite
def _mutated(draw: st.DrawFn) -> str:
    """A valid query with tokens dropped, repeated, swapped or inserted."""
    tokens = re.findall(r"\w+|'[^']*'|\"[^\"]*\"|\S", draw(st.sampled_from(_VALID)))
    for _ in range(draw(st.integers(1, 6))):
        i = draw(st.integers(0, len(tokens)))
        action = draw(st.sampled_from(["drop", "repeat", "swap", "insert", "insert"]))
        if action == "insert" or not tokens:
            tokens.insert(i, draw(st.sampled_from(_VOCABULARY) | st.text(max_size=8)))
        elif action == "drop":
            del tokens[min(i, len(tokens) - 1)]
        elif action == "repeat":
            tokens.insert(i, tokens[min(i, len(tokens) - 1)])
        elif i + 1 < len(tokens):
            tokens[i], tokens[i + 1] = tokens[i + 1], tokens[i]
    return " ".join(tokens)


@FUZZ
@given(st.text(max_size=300))
def test_fuzz_random_text(sql: str) -> None:
    _outcome(sql)


@FUZZ
@given(st.lists(st.sampled_from(_VOCABULARY), max_size=40).map(" ".join))
def test_fuzz_token_soup(sql: str) -> None:
    _outcome(sql)


@FUZZ
@given(_mutated())
def test_fuzz_mutated_valid_queries(sql: str) -> None:
    _outcome(sql)


_AGG_SQL = {
    "count": lambda c, q: f"COUNT({c or '*'})",
    "sum": lambda c, q: f"SUM({c})",
    "mean": lambda c, q: f"AVG({c})",
    "quantile": lambda c, q: f"QUANTILE({c}, {q})",
}
_NAMES = st.sampled_from(["a", "b", "c", "dep_delay", "Status", "x1"])
_VALUES = st.one_of(
    st.integers(-(10**6), 10**6),
    st.floats(-1e6, 1e6, allow_nan=False).map(lambda v: round(v, 3)),
    st.text("abc xyz'", max_size=6),
    st.booleans(),
)


def _sql_value(value: object) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


@st.composite
def _generated(draw: st.DrawFn) -> tuple[str, QuerySpec]:
    """A query drawn from the supported grammar, with the spec it must compile to."""
    aggregates = []
    for i, agg in enumerate(draw(st.lists(st.sampled_from(list(_AGG_SQL)), min_size=1, max_size=4))):
        column = None if agg == "count" and draw(st.booleans()) else draw(_NAMES)
        q = draw(st.sampled_from([0.1, 0.5, 0.95])) if agg == "quantile" else None
        aggregates.append(Aggregate(agg, column, q=q, alias=f"out{i}"))
    group_by = tuple(draw(st.lists(st.sampled_from(["g1", "g2", "g3"]), max_size=3, unique=True)))
    filters = []
    for column in draw(st.lists(_NAMES, max_size=4)):
        op = draw(st.sampled_from(["=", "!=", "<", "<=", ">", ">=", "between", "in"]))
        if op == "between":
            value: Any = (draw(_VALUES), draw(_VALUES))
        elif op == "in":
            value = tuple(draw(st.lists(_VALUES, min_size=1, max_size=3)))
        else:
            value = draw(_VALUES)
        filters.append(Filter(column, op, value))
    spec = QuerySpec("flights", tuple(aggregates), tuple(filters), group_by)
    return _render(spec), spec


def _render(spec: QuerySpec) -> str:
    items = list(spec.group_by) + [f"{_AGG_SQL[a.agg](a.column, a.q)} AS {a.alias}" for a in spec.select]
    conditions = []
    for f in spec.where:
        if f.op == "between":
            conditions.append(f"{f.column} BETWEEN {_sql_value(f.value[0])} AND {_sql_value(f.value[1])}")
        elif f.op == "in":
            conditions.append(f"{f.column} IN ({', '.join(map(_sql_value, f.value))})")
        else:
            conditions.append(f"{f.column} {f.op} {_sql_value(f.value)}")
    sql = f"SELECT {', '.join(items)} FROM {spec.dataset}"
    if conditions:
        sql += " WHERE " + " AND ".join(conditions)
    if spec.group_by:
        sql += " GROUP BY " + ", ".join(spec.group_by)
    return sql


@FUZZ
@given(_generated())
def test_generated_queries_compile_to_their_spec(case: tuple[str, QuerySpec]) -> None:
    sql, expected = case
    spec = compile_sql(sql)
    assert spec.canonical() == expected.canonical()
    assert spec.output_columns == expected.output_columns


def test_an_unknown_column_is_named_first_with_the_closest_public_name() -> None:
    public = {"flights": ["origin", "dest", "dep_delay", "month"]}
    with pytest.raises(InvalidRequest) as typo:
        compile_sql("SELECT origin, COUNT(*) FROM flights GROUP BY orign", columns=public.__getitem__)
    assert typo.value.message.startswith("unknown column orign in GROUP BY")
    assert typo.value.message.endswith("did you mean origin?")
    with pytest.raises(InvalidRequest, match=r"unknown column dep_dely in SELECT.*dep_delay"):
        compile_sql("SELECT AVG(dep_dely) FROM flights", columns=public.__getitem__)
    with pytest.raises(InvalidRequest, match=r"unknown column mnth in WHERE.*month"):
        compile_sql("SELECT COUNT(*) FROM flights WHERE mnth = 3", columns=public.__getitem__)
    with pytest.raises(InvalidRequest) as far:  # nothing close: no suggestion
        compile_sql("SELECT COUNT(*) FROM flights GROUP BY zzz", columns=public.__getitem__)
    assert "did you mean" not in far.value.message
    # an alias in ORDER BY is not a dataset column
    spec = compile_sql("SELECT origin, COUNT(*) AS n FROM flights GROUP BY origin ORDER BY n",
                       columns=public.__getitem__)
    assert spec.order_by == (("n", False),)
