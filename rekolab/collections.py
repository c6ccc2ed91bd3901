"""Face collections: create, index, search, list, delete; persisted under the rekolab home.

The store itself (paths, locks, segments, views, commits, the users document) is
:mod:`rekolab.collection_store`; users are :mod:`rekolab.users`, tags :mod:`rekolab.tags`.

Layout (one folder per collection)::

    <home>/collections/<CollectionId>/collection.json      the manifest (id, ARN, face model,
                                                            creation time, tags, segment list)
    <home>/collections/<CollectionId>/seg-<uuid>.parquet   face metadata of one segment
    <home>/collections/<CollectionId>/seg-<uuid>.npy       its embeddings, float32 (n, D)
    <home>/collections/.locks/<CollectionId>.lock          fcntl lock file

(A CollectionId that starts with ``.`` -- the pattern allows ``..`` -- gets the
folder ``%2E<rest>``, so no id can name a folder outside ``collections/``.)

**Writes are atomic and multi-process safe.** Every read-modify-write (IndexFaces,
DeleteFaces, Create/DeleteCollection) holds an exclusive ``fcntl.flock`` on the
collection's lock file; readers hold a shared one while they read the manifest
and open the segments it names. A write puts new, immutable segment files in place
(temp file, fsync, ``os.replace``), then atomically replaces ``collection.json``
to point at them, then removes the files no manifest names any more. A reader
therefore sees the collection before or after a write, never half of one, and
several processes indexing into one collection at once lose nothing.

**Segments.** IndexFaces appends a segment (it never rewrites the collection);
when the newest segment holds at least as many faces as the one before, the two
are merged (a binary counter: a collection of N faces has at most ~log2 N
segments, and each face is rewritten O(log N) times in total). DeleteFaces
rewrites only the segments that held a deleted face.

**Search** is exact: the query embeddings times each segment's memory-mapped
float32 matrix (cosine, the embeddings are L2-normalised), then
``Similarity = rekolab.models.faces.similarity(cosine)`` (calibrated: cosine 0.40
is Similarity 80), matches at or above ``FaceMatchThreshold``, highest first, at
most ``MaxFaces``. Segments are immutable, so a process keeps them mapped between
calls and re-reads only a changed manifest. See bench/bench_collections.py for
latency at 100k faces.

**Face model.** A collection records the face pack it was created with
(``FaceModelVersion`` = the pack's name, e.g. ``scrfd500m_mfn128``) and refuses,
with ``InvalidParameterException``, to index or search with another pack: the
embedding spaces of two recognizers are not comparable. ``IndexFacesModelVersion``
(the service model allows only digits and dots there) is ``"<crc32 of the pack
name>.0"``.

The contract the streaming processors use is :func:`search_embeddings` and
:func:`collection_face_model_version`.
"""
from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import os
import shutil
import time
import uuid
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from . import store
from .errors import InvalidParameterException, ResourceAlreadyExistsException, ServiceQuotaExceededException
from .images import MAX_IMAGE_BYTES, MAX_S3_IMAGE_BYTES, MIN_IMAGE_PIXELS, load_image  # noqa: F401 (re-exported)
from .analysis.face_quality import QUALITY_BARS, face_quality, quality_reasons  # noqa: F401 (re-exported)
from .results.schema import BOUNDING_BOX
from .collection_store import (_MANIFEST, _SEGMENT_COLUMNS, _SEGMENTS, _VIEWS, _View, _cache_lock, _collection_id,
                               _commit, _dir, _drop_user_faces, _locked, _merge_tail, _not_found, _read_view, _root,
                               _segment_rows, _view, _write_segment, read_users)

__all__ = [
    "search_embeddings",
    "collection_face_model_version",
    "current_face_model_version",
    "index_faces_model_version",
    "collection_arn",
    "QUALITY_BARS",
    "DEFAULT_FACE_MATCH_THRESHOLD",
    "MAX_SEARCH_FACES",
    "MAX_INDEX_FACES",
    "MAX_IMAGE_BYTES",
    "MAX_S3_IMAGE_BYTES",
    "MIN_IMAGE_PIXELS",
    "FACE_LIST_SCHEMA",
    "load_image",
]

DEFAULT_FACE_MATCH_THRESHOLD = 80.0
MAX_SEARCH_FACES = 4096          # SearchFaces/SearchFacesByImage MaxFaces upper bound
MAX_INDEX_FACES = 100            # IndexFaces indexes at most the 100 largest faces
MAX_COLLECTION_FACES = 20_000_000        # faces per collection (DG limits, maximum)
DEFAULT_LIST_RESULTS = 1000
ARN_PREFIX = "arn:aws:rekognition:local:000000000000:collection/"

#: Arrow schema of a ListFaces ``Face`` item (``rk.Collection.faces()``).
FACE_LIST_SCHEMA = pa.schema([("FaceId", pa.string()), ("BoundingBox", BOUNDING_BOX), ("ImageId", pa.string()),
                              ("ExternalImageId", pa.string()), ("Confidence", pa.float64()),
                              ("IndexFacesModelVersion", pa.string())])


def collection_arn(collection_id: str) -> str:
    return ARN_PREFIX + collection_id


# ============================================================================ face model version


def current_face_model_version() -> str:
    """``FaceModelVersion`` of the face pack this process uses (its name): the same
    value as ``rekolab.models.faces.face_pack().version``, without loading models."""
    return _pack_name(os.environ.get("REKOLAB_FACE_PACK"), os.environ.get("REKOLAB_MODEL_DIR"))


@functools.lru_cache(maxsize=16)
def _pack_name(pack_env: str | None, model_dir_env: str | None) -> str:
    # Cached per environment: resolving may read the packs' ONNX graphs, and
    # search_embeddings runs once per analysed frame.
    from .models.faces import resolve_pack_dir

    return resolve_pack_dir()[0]


def index_faces_model_version(face_model_version: str) -> str:
    """``Face.IndexFacesModelVersion`` (pattern ``[0-9\\.]+``) for a face model name."""
    return f"{zlib.crc32(face_model_version.encode('utf-8'))}.0"


def _check_pack(manifest: dict, version: str | None, operation: str | None = None) -> None:
    version = version or current_face_model_version()
    if manifest["FaceModelVersion"] != version:
        raise InvalidParameterException(
            f"Collection {manifest['CollectionId']!r} was built with face model "
            f"{manifest['FaceModelVersion']!r}, but the face pack in use is {version!r}; embeddings of "
            f"different recognizers cannot be compared. Set REKOLAB_FACE_PACK={manifest['FaceModelVersion']} "
            "or index the faces into a new collection", operation or "rekolab")


# ============================================================================ the contract


def collection_face_model_version(collection_id: str) -> str:
    """The ``FaceModelVersion`` (face pack name) a collection was created with.

    Raises ``ResourceNotFoundException`` for an unknown collection."""
    return _view(collection_id).manifest["FaceModelVersion"]


def search_embeddings(collection_id: str, embeddings: np.ndarray,
                      face_match_threshold: float = DEFAULT_FACE_MATCH_THRESHOLD,
                      max_faces: int = MAX_SEARCH_FACES, *,
                      face_model_version: str | None = None) -> list[list[dict]]:
    """For each L2-normalised query embedding (N, D): its ``FaceMatches`` list.

    Each match is ``{"Similarity": float, "Face": {"FaceId", "BoundingBox",
    "ImageId", "ExternalImageId" (if any), "Confidence", "IndexFacesModelVersion"}}``,
    with Similarity >= ``face_match_threshold``, highest first, at most
    ``max_faces``. ``ResourceNotFoundException`` for an unknown collection;
    ``InvalidParameterException`` when the collection was built with another face
    pack than the one in use (``face_model_version``, default
    ``rekolab.models.faces.face_pack().version``) or for embeddings of another size.

        >>> pack = rekolab.models.faces.face_pack()
        >>> boxes, scores, kps = pack.detect(frame_bgr)
        >>> matches = search_embeddings("cast", pack.embed(frame_bgr, kps))
    """
    view = _view(collection_id)
    _check_pack(view.manifest, face_model_version)
    queries = np.asarray(embeddings, dtype=np.float32)
    if queries.ndim == 1:
        queries = queries[None, :]
    if queries.ndim != 2:
        raise InvalidParameterException(f"embeddings must be (N, D), got shape {queries.shape}")
    if not (0 <= float(face_match_threshold) <= 100):
        raise InvalidParameterException(
            f"FaceMatchThreshold is {face_match_threshold}; it must be between 0 and 100")
    if not (1 <= int(max_faces) <= MAX_SEARCH_FACES):
        raise InvalidParameterException(f"MaxFaces is {max_faces}; it must be between 1 and {MAX_SEARCH_FACES}")
    return _search(view, queries, float(face_match_threshold), int(max_faces))


def _search(view: _View, queries: np.ndarray, threshold: float, max_faces: int,
            exclude: str | None = None) -> list[list[dict]]:
    from .models.faces import cosine_for_similarity, similarity

    dim = view.manifest.get("Dimension")
    if len(queries) and dim is not None and queries.shape[1] != dim:
        raise InvalidParameterException(
            f"embeddings have {queries.shape[1]} dimensions; collection {view.collection_id!r} holds "
            f"{dim}-dimensional faces")
    norms = np.linalg.norm(queries, axis=1, keepdims=True)
    queries = queries / np.maximum(norms, 1e-12)
    # Similarity is monotonic in cosine: filter on cosine (slightly loose), then on
    # the exact Similarity.
    min_cos = -np.inf if threshold <= 0 else cosine_for_similarity(threshold) - 1e-6
    # One matrix product per segment for all queries: (n_seg, D) @ (D, n_queries).
    per_segment = [seg.embeddings @ queries.T if len(seg) else None for seg in view.segments]
    results: list[list[dict]] = []
    for q in range(len(queries)):
        cands_cos, cands_seg, cands_row = [], [], []
        for s, seg_cos in enumerate(per_segment):
            if seg_cos is None:
                continue
            cos = seg_cos[:, q]
            rows = np.flatnonzero(cos >= min_cos)
            if len(rows) > max_faces:
                rows = rows[np.argpartition(-cos[rows], max_faces - 1)[:max_faces]]
            cands_cos.append(cos[rows])
            cands_seg.append(np.full(len(rows), s))
            cands_row.append(rows)
        if not cands_cos:
            results.append([])
            continue
        cos = np.concatenate(cands_cos)
        seg_of, row_of = np.concatenate(cands_seg), np.concatenate(cands_row)
        order = np.argsort(-cos, kind="stable")
        sims = similarity(cos[order])
        matches: list[dict] = []
        for k, sim in zip(order, sims):
            if sim < threshold:
                break
            seg, row = view.segments[seg_of[k]], int(row_of[k])
            if exclude is not None and seg.face_ids[row] == exclude:
                continue
            matches.append({"Similarity": float(sim), "Face": view.face(seg, row)})
            if len(matches) == max_faces:
                break
        results.append(matches)
    return results


def check_searchable(collection_id: str, operation: str | None = None) -> None:
    """Raise what StartFaceSearch raises up front: ``ResourceNotFoundException`` for
    an unknown collection, ``InvalidParameterException`` for another face pack."""
    _check_pack(_view(collection_id, operation).manifest, None, operation)


# ============================================================================ collection lifecycle


def create_collection(collection_id: str, tags: dict | None = None, operation: str | None = None) -> dict:
    """Create an empty collection; ``ResourceAlreadyExistsException`` if it exists."""
    version = current_face_model_version()
    with _locked(collection_id, exclusive=True):
        folder = _dir(collection_id)
        if (folder / _MANIFEST).exists():
            raise ResourceAlreadyExistsException(
                f"The collection id: {collection_id} already exists.", operation or "rekolab")
        tmp = _root() / f".new-{uuid.uuid4().hex}"
        try:
            _create_in(tmp, folder, collection_id, version, tags)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)  # a full disk leaves nothing half-made
            raise
    return {"StatusCode": 200, "CollectionArn": collection_arn(collection_id), "FaceModelVersion": version}


def _create_in(tmp: Path, folder: Path, collection_id: str, version: str, tags: dict | None) -> None:
    """Write the new collection in ``tmp``, then rename it into place (atomic)."""
    tmp.mkdir()
    manifest = {
        "CollectionId": collection_id,
        "CollectionArn": collection_arn(collection_id),
        "FaceModelVersion": version,
        "IndexFacesModelVersion": index_faces_model_version(version),
        "CreationTimestampMs": int(time.time() * 1000),
        "Tags": dict(tags or {}),
        "Dimension": None,
        "Segments": [],
        "FaceCount": 0,
    }
    store.atomic_write_json(tmp / _MANIFEST, manifest)
    if folder.exists():  # a folder with no manifest: left by a crash; replace it
        shutil.rmtree(folder, ignore_errors=True)
    os.rename(tmp, folder)


def describe_collection(collection_id: str, operation: str | None = None) -> dict:
    m = _view(collection_id, operation).manifest
    return {
        "FaceCount": int(m["FaceCount"]),
        "FaceModelVersion": m["FaceModelVersion"],
        "CollectionARN": m["CollectionArn"],
        "CreationTimestamp": _dt.datetime.fromtimestamp(m["CreationTimestampMs"] / 1000, tz=_dt.timezone.utc),
        "UserCount": len(read_users(collection_id)["Users"]),
    }


def delete_collection(collection_id: str, operation: str | None = None) -> dict:
    with _locked(collection_id, exclusive=True):
        folder = _dir(collection_id)
        if not (folder / _MANIFEST).exists():
            raise _not_found(collection_id, operation)
        trash = _root() / f".trash-{uuid.uuid4().hex}"
        os.rename(folder, trash)  # atomic: the collection is gone in one step
    shutil.rmtree(trash, ignore_errors=True)
    with _cache_lock:
        _VIEWS.pop(str(folder), None)
        for k in [k for k in _SEGMENTS if k.startswith(f"{folder}/")]:
            del _SEGMENTS[k]
    return {"StatusCode": 200}


def collection_ids() -> list[str]:
    """Every collection id, sorted."""
    out = []
    for path in _root().iterdir():
        if not path.name.startswith(".") and (path / _MANIFEST).is_file():
            out.append(_collection_id(path.name))
    return sorted(out)


def _token_scope(kind: str, key: str) -> str:
    return f"{kind}:{hashlib.sha256(key.encode()).hexdigest()[:16]}"


#: A ListCollections NextToken holds the last id returned when it is at most this long,
#: else its first characters and a hash (a NextToken is at most 255 characters).
_TOKEN_ID_CHARS = 32


def _last_id_key(last_id: str) -> int:
    """The (signed) integer a ListCollections NextToken carries for the last id returned."""
    raw = last_id.encode("utf-8")
    if len(raw) > _TOKEN_ID_CHARS:  # ids have no NUL byte: it separates the prefix from the hash
        raw = raw[:_TOKEN_ID_CHARS] + b"\0" + hashlib.sha256(raw).digest()[:8]
    return int.from_bytes(b"\1" + raw, "big")


def _resume_after(key: int, ids: list[str]) -> int:
    """Index in ``ids`` (sorted) of the first id after the last one returned, found by
    name, so ids created or deleted between pages shift nothing."""
    import bisect

    from .errors import InvalidPaginationTokenException

    raw = key.to_bytes((key.bit_length() + 7) // 8, "big")
    prefix, hashed, digest = raw[1:].partition(b"\0")
    try:
        if raw[:1] != b"\1":
            raise ValueError(raw[:1])
        prefix_text = prefix.decode("utf-8")
    except ValueError:
        raise InvalidPaginationTokenException("Invalid Pagination Token", "ListCollections") from None
    if not hashed:
        return bisect.bisect_right(ids, prefix_text)
    first = bisect.bisect_left(ids, prefix_text)
    for i in range(first, len(ids)):
        if not ids[i].startswith(prefix_text):
            break
        if hashlib.sha256(ids[i].encode("utf-8")).digest()[:8] == digest:
            return i + 1
    # The last id returned was deleted meanwhile: resume at its prefix (ids that share
    # the prefix may be listed again; none is skipped).
    return first


def list_collections(max_results: int | None = None, next_token: str | None = None) -> dict:
    """ListCollections: ids sorted by name; NextToken holds the last id returned, so
    paging is stable while collections are created or deleted."""
    from .results import make_token, read_token

    limit = max_results or DEFAULT_LIST_RESULTS
    ids = collection_ids()
    scope = _token_scope("ListCollections", "")
    start = _resume_after(read_token(next_token, scope), ids) if next_token else 0
    page = ids[start:start + limit]
    versions = []
    for cid in page:
        try:
            versions.append(store.read_json(_dir(cid) / _MANIFEST)["FaceModelVersion"])
        except FileNotFoundError:  # deleted meanwhile
            versions.append(None)
    keep = [i for i, v in enumerate(versions) if v is not None]
    out = {"CollectionIds": [page[i] for i in keep], "FaceModelVersions": [versions[i] for i in keep]}
    if start + limit < len(ids):
        out["NextToken"] = make_token(scope, _last_id_key(ids[start + limit - 1]))
    return out


# ============================================================================ faces


def _face_rows_sorted(view: _View) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(face ids, segment index, row) of every face, sorted by FaceId."""
    if not view.segments:
        return np.zeros(0, object), np.zeros(0, int), np.zeros(0, int)
    ids = np.concatenate([s.face_ids for s in view.segments])
    seg_of = np.concatenate([np.full(len(s), i) for i, s in enumerate(view.segments)])
    row_of = np.concatenate([np.arange(len(s)) for s in view.segments])
    order = np.argsort(ids.astype(str), kind="stable")
    return ids[order], seg_of[order], row_of[order]


def list_faces(collection_id: str, max_results: int | None = None, next_token: str | None = None,
               face_ids: list[str] | None = None, user_id: str | None = None,
               operation: str | None = None) -> dict:
    """ListFaces: faces sorted by FaceId; NextToken holds the last FaceId returned,
    so paging is stable while faces are added or deleted."""
    from .results import make_token, read_token

    view = _view(collection_id, operation)
    limit = max_results or DEFAULT_LIST_RESULTS
    scope = _token_scope("ListFaces", f"{collection_id}\n{user_id}\n{sorted(face_ids or [])}")
    ids, seg_of, row_of = _face_rows_sorted(view)
    if face_ids is not None:
        keep = np.isin(ids, np.array(sorted(set(face_ids)), dtype=object))
        ids, seg_of, row_of = ids[keep], seg_of[keep], row_of[keep]
    owner = {f: u for u, rec in read_users(collection_id)["Users"].items() for f in rec["FaceIds"]}
    if user_id is not None:  # the faces associated with the user (AssociateFaces)
        keep = np.isin(ids, np.array([f for f, u in owner.items() if u == user_id], dtype=object))
        ids, seg_of, row_of = ids[keep], seg_of[keep], row_of[keep]
    start = 0
    if next_token:
        after = read_token(next_token, scope)
        after_id = str(uuid.UUID(int=after))
        start = int(np.searchsorted(ids.astype(str), after_id, side="right"))
    sel = range(start, min(start + limit, len(ids)))
    faces = [view.face(view.segments[seg_of[i]], int(row_of[i])) for i in sel]
    for face in faces:
        if face["FaceId"] in owner:
            face["UserId"] = owner[face["FaceId"]]
    out: dict[str, Any] = {"Faces": faces}
    if start + limit < len(ids):
        out["NextToken"] = make_token(scope, uuid.UUID(ids[start + limit - 1]).int)
    out["FaceModelVersion"] = view.manifest["FaceModelVersion"]
    return out


def delete_faces(collection_id: str, face_ids: list[str], operation: str | None = None) -> dict:
    wanted = list(dict.fromkeys(face_ids))
    with _locked(collection_id, exclusive=True):
        view = _read_view(collection_id, operation)
        manifest = dict(view.manifest)
        folder = _dir(collection_id)
        wanted_arr = np.array(wanted, dtype=object)
        deleted: set[str] = set()
        entries = []
        for entry, seg in zip(manifest["Segments"], view.segments):
            hit = np.isin(seg.face_ids, wanted_arr) if len(seg) else np.zeros(0, bool)
            if not hit.any():
                entries.append(entry)
                continue
            deleted.update(seg.face_ids[hit].tolist())
            keep = np.flatnonzero(~hit)
            if len(keep):
                entries.append(_write_segment(folder, _segment_rows(seg, keep), np.asarray(seg.embeddings)[keep]))
        if deleted:
            manifest["Segments"] = entries
            _commit(collection_id, manifest)
            _drop_user_faces(collection_id, deleted)
    out: dict[str, Any] = {}
    done = [f for f in wanted if f in deleted]
    if done:  # the service model gives DeletedFaces at least 1 member: absent when none
        out["DeletedFaces"] = done
    out["UnsuccessfulFaceDeletions"] = [{"FaceId": f, "Reasons": ["FACE_NOT_FOUND"]}
                                        for f in wanted if f not in deleted]
    return out


def search_faces(collection_id: str, face_id: str, face_match_threshold: float = DEFAULT_FACE_MATCH_THRESHOLD,
                 max_faces: int = MAX_SEARCH_FACES, operation: str | None = None) -> dict:
    """SearchFaces: the stored face's embedding against the rest of its collection
    (the face itself is not among the matches)."""
    view = _view(collection_id, operation)
    hit = view.find(face_id)
    if hit is None:
        raise InvalidParameterException(
            f"FaceId {face_id} is not in collection {collection_id!r}; list its faces with ListFaces",
            operation or "rekolab")
    seg, row = hit
    query = np.asarray(seg.embeddings[row], dtype=np.float32)[None, :]
    matches = _search(view, query, face_match_threshold, max_faces + 1, exclude=face_id)[0][:max_faces]
    return {"SearchedFaceId": face_id, "FaceMatches": matches,
            "FaceModelVersion": view.manifest["FaceModelVersion"]}


def add_faces(collection_id: str, embeddings: np.ndarray, faces: list[dict], image_sha: str,
              face_model_version: str | None = None, operation: str | None = None) -> list[dict]:
    """Store faces (one ``Face``-like dict per embedding: BoundingBox, Confidence,
    optional ExternalImageId) under the collection's exclusive lock.

    Idempotent per image: a face of the same image (``image_sha``) and
    ExternalImageId at the same box is not stored twice; its existing ``Face`` is
    returned. Faces of an image already in the collection share its ImageId.
    Returns the stored ``Face`` dicts, in the order given."""
    embeddings = np.asarray(embeddings, dtype=np.float32).reshape(len(faces), -1)
    with _locked(collection_id, exclusive=True):
        view = _read_view(collection_id, operation)
        _check_pack(view.manifest, face_model_version, operation)
        manifest = dict(view.manifest)
        if len(faces) and manifest.get("Dimension") not in (None, embeddings.shape[1]):
            raise InvalidParameterException(
                f"embeddings have {embeddings.shape[1]} dimensions; collection {collection_id!r} holds "
                f"{manifest['Dimension']}-dimensional faces", operation or "rekolab")
        same_image = [(seg, np.flatnonzero(seg.image_sha == image_sha)) for seg in view.segments if len(seg)]
        same_image = [(seg, rows) for seg, rows in same_image if len(rows)]
        image_id = same_image[0][0].image_ids[same_image[0][1][0]] if same_image else str(uuid.uuid4())
        out: list[dict] = []
        new_rows: dict[str, list] = {k: [] for k in _SEGMENT_COLUMNS}
        new_idx: list[int] = []
        for i, face in enumerate(faces):
            ext = face.get("ExternalImageId")
            box = face["BoundingBox"]
            b = np.array([box["Width"], box["Height"], box["Left"], box["Top"]])
            existing = None
            for seg, rows in same_image:
                for r in rows:
                    if seg.external_ids[r] == ext and np.allclose(seg.boxes[r], b, atol=1e-4):
                        existing = view.face(seg, int(r))
                        break
                if existing:
                    break
            if existing is not None:
                out.append(existing)
                continue
            face_id = str(uuid.uuid4())
            for k, v in (("FaceId", face_id), ("ImageId", image_id), ("ExternalImageId", ext),
                         ("ImageSha", image_sha), ("Width", float(b[0])), ("Height", float(b[1])),
                         ("Left", float(b[2])), ("Top", float(b[3])), ("Confidence", float(face["Confidence"]))):
                new_rows[k].append(v)
            new_idx.append(i)
            record = {"FaceId": face_id, "BoundingBox": dict(box), "ImageId": image_id}
            if ext is not None:
                record["ExternalImageId"] = ext
            record["Confidence"] = float(face["Confidence"])
            record["IndexFacesModelVersion"] = manifest["IndexFacesModelVersion"]
            out.append(record)
        if new_idx:
            if manifest["FaceCount"] + len(new_idx) > MAX_COLLECTION_FACES:
                raise ServiceQuotaExceededException(
                    f"Collection {collection_id!r} would hold more than {MAX_COLLECTION_FACES} faces",
                    operation or "rekolab")
            manifest["Dimension"] = int(embeddings.shape[1])
            manifest["Segments"] = list(manifest["Segments"]) + [
                _write_segment(_dir(collection_id), new_rows, embeddings[new_idx])]
            _merge_tail(collection_id, view, manifest)
            _commit(collection_id, manifest)
    return out


# ============================================================================ images
# load_image (Image.Bytes / Image.S3Object -> BGR array) lives in rekolab/images.py,
# shared with RecognizeCelebrities; it is re-exported here.


# ============================================================================ IndexFaces quality
# QUALITY_BARS, face_quality, quality_reasons and detect_faces live in
# rekolab/analysis/face_quality.py and rekolab/analysis/faces.py (shared with DetectFaces,
# CompareFaces and StartFaceDetection); they are re-exported here.


def index_faces(collection_id: str, bgr: np.ndarray, image_sha: str, external_image_id: str | None = None,
                max_faces: int | None = None, quality_filter: str = "AUTO",
                detection_attributes: list[str] | None = None, operation: str | None = None) -> dict:
    """IndexFaces on a decoded image: detect, filter, embed, store. Returns the response."""
    view = _view(collection_id, operation)
    _check_pack(view.manifest, None, operation)  # before loading any model
    from .analysis.faces import detect_faces

    pack, boxes, scores, kps, details = detect_faces(bgr, detection_attributes or ["DEFAULT"])
    _check_pack(view.manifest, pack.version, operation)
    n = len(details)
    sides = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) if n else np.zeros(0)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) if n else np.zeros(0)
    order = sorted(range(n), key=lambda i: -areas[i])  # largest first, as Rekognition sorts
    reasons = {i: quality_reasons(details[i], sides[i], quality_filter) for i in order}
    passing = [i for i in order if not reasons[i]]
    cap = min(max_faces or MAX_INDEX_FACES, MAX_INDEX_FACES)
    if len(passing) > cap:
        # "the faces with the lowest quality are filtered out first", then the smallest:
        # rank faces that would fail the AUTO bar last (only matters with NONE).
        ranked = sorted(passing, key=lambda i: (bool(quality_reasons(details[i], sides[i], "AUTO")), -areas[i]))
        kept = set(ranked[:cap])
        for i in passing:
            if i not in kept:
                reasons[i] = ["EXCEEDS_MAX_FACES"]
        passing = [i for i in passing if i in kept]
    faces = []
    for i in passing:
        face = {"BoundingBox": details[i]["BoundingBox"], "Confidence": details[i]["Confidence"]}
        if external_image_id is not None:
            face["ExternalImageId"] = external_image_id
        faces.append(face)
    embeddings = pack.embed(bgr, kps[passing]) if passing else np.zeros((0, 1), np.float32)
    stored = add_faces(collection_id, embeddings, faces, image_sha, pack.version, operation) if passing else []
    return {
        "FaceRecords": [{"Face": face, "FaceDetail": details[i]} for face, i in zip(stored, passing)],
        "FaceModelVersion": view.manifest["FaceModelVersion"],
        "UnindexedFaces": [{"Reasons": reasons[i], "FaceDetail": details[i]} for i in order if reasons[i]],
    }


def search_faces_by_image(collection_id: str, bgr: np.ndarray,
                          face_match_threshold: float = DEFAULT_FACE_MATCH_THRESHOLD,
                          max_faces: int = MAX_SEARCH_FACES, quality_filter: str = "NONE",
                          operation: str | None = None) -> dict:
    """SearchFacesByImage: the largest face (that passes ``quality_filter``) against
    the collection. ``InvalidParameterException`` when there is no such face."""
    view = _view(collection_id, operation)
    _check_pack(view.manifest, None, operation)
    from .analysis.faces import detect_faces

    pack, boxes, scores, kps, details = detect_faces(bgr, ["DEFAULT"])
    _check_pack(view.manifest, pack.version, operation)
    if not details:
        raise InvalidParameterException(
            "There are no faces in the image. Should be at least 1.", operation or "rekolab")
    sides = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    ok = [i for i in np.argsort(-areas, kind="stable") if not quality_reasons(details[i], sides[i], quality_filter)]
    if not ok:
        raise InvalidParameterException(
            f"No face in the image passes QualityFilter {quality_filter} ({len(details)} detected); "
            "use QualityFilter NONE or a better image", operation or "rekolab")
    i = int(ok[0])
    query = pack.embed(bgr, kps[i:i + 1])
    matches = _search(view, query, face_match_threshold, max_faces)[0]
    return {
        "SearchedFaceBoundingBox": details[i]["BoundingBox"],
        "SearchedFaceConfidence": details[i]["Confidence"],
        "FaceMatches": matches,
        "FaceModelVersion": view.manifest["FaceModelVersion"],
    }
