"""calendar.filter: the one piece of SQL in a spec, accepted only as a condition on the
calendar table's own columns, refused at load otherwise, and run as it was checked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import googlesql
import pytest
from click.testing import CliRunner
from conftest import MINI_SPEC, MiniWarehouse
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from backfill_kit.cli.commands import cli
from backfill_kit.demo.load import with_warehouse
from backfill_kit.errors import SpecError
from backfill_kit.spec.calendar_filter import filter_problem
from backfill_kit.spec.load import parse_spec

MINI_FILTER = 'filter: "game_status = 3"'
EXAMPLES = int(os.environ.get("BACKFILL_KIT_EXAMPLES", "150"))  # as tests/test_input_properties.py


def with_filter(text: str, condition: str) -> str:
    assert MINI_FILTER in text
    return text.replace(MINI_FILTER, f"filter: {json.dumps(condition)}")


def validate_mini(spec: Path, *extra: str):
    args = ["validate", "--spec", str(spec), "--start", "2024-01-01", "--end", "2024-01-31", *extra]
    return CliRunner().invoke(cli, args)


def test_a_filter_reading_a_file_is_refused_before_any_query(mini: MiniWarehouse, tmp_path):
    """A filter calling read_csv used to run, and the file's lines came back in the error."""
    secret = tmp_path / "secret.csv"
    secret.write_text("user,password\nroot,hunter2-TOPSECRET\n")
    spec = mini.close()
    spec.write_text(with_filter(spec.read_text(), f"read_csv('{secret}') IS NOT NULL"))
    result = validate_mini(spec)
    assert result.exit_code == 2
    assert "calendar.filter: the function READ_CSV is not allowed" in result.output
    assert "TOPSECRET" not in result.output and "Traceback" not in result.output


REFUSED = {
    "a subquery": ("game_id IN (SELECT game_id FROM raw.boxscore)", "a subquery is not allowed"),
    "a scalar subquery": ("game_status = (SELECT max(game_status) FROM raw.schedule)", "a subquery is not allowed"),
    "a table function": ("EXISTS (SELECT * FROM read_parquet('x.parquet'))", "is not allowed"),
    "an unknown function": ("getenv('HOME') = '/root'", "the function GETENV is not allowed"),
    "a second statement": ("game_status = 3; DROP TABLE raw.schedule", "one condition only"),
    "a comment cutting the query": ("game_status = 3 --", "comments are not allowed"),
    "a block comment": ("game_status = 3 /* x */", "comments are not allowed"),
    "another table's column": ("boxscore.team = 'BOS'", "name the calendar table's columns alone"),
    "not a condition": ("game_status + 1", "is not a condition"),
    "broken SQL": ("game_status = = 3", "not a valid SQL condition"),
    "an unbalanced parenthesis": ("game_status = 3) OR (1 = 1", "not a valid SQL condition"),
    "too long": ("game_status = 3" + " OR game_status = 3" * 200, "longer than 2000 characters"),
    "nested past sqlglot's writer": ("- " * 400 + "game_status = 1", "nested too deeply"),  # a RecursionError
}


@pytest.mark.parametrize("case", REFUSED)
def test_anything_but_a_condition_on_the_calendar_is_refused_at_load(tmp_path, case):
    condition, reason = REFUSED[case]
    path = tmp_path / "mini.yaml"
    with pytest.raises(SpecError) as info:
        parse_spec(with_filter(MINI_SPEC, condition), path)
    (problem,) = info.value.problems
    assert (problem.field, problem.line) == ("calendar.filter", MINI_SPEC.splitlines().index(f"  {MINI_FILTER}") + 1)
    assert reason in problem.message


def test_a_bad_filter_is_reported_with_the_other_problems(tmp_path):
    text = with_filter(MINI_SPEC, "getenv('HOME') = '/root'").replace("stale_after_hours: 6", "stale_after_hours: -1")
    with pytest.raises(SpecError) as info:
        parse_spec(text, tmp_path / "mini.yaml")
    assert {p.field for p in info.value.problems} == {"run_history.stale_after_hours", "calendar.filter"}


ACCEPTED = [
    "game_status = 3",
    "game_status <> 2 AND game_id IS NOT NULL",
    "game_status IN (2, 3) OR NOT (game_id LIKE '001%')",
    "game_status BETWEEN 2 AND 3",
    "substr(game_id, 1, 3) IN ('002', '004', '005')",  # the example spec's
    "lower(trim(game_id)) LIKE 'x%' AND length(game_id) > 3",
    "coalesce(game_status, 0) * 2 - 1 > abs(-3)",
    "CAST(game_status AS INT) = 3 AND game_date >= DATE '2024-01-01'",
    "EXTRACT(month FROM game_date) <> 2",
]


@pytest.mark.parametrize("condition", ACCEPTED)
@pytest.mark.parametrize("dialect", ["duckdb", "bigquery"])
def test_conditions_on_the_calendar_columns_are_accepted(condition, dialect):
    assert filter_problem(condition, dialect) is None


def test_the_query_runs_the_filter_as_checked(mini: MiniWarehouse):
    mini.games(date(2024, 1, 10), 2).games(date(2024, 1, 11), 1, status=1).games(date(2024, 1, 12), 1, status=2)
    spec = mini.close()
    spec.write_text(with_filter(spec.read_text(), "game_status != 1 AND game_status IN (2, 3)"))
    result = validate_mini(spec, "--format", "json")
    data = json.loads(result.output)
    assert data["expected_dates"] == 2  # the 11th's only game is not counted
    (calendar_sql,) = [q["sql"] for q in data["queries"] if q["purpose"] == "calendar"]
    assert "(game_status <> 1 AND game_status IN (2, 3))" in calendar_sql  # sqlglot's text, not the spec's


def test_a_filter_the_warehouse_refuses_is_named_with_its_file_and_text(mini: MiniWarehouse):
    """A well-formed filter can still fail as a query (a text compared with a number): the
    message names the spec, the field and the filter, the likeliest culprit."""
    mini.games(date(2024, 1, 10))
    spec = mini.close()
    spec.write_text(with_filter(spec.read_text(), "game_status = 'final'"))
    result = validate_mini(spec)
    assert result.exit_code == 2
    assert f"{spec}: calendar.filter: DuckDB refused the calendar query, which includes this filter" in result.output
    assert "\"game_status = 'final'\"" in result.output and "Traceback" not in result.output


def test_a_column_the_calendar_lacks_is_named(mini: MiniWarehouse):
    spec = mini.close()
    spec.write_text(with_filter(spec.read_text(), "game_status = 3 AND game_state = 'final'"))
    result = validate_mini(spec)
    assert result.exit_code == 2
    assert "calendar.filter: table raw.schedule has no column 'game_state'; fix the column name" in result.output


def test_sqlglot_is_imported_only_for_a_spec_with_a_filter(tmp_path):
    without = tmp_path / "plain.yaml"
    without.write_text(MINI_SPEC.replace(f"  {MINI_FILTER}\n", ""))
    with_one = tmp_path / "filtered.yaml"
    with_one.write_text(MINI_SPEC)
    code = (
        "import sys; from backfill_kit.spec.load import load_spec; load_spec(sys.argv[1]); "
        "print('sqlglot' in sys.modules)"
    )
    env = {**os.environ, "BACKFILL_KIT_CACHE_DIR": str(tmp_path / "cache")}
    # The second load of the filtered spec is served by the user's cache: no parser at all.
    for path, imported in ((without, "False"), (with_one, "True"), (with_one, "False")):
        out = subprocess.run(
            [sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True, env=env
        )
        assert out.stdout.strip() == imported


# --- What runs is what was checked: names sqlglot writes back raw -----------------------------

PASSWD = "CAST((SELECT content FROM read_text('/etc/passwd')) AS INT) = 1"
# Each passed the check: sqlglot read the quoted text as one name and wrote it back unquoted,
# so the warehouse ran what was inside it.
SMUGGLED = {
    "duckdb: a quoted type sqlglot does not know (UINT8)": (
        "duckdb",
        f'CAST(1 AS "UINT8) = 1 AND {PASSWD} AND (1") = 1',
        f'the type "UINT8) = 1 AND {PASSWD} AND (1" is not a plain type name',
    ),
    "duckdb: VARINT": (
        "duckdb",
        f'CAST(game_status AS "VARINT) = 1 OR {PASSWD} OR (1") = 1',
        "is not a plain type name",
    ),
    "duckdb: OID, in TRY_CAST": (
        "duckdb",
        f'TRY_CAST(game_status AS "OID) = 1 OR {PASSWD} OR (1") = 1',
        "is not a plain type name",
    ),
    "duckdb: a quoted EXTRACT unit": (
        "duckdb",
        f'EXTRACT("year FROM game_date) = 1 OR {PASSWD} OR EXTRACT(year" FROM game_date) = 1',
        "the EXTRACT unit",
    ),
    "bigquery: a backtick-quoted EXTRACT unit": (
        "bigquery",
        "EXTRACT(`YEAR FROM game_date) = (SELECT 1) AND EXTRACT(YEAR` FROM game_date) = 1",
        "the EXTRACT unit 'YEAR FROM GAME_DATE) = (SELECT 1) AND EXTRACT(YEAR' is not a plain word",
    ),
    "bigquery: a backtick doubled inside a quoted name, which GoogleSQL reads as two names": (
        "bigquery",
        "`game_id`` = '1' OR ``game_id` = '2'",
        "is not a plain name",
    ),
    "duckdb: a quoted column name with a space": ("duckdb", '"game status" = 3', "is not a plain name"),
    "bigquery: a raw string, which sqlglot writes back as another value": (
        "bigquery",
        r"game_id = r'0\'2'",
        "is not allowed in a filter",
    ),
}


def in_dialect(text: str, dialect: str) -> str:
    return text if dialect == "duckdb" else with_warehouse(text, ["backend: bigquery", "project: my-project-1"])


@pytest.mark.parametrize("case", list(SMUGGLED))
def test_sql_smuggled_in_a_quoted_name_is_refused_at_load(tmp_path, case):
    dialect, condition, reason = SMUGGLED[case]
    with pytest.raises(SpecError) as info:
        parse_spec(in_dialect(with_filter(MINI_SPEC, condition), dialect), tmp_path / "mini.yaml")
    (problem,) = info.value.problems
    assert (problem.field, problem.line) == ("calendar.filter", MINI_SPEC.splitlines().index(f"  {MINI_FILTER}") + 1)
    assert reason in problem.message


def test_validate_no_longer_reads_etc_passwd(mini: MiniWarehouse):
    """The issue's exploit: it passed the load check, DuckDB ran the subquery, and validate
    printed /etc/passwd's first line in its error."""
    mini.games(date(2024, 1, 10))
    spec = mini.close()
    spec.write_text(with_filter(spec.read_text(), f'CAST(1 AS "UINT8) = 1 AND {PASSWD} AND (1") = 1'))
    result = validate_mini(spec)
    assert result.exit_code == 2
    assert "calendar.filter: the type" in result.output and "is not a plain type name" in result.output
    assert "root:" not in result.output and "Traceback" not in result.output


NORMALISED = {  # sqlglot writes these in its own spelling, which reads back the same
    ("duckdb", "EXTRACT(dow FROM game_date) = 1"): "EXTRACT(DAYOFWEEK FROM game_date) = 1",
    ("duckdb", 'CAST(game_status AS "int") = 3'): "CAST(game_status AS INT) = 3",
    ("duckdb", "CAST(game_status AS UINT8) = 3"): "CAST(game_status AS UINT8) = 3",  # a type sqlglot does not know
    ("bigquery", "CAST(game_status AS INT) = 3"): "CAST(game_status AS INT64) = 3",
    ("bigquery", "EXTRACT(`week` FROM game_date) = 1"): "EXTRACT(WEEK FROM game_date) = 1",
    ("bigquery", r"game_id = 'a\\b\'c'"): r"game_id = 'a\\b\'c'",
}


@pytest.mark.parametrize(("dialect", "condition"), list(NORMALISED))
def test_a_filter_sqlglot_respells_is_accepted_as_it_will_run(dialect, condition):
    from backfill_kit.spec.calendar_filter import filter_sql

    assert filter_problem(condition, dialect) is None
    assert filter_sql(condition, dialect) == NORMALISED[dialect, condition]


# --- Whatever is accepted, the warehouse's own parser reads as a condition on columns ---------

FUNCTIONS = {"abs", "coalesce", "length", "lower", "substr", "substring", "trim", "upper", "date_part"}  # EXTRACT


def duckdb_reads(sql: str) -> tuple[list[str], set[str]]:
    """What DuckDB's own parser makes of the WHERE clause `sql` (json_serialize_sql parses
    without running): the kinds of node that are not a plain condition, and the columns;
    nothing for SQL it cannot parse."""
    import duckdb

    with duckdb.connect() as con:
        parsed = json.loads(con.execute("SELECT json_serialize_sql(?)", [f"SELECT 1 FROM t WHERE {sql}"]).fetchone()[0])
    odd: list[str] = []
    columns: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item)
            return
        if not isinstance(node, dict):
            return
        kind = node.get("class")
        if kind == "COLUMN_REF":
            names = node["column_names"]
            columns.add(".".join(names).lower())
        elif kind == "FUNCTION":
            name = node["function_name"].lower()
            if node.get("schema") or node.get("catalog") or not (name in FUNCTIONS or not name.isidentifier()):
                odd.append(f"function {name}")
        elif kind is not None and kind not in {
            "CONJUNCTION",
            "COMPARISON",
            "OPERATOR",
            "CONSTANT",
            "CAST",
            "BETWEEN",
            "TYPE",
        }:
            odd.append(kind)
        for value in node.values():
            walk(value)

    if not parsed["error"]:  # DuckDB refuses it: nothing runs, and validate names the filter
        walk(parsed["statements"][0]["node"]["where_clause"])
    return odd, columns


GOOGLESQL_NODES = {
    "ASTAndExpr", "ASTOrExpr", "ASTBinaryExpression", "ASTUnaryExpression", "ASTBetweenExpression",
    "ASTInExpression", "ASTInList", "ASTLocation", "ASTIntLiteral", "ASTFloatLiteral", "ASTStringLiteral",
    "ASTStringLiteralComponent", "ASTBooleanLiteral", "ASTNullLiteral", "ASTDateOrTimeLiteral",
    "ASTPathExpression", "ASTCastExpression", "ASTFunctionCall", "ASTExtractExpression", "ASTLikeExpression",
}  # fmt: skip


def googlesql_reads(sql: str) -> tuple[list[str], set[str]]:
    """The same, by GoogleSQL's own parser (ZetaSQL, as tests/googlesql.py runs it)."""
    from zetasql.api import Parser
    from zetasql.core.exceptions import ZetaSQLError
    from zetasql.types import LanguageOptions
    from zetasql.types.proto_model import ASTNode

    try:
        statement = Parser(LanguageOptions.maximum_features()).parse_statement(f"SELECT 1 FROM t WHERE {sql}")
    except ZetaSQLError:  # BigQuery refuses it: nothing runs, and validate names the filter
        return [], set()
    odd: list[str] = []
    columns: set[str] = set()

    def names(path: ASTNode) -> str:
        return ".".join(n.id_string for n in path.names).lower()

    def walk(node: ASTNode) -> None:
        kind = type(node).__name__
        if kind not in GOOGLESQL_NODES:
            odd.append(kind)
            return
        if kind == "ASTPathExpression":
            columns.add(names(node))
            return
        children = {
            "ASTFunctionCall": ["arguments"],
            "ASTCastExpression": ["expr"],
            "ASTExtractExpression": ["rhs_expr"],
        }.get(kind, [k for k, v in vars(node).items() if isinstance(v, ASTNode | list)])
        if kind == "ASTFunctionCall" and names(node.function) not in FUNCTIONS:
            odd.append(f"function {names(node.function)}")
        for key in children:
            value = getattr(node, key)
            for child in value if isinstance(value, list) else [value]:
                if isinstance(child, ASTNode):
                    walk(child)

    walk(statement.query.query_expr.where_clause.expression)
    return odd, columns


def quoted(text: str, quote: str, escaped: bool) -> str:
    return quote + (text.replace(quote, quote * 2) if escaped else text) + quote


PIECES = ["a", "Z", "_", "0", " ", "(", ")", "'", '"', "`", "\\", ";", "-", "=", ",", ".", "%", "\n",
          "SELECT 1", " FROM ", "read_text('/etc/passwd')", " AND ", " OR ", "--", "/*", "*/", "year"]  # fmt: skip
odd_text = st.lists(st.sampled_from(PIECES), max_size=8).map("".join)


@st.composite
def filters(draw: st.DrawFn, dialect: str) -> str:
    """Conditions on the calendar's columns, with odd quoted names, types, units and literals."""
    quote = '"' if dialect == "duckdb" else "`"
    plain = st.sampled_from(["game_id", "game_status", "game_date", "Game_Status"])
    odd_quoted = st.builds(quoted, odd_text, st.just(quote), st.booleans())
    name = st.one_of(plain, plain.map(lambda n: quote + n + quote), odd_quoted)
    kind = st.one_of(
        st.sampled_from(["INT", "INT64", "VARCHAR", "STRING", "DATE", "UINT8", "OID", "VARINT"]), odd_quoted
    )
    unit = st.one_of(st.sampled_from(["YEAR", "month", "dow", "WEEK", "ISOWEEK"]), odd_quoted)
    string = st.builds(quoted, odd_text, st.sampled_from(["'", '"']), st.booleans())
    literal = st.one_of(
        st.sampled_from(["3", "1.5", "-2", "1e3", "NULL", "TRUE"]),
        string,
        string.map("r".__add__),
        string.map("E".__add__),
    )
    atoms = [
        st.builds("{} = {}".format, name, literal),
        st.builds("CAST({} AS {}) = {}".format, name, kind, literal),
        st.builds("TRY_CAST({} AS {}) <> {}".format, name, kind, literal),
        st.builds("EXTRACT({} FROM {}) = {}".format, unit, name, literal),
        st.builds("{} IN ({}, {})".format, name, literal, literal),
        st.builds("lower({}) LIKE {}".format, name, literal),
        st.builds("{} IS NOT NULL".format, name),
    ]
    parts = draw(st.lists(st.one_of(atoms), min_size=1, max_size=3))
    text = draw(st.sampled_from([" AND ", " OR "])).join(parts)
    return text + draw(st.one_of(st.just(""), odd_text))  # now and then, a tail of odd pieces


def accepted_as_checked(text: str, dialect: str, reads) -> None:
    from backfill_kit.spec.calendar_filter import filter_columns, filter_sql

    if filter_problem(text, dialect) is not None:  # never an exception: a reason, or accepted
        return
    odd, columns = reads(filter_sql(text, dialect))
    assert odd == [], (text, filter_sql(text, dialect))
    assert columns <= {c.lower() for c in filter_columns(text, dialect)}, (text, filter_sql(text, dialect))


@settings(deadline=None, database=None, max_examples=EXAMPLES, suppress_health_check=[HealthCheck.too_slow])
@given(text=filters("duckdb"))
@example(text=SMUGGLED["duckdb: a quoted type sqlglot does not know (UINT8)"][1])
@example(text=SMUGGLED["duckdb: a quoted EXTRACT unit"][1])
def test_what_duckdb_runs_of_any_accepted_filter_is_a_condition_on_columns(text: str):
    accepted_as_checked(text, "duckdb", duckdb_reads)


@pytest.fixture(scope="module")
def googlesql_parser(tmp_path_factory: pytest.TempPathFactory) -> None:
    pytest.importorskip("zetasql", reason="GoogleSQL's parser is the `zetasql` package, in the `test` extra")
    googlesql.start_analyzer(googlesql.code_cache() or tmp_path_factory.mktemp("googlesql"))


@pytest.mark.slow
@settings(
    deadline=None,
    database=None,
    max_examples=EXAMPLES,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(text=filters("bigquery"))
@example(text=SMUGGLED["bigquery: a backtick-quoted EXTRACT unit"][1])
@example(text=SMUGGLED["bigquery: a backtick doubled inside a quoted name, which GoogleSQL reads as two names"][1])
def test_what_bigquery_runs_of_any_accepted_filter_is_a_condition_on_columns(googlesql_parser: None, text: str):
    accepted_as_checked(text, "bigquery", googlesql_reads)
