"""What kind of file a text is, among the toolkit's own (and the files people mix up with
them): one answer for every command that is handed the wrong one. The shapes are checked on
the first few kilobytes, so a huge file costs no more than a small one."""

from __future__ import annotations

__all__ = ["kind_of"]

_HEAD = 4096


def kind_of(text: str) -> str | None:
    """'html', 'journal', 'notebook', 'plan', 'validation', 'preflight', 'spec' (YAML or JSON),
    or None when the text has none of their shapes."""
    start = text.lstrip()[:_HEAD]
    if start[:15].lower().startswith(("<!doctype", "<html")):
        return "html"
    if not start.startswith("{"):
        return "spec" if "phases:" in text and "run_history:" in text else None
    if '"event"' in start.split("\n", 1)[0]:  # a journal holds one JSON event a line
        return "journal"
    if '"nbformat"' in text[-_HEAD:] or '"cell_type"' in start:
        return "notebook"
    for key, kind in (
        ('"stages"', "plan"),
        ('"steps"', "plan"),
        ('"cells"', "validation"),
        ('"checks"', "preflight"),
        ('"phases"', "spec"),
    ):
        if key in start:
            return kind
    return None
