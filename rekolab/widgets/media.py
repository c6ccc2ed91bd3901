"""How a job's video reaches the browser, and a still picture of a view's state.

:func:`video_for_browser` picks, in order:

1. ``url=`` given by the caller (any URL the browser can fetch);
2. **the Jupyter server's files endpoint** when the video lies under the root folder
   of a Jupyter server running on this machine (``<base_url>files/<path>``): the
   browser streams it with HTTP range requests, seeks anywhere, and nothing goes
   through the widget comm, whatever the video's length;
3. **the bytes themselves** as one binary buffer of the widget (no base64) when
   the file is at most ``max_bytes`` (default 48 MB); the browser plays it from a
   Blob URL;
4. otherwise **a low-resolution proxy**: PyAV transcodes the video once to H.264
   at 426 px wide, 12 frames/s and ~150 kbit/s, with a key frame every second
   (for seeking), cached under ``<rekolab home>/cache/proxies/``; its bytes go as
   in 3. Boxes are ratios of the frame, so they land in the same places. A proxy
   larger than ``max_bytes`` is not sent; the player then draws the boxes on a
   blank stage and says how to serve the video (2 or 1).

Costs (what the comm carries, and what the kernel and the browser hold):

===========================  =========================  ==========================
video                        files endpoint (2)         bytes (3) / proxy (4)
===========================  =========================  ==========================
9 s 640x360 clip (0.6 MB)    0 (range requests)         0.6 MB once
10 min, 1080p at 5 Mbit/s    0                          proxy ~11 MB (~2 min to make
                                                        on 2 cores, once)
1 hour, 1080p at 5 Mbit/s    0                          proxy ~68 MB, over the default
                                                        cap: serve it (2) or raise
                                                        ``max_bytes``
===========================  =========================  ==========================
"""
from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["BrowserVideo", "video_for_browser", "make_proxy", "jupyter_files_url", "DEFAULT_MAX_BYTES",
           "still_picture", "video_start_s"]

DEFAULT_MAX_BYTES = 48 * 1024 * 1024
PROXY_WIDTH = 426
PROXY_FPS = 12
PROXY_BITRATE = 150_000

_MIME = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/mp4", ".webm": "video/webm",
         ".mkv": "video/webm", ".ogv": "video/ogg"}


@dataclass
class BrowserVideo:
    """What the player gets: a URL, or bytes with their MIME type, and how."""

    how: str  # "url", "jupyter-files", "bytes", "proxy", "none"
    url: str = ""
    data: bytes = b""
    mime: str = "video/mp4"
    note: str = ""

    @property
    def comm_bytes(self) -> int:
        return len(self.data)


def jupyter_files_url(path: Path) -> str | None:
    """``<base_url>files/<relative path>`` of a Jupyter server on this machine whose
    root folder holds ``path``, else None."""
    try:
        from jupyter_server.serverapp import list_running_servers
    except ImportError:
        return None
    path = Path(path).resolve()
    try:
        servers = list(list_running_servers())
    except Exception:
        return None
    from urllib.parse import quote

    # A kernel started by a Jupyter server knows its pid: use that server only (another
    # server on this machine would hand the browser a URL it cannot reach).
    parent = os.environ.get("JPY_PARENT_PID")
    if parent and any(str(s.get("pid")) == parent for s in servers):
        servers = [s for s in servers if str(s.get("pid")) == parent]
    for server in servers:
        root = server.get("root_dir") or server.get("notebook_dir")
        if not root:
            continue
        try:
            rel = path.relative_to(Path(root).resolve())
        except ValueError:
            continue
        return f"{server.get('base_url', '/')}files/{quote(rel.as_posix())}"
    return None


def video_start_s(path) -> float:
    """The video stream's start time in seconds (its first PTS): what a browser's
    ``<video>`` media time reads at the frame rekolab calls Timestamp 0."""
    if path is None or not Path(path).is_file():
        return 0.0
    import av

    with av.open(str(path)) as c:
        v = c.streams.video[0]
        return float(v.start_time * v.time_base) if v.start_time is not None else 0.0


def make_proxy(path: Path, out: Path, width: int = PROXY_WIDTH, fps: int = PROXY_FPS,
               bit_rate: int = PROXY_BITRATE) -> Path:
    """Transcode ``path`` to a small H.264 MP4 (no audio) at ``out`` with PyAV. Frame
    times keep the source's presentation times, so result timestamps still match."""
    import av

    tmp = out.with_suffix(".part.mp4")
    with av.open(str(path)) as src, av.open(str(tmp), "w", options={"movflags": "+faststart"}) as dst:
        vin = src.streams.video[0]
        vin.thread_type = "AUTO"
        w = min(width, vin.codec_context.width)
        h = max(2, int(round(vin.codec_context.height * w / vin.codec_context.width / 2)) * 2)
        w -= w % 2
        vout = dst.add_stream("libx264", rate=fps)
        vout.width, vout.height, vout.pix_fmt = w, h, "yuv420p"
        vout.bit_rate = bit_rate
        vout.time_base = vin.time_base
        vout.options = {"g": str(fps), "preset": "veryfast", "tune": "fastdecode"}
        start = vin.start_time or 0
        next_t = -1.0
        for frame in src.decode(vin):
            if frame.pts is None:
                continue
            t = float((frame.pts - start) * vin.time_base)
            if t + 1e-6 < next_t:
                continue  # keep about fps frames a second
            next_t = t + 1.0 / fps
            small = frame.reformat(width=w, height=h, format="yuv420p")
            small.pts = frame.pts - start
            small.time_base = vin.time_base
            for packet in vout.encode(small):
                dst.mux(packet)
        for packet in vout.encode():
            dst.mux(packet)
    os.replace(tmp, out)
    return out


def video_for_browser(path: Path | None, *, url: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES,
                      proxy: bool | None = None) -> BrowserVideo:
    """How the player gets the video (see the module docstring). ``proxy=True`` always
    sends the low-resolution proxy, ``False`` never makes one."""
    if url:
        return BrowserVideo("url", url=url)
    if path is None or not Path(path).is_file():
        return BrowserVideo("none", note="the video is not available here: boxes are drawn on a blank stage")
    path = Path(path)
    served = jupyter_files_url(path) if not proxy else None
    if served:
        return BrowserVideo("jupyter-files", url=served, mime=_MIME.get(path.suffix.lower(), "video/mp4"))
    size = path.stat().st_size
    if not proxy and size <= max_bytes and path.suffix.lower() in _MIME:
        return BrowserVideo("bytes", data=path.read_bytes(), mime=_MIME[path.suffix.lower()])
    if proxy is False:
        return BrowserVideo("none", note=(
            f"{path.name} is {size / 1e6:.0f} MB, over max_bytes={max_bytes / 1e6:.0f} MB: open it from a folder "
            "under the Jupyter root, pass url=, or allow the low-resolution proxy"))
    from .. import store

    st = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:24]
    out = store.home() / "cache" / "proxies" / f"{key}.mp4"
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        make_proxy(path, out)
    data_size = out.stat().st_size
    if data_size > max_bytes:
        return BrowserVideo("none", note=(
            f"even the low-resolution proxy of {path.name} is {data_size / 1e6:.0f} MB (over max_bytes="
            f"{max_bytes / 1e6:.0f} MB): open the notebook from a folder whose Jupyter root holds the video, "
            "or pass url="))
    return BrowserVideo("proxy", data=out.read_bytes(), note=f"low-resolution proxy ({data_size / 1e6:.1f} MB) of "
                        f"{path.name} ({size / 1e6:.0f} MB)")


def still_picture(view, timestamp_ms: int | None, *, min_confidence: float = 0.0, lanes=None,
                  width_px: int = 720) -> bytes:
    """A PNG of a view's state for saved notebooks: the frame at ``timestamp_ms`` with
    its boxes and names, over the lanes timeline with a cursor."""
    from PIL import Image

    from .frames import blank_frame, draw_boxes
    from .lanes import lane_color, plot_timeline

    lanes_obj = view.lanes()
    parts = []
    if timestamp_ms is not None:
        snapped = view.nearest_timestamp(int(timestamp_ms))
        shown = snapped if snapped is not None else int(timestamp_ms)
        boxes, tags = [], []
        if snapped is not None:
            for row in view.rows_at(snapped).to_pylist():
                conf = row["Confidence"]
                if conf is not None and conf < min_confidence or (lanes and row["Lane"] not in lanes):
                    continue
                color = lane_color(lanes_obj.index(row["Lane"]))
                text = row["Lane"] if conf is None else f"{row['Lane']} {conf:.0f}"
                if row["Left"] is None:
                    tags.append((text, color))
                else:
                    boxes.append({**{k: row[k] for k in ("Left", "Top", "Width", "Height")},
                                  "text": text, "color": color})
        source = view.source
        if source is not None:
            frame = source.frame(shown)
        else:
            frame = blank_frame(*view.frame_size, view._source_error or "video not available")
        parts.append(draw_boxes(frame, boxes, width_px, tags=tags))
    fig = plot_timeline(lanes_obj, min_confidence=min_confidence, lane_names=list(lanes) if lanes else None,
                        cursor_ms=timestamp_ms, width_in=width_px / 100, dpi=100)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    parts.append(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    width = max(p.width for p in parts)
    canvas = Image.new("RGB", (width, sum(p.height for p in parts)), "white")
    y = 0
    for p in parts:
        canvas.paste(p.convert("RGB"), (0, y))
        y += p.height
    out = io.BytesIO()
    canvas.save(out, format="PNG", optimize=True)
    return out.getvalue()


def png_data_url(png: bytes) -> str:
    import base64

    return "data:image/png;base64," + base64.b64encode(png).decode()


def jpeg_data_url(rgb: np.ndarray, quality: int = 85) -> str:
    import base64

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()
