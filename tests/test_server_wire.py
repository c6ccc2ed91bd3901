"""The ASGI app in process (no sockets): concurrency of slow calls, the
well-formedness check of loopback mode, request/response encoding by the model."""
from __future__ import annotations

import asyncio
import base64
import json
import threading

import httpx

import rekolab
from rekolab.server import create_app
from rekolab.server.wire import decode_input, encode_output

AUTH = {"Authorization": "AWS4-HMAC-SHA256 Credential=ANYKEY/20260101/us-east-1/rekognition/aws4_request, "
                         "SignedHeaders=host;x-amz-date;x-amz-target, Signature=" + "0" * 64,
        "X-Amz-Date": "20260101T000000Z", "Content-Type": "application/x-amz-json-1.1"}


def _post(h: httpx.AsyncClient, op: str, body: dict, **headers):
    return h.post("/", content=json.dumps(body), headers={**AUTH, "X-Amz-Target": f"RekognitionService.{op}",
                                                           **headers})


def test_a_slow_call_never_blocks_the_others():
    client = rekolab.client()
    entered, release = threading.Event(), threading.Event()
    seen = {}

    def slow_index_faces(**kwargs):  # stands in for a slow IndexFaces
        seen["bytes"] = kwargs["Image"]["Bytes"]
        entered.set()
        assert release.wait(30)
        return {"FaceRecords": [], "FaceModelVersion": "x"}

    client.index_faces = slow_index_faces

    async def main():
        transport = httpx.ASGITransport(app=create_app(client))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as h:
            slow = asyncio.create_task(_post(h, "IndexFaces", {
                "CollectionId": "c", "Image": {"Bytes": base64.b64encode(b"\xff\xd8\xffjpeg").decode()}}))
            while not entered.is_set():
                await asyncio.sleep(0.01)
            fast = await _post(h, "ListCollections", {})  # answered while IndexFaces still runs
            assert fast.status_code == 200 and fast.json() == {"CollectionIds": [], "FaceModelVersions": []}
            assert not slow.done()
            release.set()
            r = await slow
            assert r.status_code == 200 and r.json()["FaceRecords"] == []
            bad = await _post(h, "ListCollections", {}, Authorization="AWS4-HMAC-SHA256 garbage")
            assert bad.status_code == 400 and bad.json()["__type"] == "IncompleteSignatureException"
            notjson = await h.post("/", content=b"{nope", headers={**AUTH, "X-Amz-Target": "RekognitionService.ListCollections"})
            assert notjson.status_code == 400 and notjson.json()["__type"] == "SerializationException"
            health = await h.get("/")
            assert health.status_code == 200

    asyncio.run(main())
    assert seen["bytes"] == b"\xff\xd8\xffjpeg"  # the blob arrived as bytes


def test_encoding_follows_the_model():
    from rekolab.requests import service_model

    model = service_model()
    shape = model.operation_model("IndexFaces").input_shape
    params = decode_input({"CollectionId": "c", "Image": {"Bytes": base64.b64encode(b"abc").decode()},
                           "SampleRate": 2}, shape)
    assert params == {"CollectionId": "c", "Image": {"Bytes": b"abc"}, "SampleRate": 2}  # unknown members kept
    import datetime as dt

    out = encode_output({"CreationTimestamp": dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc), "FaceCount": 1,
                         "ResponseMetadata": {"RequestId": "x"}},
                        model.operation_model("DescribeCollection").output_shape)
    assert out == {"CreationTimestamp": 1767225600.0, "FaceCount": 1}
