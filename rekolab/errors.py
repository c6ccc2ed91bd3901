"""Rekognition error codes as exceptions.

Every error rekolab raises for a bad request is a real
:class:`botocore.exceptions.ClientError`, so code written for
``boto3.client("rekognition")`` keeps working::

    try:
        client.get_face_detection(JobId="nope")
    except client.exceptions.ResourceNotFoundException as e:
        print(e.response["Error"]["Code"])     # "ResourceNotFoundException"

Malformed calls (missing, unknown or mistyped arguments) raise botocore's own
:class:`botocore.exceptions.ParamValidationError`, exactly as botocore does before
a request ever leaves the machine.
"""
from __future__ import annotations

from botocore.exceptions import ClientError, ParamValidationError

__all__ = [
    "ClientError",
    "ParamValidationError",
    "RekognitionError",
    "ERROR_CODES",
    "error_class",
    "Exceptions",
]

# (code, HTTP status) for every error shape in the Rekognition service model
# that rekolab can raise. Statuses from the Developer Guide's error-handling page.
ERROR_CODES: dict[str, int] = {
    "AccessDeniedException": 400,
    "IdempotentParameterMismatchException": 400,
    "ImageTooLargeException": 400,
    "InternalServerError": 500,
    "InvalidImageFormatException": 400,
    "InvalidPaginationTokenException": 400,
    "InvalidParameterException": 400,
    "InvalidS3ObjectException": 400,
    "LimitExceededException": 400,
    "ProvisionedThroughputExceededException": 400,
    "ResourceAlreadyExistsException": 400,
    "ResourceInUseException": 400,
    "ResourceNotFoundException": 400,
    "ResourceNotReadyException": 400,
    "ServiceQuotaExceededException": 400,
    "ThrottlingException": 500,
    "VideoTooLargeException": 400,
}


class RekognitionError(ClientError):
    """Base class of every rekolab error code; a botocore ``ClientError``.

    ``RekognitionError.code`` is the Rekognition error code; instances carry the
    same ``response`` dict botocore builds from the service's JSON error body.
    """

    code = "RekognitionError"

    def __init__(self, message: str, operation_name: str = "rekolab"):
        response = {
            "Error": {"Code": self.code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": ERROR_CODES.get(self.code, 400)},
            "Message": message,
        }
        super().__init__(response, operation_name)
        self.message = message

    def __reduce__(self):  # picklable across processes (ClientError's isn't)
        return (type(self), (self.message, self.operation_name))


def _make(code: str) -> type[RekognitionError]:
    return type(code, (RekognitionError,), {"code": code, "__module__": __name__,
                                             "__doc__": f"Rekognition's ``{code}``."})


_CLASSES: dict[str, type[RekognitionError]] = {code: _make(code) for code in ERROR_CODES}
__all__ += list(_CLASSES)


def error_class(code: str) -> type[RekognitionError]:
    """The exception class for a Rekognition error code."""
    return _CLASSES[code]


class Exceptions:
    """``client.exceptions``: every error code as an attribute, like botocore's."""

    ClientError = ClientError

    def __init__(self):
        for code, cls in _CLASSES.items():
            setattr(self, code, cls)

    def from_code(self, code: str) -> type[RekognitionError]:
        return _CLASSES[code]


# Module-level names, so `from rekolab.errors import ResourceNotFoundException` works.
AccessDeniedException = _CLASSES["AccessDeniedException"]
IdempotentParameterMismatchException = _CLASSES["IdempotentParameterMismatchException"]
ImageTooLargeException = _CLASSES["ImageTooLargeException"]
InternalServerError = _CLASSES["InternalServerError"]
InvalidImageFormatException = _CLASSES["InvalidImageFormatException"]
InvalidPaginationTokenException = _CLASSES["InvalidPaginationTokenException"]
InvalidParameterException = _CLASSES["InvalidParameterException"]
InvalidS3ObjectException = _CLASSES["InvalidS3ObjectException"]
LimitExceededException = _CLASSES["LimitExceededException"]
ProvisionedThroughputExceededException = _CLASSES["ProvisionedThroughputExceededException"]
ResourceAlreadyExistsException = _CLASSES["ResourceAlreadyExistsException"]
ResourceInUseException = _CLASSES["ResourceInUseException"]
ResourceNotFoundException = _CLASSES["ResourceNotFoundException"]
ResourceNotReadyException = _CLASSES["ResourceNotReadyException"]
ServiceQuotaExceededException = _CLASSES["ServiceQuotaExceededException"]
ThrottlingException = _CLASSES["ThrottlingException"]
VideoTooLargeException = _CLASSES["VideoTooLargeException"]


# -- codes the service answers with outside its model (rekolab serve, #10) --------------
# An operation in the model that rekolab does not implement; unknown targets and the
# SigV4 refusals of the endpoint (the codes AWS's front end uses; all HTTP 400).
for _code in ("UnsupportedOperationException", "UnknownOperationException", "SerializationException",
              "UnrecognizedClientException", "InvalidSignatureException", "IncompleteSignatureException",
              "MissingAuthenticationTokenException"):
    ERROR_CODES[_code] = 400
    _CLASSES[_code] = _make(_code)
__all__ += ["UnsupportedOperationException"]
UnsupportedOperationException = _CLASSES["UnsupportedOperationException"]
