"""Every runnable command of the README works as written, on a fresh copy of the project after
`make demo`; and that demo's full backfill left what it promises (built once, for both).

The convention (stated in the README): a fenced block marked `sh` is runnable as it is, from the
project folder, after `make demo`, with the environment activated by the README's own `sh`
block (`. .venv/bin/activate`); a block of placeholders (`SPEC`, `DATE`) is marked `text` and
is a reference form, not run; the first, unmarked block holds the two set-up commands, and
`make demo` is what the fixture runs. The blocks run side by side, each in its own copy of the
project after `make demo`. A command's accepted exit codes are 0, plus those its
trailing comment names ("exits 1 while gaps remain", "exits 2 on warnings only"): what the README
tells a user to expect. Nothing is skipped: every `sh` block is one test case, and a block that
has no command fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from test_demo_backfill import cli, statuses, triggers

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

pytestmark = pytest.mark.slow  # make demo in a copy of the project: a minute or two


def sh_blocks(text: str) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```$", text, flags=re.S | re.M)


def commands(block: str) -> list[tuple[str, set[int]]]:
    """Each command of a block (continuation lines joined) with the exit codes it may end with."""
    joined = re.sub(r"\\\n\s*", " ", block)
    found = []
    for line in joined.splitlines():
        command, _, comment = line.partition("  #")
        command = command.strip()
        if command and not command.startswith("#"):
            accepted = {0} | {int(n) for n in re.findall(r"\bexits? (\d)\b", comment)}
            found.append((command, accepted))
    return found


def test_the_readme_marks_its_commands_so_that_this_test_finds_them():
    text = README.read_text()
    blocks = sh_blocks(text)
    assert len(blocks) >= 6 and all(commands(b) for b in blocks)
    # The set-up block comes first and stays as it is.
    first = re.search(r"^```\n(.*?)^```$", text, flags=re.S | re.M)
    assert first is not None and [line.split()[:2] for line in first[1].splitlines()] == [
        ["make", "demo"],
        ["make", "test"],
    ]
    # A placeholder is never in a runnable block.
    for block in blocks:
        assert not re.search(r"\b(SPEC|DATE)\b", block), block


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh copy of the project (its tracked files, as a clone has them) with this
    environment, after `make demo`."""
    copy = tmp_path_factory.mktemp("clone") / "backfill-kit"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)  # keeps mtimes: make sees the environment as up to date
    (copy / ".venv").symlink_to(ROOT / ".venv")
    # -o: never remake the environment's stamp here. The .venv is this checkout's own: an
    # install from the copy would point its console scripts and editable package at the copy,
    # which pytest deletes later, and leave the environment broken.
    built = subprocess.run(
        ["make", "-o", ".venv/.installed", "demo"], cwd=copy, capture_output=True, text=True, timeout=1200
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    return copy


def test_make_demos_backfill_leaves_only_complete_no_data_and_bootstrap_and_fires_no_trigger(
    project: Path, demo_copy: Path
):
    """The full four-season backfill, the one `make demo` ran (exit 0, or `project` fails)."""
    whole = ["--start", "2021-10-19", "--end", "2025-06-22"]
    assert {"never_ran", "failed", "stale", "lost", "partial"} <= set(statuses(demo_copy, *whole))  # before
    events = [json.loads(line) for line in (project / "demo/runs/plan.journal.jsonl").read_text().splitlines()]
    assert next(e for e in events if e["event"] == "run_finished")["outcome"] == "completed"
    demo = project / "demo" / "nba_props.yaml"
    after = json.loads(cli("validate", "--spec", str(demo), *whole, "--format", "json").stdout)
    assert set(after["summary"]["statuses"]) == {"complete", "no_data", "bootstrap"}
    no_data = [c for c in after["cells"] if c["status"] == "no_data"]
    assert all(c["rows"] == 0 for c in no_data)  # genuinely nothing to load: a success with 0 records or a
    by_status = {c["latest_status"] for c in no_data}  # failure or skip with a no-data reason, never an error
    assert by_status == {"success", "failed", "skipped"}
    assert all("NoDataAvailableError" in c["last_error"] for c in no_data if c["latest_status"] == "failed")
    assert after["run_history"]["dates_from_range_runs"] > 0
    assert triggers(demo) == 0
    assert cli("validate", "--spec", str(demo), *whole).returncode == 0


BLOCKS = sh_blocks(README.read_text())


def run_block(project: Path, block: str) -> list[tuple[str, set[int], subprocess.CompletedProcess[str]]]:
    """A block's commands, one after another in a fresh shell each, as far as the first that
    fails: each with the exit codes it may end with and how it ended."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"  # a fresh shell: nothing of .venv on it until activated
    ran = []
    for command, accepted in commands(block):
        done = subprocess.run(
            ["bash", "-c", f". .venv/bin/activate && {command}"],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        ran.append((command, accepted, done))
        if done.returncode not in accepted or "Traceback" in done.stderr:
            break
    return ran


@pytest.fixture(scope="module")
def block_runs(project: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Future[Any]]]:
    """Every block started at once, each in its own copy of the project as `make demo` left it:
    a block is what a user runs after `make demo`, not after another block. The slowest block,
    not the sum of them all, then follows `make demo`."""
    with ThreadPoolExecutor(max_workers=len(BLOCKS)) as pool:
        runs = {}
        for block in BLOCKS:
            copy = tmp_path_factory.mktemp("block") / project.name
            shutil.copytree(project, copy, symlinks=True)  # keeps mtimes: make sees nothing to redo
            runs[block] = pool.submit(run_block, copy, block)
        yield runs


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: commands(b)[0][0][:60] if commands(b) else "empty")
def test_every_readme_command_runs_as_written_after_make_demo(block_runs: dict[str, Future[Any]], block: str):
    assert commands(block), block
    ran = block_runs[block].result()
    assert [command for command, _, _ in ran] == [command for command, _ in commands(block)][: len(ran)]
    for command, accepted, done in ran:
        assert done.returncode in accepted, (
            f"{command}\nexit {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        )
        assert "Traceback" not in done.stderr, done.stderr
    assert len(ran) == len(commands(block))
