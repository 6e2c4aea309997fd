"""The user's cache of checked specs and calendar filters: a second command on the same file
skips YAML, validation and the filter's parser; anything changed, corrupt or writable by
others is checked in full, as if there were no cache."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from conftest import MINI_SPEC, MiniWarehouse
from other_users import another_user, shared_folder, uid_without_passwd_entry

from backfill_kit.demo import example_spec_text
from backfill_kit.errors import SpecError
from backfill_kit.spec import calendar_filter, load
from backfill_kit.spec.load import load_spec

KIT = str(Path(sys.executable).parent / "backfill-kit")
MINI_FILTER = 'filter: "game_status = 3"'


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("BACKFILL_KIT_CACHE_DIR", str(folder))
    return folder


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "spec" / "pipeline.yaml"
    path.parent.mkdir()
    path.write_text(MINI_SPEC)
    return path


def entries(cache: Path, kind: str) -> list[Path]:
    return sorted(cache.glob(f"{kind}-*"))


def test_a_second_load_reads_neither_yaml_nor_pydantic_nor_the_filter_parser(cache: Path, spec_file: Path):
    code = (
        "import sys; from backfill_kit.spec.load import load_spec; spec = load_spec(sys.argv[1]); "
        "print(spec.name, spec.calendar.filter, *(m in sys.modules for m in ('yaml', 'pydantic', 'sqlglot')))"
    )
    runs = [
        subprocess.run([sys.executable, "-c", code, str(spec_file)], capture_output=True, text=True, check=True)
        for _ in range(2)
    ]
    assert [r.stdout.split() for r in runs] == [
        ["mini", "game_status", "=", "3", "True", "True", "True"],
        ["mini", "game_status", "=", "3", "False", "False", "False"],
    ]
    assert len(entries(cache, "spec")) == 1
    assert len(entries(cache, "filter")) == 1


def test_an_edited_spec_is_checked_in_full(cache: Path, spec_file: Path):
    assert load_spec(spec_file).name == "mini"
    spec_file.write_text(MINI_SPEC.replace("name: mini", "name: mini\nnmae: typo"))
    with pytest.raises(SpecError, match="nmae: unknown field"):
        load_spec(spec_file)
    spec_file.write_text(MINI_SPEC.replace("name: mini", "name: renamed"))
    assert load_spec(spec_file).name == "renamed"
    spec_file.write_text(MINI_SPEC)
    assert load_spec(spec_file).name == "mini"


def test_an_edited_filter_is_checked_again(cache: Path, spec_file: Path):
    assert load_spec(spec_file).calendar.filter == "game_status = 3"
    spec_file.write_text(MINI_SPEC.replace(MINI_FILTER, 'filter: "game_status IN (SELECT 3)"'))
    with pytest.raises(SpecError, match=r"calendar\.filter: a subquery is not allowed"):
        load_spec(spec_file)
    assert entries(cache, "spec") and all(b"SELECT 3" not in p.read_bytes() for p in cache.iterdir())


def test_the_same_text_at_another_path_is_its_own_entry(cache: Path, spec_file: Path, tmp_path: Path):
    other = tmp_path / "other.yaml"
    other.write_text(MINI_SPEC)
    assert load_spec(spec_file).source == spec_file
    assert load_spec(other).source == other  # resolve_path counts from the spec's own folder
    assert load_spec(spec_file).source == spec_file


def tampered(entry: Path, name: str) -> None:
    """Keep the entry's key, put a spec of another name behind it with its own checksum: what
    someone who can write the entry can do on purpose."""
    header, _, payload = entry.read_bytes().partition(b"\n")
    payload = json.dumps({**json.loads(payload), "name": name}).encode()
    entry.write_bytes(header.split(b" ")[0] + b" " + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)


def test_an_entry_others_can_write_is_never_served(cache: Path, spec_file: Path):
    load_spec(spec_file)
    (entry,) = entries(cache, "spec")
    tampered(entry, "from-the-cache")
    entry.chmod(0o600)
    assert load_spec(spec_file).name == "from-the-cache"  # an entry is served unchecked: hence the rule
    tampered(entry, "from-the-cache")
    entry.chmod(0o622)
    assert load_spec(spec_file).name == "mini"


def test_a_garbled_entry_that_still_reads_is_checked_in_full(cache: Path, spec_file: Path):
    """A byte changed inside a stored text (a disk, an editor) leaves a valid entry of a spec
    the loader would refuse: the payload's checksum keeps it from being served as checked."""
    load_spec(spec_file)
    (entry,) = entries(cache, "spec")
    data = entry.read_bytes()
    assert b"raw.boxscore" in data
    entry.write_bytes(data.replace(b"raw.boxscore", b"raw.boxscor;"))
    assert json.loads(entry.read_bytes().partition(b"\n")[2])["phases"][0]["tables"][0]["table"] == "raw.boxscor;"
    assert load_spec(spec_file).phases[0].tables[0].table == "raw.boxscore"


def test_an_entry_that_is_not_a_regular_file_is_a_miss_not_a_hang(cache: Path, spec_file: Path):
    load_spec(spec_file)
    (entry,) = entries(cache, "spec")
    entry.unlink()
    os.mkfifo(entry, 0o600)  # opening a FIFO to read waits for a writer
    code = "import sys; from backfill_kit.spec.load import load_spec; print(load_spec(sys.argv[1]).name)"
    run = subprocess.run([sys.executable, "-c", code, str(spec_file)], capture_output=True, text=True, timeout=60)
    assert (run.returncode, run.stdout) == (0, "mini\n"), run.stderr


def run_validate(spec: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    argv = [KIT, "validate", "--spec", str(spec), "--start", "2024-01-01", "--end", "2024-01-31", "--format", "csv"]
    return subprocess.run([*argv, "--now", "2024-04-10T12:00:00"], capture_output=True, text=True, env=env)


CORRUPTIONS = {
    "garbage": lambda data: b"\x80\x04 not a cache entry",
    "empty": lambda data: b"",
    "truncated": lambda data: data[: len(data) // 2],
    "right key, garbage after it": lambda data: data.partition(b"\n")[0] + b"\n{not json",
    "right key, nothing after it": lambda data: data.partition(b"\n")[0] + b"\n",
    "right key, nested past any parser": lambda data: data.partition(b"\n")[0] + b"\n" + b"[" * 100_000,
}


def one_game(mini: MiniWarehouse) -> Path:
    """The mini spec, over a warehouse with one scheduled game: gaps, hence exit 1."""
    return mini.games(date(2024, 1, 10), 2).rows("raw.boxscore", date(2024, 1, 10), 4).close()


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_a_corrupt_cache_is_checked_in_full(mini: MiniWarehouse, tmp_path: Path, corruption: str):
    spec = one_game(mini)
    env = {**os.environ, "BACKFILL_KIT_CACHE_DIR": str(tmp_path / "cache")}
    first = run_validate(spec, env)
    assert first.returncode == 1, first.stderr
    written = sorted((tmp_path / "cache").iterdir())
    assert [p.name.split("-")[0] for p in written] == ["filter", "spec"]
    good = {entry: entry.read_bytes() for entry in written}
    for entry in written:
        entry.write_bytes(CORRUPTIONS[corruption](good[entry]))
    again = run_validate(spec, env)
    assert (again.returncode, again.stdout, again.stderr) == (first.returncode, first.stdout, "")
    assert {entry: stored(entry.read_bytes()) for entry in written} == {e: stored(b) for e, b in good.items()}


def stored(entry: bytes) -> tuple[bytes, object]:
    """An entry's key, and what it holds."""
    key, _, payload = entry.partition(b"\n")
    return key, json.loads(payload)


def test_a_refused_spec_stays_refused_with_one_message(mini: MiniWarehouse, tmp_path: Path):
    spec = one_game(mini)
    env = {**os.environ, "BACKFILL_KIT_CACHE_DIR": str(tmp_path / "cache")}
    assert run_validate(spec, env).returncode == 1
    spec.write_text(spec.read_text().replace(MINI_FILTER, "filter: \"read_csv('/etc/passwd') IS NOT NULL\""))
    for _ in range(2):
        refused = run_validate(spec, env)
        assert refused.returncode == 2
        assert refused.stderr.startswith("error: ")
        assert "calendar.filter: the function READ_CSV is not allowed" in refused.stderr
        assert "Traceback" not in refused.stderr


def test_without_a_usable_cache_folder_commands_still_work(mini: MiniWarehouse, tmp_path: Path):
    spec = one_game(mini)
    not_a_folder = tmp_path / "a-file"
    not_a_folder.write_text("")
    env = {**os.environ, "BACKFILL_KIT_CACHE_DIR": str(not_a_folder)}
    runs = [run_validate(spec, env) for _ in range(2)]
    assert [(r.returncode, r.stderr) for r in runs] == [(1, ""), (1, "")]
    assert runs[0].stdout == runs[1].stdout


def test_the_cache_folder_follows_the_settings(mini: MiniWarehouse, tmp_path: Path):
    spec = one_game(mini)
    home = tmp_path / "home"
    unset = {k: v for k, v in os.environ.items() if k != "BACKFILL_KIT_CACHE_DIR"}
    env = {**unset, "BACKFILL_KIT_CACHE_DIR": "", "HOME": str(home), "XDG_CACHE_HOME": str(home / "xdg")}
    assert [run_validate(spec, env).returncode for _ in range(2)] == [1, 1]
    assert not home.exists()  # set empty: no cache at all
    del env["BACKFILL_KIT_CACHE_DIR"]
    assert run_validate(spec, env).returncode == 1
    assert len(list((home / "xdg" / "backfill-kit").glob("spec-*"))) == 1
    del env["XDG_CACHE_HOME"]
    assert run_validate(spec, env).returncode == 1
    assert len(list((home / ".cache" / "backfill-kit").glob("spec-*"))) == 1


def test_the_cache_is_never_written_beside_the_spec(mini: MiniWarehouse, tmp_path_factory: pytest.TempPathFactory):
    spec = one_game(mini)
    before = sorted(spec.parent.rglob("*"))
    cache = tmp_path_factory.mktemp("home") / "cache"
    env = {**os.environ, "BACKFILL_KIT_CACHE_DIR": str(cache)}
    assert run_validate(spec, env).returncode == 1
    assert sorted(spec.parent.rglob("*")) == before
    assert oct(cache.stat().st_mode & 0o777) == "0o700"
    assert {oct(p.stat().st_mode & 0o777) for p in cache.iterdir()} == {"0o600"}


def test_the_cache_keeps_its_newest_entries(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr("backfill_kit.common.cache.MAX_ENTRIES", 3)
    specs = [tmp_path / f"spec-{i}.yaml" for i in range(5)]
    for path in specs:
        path.write_text(MINI_SPEC)
        load_spec(path)
        for entry in cache.iterdir():  # strictly older than the next one written
            os.utime(entry, (entry.stat().st_mtime - 10, entry.stat().st_mtime - 10))
    assert {stored(entry.read_bytes())[1]["source"] for entry in cache.iterdir()} == {str(p) for p in specs[-3:]}


def test_a_spec_from_the_cache_is_the_spec_from_the_file(cache: Path, tmp_path: Path):
    """Every field, and the job settings merged from the spec, phase and table levels."""
    path = tmp_path / "nba_props.yaml"
    path.write_text(example_spec_text())
    fresh = load_spec(path)
    cached = load_spec(path)
    assert entries(cache, "spec") and cached is not fresh
    assert cached == fresh
    assert [cached.job_of(t) for t in cached.tables] == [fresh.job_of(t) for t in fresh.tables]


def test_a_spec_loaded_by_a_relative_path_keeps_its_folder_after_a_chdir(
    cache: Path, spec_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """load_spec('demo/nba_props.yaml') kept the path relative: once the process changed folder
    (a notebook, a script), the spec's DuckDB file was looked up under the new folder."""
    monkeypatch.chdir(spec_file.parent.parent)
    relative = Path(spec_file.parent.name) / spec_file.name
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for attempt in ("fresh", "from the cache"):
        spec = load_spec(relative)
        assert spec.source == spec_file, attempt
        assert spec.file_name == str(relative), attempt  # messages still name it as given
        assert spec.folder == relative.parent, attempt  # and its runs/ folder (journals, logs)
        monkeypatch.chdir(elsewhere)
        assert spec.resolve_path("warehouse.duckdb") == spec_file.parent / "warehouse.duckdb", attempt
        assert spec.file_name == str(spec_file), attempt
        assert spec.folder == spec_file.parent, attempt
        monkeypatch.chdir(spec_file.parent.parent)
    assert len(entries(cache, "spec")) == 1


def test_pruning_never_removes_files_that_are_not_cache_entries(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """With BACKFILL_KIT_CACHE_DIR set to a shared folder (a home, /tmp), every file beyond the
    newest 256 was deleted, whatever it was."""
    monkeypatch.setattr("backfill_kit.common.cache.MAX_ENTRIES", 2)
    cache.mkdir(mode=0o700)
    others = [cache / name for name in ("notes.txt", "spec-not-ours", "filter-1234", "README")]
    for path in others:
        path.write_text("keep me")
        os.utime(path, (1, 1))  # older than any entry
    specs = [tmp_path / f"spec-{i}.yaml" for i in range(4)]
    for path in specs:
        path.write_text(MINI_SPEC)
        load_spec(path)
    assert all(path.read_text() == "keep me" for path in others)
    ours = [p for p in cache.iterdir() if p not in others and not p.name.startswith(".")]
    assert len(ours) == 2  # the newest two of the four specs' entries and the filter's


# --- The cache holds data, never code ---------------------------------------------------------


class RunsCode:
    """Unpickled, it runs a shell command: what a cache of pickles hands whoever writes an entry."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, ...]:
        return (os.system, (f"touch {self.marker}",))


def with_payload(entry: Path, payload: bytes) -> bytes:
    """The entry's own key, then `payload` with its right checksum: an entry the cache's own
    integrity check cannot tell from one it wrote."""
    key = entry.read_bytes().split(b" ", 1)[0]
    return key + b" " + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload


LOAD_AND_PRINT = "import sys; from backfill_kit.spec.load import load_spec; print(load_spec(sys.argv[1]).name)"


def test_an_entry_holding_code_runs_nothing(cache: Path, spec_file: Path, tmp_path: Path):
    """The spec cache unpickled its entries: an entry with the right key and checksum (anyone
    who could write it, or link it to a file whose bytes they chose) ran its code at the next
    load. An entry is JSON now, and what it holds is rebuilt into a spec or nothing."""
    import pickle  # the attacker's tool, never the package's

    load_spec(spec_file)
    (entry,) = entries(cache, "spec")
    marker = tmp_path / "the-entry-ran"
    entry.write_bytes(with_payload(entry, pickle.dumps(RunsCode(marker))))
    run = subprocess.run([sys.executable, "-c", LOAD_AND_PRINT, str(spec_file)], capture_output=True, text=True)
    assert (run.returncode, run.stdout, run.stderr) == (0, "mini\n", "")
    assert not marker.exists()


SHAPES = {
    "an unknown field": lambda d: {**d, "extra": 1},
    "a field missing": lambda d: {k: v for k, v in d.items() if k != "calendar"},
    "text where a number goes": lambda d: {**d, "run_history": {**d["run_history"], "max_range_days": "62"}},
    "true where a number goes": lambda d: {**d, "run_history": {**d["run_history"], "max_range_days": True}},
    "a date as a number": lambda d: {
        **d,
        "calendar": {**d["calendar"], "seasons": [{"name": "s", "start": 20240101, "end": "2024-01-31"}]},
    },
    "a date in another form": lambda d: {
        **d,
        "calendar": {**d["calendar"], "seasons": [{"name": "s", "start": "20240101", "end": "2024-01-31"}]},
    },
    "a value outside a Literal": lambda d: {**d, "cascade": "everything"},
    "a backend no class has": lambda d: {**d, "warehouse": {"backend": "sqlite", "path": "x"}},
    "a mapping where a list goes": lambda d: {**d, "phases": {"0": d["phases"][0]}},
    "a list where a mapping goes": lambda d: {**d, "calendar": [d["calendar"]]},
    "a class's own check refuses": lambda d: {
        **d,
        "job_defaults": {**d["job_defaults"], "skip_downstream": {"args": [], "env": {}}},
    },
    "not a mapping at all": lambda d: [d],
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_an_entry_is_rebuilt_into_a_spec_or_not_at_all(cache: Path, spec_file: Path, shape: str):
    """Whatever an entry holds (here, with the right key and checksum), anything but the exact
    shape of a spec is a miss: the file is checked in full."""
    fresh = load_spec(spec_file)
    (entry,) = entries(cache, "spec")
    data = json.loads(entry.read_bytes().partition(b"\n")[2])
    entry.write_bytes(with_payload(entry, json.dumps(SHAPES[shape](data)).encode()))
    assert load_spec(spec_file) == fresh
    assert stored(entry.read_bytes())[1] == data  # the miss stored the checked spec again


EVERY_FIELD = (
    MINI_SPEC.replace(
        "  backend: duckdb\n  path: mini.duckdb\n",
        "  backend: bigquery\n  project: my-project-1\n  location: EU\n  credentials_file: key.json\n"
        "  dataset_prefix: dev_\n  maximum_bytes_billed: 1000000000\n  price_per_tib_usd: 5.5\n",
    )
    .replace("date_column: game_date\ncalendar:", "date_column: game_date\ncascade: dependents\ncalendar:")
    .replace(
        "  stale_after_hours: 6\n",
        "  stale_after_hours: 7.5\n  max_range_days: 31\n"
        "  no_data_reasons: {failure_category: [no_data_available], skip_reason: [no_data, none]}\n",
    )
    .replace("run_id: run_id}", "run_id: run_id,\n            range_start: range_first, range_end: range_last}")
    .replace(
        '  skip_downstream: {args: ["--no-trigger"]}\n',
        '  skip_downstream: {args: ["--no-trigger"], env: {NO_TRIGGER: "1"}}\n  workdir: jobs\n'
        "  env: {TZ: UTC, LANG: C.UTF-8}\n  max_dates_per_step: 7\n  timeout_seconds: 90.5\n"
        '  transient_exit_codes: [75, 111]\n  retries: 4\n  dry_run_args: ["--dry-run"]\n',
    )
    .replace("  - name: analytics\n", "  - name: analytics\n    mode: sequential\n    job: {retries: 0, env: {}}\n")
    .replace(
        "min_rows_per_game: 2}", "min_rows_per_game: 2.5, priority: important, job: {argv: [x, '{start}', '{end}']}}"
    )
)


@pytest.mark.parametrize("text", [EVERY_FIELD, example_spec_text()], ids=["every field set", "the example spec"])
def test_a_spec_with_every_field_set_comes_back_whole(cache: Path, tmp_path: Path, text: str):
    """Every field the spec's classes have, each kind of value (dates, floats, tuples, frozen
    mappings, unions, nested classes), comes back from its entry as the checked spec had it."""
    path = tmp_path / "every.yaml"
    path.write_text(text)
    fresh = load_spec(path)
    cached = load_spec(path)
    assert entries(cache, "spec") and cached is not fresh
    assert cached == fresh and hash(cached) == hash(fresh)
    assert repr(cached) == repr(fresh)  # the same types too: a tuple is no list, a float no int
    with pytest.raises(TypeError, match="cannot change"):
        cached.run_history.no_data_reasons["x"] = ("y",)


def test_no_module_of_the_package_can_run_what_it_reads():
    """No pickle (nor its relatives) anywhere in the package: a file it reads back is data."""
    import ast

    code_readers = {"pickle", "_pickle", "cPickle", "shelve", "dill", "cloudpickle", "marshal", "jsonpickle", "joblib"}
    package = Path(__file__).resolve().parents[1] / "backfill_kit"
    found = []
    for source in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(source.read_text(), str(source))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [node.value]
                if isinstance(node, ast.Constant) and isinstance(node.value, str)
                else []
            )
            found += [f"{source.relative_to(package)}:{node.lineno}" for n in names if n.split(".")[0] in code_readers]
    assert found == []


# --- Only a folder that is the user's alone -------------------------------------------------


def without_cache(spec: Path) -> subprocess.CompletedProcess[str]:
    return run_validate(spec, {**os.environ, "BACKFILL_KIT_CACHE_DIR": ""})


def warnings_of(run: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in run.stderr.splitlines() if line]


def made_a_link(folder: Path) -> None:
    """The folder moved aside, a link to it in its place: the link's maker chooses where it points."""
    folder.rename(folder.with_name("real"))
    folder.symlink_to("real")


UNTRUSTED = {
    "writable by others": ("can be written by other users", lambda folder: folder.chmod(0o777)),
    "another user's": ("belongs to another user", lambda folder: os.chown(folder, 65534, 65534)),
    "a link": ("is a link", made_a_link),
}


@pytest.mark.parametrize("case", list(UNTRUSTED))
def test_a_folder_that_is_not_the_users_alone_is_no_cache(mini: MiniWarehouse, tmp_path: Path, case: str):
    """A cache folder anyone else can write (or a link, which points wherever its maker likes)
    is never read nor written: the command runs as with no cache and says so, once, naming
    the folder and what to do."""
    if case == "another user's" and os.geteuid() != 0:
        pytest.skip("giving a folder to another user needs root")
    spec = one_game(mini)
    folder = tmp_path / "cache"
    folder.mkdir(mode=0o700)
    why, make = UNTRUSTED[case]
    make(folder)
    env = {**os.environ, "BACKFILL_KIT_CACHE_DIR": str(folder)}
    expected = without_cache(spec)
    for _ in range(2):  # the second run would be the one served from the cache
        run = run_validate(spec, env)
        assert (run.returncode, run.stdout) == (expected.returncode, expected.stdout)
        assert warnings_of(run) == [
            f"warning: the cache folder {folder} {why}, so its entries could be anyone's: running without a "
            "cache. Use a folder of your own that only you can write (BACKFILL_KIT_CACHE_DIR=PATH; empty: no cache)"
        ]
    assert list(folder.resolve().iterdir()) == []


def entry_bytes(key: str | None, payload: bytes) -> bytes:
    assert key is not None
    return f"{key} {hashlib.sha256(payload).hexdigest()}\n".encode() + payload


@pytest.mark.parametrize("how", ["links to files of ours", "files of theirs"])
def test_a_shared_cache_folder_serves_nothing_another_user_planted(mini: MiniWarehouse, how: str):
    """The issue's attack, with two real users. In a cache folder others can write (a shared
    one the variable names), another user plants entries at the names the next `validate`
    reads: a pickle that runs a command, and a calendar filter's 'checked' SQL that reads
    /etc/passwd; either as links to files of ours whose bytes they chose (files of a shared
    repository: the owner check passed on the link's target) or as files of their own.
    Neither runs nor is served, and nothing of ours is written among them."""
    import pickle

    nobody = another_user()
    spec = one_game(mini)
    where = spec.absolute()
    with shared_folder(0o1777) as cache, shared_folder() as repository:  # /tmp's mode; a folder of ours
        marker = repository / "the-entry-ran"
        evil = {"sql": "CAST((SELECT content FROM read_text('/etc/passwd')) AS INT) = 1", "columns": []}
        contents = {
            "spec-" + load.cache_key(str(where))[:32]: entry_bytes(
                load._spec_key(where, spec.read_text()), pickle.dumps(RunsCode(marker))
            ),
            "filter-" + load.cache_key("duckdb", "game_status = 3")[:32]: entry_bytes(
                calendar_filter._cache_key("game_status = 3", "duckdb"), json.dumps(evil).encode()
            ),
        }
        for slot, data in contents.items():
            if how == "files of theirs":
                subprocess.run([*nobody, "sh", "-c", f"cat > {cache / slot}"], input=data, check=True)
            else:
                (repository / slot).write_bytes(data)
                (repository / slot).chmod(0o644)
                subprocess.run([*nobody, "ln", "-s", str(repository / slot), str(cache / slot)], check=True)
        planted = sorted(cache.iterdir())
        run = run_validate(spec, {**os.environ, "BACKFILL_KIT_CACHE_DIR": str(cache)})
        expected = without_cache(spec)
        assert not marker.exists()
        assert "root:" not in run.stdout + run.stderr
        assert (run.returncode, run.stdout) == (expected.returncode, expected.stdout)
        assert warnings_of(run) == [
            f"warning: the cache folder {cache} can be written by other users, so its entries could be anyone's: "
            "running without a cache. Use a folder of your own that only you can write "
            "(BACKFILL_KIT_CACHE_DIR=PATH; empty: no cache)"
        ]
        assert sorted(cache.iterdir()) == planted


def test_with_no_home_and_no_passwd_entry_commands_work(mini: MiniWarehouse):
    """HOME unset and a uid /etc/passwd does not list (a container's `-u 54321`, `env -i`):
    every command that loads a spec died in Path.home(). There is no user cache then, unless
    XDG_CACHE_HOME or BACKFILL_KIT_CACHE_DIR says where, and the command works either way."""
    import shutil as sh

    prefix, owner = uid_without_passwd_entry()
    source = one_game(mini)
    expected = without_cache(source)
    with shared_folder() as folder:
        for name in (source.name, "mini.duckdb"):
            sh.copy(source.parent / name, folder / name)
            (folder / name).chmod(0o644)
        spec = folder / source.name
        argv = [KIT, "validate", "--spec", str(spec), "--start", "2024-01-01", "--end", "2024-01-31", "--format", "csv"]
        argv += ["--now", "2024-04-10T12:00:00"]
        bare = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8"}
        for home in ({}, {"HOME": ""}):  # unset; set empty, which must not mean the working directory
            run = subprocess.run([*prefix, *argv], capture_output=True, text=True, env={**bare, **home}, cwd=folder)
            assert (run.returncode, run.stdout, run.stderr) == (expected.returncode, expected.stdout, "")
        assert sorted(p.name for p in folder.iterdir()) == ["mini.duckdb", "mini.yaml"]  # no ./.cache
        xdg = folder / "xdg"
        xdg.mkdir(mode=0o700)
        os.chown(xdg, owner, owner)
        for _ in range(2):
            run = subprocess.run(
                [*prefix, *argv], capture_output=True, text=True, env={**bare, "XDG_CACHE_HOME": str(xdg)}, cwd=folder
            )
            assert (run.returncode, run.stdout, run.stderr) == (expected.returncode, expected.stdout, "")
        assert [p.name.split("-")[0] for p in sorted((xdg / "backfill-kit").iterdir())] == ["filter", "spec"]
