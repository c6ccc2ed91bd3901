"""Model registry: names -> loaded models on a device.

Where weights come from, in order:

1. an explicit path given by the caller;
2. ``REKOLAB_MODEL_DIR`` (a folder laid out like ``../shared/models``:
   ``insightface/models/<pack>/``, ``face_attributes/``, ``coco_detection/``, ``clip/``);
3. the upstream library's own download (insightface's ``buffalo_l``, open_clip's
   pretrained tags), for users with internet.

Models with no upstream download (the 68-point landmark and expression models)
are simply absent when not found, and the attributes they produce are left out.

Heavy libraries (onnxruntime, insightface, torch) are imported here, lazily.
"""
from __future__ import annotations

import atexit
import functools
import os
import threading
from pathlib import Path

__all__ = [
    "model_dir",
    "find_model_file",
    "onnx_providers",
    "onnx_session",
    "session_options",
    "has_cuda",
    "torch_cuda",
    "require",
    "on_release",
    "release_models",
]


def model_dir() -> Path | None:
    """The offline model folder from ``REKOLAB_MODEL_DIR``, if set and present."""
    value = os.environ.get("REKOLAB_MODEL_DIR")
    if not value:
        return None
    path = Path(value).expanduser()
    return path if path.is_dir() else None


def find_model_file(relative: str, explicit: str | os.PathLike | None = None) -> Path | None:
    """Resolve a weights file: ``explicit`` if given (must exist), else under
    ``REKOLAB_MODEL_DIR``; ``None`` when neither has it."""
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"model file not found: {path}")
        return path
    root = model_dir()
    if root is not None and (root / relative).is_file():
        return root / relative
    return None


def require(module: str, extra: str):
    """Import an optional dependency or fail with an install hint."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            f"this feature needs {module}: pip install 'rekolab[{extra}]'"
        ) from exc


@functools.lru_cache(maxsize=1)
def has_cuda() -> bool:
    """True when onnxruntime can run on a CUDA GPU here."""
    try:
        import onnxruntime as ort
    except ImportError:
        return False
    return "CUDAExecutionProvider" in ort.get_available_providers()


@functools.lru_cache(maxsize=1)
def torch_cuda() -> bool:
    """True when torch is installed and sees a CUDA GPU.

    On Linux without an NVIDIA device node this answers without importing torch
    (a face job on the CPU then never pays torch's import time and memory)."""
    import sys

    if "torch" not in sys.modules and sys.platform.startswith("linux") and not any(
            Path("/dev").glob("nvidia[0-9]*")):
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def onnx_providers() -> list[str]:
    """onnxruntime providers: CUDA first when a GPU is present, CPU otherwise.

    ``REKOLAB_DEVICE=cpu`` forces the CPU even with a GPU."""
    if os.environ.get("REKOLAB_DEVICE", "").lower() != "cpu" and has_cuda():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


_session_lock = threading.Lock()


def session_options():
    """onnxruntime options for every rekolab session (insightface's included).

    Intra-op threads do not spin-wait: a job alternates between several small
    models and the decoder thread, and spinning threads of an idle session steal
    the cores the next model needs (measured: ALL attributes on one face went from
    78 to 27 ms per frame on 2 busy cores)."""
    ort = require("onnxruntime", "faces")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # keep shape warnings out of notebooks
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


@functools.lru_cache(maxsize=32)
def _cached_session(path: str, providers: tuple[str, ...]):
    ort = require("onnxruntime", "faces")
    return ort.InferenceSession(path, sess_options=session_options(), providers=list(providers))


def onnx_session(path: str | os.PathLike):
    """One shared onnxruntime session per model file and provider list."""
    with _session_lock:
        return _cached_session(str(Path(path).resolve()), tuple(onnx_providers()))


# -- native resources are released before the interpreter exits -------------------------------
_RELEASERS: list = []


def on_release(callback) -> None:
    """Register ``callback()`` to drop a cache of native models (onnxruntime sessions,
    torch modules, decoders) in :func:`release_models`."""
    _RELEASERS.append(callback)


def release_models() -> None:
    """Drop every cached model and collect it now, while the interpreter is whole.

    Runs at exit: a session left to interpreter teardown can be destroyed after the
    C++ runtime's own statics, with its worker threads still joinable; that aborts the
    process ("terminate called without an active exception", SIGABRT) after its work
    was written. Models load again on next use."""
    import gc

    for callback in list(_RELEASERS):
        try:
            callback()
        except Exception:  # never let one cache stop the others from being released
            pass
    gc.collect()


on_release(_cached_session.cache_clear)
atexit.register(release_models)
