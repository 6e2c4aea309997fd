"""The project's declarations agree with each other and with what the package exports."""

from __future__ import annotations

import re
import tomllib
from importlib import import_module
from pathlib import Path

import yaml

import backfill_kit

ROOT = Path(__file__).resolve().parent.parent


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[ ;]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements}


def test_environment_yml_lists_the_same_dependencies_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = _names(project["dependencies"])
    for name, extra in project["optional-dependencies"].items():
        if name != "airflow":  # installed apart, never into this (JupyterLab's) environment
            declared |= _names(extra)
    conda = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    listed = _names([d for d in conda if isinstance(d, str)]) - {"python", "pip"}
    listed |= _names(next((d["pip"] for d in conda if isinstance(d, dict)), []))
    assert listed == declared


# The package's public names, by the module each one comes from.
PUBLIC = {
    "errors": ["BackfillKitError", "InputError", "SpecError", "WarehouseError"],
    "spec.model": ["PipelineSpec"],
    "spec.load": ["load_spec"],
    "common.status": ["Status"],
    "validation.validator": ["Cell", "Validation", "validate"],
}


def test_public_names_are_pinned():
    assert backfill_kit.__all__ == sorted(name for names in PUBLIC.values() for name in names)
    for module, names in PUBLIC.items():
        home = import_module(f"backfill_kit.{module}")
        for name in names:
            assert getattr(backfill_kit, name) is getattr(home, name)
            assert getattr(backfill_kit, name).__name__ == name
