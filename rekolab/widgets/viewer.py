"""The frame viewer: pick a time, see that frame with the results' boxes and names.

    viewer = FrameViewer(JobView.from_job(job))
    viewer.time.value = 4.2           # seconds; or drag the slider (one frame per arrow key), or ◀ / ▶
    viewer.boxes                      # what is drawn: lane, text, box, confidence

Only the current frame travels to the browser (one PNG, at most 960 px wide).
When a result timestamp lies within half a sampling interval of the chosen time,
the viewer snaps to that analysed frame and draws its boxes; otherwise it shows
the frame at the chosen time with no boxes. Either way the slider moves to the
shown frame's own time, so the time read is the frame's.
"""
from __future__ import annotations

import html

import ipywidgets as widgets
import numpy as np

from .detections import JobView
from .frames import blank_frame, draw_boxes, to_png
from .lanes import lane_color
from .static_fallback import StaticFallback

__all__ = ["FrameViewer"]


class FrameViewer(StaticFallback, widgets.VBox):
    """A frame at a chosen time with boxes and names drawn (an ipywidgets VBox)."""

    def __init__(self, view: JobView, *, lanes: list[str] | None = None, min_confidence: float = 0.0,
                 max_width: int = 960, **kwargs):
        self.view = view
        self.max_width = max_width
        self._lanes = None if lanes is None else set(lanes)
        self._min_confidence = float(min_confidence)
        self.boxes: list[dict] = []
        self.frame_labels: list[str] = []
        self.shown_timestamp_ms: int | None = None
        self.frame_index: int | None = None
        duration = max(view.duration_ms, int(view.timestamps()[-1]) if len(view.timestamps()) else 0, 1)
        fps = float(view.video_metadata.get("FrameRate") or 25.0)
        self.time = widgets.FloatSlider(value=0.0, min=0.0, max=duration / 1000.0, step=1.0 / fps,
                                        description="time (s)", readout_format=".3f",
                                        continuous_update=False,
                                        layout=widgets.Layout(width="auto", flex="1 1 auto", min_width="12em"))
        self._snapping = False
        self.prev_button = widgets.Button(description="◀", tooltip="previous frame with detections",
                                          layout=widgets.Layout(width="3em"))
        self.next_button = widgets.Button(description="▶", tooltip="next frame with detections",
                                          layout=widgets.Layout(width="3em"))
        self.image = widgets.Image(format="png", layout=widgets.Layout(max_width=f"{max_width}px", width="100%",
                                                                      height="auto"))
        self.caption = widgets.HTML()
        self.time.observe(self._on_time, names="value")
        self.prev_button.on_click(lambda _: self.step(-1))
        self.next_button.on_click(lambda _: self.step(+1))
        self.note = widgets.HTML()
        super().__init__([widgets.HBox([self.prev_button, self.time, self.next_button],
                                       layout=widgets.Layout(width="100%")),
                          self.note, self.image, self.caption], **kwargs)
        self.render()

    def _on_time(self, _change) -> None:
        if not self._snapping:
            self.render()

    def _snap_slider(self, shown_ms: int) -> None:
        """Move the slider to the shown frame's time without rendering again."""
        if abs(self.time.value * 1000.0 - shown_ms) >= 0.5:
            self._snapping = True
            try:
                self.time.value = shown_ms / 1000.0
            finally:
                self._snapping = False

    # -- filters ---------------------------------------------------------------------
    def set_filter(self, lanes: list[str] | None = None, min_confidence: float | None = None) -> None:
        """Draw only ``lanes`` (None: all) at or above ``min_confidence``; re-renders."""
        self._lanes = None if lanes is None else set(lanes)
        if min_confidence is not None:
            self._min_confidence = float(min_confidence)
        self.render()

    def _keep(self, rows) -> np.ndarray:
        conf = rows.column("Confidence").to_numpy(zero_copy_only=False)
        keep = ~(np.nan_to_num(conf, nan=0.0) < self._min_confidence)
        if self._lanes is not None:
            lanes = rows.column("Lane").to_pylist()
            keep &= np.array([lane in self._lanes for lane in lanes], bool)
        return keep

    def _has_visible(self, timestamp_ms: int) -> bool:
        rows = self.view.rows_at(timestamp_ms)
        return bool(rows.num_rows and self._keep(rows).any())

    # -- navigation ------------------------------------------------------------------
    def step(self, direction: int) -> int | None:
        """Jump to the previous (-1) or next (+1) result timestamp with a visible box
        or label; returns it (None at either end)."""
        uts = self.view.timestamps()
        here = self.shown_timestamp_ms if self.shown_timestamp_ms is not None else int(self.time.value * 1000)
        if direction > 0:
            candidates = uts[uts > here]
        else:
            candidates = uts[uts < here][::-1]
        for ts in candidates[:5000]:
            if self._has_visible(int(ts)):
                self.note.value = ""
                self.time.value = int(ts) / 1000.0
                return int(ts)
        where = "later" if direction > 0 else "earlier"
        self.note.value = (f"<span style='color:#a60'>no {where} frame with a visible box or label "
                           f"(filters: min confidence {self._min_confidence:g}"
                           + (f", {len(self._lanes)} lanes" if self._lanes is not None else "") + ")</span>")
        return None

    # -- drawing ---------------------------------------------------------------------
    def render(self) -> None:
        t = int(round(self.time.value * 1000))
        snapped = self.view.nearest_timestamp(t)
        shown = snapped if snapped is not None else t
        boxes, labels = [], []
        if snapped is not None:
            rows = self.view.rows_at(snapped)
            lanes_obj = self.view.lanes()
            for row, keep in zip(rows.to_pylist(), self._keep(rows)):
                if not keep:
                    continue
                conf = row["Confidence"]
                text = row["Lane"] if conf is None else f"{row['Lane']} {conf:.0f}"
                color = lane_color(lanes_obj.index(row["Lane"]))
                if row["Left"] is None:
                    labels.append((row["Lane"], conf, color))
                    continue
                boxes.append({"Lane": row["Lane"], "Category": row["Category"], "Confidence": conf,
                              "Left": row["Left"], "Top": row["Top"], "Width": row["Width"],
                              "Height": row["Height"], "text": text, "color": color})
            boxed = {b["Lane"] for b in boxes}  # a label with instance boxes is not listed again
            labels = [entry for entry in labels if entry[0] not in boxed]
        source = self.view.source
        if source is not None:
            self.frame_index = source.index_at(shown)
            frame = source.frame(index=self.frame_index)
        else:
            self.frame_index = None
            w, h = self.view.frame_size
            frame = blank_frame(w, h, self.view._source_error or "video not available")
        self.boxes = boxes
        self.frame_labels = [name for name, _, _ in labels]
        if source is not None:
            shown = int(source.timestamps_ms[self.frame_index]) if snapped is None else shown
        self.shown_timestamp_ms = shown
        self._snap_slider(shown)
        tags = [(n if cf is None else f"{n} {cf:.0f}", c) for n, cf, c in labels]
        self.image.value = to_png(draw_boxes(frame, boxes, self.max_width, tags=tags))
        parts = [f"<b>{shown / 1000:.3f} s</b> ({shown} ms"
                 + (f", frame {self.frame_index}" if self.frame_index is not None else "") + ")"]
        if snapped is None:
            parts.append("not a sampled frame with results")
        else:
            parts.append(f"{len(boxes)} box{'es' if len(boxes) != 1 else ''}")
        if labels:
            parts.append("labels without boxes: " + ", ".join(
                f"<span style='color:{c}'>{html.escape(n)}</span>"
                + (f" {cf:.0f}" if cf is not None else "") for n, cf, c in labels[:40]))
        self.caption.value = " · ".join(parts)

    def _static_png(self) -> bytes:
        return bytes(self.image.value)
