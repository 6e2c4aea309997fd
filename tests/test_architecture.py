"""The layer order in pyproject.toml ([tool.importlinter]) holds, and an upward import breaks it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(project: Path) -> subprocess.CompletedProcess[str]:
    # PYTHONPATH first: the copy's package, not the installed one, is the one analysed.
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(project), "HOME": str(project)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_layers_are_kept():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    """Validation importing the runner (a layer above it) is named, with the line."""
    shutil.copytree(ROOT / "backfill_kit", tmp_path / "backfill_kit", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    summaries = tmp_path / "backfill_kit" / "validation" / "summaries.py"
    summaries.write_text(summaries.read_text() + "\nfrom backfill_kit.running import runner  # noqa: E402\n")
    result = lint_imports(tmp_path)
    assert result.returncode == 1
    assert "backfill_kit.validation is not allowed to import backfill_kit.running" in result.stdout
    assert "backfill_kit.validation.summaries -> backfill_kit.running.runner" in result.stdout


def test_each_package_exports_what_its_module_defines():
    """The packages that resolve names lazily promise the same names as the module behind them."""
    from backfill_kit import validation
    from backfill_kit.validation import validator

    assert validation.__all__ == validator.__all__
    assert all(getattr(validation, name) is getattr(validator, name) for name in validation.__all__)
