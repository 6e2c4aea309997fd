"""A job's argv placeholders: `{name}` for one of a few names, and nothing else.

Python's str.format takes more: `{start:d}` is a ValueError at `plan`, `{start:>300000000}`
asks for 300 MB of padding, `{start!r}` hands the job a quoted date, `{start.year}` reads an
attribute. One rule, written here, is both what the spec's check accepts and what the plan
fills in. `{{` and `}}` are a literal brace, as in str.format: an argument that is JSON, say.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["JOB_PLACEHOLDERS", "fill_placeholders", "placeholder_names", "placeholder_problem"]

JOB_PLACEHOLDERS = frozenset({"start", "end", "id", "table", "processor", "python"})

# A literal brace, a placeholder (what its braces hold), or a brace on its own.
_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_EXTRAS = {"!": "a conversion", ":": "a format spec", ".": "an attribute", "[": "an index"}


def placeholder_problem(arg: str) -> str | None:
    """What is wrong with the braces of one argument, and what is allowed; None when nothing."""
    for match in _TOKEN.finditer(arg):
        if why := _token_problem(match.group(0), match.group(1)):
            allowed = ", ".join("{" + name + "}" for name in sorted(JOB_PLACEHOLDERS))
            shown = repr(arg) if len(arg) <= 80 else repr(arg[:77] + "...")
            return (
                f"{why} in {shown}; a placeholder is a name alone in braces, one of {allowed} "
                "(a literal brace is written {{ or }})"
            )
    return None


def _token_problem(token: str, name: str | None) -> str | None:
    if token in ("{{", "}}") or name in JOB_PLACEHOLDERS:
        return None
    if name is None:
        return f"a {token!r} on its own"
    base = re.split(r"[!:.\[]", name, maxsplit=1)[0]
    if base in JOB_PLACEHOLDERS:
        extra = name[len(base) :]
        return f"{token} has {_EXTRAS[extra[0]]} ({extra})"
    return f"{token} names no placeholder" if name else "{} names no placeholder"


def placeholder_names(arg: str) -> set[str]:
    """The placeholders an argument uses, by name."""
    return {name for name in _TOKEN.findall(arg) if name in JOB_PLACEHOLDERS}


def fill_placeholders(arg: str, values: Mapping[str, str]) -> str:
    """The argument with each placeholder's value put in and `{{`, `}}` made single braces;
    `ValueError` saying what is wrong for any other brace (a loaded spec holds none)."""
    if problem := placeholder_problem(arg):
        raise ValueError(problem)
    return _TOKEN.sub(lambda m: values[m.group(1)] if m.group(1) is not None else m.group(0)[0], arg)
