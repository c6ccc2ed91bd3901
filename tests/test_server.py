"""`rekolab serve` end to end, all on 127.0.0.1: moto's server plays S3, SNS, SQS and
Kinesis; `rekolab serve` runs in a subprocess with SigV4 verification on; unchanged
boto3 code, the AWS CLI and the AWS SDK for JavaScript v3 talk to it.

One moto server and one rekolab server per module; the videos are one-frame stills
(two faces / one face) so every job takes a second or two.
"""
from __future__ import annotations

import datetime as dt
import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from conftest import MEDIA, MODELS, REPO, module_env, need
from rekolab.testing import still_video, validate_response
from server_fixtures import KEY, REGION, ROLE, SECRET, aws_env, boto_client, moto_server, start_rekolab, stop

KVS_ARN = "arn:aws:kinesisvideo:us-east-1:123456789012:stream/door/1"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    need(MODELS / "insightface" / "models")
    work = tmp_path_factory.mktemp("server")
    rekolab = None
    with moto_server() as aws:
        try:
            videos = {"two": still_video(need(MEDIA / "faces/two_people.jpg"), work / "two.mp4", frames=2, fps=5),
                      "one": still_video(MEDIA / "faces/obama.jpg", work / "one.mp4", frames=2, fps=5)}
            (work / "credentials.json").write_text(json.dumps({KEY: SECRET}))
            with module_env(tmp_path_factory, "server-home") as home:
                base = aws_env(aws)
                server_env = dict(base, REKOLAB_STREAMS=f"{KVS_ARN}={videos['one']}")
                rekolab, url = start_rekolab(server_env, "--credentials", str(work / "credentials.json"),
                                             log=work / "serve.log")
                client_env = dict(base, AWS_ENDPOINT_URL_REKOGNITION=url)
                s3 = boto_client("s3", aws)
                s3.create_bucket(Bucket="media")
                for name, path in videos.items():
                    s3.upload_file(str(path), "media", f"{name}.mp4")
                yield {"aws": aws, "url": url, "env": client_env, "home": home, "work": work, "videos": videos,
                       "proc": rekolab, "log": work / "serve.log"}
        finally:
            if rekolab is not None:
                assert stop(rekolab) in (0, -signal.SIGTERM), (work / "serve.log").read_text()[-3000:]


def _client(stack, service: str = "rekognition", key: str = KEY, secret: str = SECRET):
    return boto_client(service, stack["url"] if service == "rekognition" else stack["aws"], key, secret)


def _wait_job(rek, job_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        page = rek.get_face_detection(JobId=job_id)
        if page["JobStatus"] != "IN_PROGRESS":
            return page
        time.sleep(0.2)
    raise TimeoutError(job_id)


def _jobs_on_disk(stack) -> int:
    jobs = stack["home"] / "jobs"
    return len(list(jobs.iterdir())) if jobs.exists() else 0


# -- an AWS documentation example, unchanged -------------------------------------------------
def test_aws_docs_example_runs_unchanged(stack):
    r = subprocess.run([sys.executable, str(REPO / "tests/aws_examples/video_face_detection.py"), "media",
                        str(stack["videos"]["two"]), ROLE],
                       env=stack["env"], capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout)
    message = out["Message"]
    assert message["Status"] == "SUCCEEDED" and message["JobId"] == out["JobId"]
    assert message["API"] == "StartFaceDetection" and message["JobTag"] == "example"
    assert message["Video"] == {"S3ObjectName": "example/clip.mp4", "S3Bucket": "media"}
    assert isinstance(message["Timestamp"], int)
    assert out["ExtraMessages"] == 0  # exactly one notification per job
    pages = out["Pages"]
    assert len(pages) == 4 and all(len(p["Faces"]) == 1 for p in pages)  # 2 frames x 2 faces, MaxResults=1
    for page in pages:
        validate_response("GetFaceDetection", page)
        assert page["JobStatus"] == "SUCCEEDED" and page["VideoMetadata"]["Codec"] == "h264"
    assert [p["Faces"][0]["Timestamp"] for p in pages] == [0, 0, 200, 200]
    assert all(p["Faces"][0]["Face"]["Confidence"] >= 99 for p in pages)  # calibrated: clear faces


# -- S3 through boto3: versions, overwrites, missing objects -----------------------------------
def test_s3_objects_versions_and_overwrites(stack):
    rek, s3 = _client(stack), _client(stack, "s3")
    s3.create_bucket(Bucket="versioned")
    s3.put_bucket_versioning(Bucket="versioned", VersioningConfiguration={"Status": "Enabled"})
    v1 = s3.put_object(Bucket="versioned", Key="clip.mp4", Body=stack["videos"]["two"].read_bytes())["VersionId"]

    def faces(**s3object):
        job = rek.start_face_detection(Video={"S3Object": {"Bucket": "versioned", "Name": "clip.mp4", **s3object}})
        page = _wait_job(rek, job["JobId"])
        assert page["JobStatus"] == "SUCCEEDED", page
        return len(page["Faces"])

    assert faces() == 4
    s3.put_object(Bucket="versioned", Key="clip.mp4", Body=stack["videos"]["one"].read_bytes())
    assert faces() == 2                      # the overwritten object, not the cached first one
    assert faces(Version=v1) == 4            # Version honoured
    for s3object, reason in [({"Bucket": "media", "Name": "nope.mp4"}, "does not exist in bucket media"),
                             ({"Bucket": "no-such-bucket", "Name": "a.mp4"}, "bucket no-such-bucket does not exist")]:
        before = _jobs_on_disk(stack)
        with pytest.raises(rek.exceptions.InvalidS3ObjectException, match=reason) as e:
            rek.start_face_detection(Video={"S3Object": s3object})
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert e.value.response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-errortype"] == "InvalidS3ObjectException"
        assert _jobs_on_disk(stack) == before


# -- the AWS CLI -------------------------------------------------------------------------------
def _aws(stack, *args: str) -> subprocess.CompletedProcess:
    aws = BIN / "aws"
    assert aws.exists(), "awscli is a test dependency (pyproject [test])"
    return subprocess.run([str(aws), "rekognition", *args, "--output", "json"], env=stack["env"],
                          capture_output=True, text=True, timeout=120)


def test_aws_cli(stack):
    r = _aws(stack, "start-face-detection", "--video", '{"S3Object":{"Bucket":"media","Name":"two.mp4"}}',
             "--job-tag", "cli")
    assert r.returncode == 0, r.stderr
    job_id = json.loads(r.stdout)["JobId"]
    _wait_job(_client(stack), job_id)
    faces, token, pages = [], None, 0
    while True:
        r = _aws(stack, "get-face-detection", "--job-id", job_id, "--max-results", "3",
                 *(["--next-token", token] if token else []))
        assert r.returncode == 0, r.stderr
        page = json.loads(r.stdout)
        validate_response("GetFaceDetection", page)
        faces += page["Faces"]
        pages += 1
        token = page.get("NextToken")
        if not token:
            break
    assert pages == 2 and len(faces) == 4 and page["JobTag"] == "cli"
    r = _aws(stack, "get-face-detection", "--job-id", "0" * 64)
    assert r.returncode == 255  # AWS CLI v1 (awscli on PyPI): 255 for a service error (v2: 254)
    assert "An error occurred (ResourceNotFoundException) when calling the GetFaceDetection operation" in r.stderr
    assert "was not found" in r.stderr


# -- the AWS SDK for JavaScript v3 ----------------------------------------------------------------
def test_javascript_sdk(stack):
    node = shutil.which("node")
    modules = REPO / "tests/js/node_modules/@aws-sdk/client-rekognition"
    if node is None or not modules.exists():
        pytest.skip("needs node and tests/js/node_modules (.ci/run installs them with npm ci)")
    r = subprocess.run([node, str(REPO / "tests/js/face_detection.cjs"), "media", "two.mp4"], env=stack["env"],
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout)
    assert out["JobStatus"] == "SUCCEEDED" and out["pages"] == 4 and len(out["faces"]) == 4
    assert out["videoMetadata"]["Codec"] == "h264"
    err = out["error"]
    assert err["name"] == "ResourceNotFoundException" and err["modelled"] is True and err["status"] == 400
    assert "was not found" in err["message"] and err["requestId"]


# -- SigV4 ------------------------------------------------------------------------------------------
def _signed(stack, key: str, secret: str, body: dict, target: str, when: dt.datetime | None = None) -> httpx.Response:
    data = json.dumps(body).encode()
    request = AWSRequest(method="POST", url=stack["url"] + "/", data=data, headers={
        "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": f"RekognitionService.{target}"})
    signer = SigV4Auth(Credentials(key, secret), "rekognition", REGION)
    if when is None:
        signer.add_auth(request)
    else:  # botocore's own steps, at another time
        stamp = when.strftime("%Y%m%dT%H%M%SZ")
        request.context["timestamp"] = stamp
        request.headers["X-Amz-Date"] = stamp
        sts = signer.string_to_sign(request, signer.canonical_request(request))
        signer._inject_signature_to_request(request, signer.signature(sts, request))
    return httpx.post(stack["url"] + "/", content=data, headers=dict(request.headers.items()))


def test_sigv4_right_wrong_unknown_expired(stack):
    start = {"Video": {"S3Object": {"Bucket": "media", "Name": "one.mp4"}}}
    ok = _signed(stack, KEY, SECRET, {}, "ListCollections")
    assert ok.status_code == 200 and "CollectionIds" in ok.json() and ok.headers["x-amzn-RequestId"]
    before = _jobs_on_disk(stack)
    old = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=16)
    for key, secret, when, code in [(KEY, "wrong-secret", None, "InvalidSignatureException"),
                                    ("AKIDUNKNOWN", SECRET, None, "UnrecognizedClientException"),
                                    (KEY, SECRET, old, "InvalidSignatureException")]:
        r = _signed(stack, key, secret, start, "StartFaceDetection", when)
        assert r.status_code == 400 and r.headers["x-amzn-ErrorType"] == code, r.text
        assert r.json()["__type"] == code
        if when is not None:
            assert "Signature expired" in r.json()["message"]
    # boto3 with a wrong secret raises the code as a normal ClientError; nothing was started
    with pytest.raises(ClientError, match="InvalidSignatureException"):
        _client(stack, secret="nope").start_face_detection(**start)
    assert _jobs_on_disk(stack) == before
    unsigned = httpx.post(stack["url"] + "/", content=b"{}", headers={"X-Amz-Target": "RekognitionService.ListCollections"})
    assert unsigned.status_code == 400 and unsigned.json()["__type"] == "MissingAuthenticationTokenException"


# -- the wire protocol's edges ---------------------------------------------------------------------
def test_unknown_and_unimplemented_operations_are_service_errors(stack):
    with pytest.raises(ClientError) as e:  # in the model, not in rekolab: a normal service error
        _client(stack).create_project(ProjectName="p")
    assert e.value.response["Error"]["Code"] == "UnsupportedOperationException"
    assert "CreateProject" in e.value.response["Error"]["Message"]
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    r = _signed(stack, KEY, SECRET, {}, "NoSuchOperation")
    assert r.status_code == 400 and r.json()["__type"] == "UnknownOperationException"
    assert "NoSuchOperation" in r.json()["message"]
    r = _signed(stack, KEY, SECRET, {"JobId": "a" * 64, "MaxResults": 0}, "GetFaceDetection")
    assert r.status_code == 400 and r.json()["__type"] == "InvalidParameterException"  # botocore's check, server-side
    assert "MaxResults" in r.json()["message"]


def test_body_over_the_limit_is_refused(stack):
    from rekolab.server import MAX_BODY_BYTES

    big = b'{"x":"' + b"a" * (MAX_BODY_BYTES + 10) + b'"}'
    r = httpx.post(stack["url"] + "/", content=big, headers={"X-Amz-Target": "RekognitionService.IndexFaces"})
    assert r.status_code == 400 and r.json()["__type"] == "ImageTooLargeException"


def test_index_faces_bytes_and_errors_through_boto3(stack):
    rek = _client(stack)
    rek.create_collection(CollectionId="wire")
    r = rek.index_faces(CollectionId="wire", Image={"Bytes": (MEDIA / "faces/obama.jpg").read_bytes()},
                        ExternalImageId="obama")
    validate_response("IndexFaces", r)
    assert len(r["FaceRecords"]) == 1 and r["FaceRecords"][0]["Face"]["ExternalImageId"] == "obama"
    d = rek.describe_collection(CollectionId="wire")
    assert d["FaceCount"] == 1 and isinstance(d["CreationTimestamp"], dt.datetime)  # epoch seconds on the wire
    pages = list(rek.get_paginator("list_collections").paginate(PaginationConfig={"PageSize": 1}))
    assert "wire" in [c for p in pages for c in p["CollectionIds"]]


# -- Kinesis Data Streams ----------------------------------------------------------------------------
def test_stream_processor_writes_face_search_records_to_kinesis(stack):
    rek, kinesis = _client(stack), _client(stack, "kinesis")
    kinesis.create_stream(StreamName="faces", ShardCount=1)
    arn = kinesis.describe_stream_summary(StreamName="faces")["StreamDescriptionSummary"]["StreamARN"]
    rek.create_collection(CollectionId="door")
    _client(stack, "s3").upload_file(str(MEDIA / "faces/obama.jpg"), "media", "obama.jpg")
    r = rek.index_faces(CollectionId="door", Image={"S3Object": {"Bucket": "media", "Name": "obama.jpg"}},
                        ExternalImageId="obama")  # an image read from S3 through boto3
    assert len(r["FaceRecords"]) == 1

    def run(name: str, stream_arn: str) -> dict:
        rek.create_stream_processor(
            Name=name, Input={"KinesisVideoStream": {"Arn": KVS_ARN}}, RoleArn=ROLE,
            Output={"KinesisDataStream": {"Arn": stream_arn}},
            Settings={"FaceSearch": {"CollectionId": "door", "FaceMatchThreshold": 80}})
        rek.start_stream_processor(Name=name)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            d = rek.describe_stream_processor(Name=name)
            if d["Status"] in ("STOPPED", "FAILED"):
                rek.delete_stream_processor(Name=name)
                return d
            time.sleep(0.2)
        raise TimeoutError(name)

    d = run("door-cam", arn)
    assert d["Status"] == "STOPPED", d.get("StatusMessage")
    shard = kinesis.list_shards(StreamName="faces")["Shards"][0]["ShardId"]
    it = kinesis.get_shard_iterator(StreamName="faces", ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    records = [json.loads(r["Data"]) for r in kinesis.get_records(ShardIterator=it)["Records"]]
    assert len(records) == 2  # two sampled frames
    for record in records:
        assert record["InputInformation"]["KinesisVideo"]["StreamArn"] == KVS_ARN
        faces = record["FaceSearchResponse"]
        assert len(faces) == 1 and faces[0]["MatchedFaces"][0]["Face"]["ExternalImageId"] == "obama"
    d = run("door-cam-2", arn.replace(":stream/faces", ":stream/missing"))
    assert d["Status"] == "FAILED" and "does not exist" in d["StatusMessage"]


def test_label_stream_processor_writes_s3_and_publishes_sns(stack):
    rek, s3, sns, sqs = (_client(stack, s) for s in ("rekognition", "s3", "sns", "sqs"))
    topic = sns.create_topic(Name="AmazonRekognitionDoorbell")["TopicArn"]
    queue = sqs.create_queue(QueueName="doorbell")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    rek.create_stream_processor(
        Name="doorbell", Input={"KinesisVideoStream": {"Arn": KVS_ARN}}, RoleArn=ROLE,
        Output={"S3Destination": {"Bucket": "media", "KeyPrefix": "doorbell"}},
        NotificationChannel={"SNSTopicArn": topic}, Settings={"ConnectedHome": {"Labels": ["PERSON"]}})
    session = rek.start_stream_processor(Name="doorbell", StartSelector={"KVSStreamStartSelector": {"ProducerTimestamp": 0}},
                                         StopSelector={"MaxDurationInSeconds": 5})["SessionId"]
    deadline = time.monotonic() + 120
    while rek.describe_stream_processor(Name="doorbell")["Status"] not in ("STOPPED", "FAILED"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    d = rek.describe_stream_processor(Name="doorbell")
    assert d["Status"] == "STOPPED", d.get("StatusMessage")
    rek.delete_stream_processor(Name="doorbell")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="media", Prefix="doorbell/")["Contents"]]
    assert f"doorbell/doorbell/{session}/summary.json" in keys and any("/events/" in k for k in keys)
    events = []
    while time.monotonic() < deadline and len(events) < 2:
        for m in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", []):
            note = json.loads(m["Body"])
            assert note["Subject"] == "Rekognition Stream Processing Event"
            events.append(json.loads(note["Message"])["eventNamespace"]["type"])
    assert sorted(events) == ["LABEL_DETECTED", "STREAM_PROCESSING_COMPLETE"]


# -- SIGTERM, refusing a remote bind ------------------------------------
def test_serve_runs_jobs_on_the_local_executor(stack, tmp_path):
    """A second `rekolab serve` on the same home with REKOLAB_EXECUTOR=local: its job
    runs in a worker process and gives the rows of the thread server's job."""
    video = {"S3Object": {"Bucket": "media", "Name": "two.mp4"}}
    expected = _wait_job(_client(stack), _client(stack).start_face_detection(Video=video)["JobId"])
    env = {k: v for k, v in stack["env"].items() if k != "AWS_ENDPOINT_URL_REKOGNITION"}
    env.update(REKOLAB_EXECUTOR="local", REKOLAB_WORKERS="1")
    proc, url = start_rekolab(env, "--credentials", str(stack["work"] / "credentials.json"),
                              log=tmp_path / "serve.log")
    try:
        rek = boto_client("rekognition", url)
        job_id = rek.start_face_detection(Video=video)["JobId"]
        page = _wait_job(rek, job_id)
        validate_response("GetFaceDetection", page)
    finally:
        assert stop(proc) in (0, -signal.SIGTERM), (tmp_path / "serve.log").read_text()[-3000:]
    assert page["JobStatus"] == "SUCCEEDED", page.get("StatusMessage")
    assert page["Faces"] == expected["Faces"] and page["Faces"]
    workers = json.loads((stack["home"] / "jobs" / job_id / "job.json").read_text())["workers"]
    assert [w["kind"] for w in workers] == ["video"] and workers[0]["pid"] not in (None, proc.pid)


def test_sigterm_answers_requests_in_flight_and_ends_jobs(stack, monkeypatch):
    """Last in the module: SIGTERM to the module's server (the fixture then finds it stopped)."""
    rek = _client(stack)
    rek.create_collection(CollectionId="late")
    answer = {}

    def index():  # a fresh collection's IndexFaces embeds a face: in flight at SIGTERM
        answer["r"] = rek.index_faces(CollectionId="late", Image={"Bytes": (MEDIA / "faces/obama.jpg").read_bytes()})

    job = rek.start_face_detection(Video={"S3Object": {"Bucket": "media", "Name": "two.mp4"}})
    in_flight = threading.Thread(target=index)
    in_flight.start()
    time.sleep(0.3)
    assert stop(stack["proc"]) in (0, -signal.SIGTERM)  # uvicorn re-raises SIGTERM after its graceful stop
    in_flight.join(timeout=60)
    assert len(answer["r"]["FaceRecords"]) == 1  # answered, not dropped
    from rekolab.jobs import JobManager

    monkeypatch.setenv("REKOLAB_HOME", str(stack["home"]))
    record = JobManager().record(job["JobId"])  # SUCCEEDED if it finished first, else FAILED (interrupted)
    assert record.status in ("SUCCEEDED", "FAILED")
    if record.status == "FAILED":
        assert "interrupted" in record.status_message


def test_refuses_remote_bind_without_credentials(capsys):
    from rekolab.cli import main

    assert main(["serve", "--host", "0.0.0.0", "--port", "1"]) == 2
    assert "without --credentials" in capsys.readouterr().err
