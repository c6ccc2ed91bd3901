"""The on-disk store of face collections (see :mod:`rekolab.collections` for the layout
and the rules): folder names, the per-collection ``fcntl`` lock, immutable segments,
consistent views of a collection, atomic manifest commits, segment merging, and the
users document (``users.json``) that :mod:`rekolab.users` keeps under the same lock.

Only :mod:`rekolab.collections`, :mod:`rekolab.users` and :mod:`rekolab.tags` use it.
"""
from __future__ import annotations

import contextlib
import io
import json
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa

from . import store
from .errors import ResourceNotFoundException

_MANIFEST = "collection.json"


# ============================================================================ paths and locks


def _root() -> Path:
    path = store.home() / "collections"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:  # a read-only home: readers find nothing there; writers fail when they write
        pass
    return path


def _folder_name(collection_id: str) -> str:
    # The CollectionId pattern [a-zA-Z0-9_.\-]+ has no "/" but allows "." and "..".
    return "%2E" + collection_id[1:] if collection_id.startswith(".") else collection_id


def _collection_id(folder_name: str) -> str:
    return "." + folder_name[3:] if folder_name.startswith("%2E") else folder_name


def _dir(collection_id: str) -> Path:
    return _root() / _folder_name(collection_id)


@contextlib.contextmanager
def _locked(collection_id: str, exclusive: bool) -> Iterator[None]:
    """``fcntl.flock`` on the collection's lock file (works across processes and
    threads; a reader's shared lock works on a read-only home: see store.locked)."""
    with store.locked(_root() / ".locks" / (_folder_name(collection_id) + ".lock"), exclusive):
        yield


# ============================================================================ segments and views


@dataclass
class _Segment:
    """One immutable segment: n faces, their metadata and a memory-mapped (n, D) matrix."""

    name: str
    embeddings: np.ndarray          # float32 (n, D), memory-mapped
    face_ids: np.ndarray            # object (n,)
    image_ids: np.ndarray           # object (n,)
    external_ids: np.ndarray        # object (n,), None where absent
    image_sha: np.ndarray           # object (n,)
    boxes: np.ndarray               # float64 (n, 4): Width, Height, Left, Top
    confidences: np.ndarray         # float64 (n,)

    def __len__(self) -> int:
        return len(self.face_ids)


_SEGMENT_COLUMNS = ("FaceId", "ImageId", "ExternalImageId", "ImageSha", "Width", "Height", "Left", "Top",
                    "Confidence")


def _segment_table(rows: dict[str, list]) -> pa.Table:
    s, f = pa.string(), pa.float64()
    schema = pa.schema([("FaceId", s), ("ImageId", s), ("ExternalImageId", s), ("ImageSha", s),
                        ("Width", f), ("Height", f), ("Left", f), ("Top", f), ("Confidence", f)])
    return pa.table({k: rows[k] for k in _SEGMENT_COLUMNS}, schema=schema)


def _write_segment(folder: Path, rows: dict[str, list], embeddings: np.ndarray) -> dict:
    """Write a new segment's two files atomically; return its manifest entry."""
    import pyarrow.parquet as pq

    name = f"seg-{uuid.uuid4().hex}"
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(embeddings, dtype=np.float32))
    store.atomic_write_bytes(folder / f"{name}.npy", buf.getvalue())
    buf = io.BytesIO()
    pq.write_table(_segment_table(rows), buf)
    store.atomic_write_bytes(folder / f"{name}.parquet", buf.getvalue())
    return {"Name": name, "Count": int(len(embeddings))}


def _segment_rows(seg: _Segment, keep: np.ndarray | None = None) -> dict[str, list]:
    idx = np.arange(len(seg)) if keep is None else keep
    return {
        "FaceId": seg.face_ids[idx].tolist(), "ImageId": seg.image_ids[idx].tolist(),
        "ExternalImageId": seg.external_ids[idx].tolist(), "ImageSha": seg.image_sha[idx].tolist(),
        "Width": seg.boxes[idx, 0].tolist(), "Height": seg.boxes[idx, 1].tolist(),
        "Left": seg.boxes[idx, 2].tolist(), "Top": seg.boxes[idx, 3].tolist(),
        "Confidence": seg.confidences[idx].tolist(),
    }


def _load_segment(folder: Path, name: str) -> _Segment:
    import pyarrow.parquet as pq

    table = pq.read_table(folder / f"{name}.parquet")
    col = {k: table.column(k).to_numpy(zero_copy_only=False) for k in _SEGMENT_COLUMNS}
    emb = np.load(folder / f"{name}.npy", mmap_mode="r")
    boxes = np.stack([col["Width"], col["Height"], col["Left"], col["Top"]], axis=1).astype(np.float64)
    return _Segment(name=name, embeddings=emb, face_ids=col["FaceId"].astype(object),
                    image_ids=col["ImageId"].astype(object), external_ids=col["ExternalImageId"].astype(object),
                    image_sha=col["ImageSha"].astype(object), boxes=boxes.reshape(-1, 4),
                    confidences=col["Confidence"].astype(np.float64))


@dataclass
class _View:
    """A consistent snapshot of a collection: its manifest and its loaded segments."""

    key: bytes
    manifest: dict
    segments: list[_Segment]

    @property
    def count(self) -> int:
        return sum(len(s) for s in self.segments)

    @property
    def collection_id(self) -> str:
        return self.manifest["CollectionId"]

    def face(self, seg: _Segment, i: int) -> dict:
        """The Rekognition ``Face`` dict of row ``i`` of ``seg``."""
        w, h, left, top = seg.boxes[i]
        out = {"FaceId": seg.face_ids[i],
               "BoundingBox": {"Width": float(w), "Height": float(h), "Left": float(left), "Top": float(top)},
               "ImageId": seg.image_ids[i]}
        if seg.external_ids[i] is not None:
            out["ExternalImageId"] = seg.external_ids[i]
        out["Confidence"] = float(seg.confidences[i])
        out["IndexFacesModelVersion"] = self.manifest["IndexFacesModelVersion"]
        return out

    def find(self, face_id: str) -> tuple[_Segment, int] | None:
        for seg in self.segments:
            hits = np.flatnonzero(seg.face_ids == face_id)
            if len(hits):
                return seg, int(hits[0])
        return None


_cache_lock = threading.Lock()
_VIEWS: dict[str, _View] = {}
_SEGMENTS: dict[str, _Segment] = {}


def _manifest_key(path: Path) -> bytes | None:
    """The manifest's bytes (a few hundred): the same bytes name the same immutable
    segments, so they identify a collection state exactly (no stat-time races).
    ``os.replace`` makes the read see a whole old or a whole new manifest."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _not_found(collection_id: str, operation: str | None = None):
    return ResourceNotFoundException(
        f"The collection id: {collection_id} does not exist. Create it with CreateCollection "
        "(rk.Collection.create) first", operation or "rekolab")


def _read_view(collection_id: str, operation: str | None = None) -> _View:
    """Load the collection's current state. The caller holds its lock (shared or
    exclusive), so every segment the manifest names exists while it is opened."""
    folder = _dir(collection_id)
    manifest_path = folder / _MANIFEST
    key = _manifest_key(manifest_path)
    if key is None:
        raise _not_found(collection_id, operation)
    cache_key = str(folder)
    with _cache_lock:
        view = _VIEWS.get(cache_key)
        if view is not None and view.key == key:
            return view
    manifest = json.loads(key)
    segments = []
    for entry in manifest["Segments"]:
        seg_key = f"{folder}/{entry['Name']}"
        with _cache_lock:
            seg = _SEGMENTS.get(seg_key)
        if seg is None:
            seg = _load_segment(folder, entry["Name"])
        segments.append(seg)
    view = _View(key=key, manifest=manifest, segments=segments)
    with _cache_lock:
        names = {f"{folder}/{s.name}" for s in segments}
        for k in [k for k in _SEGMENTS if k.startswith(f"{folder}/") and k not in names]:
            del _SEGMENTS[k]
        for s in segments:
            _SEGMENTS[f"{folder}/{s.name}"] = s
        _VIEWS[cache_key] = view
    return view


def _view(collection_id: str, operation: str | None = None) -> _View:
    """The collection's current state for a reader (cached while the manifest is unchanged)."""
    folder = _dir(collection_id)
    key = _manifest_key(folder / _MANIFEST)
    if key is None:
        raise _not_found(collection_id, operation)
    with _cache_lock:
        view = _VIEWS.get(str(folder))
    if view is not None and view.key == key:
        return view  # segments are immutable: a mapped one stays valid even once unlinked
    with _locked(collection_id, exclusive=False):
        return _read_view(collection_id, operation)


def _commit(collection_id: str, manifest: dict) -> None:
    """Replace the manifest atomically, then remove files no manifest names (caller
    holds the exclusive lock)."""
    folder = _dir(collection_id)
    manifest["FaceCount"] = int(sum(s["Count"] for s in manifest["Segments"]))
    store.atomic_write_json(folder / _MANIFEST, manifest)
    live = {s["Name"] for s in manifest["Segments"]}
    for path in folder.iterdir():
        if path.name.startswith("seg-") and path.name.split(".")[0] not in live:
            path.unlink(missing_ok=True)
        elif path.name.startswith(".") and path.name.endswith(".tmp"):
            path.unlink(missing_ok=True)  # a temp file left by a writer that died


# ============================================================================ users store
# The Users API (rekolab/users.py) keeps its state in <collection>/users.json, written
# atomically under the collection's lock like the manifest: {"Users": {UserId:
# {"FaceIds": [...], "CreationTimestampMs": ...}}, "Tokens": {...}}.

_USERS = "users.json"


def read_users(collection_id: str) -> dict:
    """The collection's users document (empty when it has no users file yet)."""
    try:
        return store.read_json(_dir(collection_id) / _USERS)
    except FileNotFoundError:
        return {"Users": {}, "Tokens": {}}


def write_users(collection_id: str, doc: dict) -> None:
    """Replace the users document (the caller holds the exclusive lock)."""
    store.atomic_write_json(_dir(collection_id) / _USERS, doc)


def _drop_user_faces(collection_id: str, face_ids: set[str]) -> None:
    """Deleted faces leave their users (caller holds the exclusive lock)."""
    doc = read_users(collection_id)
    changed = False
    for user in doc["Users"].values():
        kept = [f for f in user["FaceIds"] if f not in face_ids]
        if len(kept) != len(user["FaceIds"]):
            user["FaceIds"], changed = kept, True
    if changed:
        write_users(collection_id, doc)


def _merge_tail(collection_id: str, view: _View, manifest: dict) -> None:
    """Binary-counter merging: while the newest segment is at least as large as the one
    before it, merge the two (keeps ~log2 N segments)."""
    folder = _dir(collection_id)
    entries = manifest["Segments"]
    loaded = {s.name: s for s in view.segments}
    while len(entries) >= 2 and entries[-1]["Count"] >= entries[-2]["Count"]:
        a, b = (loaded.get(e["Name"]) for e in entries[-2:])
        a = a if a is not None else _load_segment(folder, entries[-2]["Name"])
        b = b if b is not None else _load_segment(folder, entries[-1]["Name"])
        rows_a, rows_b = _segment_rows(a), _segment_rows(b)
        rows = {k: rows_a[k] + rows_b[k] for k in _SEGMENT_COLUMNS}
        emb = np.concatenate([np.asarray(a.embeddings), np.asarray(b.embeddings)])
        entry = _write_segment(folder, rows, emb)
        loaded[entry["Name"]] = _load_segment(folder, entry["Name"])
        entries[-2:] = [entry]
