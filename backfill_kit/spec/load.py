"""Loading a spec file: YAML read safely, every field checked (pydantic, against the markers
written beside the fields in spec/model.py), then the checks across fields (spec/checks.py).
Every problem is reported at once, each with the file, line, field path, what is wrong and
what is expected. A spec that passed is kept in the user's cache (common/cache.py).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import fields, is_dataclass
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, ClassVar, get_type_hints

from backfill_kit.common.cache import cache_key, installed_file_text, read_entry, sources_key, write_entry
from backfill_kit.common.file_kinds import kind_of
from backfill_kit.common.plain_data import from_data, to_data
from backfill_kit.common.small_files import NotSmallText, Why, read_small_text
from backfill_kit.errors import Problem, SpecError
from backfill_kit.spec.checks import cross_table_problems, filter_problems, semantic_problems
from backfill_kit.spec.model import WAREHOUSES, FrozenMap, PipelineSpec

if TYPE_CHECKING:
    import yaml
    from pydantic import TypeAdapter

__all__ = ["field_lines", "load_spec", "parse_spec"]

# A spec is a few kilobytes and a few thousand values: these bounds are far above any real
# one, and far below what an alias bomb (a few hundred bytes) expands to.
MAX_SPEC_BYTES = 1 << 20
MAX_SPEC_VALUES = 50_000
MAX_SPEC_DEPTH = 50
_TIMESTAMP = "tag:yaml.org,2002:timestamp"


@lru_cache(maxsize=1)
def _spec_loader() -> Any:
    """The safe loader, leaving dates as text: pydantic then parses them, so that a date such
    as 2021-02-30 is a problem at its field, not a crash inside the YAML library. Built on
    first use: a spec served from the cache needs no YAML."""
    import yaml

    base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: 10x faster

    class SpecLoader(base):  # type: ignore[misc]
        yaml_implicit_resolvers: ClassVar[dict[str, list[tuple[str, re.Pattern[str]]]]] = {
            first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP]
            for first, resolvers in base.yaml_implicit_resolvers.items()
        }

    return SpecLoader


def load_spec(path: str | Path) -> PipelineSpec:
    """Read and validate a spec file; raise `SpecError` listing every problem found. A relative
    path is found by `arguments.find_file`'s rule (the working directory, then the folders above
    it up to the project folder; outside a project, the working directory only)."""
    from backfill_kit.common.arguments import find_file

    path = find_file(path, "the spec")
    text = _read_text(path)
    if kind := _OTHER_KINDS.get(kind_of(text) or ""):
        raise SpecError([Problem(str(path), "", f"not a pipeline spec: this is {kind}", 1)])
    # The spec keeps where it was read from as an absolute path: its relative paths (the DuckDB
    # file, a key file, the jobs' folders) then mean the same after the process changes folder.
    where = path.absolute()
    slot, key = "spec-" + cache_key(str(where))[:32], _spec_key(where, text)
    if (spec := _stored_spec(read_entry(slot, key))) is not None and spec.source == where:
        return spec
    spec = parse_spec(text, path, source=where)
    if (stored := _stored_form(spec)) is not None:
        write_entry(slot, key, stored)
    return spec


# A spec that passed every check is kept in the user's cache (common/cache.py), so that the
# next command on the same file skips YAML, validation and the filter's parser. It is served
# only for the same path and text, checked by the same code: the key holds the source of every
# module a spec's checks can run (the spec layer and those below it, per the import contract)
# and the versions of pydantic and sqlglot. A spec with problems is never stored.
_CHECKING_CODE = (Path(__file__).parent, Path(__file__).parents[1] / "common", Path(__file__).parents[1] / "errors.py")


def _spec_key(path: Path, text: str) -> str | None:
    """None (no cache) when the checking code cannot be read."""
    from backfill_kit.spec.calendar_filter import sqlglot_version

    code = sources_key(p for where in _CHECKING_CODE for p in ([where] if where.is_file() else where.glob("*.py")))
    # pydantic's version from its file, not its import: that costs more than a hit saves.
    checker = installed_file_text("pydantic", "version.py")
    return (
        None
        if code is None or checker is None
        else cache_key("spec", str(path), text, code, checker, str(sqlglot_version()), sys.version)
    )


def _stored_form(spec: PipelineSpec) -> bytes | None:
    """The spec's values as JSON: data that is read back, never code that would run. None
    for a value with no plain form (a spec built around the loader): it is not stored."""
    try:
        return json.dumps(to_data(spec), allow_nan=False, separators=(",", ":")).encode()
    except (TypeError, ValueError):
        return None


def _stored_spec(payload: bytes | None) -> PipelineSpec | None:
    """The spec an entry holds, rebuilt field by field into the spec's own classes (no
    pydantic, no YAML); None when there is none or it is not exactly a spec's shape."""
    if payload is None:
        return None
    try:
        return from_data(PipelineSpec, json.loads(payload, parse_constant=_no_constant), mapping=FrozenMap)
    except (ValueError, RecursionError):  # not JSON, nested past the parser's depth, not a spec
        return None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is no value of a spec")


# What to say when a file of another kind is given as the spec.
_OTHER_KINDS = {
    "html": "an HTML file (a report?); give the spec's YAML file",
    "journal": "a runner journal (JSON lines); give it to backfill-kit report execution --journal",
    "notebook": "a Jupyter notebook; give the spec's YAML file (the notebook takes it as its `spec` parameter)",
    "plan": "a backfill plan (made by backfill-kit plan); run it with backfill-kit run --plan",
    "validation": "JSON output of validate or preflight; give the spec's YAML file",
    "preflight": "JSON output of validate or preflight; give the spec's YAML file",
}


def _read_text(path: Path) -> str:
    """The file's text: a regular file, at most MAX_SPEC_BYTES, in UTF-8."""
    try:
        return read_small_text(path, MAX_SPEC_BYTES)
    except NotSmallText as exc:
        message = {
            Why.NOT_A_FILE: "not a regular file; give the path of the spec's YAML file",
            Why.UNREADABLE: f"cannot read the spec file: {exc.detail}",
            Why.TOO_LARGE: f"the file is larger than {MAX_SPEC_BYTES // 1024} KiB; a spec is a few kilobytes of YAML",
            Why.NOT_UTF8: f"not UTF-8 text ({exc.detail}); save the file as UTF-8",
        }[exc.why]
        raise SpecError([Problem(str(path), "", message, exc.line)]) from exc


@lru_cache(maxsize=1)
def _checker() -> TypeAdapter[PipelineSpec]:
    """pydantic's check of a whole spec, built on first use: a spec served from the cache
    never imports pydantic."""
    from pydantic import TypeAdapter

    return TypeAdapter(PipelineSpec)


def parse_spec(text: str, path: Path, *, source: Path | None = None) -> PipelineSpec:
    """The spec in `text` (read from `path`, named so in its problems), checked; raise `SpecError`
    with every problem. `source` (default `path`) is where the spec's relative paths start."""
    lines, data = _read_yaml(text, str(path))
    if not isinstance(data, dict):
        raise SpecError([Problem(str(path), "", "the spec must be a YAML mapping (key: value)", 1)])
    from pydantic import ValidationError

    # `source` is set here, never by the file: one the file gives is a field it cannot have.
    unknown = {"loc": ("source",), "type": "unexpected_keyword_argument"}
    given = [_problem(str(path), unknown, lines)] if "source" in data else []
    try:
        spec = _checker().validate_python({**data, "source": source or path})
    except ValidationError as exc:
        problems = given + [_problem(str(path), err, lines) for err in exc.errors()]
        # References between tables are checked on the raw file too, so that a misspelt
        # dependency is reported in the same round as a misspelt field.
        seen = {p.field for p in problems}
        problems += [
            Problem(str(path), field, message, _line_of(lines, field))
            for field, message in [*cross_table_problems(_skeleton(data)), *_raw_filter_problems(data)]
            if field not in seen
        ]
        raise SpecError(sorted(problems, key=lambda p: p.line or 0)) from None
    problems = given + [
        Problem(str(path), field, message, _line_of(lines, field)) for field, message in semantic_problems(spec)
    ]
    if problems:
        raise SpecError(problems)
    return spec


def _skeleton(data: dict[str, Any]) -> SimpleNamespace:
    """The phases and tables of a spec that failed validation, as far as they can be read."""
    phases = []
    for phase in _items(data.get("phases")):
        if not isinstance(phase, dict):
            continue
        tables = [
            SimpleNamespace(
                id=t["id"],
                depends_on=tuple(d for d in _items(t.get("depends_on")) if isinstance(d, str)),
                fallback=t.get("fallback") if isinstance(t.get("fallback"), str) else None,
                date_column=t.get("date_column"),
            )
            for t in _items(phase.get("tables"))
            if isinstance(t, dict) and isinstance(t.get("id"), str)
        ]
        mode = phase.get("mode", "parallel")
        phases.append(SimpleNamespace(name=str(phase.get("name")), mode=mode, tables=tables))
    return SimpleNamespace(phases=phases, date_column=data.get("date_column"))


def _raw_filter_problems(data: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """The calendar filter of a spec that failed validation, checked all the same."""
    calendar, warehouse = data.get("calendar"), data.get("warehouse")
    text = calendar.get("filter") if isinstance(calendar, dict) else None
    backend = warehouse.get("backend") if isinstance(warehouse, dict) else None
    if isinstance(text, str) and text:
        yield from filter_problems(text, backend if isinstance(backend, str) and backend in WAREHOUSES else "duckdb")


def _items(value: Any) -> list[Any]:
    """A YAML list as a list; anything else (a typo'd scalar, a mapping) as nothing."""
    return value if isinstance(value, list) else []


def _read_yaml(text: str, file: str) -> tuple[dict[str, int], Any]:
    import yaml

    loader = None
    try:
        loader = _spec_loader()(text)  # the pure-Python reader checks every character here
        node = loader.get_single_node()
        lines = _index_lines(node, file) if node is not None else {}
        return lines, loader.construct_document(node) if node is not None else None
    except yaml.reader.ReaderError as exc:  # a character YAML refuses (NUL, a control character)
        raise SpecError([Problem(file, "", _refused_character(exc), _line_at(text, exc.position))]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        reason = getattr(exc, "problem", None) or str(exc)
        raise SpecError([Problem(file, "", f"not valid YAML: {reason}", line)]) from None
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:  # e.g. !!float abc, a 5000-digit int
        raise SpecError([Problem(file, "", f"not valid YAML: {exc}")]) from None
    finally:
        if loader is not None:
            loader.dispose()


def _refused_character(exc: Any) -> str:
    code = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or "\0")
    return f"not valid YAML: the character U+{code:04X} is not allowed ({exc.reason}); remove it"


def _line_at(text: str, position: Any) -> int | None:
    """The line of a reader error's position: libyaml counts bytes of UTF-8, PyYAML characters."""
    if not isinstance(position, int):
        return None
    import yaml

    in_bytes = issubclass(_spec_loader(), getattr(yaml, "CSafeLoader", ()))
    return (text.encode()[:position].count(b"\n") if in_bytes else text.count("\n", 0, position)) + 1


def _index_lines(root: yaml.Node, file: str) -> dict[str, int]:
    """The line of every field path, e.g. ``phases[1].tables[0].id``. Walks the document as it
    will be built, aliases expanded, so that an alias bomb or a self-referring alias is refused
    before anything is built from it; duplicate keys are refused too (YAML keeps the last)."""
    import yaml

    out: dict[str, int] = {}
    duplicates: list[Problem] = []
    checked: set[int] = set()
    stack: list[tuple[yaml.Node, str, int]] = [(root, "", 0)]
    for _ in range(MAX_SPEC_VALUES + 1):
        if not stack:
            break
        node, path, depth = stack.pop()
        out.setdefault(path, node.start_mark.line + 1)
        if depth > MAX_SPEC_DEPTH:
            raise SpecError(
                [
                    Problem(
                        file,
                        "",
                        f"nested deeper than {MAX_SPEC_DEPTH} levels (an alias that "
                        "refers to itself?); a spec nests a few levels",
                        node.start_mark.line + 1,
                    )
                ]
            )
        if isinstance(node, yaml.MappingNode):
            if id(node) not in checked:
                checked.add(id(node))
                duplicates += _duplicate_keys(node, path, file)
            for key, value in reversed(node.value):
                child = f"{path}.{key.value}" if path else str(key.value)
                out[child] = key.start_mark.line + 1
                stack.append((value, child, depth + 1))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, f"{path}[{i}]", depth + 1) for i, item in reversed(list(enumerate(node.value))))
    if stack:
        raise SpecError(
            [
                Problem(
                    file,
                    "",
                    f"more than {MAX_SPEC_VALUES:,} values once YAML aliases are expanded "
                    "(aliases nested into a huge document); write the values out",
                    1,
                )
            ]
        )
    if duplicates:
        raise SpecError(duplicates)
    return out


def _duplicate_keys(node: yaml.MappingNode, path: str, file: str) -> list[Problem]:
    import yaml

    first_line: dict[tuple[str, Any], int] = {}
    problems = []
    for key, _ in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
            continue
        line = key.start_mark.line + 1
        if (key.tag, key.value) in first_line:
            field = f"{path}.{key.value}" if path else str(key.value)
            problems.append(
                Problem(
                    file,
                    field,
                    f"the key {key.value!r} appears twice (first on line "
                    f"{first_line[key.tag, key.value]}); YAML would silently keep the last: keep one",
                    line,
                )
            )
        first_line.setdefault((key.tag, key.value), line)
    return problems


def field_lines(spec: PipelineSpec) -> Callable[[str], int | None]:
    """The line of a field path in the spec's file (its nearest written parent's, for a field
    the file leaves to a default), for problems found after loading: a table the warehouse
    lacks, say. None for every field when the file cannot be read again."""
    lines: dict[str, int] = {}
    if spec.source is not None:
        with suppress(SpecError):  # unreadable now: the problems go without lines
            lines = _read_yaml(_read_text(spec.source), str(spec.source))[0]
    return lambda field: _line_of(lines, field)


def _line_of(lines: dict[str, int], field: str) -> int | None:
    while field:
        if field in lines:
            return lines[field]
        parent = re.sub(r"(\.[^.\[]*|\[\d+\])$", "", field)
        field = "" if parent == field else parent  # a top-level field has no parent
    return None


def _field_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part not in WAREHOUSES:  # the tagged-union tag is not a field the user wrote
            out += f".{part}" if out else str(part)
    return out


def _problem(file: str, err: Any, lines: dict[str, int]) -> Problem:
    field = _field_path(err["loc"])
    kind = err["type"]
    loc = tuple(err["loc"])
    # A key that is not text (`4: max_workers`, `~: x`, an env's `5: x`): pydantic's location
    # ends with the key, or with the key and '[key]', which would read as a list index.
    key = loc[-1] if kind == "invalid_key" else loc[-2] if len(loc) > 1 and loc[-1] == "[key]" else _NO_KEY
    if key is not _NO_KEY:
        inside = _field_path(loc[: -1 if kind == "invalid_key" else -2])
        null = key is None or (kind == "invalid_key" and key == "None")  # pydantic writes a null key as 'None'
        field = f"{inside}.{'~' if null else key}" if inside else str(key)
        shown = "~ (null)" if null else repr(key)
        message = f"the key {shown} is not text; keys are names: write the field's name, or quote it"
        return Problem(file, field, message, _line_of(lines, field) or _line_of(lines, inside))
    if kind == "unexpected_keyword_argument":
        message = f"unknown field; expected one of: {', '.join(_allowed_fields(err['loc']))}"
    elif kind == "missing":
        message = "required field is missing"
    elif kind in ("union_tag_invalid", "union_tag_not_found"):  # the warehouse's backend
        field += ".backend"
        known = f"expected one of: {', '.join(WAREHOUSES)}"
        tag = err.get("ctx", {}).get("tag")
        message = f"unknown backend {tag!r}; {known}" if tag else f"required field is missing; {known}"
    elif kind in _SHAPES:  # pydantic's words name Python types (tuple, an instance of RunStatuses)
        message = f"should be {_SHAPES[kind]}, not {_what_yaml_gave(err.get('input'))}"
    else:
        message = err["msg"].removeprefix("Value error, ")
        if "input" in err and not isinstance(err["input"], dict | list):
            message += f" (got {err['input']!r})"
    return Problem(file, field, message, _line_of(lines, field))


_NO_KEY = object()
_MAPPING = "a mapping (key: value on each line, or {key: value})"
_LIST = "a list (one '- item' per line, or [a, b])"
_SHAPES = {
    "dataclass_type": _MAPPING,
    "model_attributes_type": _MAPPING,  # the tagged union's, when its input is no mapping
    "dict_type": _MAPPING,
    "tuple_type": _LIST,  # the spec's lists are tuples
}


def _what_yaml_gave(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "empty (null)"
    return f"{value!r}"


def _allowed_fields(loc: tuple[Any, ...]) -> list[str]:
    """The fields the spec class at `loc` (a pydantic error location) accepts."""
    cls: Any = PipelineSpec
    for part in loc[:-1]:
        if isinstance(part, int) or cls is None:
            continue
        if part in WAREHOUSES:  # the tag of the warehouse union names the class
            cls = WAREHOUSES[part]
            continue
        cls = _class_in(get_type_hints(cls).get(part))
    if cls is None:
        return []
    return [f.name for f in fields(cls) if f.name != "source"]


def _class_in(annotation: Any) -> type | None:
    """The spec class a field holds, e.g. TableSpec in `tuple[TableSpec, ...]`, or None."""
    if is_dataclass(annotation) and isinstance(annotation, type):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        if (found := _class_in(arg)) is not None:
            return found
    return None
