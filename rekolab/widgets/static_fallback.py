"""A picture of every widget's state in its display bundle, for saved notebooks.

A widget's output in a notebook file is a reference to a model that lives in the
kernel; reopened without one, on GitHub or in nbviewer, there is nothing to
draw. :class:`StaticFallback` adds an ``image/png`` of the widget's current
state next to the widget view in ``_repr_mimebundle_``, so a renderer without
the widget (GitHub, nbviewer, nbconvert) shows the picture.
JupyterLab itself prefers the widget view and, without a kernel, shows its own
"model not found" notice instead; turn on *Settings → Save Widget State
Automatically* to have JupyterLab keep the live widgets in the file too.
"""
from __future__ import annotations

import base64

__all__ = ["StaticFallback", "stack_pngs"]


class StaticFallback:
    """Mixin for ipywidgets / anywidget classes that implement ``_static_png()``."""

    def _static_png(self) -> bytes:  # pragma: no cover - every user overrides it
        raise NotImplementedError

    def _repr_mimebundle_(self, **kwargs):
        bundle = super()._repr_mimebundle_(**kwargs)
        data, meta = (bundle if isinstance(bundle, tuple) else (bundle, {}))
        data = dict(data or {})
        try:
            png = self._static_png()
        except Exception as exc:  # a picture is a nicety: never hide the widget over it
            data.setdefault("text/plain", f"{type(self).__name__} (no picture: {exc})")
            return (data, meta) if isinstance(bundle, tuple) else data
        data["image/png"] = base64.b64encode(png).decode()
        return (data, meta) if isinstance(bundle, tuple) else data


def stack_pngs(pngs) -> bytes:
    """PNGs (empty ones skipped) stacked top to bottom on white, as one PNG."""
    import io

    from PIL import Image

    images = [Image.open(io.BytesIO(bytes(p))).convert("RGB") for p in pngs if p]
    if not images:
        raise ValueError("nothing drawn yet")
    canvas = Image.new("RGB", (max(i.width for i in images), sum(i.height for i in images)), "white")
    y = 0
    for im in images:
        canvas.paste(im, (0, y))
        y += im.height
    out = io.BytesIO()
    canvas.save(out, format="PNG", optimize=True)
    return out.getvalue()
