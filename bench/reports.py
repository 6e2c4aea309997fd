"""Benchmark: the four-season coverage report end to end, next to a trivial-notebook floor.

    python bench/reports.py [--repeat N] [--check] [--keep DIR]

1. Report: `render_coverage` on the demo warehouse, 2021-10-19 .. 2025-06-22 (papermill runs
   coverage_audit.ipynb in a fresh kernel, then the HTML export and the index, all in this
   process, as `backfill-kit report coverage` does).
2. Floor: papermill on a three-cell notebook (a parameter, an addition, a display) and its HTML
   export through the same code path: the least a papermill report can cost on this machine.
Repetitions are interleaved so that both see the same background load; each figure is the
median after one warm-up of each. Targets: report median < 3 s, and < floor + 1.5 s.
The demo warehouse is built first (untimed). Exit 0 regardless, unless --check is given and a
target is missed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import nbformat

from backfill_kit.demo import init_demo
from backfill_kit.reports.render import execute, export_html, render_coverage, write_index

START, END = date(2021, 10, 19), date(2025, 6, 22)


def trivial_notebook(path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("y = x + 1"),
        nbformat.v4.new_code_cell("y"),
    ]
    for i, cell in enumerate(nb.cells):
        cell.id = f"c{i}"
    nbformat.write(nb, path)
    return path


def floor_once(source: Path, out: Path) -> float:
    began = time.perf_counter()
    executed = execute(source, out / "trivial.ipynb", {"x": 2})
    (out / "trivial.html").write_text(export_html(executed), encoding="utf-8")
    write_index(out)
    return time.perf_counter() - began


def report_once(spec: Path, out: Path) -> tuple[float, int]:
    began = time.perf_counter()
    rendered = render_coverage(spec, START, END, out)
    return time.perf_counter() - began, rendered.html.stat().st_size


def interleaved(repeat: int, a: Callable[[], float], b: Callable[[], float]) -> tuple[list[float], list[float]]:
    a(), b()  # warm-up: imports, the exporter's compiled template, the OS file cache
    times_a, times_b = [], []
    for _ in range(repeat):
        times_a.append(a())
        times_b.append(b())
    return times_a, times_b


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--keep", type=Path, help="Write the reports here instead of a temporary folder.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        out = args.keep or work / "reports"
        built = time.perf_counter()
        spec = init_demo(work / "demo")
        print(f"demo warehouse built in {time.perf_counter() - built:.1f} s (not measured)")
        source = trivial_notebook(work / "trivial.ipynb")
        sizes: list[int] = []

        def report() -> float:
            seconds, size = report_once(spec, out)
            sizes.append(size)
            return seconds

        reports, floors = interleaved(args.repeat, report, lambda: floor_once(source, work))
    return summarize(args, reports, floors, sizes[-1])


def summarize(args: argparse.Namespace, reports: list[float], floors: list[float], size: int) -> int:
    report, floor = statistics.median(reports), statistics.median(floors)
    rows = [
        ("coverage report, four seasons (papermill + HTML)", f"{report:.3f} s", "< 3 s", report < 3.0),
        ("  minus the trivial-notebook floor", f"{report - floor:.3f} s", "< 1.5 s", report - floor < 1.5),
    ]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"backfill-kit reports bench: median of {args.repeat} after 1 warm-up, interleaved; "
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {load:.2f}"
    )
    print(
        f"floor: papermill on a three-cell notebook + its HTML export: {floor:.3f} s "
        f"(all: {', '.join(f'{t:.2f}' for t in floors)})"
    )
    print(f"report runs: {', '.join(f'{t:.2f}' for t in reports)}; HTML {size / 1e6:.2f} MB")
    for name, measured, target, ok in rows:
        print(f"{name:<52} {measured:>9}  {target:<8} {'PASS' if ok else 'MISS'}")
    return 1 if args.check and not all(r[-1] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
