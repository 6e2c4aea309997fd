"""The Python API's arguments as people write them in a notebook: paths and dates.

Paths, one rule wherever the code runs: a relative path is looked up in the working directory,
then in each folder above it, up to the project folder (the first that holds `pyproject.toml`
or `.git`), and never higher; outside any project, in the working directory only. So
`demo/nba_props.yaml` names the same file from the project folder (the CLI, papermill, cron)
and from `notebooks/`, where JupyterLab starts a notebook's kernel, and a `pipeline.yaml` that
someone else left in /tmp is never taken for one of yours under /tmp. When no folder holds it,
the error lists every place looked at.

Dates: a `date` or a string `YYYY-MM-DD`, everywhere.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from pathlib import Path

from backfill_kit.errors import InputError

__all__ = ["PROJECT_MARKERS", "as_date", "find_file", "iso_date", "search_folders"]

PROJECT_MARKERS = ("pyproject.toml", ".git")


def search_folders() -> list[Path]:
    """The working directory, then each folder above it up to the project folder; the working
    directory alone when no folder at or above it is a project's."""
    here = Path.cwd()
    folders = []
    for folder in (here, *here.parents):
        folders.append(folder)
        if any((folder / marker).exists() for marker in PROJECT_MARKERS):
            return folders
    return [here]


def find_file(path: str | Path, what: str, *, hint: str = "") -> Path:
    """The file `path` names by the rule above: as given when it is absolute (its reader says
    if it is missing) or found in the working directory, else in the folder that holds it.
    `what` names it in the error ("the spec", "the journal"); `hint` says where it comes from."""
    try:
        given = Path(path).expanduser()
    except RuntimeError:  # ~ with no HOME and no passwd entry to say where it is
        raise InputError(
            f"{what} {path}: there is no home folder to expand ~ to (HOME is unset); give the full path"
        ) from None
    if given.is_absolute():
        return given
    folders = search_folders()
    for i, folder in enumerate(folders):
        if (folder / given).is_file():
            return given if i == 0 else folder / given
        if i == 0 and given.is_dir():  # found, but of the wrong kind: say so rather than "missing"
            raise InputError(f"{what} {given} is a folder, not a file; give the path of the file in it")
    looked = "".join(f"\n  {folder / given}" for folder in folders)
    raise InputError(
        f"{what} {given} does not exist: a relative path is looked up in the working directory, then in "
        f"each folder above it up to the project folder (holding {' or '.join(PROJECT_MARKERS)}; outside a "
        f"project, in the working directory only), and none of these is a file:{looked}\n"
        f"Give a path from the project folder or an absolute path{'; ' + hint if hint else ''}."
    )


def as_date(value: str | date, name: str) -> date:
    """A date given as a `date` (a `datetime` counts as its day) or as `YYYY-MM-DD`; `name`
    (start, end) names it in the error."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return iso_date(str(value).strip())
    except ValueError:
        raise InputError(f"{name} {value!r} is not a date; write it as YYYY-MM-DD, e.g. 2021-10-19") from None


def iso_date(text: str) -> date:
    """`YYYY-MM-DD` and nothing else: Python's own parser also takes 20211019 and 2021-W42-2,
    forms the messages do not promise and a reader of a command line would not expect."""
    if not _ISO_DATE.fullmatch(text):
        raise ValueError(f"not YYYY-MM-DD: {text!r}")
    return date.fromisoformat(text)


_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
