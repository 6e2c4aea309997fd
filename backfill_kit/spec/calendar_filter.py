"""The calendar filter: the one piece of SQL a spec carries, checked before any query runs.

It is parsed with sqlglot in the warehouse's dialect and accepted only as a condition on the
calendar table's own columns: comparisons, IN lists, LIKE, BETWEEN, IS NULL, AND/OR/NOT,
literals, arithmetic and a few scalar functions. Anything else (a subquery, a table function
such as read_csv, an unknown function, a second statement, a comment) is refused at spec load.
The query then uses the SQL sqlglot writes back from the checked tree, so what runs is what
was checked, whatever the warehouse's own parser would have made of the original text.

sqlglot writes some names back as it read them, unquoted: a type it does not know (DuckDB's
UINT8), an EXTRACT unit. A quoted one can carry any text, a subquery included, into the SQL
that runs. So every name must be a plain one (letters, digits, underscores, as the spec's
other column names), and the SQL that will run is parsed again, in the same dialect: it must
give back the very tree that was checked, and pass the same check.

sqlglot is imported only when a spec has a filter that is not in the user's cache: an accepted
filter's SQL and columns are stored there (common/cache.py), keyed by the filter's text, the
dialect, sqlglot's version and this module's own source, so any change to one of them checks
the filter again. A refused filter is never stored: it is refused afresh, with its reason.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from backfill_kit.common.cache import cache_key, installed_file_text, read_entry, sources_key, write_entry
from backfill_kit.spec.model import IDENTIFIER

__all__ = ["MAX_FILTER_CHARS", "filter_columns", "filter_problem", "filter_sql", "sqlglot_version"]

MAX_FILTER_CHARS = 2000
FUNCTIONS = ("abs", "cast", "coalesce", "extract", "length", "lower", "substr", "trim", "upper")


class FilterError(ValueError):
    """Why a filter is refused."""


def filter_problem(text: str, dialect: str) -> str | None:
    """Why `text` is not an acceptable calendar filter in `dialect` (duckdb, bigquery), or None."""
    try:
        _checked(text, dialect)
    except FilterError as exc:
        return str(exc)
    return None


def filter_sql(text: str, dialect: str) -> str:
    """The checked filter as the SQL that runs; raises FilterError if it is not acceptable."""
    return _checked(text, dialect)[0]


def filter_columns(text: str, dialect: str) -> tuple[str, ...]:
    """The columns the filter reads, for the check against the calendar table."""
    return _checked(text, dialect)[1]


@lru_cache(maxsize=16)
def _checked(text: str, dialect: str) -> tuple[str, tuple[str, ...]]:
    slot = "filter-" + cache_key(dialect, text)[:32]
    key = _cache_key(text, dialect)
    if (stored := _stored(read_entry(slot, key))) is not None:
        return stored
    checked = _check(text, dialect)
    write_entry(slot, key, json.dumps({"sql": checked[0], "columns": checked[1]}).encode())
    return checked


def _cache_key(text: str, dialect: str) -> str | None:
    """What the checked SQL is a function of; None (no cache) if sqlglot's version or this
    module's source cannot be read."""
    parser, checker = sqlglot_version(), sources_key([Path(__file__)])
    return None if parser is None or checker is None else cache_key("calendar.filter", text, dialect, parser, checker)


def sqlglot_version() -> str | None:
    """Which sqlglot is installed, without importing it (0.1 s): the text of its generated
    `_version.py`, which holds its version and commit."""
    return installed_file_text("sqlglot", "_version.py")


def _stored(payload: bytes | None) -> tuple[str, tuple[str, ...]] | None:
    """A stored check's SQL and columns, or None for anything but the shape written above."""
    try:
        entry = json.loads(payload) if payload is not None else None
    except (ValueError, RecursionError):  # not JSON; JSON nested past the parser's depth
        return None
    if not isinstance(entry, dict) or not isinstance(sql := entry.get("sql"), str) or not sql:
        return None
    columns = entry.get("columns")
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        return None
    return sql, tuple(columns)


def _check(text: str, dialect: str) -> tuple[str, tuple[str, ...]]:
    if len(text) > MAX_FILTER_CHARS:
        raise FilterError(f"longer than {MAX_FILTER_CHARS} characters; a filter is a short condition")
    try:
        tree = _parse(text, dialect)
        columns = _checked_tree(tree, dialect)
        sql = tree.sql(dialect=dialect)  # what will run
        reads_back = _reads_back(sql, tree, columns, dialect)
    except RecursionError:  # sqlglot's parser stops on its own; its writer and a tree's walk do not
        raise FilterError("nested too deeply") from None
    if not reads_back:
        raise FilterError(
            f"sqlglot would run it as {sql!r}, which does not read back as the condition that was checked; "
            "write it with plain names, types and literals"
        )
    return sql, columns


def _reads_back(sql: str, tree: Any, columns: tuple[str, ...], dialect: str) -> bool:
    """Whether the SQL that will run, parsed again, is the checked tree (up to the names sqlglot
    writes in its own spelling: INT as INT64, dow as DAYOFWEEK), passes the same check, and is
    written back the same: what runs is then what was checked."""
    try:
        again = _parse(sql, dialect)
        return (
            _shape(again, dialect) == _shape(tree, dialect)
            and _checked_tree(again, dialect) == columns
            and again.sql(dialect=dialect) == sql
        )
    except FilterError:
        return False


def _checked_tree(tree: Any, dialect: str) -> tuple[str, ...]:
    """The columns a tree reads, once every node of it passed the allowlist; FilterError otherwise."""
    from sqlglot import exp

    if not isinstance(tree.unnest(), _conditions()):
        raise FilterError(f"{tree.sql(dialect=dialect)!r} is not a condition; write one such as game_status = 3")
    columns: list[str] = []
    for node in tree.walk():
        if node.comments:
            raise FilterError("comments are not allowed in a filter")
        if isinstance(node, exp.Column):
            if node.table:
                raise FilterError(
                    f"{node.sql(dialect=dialect)}: name the calendar table's columns alone, "
                    "without a table or other prefix"
                )
            columns.append(node.name)
        elif not isinstance(node, _allowed()) or (
            isinstance(node, exp.Var) and not isinstance(node.parent, exp.Extract)
        ):
            raise FilterError(_refusal(node, dialect))
        elif reason := _not_plain(node):
            raise FilterError(reason)
    return tuple(dict.fromkeys(columns))


def _not_plain(node: Any) -> str | None:
    """Why a name or a number that sqlglot writes back as it is could carry other SQL, or None."""
    from sqlglot import exp

    if isinstance(node, exp.Identifier) and not IDENTIFIER.fullmatch(node.name):
        return f"the column name {node.name!r} is not a plain name: letters, digits and underscores"
    if isinstance(node, exp.Var) and not IDENTIFIER.fullmatch(node.name):
        return f"the EXTRACT unit {node.name!r} is not a plain word, such as YEAR or MONTH"
    if isinstance(node, exp.DataType) and node.this == exp.DataType.Type.USERDEFINED:
        kind = str(node.args.get("kind") or "")
        if not IDENTIFIER.fullmatch(kind):
            return f"the type {kind!r} is not a plain type name, such as INT or VARCHAR"
    if isinstance(node, exp.Literal) and not node.is_string and not _NUMBER.fullmatch(str(node.this)):
        return f"{node.this!r} is not a plain number"
    if isinstance(node, exp.Is) and not isinstance(node.expression, exp.Null | exp.Boolean):
        return f"{node.sql()!r}: IS takes NULL, TRUE or FALSE"
    return None


_NUMBER = re.compile(r"(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _shape(node: Any, dialect: str) -> Any:
    """A tree as nested tuples of its nodes' types and arguments: two trees compared exactly
    (sqlglot's own == compares their hashes). A type and an EXTRACT unit count as sqlglot
    spells them in the dialect."""
    from sqlglot import exp
    from sqlglot.dialects.dialect import map_date_part

    if isinstance(node, exp.DataType):
        return ("DataType", node.sql(dialect=dialect))
    if isinstance(node, exp.Var):
        return ("Var", map_date_part(node, dialect).name.upper())
    if isinstance(node, exp.Expr):
        args = sorted((k, v) for k, v in node.args.items() if not (v is None or v is False or v == []))
        return (type(node).__name__, tuple((k, _shape(v, dialect)) for k, v in args))
    if isinstance(node, list):
        return tuple(_shape(v, dialect) for v in node)
    return (type(node).__name__, node)


def _parse(text: str, dialect: str) -> Any:
    import sqlglot
    from sqlglot.errors import SqlglotError

    try:
        trees = sqlglot.parse(text, read=dialect)
    except SqlglotError as exc:
        reason = str(exc).split("\n", 1)[0]
        raise FilterError(f"not a valid SQL condition ({reason})") from None
    except RecursionError:
        raise FilterError("nested too deeply") from None
    trees = [t for t in trees if t is not None]
    if len(trees) != 1:
        raise FilterError("one condition only: no ';' and no second statement" if trees else "it is empty")
    return trees[0]


def _refusal(node: Any, dialect: str) -> str:
    from sqlglot import exp

    if isinstance(node, exp.Query | exp.Subquery):
        return "a subquery is not allowed; the filter reads the calendar table's own columns only"
    if isinstance(node, exp.Func):
        name = node.sql_name() if not isinstance(node, exp.Anonymous) else node.name
        return f"the function {name.upper()} is not allowed; allowed: {', '.join(f.upper() for f in FUNCTIONS)}"
    return (
        f"{node.sql(dialect=dialect)!r} ({node.key}) is not allowed in a filter: comparisons, IN, LIKE, BETWEEN, "
        "IS NULL, AND, OR, NOT, literals and a few functions only"
    )


@lru_cache(maxsize=1)
def _conditions() -> tuple[type, ...]:
    from sqlglot import exp

    return (exp.Predicate, exp.Connector, exp.Not, exp.Boolean, exp.Column)


@lru_cache(maxsize=1)
def _allowed() -> tuple[type, ...]:
    from sqlglot import exp

    return (
        exp.And,
        exp.Or,
        exp.Not,
        exp.Paren,
        exp.EQ,
        exp.NEQ,
        exp.GT,
        exp.GTE,
        exp.LT,
        exp.LTE,
        exp.NullSafeEQ,
        exp.NullSafeNEQ,
        exp.Is,
        exp.In,
        exp.Like,
        exp.ILike,
        exp.Between,
        exp.Add,
        exp.Sub,
        exp.Mul,
        exp.Div,
        exp.Mod,
        exp.Neg,
        exp.Identifier,
        exp.Literal,
        exp.Boolean,
        exp.Null,
        exp.DataType,
        exp.Abs,
        exp.Cast,
        exp.TryCast,
        exp.Coalesce,
        exp.Length,
        exp.Lower,
        exp.Substring,
        exp.Trim,
        exp.Upper,
        exp.Extract,
        exp.Var,  # the unit of EXTRACT(YEAR FROM game_date)
    )
