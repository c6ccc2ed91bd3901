"""Shared fixtures: the real media and weights in ../shared, an isolated rekolab home.

Tests that need a file from ../shared skip, naming the missing file, only when it is
absent; CI has ../shared beside the checkout.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Nothing a test runs may write into the real home folder or reach a model hub:
# caches (onnxruntime, matplotlib, insightface's ~/.insightface) go to a scratch
# folder, and label detection never tries a CLIP download. Set at import, before
# any test imports matplotlib; subprocesses and notebook kernels inherit it.
_SCRATCH = Path(tempfile.mkdtemp(prefix="rekolab-tests-"))
os.environ["HOME"] = str(_SCRATCH / "home")
os.environ["XDG_CACHE_HOME"] = str(_SCRATCH / "cache")
os.environ["MPLCONFIGDIR"] = str(_SCRATCH / "matplotlib")
os.environ["REKOLAB_OFFLINE"] = "1"
for _name in ("home", "cache", "matplotlib"):
    (_SCRATCH / _name).mkdir()
# Before any test module imports torch: importing rekolab sets OMP_WAIT_POLICY=PASSIVE,
# which torch's OpenMP reads once, when it loads (tests/test_layering.py).
import rekolab  # noqa: E402,F401
SHARED = Path(os.environ.get("REKOLAB_SHARED", REPO.parent / "shared")).resolve()
MEDIA = SHARED / "media"
MODELS = SHARED / "models"


def need(path: Path) -> Path:
    """Return ``path``, or skip the test saying which file is missing."""
    if not path.exists():
        pytest.skip(f"needs {path} (the shared test media/models are not beside this checkout)")
    return path


@contextlib.contextmanager
def module_env(tmp_path_factory, name: str = "home", **env: str | None):
    """For module-scoped fixtures (which cannot use ``monkeypatch``): a fresh rekolab
    home and the shared weights as REKOLAB_MODEL_DIR until the block ends. ``env``
    sets more variables; ``None`` removes one. Yields the home folder."""
    mp = pytest.MonkeyPatch()
    home = tmp_path_factory.mktemp(name)
    mp.setenv("REKOLAB_HOME", str(home))
    mp.setenv("REKOLAB_MODEL_DIR", str(MODELS))
    for key, value in env.items():
        if value is None:
            mp.delenv(key, raising=False)
        else:
            mp.setenv(key, value)
    try:
        yield home
    finally:
        mp.undo()


@pytest.fixture
def media() -> Path:
    return need(MEDIA)


@pytest.fixture
def models_dir(monkeypatch) -> Path:
    """The shared offline weights, installed as REKOLAB_MODEL_DIR for the test."""
    need(MODELS / "insightface" / "models")
    monkeypatch.setenv("REKOLAB_MODEL_DIR", str(MODELS))
    return MODELS


def _scheduling():
    try:
        return os.sched_getscheduler(0), os.sched_getparam(0).sched_priority
    except (AttributeError, OSError):  # not Linux
        return None


_SCHEDULING = _scheduling()


@pytest.fixture(autouse=True)
def same_scheduling():
    """A test must leave the main thread's scheduling as it found it. SVT-AV1 run as root
    sets its caller to real-time SCHED_FIFO 99 (rekolab.testing.encoded_video puts it
    back): every later test, and every process it starts, then ran starved, a 1-s CLIP test
    in 118 s and more. The policy is restored here, and the test that changed it fails."""
    yield
    now = _scheduling()
    if now != _SCHEDULING:
        os.sched_setscheduler(0, _SCHEDULING[0], os.sched_param(_SCHEDULING[1]))
        pytest.fail(f"the test left the main thread's scheduling at {now} (policy, priority), "
                    f"not {_SCHEDULING}; restored")


@pytest.fixture(autouse=True)
def rekolab_home(tmp_path_factory, monkeypatch) -> Path:
    """Every test gets its own empty rekolab home: nothing is written elsewhere."""
    home = tmp_path_factory.mktemp("rekolab-home")
    monkeypatch.setenv("REKOLAB_HOME", str(home))
    return home


def pytest_collection_modifyitems(config, items):
    """GPU tests skip without CUDA unless REKOLAB_REQUIRE_GPU=1 makes that a failure."""
    try:
        from rekolab.models import has_cuda, torch_cuda
        cuda = has_cuda() or torch_cuda()  # onnxruntime-gpu, or torch's CUDA (the torch backend)
    except Exception:
        cuda = False
    if cuda or os.environ.get("REKOLAB_REQUIRE_GPU") == "1":
        return
    skip = pytest.mark.skip(reason="no CUDA GPU here (set REKOLAB_REQUIRE_GPU=1 to make this a failure)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
