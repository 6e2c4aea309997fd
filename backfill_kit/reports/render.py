"""Rendering a report: a notebook run by papermill, exported to one self-contained HTML file.

The executed notebook is kept beside its HTML as the record, and `index.html` in the same
folder lists every report there. Everything happens in this process (papermill starts the
kernel); the HTML loads nothing from the network: plotly.js is embedded once by the notebook's
first cell, and the template below drops nbconvert's CDN scripts (require.js, MathJax, mermaid,
widgets).
"""

from __future__ import annotations

import functools
import importlib.util
import re
import sys
import sysconfig
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backfill_kit.common.arguments import find_file
from backfill_kit.common.formatting import plural
from backfill_kit.common.json_input import NotJson, parse_json
from backfill_kit.common.outputs import write_output
from backfill_kit.common.small_files import odd_file
from backfill_kit.errors import BackfillKitError, InputError, MissingDependencyError
from backfill_kit.reports.changes import (
    CELLS_SUFFIX,
    Changes,
    States,
    cell_states,
    changes_between,
    previous_report,
    write_cells_file,
)
from backfill_kit.running.journal import Event

if TYPE_CHECKING:
    pass

__all__ = [
    "NOTEBOOKS",
    "Rendered",
    "execute",
    "export_html",
    "notebook_path",
    "render_coverage",
    "render_execution",
    "write_index",
]

NOTEBOOKS = {"coverage": "coverage_audit.ipynb", "execution": "execution_log.ipynb", "explore": "explore.ipynb"}
DEFAULT_KERNEL = "python3"
# Installed copies (pyproject's data-files); a source checkout uses the top-level notebooks/.
SHARE = Path("share") / "backfill-kit" / "notebooks"
META = "backfill-kit-report"


@dataclass(frozen=True)
class Rendered:
    html: Path
    notebook: Path
    index: Path
    changes: Changes | None = None  # a coverage report's, since the previous one of its range


# --- finding the notebooks -----------------------------------------------------------------


def notebook_dirs() -> list[Path]:
    """Where the notebooks may be: the checkout (source tree, editable install), then where a
    normal install puts them (the environment, or the user's base for `pip install --user`)."""
    checkout = Path(__file__).resolve().parents[2] / "notebooks"
    prefixes = [
        sys.prefix,
        sysconfig.get_path("data"),
        sysconfig.get_path("data", sysconfig.get_preferred_scheme("user")),
    ]
    return [checkout, *(Path(p) / SHARE for p in dict.fromkeys(prefixes) if p)]


def notebook_path(name: str) -> Path:
    """The notebook of a report (`coverage`, `execution`, `explore`) or a file name."""
    file_name = NOTEBOOKS.get(name, name)
    for directory in notebook_dirs():
        if (directory / file_name).is_file():
            return directory / file_name
    raise BackfillKitError(
        f"the notebook {file_name} is not installed (looked in {', '.join(map(str, notebook_dirs()))}); "
        "reinstall backfill-kit"
    )


# --- the two reports -----------------------------------------------------------------------


def render_coverage(
    spec_path: Path, start: date, end: date, out_dir: Path, *, kernel: str = DEFAULT_KERNEL, now: datetime | None = None
) -> Rendered:
    """Run coverage_audit.ipynb on the spec and range; write its HTML, notebook and the index.
    `spec_path` goes to the notebook as given: the kernel finds it by the same rule
    (`arguments.find_file`) in the same working directory."""
    from backfill_kit.spec.load import load_spec
    from backfill_kit.validation.validator import check_range
    from backfill_kit.warehouse import open_warehouse

    check_range(start, end)
    # A broken or missing spec is one clear message, before any kernel starts, and so is a
    # warehouse that is not there.
    spec = load_spec(find_file(spec_path, "the spec"))
    open_warehouse(spec).close()
    stamp = _stamp(now)
    meta = {
        "kind": "coverage",
        "spec": spec.name,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "generated_at": _generated_at(now),
    }
    compared = _compare_with_previous(spec, start, end, out_dir, meta)
    rendered = _render(
        "coverage",
        {"spec": str(spec_path), "start": start.isoformat(), "end": end.isoformat()},
        out_dir,
        f"coverage_{_slug(spec.name)}_{start}_{end}",
        stamp,
        meta,
        f"Coverage audit: {spec.name}, {start} .. {end}",
        kernel,
        prepare=compared.write,
    )
    return replace(rendered, changes=compared.changes)


@dataclass
class _Compared:
    """A coverage report's cells, and what changed since the previous report of its range:
    written beside the report before its notebook runs, which shows them."""

    meta: dict[str, Any]
    states: States
    changes: Changes

    def write(self, notebook: Path) -> dict[str, Any]:
        cells_file = notebook.with_suffix(CELLS_SUFFIX)
        write_cells_file(cells_file, self.meta, self.states, self.changes)
        self.meta["changes"] = self.changes.counts() if self.changes.previous else None
        return {"cells_file": str(cells_file.resolve())}


def _compare_with_previous(spec: Any, start: date, end: date, out_dir: Path, meta: dict[str, Any]) -> _Compared:
    from backfill_kit.validation.validator import validate

    states = cell_states(validate(spec, start, end).cells)
    found = previous_report(out_dir, spec.name, start, end, meta["generated_at"]) if out_dir.is_dir() else None
    changes = changes_between(found[1], states, found[0]) if found else Changes()
    return _Compared(meta, states, changes)


def render_execution(
    journal: Path, out_dir: Path, *, kernel: str = DEFAULT_KERNEL, now: datetime | None = None
) -> Rendered:
    """Run execution_log.ipynb on a runner journal; write its HTML, notebook and the index.
    `journal` goes to the notebook as given, like the coverage report's spec."""
    from backfill_kit.running.journal import read_journal

    hint = "a run writes it beside its plan (e.g. runs/plan.journal.jsonl for runs/plan.json)"
    found = find_file(journal, "the journal", hint=hint)
    if not found.exists():  # a pipe or a device: read_journal names it
        raise InputError(f"the journal {journal} does not exist; {hint}")
    events = read_journal(found).events  # a corrupt journal is one clear message too
    if not any(e.get("event") == Event.RUN_STARTED for e in events):
        raise InputError(f"the journal {journal} records no run yet; run the plan first")
    stamp = _stamp(now)
    from backfill_kit.running.steps import find_plan

    plan, _ = find_plan(found, events)
    span = f"_{plan.start}_{plan.end}" if plan else ""
    name = journal.name.removesuffix(".jsonl").removesuffix(".journal")
    meta = {"kind": "execution", "journal": str(journal), "generated_at": _generated_at(now)}
    if plan:
        meta.update(spec=plan.spec_name, start=plan.start.isoformat(), end=plan.end.isoformat())
    return _render(
        "execution",
        {"journal": str(journal)},
        out_dir,
        f"execution_{_slug(name)}{span}",
        stamp,
        meta,
        f"Backfill execution log: {journal}",
        kernel,
    )


def _generated_at(now: datetime | None) -> str:
    """When a report was made, to the millisecond as the journal's moments are: the index
    tells a report from the backfill that finished in the same second."""
    return (now or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="milliseconds")


def _stamp(now: datetime | None) -> datetime:
    return (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-") or "report"


def _render(
    kind: str,
    parameters: dict[str, Any],
    out_dir: Path,
    stem: str,
    stamp: datetime,
    meta: dict[str, Any],
    title: str,
    kernel: str,
    prepare: Callable[[Path], dict[str, Any]] | None = None,
) -> Rendered:
    """`prepare`: given the report's claimed notebook path, writes what goes beside it and
    returns more parameters for the notebook."""
    _require_notebook_packages()
    # papermill and nbconvert both import jupyter_client: imported from two threads at once, one
    # of them can find it half-initialised ("partially initialized module"), so they are
    # imported here, before the exporter's thread starts.
    _skip_iri_grammars()
    import nbconvert  # noqa: F401
    import papermill  # noqa: F401

    made = [d for d in (out_dir, *out_dir.parents) if not d.exists()]
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        notebook = _claim_name(out_dir, f"{stem}_{stamp:%Y%m%dT%H%M%SZ}")
    except OSError as exc:
        raise InputError(f"cannot write reports in {out_dir}: {exc.strerror or exc}; choose another --out-dir") from exc
    # The exporter is made while the kernel runs the notebook: this process only waits then
    # (and once the report is sure to run, so a refused one leaves no work behind).
    threading.Thread(target=_exporter, name="backfill-kit-exporter", daemon=True).start()
    try:
        if prepare is not None:
            parameters = {**parameters, **prepare(notebook)}
        executed = execute(
            notebook_path(kind), notebook, parameters, kernel=kernel, metadata={"title": title, "backfill_kit": meta}
        )
    except BaseException as exc:
        # Nothing ran, or the input was wrong (the message says how): leave nothing behind.
        if notebook.stat().st_size == 0 or isinstance(exc, InputError):
            notebook.unlink()
            notebook.with_suffix(CELLS_SUFFIX).unlink(missing_ok=True)
            for folder in made:  # innermost first
                if not any(folder.iterdir()):
                    folder.rmdir()
        raise
    if headline := headline_numbers(executed):
        executed.metadata["backfill_kit"]["headline"] = headline  # for the index, read from the HTML
    html_path = notebook.with_suffix(".html")
    _write_atomic(html_path, export_html(executed))
    return Rendered(html_path, notebook, write_index(out_dir))


def headline_numbers(notebook: Any) -> dict[str, Any] | None:
    """The numbers a report's headline cell displayed (`report.Headline`), if any."""
    from backfill_kit.reports.notebook import HEADLINE_MIMETYPE

    for cell in notebook.cells:
        for output in cell.get("outputs", ()):
            if HEADLINE_MIMETYPE in output.get("data", {}):
                return dict(output["data"][HEADLINE_MIMETYPE])
    return None


def _claim_name(out_dir: Path, name: str) -> Path:
    """A new report's notebook path, created empty so that no other report can take it: two
    reports of the same thing in the same second (a cron job and a person) get distinct names."""
    for n in range(1, 1000):
        candidate = out_dir / (name if n == 1 else f"{name}-{n}")
        try:
            with candidate.with_suffix(".ipynb").open("x"):
                return candidate.with_suffix(".ipynb")
        except FileExistsError:
            continue
    raise BackfillKitError(f"{out_dir} already holds 999 reports named {name}; remove some")


# --- papermill and nbconvert ---------------------------------------------------------------


def _require_notebook_packages() -> None:
    for module, package in (
        ("papermill", "papermill"),
        ("nbconvert", "nbconvert"),
        ("ipykernel", "ipykernel"),
        ("plotly", "plotly"),
        ("pandas", "pandas"),
    ):
        if importlib.util.find_spec(module) is None:
            raise MissingDependencyError(package, "notebooks", "backfill-kit report")


def execute(
    source: Path,
    output: Path,
    parameters: dict[str, Any],
    *,
    kernel: str = DEFAULT_KERNEL,
    metadata: dict[str, Any] | None = None,
) -> Any:
    """Run a notebook with papermill, in this process, and save it to `output`.

    The kernel talks over local IPC sockets rather than TCP (no ports opened, and no warning
    about unencrypted TCP on every run), and is stopped at once when the last cell is done:
    every output has arrived by then, and a polite shutdown only waits for the interpreter to
    tear down. A failing cell becomes one message naming the kept notebook; the toolkit's own
    errors raised in a cell keep their message as they are."""
    _skip_iri_grammars()
    import nbformat
    import papermill
    from traitlets.config import Config

    nb = nbformat.read(source, as_version=4)
    nb.metadata.update(metadata or {})
    config = Config()
    config.KernelManager.transport = "ipc"
    # The sockets go in a folder of this run's own: jupyter_client's default is kernel-ipc-N in
    # the working directory, where two reports started together pick the same N.
    with tempfile.TemporaryDirectory(prefix="backfill-kit-kernel-") as sockets:
        config.KernelManager.ip = str(Path(sockets) / "kernel")
        return _run(papermill, nb, source, output, parameters, kernel, config)


def _skip_iri_grammars() -> None:
    """Keep jsonschema from compiling rfc3987-syntax's grammars (1.3-2.2 s at import) in a
    process that has not imported jsonschema yet. jsonschema uses that package, when installed
    (JupyterLab's stack brings it), only to check "iri" formats, which no notebook schema has."""
    if "jsonschema" not in sys.modules:
        sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]  # None: "not installed"


def _run(
    papermill: Any, nb: Any, source: Path, output: Path, parameters: dict[str, Any], kernel: str, config: Any
) -> Any:
    try:
        return papermill.execute_notebook(
            nb,
            str(output),
            parameters=parameters,
            kernel_name=kernel,
            progress_bar=False,
            request_save_on_cell_execute=False,
            config=config,
            shutdown_kernel="immediate",
        )
    except papermill.PapermillExecutionError as exc:
        raise _cell_failure(exc, source, output) from None
    except Exception as exc:  # the kernel could not start: a missing or broken kernelspec
        if type(exc).__module__.startswith(("jupyter_client", "papermill")):
            raise BackfillKitError(
                f"could not run {source.name} with the kernel {kernel!r}: {exc}. "
                "Install ipykernel in this environment or pass --kernel NAME"
            ) from exc
        raise


def _cell_failure(exc: Any, source: Path, output: Path) -> BackfillKitError:
    if exc.ename in _toolkit_errors():
        return InputError(str(exc.evalue))
    if exc.ename == "ModuleNotFoundError" and "backfill_kit" in str(exc.evalue):
        return BackfillKitError(
            f"the kernel that ran {source.name} has no backfill_kit: its python is not this one. "
            "Pass --kernel with a kernel of this environment (python -m ipykernel install --user --name NAME)"
        )
    return BackfillKitError(
        f"{source.name} failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue}. "
        f"The executed notebook, with the traceback, is {output}"
    )


def _toolkit_errors() -> set[str]:
    from backfill_kit import errors

    return set(errors.__all__) - {"Problem"}


# The lab template without anything fetched from a CDN: require.js, MathJax and mermaid are
# not needed (figures use the plotly.js embedded by the notebook). The report's own small
# stylesheet replaces JupyterLab's 250 kB one. The meta tag lets the index read a report's
# kind and range from its first kilobytes.
TEMPLATE = (
    """{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}
<meta name="generator" content="backfill-kit">
<meta name=\""""
    + META
    + """\" content='{{ nb.metadata.get("backfill_kit", {}) | tojson }}'>
{%- endblock html_head_js -%}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
{%- block notebook_css -%}
<style type="text/css">
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2328;margin:0;background:#fff}
main{max-width:1400px;margin:0 auto;padding:16px 24px 48px}
h1,h2,h3,h4{line-height:1.25}
a.anchor-link{display:none}
.jp-Cell{margin:0}
.jp-OutputArea-output{overflow-x:auto}
.jp-RenderedText pre,pre{font-family:ui-monospace,SFMono-Regular,Menlo,monospace}
.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]{background:#fff5f5}
code{background:#f6f8fa;padding:1px 4px;border-radius:4px}
</style>
{%- endblock notebook_css -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""
)


def export_html(notebook: Any) -> str:
    """The executed notebook as one HTML file: outputs only, code cells and prompts hidden."""
    body, _ = _exporter().from_notebook_node(notebook)
    return str(body)


_EXPORTER_LOCK = threading.Lock()


def _exporter() -> Any:
    """One exporter per process, template compiled: that takes longer than an export. Made once
    even when a warm-up thread and an export ask at the same time."""
    with _EXPORTER_LOCK:
        return _new_exporter()


@functools.cache
def _new_exporter() -> Any:
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(
        template_name="lab", exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True
    )
    exporter.raw_template = TEMPLATE
    exporter.template  # noqa: B018  # compiles the template now (a property)
    return exporter


# --- the index -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    html: Path
    meta: dict[str, Any]

    @property
    def notebook(self) -> Path:
        return self.html.with_suffix(".ipynb")

    @property
    def subject(self) -> str:
        span = f"{self.meta.get('spec', '?')}: {self.meta.get('start')} .. {self.meta.get('end')}"
        if self.meta.get("kind") == "coverage":
            return span
        journal = str(self.meta.get("journal", self.html.stem))
        return f"{span} (journal {journal})" if self.meta.get("start") else journal

    @property
    def numbers(self) -> str:
        """The headline in a few words: coverage in percent, or a backfill's outcome."""
        h = self.meta.get("headline") or {}
        if self.meta.get("kind") == "coverage" and "complete" in h:
            changed = self.meta.get("changes")
            since = (
                f"; since the previous: {changed['no_longer_complete']:,} no longer complete, "
                f"{changed['new_gaps']:,} new gaps, {changed['fixed']:,} fixed"
                if changed
                else ""
            )
            need = f"{plural(h['need_work'], 'cell')} {'needs' if h['need_work'] == 1 else 'need'} work"
            return f"{h['complete']} complete, {h['done']} done, {need}{since}"
        if self.meta.get("kind") == "execution" and "steps_text" in h:
            return f"{h['outcome']}: {h['steps_text']}"  # the steps counted as the runner counts them
        return "-"

    def overlaps(self, other: Entry) -> bool:
        """Both reports are about the same pipeline and overlapping dates."""
        a, b = self.meta, other.meta
        return (
            a.get("spec") == b.get("spec")
            and None not in (a.get("start"), b.get("start"))
            and str(a["start"]) <= str(b.get("end"))
            and str(b["start"]) <= str(a.get("end"))
        )


def backfill_moment(entry: Entry, entries: Sequence[Entry]) -> str:
    """Whether a coverage report was made before or after the backfills reported beside it:
    moments compared as times (a journal's '...:49.035+00:00' is after a report's '...:49+00:00',
    though as text it sorts before)."""
    made = _moment(entry.meta.get("generated_at")) if entry.meta.get("kind") == "coverage" else None
    if made is None:
        return "-"
    runs = sorted(
        t
        for e in entries
        if e.meta.get("kind") == "execution" and e.overlaps(entry)
        if (t := _moment((e.meta.get("headline") or {}).get("finished_at"))) is not None
    )
    after = [t for t in runs if t <= made]
    before = [t for t in runs if t > made]
    # Between two backfills, both are true: say both (a second `make demo` rebuilds the demo).
    said = [f"after the backfill that finished {after[-1]:%Y-%m-%d %H:%M:%S}"] if after else []
    said += [f"before the backfill that finished {before[0]:%Y-%m-%d %H:%M:%S}"] if before else []
    return "; ".join(said) or "-"


_NEVER = datetime.min.replace(tzinfo=UTC)  # a report whose moment is unknown sorts last


def _moment(value: object) -> datetime | None:
    """An ISO moment from a report's meta (UTC when it names no zone), or None."""
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def read_entry(path: Path) -> Entry:
    """A report's own description, from the meta tag near the top of its HTML (attributes in
    any order and quoting: nbconvert re-serialises the page)."""
    import html

    with path.open(encoding="utf-8", errors="replace") as f:
        head = f.read(4096)
    tag = re.search(r'<meta\s[^>]*name="' + META + r'"[^>]*>', head)
    content = re.search(r"""content=(?:'([^']*)'|"([^"]*)")""", tag.group(0)) if tag else None
    try:
        meta = parse_json(html.unescape(content.group(1) or content.group(2))) if content else {}
    except NotJson:  # not one of ours, or edited: listed without its description
        meta = {}
    return Entry(path, meta if isinstance(meta, dict) else {})


def write_index(out_dir: Path) -> Path:
    """index.html: every report in the folder, newest first, with its notebook."""
    import html

    entries = sorted(
        (read_entry(p) for p in out_dir.glob("*.html") if p.name != "index.html" and not odd_file(p)),
        key=lambda e: (_moment(e.meta.get("generated_at")) or _NEVER, e.html.name),
        reverse=True,
    )
    rows = "".join(
        "<tr>"
        f"<td>{html.escape(_shown(e.meta.get('generated_at')))}</td>"
        f"<td>{html.escape(str(e.meta.get('kind', '-')))}</td>"
        f"<td>{html.escape(e.subject)}</td>"
        f"<td>{html.escape(e.numbers)}</td>"
        f"<td>{html.escape(backfill_moment(e, entries))}</td>"
        f'<td><a href="{html.escape(e.html.name)}">{html.escape(e.html.name)}</a></td>'
        f"<td>{_notebook_link(e)}</td>"
        f"<td class=n>{e.html.stat().st_size / 1e6:.1f} MB</td>"
        "</tr>"
        for e in entries
    )
    page = _INDEX.format(
        count=plural(len(entries), "report"), rows=rows or '<tr><td colspan="8">No reports yet.</td></tr>'
    )
    index = out_dir / "index.html"
    _write_atomic(index, page)
    return index


def _shown(value: object) -> str:
    moment = _moment(value)
    return f"{moment:%Y-%m-%d %H:%M:%S}" if moment else "-"


def _notebook_link(entry: Entry) -> str:
    import html

    if not entry.notebook.exists():
        return "-"
    return f'<a href="{html.escape(entry.notebook.name)}">{html.escape(entry.notebook.name)}</a>'


_INDEX = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>backfill-kit reports</title>
<style>
body{{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#1f2328}}
table{{border-collapse:collapse}} th,td{{border-bottom:1px solid #d0d7de;padding:4px 10px;text-align:left}}
th{{background:#f6f8fa}} td.n{{text-align:right}}
</style></head>
<body><h1>backfill-kit reports</h1>
<p>{count}, newest first. Each HTML file is self-contained (open it offline, send it as
it is); the notebook beside it is the executed record, parameters included.</p>
<table><thead><tr><th>generated (UTC)</th><th>kind</th><th>what</th><th>headline</th><th>when</th><th>report</th>
<th>notebook</th><th>size</th></tr></thead>
<tbody>{rows}</tbody></table>
</body></html>
"""


def _write_atomic(path: Path, text: str) -> None:
    """Readers never see half a file; two writers at once each replace it whole."""
    write_output(path, text, what="the report", hint="choose another --out-dir")
