"""Pagination: signed NextToken values over a job's Arrow table.

A token is ``<payload>.<signature>``: the payload names the job, the offset and
the Get* options it was issued for; the signature is an HMAC with a key kept in
the rekolab home. A token that was altered, issued for another job or other
options, or issued by another rekolab home is refused with
``InvalidPaginationTokenException``. Tokens stay valid 24 hours, as Rekognition's.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time

from .. import store
from ..errors import InvalidPaginationTokenException

__all__ = ["make_token", "read_token", "TOKEN_TTL_S"]

TOKEN_TTL_S = 24 * 3600


def _key() -> bytes:
    path = store.home() / "secret"
    try:
        key = path.read_bytes()
        if key:
            return key
    except FileNotFoundError:
        pass
    # Write the new key to a temporary file, then link it into place: the link
    # fails if another process got there first, and nobody ever reads a file that
    # exists but is not yet written. Everyone then uses the key on disk.
    tmp = path.with_name(f".secret.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        tmp.write_bytes(secrets.token_bytes(32))
        os.chmod(tmp, 0o600)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    except OSError:
        # A home that cannot be written (read-only volume, full disk) still pages:
        # the key is derived from the home itself, the same in every process reading
        # it. Such tokens still name their job and options; they are not secret.
        home = path.parent
        st = os.stat(home)
        return hashlib.sha256(f"rekolab-read-only-home\0{home}\0{st.st_dev}\0{st.st_ino}".encode()).digest()
    return path.read_bytes()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_token(job_id: str, offset: int, options: str = "") -> str:
    payload = _b64(json.dumps([job_id, offset, options, int(time.time())], separators=(",", ":")).encode())
    sig = _b64(hmac.new(_key(), payload.encode(), hashlib.sha256).digest()[:16])
    return f"{payload}.{sig}"


def read_token(token: str, job_id: str, options: str = "") -> int:
    """The offset a token points at, after checking it belongs to this job and options."""
    try:
        payload, sig = token.split(".")
        expected = _b64(hmac.new(_key(), payload.encode(), hashlib.sha256).digest()[:16])
        if not hmac.compare_digest(sig, expected):
            raise ValueError("signature")
        tok_job, offset, tok_options, issued = json.loads(_unb64(payload))
    except Exception:
        raise InvalidPaginationTokenException("Invalid Pagination Token") from None
    if tok_job != job_id or tok_options != options:
        raise InvalidPaginationTokenException(
            "Invalid Pagination Token: it was issued for another job or other request options")
    if time.time() - issued > TOKEN_TTL_S:
        raise InvalidPaginationTokenException("Invalid Pagination Token: it expired (24 hours)")
    if not isinstance(offset, int) or offset < 0:
        raise InvalidPaginationTokenException("Invalid Pagination Token")
    return offset
