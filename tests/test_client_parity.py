"""The in-process client has boto3's shape: constructor arguments, ResponseMetadata,
meta (enough for botocore's Stubber), paginators, unimplemented operations as
ClientError, close()."""
from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, OperationNotPageableError, UnknownServiceError
from botocore.stub import Stubber

import rekolab
from rekolab.testing import body, validate_response


def test_boto3_signature_and_meta():
    c = rekolab.client("rekognition", region_name="eu-west-1", endpoint_url="http://127.0.0.1:9250",
                       aws_access_key_id="AKID", aws_secret_access_key="s", aws_session_token=None, verify=False)
    assert c.meta.region_name == "eu-west-1" and c.meta.endpoint_url == "http://127.0.0.1:9250"
    assert c.meta.service_model.service_name == "rekognition"
    assert c.meta.method_to_api_mapping["get_face_detection"] == "GetFaceDetection"
    with pytest.raises(UnknownServiceError):
        rekolab.client("s3")
    with pytest.raises(TypeError, match="no_such_argument"):
        rekolab.client("rekognition", no_such_argument=1)
    c.close()


def test_response_metadata():
    c = rekolab.client()
    r = c.list_collections()
    meta = r["ResponseMetadata"]
    assert meta["HTTPStatusCode"] == 200 and meta["RetryAttempts"] == 0
    assert meta["RequestId"] == meta["HTTPHeaders"]["x-amzn-requestid"]
    validate_response("ListCollections", r)
    assert body(r) == {"CollectionIds": [], "FaceModelVersions": []}


def test_unimplemented_operation_is_a_client_error():
    c = rekolab.client()
    assert callable(c.create_project)
    with pytest.raises(ClientError) as e:
        c.create_project(ProjectName="p")
    assert e.value.response["Error"]["Code"] == "UnsupportedOperationException"
    assert "CreateProject" in str(e.value)
    with pytest.raises(AttributeError):
        c.not_an_operation()


def test_stubber():
    c = rekolab.client()
    with Stubber(c) as stub:
        stub.add_response("get_face_detection", {"JobStatus": "SUCCEEDED", "Faces": []},
                          {"JobId": "a" * 64})
        stub.add_client_error("describe_collection", "ResourceNotFoundException", "no such collection")
        stub.add_response("create_project", {"ProjectArn": "arn:aws:rekognition:x"})  # any modelled op
        assert c.get_face_detection(JobId="a" * 64)["JobStatus"] == "SUCCEEDED"
        with pytest.raises(c.exceptions.ResourceNotFoundException, match="no such collection"):
            c.describe_collection(CollectionId="x")
        assert c.create_project(ProjectName="p")["ProjectArn"] == "arn:aws:rekognition:x"
        stub.assert_no_pending_responses()
    assert c.list_collections()["CollectionIds"] == []  # deactivated: the real thing again


def test_paginators():
    c = rekolab.client()
    for name in ("a", "b", "c"):
        c.create_collection(CollectionId=name)
    assert c.can_paginate("list_collections") and not c.can_paginate("get_face_detection")
    pages = list(c.get_paginator("list_collections").paginate(PaginationConfig={"PageSize": 2}))
    assert [p["CollectionIds"] for p in pages] == [["a", "b"], ["c"]]
    full = c.get_paginator("list_collections").paginate().build_full_result()
    assert full["CollectionIds"] == ["a", "b", "c"]
    with pytest.raises(OperationNotPageableError):
        c.get_paginator("get_face_detection")
