"""The explorer's heatmap as a widget that tells the kernel which cell was clicked.

An anywidget: a few lines of JavaScript that draw the figure (`figures.coverage_heatmap`, plain
plotly.js data) with the plotly.js the reports embed (vendored; sent once per widget, and
loaded once per page), redraw it when the kernel sends another, keep it as wide as its cell,
and send back the row and column of a click. plotly.py's own FigureWidget was tried: in
JupyterLab 4 it drew at a fixed 700 px until the window was resized, and rebuilt its figure
through plotly.py's objects.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from backfill_kit.errors import MissingDependencyError

__all__ = ["heatmap_widget"]

_ESM = """
function plotly(source) {
  if (!window.Plotly) {  // the reports' bundle sets window.Plotly; a page loads it once
    const script = document.createElement("script");
    script.textContent = source;
    document.head.appendChild(script);
  }
  return window.Plotly;
}

export default {
  render({ model, el }) {
    const Plotly = plotly(model.get("plotly_js"));
    el.style.width = "100%";
    let listening = false;
    const draw = () => {
      const figure = model.get("figure");
      el.style.height = `${figure.layout.height}px`;  // never 0 px while it draws
      return Plotly.react(el, figure.data, figure.layout, figure.config).then(() => {
        if (listening) return;
        listening = true;
        el.on("plotly_click", (event) => {
          const point = event.points[0];
          const clicks = (model.get("clicked")[2] || 0) + 1;  // the same cell twice is still a change
          model.set("clicked", [point.pointNumber[0], point.pointNumber[1], clicks]);
          model.save_changes();
        });
      });
    };
    draw();
    model.on("change:figure", draw);
    const resized = new ResizeObserver(() => Plotly.Plots.resize(el));
    resized.observe(el);
    return () => { resized.disconnect(); Plotly.purge(el); };
  },
};
"""


def heatmap_widget(figure: dict[str, Any]) -> Any:
    """A heatmap widget drawing `figure`; its `clicked` is [row, column, clicks so far]."""
    from backfill_kit.reports.figures import plotly_js

    return _widget_class()(figure=figure, plotly_js=plotly_js())


@cache
def _widget_class() -> type:
    try:
        import anywidget
    except ImportError as exc:
        raise MissingDependencyError("anywidget", "notebooks", "the explorer's heatmap") from exc
    import traitlets

    class Heatmap(anywidget.AnyWidget):
        _esm = _ESM
        plotly_js = traitlets.Unicode().tag(sync=True)
        figure = traitlets.Dict().tag(sync=True)
        clicked: Any = traitlets.List([]).tag(sync=True)

    return Heatmap
