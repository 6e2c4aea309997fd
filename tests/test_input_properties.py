"""Property: whatever a hostile or careless user does to the example spec or to a plan file
(keys deleted, renamed, retyped, values out of range, YAML aliases, bad encodings, cut files),
every command ends within 2 s in a result or in one message with exit 2: no traceback, no hang.

Volume runs in-process on the loaders; a sample goes through the real command line.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import plan_documents
import pytest
import yaml
from click.testing import CliRunner
from conftest import MiniWarehouse
from deadline import ends_in_time
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backfill_kit.cli.commands import cli
from backfill_kit.demo import example_spec_text
from backfill_kit.errors import InputError, SpecError
from backfill_kit.plan import load_plan
from backfill_kit.running.journal import last_run_outcome, read_journal
from backfill_kit.spec.load import load_spec
from backfill_kit.spec.model import PipelineSpec

EXAMPLE_TEXT = example_spec_text()
EXAMPLE = yaml.safe_load(EXAMPLE_TEXT)
FAST = settings(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
# Mutated files per kind that the loaders meet: 150 in a test run, enough for every kind of
# edit to come up many times; BACKFILL_KIT_EXAMPLES=2000 searches deeper.
EXAMPLES = int(os.environ.get("BACKFILL_KIT_EXAMPLES", "150"))


# --- mutations -----------------------------------------------------------------------------

ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.integers(min_value=-5, max_value=5), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
    st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31)),
    st.sampled_from(
        [
            "2021-02-30",
            "9999-12-31",
            "0001-01-01",
            "game_date\n",
            "",
            "a.b.c",
            "{start}",
            "x" * 300,
            "read_csv('/etc/passwd') IS NOT NULL",
            "1; DROP TABLE t",
            -1,
            0,
            10**6,
        ]
    ),
)


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every place in a parsed document: mapping keys and list positions, depth first."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        yield (*prefix, key)
        yield from paths(value, (*prefix, key))


def parent_of(doc: Any, path: tuple[Any, ...]) -> Any:
    for key in path[:-1]:
        doc = doc[key]
    return doc


@st.composite
def mutated_document(draw: st.DrawFn, base: Any) -> Any:
    """`base` with 1 to 3 keys deleted, renamed or given another value."""
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        places = list(paths(doc))
        if not places:
            break
        path = draw(st.sampled_from(places))
        parent, key = parent_of(doc, path), path[-1]
        how = draw(st.sampled_from(["delete", "rename", "retype"]))
        if how == "delete":
            del parent[key]
        elif how == "rename" and isinstance(parent, dict):
            new_key = draw(st.sampled_from([f"{key}s", str(key)[:-1], str(key).upper(), f"{key} ", "<<"]))
            parent[new_key] = parent.pop(key)
        else:
            parent[key] = draw(ODD_VALUES)
    return doc


def bomb(levels: int) -> str:
    rows = ["x0: &a0 [x, x, x, x, x, x, x, x, x]"]
    rows += [f"x{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(rows) + "\n"


TEXT_EDITS: dict[str, Callable[[str, int, int], str]] = {
    "alias bomb": lambda text, n, _: text + bomb(2 + n % 8),
    "self alias": lambda text, n, _: text.replace("calendar:", "calendar: &self\n  loop: *self\ncalendar_:", 1),
    "undefined alias": lambda text, n, _: text.replace("max_workers: 4", "max_workers: *nowhere", 1),
    "alias to a list": lambda text, n, _: text.replace("phases:", "phases: &p", 1) + "name_again: *p\n",
    "duplicate a line": lambda text, n, _: _lines_edit(text, n, lambda lines, i: lines.insert(i, lines[i])),
    "delete a line": lambda text, n, _: _lines_edit(text, n, lambda lines, i: lines.pop(i)),
    "cut the file": lambda text, n, _: text[: n % (len(text) + 1)],
    "tab indent": lambda text, n, _: text.replace("  ", "\t", 1 + n % 5),
    "deep nesting": lambda text, n, _: text + "deep: " + "[" * (40 + n % 1200) + "]" * (40 + n % 1200) + "\n",
}


def _lines_edit(text: str, n: int, edit: Callable[[list[str], int], Any]) -> str:
    lines = text.splitlines()
    if lines:
        edit(lines, n % len(lines))
    return "\n".join(lines) + "\n"


BYTE_EDITS: dict[str, Callable[[str, int, bytes], bytes]] = {
    "utf-8": lambda text, n, junk: text.encode(),
    "utf-16": lambda text, n, junk: text.encode("utf-16"),
    "latin-1 with accents": lambda text, n, junk: text.replace("nba_props", "nbä_pröps").encode(
        "latin-1", errors="replace"
    ),
    "bytes inserted": lambda text, n, junk: (raw := text.encode())[: (at := n % (len(raw) + 1))] + junk + raw[at:],
    "bom": lambda text, n, junk: b"\xef\xbb\xbf" + text.encode(),
}


@st.composite
def mutated_spec(draw: st.DrawFn) -> bytes:
    """The example spec, as a user might break it: through its structure and/or its bytes."""
    if draw(st.booleans()):
        text = yaml.safe_dump(draw(mutated_document(EXAMPLE)), sort_keys=False, allow_unicode=True)
    else:
        text = EXAMPLE_TEXT
    n = draw(st.integers(0, 10**6))
    for edit in draw(st.lists(st.sampled_from(sorted(TEXT_EDITS)), max_size=2)):
        text = TEXT_EDITS[edit](text, n, 0)
    junk = draw(st.binary(min_size=1, max_size=4))
    return BYTE_EDITS[draw(st.sampled_from(sorted(BYTE_EDITS)))](text, n, junk)


# A richer plan than the sample's: two stages, a dependency, totals and a blocked date.
STEP = {
    **plan_documents.STEP,
    "id": "t:2024-01-02..2024-01-03",
    "table": "t",
    "env": {"A": "1"},
    "timeout_seconds": 60.0,
    "retries": 2,
    "estimated_seconds": 12.5,
}
NEXT_STEP = {
    **STEP,
    "id": "u:2024-01-02",
    "table": "u",
    "phase": "next",
    "end": "2024-01-02",
    "dates": ["2024-01-02"],
    "after": [STEP["id"]],
}
PLAN = {
    **plan_documents.PLAN,
    "options": {"statuses": ["failed"], "cascade": "none"},
    "totals": {"stages": 2, "steps": 2, "dates": 3, "blocked": 1, "estimated_seconds": 25.0},
    "stages": [
        {"index": 1, "phase": "raw", "mode": "parallel", "workers": 2, "steps": [STEP]},
        {"index": 2, "phase": "next", "mode": "sequential", "workers": 1, "steps": [NEXT_STEP]},
    ],
    "blocked": [{"table": "u", "date": "2024-01-03", "reason": "upstream t is failed"}],
}
JOURNAL_LINE = '{"event": "run_started", "at": "2024-02-01T00:00:00+00:00", "plan": "plan.json"}\n'


# Values JSON text can hold that no Python value written by json.dumps gives: nesting past
# what the parser recurses into, numbers past a float or past the digits Python converts, and
# the NaN and Infinity that json.loads takes although JSON has none.
RAW_JSON = ["[" * 5000 + "]" * 5000, '{"a":' * 60 + "1" + "}" * 60, "NaN", "-Infinity", "1e999", "9" * 5000, "1e-999"]
RAW = "\u0000raw"


@st.composite
def with_raw_json(draw: st.DrawFn, doc: Any) -> str:
    """`doc` as JSON text, one of its values (maybe) replaced by raw JSON from RAW_JSON."""
    doc = copy.deepcopy(doc)
    places = list(paths(doc))
    if places and draw(st.booleans()):
        path = draw(st.sampled_from(places))
        parent_of(doc, path)[path[-1]] = RAW
        return json.dumps(doc, default=str).replace(json.dumps(RAW), draw(st.sampled_from(RAW_JSON)), 1)
    return json.dumps(doc, allow_nan=True, default=str)


@st.composite
def mutated_plan(draw: st.DrawFn) -> bytes:
    doc = draw(mutated_document(PLAN)) if draw(st.booleans()) else PLAN
    text = draw(with_raw_json(doc))
    wrap = draw(st.sampled_from(["none", "list", "journal", "cut", "spec"]))
    n = draw(st.integers(0, 10**6))
    text = {
        "none": text,
        "list": f"[{text}]",
        "journal": JOURNAL_LINE * (1 + n % 3),
        "cut": text[: n % (len(text) + 1)],
        "spec": EXAMPLE_TEXT,
    }[wrap]
    junk = draw(st.binary(min_size=1, max_size=4))
    return BYTE_EDITS[draw(st.sampled_from(sorted(BYTE_EDITS)))](text, n, junk)


# A journal as the runner writes it: a run over two steps, one retried; each line one event.
JOURNAL = [
    {"event": "run_started", "time": "2024-02-01T00:00:00", "plan": "plan.json", "plan_sha": "0" * 16, "steps": 2},
    {"event": "stage_started", "time": "2024-02-01T00:00:01", "stage": 1, "phase": "raw", "mode": "parallel"},
    {
        "event": "step_started",
        "time": "2024-02-01T00:00:02",
        "step": "boxscore:a",
        "table": "boxscore",
        "attempt": 1,
        "dates": 2,
    },
    {
        "event": "step_finished",
        "time": "2024-02-01T00:00:02",
        "step": "boxscore:a",
        "table": "boxscore",
        "outcome": "retrying",
        "seconds": 1.5,
        "exit_code": 75,
    },
    {
        "event": "step_started",
        "time": "2024-02-01T00:00:02",
        "step": "boxscore:a",
        "table": "boxscore",
        "attempt": 2,
        "dates": 2,
    },
    {
        "event": "step_finished",
        "time": "2024-02-01T00:00:02",
        "step": "boxscore:a",
        "table": "boxscore",
        "outcome": "succeeded",
        "seconds": 12.0,
        "exit_code": 0,
    },
    {
        "event": "run_finished",
        "time": "2024-02-01T00:00:20",
        "outcome": "completed",
        "warnings": ["a warning"],
        "blocked": {},
    },
]


@st.composite
def mutated_journal(draw: st.DrawFn) -> bytes:
    """The journal with one line's event mutated (keys, values, raw JSON), lines dropped or
    repeated, or the file cut short (a crash in mid-write)."""
    events = copy.deepcopy(JOURNAL)
    lines = [json.dumps(e) for e in events]
    at = draw(st.integers(0, len(lines) - 1))
    lines[at] = draw(with_raw_json(draw(mutated_document(events[at])) if draw(st.booleans()) else events[at]))
    edit = draw(st.sampled_from(["none", "drop", "repeat", "cut"]))
    if edit == "drop":
        lines.pop(draw(st.integers(0, len(lines) - 1)))
    elif edit == "repeat":
        lines.insert(at, lines[at])
    text = "".join(line + "\n" for line in lines)
    if edit == "cut":
        text = text[: draw(st.integers(0, len(text)))]
    junk = draw(st.binary(min_size=1, max_size=4))
    return BYTE_EDITS[draw(st.sampled_from(sorted(BYTE_EDITS)))](text, draw(st.integers(0, 10**6)), junk)


# --- the properties ------------------------------------------------------------------------


def test_the_mutations_start_from_files_that_load(tmp_path):
    path = tmp_path / "nba_props.yaml"
    path.write_text(EXAMPLE_TEXT)
    assert isinstance(load_spec(path), PipelineSpec)
    path.write_text(yaml.safe_dump(EXAMPLE, sort_keys=False))  # what structural mutations start from
    assert isinstance(load_spec(path), PipelineSpec)
    path.write_text(json.dumps(PLAN))
    assert len(load_plan(path).steps) == 2


# What is mutated, how it is loaded, its one refusal, and what commands then ask of it.
LOADERS: dict[str, tuple[str, Any, Callable[[Path], Any], type[Exception], Callable[[Any], Any]]] = {
    "spec": (
        "nba_props.yaml",
        mutated_spec(),
        load_spec,
        SpecError,
        lambda spec: [spec.job_of(t) for t in spec.tables],
    ),
    "plan": ("plan.json", mutated_plan(), load_plan, InputError, lambda plan: json.dumps(plan.to_dict()) + plan.text()),
    "journal": (
        "plan.journal.jsonl",
        mutated_journal(),
        read_journal,
        InputError,
        lambda state: (state.done, last_run_outcome(state)),
    ),
}


@pytest.mark.parametrize("kind", LOADERS)
@settings(FAST, max_examples=EXAMPLES)
@given(data=st.data())
def test_a_mutated_file_loads_or_is_refused_in_one_message(tmp_path_factory, kind, data):
    name, mutated, load, refusal, use = LOADERS[kind]
    path = tmp_path_factory.mktemp(kind) / name
    path.write_bytes(data.draw(mutated, label="content"))
    with ends_in_time():
        try:
            use(load(path))
        except refusal as exc:
            assert str(path) in str(exc)  # the message names the file


@pytest.fixture(scope="module")
def empty_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real DuckDB file without the spec's tables: every command gets as far as the warehouse."""
    folder = tmp_path_factory.mktemp("warehouse")
    duckdb.connect(str(folder / "nba_props.duckdb")).close()
    return folder


COMMANDS = {
    "validate": ["validate", "--start", "2021-10-19", "--end", "2021-11-30"],
    "plan": ["plan", "--start", "2021-10-19", "--end", "2021-11-30"],
    "preflight": ["preflight", "--quick", "--start", "2021-10-19", "--end", "2021-11-30"],
    "monitor": ["monitor", "--once"],
}


def assert_one_result_or_one_message(result: Any) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    assert result.exit_code in (0, 1, 2), result.output
    if result.exit_code == 2:
        assert result.output.startswith("error: ") or "Error: " in result.output, result.output


@settings(FAST, max_examples=25)
@given(content=mutated_spec(), command=st.sampled_from(sorted(COMMANDS)))
def test_the_command_line_on_a_mutated_spec(empty_warehouse, content, command):
    spec = empty_warehouse / "nba_props.yaml"
    spec.write_bytes(content)
    with ends_in_time():
        result = CliRunner().invoke(cli, [*COMMANDS[command], "--spec", str(spec)])
    assert_one_result_or_one_message(result)


@settings(FAST, max_examples=25)
@given(content=mutated_plan())
def test_the_command_line_on_a_mutated_plan(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("plan") / "plan.json"
    path.write_bytes(content)
    with ends_in_time():
        result = CliRunner().invoke(cli, ["run", "--plan", str(path), "--dry-run"])
    assert_one_result_or_one_message(result)


@pytest.fixture(scope="module")
def mini_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The mini pipeline with its warehouse: commands get as far as the journals beside its spec."""
    mini = MiniWarehouse(tmp_path_factory.mktemp("mini"))
    mini.games(date(2024, 1, 10), 1).rows("raw.boxscore", date(2024, 1, 10), 2).close()
    (mini.dir / "runs").mkdir()
    return mini.spec_path


@settings(FAST, max_examples=25)
@given(content=mutated_journal(), command=st.sampled_from(["plan", "monitor"]))
def test_the_command_line_on_a_mutated_journal(mini_pipeline, content, command):
    """`plan` reads the journals beside the spec for its estimates, `monitor` follows them."""
    (mini_pipeline.parent / "runs" / "plan.journal.jsonl").write_bytes(content)
    args = [command, "--spec", str(mini_pipeline), "--start", "2024-01-10", "--end", "2024-01-10"]
    with ends_in_time():
        result = CliRunner().invoke(cli, args)
    assert_one_result_or_one_message(result)


@settings(FAST, max_examples=EXAMPLES)
@given(content=mutated_journal())
def test_the_execution_report_of_a_mutated_journal_renders_or_is_refused(tmp_path_factory, content):
    """The report reads each event's times, numbers and texts as the journal's check let them
    through: a time that is not ISO 8601 or seconds given as text crashed its sections."""
    from backfill_kit import reports

    path = tmp_path_factory.mktemp("journal") / "plan.journal.jsonl"
    path.write_bytes(content)
    with ends_in_time(5.0):
        try:
            log = reports.execution(path)
        except InputError as exc:
            assert str(path) in str(exc)
            return
        assert log.headline()._repr_mimebundle_()
        assert all(section().data for section in (log.steps, log.warnings, log.logs))
        assert log.timeline().to_html()
