"""Notebook views of job results: timelines, frame viewers, a live view for stream
processors, and ``plot_timeline`` for static figures.

Importing this package imports neither ipywidgets nor matplotlib: the widget
classes load on first use (``rekolab.widgets.Timeline``)."""
from __future__ import annotations

from .detections import DETECTIONS_SCHEMA, JobView, detections
from .lanes import Lanes, lane_color, plot_timeline

__all__ = ["DETECTIONS_SCHEMA", "JobView", "Lanes", "detections", "lane_color", "live_view", "plot_timeline",
           "Timeline", "FrameViewer", "LiveView", "Player"]

_LAZY = {"Timeline": ".timeline", "FrameViewer": ".viewer", "LiveView": ".live", "Player": ".player"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        from ..models import require

        require("ipywidgets", "notebook")
        if name == "Player":
            require("anywidget", "notebook")
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def live_view(title: str = "stream", **kwargs):
    """A :class:`~rekolab.widgets.live.LiveView` for a stream processor's records:
    ``view = rk.live_view(); display(view); await view.consume(records)``."""
    from ..models import require

    require("ipywidgets", "notebook")
    from .live import LiveView

    return LiveView(title, **kwargs)
