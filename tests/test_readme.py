"""Every runnable command of the README works as written, on a fresh copy of the project after
`make demo`.

The convention (stated in the README): a fenced block marked `sh` is runnable as it is, from the
project folder, after `make demo`, with the environment activated by the README's own `sh`
block (`. .venv/bin/activate`); a block of placeholders (`SPEC`, `DATE`) is marked `text` and
is a reference form, not run; the first, unmarked block holds the two set-up commands, and
`make demo` is what the fixture runs. A command's accepted exit codes are 0, plus those its
trailing comment names ("exits 1 while gaps remain", "exits 2 on warnings only"): what the README
tells a user to expect. Nothing is skipped: every `sh` block is one test case, and a block that
has no command fails.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from conftest import MADE_DEMO_GROUP

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

pytestmark = [pytest.mark.slow, MADE_DEMO_GROUP]  # make demo in a copy of the project: a minute


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


@pytest.fixture
def project(made_demo: Path) -> Path:
    """A fresh copy of the project with this environment, after `make demo` (made once a
    session, in tests/conftest.py)."""
    return made_demo


@pytest.mark.parametrize(
    "block", sh_blocks(README.read_text()), ids=lambda b: commands(b)[0][0][:60] if commands(b) else "empty"
)
def test_every_readme_command_runs_as_written_after_make_demo(project: Path, block: str):
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"  # a fresh shell: nothing of .venv on it until activated
    assert commands(block), block
    for command, accepted in commands(block):
        done = subprocess.run(
            ["bash", "-c", f". .venv/bin/activate && {command}"],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode in accepted, (
            f"{command}\nexit {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        )
        assert "Traceback" not in done.stderr, done.stderr
