"""The rekolab home on disk (``REKOLAB_HOME``, default ``~/.rekolab``).

Layout::

    <home>/jobs/<JobId>/job.json        job state (status, request, metadata, owner)
    <home>/jobs/<JobId>/results.parquet the job's results: the only copy
    <home>/jobs/.open/<JobId>           the owner of each open (queued or running) job
    <home>/jobs/.start.lock             held while a Start* counts open jobs and claims its token
    <home>/tokens/<op>-<token>.json     ClientRequestToken -> JobId (idempotency)
    <home>/secret                       key that signs NextToken values
    <home>/cache/                       caches (CLIP text embeddings, ...)

* The home is resolved to an absolute path once per value of ``REKOLAB_HOME``: a
  relative home stays where it was first used, whatever ``os.chdir`` does later.
* Every write is atomic: write a temporary file in the same folder, fsync, then
  ``os.replace`` it over the target, so a reader sees the old or the new file,
  never half of one.
* :func:`locked` is a cross-process ``flock``; a shared (reader's) lock works on a
  read-only home.
* A storage failure (disk full, read-only, a name too long) surfaces as
  ``InternalServerError`` naming the cause (:func:`storage_message`), never as a raw
  ``OSError``.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterator

from .errors import InternalServerError

__all__ = ["home", "atomic_write_bytes", "atomic_write_json", "read_json", "locked",
           "storage_message", "storage_errors"]

_HOMES: dict[str, Path] = {}
_HOMES_LOCK = threading.Lock()


def home() -> Path:
    """The rekolab home folder, absolute (created on first use).

    A home that cannot be a folder (``REKOLAB_HOME`` under a regular file, on a
    read-only disk, ...) raises ``InternalServerError`` saying so."""
    value = os.environ.get("REKOLAB_HOME") or str(Path.home() / ".rekolab")
    with _HOMES_LOCK:
        path = _HOMES.get(value)
        if path is None:
            path = _HOMES[value] = Path(os.path.abspath(Path(value).expanduser()))
    if not path.is_dir():
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InternalServerError(
                f"The rekolab home {path} (REKOLAB_HOME) is not a usable folder: {_reason(exc)}. "
                "Set REKOLAB_HOME to a writable folder") from None
    return path


def _reason(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno or 0, "")
    where = f" ({exc.filename})" if exc.filename else ""
    return f"{exc.strerror or exc}{where}" + (f" [{name}]" if name else "")


def storage_message(exc: OSError) -> str:
    """What a user reads when the home cannot be written or read."""
    hints = {errno.ENOSPC: "free some space or point REKOLAB_HOME at a bigger disk",
             errno.EDQUOT: "the disk quota is used up; free some space",
             errno.EROFS: "the rekolab home is read-only; only reading operations work there",
             errno.EACCES: "check the permissions of REKOLAB_HOME",
             errno.ENAMETOOLONG: "a file name is longer than the file system allows"}
    hint = hints.get(exc.errno or 0, "check the disk that holds REKOLAB_HOME")
    return f"rekolab could not use its storage: {_reason(exc)}; {hint}"


@contextlib.contextmanager
def storage_errors(operation: str | None = None) -> Iterator[None]:
    """Turn an ``OSError`` raised inside the block into ``InternalServerError``."""
    try:
        yield
    except OSError as exc:
        raise InternalServerError(storage_message(exc), operation or "rekolab") from exc


@contextlib.contextmanager
def locked(path: Path, exclusive: bool = True) -> Iterator[None]:
    """``fcntl.flock`` on ``path`` (across processes and, as each call opens its own
    file description, across threads). A shared lock on a home that cannot be
    written opens the file read-only, or takes no lock when it does not exist
    (nobody has ever written there)."""
    fd = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        if exclusive or exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOENT):
            raise
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            fd = None
    if fd is None:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:64]}.", suffix=".tmp")
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
