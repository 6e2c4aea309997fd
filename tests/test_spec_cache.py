"""The user's cache of checked specs and calendar filters: a second command on the same file
skips YAML, validation and the filter's parser; anything changed, corrupt or writable by
others is checked in full, as if there were no cache."""

from __future__ import annotations

import hashlib
import os
import pickle
import subprocess
import sys
from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest
from conftest import MINI_SPEC, MiniWarehouse

from backfill_kit.demo import example_spec_text
from backfill_kit.errors import SpecError
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
    payload = pickle.dumps(replace(pickle.loads(payload), name=name))
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


def test_a_garbled_entry_that_still_unpickles_is_checked_in_full(cache: Path, spec_file: Path):
    """A byte changed inside a stored text (a disk, an editor) leaves a valid pickle of a spec
    the loader would refuse: the payload's checksum keeps it from being served as checked."""
    load_spec(spec_file)
    (entry,) = entries(cache, "spec")
    data = entry.read_bytes()
    assert b"raw.boxscore" in data
    entry.write_bytes(data.replace(b"raw.boxscore", b"raw.boxscor;"))
    assert pickle.loads(entry.read_bytes().partition(b"\n")[2]).phases[0].tables[0].table == "raw.boxscor;"
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
    "right key, garbage after it": lambda data: data.partition(b"\n")[0] + b"\n{not json, not a pickle",
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
    """An entry's key, and what it holds (a pickle's bytes depend on set order)."""
    key, _, payload = entry.partition(b"\n")
    return key, pickle.loads(payload) if payload.startswith(b"\x80") else payload


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
    assert {stored(entry.read_bytes())[1].source for entry in cache.iterdir()} == set(specs[-3:])


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
