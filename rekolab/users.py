"""Users of a face collection: CreateUser, DeleteUser, ListUsers, AssociateFaces,
DisassociateFaces, SearchUsers, SearchUsersByImage.

A user is a named set of up to 100 faces of its collection. Its **user vector** is the
L2-normalised mean of its faces' embeddings; a user match's ``Similarity`` is
:func:`rekolab.models.faces.similarity` of the cosine between the query and the user
vector (the calibration face search uses).

State lives with the collection (``<collection>/users.json``, see
:func:`rekolab.collection_store.read_users`) and every write holds the collection's
exclusive ``fcntl`` lock, the one IndexFaces and DeleteFaces hold, so concurrent writers
(threads or processes) lose nothing and a user never names a face that was deleted:
DeleteFaces removes deleted faces from their users under the same lock.

Statuses: operations are synchronous here, so a user is ``CREATED`` while it has no
faces and ``ACTIVE`` once it has one; ``CREATING``/``UPDATING`` are never observed.

``ClientRequestToken`` (CreateUser, DeleteUser, AssociateFaces, DisassociateFaces): the
same token with the same parameters returns the first call's response without doing
the work again; with other parameters, ``IdempotentParameterMismatchException``. The
last 1000 tokens of each collection are kept.
"""
from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import numpy as np

from . import collection_store as S
from . import collections as C
from .errors import (ConflictException, IdempotentParameterMismatchException, InvalidParameterException,
                     ResourceNotFoundException, ServiceQuotaExceededException)

__all__ = ["MAX_USER_FACES", "DEFAULT_ASSOCIATE_THRESHOLD", "DEFAULT_USER_MATCH_THRESHOLD", "MAX_USERS",
           "create_user", "delete_user", "list_users", "associate_faces", "disassociate_faces",
           "search_users", "search_users_by_image"]

MAX_USER_FACES = 100                 # faces per user
DEFAULT_ASSOCIATE_THRESHOLD = 75.0   # AssociateFaces UserMatchThreshold default
DEFAULT_USER_MATCH_THRESHOLD = 80.0  # SearchUsers / SearchUsersByImage default
MAX_USERS = 500                      # ListUsers MaxResults / MaxUsers upper bound (and default)
_KEPT_TOKENS = 1000


def _status(user: dict) -> str:
    return "ACTIVE" if user["FaceIds"] else "CREATED"


def _user_not_found(collection_id: str, user_id: str, op: str):
    return ResourceNotFoundException(
        f"The user {user_id} does not exist in collection {collection_id}. Create it with CreateUser first", op)


def _fingerprint(op: str, params: dict) -> str:
    body = {k: v for k, v in params.items() if k != "ClientRequestToken"}
    return hashlib.sha256(f"{op}\n{json.dumps(body, sort_keys=True, default=str)}".encode()).hexdigest()


def _write(collection_id: str, op: str, params: dict, work) -> dict:
    """Run ``work(doc, view) -> response`` under the collection's exclusive lock, with
    ClientRequestToken idempotency; save the document when it changed."""
    token = params.get("ClientRequestToken")
    with S._locked(collection_id, exclusive=True):
        view = S._read_view(collection_id, op)  # ResourceNotFoundException for an unknown collection
        doc = S.read_users(collection_id)
        key = f"{op}:{token}" if token else None
        if key and key in doc["Tokens"]:
            seen = doc["Tokens"][key]
            if seen["Fingerprint"] != _fingerprint(op, params):
                raise IdempotentParameterMismatchException(
                    f"ClientRequestToken {token} was used for a {op} call with other parameters; "
                    "use a new token for a new request", op)
            return seen["Response"]
        before = json.dumps(doc["Users"], sort_keys=True)
        response = work(doc, view)
        if key:
            doc["Tokens"][key] = {"Fingerprint": _fingerprint(op, params), "Response": response,
                                  "TimeMs": int(time.time() * 1000)}
            if len(doc["Tokens"]) > _KEPT_TOKENS:
                for old in sorted(doc["Tokens"], key=lambda k: doc["Tokens"][k]["TimeMs"])[:-_KEPT_TOKENS]:
                    del doc["Tokens"][old]
        if key or json.dumps(doc["Users"], sort_keys=True) != before:
            S.write_users(collection_id, doc)
    return response


# ============================================================================ lifecycle


def create_user(params: dict, op: str = "CreateUser") -> dict:
    cid, uid = params["CollectionId"], params["UserId"]

    def work(doc, view):
        if uid in doc["Users"]:
            raise ConflictException(f"A user with id {uid} already exists in collection {cid}", op)
        doc["Users"][uid] = {"FaceIds": [], "CreationTimestampMs": int(time.time() * 1000)}
        return {}

    return _write(cid, op, params, work)


def delete_user(params: dict, op: str = "DeleteUser") -> dict:
    cid, uid = params["CollectionId"], params["UserId"]

    def work(doc, view):
        if uid not in doc["Users"]:
            raise _user_not_found(cid, uid, op)
        del doc["Users"][uid]  # its faces are disassociated: they stay in the collection
        return {}

    return _write(cid, op, params, work)


def list_users(params: dict, op: str = "ListUsers") -> dict:
    """Users sorted by UserId; NextToken holds the last id returned (stable while users
    are created or deleted)."""
    from .results import make_token, read_token

    cid = params["CollectionId"]
    S._view(cid, op)  # ResourceNotFoundException
    users = S.read_users(cid)["Users"]
    ids = sorted(users)
    limit = int(params.get("MaxResults") or MAX_USERS)
    scope = C._token_scope("ListUsers", cid)
    start = C._resume_after(read_token(params["NextToken"], scope), ids) if params.get("NextToken") else 0
    page = ids[start:start + limit]
    out: dict[str, Any] = {"Users": [{"UserId": u, "UserStatus": _status(users[u])} for u in page]}
    if start + limit < len(ids):
        out["NextToken"] = make_token(scope, C._last_id_key(ids[start + limit - 1]))
    return out


# ============================================================================ faces of a user


def _face_index(view) -> dict[str, tuple[int, int]]:
    """FaceId -> (segment index, row) for every face of the collection."""
    out = {}
    for s, seg in enumerate(view.segments):
        for row, fid in enumerate(seg.face_ids.tolist()):
            out[fid] = (s, row)
    return out


def _embeddings(view, index: dict, face_ids: list[str]) -> np.ndarray:
    rows = [np.asarray(view.segments[index[f][0]].embeddings[index[f][1]], np.float32) for f in face_ids]
    return np.stack(rows) if rows else np.zeros((0, view.manifest.get("Dimension") or 1), np.float32)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def _user_vector(view, index: dict, face_ids: list[str]) -> np.ndarray:
    return _unit(_unit(_embeddings(view, index, face_ids)).mean(0))


def _owners(doc: dict) -> dict[str, str]:
    return {f: u for u, rec in doc["Users"].items() for f in rec["FaceIds"]}


def _sort_faces(wanted: list[str], index, owners: dict, uid: str) -> tuple[list[str], list[str], list[dict]]:
    """``(free, mine, failed)``: faces of no user, faces of ``uid``, and the
    UnsuccessfulFaceAssociations entries (FACE_NOT_FOUND, ASSOCIATED_TO_A_DIFFERENT_USER)."""
    free, mine, failed = [], [], []
    for fid in wanted:
        owner = owners.get(fid)
        if fid not in index:
            failed.append({"FaceId": fid, "UserId": uid, "Reasons": ["FACE_NOT_FOUND"]})
        elif owner not in (None, uid):
            failed.append({"FaceId": fid, "UserId": owner, "Reasons": ["ASSOCIATED_TO_A_DIFFERENT_USER"]})
        else:
            (mine if owner == uid else free).append(fid)
    return free, mine, failed


def associate_faces(params: dict, op: str = "AssociateFaces") -> dict:
    """AssociateFaces. A face already the user's is ignored (not returned); a face not in
    the collection is FACE_NOT_FOUND, another user's is ASSOCIATED_TO_A_DIFFERENT_USER;
    when the user already has faces, a face whose Similarity to the user vector is under
    ``UserMatchThreshold`` (default 75) is LOW_MATCH_CONFIDENCE (with that Similarity as
    Confidence). More than 100 faces in all -> ServiceQuotaExceededException (nothing is
    associated)."""
    from .models.faces import similarity

    cid, uid = params["CollectionId"], params["UserId"]
    threshold = float(params.get("UserMatchThreshold", DEFAULT_ASSOCIATE_THRESHOLD))
    wanted = list(dict.fromkeys(params["FaceIds"]))

    def work(doc, view):
        user = doc["Users"].get(uid)
        if user is None:
            raise _user_not_found(cid, uid, op)
        index = _face_index(view)
        ok, _, failed = _sort_faces(wanted, index, _owners(doc), uid)
        if user["FaceIds"] and ok:
            vector = _user_vector(view, index, user["FaceIds"])
            sims = similarity(_unit(_embeddings(view, index, ok)) @ vector)
            kept = []
            for fid, sim in zip(ok, np.atleast_1d(sims)):
                if sim >= threshold:
                    kept.append(fid)
                else:
                    failed.append({"FaceId": fid, "UserId": uid, "Confidence": float(sim),
                                   "Reasons": ["LOW_MATCH_CONFIDENCE"]})
            ok = kept
        if len(user["FaceIds"]) + len(ok) > MAX_USER_FACES:
            raise ServiceQuotaExceededException(
                f"User {uid} has {len(user['FaceIds'])} faces; associating {len(ok)} more would exceed the "
                f"limit of {MAX_USER_FACES} faces per user. Disassociate faces first", op)
        user["FaceIds"] = user["FaceIds"] + ok
        return {"AssociatedFaces": [{"FaceId": f} for f in ok], "UnsuccessfulFaceAssociations": failed,
                "UserStatus": _status(user)}

    return _write(cid, op, params, work)


def disassociate_faces(params: dict, op: str = "DisassociateFaces") -> dict:
    """DisassociateFaces. A face of no user is ignored; FACE_NOT_FOUND /
    ASSOCIATED_TO_A_DIFFERENT_USER otherwise."""
    cid, uid = params["CollectionId"], params["UserId"]
    wanted = list(dict.fromkeys(params["FaceIds"]))

    def work(doc, view):
        user = doc["Users"].get(uid)
        if user is None:
            raise _user_not_found(cid, uid, op)
        _, done, failed = _sort_faces(wanted, _face_index(view), _owners(doc), uid)
        removed = set(done)
        user["FaceIds"] = [f for f in user["FaceIds"] if f not in removed]
        return {"DisassociatedFaces": [{"FaceId": f} for f in done], "UnsuccessfulFaceDisassociations": failed,
                "UserStatus": _status(user)}

    return _write(cid, op, params, work)


# ============================================================================ search


def _match_users(view, doc: dict, query: np.ndarray, threshold: float, max_users: int,
                 exclude: str | None = None) -> list[dict]:
    from .models.faces import similarity

    index = _face_index(view)
    users = [(u, rec) for u, rec in sorted(doc["Users"].items()) if rec["FaceIds"] and u != exclude]
    if not users:
        return []
    vectors = np.stack([_user_vector(view, index, rec["FaceIds"]) for _, rec in users])
    sims = similarity(vectors @ _unit(np.asarray(query, np.float32)))
    order = np.argsort(-sims, kind="stable")
    out = []
    for i in order[:max_users]:
        if sims[i] < threshold:
            break
        u, rec = users[i]
        out.append({"Similarity": float(sims[i]), "User": {"UserId": u, "UserStatus": _status(rec)}})
    return out


def search_users(params: dict, op: str = "SearchUsers") -> dict:
    """SearchUsers by a stored FaceId (its embedding) or a UserId (its user vector; the
    user itself is not among the matches)."""
    cid = params["CollectionId"]
    if ("FaceId" in params) == ("UserId" in params):
        raise InvalidParameterException("SearchUsers needs exactly one of FaceId or UserId", op)
    threshold = float(params.get("UserMatchThreshold", DEFAULT_USER_MATCH_THRESHOLD))
    max_users = int(params.get("MaxUsers", MAX_USERS))
    with S._locked(cid, exclusive=False):
        view = S._read_view(cid, op)
        doc = S.read_users(cid)
    C._check_pack(view.manifest, None, op)
    out: dict[str, Any] = {}
    if "FaceId" in params:
        hit = view.find(params["FaceId"])
        if hit is None:
            raise InvalidParameterException(
                f"FaceId {params['FaceId']} is not in collection {cid!r}; list its faces with ListFaces", op)
        seg, row = hit
        query, exclude = np.asarray(seg.embeddings[row], np.float32), None
        out["SearchedFace"] = {"FaceId": params["FaceId"]}
    else:
        uid = params["UserId"]
        user = doc["Users"].get(uid)
        if user is None:
            raise _user_not_found(cid, uid, op)
        if not user["FaceIds"]:
            raise InvalidParameterException(f"User {uid} has no faces to search with; AssociateFaces first", op)
        query, exclude = _user_vector(view, _face_index(view), user["FaceIds"]), uid
        out["SearchedUser"] = {"UserId": uid}
    out["UserMatches"] = _match_users(view, doc, query, threshold, max_users, exclude)
    out["FaceModelVersion"] = view.manifest["FaceModelVersion"]
    return out


def search_users_by_image(params: dict, bgr: np.ndarray, op: str = "SearchUsersByImage") -> dict:
    """SearchUsersByImage: the largest face that passes QualityFilter (default NONE) is
    searched; every other face is in UnsearchedFaces with its Reasons (FACE_NOT_LARGEST
    and/or the quality reasons). No usable face: empty UserMatches, no SearchedFace."""
    from .analysis.face_quality import quality_reasons
    from .analysis.faces import MAX_IMAGE_FACES, detect_faces

    cid = params["CollectionId"]
    threshold = float(params.get("UserMatchThreshold", DEFAULT_USER_MATCH_THRESHOLD))
    max_users = int(params.get("MaxUsers", MAX_USERS))
    quality = params.get("QualityFilter", "NONE")
    view = S._view(cid, op)
    C._check_pack(view.manifest, None, op)
    faces = detect_faces(bgr, ["DEFAULT"], max_faces=MAX_IMAGE_FACES)
    C._check_pack(view.manifest, faces.pack.version, op)
    reasons = {i: quality_reasons(faces.details[i], faces.min_sides[i], quality) for i in range(len(faces))}
    ok = [i for i in faces.largest_first() if not reasons[i]]
    out: dict[str, Any] = {"UserMatches": [], "FaceModelVersion": view.manifest["FaceModelVersion"]}
    if ok:
        i = ok[0]
        query = faces.pack.embed(bgr, faces.kps[i:i + 1])[0]
        with S._locked(cid, exclusive=False):
            view = S._read_view(cid, op)
            doc = S.read_users(cid)
        out["UserMatches"] = _match_users(view, doc, query, threshold, max_users)
        out["SearchedFace"] = {"FaceDetail": faces.details[i]}
    unsearched = []
    for j in faces.largest_first():
        if ok and j == ok[0]:
            continue
        smaller = bool(ok) and faces.areas[j] <= faces.areas[ok[0]]
        why = (["FACE_NOT_LARGEST"] if smaller else []) + list(reasons[j])
        unsearched.append({"FaceDetails": faces.details[j], "Reasons": why})
    out["UnsearchedFaces"] = unsearched
    return out
