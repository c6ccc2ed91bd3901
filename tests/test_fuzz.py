"""Request fuzzing (issue #9): hypothesis builds requests from botocore's own
Rekognition input shapes for every operation the client implements — valid ones,
and ones with an unknown member, a wrongly typed member or out-of-range values.
Every outcome must be a response valid under the service model, botocore's
``ParamValidationError``, or a ``ClientError`` whose code the operation documents;
never another exception type."""
from __future__ import annotations

import datetime as dt

import pytest
from botocore import xform_name
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rekolab as rk
from rekolab.errors import ParamValidationError
from rekolab.requests import service_model
from rekolab.testing import validate_response

from conftest import module_env

_ALPHABET = st.characters(codec="utf-8", categories=("L", "N"), include_characters="-_.:/ ")


def _values(shape, depth: int = 0):
    """Values for one botocore shape: mostly in range, sometimes just outside it."""
    kind = shape.type_name
    meta = shape.metadata
    if kind == "structure":
        if depth > 4:
            return st.just({})
        members = shape.members
        required = {k: _values(members[k], depth + 1) for k in shape.required_members}
        optional = {k: _values(v, depth + 1) for k, v in members.items() if k not in shape.required_members}
        return st.fixed_dictionaries(required, optional=optional)
    if kind == "string":
        if shape.enum:
            return st.sampled_from(shape.enum) | st.text(_ALPHABET, max_size=6)
        lo, hi = meta.get("min", 0), min(meta.get("max", 40), 40)
        return st.text(_ALPHABET, min_size=lo, max_size=max(lo, hi)) | st.text(max_size=hi + 2)
    if kind in ("integer", "long"):
        lo, hi = meta.get("min", -5), meta.get("max", 10_000)
        return st.integers(lo - 1, min(hi, 10_000) + 1)
    if kind in ("float", "double"):
        return st.floats(-1, 200) | st.sampled_from([float("nan"), float("inf"), -float("inf")])
    if kind == "boolean":
        return st.booleans()
    if kind == "blob":
        return st.binary(max_size=64)
    if kind == "timestamp":
        return st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2100, 1, 1))
    if kind == "list":
        return st.lists(_values(shape.member, depth + 1), max_size=3)
    if kind == "map":
        return st.dictionaries(_values(shape.key, depth + 1), _values(shape.value, depth + 1), max_size=2)
    return st.none()


_WRONG = st.sampled_from([None, 7, -1.5, "x", b"\x00", [], {}, True])


def _requests(shape):
    valid = _values(shape)
    if not shape.members:
        return valid | st.fixed_dictionaries({"Bogus": _WRONG})
    names = sorted(shape.members)
    unknown = valid.map(lambda d: {**d, "NotAMember": 1})
    mistyped = st.tuples(valid, st.sampled_from(names), _WRONG).map(lambda t: {**t[0], t[1]: t[2]})
    return st.one_of(valid, valid, unknown, mistyped)


MODEL = service_model()
_PROBE = rk.Client()
# Implemented = a method of the Client class (every other name answers UnsupportedOperationException).
OPERATIONS = [op for op in MODEL.operation_names if callable(getattr(type(_PROBE), xform_name(op), None))]


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with module_env(tmp_path_factory, "fuzz-home"):
        bucket = tmp_path_factory.mktemp("fuzz-bucket")
        yield rk.client(buckets={"media": str(bucket)})


def test_every_implemented_operation_is_fuzzed():
    assert len(OPERATIONS) >= 20


@pytest.mark.parametrize("operation", OPERATIONS)
def test_fuzzed_requests_get_a_valid_response_or_a_documented_error(client, operation):
    op_model = MODEL.operation_model(operation)
    documented = {e.name for e in op_model.error_shapes} | {"InternalServerError"}
    method = getattr(client, xform_name(operation))

    @settings(max_examples=12, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(_requests(op_model.input_shape))
    def check(request):
        try:
            response = method(**request)
        except ParamValidationError:
            return
        except rk.ClientError as exc:
            code = exc.response["Error"]["Code"]
            assert code in documented, f"{operation}({request!r}) -> {code}: {exc}"
            assert exc.response["Error"]["Message"]
            return
        validate_response(operation, response)

    check()
