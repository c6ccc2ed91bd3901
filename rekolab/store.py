"""The rekolab home on disk (``REKOLAB_HOME``, default ``~/.rekolab``).

Layout::

    <home>/jobs/<JobId>/job.json        job state (status, request, metadata, owner)
    <home>/jobs/<JobId>/results.parquet the job's results: the only copy
    <home>/tokens/<op>-<token>.json     ClientRequestToken -> JobId (idempotency)
    <home>/secret                       key that signs NextToken values
    <home>/cache/                       caches (CLIP text embeddings, ...)

Every write is atomic: write a temporary file in the same folder, fsync, then
``os.replace`` it over the target, so a reader sees the old or the new file,
never half of one.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["home", "atomic_write_bytes", "atomic_write_json", "read_json"]


def home() -> Path:
    """The rekolab home folder (created on first use)."""
    path = Path(os.environ.get("REKOLAB_HOME") or Path.home() / ".rekolab").expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_json(path: Path, value: Any) -> None:
    atomic_write_bytes(path, json.dumps(value, indent=1, sort_keys=True, default=str).encode())


def read_json(path: Path) -> Any:
    with open(path, "rb") as f:
        return json.loads(f.read())
