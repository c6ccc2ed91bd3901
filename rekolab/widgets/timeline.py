"""``job.timeline()``: lanes over video time, filters, and a frame viewer.

    tl = job.timeline()                  # an ipywidgets VBox; display it in a cell
    tl.min_confidence.value = 80         # or drag the slider
    tl.lane_filter.value = "face 1, face 2"   # exact names; "face 1*" or /regex/ for patterns
    tl.viewer.time.value = 4.2           # the frame at 4.2 s (seconds) with boxes and names
    tl.visible_lanes                     # what the timeline shows now

The lanes are drawn by matplotlib (the same drawing as ``job.plot()``) into one
PNG; moving the time only redraws a cursor on the cached picture. What reaches
the browser is that PNG, the current frame's PNG and at most ``max_options``
lane names, whatever the length of the video (see :mod:`rekolab.widgets.lanes`).
"""
from __future__ import annotations

import io

import ipywidgets as widgets
import numpy as np

from .detections import JobView
from .lanes import DEFAULT_MAX_BINS, DEFAULT_MAX_LANES, plot_timeline, plural
from .viewer import FrameViewer
from .static_fallback import StaticFallback, stack_pngs

__all__ = ["Timeline"]


class Timeline(StaticFallback, widgets.VBox):
    """One lane per face track / label / celebrity / matched person, a minimum
    confidence slider, a lane filter, and a frame viewer under it."""

    def __init__(self, view: JobView, *, min_confidence: float = 0.0, lanes: list[str] | None = None,
                 max_lanes: int = DEFAULT_MAX_LANES, max_bins: int = DEFAULT_MAX_BINS,
                 max_options: int = 200, width_px: int = 960, **kwargs):
        self.view = view
        self.lanes = view.lanes(max_bins)
        self.max_lanes = max_lanes
        self.max_options = max_options
        self.width_px = width_px
        self.visible_lanes: list[str] = []
        self._quiet = False
        self._base: np.ndarray | None = None  # the rendered lanes, RGB
        self._x_of = None  # time (ms) -> pixel column
        self._y_span = (0, 0)
        self.min_confidence = widgets.FloatSlider(
            value=float(min_confidence), min=0.0, max=100.0, step=0.5, description="min conf",
            continuous_update=False, readout_format=".1f")
        self.lane_filter = widgets.Text(
            value="", placeholder="lanes: face 1, face 2 · face 1* · /regex/", description="lanes",
            continuous_update=False)
        self.lane_select = widgets.SelectMultiple(
            options=[], value=(), rows=4, description="only", layout=widgets.Layout(width="22em"))
        self.image = widgets.Image(format="png", layout=widgets.Layout(max_width=f"{width_px}px", width="100%",
                                                                      height="auto"))
        self.status = widgets.HTML()
        self.viewer = FrameViewer(view, min_confidence=min_confidence)
        self._refresh_options()
        if lanes:
            self.lane_select.value = tuple(n for n in lanes if n in self.lane_select.options)
        self.min_confidence.observe(self._on_filter, names="value")
        self.lane_filter.observe(self._on_text, names="value")
        self.lane_select.observe(self._on_filter, names="value")
        self.viewer.time.observe(lambda _: self._draw_cursor(), names="value")
        header = widgets.HTML(
            f"<b>{view.operation}</b> · {view.video_name or '(video)'} · "
            f"{view.duration_ms / 1000:.1f} s · {view.table.num_rows} result rows · "
            f"{len(self.lanes.names)} {plural(self.lanes.lane_kind)}")
        # Wraps under 1024 px (JupyterLab with the file browser open leaves ~700 px).
        controls = widgets.HBox([widgets.VBox([self.min_confidence, self.lane_filter]), self.lane_select],
                                layout=widgets.Layout(flex_flow="row wrap"))
        super().__init__([header, controls, self.image, self.status, self.viewer], **kwargs)
        self.update()

    def __repr__(self) -> str:
        return (f"Timeline({self.view.operation}, {len(self.visible_lanes)} of {len(self.lanes.names)} "
                f"{plural(self.lanes.lane_kind)} shown, min_confidence={self.min_confidence.value:g})")

    # -- events ----------------------------------------------------------------------
    def _refresh_options(self) -> None:
        matching = self.lanes.matching(self.lane_filter.value)
        pres = self.lanes.presence(self.min_confidence.value)
        present = [n for n in matching if pres[self.lanes.index(n)] > 0][: self.max_options]
        keep = tuple(v for v in self.lane_select.value if v in present)
        self._quiet = True  # changing options resets the selection: one update, not three
        try:
            self.lane_select.options = present
            self.lane_select.value = keep
        finally:
            self._quiet = False

    def _on_text(self, _change) -> None:
        if self._quiet:
            return
        self._refresh_options()
        self.update()

    def _on_filter(self, _change) -> None:
        if self._quiet:
            return
        if _change is not None and _change.get("owner") is self.min_confidence:
            self._refresh_options()
        self.update()

    # -- drawing ---------------------------------------------------------------------
    def update(self) -> None:
        """Recompute the visible lanes, redraw the lanes and the frame."""
        chosen = list(self.lane_select.value) or None
        self.visible_lanes = self.lanes.visible(self.min_confidence.value, chosen,
                                                self.lane_filter.value, self.max_lanes)
        fig = plot_timeline(self.lanes, min_confidence=self.min_confidence.value, lane_names=chosen,
                            text=self.lane_filter.value, max_lanes=self.max_lanes,
                            width_in=self.width_px / 100, dpi=100)
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        self._base = np.asarray(canvas.buffer_rgba())[:, :, :3].copy()
        ax = fig.axes[0]
        height = self._base.shape[0]
        x0, x1 = ax.transData.transform([(0, 0), (self.lanes.duration_ms / 1000.0, 0)])[:, 0]
        self._x_of = lambda ms: x0 + (x1 - x0) * ms / max(self.lanes.duration_ms, 1)
        self._y_span = (int(height - ax.bbox.y1), int(height - ax.bbox.y0))
        total = len(self.lanes.matching(self.lane_filter.value) if not chosen else chosen)
        self.status.value = (f"{len(self.visible_lanes)} of {total} {plural(self.lanes.lane_kind)} shown "
                             f"(at most {self.max_lanes}; {self.lanes.n_bins} bins of "
                             f"{self.lanes.bin_ms / 1000:.2f} s)")
        # The frame shows every lane the filters pass, also those beyond the lane cap.
        text = self.lane_filter.value.strip()
        self.viewer.set_filter(chosen or (self.lanes.matching(text) if text else None), self.min_confidence.value)
        self._draw_cursor()

    def _draw_cursor(self) -> None:
        if self._base is None:
            return
        from PIL import Image

        img = self._base.copy()
        t = self.viewer.shown_timestamp_ms if self.viewer.shown_timestamp_ms is not None else self.viewer.time.value * 1000
        x = int(round(self._x_of(t)))
        y0, y1 = self._y_span
        if 0 <= x < img.shape[1]:
            img[y0:y1, max(x - 1, 0):x + 1] = (220, 0, 0)
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG", compress_level=3)
        self.cursor_x = x
        self.image.value = buf.getvalue()

    def payload_bytes(self) -> int:
        """Bytes of widget state this timeline sends to the browser (JSON + binary
        buffers over all its widgets): bounded by the lane and bin caps, not by the
        number of result rows."""
        import json

        from ipywidgets.widgets.widget import _remove_buffers

        total, seen, stack = 0, set(), [self]
        while stack:
            w = stack.pop()
            if id(w) in seen:
                continue
            seen.add(id(w))
            state, _, buffers = _remove_buffers(w.get_state())
            total += len(json.dumps(state, default=str)) + sum(len(memoryview(b).cast("B")) for b in buffers)
            for value in w.keys:
                child = getattr(w, value, None)
                items = child if isinstance(child, (list, tuple)) else [child]
                stack.extend(c for c in items if isinstance(c, widgets.Widget))
        return total

    def _static_png(self) -> bytes:
        """The lanes (with the cursor) over the current frame: a picture for saved notebooks."""
        return stack_pngs([self.image.value, self.viewer.image.value])
