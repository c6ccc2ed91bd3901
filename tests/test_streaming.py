"""Stream processors end to end: the seven operations with their statuses and
errors, face search records on the Hamilton clip against a collection indexed from
the shared stills, connected-home label events on the basketball clip, selectors,
sinks, slow consumers, source failures, and every kind of source we can run here
(file, HTTP, iterable, async iterable)."""
from __future__ import annotations

import asyncio
import functools
import http.server
import json
import os
import re
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

import rekolab as rk
from rekolab import store
from rekolab.errors import ParamValidationError
from rekolab.testing import body, validate_response

from conftest import MEDIA, MODELS, need, module_env

HAMILTON = MEDIA / "video" / "short_hamilton_clip.mp4"
BASKETBALL = MEDIA / "video" / "mmaction2_basketball.mp4"
STILLS = [("faces/lin-manuel-miranda.png", "lin-manuel-miranda"), ("faces/obama.jpg", "obama"),
          ("faces/biden.jpg", "biden")]
KVS = "arn:aws:kinesisvideo:us-east-1:123456789012:stream/cam-{}/1700000000000"
KDS = "arn:aws:kinesis:us-east-1:123456789012:stream/out-{}"
ROLE = "arn:aws:iam::123456789012:role/rekognition"
TOPIC = "arn:aws:sns:us-east-1:123456789012:AmazonRekognitionEvents"


def face_search_params(name="fs", collection="cast", **extra):
    return {"Name": name, "Input": {"KinesisVideoStream": {"Arn": KVS.format(name)}},
            "Output": {"KinesisDataStream": {"Arn": KDS.format(name)}}, "RoleArn": ROLE,
            "Settings": {"FaceSearch": {"CollectionId": collection}}, **extra}


def label_params(name="lab", labels=("PERSON",), **extra):
    return {"Name": name, "Input": {"KinesisVideoStream": {"Arn": KVS.format(name)}},
            "Output": {"S3Destination": {"Bucket": "my-bucket", "KeyPrefix": "events/cam"}}, "RoleArn": ROLE,
            "NotificationChannel": {"SNSTopicArn": TOPIC},
            "Settings": {"ConnectedHome": {"Labels": list(labels)}}, **extra}


def code_of(exc_info) -> str:
    return exc_info.value.response["Error"]["Code"]


def validate_shape(shape_name: str, value) -> None:
    """``value`` is a valid instance of a shape of botocore's Rekognition model."""
    from botocore.validate import ParamValidator

    from rekolab.requests import service_model, validate_shape_values

    shape = service_model().shape_for(shape_name)
    report = ParamValidator().validate(value, shape)
    assert not report.has_errors(), report.generate_report()
    assert not validate_shape_values(value, shape, shape_name)


def frame_time(record) -> float:
    kv = record["InputInformation"]["KinesisVideo"]
    return kv["ProducerTimestamp"] + kv["FrameOffsetInSeconds"]


def matched_names(record) -> list[str]:
    return [m["Face"]["ExternalImageId"] for f in record["FaceSearchResponse"] for m in f["MatchedFaces"]]


def bgr(path):
    import cv2

    return cv2.imread(str(path), cv2.IMREAD_COLOR)


# ==================================================================== face search on Hamilton


@pytest.fixture(scope="module")
def hamilton(tmp_path_factory):
    """The cast collection (Lin-Manuel Miranda, Obama, Biden, indexed from the stills
    via the client) and one face search session over the whole Hamilton clip."""
    need(HAMILTON)
    need(MODELS / "insightface" / "models")
    with module_env(tmp_path_factory) as home:
        client = rk.client()
        client.create_collection(CollectionId="cast")
        for still, name in STILLS:
            r = client.index_faces(CollectionId="cast", Image={"Bytes": (MEDIA / still).read_bytes()},
                                   ExternalImageId=name, MaxFaces=1)
            assert len(r["FaceRecords"]) == 1
        # 50 is below the floor of 80: the processor must use 80.
        proc = rk.create_stream_processor("hamilton", source=HAMILTON, client=client,
                                          face_search={"CollectionId": "cast", "FaceMatchThreshold": 50})
        out = home / "out"
        session = proc.start(realtime=False, sinks=[str(out / "{SessionId}.jsonl"), str(out / "records.parquet")])
        records = list(session)
        yield SimpleNamespace(client=client, proc=proc, session=session, records=records, home=home, out=out)


@pytest.fixture
def ham(hamilton, monkeypatch):
    monkeypatch.setenv("REKOLAB_HOME", str(hamilton.home))
    monkeypatch.setenv("REKOLAB_MODEL_DIR", str(MODELS))
    return hamilton


def test_face_search_records_have_the_kinesis_shape(ham):
    records = ham.records
    assert len(records) == 46  # 9.18 s at 5 analysed frames a second: one record per analysed frame
    arn = ham.proc.describe()["Input"]["KinesisVideoStream"]["Arn"]
    for r in records:
        assert list(r) == ["InputInformation", "StreamProcessorInformation", "FaceSearchResponse"]
        kv = r["InputInformation"]["KinesisVideo"]
        assert list(kv) == ["StreamArn", "FragmentNumber", "ServerTimestamp", "ProducerTimestamp",
                            "FrameOffsetInSeconds"]
        assert kv["StreamArn"] == arn
        assert isinstance(kv["FragmentNumber"], str) and re.fullmatch(r"[0-9]{23}", kv["FragmentNumber"])
        assert 0 <= kv["FrameOffsetInSeconds"] < 2.0
        assert kv["ServerTimestamp"] > 1.6e9 and kv["ProducerTimestamp"] > 1e9  # Unix seconds
        assert r["StreamProcessorInformation"] == {"Status": "RUNNING"}
        for face in r["FaceSearchResponse"]:
            assert set(face) == {"DetectedFace", "MatchedFaces"}
            detected = face["DetectedFace"]
            validate_shape("FaceDetail", detected)
            assert set(detected) == {"BoundingBox", "Confidence", "Landmarks", "Pose", "Quality"}
            assert [p["Type"] for p in detected["Landmarks"]] == ["eyeLeft", "eyeRight", "nose", "mouthLeft",
                                                                 "mouthRight"]
            for match in face["MatchedFaces"]:
                validate_shape("FaceMatch", match)
                assert set(match["Face"]) == {"BoundingBox", "Confidence", "ExternalImageId", "FaceId", "ImageId"}
    # Fragments are 2-second chunks: ProducerTimestamp is the fragment's, the frame is at + offset.
    origin = records[0]["InputInformation"]["KinesisVideo"]["ProducerTimestamp"]
    for r in records:
        kv = r["InputInformation"]["KinesisVideo"]
        index = int(kv["FragmentNumber"][-10:])
        assert kv["FragmentNumber"][:13] == records[0]["InputInformation"]["KinesisVideo"]["FragmentNumber"][:13]
        assert kv["ProducerTimestamp"] == pytest.approx(origin + 2.0 * index, abs=1e-3)
    offsets = np.array([frame_time(r) - origin for r in records])
    assert offsets[0] == pytest.approx(0.0, abs=1e-3) and 9.0 < offsets[-1] < 9.2
    assert np.all(np.diff(offsets) > 0.19) and np.all(np.diff(offsets) < 0.21)  # sampled every 200 ms


def test_lin_manuel_miranda_matched_at_the_right_offsets(ham):
    origin = ham.records[0]["InputInformation"]["KinesisVideo"]["ProducerTimestamp"]
    lin = [frame_time(r) - origin for r in ham.records if "lin-manuel-miranda" in matched_names(r)]
    # He sings in close-up from ~2.8 s to ~7.0 s; the audience shot follows.
    assert len(lin) >= 18
    assert all(0.3 < t < 7.2 for t in lin)
    close_up = [r for r in ham.records if 3.0 <= frame_time(r) - origin <= 7.0]
    assert sum("lin-manuel-miranda" in matched_names(r) for r in close_up) >= 0.8 * len(close_up)
    names = {n for r in ham.records for n in matched_names(r)}
    assert "biden" not in names and names <= {"lin-manuel-miranda", "obama"}
    # Obama is only in the audience at the end (a small face: matched at most there).
    assert all(frame_time(r) - origin > 7.2 for r in ham.records if "obama" in matched_names(r))
    # FaceMatchThreshold 50 was raised to the floor of 80.
    sims = [m["Similarity"] for r in ham.records for f in r["FaceSearchResponse"] for m in f["MatchedFaces"]]
    assert sims and min(sims) >= 80.0
    assert ham.proc.describe()["Settings"]["FaceSearch"]["FaceMatchThreshold"] == 80.0
    # Faces that are nobody in the collection are reported without matches.
    assert any(f["MatchedFaces"] == [] for r in ham.records for f in r["FaceSearchResponse"])


def test_sinks_hold_every_record(ham):
    import pyarrow.parquet as pq

    lines = (ham.out / f"{ham.session.session_id}.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == ham.records
    table = pq.read_table(ham.out / "records.parquet")
    assert not (ham.out / "records.parquet.part").exists()
    assert table.num_rows == len(ham.records)
    assert table.column("EventType").to_pylist() == ["FACE_SEARCH"] * len(ham.records)
    assert [json.loads(x) for x in table.column("Record").to_pylist()] == ham.records
    assert table.column("FrameTimestamp").to_pylist() == pytest.approx([frame_time(r) for r in ham.records])
    assert table.column("MatchedFaces").to_pylist() == [
        sum(1 for f in r["FaceSearchResponse"] if f["MatchedFaces"]) for r in ham.records]


def test_describe_list_and_session_summary(ham):
    d = ham.client.describe_stream_processor(Name="hamilton")
    validate_response("DescribeStreamProcessor", d)
    assert d["Status"] == "STOPPED" and "StatusMessage" not in d
    assert d["StreamProcessorArn"] == "arn:aws:rekognition:us-east-1:000000000000:streamprocessor/hamilton"
    assert d["CreationTimestamp"] <= d["LastUpdateTimestamp"]
    page = ham.client.list_stream_processors()
    validate_response("ListStreamProcessors", page)
    assert {"Name": "hamilton", "Status": "STOPPED"} in page["StreamProcessors"]
    s = ham.session.summary()
    assert s["Status"] == "STOPPED" and s["StoppedBy"] == "the end of the source"
    assert s["FramesAnalysed"] == 46 and s["FramesRead"] == 275 and s["RecordsDropped"] == 0
    assert 9000 < s["ProcessedVideoDurationMillis"] < 9200 and s["Realtime"] is False
    stored = json.loads((ham.home / "stream_processors" / "hamilton.sessions" /
                         f"{ham.session.session_id}.json").read_text())
    assert stored["Records"] == 46 and stored["Models"]["FacePack"]


def test_start_selectors_choose_where_to_start(ham):
    first = ham.records[0]["InputInformation"]["KinesisVideo"]
    origin = first["ProducerTimestamp"]
    fragment2 = next(r["InputInformation"]["KinesisVideo"]["FragmentNumber"] for r in ham.records
                     if r["InputInformation"]["KinesisVideo"]["FragmentNumber"].endswith("2"))
    sessions = set()
    # FragmentNumber: from the start of fragment 2 (4.0 s), for 1 second.
    s = ham.proc.start({"KVSStreamStartSelector": {"FragmentNumber": fragment2}}, {"MaxDurationInSeconds": 1},
                       realtime=False)
    recs = list(s)
    sessions.add(s.session_id)
    assert len(recs) == 5 and s.status == "STOPPED"
    assert {r["InputInformation"]["KinesisVideo"]["FragmentNumber"] for r in recs} == {fragment2}
    assert [frame_time(r) - origin for r in recs] == pytest.approx([4.0, 4.2, 4.4, 4.6, 4.8], abs=0.02)
    assert recs[0]["InputInformation"]["KinesisVideo"]["FrameOffsetInSeconds"] < 0.02
    assert all("lin-manuel-miranda" in matched_names(r) for r in recs[1:])  # his close-up
    # ProducerTimestamp (Unix ms): from 6.5 s.
    s = ham.proc.start({"KVSStreamStartSelector": {"ProducerTimestamp": int(origin * 1000) + 6500}},
                       {"MaxDurationInSeconds": 1}, realtime=False)
    recs = list(s)
    sessions.add(s.session_id)
    times = [frame_time(r) - origin for r in recs]
    assert 6.49 < times[0] < 6.55 and times[-1] < 7.55 and len(recs) == 5
    assert s.summary()["StoppedBy"] == "StopSelector MaxDurationInSeconds (1 s)"
    # Past the end, or a fragment of another source: the session FAILS with a StatusMessage.
    s = ham.proc.start({"KVSStreamStartSelector": {"ProducerTimestamp": int(origin * 1000) + 60_000}},
                       realtime=False)
    assert list(s) == [] and s.status == "FAILED"
    assert "after its end" in s.status_message
    d = ham.client.describe_stream_processor(Name="hamilton")
    validate_response("DescribeStreamProcessor", d)
    assert d["Status"] == "FAILED" and "after its end" in d["StatusMessage"]
    other = "9" + fragment2[1:]
    s = ham.proc.start({"KVSStreamStartSelector": {"FragmentNumber": other}}, realtime=False)
    assert list(s) == [] and "was not produced from this source" in s.status_message
    sessions.add(s.session_id)
    assert len(sessions) == 3  # a SessionId per start


def test_stop_ends_the_async_generator_cleanly(ham):
    """Real time: a RUNNING face search processor; stop() mid-stream ends `async for`."""
    seen = []

    async def consume():
        session = ham.proc.start()  # real time, no stop selector: runs until stopped
        assert session.status in ("STARTING", "RUNNING")
        async for record in session:
            seen.append(record)
            if len(seen) == 1:
                assert ham.proc.status == "RUNNING"
                with pytest.raises(rk.errors.ResourceInUseException):
                    ham.client.start_stream_processor(Name="hamilton")
                with pytest.raises(rk.errors.ResourceInUseException, match="Cannot delete stream processor."):
                    ham.client.delete_stream_processor(Name="hamilton")
                with pytest.raises(rk.errors.ResourceInUseException):
                    ham.client.update_stream_processor(Name="hamilton",
                                                       DataSharingPreferenceForUpdate={"OptIn": False})
            if len(seen) == 3:
                r = ham.client.stop_stream_processor(Name="hamilton")
                validate_response("StopStreamProcessor", r)
                assert ham.proc.status in ("STOPPING", "STOPPED")
        return session

    t0 = time.monotonic()
    session = asyncio.run(consume())
    elapsed = time.monotonic() - t0
    assert 3 <= len(seen) <= 6 and elapsed < 5  # paced at the clip's rate, stopped after ~0.5 s
    assert session.status == "STOPPED" and session.summary()["StoppedBy"] == "StopStreamProcessor"
    assert ham.proc.status == "STOPPED"
    with pytest.raises(rk.errors.ResourceInUseException, match="Processor not available for stopping stream."):
        ham.client.stop_stream_processor(Name="hamilton")


# ==================================================================== connected home (labels)


def test_connected_home_person_event(models_dir, media, tmp_path):
    client = rk.client(streams={KVS.format("gym"): str(BASKETBALL)})
    need(BASKETBALL)
    params = label_params("gym", ["PERSON"], Tags={"site": "gym"})
    r = client.create_stream_processor(**params)
    validate_response("CreateStreamProcessor", r)
    delivered = []
    client.subscribe(delivered.append, SNSTopicArn=TOPIC)
    other_topic = []
    client.subscribe(other_topic.append, SNSTopicArn=TOPIC + "-other")
    statuses = set()
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            statuses.add(client.describe_stream_processor(Name="gym")["Status"])
            time.sleep(0.02)

    with pytest.raises(rk.errors.InvalidParameterException, match="StartSelector is required"):
        client.start_stream_processor(Name="gym")
    poller = threading.Thread(target=poll)
    poller.start()
    try:
        r = client.start_stream_processor(Name="gym", Realtime=False,
                                          StartSelector={"KVSStreamStartSelector": {"ProducerTimestamp": 0}},
                                          StopSelector={"MaxDurationInSeconds": 5})
        validate_response("StartStreamProcessor", r)
        proc = rk.StreamProcessor("gym", client)
        session = proc.session  # the live session; None only once it has ended (summaries written)
        if session is not None:
            assert session.session_id == r["SessionId"]
            assert session.wait(60).done
    finally:
        stop.set()
        poller.join()
    # A label processor goes STARTING -> STOPPED and never reports RUNNING.
    assert "RUNNING" not in statuses and "STARTING" in statuses
    assert proc.status == "STOPPED"
    events = delivered
    assert [e["eventNamespace"]["type"] for e in events] == ["LABEL_DETECTED", "STREAM_PROCESSING_COMPLETE"]
    assert other_topic == []
    label_event, complete = events
    assert list(label_event) == ["inputInformation", "eventNamespace", "labels", "eventId", "tags", "sessionId",
                                 "startStreamProcessorRequest"]
    assert label_event["sessionId"] == r["SessionId"] and label_event["tags"] == {"site": "gym"}
    assert label_event["startStreamProcessorRequest"]["StopSelector"] == {"MaxDurationInSeconds": 5}
    (label,) = label_event["labels"]
    assert label["name"] == "PERSON"
    assert set(label) == {"id", "name", "frameImageUri", "croppedImageUri", "videoMapping", "boundingBox"}
    mapping = label["videoMapping"]["kinesisVideoMapping"]
    assert set(mapping) == {"fragmentNumber", "serverTimestamp", "producerTimestamp", "frameOffsetMillis"}
    assert re.fullmatch(r"[0-9]{23}", mapping["fragmentNumber"])
    origin_ms = int(mapping["fragmentNumber"][:13])
    # People are on court from the first frame.
    assert mapping["producerTimestamp"] + mapping["frameOffsetMillis"] - origin_ms < 1000
    box = label["boundingBox"]
    assert set(box) == {"left", "top", "height", "width"} and 0 < box["width"] < 1 and 0 < box["height"] < 1
    assert complete["inputInformation"]["kinesisVideo"]["processedVideoDurationMillis"] == pytest.approx(4971, abs=40)
    assert "PERSON at 0.00 s" in complete["streamProcessingResults"]["message"]
    # S3Destination: KeyPrefix/Name/SessionId/ under <home>/s3/<Bucket>/.
    out = store.home() / "s3" / "my-bucket" / "events" / "cam" / "gym" / r["SessionId"]
    assert out.is_dir()
    key = label["frameImageUri"].removeprefix("s3://my-bucket/")
    assert key.startswith(f"events/cam/gym/{r['SessionId']}/")
    frame = bgr(store.home() / "s3" / "my-bucket" / key)
    assert frame.shape == (240, 426, 3)
    crop = bgr(store.home() / "s3" / "my-bucket" / label["croppedImageUri"].removeprefix("s3://my-bucket/"))
    assert crop.shape[0] == pytest.approx(box["height"] * 240, abs=3)
    assert sorted(json.loads(p.read_text())["eventId"] for p in (out / "events").iterdir()) == sorted(
        e["eventId"] for e in events)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["FirstDetections"]["PERSON"]["CocoClass"] == "person"
    assert summary["FirstDetections"]["PERSON"]["Confidence"] >= 50
    assert summary["SessionId"] == r["SessionId"] and summary["Status"] == "STOPPED"


def test_regions_of_interest_and_update(models_dir, media):
    client = rk.client(streams={KVS.format("gym"): str(need(BASKETBALL))})
    corner = [{"BoundingBox": {"Left": 0.0, "Top": 0.0, "Width": 0.1, "Height": 0.1}}]
    client.create_stream_processor(**label_params("gym", ["PERSON"], RegionsOfInterest=corner))
    proc = rk.StreamProcessor("gym", client)
    sel = {"MaxDurationInSeconds": 2}
    events = proc.run(stop_selector=sel, realtime=False)
    assert [e["eventNamespace"]["type"] for e in events] == ["STREAM_PROCESSING_COMPLETE"]
    assert "no labels" in events[0]["streamProcessingResults"]["message"]
    # A polygon over the whole frame: the players are inside.
    whole = [{"Polygon": [{"X": 0, "Y": 0}, {"X": 1, "Y": 0}, {"X": 1, "Y": 1}, {"X": 0, "Y": 1}]}]
    proc.update(regions_of_interest=whole)
    assert proc.describe()["RegionsOfInterest"] == whole
    events = proc.run(stop_selector=sel, realtime=False)
    assert [e["eventNamespace"]["type"] for e in events] == ["LABEL_DETECTED", "STREAM_PROCESSING_COMPLETE"]
    # No region at all, and MinConfidence 100 (nothing is that sure).
    proc.update(min_confidence=100, delete=["RegionsOfInterest"])
    d = proc.describe()
    assert "RegionsOfInterest" not in d and d["Settings"]["ConnectedHome"]["MinConfidence"] == 100
    events = proc.run(stop_selector=sel, realtime=False)
    assert [e["eventNamespace"]["type"] for e in events] == ["STREAM_PROCESSING_COMPLETE"]


def test_http_source_is_paced_in_real_time(models_dir, media, tmp_path):
    """An HTTP(S) URL is read through FFmpeg (a server with Range requests, as real
    ones are) and, like a file, paced at its native rate by default."""
    need(BASKETBALL)
    server = _range_server(BASKETBALL.parent)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{BASKETBALL.name}"
        proc = rk.create_stream_processor("web", source=url, connected_home={"Labels": ["ALL"]})
        t0 = time.monotonic()
        events = proc.run(stop_selector={"MaxDurationInSeconds": 2})
        elapsed = time.monotonic() - t0
    finally:
        server.shutdown()
    assert events[0]["labels"][0]["name"] == "PERSON"
    assert events[-1]["eventNamespace"]["type"] == "STREAM_PROCESSING_COMPLETE"
    assert elapsed >= 1.8  # 2 s of video take at least 2 s: paced in real time (no upper bound: busy CI)
    s = proc.session.summary()
    assert s["Realtime"] is True and s["FramesAnalysed"] == 10 and 1900 < s["ProcessedVideoDurationMillis"] <= 2000


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        path = self.translate_path(self.path)
        size = os.path.getsize(path)
        m = re.match(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        start, end = (int(m.group(1)), int(m.group(2) or size - 1)) if m else (0, size - 1)
        end = min(end, size - 1)
        self.send_response(206 if m else 200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        if m:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        with open(path, "rb") as f:
            f.seek(start)
            try:
                self.wfile.write(f.read(end - start + 1))
            except (BrokenPipeError, ConnectionResetError):
                pass


def _range_server(directory):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_RangeHandler,
                                                                                 directory=str(directory)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# ==================================================================== sources, consumers, failures


@pytest.fixture
def obama_collection(models_dir, media):
    client = rk.client()
    client.create_collection(CollectionId="people")
    client.index_faces(CollectionId="people", Image={"Bytes": (media / "faces/obama.jpg").read_bytes()},
                       ExternalImageId="obama", MaxFaces=1)
    return client


def test_iterable_sources_sync_and_async(obama_collection, media):
    """Frames from a (async) iterable: BGR arrays with their presentation times."""
    client = obama_collection
    still = bgr(media / "faces/obama3.jpg")
    frames = [(still, 0.2 * i) for i in range(4)]
    proc = rk.create_stream_processor("iter", source=iter(frames), face_search={"CollectionId": "people"},
                                      client=client)
    # Real time (the default): an iterable is live, so frames that arrive while the
    # analyser is busy are skipped (newest kept), counted and reported.
    session = proc.start()
    records = list(session)
    assert session.frames_skipped >= 1 and len(records) + session.frames_skipped == 4
    assert f"{session.frames_skipped} sampled frames skipped" in proc.status_message
    # realtime=False: the iterator waits for the analyser; every frame is analysed.
    arn = proc.describe()["Input"]["KinesisVideoStream"]["Arn"]
    client.stream_processors.map_stream(arn, iter(frames))
    records = proc.run(realtime=False)
    assert len(records) == 4 and all(matched_names(r) == ["obama"] for r in records)
    origin = records[0]["InputInformation"]["KinesisVideo"]["ProducerTimestamp"]
    assert [frame_time(r) - origin for r in records] == pytest.approx([0, 0.2, 0.4, 0.6], abs=1e-3)

    async def frames_async():
        for frame in frames:
            await asyncio.sleep(0)
            yield frame

    async def main():
        client.stream_processors.map_stream(arn, frames_async())
        with pytest.raises(RuntimeError, match="async for"):
            proc.run()
        return [r async for r in proc.start(realtime=False)]

    records = asyncio.run(main())
    assert len(records) == 4 and all(matched_names(r) == ["obama"] for r in records)


def test_slow_consumer_drops_the_oldest_records(obama_collection, tmp_path):
    """Records wait in a bounded queue per consumer: a consumer that does not keep up
    loses the oldest ones, counted in `dropped` and DescribeStreamProcessor's
    StatusMessage; sinks still get every record."""
    gray = np.full((96, 128, 3), 90, np.uint8)
    frames = [(gray, 0.2 * i) for i in range(12)]
    proc = rk.create_stream_processor("slow", source=frames, face_search={"CollectionId": "people"},
                                      client=obama_collection)
    session = proc.start(realtime=False, queue_size=3, sinks=[str(tmp_path / "all.jsonl")])
    session.wait(60)  # the consumer reads nothing until the session is over
    kept = list(session)
    assert len(kept) == 3 and session.dropped == 9
    origin = kept[0]["InputInformation"]["KinesisVideo"]["ProducerTimestamp"]  # fragment 0 starts at PTS 0
    assert [frame_time(r) - origin for r in kept] == pytest.approx([1.8, 2.0, 2.2], abs=1e-3)  # the newest
    assert len((tmp_path / "all.jsonl").read_text().splitlines()) == 12
    d = proc.describe()
    validate_response("DescribeStreamProcessor", d)
    assert d["Status"] == "STOPPED" and "9 records dropped for slow consumers (oldest first)" in d["StatusMessage"]
    assert session.summary()["RecordsDropped"] == 9


def test_source_errors_end_in_failed(obama_collection, tmp_path):
    client = obama_collection
    # A missing file: the session starts, then FAILS with a StatusMessage.
    proc = rk.create_stream_processor("broken", source=tmp_path / "missing.mp4",
                                      face_search={"CollectionId": "people"}, client=client)
    session = proc.start(realtime=False)
    assert list(session) == [] and session.status == "FAILED"
    d = client.describe_stream_processor(Name="broken")
    validate_response("DescribeStreamProcessor", d)
    assert d["Status"] == "FAILED" and "Source error: video file not found" in d["StatusMessage"]

    # A source that breaks part-way: the records before the error were delivered.
    def unplugged():
        img = np.full((96, 128, 3), 90, np.uint8)
        yield img, 0.0
        yield img, 0.2
        raise OSError("camera unplugged")

    client.stream_processors.map_stream(d["Input"]["KinesisVideoStream"]["Arn"], unplugged())
    session = proc.start(realtime=False)  # FAILED -> STARTING is allowed
    assert len(list(session)) == 2 and session.status == "FAILED"
    assert "reading the source failed: OSError: camera unplugged" in proc.status_message
    # A label processor reports a failure in its end-of-session event.
    (tmp_path / "notes.mp4").write_text("not a video")
    lab = rk.create_stream_processor("lab-broken", source=tmp_path / "notes.mp4",
                                     connected_home={"Labels": ["PET"]}, client=client)
    events = lab.run(realtime=False)
    assert [e["eventNamespace"]["type"] for e in events] == ["STREAM_PROCESSING_COMPLETE"]
    assert events[0]["streamProcessingResults"]["message"].startswith("Stream processing failed")
    assert lab.status == "FAILED" and "cannot open" in lab.status_message


def _gray_frames(n: int):
    gray = np.full((96, 128, 3), 90, np.uint8)
    return [(gray, 0.2 * i) for i in range(n)]


def test_unread_session_handles_drop_nothing(obama_collection, monkeypatch):
    """`proc.session` from another handle gets its queue when its iteration starts: a
    handle nobody reads drops nothing, so nothing shows up in RecordsDropped or the
    StatusMessage; a handle that reads too late drops (and reports) its own."""
    from rekolab import streaming

    class SmallQueue(streaming._Subscriber):
        def __init__(self, maxsize=2):
            super().__init__(maxsize)

    monkeypatch.setattr(streaming.session, "_Subscriber", SmallQueue)  # a `proc.session` handle buffers 2 records
    gate = threading.Event()

    def frames():
        gate.wait(30)
        yield from _gray_frames(8)

    client = obama_collection
    proc = rk.create_stream_processor("gated", source=frames(), face_search={"CollectionId": "people"},
                                      client=client)
    session = proc.start(realtime=False)  # its own queue of 256 records
    idle = rk.StreamProcessor("gated", client).session  # never read
    late = rk.StreamProcessor("gated", client).session
    reader = iter(late)  # receives from now on, read only after the session ended
    gate.set()
    assert len(list(session)) == 8 and session.dropped == 0
    kept = list(reader)
    assert len(kept) == 2 and late.dropped == 6 and idle.dropped == 0 and list(idle) == []
    assert session.summary()["RecordsDropped"] == 6
    assert "6 records dropped for slow consumers" in proc.describe()["StatusMessage"]


def test_summaries_are_written_before_the_final_status(obama_collection, monkeypatch):
    """Whoever sees STOPPED (or FAILED) finds <sessions>/<SessionId>.json written."""
    from rekolab import streaming

    seen = []
    real = streaming._update_def

    def spy(name, **changes):
        if changes.get("Status") in ("STOPPED", "FAILED"):
            d = store.read_json(streaming._def_path(name))
            seen.append((changes["Status"], (streaming._sessions_dir(name) / f"{d['SessionId']}.json").is_file()))
        return real(name, **changes)

    monkeypatch.setattr(streaming.session, "_update_def", spy)
    proc = rk.create_stream_processor("order", source=_gray_frames(2), face_search={"CollectionId": "people"},
                                      client=obama_collection)
    session = proc.start(realtime=False)
    assert len(list(session)) == 2
    assert seen == [("STOPPED", True)] and proc.status == "STOPPED"


def test_a_failure_while_finishing_still_ends_the_session(obama_collection, monkeypatch):
    """If writing the summary or the final status raises, the session still ends:
    iteration stops, done is set (no consumer hangs)."""
    from rekolab import streaming

    def consume(session) -> list:
        records = []
        t = threading.Thread(target=lambda: records.extend(session), daemon=True)
        t.start()
        t.join(20)
        assert not t.is_alive(), "iterating the session hung"
        return records

    client = obama_collection

    def no_summary(self):
        raise RuntimeError("summary broke")

    summary = streaming._Session.summary
    monkeypatch.setattr(streaming._Session, "summary", no_summary)
    proc = rk.create_stream_processor("fin1", source=_gray_frames(2), face_search={"CollectionId": "people"},
                                      client=client)
    session = proc.start(realtime=False)
    assert len(consume(session)) == 2 and session.done
    assert proc.status == "STOPPED"  # the status is still written
    monkeypatch.setattr(streaming._Session, "summary", summary)

    real = streaming._update_def

    def broken(name, **changes):
        if changes.get("Status") in ("STOPPED", "FAILED"):
            raise OSError("disk full")
        return real(name, **changes)

    monkeypatch.setattr(streaming.session, "_update_def", broken)
    proc = rk.create_stream_processor("fin2", source=_gray_frames(2), face_search={"CollectionId": "people"},
                                      client=client)
    session = proc.start(realtime=False)
    assert len(consume(session)) == 2 and session.done and session.status == "STOPPED"


def test_stop_after_run_is_a_no_op(obama_collection):
    """docs/streaming.md: `proc.run(); proc.stop(); proc.delete()`. The notebook handle's
    stop() has nothing to do on a STOPPED processor; the boto3-shaped call keeps
    Rekognition's error."""
    client = obama_collection
    proc = rk.create_stream_processor("done", source=_gray_frames(2), face_search={"CollectionId": "people"},
                                      client=client)
    assert len(proc.run(realtime=False)) == 2
    assert proc.status == "STOPPED"
    with pytest.raises(rk.errors.ResourceInUseException, match="Processor not available for stopping stream."):
        client.stop_stream_processor(Name="done")
    assert proc.stop() is proc and proc.status == "STOPPED"
    proc.delete()
    with pytest.raises(rk.errors.ResourceNotFoundException):
        client.describe_stream_processor(Name="done")


# ==================================================================== lifecycle and validation (no models)


def test_create_is_idempotent_and_limited(monkeypatch):
    client = rk.client()
    r = client.create_stream_processor(**face_search_params("a"))
    validate_response("CreateStreamProcessor", r)
    assert r["StreamProcessorArn"] == "arn:aws:rekognition:us-east-1:123456789012:streamprocessor/a"
    assert body(client.create_stream_processor(**face_search_params("a"))) == body(r)  # Name is idempotent
    with pytest.raises(rk.errors.ResourceInUseException, match="Stream processor name already in use."):
        client.create_stream_processor(**face_search_params("a", collection="other"))
    # One Kinesis video stream per processor, one Kinesis data stream per processor.
    clash = face_search_params("b")
    clash["Input"] = face_search_params("a")["Input"]
    with pytest.raises(rk.errors.ResourceInUseException, match="already the input of stream processor a"):
        client.create_stream_processor(**clash)
    monkeypatch.setenv("REKOLAB_MAX_STREAM_PROCESSORS", "3")
    client.create_stream_processor(**face_search_params("b"))
    client.create_stream_processor(**label_params("c"))
    with pytest.raises(rk.errors.LimitExceededException) as e:
        client.create_stream_processor(**face_search_params("d"))
    assert e.value.response["Error"]["Message"] == "Stream processor limit exceeded for account, limit - 3"
    assert e.value.operation_name == "CreateStreamProcessor"
    # Another region has its own quota.
    other = face_search_params("d")
    other["Input"]["KinesisVideoStream"]["Arn"] = other["Input"]["KinesisVideoStream"]["Arn"].replace(
        "us-east-1", "eu-west-1")
    assert ":eu-west-1:" in client.create_stream_processor(**other)["StreamProcessorArn"]


def test_list_pages_and_delete():
    client = rk.client()
    for name in ["p3", "p1", "p4", "p2", "p5"]:
        client.create_stream_processor(**face_search_params(name))
    names, token, pages = [], None, 0
    while True:
        kw = {"MaxResults": 2} if token is None else {"MaxResults": 2, "NextToken": token}
        page = client.list_stream_processors(**kw)
        validate_response("ListStreamProcessors", page)
        pages += 1
        names += [p["Name"] for p in page["StreamProcessors"]]
        assert all(p["Status"] == "STOPPED" for p in page["StreamProcessors"])
        token = page.get("NextToken")
        if not token:
            break
    assert names == ["p1", "p2", "p3", "p4", "p5"] and pages == 3
    with pytest.raises(rk.errors.InvalidPaginationTokenException):
        client.list_stream_processors(NextToken="forged.token")
    with pytest.raises(ParamValidationError):
        client.list_stream_processors(MaxResults=0)
    r = client.delete_stream_processor(Name="p3")
    validate_response("DeleteStreamProcessor", r)
    with pytest.raises(rk.errors.ResourceNotFoundException):
        client.describe_stream_processor(Name="p3")
    for op in ("delete_stream_processor", "start_stream_processor", "stop_stream_processor"):
        with pytest.raises(rk.errors.ResourceNotFoundException) as e:
            getattr(client, op)(Name="p3")
        assert "not found" in e.value.response["Error"]["Message"]
    assert [p["Name"] for p in client.list_stream_processors()["StreamProcessors"]] == ["p1", "p2", "p4", "p5"]
    client.create_stream_processor(**face_search_params("p3"))  # the name can be used again


def test_update_stream_processor():
    client = rk.client()
    client.create_stream_processor(**label_params("lab", ["PERSON"], Settings={
        "ConnectedHome": {"Labels": ["PERSON"], "MinConfidence": 70}}))
    before = client.describe_stream_processor(Name="lab")["LastUpdateTimestamp"]
    time.sleep(0.01)
    roi = [{"BoundingBox": {"Left": 0.1, "Top": 0.2, "Width": 0.5, "Height": 0.5}}]
    r = client.update_stream_processor(Name="lab", SettingsForUpdate={
        "ConnectedHomeForUpdate": {"Labels": ["PET", "PACKAGE"], "MinConfidence": 60}},
        RegionsOfInterestForUpdate=roi, DataSharingPreferenceForUpdate={"OptIn": True})
    validate_response("UpdateStreamProcessor", r)
    d = client.describe_stream_processor(Name="lab")
    validate_response("DescribeStreamProcessor", d)
    assert d["Settings"] == {"ConnectedHome": {"Labels": ["PET", "PACKAGE"], "MinConfidence": 60}}
    assert d["RegionsOfInterest"] == roi and d["DataSharingPreference"] == {"OptIn": True}
    assert d["Status"] == "STOPPED" and d["LastUpdateTimestamp"] > before
    client.update_stream_processor(Name="lab", ParametersToDelete=["ConnectedHomeMinConfidence", "RegionsOfInterest"])
    d = client.describe_stream_processor(Name="lab")
    assert d["Settings"] == {"ConnectedHome": {"Labels": ["PET", "PACKAGE"]}} and "RegionsOfInterest" not in d
    bad = [
        ({"SettingsForUpdate": {"ConnectedHomeForUpdate": {"MinConfidence": 10}},
          "ParametersToDelete": ["ConnectedHomeMinConfidence"]}, "contradict"),
        ({"RegionsOfInterestForUpdate": roi, "ParametersToDelete": ["RegionsOfInterest"]}, "contradict"),
        ({"SettingsForUpdate": {"ConnectedHomeForUpdate": {"Labels": ["CAR"]}}}, "'CAR'"),
        ({}, "Nothing to update"),
        ({"RegionsOfInterestForUpdate": [{"Polygon": [{"X": 0, "Y": 0}, {"X": 1, "Y": 1}]}]}, "give 3 to 10"),
    ]
    for kwargs, fragment in bad:
        with pytest.raises(rk.errors.InvalidParameterException, match=re.escape(fragment)):
            client.update_stream_processor(Name="lab", **kwargs)
    with pytest.raises(rk.errors.InvalidParameterException, match="must be one of ConnectedHomeMinConfidence"):
        client.update_stream_processor(Name="lab", ParametersToDelete=["Labels"])
    client.create_stream_processor(**face_search_params("fs"))
    with pytest.raises(rk.errors.InvalidParameterException, match="face search processor"):
        client.update_stream_processor(Name="fs", SettingsForUpdate={"ConnectedHomeForUpdate": {"MinConfidence": 5}})
    client.update_stream_processor(Name="fs", DataSharingPreferenceForUpdate={"OptIn": False})
    assert client.describe_stream_processor(Name="fs")["DataSharingPreference"] == {"OptIn": False}
    with pytest.raises(rk.errors.ResourceNotFoundException):
        client.update_stream_processor(Name="nope", DataSharingPreferenceForUpdate={"OptIn": False})


def _without(params, *path):
    params = json.loads(json.dumps(params))
    target = params
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return params


@pytest.mark.parametrize("params, fragment", [
    (dict(face_search_params(), Name="has space"), "Name 'has space' does not match"),
    (dict(face_search_params(), RoleArn="arn:aws:iam::12:role/x"), "RoleArn"),
    (dict(face_search_params(), Input={"KinesisVideoStream": {"Arn": "arn:aws:s3:::bucket"}}), "Arn"),
    (_without(face_search_params(), "Input", "KinesisVideoStream"), "Input.KinesisVideoStream.Arn is required"),
    (dict(face_search_params(), Output={"S3Destination": {"Bucket": "my-bucket"}}), "Kinesis data stream"),
    (dict(face_search_params(), Output={"KinesisDataStream": {"Arn": KDS.format(1)},
                                        "S3Destination": {"Bucket": "my-bucket"}}), "exactly one of KinesisDataStream"),
    (dict(face_search_params(), Settings={}), "exactly one of FaceSearch or ConnectedHome"),
    (dict(face_search_params(), Settings={"FaceSearch": {"FaceMatchThreshold": 90}}), "CollectionId is required"),
    (dict(face_search_params(), KmsKeyId="key"), "KmsKeyId is for label detection"),
    (dict(face_search_params(), RegionsOfInterest=[]), "RegionsOfInterest is for label detection"),
    (dict(face_search_params(), NotificationChannel={"SNSTopicArn": TOPIC}), "NotificationChannel is for label"),
    (dict(face_search_params(), Settings={"FaceSearch": {"CollectionId": "c", "FaceMatchThreshold": 101}}),
     "FaceMatchThreshold is 101"),
    (dict(label_params(), Output={"KinesisDataStream": {"Arn": KDS.format(1)}}), "writes to S3"),
    (_without(label_params(), "NotificationChannel"), "needs NotificationChannel"),
    (dict(label_params(), Settings={"ConnectedHome": {"Labels": ["PERSON", "CAR"]}}), "'CAR'"),
    (dict(label_params(), Settings={"ConnectedHome": {"Labels": ["PET"], "MinConfidence": 101}}),
     "MinConfidence is 101"),
    (dict(label_params(), Output={"S3Destination": {"Bucket": "my-bucket", "KeyPrefix": "a/../../etc"}}), "'..'"),
    (dict(label_params(), RegionsOfInterest=[{"BoundingBox": {"Left": 0, "Top": 0, "Width": 1, "Height": 1},
                                              "Polygon": [{"X": 0, "Y": 0}] * 3}]), "exactly one of BoundingBox"),
    (dict(label_params(), RegionsOfInterest=[{"BoundingBox": {"Left": 0.5, "Top": 0, "Width": 0.7,
                                                              "Height": 1}}]), "runs past the frame"),
    (dict(label_params(), RegionsOfInterest=[{"BoundingBox": {"Left": 0, "Top": 0, "Width": 0.5, "Height": 0.5}}] * 11),
     "at most 10"),
    (dict(label_params(), Tags={"aws:team": "x"}), "must not start with 'aws:'"),
    (dict(label_params(), Tags={"team": "a|b"}), "characters outside"),
    (dict(face_search_params(), SampleRate=0), "SampleRate"),
])
def test_create_validation(params, fragment):
    with pytest.raises(rk.errors.InvalidParameterException) as e:
        rk.client().create_stream_processor(**params)
    assert fragment in e.value.response["Error"]["Message"]
    assert e.value.operation_name == "CreateStreamProcessor"
    assert not (store.home() / "stream_processors" / f"{params.get('Name')}.json").exists()


@pytest.mark.parametrize("params, fragment", [
    ({}, 'Missing required parameter in input: "Name"'),
    (face_search_params(Colour="red"), 'Unknown parameter in input: "Colour"'),
    (dict(face_search_params(), Name=""), "Invalid length for parameter Name"),
    (dict(label_params(), Settings={"ConnectedHome": {"MinConfidence": 50}}), 'Missing required parameter in '
     'Settings.ConnectedHome: "Labels"'),
    (dict(label_params(), Tags="team"), "Invalid type for parameter Tags"),
    (dict(label_params(), Settings={"ConnectedHome": {"Labels": ["PET"], "MinConfidence": -1}}),
     "Invalid value for parameter Settings.ConnectedHome.MinConfidence"),
])
def test_create_malformed_calls(params, fragment):
    with pytest.raises(ParamValidationError) as e:
        rk.client().create_stream_processor(**params)
    assert fragment in str(e.value)


@pytest.mark.parametrize("kwargs, code, fragment", [
    ({"StartSelector": {"KVSStreamStartSelector": {"ProducerTimestamp": 1, "FragmentNumber": "1"}}},
     "InvalidParameterException", "exactly one of ProducerTimestamp"),
    ({"StartSelector": {"KVSStreamStartSelector": {}}}, "InvalidParameterException", "exactly one of"),
    ({"StartSelector": {"KVSStreamStartSelector": {"FragmentNumber": "12"}}}, "InvalidParameterException",
     "is not one rekolab produced"),
    ({"StartSelector": {"KVSStreamStartSelector": {"FragmentNumber": "12a"}}}, "InvalidParameterException",
     "does not match the pattern"),
    ({"StopSelector": {"MaxDurationInSeconds": 121}}, "InvalidParameterException", "the maximum is 120"),
    ({"Sinks": ["out.csv"]}, "InvalidParameterException", "must end in .jsonl"),
    ({"Realtime": "yes"}, "InvalidParameterException", "Realtime must be true"),
    ({"QueueSize": 0}, "InvalidParameterException", "QueueSize must be an integer"),
    ({"Name": "nope"}, "ResourceNotFoundException", "Stream processor nope not found"),
])
def test_start_validation(kwargs, code, fragment):
    client = rk.client(streams={KVS.format("fs"): "clip.mp4"})
    client.create_stream_processor(**face_search_params("fs"))
    with pytest.raises(rk.errors.ClientError) as e:
        client.start_stream_processor(**{"Name": "fs", **kwargs})
    assert code_of(e) == code and fragment in e.value.response["Error"]["Message"]
    assert e.value.operation_name == "StartStreamProcessor"
    assert client.describe_stream_processor(Name="fs")["Status"] == "STOPPED"


def test_start_checks_stream_mapping_and_collection(models_dir):
    client = rk.client()
    client.create_stream_processor(**face_search_params("fs", collection="absent"))
    with pytest.raises(rk.errors.InvalidParameterException, match="is not mapped to a source"):
        client.start_stream_processor(Name="fs")
    client.stream_processors.map_stream(KVS.format("fs"), "clip.mp4")
    with pytest.raises(rk.errors.ResourceNotFoundException, match="collection id: absent does not exist"):
        client.start_stream_processor(Name="fs")
    with pytest.raises(ParamValidationError, match="MaxDurationInSeconds"):
        client.start_stream_processor(Name="fs", StopSelector={"MaxDurationInSeconds": 0})
    assert client.describe_stream_processor(Name="fs")["Status"] == "STOPPED"


def test_sources_are_remembered_and_interrupted_sessions_fail(monkeypatch, tmp_path):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"x")
    proc = rk.create_stream_processor("door", source=clip, face_search={"CollectionId": "cast"},
                                      client=rk.client())
    arn = proc.describe()["Input"]["KinesisVideoStream"]["Arn"]
    assert arn == "arn:aws:kinesisvideo:us-east-1:000000000000:stream/door/rekolab"
    assert rk.client().stream_processors.source_for(arn) == str(clip)  # a new client (process) finds it
    monkeypatch.setenv("REKOLAB_STREAMS", f"{arn}=rtsp://camera.local/stream,{KVS.format(2)}=camera:0")
    assert rk.client().stream_processors.source_for(arn) == "rtsp://camera.local/stream"
    assert rk.client(streams={arn: 3}).stream_processors.source_for(arn) == 3
    monkeypatch.setenv("REKOLAB_STREAMS", "no-equals-sign")
    with pytest.raises(ValueError, match="REKOLAB_STREAMS entry"):
        rk.client().stream_processors.source_for(arn)
    monkeypatch.delenv("REKOLAB_STREAMS")
    # A session whose process died reads FAILED, with a message.
    path = store.home() / "stream_processors" / "door.json"
    d = json.loads(path.read_text())
    d.update(Status="RUNNING", SessionId="s-1", Owner={"pid": 2**22 + 12345, "start": "1"})
    path.write_text(json.dumps(d))
    described = rk.client().describe_stream_processor(Name="door")
    validate_response("DescribeStreamProcessor", described)
    assert described["Status"] == "FAILED" and "interrupted" in described["StatusMessage"]
    assert rk.client().list_stream_processors()["StreamProcessors"] == [{"Name": "door", "Status": "FAILED"}]
    # Notebook handles reopen by name.
    assert "FaceSearch, FAILED" in repr(rk.StreamProcessor("door"))
    with pytest.raises(rk.errors.ResourceNotFoundException):
        rk.StreamProcessor("unknown")


def test_fragment_numbers_round_trip():
    from rekolab.streaming import fragment_number, parse_fragment_number

    n = fragment_number(1795248520.843, 7)
    assert n == "17952485208430000000007" and parse_fragment_number(n) == (1795248520843, 7)
    assert fragment_number(1795248520.843, 7) < fragment_number(1795248520.843, 8) < fragment_number(1795248521.0, 0)
    with pytest.raises(ValueError):
        parse_fragment_number("1234")
