"""The ASGI application: ``POST /`` with ``X-Amz-Target: RekognitionService.<Operation>``.

The server holds no operation logic: it checks the signature, decodes the body by
the operation's input shape, calls the :class:`rekolab.Client` method of the same
name (snake_case) on a worker thread, and encodes the answer by the output shape.
An operation rekolab does not implement is answered by the client's own
"not implemented" error, so every operation the client gains is served at once.
"""
from __future__ import annotations

import json
import logging
import uuid

from botocore import xform_name
from botocore.exceptions import ClientError, ParamValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..errors import ERROR_CODES
from ..requests import service_model
from .sigv4 import AuthError, check_request
from .wire import WireError, decode_input, encode_output, error_body

__all__ = ["create_app", "MAX_BODY_BYTES", "TARGET_PREFIX"]

log = logging.getLogger("rekolab.server")

TARGET_PREFIX = "RekognitionService."
CONTENT_TYPE = "application/x-amz-json-1.1"
#: The largest request Rekognition takes is an image of 5 MB in Image.Bytes, which is
#: 6.67 MiB once base64-encoded; 8 MiB leaves room for the rest of the JSON.
MAX_BODY_BYTES = 8 * 1024 * 1024
#: Requests served at once; each holds one worker thread (Get* pages are quick, image
#: calls such as IndexFaces are slow but never block the others).
DEFAULT_THREADS = 32


class _Refused(Exception):
    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def _error(code: str, message: str, status: int, request_id: str) -> Response:
    return Response(error_body(code, message, request_id), status_code=status, media_type=CONTENT_TYPE,
                    headers={"x-amzn-RequestId": request_id, "x-amzn-ErrorType": code})


async def _read_body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    too_big = _Refused("ImageTooLargeException",
                       f"Request body is larger than the {limit} bytes rekolab serve accepts "
                       "(Image.Bytes is at most 5 MB; pass larger images as Image.S3Object)")
    if length is not None:
        try:
            if int(length) > limit:
                raise too_big  # refused before a byte of the body is read
        except ValueError:
            raise _Refused("SerializationException", "Content-Length is not a number") from None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_big
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(client=None, *, credentials: dict[str, str] | None = None,
               max_body_bytes: int = MAX_BODY_BYTES, threads: int = DEFAULT_THREADS) -> Starlette:
    """The Rekognition endpoint over ``client`` (default: a new :class:`rekolab.Client`
    with AWS outputs on: SNS notifications and Kinesis records go to real endpoints).
    ``credentials`` (access key id -> secret) turns signature verification on."""
    import anyio

    if client is None:
        from ..client import Client

        client = Client(aws_outputs=True)
    model = service_model()
    operations = set(model.operation_names)
    limiter: list = []  # created inside the event loop, on first use

    def call(method, params):
        return method(**params)

    async def rekognition(request: Request) -> Response:
        request_id = str(uuid.uuid4())
        try:
            target = request.headers.get("x-amz-target", "")
            body = await _read_body(request, max_body_bytes)
            try:
                check_request(request.method, str(request.url), list(request.headers.items()), body,
                              credentials)
            except AuthError as exc:
                raise _Refused(exc.code, exc.message, exc.status) from None
            if not target.startswith(TARGET_PREFIX):
                raise _Refused("UnknownOperationException",
                               f"X-Amz-Target {target!r} is not RekognitionService.<Operation>")
            operation = target[len(TARGET_PREFIX):]
            if operation not in operations:
                raise _Refused("UnknownOperationException",
                               f"{operation} is not an Amazon Rekognition operation")
            op_model = model.operation_model(operation)
            try:
                data = json.loads(body or b"{}")
                params = decode_input(data, op_model.input_shape)
            except (ValueError, WireError) as exc:
                raise _Refused("SerializationException", f"Cannot read the {operation} request body: {exc}") from None
            if not limiter:
                limiter.append(anyio.CapacityLimiter(threads))
            method = getattr(client, xform_name(operation))
            result = await anyio.to_thread.run_sync(call, method, params, limiter=limiter[0])
        except _Refused as exc:
            return _error(exc.code, exc.message, exc.status, request_id)
        except ParamValidationError as exc:
            return _error("InvalidParameterException", str(exc), 400, request_id)
        except ClientError as exc:
            err = exc.response.get("Error", {})
            code = err.get("Code") or "InternalServerError"
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or ERROR_CODES.get(code, 400)
            return _error(code, err.get("Message") or str(exc), status, request_id)
        except Exception as exc:  # a bug, never a dropped connection
            log.exception("request %s (%s) failed", request_id, request.headers.get("x-amz-target"))
            return _error("InternalServerError", f"Internal server error ({type(exc).__name__}); "
                          f"request id {request_id}", 500, request_id)
        payload = json.dumps(encode_output(result, op_model.output_shape), separators=(",", ":"))
        return Response(payload.encode(), media_type=CONTENT_TYPE, headers={"x-amzn-RequestId": request_id})

    async def health(request: Request) -> Response:
        return Response(json.dumps({"service": "rekognition", "server": "rekolab"}), media_type="application/json")

    return Starlette(routes=[Route("/", rekognition, methods=["POST"]), Route("/", health, methods=["GET"])])
