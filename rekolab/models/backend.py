"""Which engine runs rekolab's ONNX models: onnxruntime, or torch (the same ONNX files,
converted at load with ``onnx2torch``).

``REKOLAB_BACKEND``:

* ``torch`` -- every face-pack model (SCRFD, the recognizer, genderage), the 68-point
  and expression models and YOLOX run as torch modules, on CUDA when torch sees a GPU
  (``REKOLAB_DEVICE=cpu`` forces the CPU);
* ``onnxruntime`` -- onnxruntime sessions (on CUDA with the ``onnxruntime-gpu`` build);
* unset or ``auto`` (default) -- ``torch`` when torch sees a CUDA GPU, else
  ``onnxruntime``: on the CPU onnxruntime is 2-8x faster than the converted modules
  (measured per model in docs/performance.md), so it stays the CPU engine.

The torch path is the only GPU path when onnxruntime is the CPU build (insightface
requires the ``onnxruntime`` package, and it cannot be installed next to
``onnxruntime-gpu``). Conversion is checked against onnxruntime on the shared media
by ``tests/test_backend.py`` (max abs difference per model in docs/performance.md).

Two fixes are applied to the converted graphs:

* **dynamic batch**: graphs exported with their batch fixed at 1 (MobileFaceNet,
  YOLOX-nano) reshape with a literal leading 1; that 1 becomes ONNX's 0 ("copy this
  dimension from the input"), so the torch module takes any batch;
* **shapes stay on the host**: ``Shape`` results, integer constants and the
  constant shape/scale/slice arguments of ``Reshape``, ``Resize`` and ``Slice`` are
  kept as CPU tensors when the module moves to the GPU. onnx2torch's modules read
  those values with ``.tolist()`` or Python iteration; on the device each read would
  be a blocking device-to-host copy (and a mixed-device error for some ops).
  ``tests/test_backend.py`` runs every converted model on torch's ``meta`` device,
  where any such read fails, to prove none is left.
"""
from __future__ import annotations

import functools
import os
import threading
from pathlib import Path

import numpy as np

from . import onnx_session, require, torch_cuda
from .frame_threads import frame_map, in_frame_thread, narrow_session

__all__ = ["BACKENDS", "backend", "torch_device", "frame_batch_size", "detector_chunk", "OnnxModel", "onnx_model", "convert_onnx", "place"]

BACKENDS = ("torch", "onnxruntime")


def backend() -> str:
    """The engine for ONNX models: ``REKOLAB_BACKEND``, else torch on CUDA, onnxruntime otherwise."""
    value = os.environ.get("REKOLAB_BACKEND", "").strip().lower()
    if value in BACKENDS:
        return value
    if value not in ("", "auto"):
        raise ValueError(f"REKOLAB_BACKEND must be one of {BACKENDS} or 'auto', got {value!r}")
    return "torch" if torch_device() == "cuda" else "onnxruntime"


def torch_device() -> str:
    """``cuda`` when torch sees a GPU (and ``REKOLAB_DEVICE`` is not ``cpu``), else ``cpu``."""
    if os.environ.get("REKOLAB_DEVICE", "").lower() == "cpu":
        return "cpu"
    return "cuda" if torch_cuda() else "cpu"


def frame_batch_size() -> int:
    """Sampled frames per batch an analyzer asks the decoder for: 32 when the models
    run on a GPU (bigger model calls), else 16 (the decoder's default)."""
    return 32 if backend() == "torch" and torch_device() == "cuda" else 16


def detector_chunk(model: "OnnxModel", n: int) -> int:
    """Frames per detector call. On the CPU one frame at a time (and frames side by
    side, :func:`~rekolab.models.frame_threads.frame_map`): SCRFD at 640x384 on
    2 cores took 88-115 ms per frame alone, 118-144 in batches of 4 and 149-173 in
    batches of 16 (its activations outgrow the caches); on a GPU the whole batch."""
    return 1 if model.device == "cpu" else max(1, n)


# --------------------------------------------------------------------------- conversion

#: onnx2torch modules whose arguments after the first are shapes, scales or slice bounds.
_HOST_ARG_MODULES = ("OnnxReshape", "OnnxResize", "OnnxResizeV10", "OnnxSlice", "TupleSlice", "OnnxExpand",
                     "OnnxTile", "OnnxUnsqueezeDynamicAxes", "OnnxSqueezeDynamicAxes",
                     "OnnxConstantOfShape")


def _batch_follows_input(model) -> None:
    """In a graph whose input batch is fixed at 1, make constant Reshape targets that
    start with 1 start with 0 (ONNX: copy the input's dimension), and free the batch."""
    from onnx import numpy_helper

    graph = model.graph
    dims = graph.input[0].type.tensor_type.shape.dim
    if not dims or dims[0].dim_value != 1:
        return
    dims[0].ClearField("dim_value")
    dims[0].dim_param = "batch"
    for out in graph.output:
        odims = out.type.tensor_type.shape.dim
        if odims and odims[0].dim_value == 1:
            odims[0].ClearField("dim_value")
            odims[0].dim_param = "batch"
    shape_inputs = {n.input[1] for n in graph.node if n.op_type == "Reshape" and len(n.input) > 1}
    for init in graph.initializer:
        if init.name in shape_inputs:
            value = numpy_helper.to_array(init).copy()
            if value.ndim == 1 and value.size and value[0] == 1:
                value[0] = 0
                init.CopyFrom(numpy_helper.from_array(value, init.name))
    for node in graph.node:
        if node.op_type == "Constant" and node.output[0] in shape_inputs:
            for attr in node.attribute:
                if attr.name == "value":
                    value = numpy_helper.to_array(attr.t).copy()
                    if value.ndim == 1 and value.size and value[0] == 1:
                        value[0] = 0
                        attr.t.CopyFrom(numpy_helper.from_array(value, attr.t.name))


def _host_shape(start: int, end):
    """A module like onnx2torch's OnnxShape whose result is a CPU tensor."""
    torch = require("torch", "labels")

    class HostShape(torch.nn.Module):
        def forward(self, x):
            return torch.tensor(x.shape[start:end], dtype=torch.int64)

    return HostShape()


def _tuple_slice():
    """onnx2torch's OnnxSlice indexing with a tuple: its list index is deprecated in
    torch (a warning per call now, a different meaning later)."""
    torch = require("torch", "labels")
    from onnx2torch.node_converters.slice import _get_slices

    class TupleSlice(torch.nn.Module):
        def forward(self, x, starts, ends, axes=None, steps=None):
            flip_dims, pos, neg = _get_slices(starts, ends, axes, steps)
            if flip_dims:
                x = torch.flip(x, dims=flip_dims)
            if pos:
                x = x[tuple(pos)]
            if neg:
                x = x[tuple(neg)]
            return x

    return TupleSlice()


def convert_onnx(path: str | os.PathLike):
    """The ONNX file as a torch ``fx.GraphModule`` (eval mode, on the CPU), converted by
    onnx2torch, with a dynamic batch and host-side shape values (module docstring)."""
    onnx = require("onnx", "faces")
    require("torch", "labels")
    try:
        from onnx2torch import convert
    except ImportError as exc:  # pragma: no cover - exercised only without the package
        raise ImportError("the torch backend needs onnx2torch: pip install 'rekolab[torch]'") from exc
    import warnings

    model = onnx.load(str(path))
    _batch_follows_input(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # onnx2torch warns about opset versions it maps anyway
        module = convert(model)
    for name, sub in list(module.named_modules()):
        if type(sub).__name__ == "OnnxShape":
            parent, _, leaf = name.rpartition(".")
            setattr(module.get_submodule(parent) if parent else module, leaf,
                    _host_shape(sub._start, sub._end))
        elif type(sub).__name__ == "OnnxSlice":
            parent, _, leaf = name.rpartition(".")
            setattr(module.get_submodule(parent) if parent else module, leaf, _tuple_slice())
    return module.eval()


def _host_buffers(module) -> set[str]:
    """Names of the buffers that must stay on the CPU: integer constants, and the
    constants passed as a non-data argument of a shape-taking module."""
    host: set[str] = set()
    for name, buf in module.named_buffers():
        if not buf.is_floating_point():
            host.add(name)
    graph = getattr(module, "graph", None)
    if graph is None:
        return host
    for node in graph.nodes:
        if node.op != "call_module":
            continue
        if type(module.get_submodule(node.target)).__name__ not in _HOST_ARG_MODULES:
            continue
        for arg in node.args[1:]:
            if getattr(arg, "op", None) == "get_attr":
                host.add(str(arg.target))
            elif getattr(arg, "op", None) == "call_module":
                sub = module.get_submodule(arg.target)
                if type(sub).__name__ == "OnnxConstant" and hasattr(sub, "value"):
                    host.add(f"{arg.target}.value")
    return host


def place(module, device: str):
    """Move ``module`` to ``device``, keeping its host buffers (see above) on the CPU."""
    host = {name: buf.detach().clone() for name, buf in module.named_buffers()
            if name in _host_buffers(module)}
    module.to(device)
    for name, value in host.items():
        owner, _, leaf = name.rpartition(".")
        sub = module.get_submodule(owner) if owner else module
        sub._buffers[leaf] = value
    return module


@functools.lru_cache(maxsize=32)
def _torch_module(path: str, device: str):
    return place(convert_onnx(path), device)


# --------------------------------------------------------------------------- running


class OnnxModel:
    """One ONNX graph, run by onnxruntime or as a converted torch module.

    ``model(x)`` takes one float32 batch (first axis = batch) and returns every
    output as float32 numpy arrays, batch first. A graph whose batch is fixed at 1
    runs item by item on onnxruntime and in one call on torch.

    On onnxruntime on the CPU (``frame_parallel``) the items of a fixed-batch graph
    run side by side, and a call from a :func:`~rekolab.models.frame_threads.frame_map`
    thread runs on a one-thread session of the file (see ``frame_threads``).

    On CUDA the batch is copied through pinned memory on the model's own CUDA stream
    (so the copy of one model's batch can overlap another thread's work)."""

    def __init__(self, path: str | os.PathLike, engine: str | None = None, device: str | None = None,
                 session=None):
        self.path = Path(path).resolve()
        self.engine = engine or backend()
        if self.engine not in BACKENDS:
            raise ValueError(f"engine must be one of {BACKENDS}, got {self.engine!r}")
        self.device = "cpu" if self.engine == "onnxruntime" else (device or torch_device())
        self._lock = threading.Lock()
        self._stream = None
        if self.engine == "onnxruntime":
            self.session = session if session is not None else onnx_session(self.path)
            inp = self.session.get_inputs()[0]
            self.input_name = inp.name
            batch = inp.shape[0] if inp.shape else None
            self.fixed_batch = int(batch) if isinstance(batch, int) else None
            self.frame_parallel = list(self.session.get_providers()) == ["CPUExecutionProvider"]
        else:
            self.module = _torch_module(str(self.path), self.device)
            self.fixed_batch = None
            self.frame_parallel = False

    def __repr__(self) -> str:
        return f"OnnxModel({self.path.name}, {self.engine}, {self.device})"

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.engine == "onnxruntime":
            if self.fixed_batch is None or len(x) == self.fixed_batch:
                return self._run_onnx(x)
            if self.fixed_batch != 1:
                raise ValueError(f"{self.path.name}: batch fixed at {self.fixed_batch}, got {len(x)}")
            parts = frame_map(lambda i: self._run_onnx(x[i:i + 1]), range(len(x)), parallel=self.frame_parallel)
            if not parts:
                raise ValueError("empty batch")
            return [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]
        return self._run_torch(x)

    def _run_onnx(self, x: np.ndarray) -> list[np.ndarray]:
        session = self.session
        if self.frame_parallel and in_frame_thread():
            session = narrow_session(str(self.path))
        return session.run(None, {self.input_name: x})

    def _run_torch(self, x: np.ndarray) -> list[np.ndarray]:
        torch = require("torch", "labels")
        t = torch.from_numpy(x)
        with torch.inference_mode():
            if self.device.startswith("cuda"):
                if self._stream is None:
                    with self._lock:
                        if self._stream is None:
                            self._stream = torch.cuda.Stream(device=self.device)
                with torch.cuda.stream(self._stream):
                    t = t.pin_memory().to(self.device, non_blocking=True)
                    out = self.module(t)
                    outs = [o.float().to("cpu", non_blocking=True) for o in _as_list(out)]
                self._stream.synchronize()
            else:
                outs = _as_list(self.module(t))
        return [o.numpy() for o in outs]


def _as_list(out) -> list:
    return list(out) if isinstance(out, (list, tuple)) else [out]


_models_lock = threading.Lock()


@functools.lru_cache(maxsize=64)
def _cached_model(path: str, engine: str, device: str) -> OnnxModel:
    return OnnxModel(path, engine, device)


def onnx_model(path: str | os.PathLike, engine: str | None = None) -> OnnxModel:
    """One shared :class:`OnnxModel` per file, engine and device."""
    engine = engine or backend()
    device = "cpu" if engine == "onnxruntime" else torch_device()
    with _models_lock:
        return _cached_model(str(Path(path).resolve()), engine, device)


# --------------------------------------------------------------------------- parity


class recording:
    """Record every model call's input while the block runs (for parity checks):
    ``with recording() as calls: ...`` then ``calls`` is a list of ``(path, batch)``."""

    def __enter__(self) -> list[tuple[Path, np.ndarray]]:
        self.calls: list[tuple[Path, np.ndarray]] = []
        self._real = OnnxModel.__call__
        calls, real = self.calls, self._real

        def spy(model, x):
            calls.append((model.path, np.array(x, dtype=np.float32, copy=True)))
            return real(model, x)

        OnnxModel.__call__ = spy
        return self.calls

    def __exit__(self, *exc) -> None:
        OnnxModel.__call__ = self._real


def engine_differences(calls, engine: str = "torch", device: str | None = None) -> dict[str, float]:
    """Max abs difference over every output, per model file name, between onnxruntime
    and ``engine`` (on ``device``) on the recorded inputs ``calls``. The inputs of one
    model (same item shape) go in as one batch, so fixed-batch graphs are checked on
    a batch too (onnxruntime runs those item by item)."""
    grouped: dict[tuple[Path, tuple], list[np.ndarray]] = {}
    for path, x in calls:
        grouped.setdefault((path, x.shape[1:]), []).append(x)
    worst: dict[str, float] = {}
    for (path, _), xs in grouped.items():
        x = np.concatenate(xs)
        ref = OnnxModel(path, "onnxruntime")(x)
        got = OnnxModel(path, engine, device)(x)
        if any(a.shape != b.shape for a, b in zip(ref, got)):
            raise AssertionError(f"{path.name}: output shapes {[a.shape for a in ref]} vs {[b.shape for b in got]}")
        diff = max(float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())
                   for a, b in zip(ref, got))
        worst[path.name] = max(worst.get(path.name, 0.0), diff)
    return worst
