"""Timeline lanes: detections binned over video time, and ``job.plot()``.

A 1-hour video sampled at 5 frames a second has 18,000 sampled frames and can
have millions of detections; none of them go to the browser. :class:`Lanes`
bins them once into at most ``max_bins`` time bins (default 2000, never finer
than the sampling interval) and keeps, for every (lane, bin) that has any
detection, the **maximum confidence** in that bin. A minimum-confidence filter is
then exact at bin resolution: a bin is shown at threshold *c* iff some detection
in it has confidence >= *c*. What is drawn is bounded by ``max_lanes x max_bins``
whatever the video's length.
"""
from __future__ import annotations

import functools
import io
import re
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

__all__ = ["Lanes", "plot_timeline", "lane_color", "DEFAULT_MAX_BINS", "DEFAULT_MAX_LANES"]

DEFAULT_MAX_BINS = 2000
DEFAULT_MAX_LANES = 30

# tab20, reordered so neighbouring lanes get contrasting colours.
_PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
            "#7f7f7f", "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896",
            "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5"]


def plural(kind: str) -> str:
    """"face track" -> "face tracks", "celebrity" -> "celebrities"."""
    return kind[:-1] + "ies" if kind.endswith("y") and kind[-2:-1] not in "aeiou" else kind + "s"


def _natural(name: str):
    """Sort key: "face 2" before "face 10"."""
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", name)]


def lane_color(index: int) -> str:
    """The colour of the lane with global index ``index`` (same in plots and frame boxes)."""
    return _PALETTE[index % len(_PALETTE)]


@dataclass(repr=False)
class Lanes:
    """Detections binned per lane. Build with :meth:`from_detections`.

    ``names[i]`` is lane ``i`` (ordered by first appearance, then by name, so face
    track ``face 3`` is the third lane);
    ``pair_lane``, ``pair_bin``, ``pair_conf`` list every occupied (lane, bin) with
    its maximum confidence, sorted by lane then bin."""

    names: list[str]
    duration_ms: int
    bin_ms: float
    n_bins: int
    pair_lane: np.ndarray
    pair_bin: np.ndarray
    pair_conf: np.ndarray
    operation: str = ""
    lane_kind: str = "lane"
    title: str = ""
    _index: dict = field(default_factory=dict)

    def __post_init__(self):
        self._index = {name: i for i, name in enumerate(self.names)}

    def __repr__(self) -> str:
        return (f"Lanes({len(self.names)} {plural(self.lane_kind)}, {self.n_bins} bins of "
                f"{self.bin_ms:.0f} ms over {self.duration_ms / 1000:.1f} s)")

    def index(self, name: str) -> int:
        return self._index[name]

    @classmethod
    def from_detections(cls, det: pa.Table, duration_ms: int | None = None,
                        sample_interval_ms: float = 200.0, max_bins: int = DEFAULT_MAX_BINS,
                        **kw) -> "Lanes":
        ts = det.column("Timestamp").to_numpy().astype(np.int64) if det.num_rows else np.zeros(0, np.int64)
        if not duration_ms:
            duration_ms = int(ts.max()) + int(sample_interval_ms) if len(ts) else 1000
        duration_ms = max(int(duration_ms), int(ts.max()) + 1 if len(ts) else 1)
        bin_ms = max(float(sample_interval_ms), duration_ms / max_bins)
        n_bins = max(1, int(np.ceil(duration_ms / bin_ms)))
        if not det.num_rows:
            empty = np.zeros(0, np.int64)
            return cls([], duration_ms, bin_ms, n_bins, empty, empty, np.zeros(0, np.float32), **kw)
        lane_arr = det.column("Lane").combine_chunks().dictionary_encode()
        codes = lane_arr.indices.to_numpy().astype(np.int64)
        first_names = lane_arr.dictionary.to_pylist()
        conf = det.column("Confidence").to_numpy(zero_copy_only=False).astype(np.float64)
        conf = np.where(np.isnan(conf), 0.0, conf)
        bins = np.minimum((ts / bin_ms).astype(np.int64), n_bins - 1)
        key = codes * n_bins + bins
        order = np.argsort(key, kind="stable")
        key_sorted = key[order]
        starts = np.flatnonzero(np.r_[True, key_sorted[1:] != key_sorted[:-1]])
        max_conf = np.maximum.reduceat(conf[order], starts)
        ukey = key_sorted[starts]
        lane_code, lane_bin = ukey // n_bins, ukey % n_bins
        # Order lanes by first appearance (exact time, then face number or name).
        first_ts = np.full(len(first_names), np.iinfo(np.int64).max, np.int64)
        np.minimum.at(first_ts, codes, ts)
        rank = np.array(sorted(range(len(first_names)), key=lambda i: (first_ts[i], _natural(first_names[i]))),
                        np.int64)
        new_code = np.empty_like(rank)
        new_code[rank] = np.arange(len(rank))
        lane_code = new_code[lane_code]
        order2 = np.lexsort((lane_bin, lane_code))
        return cls([first_names[i] for i in rank], duration_ms, bin_ms, n_bins,
                   lane_code[order2], lane_bin[order2], max_conf[order2].astype(np.float32), **kw)

    # -- filtering -----------------------------------------------------------------
    def presence(self, min_confidence: float = 0.0) -> np.ndarray:
        """Occupied bins per lane at this confidence threshold."""
        keep = self.pair_conf >= min_confidence
        return np.bincount(self.pair_lane[keep], minlength=len(self.names))

    def matching(self, text: str = "") -> list[str]:
        """Lane names matching a filter: comma-separated exact names (case-insensitive;
        ``face 1`` is face 1 only), ``*`` / ``?`` wildcards (``face 1*``), or ``/regex/``."""
        import fnmatch

        text = (text or "").strip()
        if not text:
            return list(self.names)
        if len(text) > 1 and text.startswith("/") and text.endswith("/"):
            try:
                rx = re.compile(text[1:-1], re.IGNORECASE)
            except re.error:
                return []
            return [n for n in self.names if rx.search(n)]
        parts = [p.strip().lower() for p in text.split(",") if p.strip()]
        return [n for n in self.names
                if any(fnmatch.fnmatchcase(n.lower(), p) if any(c in p for c in "*?[") else n.lower() == p
                       for p in parts)]

    def visible(self, min_confidence: float = 0.0, lanes: list[str] | tuple | None = None,
                text: str = "", max_lanes: int = DEFAULT_MAX_LANES) -> list[str]:
        """The lanes to draw: chosen ``lanes`` (or all matching ``text``) that have at
        least one bin at ``min_confidence``; beyond ``max_lanes``, the longest-present
        ones. Shown in lane order (first appearance)."""
        pres = self.presence(min_confidence)
        candidates = list(lanes) if lanes else self.matching(text)
        shown = [n for n in candidates if n in self._index and pres[self._index[n]] > 0]
        shown.sort(key=lambda n: (-pres[self._index[n]], self._index[n]))
        return sorted(shown[:max_lanes], key=self._index.__getitem__)

    def matrix(self, lanes: list[str], min_confidence: float = 0.0) -> np.ndarray:
        """(len(lanes), n_bins) float32 of max confidence, NaN where absent or below threshold."""
        out = np.full((len(lanes), self.n_bins), np.nan, np.float32)
        if not lanes:
            return out
        row_of = np.full(len(self.names), -1, np.int64)
        for r, name in enumerate(lanes):
            row_of[self._index[name]] = r
        rows = row_of[self.pair_lane]
        keep = (rows >= 0) & (self.pair_conf >= min_confidence)
        out[rows[keep], self.pair_bin[keep]] = self.pair_conf[keep]
        return out

    def runs(self, lane: str, min_confidence: float = 0.0) -> list[tuple[float, float]]:
        """(start_s, width_s) of contiguous present bins of one lane."""
        i = self._index[lane]
        lo, hi = np.searchsorted(self.pair_lane, [i, i + 1])
        b = self.pair_bin[lo:hi][self.pair_conf[lo:hi] >= min_confidence]
        if len(b) == 0:
            return []
        breaks = np.flatnonzero(np.diff(b) > 1)
        starts = np.r_[b[0], b[breaks + 1]]
        ends = np.r_[b[breaks], b[-1]] + 1
        s = starts * self.bin_ms / 1000.0
        e = np.minimum(ends * self.bin_ms, self.duration_ms) / 1000.0
        return list(zip(s.tolist(), (e - s).tolist()))


@functools.lru_cache(maxsize=1)
def _figure_class():
    from matplotlib.figure import Figure

    class TimelineFigure(Figure):
        """A Figure that shows itself as a PNG in notebooks even when pyplot (and with
        it the inline backend's display hook) was never imported."""

        def _repr_png_(self) -> bytes:
            buf = io.BytesIO()
            self.savefig(buf, format="png")
            return buf.getvalue()

    return TimelineFigure


def plot_timeline(lanes: Lanes, *, min_confidence: float = 0.0, lane_names: list[str] | None = None,
                  text: str = "", max_lanes: int = DEFAULT_MAX_LANES, cursor_ms: int | None = None,
                  width_in: float = 10.0, dpi: int = 100, title: str | None = None):
    """A matplotlib ``Figure`` with one horizontal lane per face track / label /
    celebrity / person over video time (seconds). Does not use pyplot, so nothing
    is left open and a notebook shows the returned figure once."""
    from matplotlib.ticker import FuncFormatter

    shown = lanes.visible(min_confidence, lane_names, text, max_lanes)
    height = 1.1 + 0.3 * max(len(shown), 1)
    fig = _figure_class()(figsize=(width_in, height), dpi=dpi, layout="constrained")
    ax = fig.add_subplot()
    for row, name in enumerate(shown):
        ax.broken_barh(lanes.runs(name, min_confidence), (row - 0.38, 0.76),
                       facecolors=lane_color(lanes.index(name)), label=name)
    duration_s = lanes.duration_ms / 1000.0
    ax.set_xlim(0, duration_s)
    ax.set_ylim(len(shown) - 0.5 if shown else 0.5, -0.5)
    ax.set_yticks(range(len(shown)), shown)
    ax.set_ylabel(lanes.lane_kind)
    if duration_s >= 120:
        from matplotlib.ticker import MultipleLocator

        step = next((s for s in (30, 60, 120, 300, 600, 900, 1800, 3600, 7200) if duration_s / s <= 10), 7200)
        ax.xaxis.set_major_locator(MultipleLocator(step))
        ax.xaxis.set_major_formatter(FuncFormatter(
            lambda x, _: f"{int(x // 3600)}:{int(x % 3600 // 60):02d}:{int(x % 60):02d}" if duration_s >= 3600
            else f"{int(x // 60)}:{int(x % 60):02d}"))
        ax.set_xlabel("time (h:mm:ss)" if duration_s >= 3600 else "time (m:ss)")
    else:
        ax.set_xlabel("time (s)")
    ax.grid(axis="x", alpha=0.3)
    hidden = len(lanes.matching(text) if not lane_names else lane_names) - len(shown)
    subtitle = f"min confidence {min_confidence:g}"
    if hidden > 0:
        subtitle += f"; {len(shown)} of {len(shown) + hidden} {plural(lanes.lane_kind)} shown"
    ax.set_title(f"{title if title is not None else lanes.title}\n{subtitle}", fontsize=10, loc="left")
    if not shown:
        ax.text(0.5, 0.5, "nothing at this confidence", transform=ax.transAxes, ha="center",
                va="center", color="0.4")
    if cursor_ms is not None:
        ax.axvline(cursor_ms / 1000.0, color="red", lw=1.5)
    return fig
