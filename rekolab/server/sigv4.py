"""Signature Version 4 checks for ``rekolab serve``.

Without credentials (loopback only) any well-formed SigV4 ``Authorization``
header is accepted, as moto and LocalStack do. With a credentials file the
signature is recomputed with botocore's own signer (:class:`botocore.auth.SigV4Auth`
over the request rebuilt from its signed headers) and compared; the credential
scope must name the request's date and the ``rekognition`` service, the payload
hash must match the body, and the request time must be within 15 minutes of now.

Credentials files: a JSON object ``{"AKID": "secret", ...}``, an AWS
shared-credentials INI file (``aws_access_key_id`` / ``aws_secret_access_key`` per
profile), or lines of ``AKID SECRET`` / ``AKID=SECRET`` (``#`` comments).
"""
from __future__ import annotations

import configparser
import datetime as _dt
import hashlib
import hmac
import json
import re
from pathlib import Path

__all__ = ["AuthError", "load_credentials", "check_request", "MAX_SKEW_S"]

MAX_SKEW_S = 15 * 60
SERVICE = "rekognition"

_AUTH = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=(?P<akid>[^/,\s]+)/(?P<date>\d{8})/(?P<region>[^/,\s]+)/"
    r"(?P<service>[^/,\s]+)/aws4_request\s*,\s*SignedHeaders=(?P<signed>[a-z0-9;\-]+)\s*,"
    r"\s*Signature=(?P<sig>[0-9a-f]{64})\s*$")


class AuthError(Exception):
    """A refused request: ``code`` is the error code the service answers with."""

    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def load_credentials(path: str | Path) -> dict[str, str]:
    """Access key id -> secret access key, from one of the formats above."""
    text = Path(path).read_text()
    stripped = text.strip()
    creds: dict[str, str] = {}
    if stripped.startswith("{"):
        data = json.loads(stripped)
        creds = {str(k): str(v) for k, v in data.items()}
    elif re.search(r"^\s*\[", text, re.M):
        ini = configparser.ConfigParser()
        ini.read_string(text)
        for section in ini.sections():
            s = ini[section]
            if "aws_access_key_id" in s and "aws_secret_access_key" in s:
                creds[s["aws_access_key_id"].strip()] = s["aws_secret_access_key"].strip()
    else:
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            key, _, secret = line.replace("=", " ", 1).partition(" ")
            if not secret.strip():
                raise ValueError(f"{path}: line {line!r} is not 'ACCESS_KEY_ID SECRET'")
            creds[key.strip()] = secret.strip()
    if not creds:
        raise ValueError(f"{path} holds no credentials (JSON object, AWS INI file or 'AKID SECRET' lines)")
    return creds


def check_request(method: str, url: str, headers: list[tuple[str, str]], body: bytes,
                  credentials: dict[str, str] | None, now: _dt.datetime | None = None) -> str:
    """Verify one request; return its access key id or raise :class:`AuthError`."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    lower: dict[str, list[str]] = {}
    for name, value in headers:
        lower.setdefault(name.lower(), []).append(value)
    auth = (lower.get("authorization") or [None])[0]
    if not auth:
        raise AuthError("MissingAuthenticationTokenException", "Missing Authentication Token")
    m = _AUTH.match(auth.strip())
    if m is None:
        raise AuthError("IncompleteSignatureException",
                        "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' "
                        f"of AWS4-HMAC-SHA256; got {auth[:80]!r}")
    amz_date = (lower.get("x-amz-date") or [None])[0]
    if not amz_date or not re.fullmatch(r"\d{8}T\d{6}Z", amz_date):
        raise AuthError("IncompleteSignatureException",
                        "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header")
    if m["service"] != SERVICE:
        raise AuthError("InvalidSignatureException",
                        f"Credential should be scoped to correct service: '{SERVICE}'.")
    if m["date"] != amz_date[:8]:
        raise AuthError("InvalidSignatureException",
                        f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
                        f"from HTTP: '{m['date']}' != '{amz_date[:8]}'")
    signed = m["signed"].split(";")
    if "host" not in signed:
        raise AuthError("InvalidSignatureException", "'Host' must be a signed header")
    missing = [h for h in signed if h not in lower]
    if missing:
        raise AuthError("InvalidSignatureException", f"signed headers missing from the request: {missing}")
    if credentials is None:
        return m["akid"]

    secret = credentials.get(m["akid"])
    if secret is None:
        raise AuthError("UnrecognizedClientException", "The security token included in the request is invalid.")
    when = _dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=_dt.timezone.utc)
    now = now or _dt.datetime.now(_dt.timezone.utc)
    if abs((now - when).total_seconds()) > MAX_SKEW_S:
        earlier = "earlier" if when < now else "later"
        bound = now - _dt.timedelta(seconds=MAX_SKEW_S) if when < now else now + _dt.timedelta(seconds=MAX_SKEW_S)
        raise AuthError("InvalidSignatureException",
                        f"Signature expired: {amz_date} is now {earlier} than "
                        f"{bound.strftime('%Y%m%dT%H%M%SZ')} ({now.strftime('%Y%m%dT%H%M%SZ')} "
                        f"{'-' if when < now else '+'} 15 min.)")
    content_sha = (lower.get("x-amz-content-sha256") or [None])[0]
    if content_sha is not None and content_sha != hashlib.sha256(body).hexdigest():
        raise AuthError("InvalidSignatureException",
                        "The provided x-amz-content-sha256 header does not match what was computed.")

    request = AWSRequest(method=method, url=url, data=body,
                         headers={h: ",".join(lower[h]) for h in signed})
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(m["akid"], secret), SERVICE, m["region"])
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if signer.signed_headers(signer.headers_to_sign(request)) != m["signed"] or \
            not hmac.compare_digest(expected, m["sig"]):
        raise AuthError("InvalidSignatureException",
                        "The request signature we calculated does not match the signature you provided. "
                        "Check your AWS Secret Access Key and signing method. Consult the service "
                        "documentation for details.")
    return m["akid"]
