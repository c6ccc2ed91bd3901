"""The table of benchmarked operations (run by ``make bench``; see bench/harness.py).

    REKOLAB_MODEL_DIR=../shared/models python bench/bench_ops.py --out BENCHMARKS.md
    python bench/bench_ops.py --quick --only "faces DEFAULT" --no-rss    # smoke test

Each :class:`Operation` says how to run the rekolab job, the models alone, and the
naive loop a user would write with the same libraries (``cv2.VideoCapture`` reading
every frame, the library's own model call on each sampled frame). To add an
operation, append one
``Operation(...)`` to :data:`OPERATIONS`; ``--only NAME`` runs just that row.

``REKOLAB_BENCH_QUICK=1`` (set by ``--quick``) narrows CLIP's label set to a few
labels (so the text tower does not encode the 1624-label taxonomy) and the face
search collection to 1000 faces: the smoke test exercises every path in minutes.
"""
from __future__ import annotations

import functools
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import SHARED, Operation, main, percentile, summary  # noqa: E402

MEDIA = SHARED / "media"


def quick() -> bool:
    return os.environ.get("REKOLAB_BENCH_QUICK") == "1"


def _wait(job) -> None:
    job = job.wait(progress=False)
    assert job.status == "SUCCEEDED", job.status_message


# --------------------------------------------------------------------------- naive loops


def sampled_frames(path: Path, rate: float):
    """What a user writes: cv2 decodes every frame; keep one per 1/rate s of PTS."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    next_ms = 0.0
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                return
            if cap.get(cv2.CAP_PROP_POS_MSEC) >= next_ms - 1e-3:
                next_ms += 1000 / rate
                yield frame
    finally:
        cap.release()


@functools.lru_cache(maxsize=1)
def face_analysis():
    """insightface's FaceAnalysis on the same pack, as its README shows."""
    from insightface.app import FaceAnalysis

    from rekolab.models import onnx_providers
    from rekolab.models.faces import resolve_pack_dir

    name, folder = resolve_pack_dir()
    app = FaceAnalysis(name=name, root=str(folder.parent.parent), providers=onnx_providers())
    app.prepare(ctx_id=-1 if onnx_providers()[0] == "CPUExecutionProvider" else 0, det_size=(640, 640))
    return app


def naive_faces(path: Path, rate: float) -> None:
    app = face_analysis()
    for frame in sampled_frames(path, rate):
        app.get(frame)


def naive_face_matches(path: Path, rate: float) -> None:
    """FaceAnalysis.get, then cosine of every face with a matrix of known faces."""
    app, known = face_analysis(), known_faces()
    for frame in sampled_frames(path, rate):
        for face in app.get(frame):
            cos = known @ face.normed_embedding
            np.flatnonzero(cos >= 0.40)


def naive_yolox(path: Path, rate: float) -> None:
    det = yolox()
    for frame in sampled_frames(path, rate):
        det.detect(frame)


def naive_clip(path: Path, rate: float) -> None:
    """open_clip as its README shows: PIL preprocess, encode_image, softmax over labels."""
    import torch
    from PIL import Image

    analyzer = labels_analyzer("CLIP")
    model, text = analyzer.clip, analyzer.text_emb
    text_t = torch.from_numpy(text)
    for frame in sampled_frames(path, rate):
        x = model.transform(Image.fromarray(frame[:, :, ::-1])).unsqueeze(0).to(model.device)
        with torch.no_grad():
            emb = model.model.encode_image(x.to(next(model.model.parameters()).dtype)).float().cpu()
        emb = emb / emb.norm(dim=-1, keepdim=True)
        (100.0 * emb @ text_t.T).softmax(dim=-1)


def naive_labels(path: Path, rate: float) -> None:
    naive_yolox(path, rate)
    naive_clip(path, rate)


# --------------------------------------------------------------------------- models and setups


@functools.lru_cache(maxsize=1)
def yolox():
    from rekolab.models.yolox import YoloxDetector
    return YoloxDetector()


def bench_cache() -> Path:
    """What the bench keeps between runs (``REKOLAB_BENCH_CACHE``, default
    ``~/.cache/rekolab-bench``): the random CLIP checkpoint and its text embeddings."""
    path = Path(os.environ.get("REKOLAB_BENCH_CACHE") or Path.home() / ".cache" / "rekolab-bench")
    path.mkdir(parents=True, exist_ok=True)
    return path


@functools.lru_cache(maxsize=1)
def clip_checkpoint() -> str:
    """A real-size open_clip ViT-B-32 with random weights (no download): the same
    compute as the pretrained model (tests/test_clip.py makes its checkpoints so).

    Embedding the whole taxonomy's prompts (1624 labels, ~14.6k prompts) with the
    text tower is a one-time cost per model that a user pays too (then it is on disk
    in their rekolab home): measured 366 CPU-s on the 2-core machine. The bench's
    home is new each run, so its CLIP text cache is linked to :func:`bench_cache`
    (keyed, as always, by the checkpoint's sha256 and every prompt): only the
    first bench run pays it. Setup is never timed."""
    import open_clip
    import torch

    cache = bench_cache()
    path = cache / "ViT-B-32-random.pt"
    if not path.exists():
        torch.manual_seed(0)
        part = path.with_suffix(".part")
        torch.save(open_clip.create_model("ViT-B-32", pretrained=None).state_dict(), part)
        os.replace(part, path)
    text = Path(os.environ["REKOLAB_HOME"]) / "cache" / "clip_text"
    if not text.exists():
        (cache / "clip_text").mkdir(exist_ok=True)
        text.parent.mkdir(parents=True, exist_ok=True)
        text.symlink_to(cache / "clip_text", target_is_directory=True)
    return str(path)


def label_params(models: str) -> dict:
    params: dict = {"Models": models.split("+")}
    if "CLIP" in params["Models"]:
        params["ClipModel"] = {"Arch": "ViT-B-32", "Pretrained": None, "Checkpoint": clip_checkpoint()}
    if quick():
        params["Settings"] = {"GeneralLabels": {"LabelInclusionFilters": ["Person", "Car", "Dog", "Chair"]}}
    return params


@functools.lru_cache(maxsize=4)
def labels_analyzer(models: str):
    from rekolab.analysis.labels import LabelDetectionAnalyzer
    return LabelDetectionAnalyzer(label_params(models))


def labels_job(models: str):
    def run(path: Path, rate: float) -> None:
        import rekolab as rk
        p = label_params(models)
        _wait(rk.start_label_detection(path, models=p["Models"], clip_model=p.get("ClipModel"),
                                       settings=p.get("Settings"), sample_rate=rate))
    return run


def analyzer_model(factory):
    def run(batches) -> None:
        analyzer = factory()
        for b in batches:
            analyzer(b)
    return run


@functools.lru_cache(maxsize=2)
def face_analyzer(attributes: str):
    from rekolab.analysis.faces import FaceDetectionAnalyzer
    return FaceDetectionAnalyzer({"FaceAttributes": attributes})


def faces_job(attributes: str):
    def run(path: Path, rate: float) -> None:
        import rekolab as rk
        _wait(rk.start_face_detection(path, face_attributes=attributes, sample_rate=rate))
    return run


COLLECTION = "bench-faces"


def collection_size() -> int:
    return 1000 if quick() else 10_000


def setup_collection() -> None:
    """A collection of random 128-d faces plus the real faces of the shared stills."""
    from rekolab import collections as C
    from rekolab.errors import ResourceAlreadyExistsException

    try:
        C.create_collection(COLLECTION)
    except ResourceAlreadyExistsException:
        return
    rng = np.random.default_rng(0)
    dim = known_dim()
    n = collection_size()
    for start in range(0, n, 1000):
        x = rng.standard_normal((min(1000, n - start), dim)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        faces = [{"BoundingBox": {"Width": 0.1, "Height": 0.1, "Left": 0.4, "Top": 0.4}, "Confidence": 99.0,
                  "ExternalImageId": f"random-{start + i}"} for i in range(len(x))]
        C.add_faces(COLLECTION, x, faces, image_sha=f"bench-{start}")
    import rekolab as rk
    client = rk.client()
    for name in ("lin-manuel-miranda.png", "obama.jpg"):
        client.index_faces(CollectionId=COLLECTION, Image={"Bytes": (MEDIA / "faces" / name).read_bytes()},
                           ExternalImageId=name.split(".")[0])


def known_dim() -> int:
    from rekolab.models.faces import face_pack
    return int(face_pack().recognizer.output_shape[-1])


@functools.lru_cache(maxsize=1)
def known_faces() -> np.ndarray:
    """The naive loop's gallery: a matrix of as many unit vectors as the collection."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((collection_size(), known_dim())).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def face_search_job(path: Path, rate: float) -> None:
    import rekolab as rk
    _wait(rk.start_face_search(path, COLLECTION, sample_rate=rate))


@functools.lru_cache(maxsize=1)
def face_search_analyzer():
    from rekolab.analysis.face_search import FaceSearchAnalyzer
    return FaceSearchAnalyzer({"CollectionId": COLLECTION})


def setup_gallery() -> None:
    import rekolab as rk
    g = rk.celebrities.gallery()
    if len(g) == 0:
        g.add("Lin-Manuel Miranda", images=[MEDIA / "faces" / "lin-manuel-miranda.png"])
        g.add("Barack Obama", images=[MEDIA / "faces" / "obama.jpg", MEDIA / "faces" / "obama2.jpg"])


def celebrities_job(path: Path, rate: float) -> None:
    import rekolab as rk
    _wait(rk.start_celebrity_recognition(path, sample_rate=rate))


def celebrities_model(batches) -> None:
    from rekolab.analysis.celebrities import CelebrityRecognitionAnalyzer
    analyzer = CelebrityRecognitionAnalyzer({})  # a fresh tracker per run, as a job has
    for b in batches:
        analyzer(b)


def stream_latency(path: Path, rate: float) -> dict:
    """Frame -> record latency of a face-search stream processor reading the clip in
    real time (30 fps pacing): the record's arrival minus the frame's arrival, which
    is its fragment's ServerTimestamp + FrameOffsetInSeconds."""
    import rekolab as rk

    setup_collection()
    name = f"bench-{int(time.time() * 1000)}"
    proc = rk.create_stream_processor(name, source=str(path), face_search={"CollectionId": COLLECTION},
                                      sample_rate=rate)
    latencies = []
    for record in proc.start(realtime=True):
        now = time.time()
        kv = _find(record, "KinesisVideo")
        if kv and "ServerTimestamp" in kv:
            latencies.append((now - kv["ServerTimestamp"] - kv["FrameOffsetInSeconds"]) * 1000)
    assert latencies, "the stream processor produced no records"
    return summary(latencies)


def _find(record, key):
    if isinstance(record, dict):
        if key in record:
            return record[key]
        for v in record.values():
            found = _find(v, key)
            if found is not None:
                return found
    elif isinstance(record, list):
        for v in record:
            found = _find(v, key)
            if found is not None:
                return found
    return None


# --------------------------------------------------------------------------- segments and text

SEGMENT_TYPES = ["TECHNICAL_CUE", "SHOT"]


def segment_batches(path: Path, rate: float):
    """What the segment job decodes: EVERY frame (PyAV, sequential, at most 640 px
    wide; ``rate`` is not used), in the job's batches of 16; each batch carries its
    video's path for :func:`segments_model`."""
    from rekolab.analysis.segments import SegmentDetectionAnalyzer

    for batch in SegmentDetectionAnalyzer({"SegmentTypes": SEGMENT_TYPES}).decode_plan(path).batches(16):
        batch.extra["path"] = str(path)
        yield batch


def segments_model(batches) -> None:
    """The analyzer's per-frame work (shot scores, black / bars / plain measures, OCR
    on plain frames) over frames decoded beforehand, then finalize."""
    from rekolab.analysis.segments import SegmentDetectionAnalyzer

    analyzer = SegmentDetectionAnalyzer({"SegmentTypes": SEGMENT_TYPES})
    analyzer.decode_plan(batches[0].extra["path"])  # frame rate, shot detector (the job's decode is not used)
    for b in batches:
        analyzer(b)
    analyzer.finalize(None)


def ocr_model():
    from rekolab.models.ocr import ocr_model
    return ocr_model()


def segments_job(path: Path, rate: float) -> None:
    import rekolab as rk
    _wait(rk.start_segment_detection(path, SEGMENT_TYPES))


def naive_segments(path: Path, rate: float) -> None:
    """PySceneDetect's own ``scenedetect.detect(path, AdaptiveDetector())`` (its OpenCV
    backend, full size) for shots, then a second ``cv2.VideoCapture`` pass testing every
    frame for black. It finds no colour bars and no credits, which the job does."""
    import cv2
    import scenedetect

    scenedetect.detect(str(path), scenedetect.AdaptiveDetector())
    cap = cv2.VideoCapture(str(path))
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                return
            _ = (cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) <= 51).mean() >= 0.99
    finally:
        cap.release()


def text_job(path: Path, rate: float) -> None:
    import rekolab as rk
    _wait(rk.start_text_detection(path, sample_rate=rate))


@functools.lru_cache(maxsize=1)
def text_analyzer():
    from rekolab.analysis.text import TextDetectionAnalyzer
    return TextDetectionAnalyzer({})


@functools.lru_cache(maxsize=1)
def rapidocr():
    from rapidocr_onnxruntime import RapidOCR
    return RapidOCR()


def naive_text(path: Path, rate: float) -> None:
    """``RapidOCR()`` with its default configuration (the short side scaled up to 736
    px) on each sampled frame read by ``cv2.VideoCapture``. It gives lines only:
    no words, no filters, no Rekognition geometry, which the job adds."""
    engine = rapidocr()
    for frame in sampled_frames(path, rate):
        engine(frame)


# --------------------------------------------------------------------------- moderation, persons


@functools.lru_cache(maxsize=1)
def nude_detector():
    """nudenet's own NudeDetector (its session, its defaults), as its README shows."""
    from nudenet import NudeDetector
    return NudeDetector()


def naive_moderation(path: Path, rate: float) -> None:
    det = nude_detector()
    for frame in sampled_frames(path, rate):
        det.detect(frame)


@functools.lru_cache(maxsize=1)
def person_models():
    """The naive person loop's models: insightface's FaceAnalysis (detection and
    recognition, as the person job needs) and YOLOX keeping boxes >= 0.1."""
    from insightface.app import FaceAnalysis

    from rekolab.models import onnx_providers
    from rekolab.models.faces import resolve_pack_dir

    name, folder = resolve_pack_dir()
    app = FaceAnalysis(name=name, root=str(folder.parent.parent), providers=onnx_providers(),
                       allowed_modules=["detection", "recognition"])
    app.prepare(ctx_id=-1 if onnx_providers()[0] == "CPUExecutionProvider" else 0, det_size=(640, 640))
    from rekolab.models.yolox import YoloxDetector
    return app, YoloxDetector(score_threshold=0.1)


def naive_persons(path: Path, rate: float) -> None:
    """YOLOX persons -> trackers.ByteTrackTracker, FaceAnalysis.get, per sampled frame."""
    import supervision as sv
    from trackers import ByteTrackTracker

    app, det = person_models()
    tracker = ByteTrackTracker(frame_rate=rate, minimum_consecutive_frames=1)
    for frame in sampled_frames(path, rate):
        d = det.detect(frame)
        keep = d.class_ids == 0
        tracker.update(sv.Detections(xyxy=d.boxes_xyxy[keep], confidence=d.scores[keep],
                                     class_id=d.class_ids[keep].astype(int)))
        app.get(frame)


@functools.lru_cache(maxsize=1)
def moderation_analyzer():
    from rekolab.analysis.moderation import ContentModerationAnalyzer
    return ContentModerationAnalyzer({"Models": ["NUDENET"]})


def moderation_job(path: Path, rate: float) -> None:
    import rekolab as rk
    _wait(rk.start_content_moderation(path, models=["NUDENET"], sample_rate=rate))


def persons_analyzer():
    from rekolab.analysis.persons import PersonTrackingAnalyzer
    return PersonTrackingAnalyzer({"SampleRate": 5.0})


def persons_model(batches) -> None:
    """A fresh analyzer per run (tracker state), its finalize included, as a job runs it."""
    import pyarrow as pa

    analyzer = persons_analyzer()
    analyzer.finalize(pa.Table.from_batches([analyzer(b) for b in batches], schema=analyzer.schema))


def persons_job(path: Path, rate: float) -> None:
    import rekolab as rk
    _wait(rk.start_person_tracking(path, sample_rate=rate))


# --------------------------------------------------------------------------- rekolab serve


def serve_load(path: Path, rate: float, clients: int = 32, calls: int = 50) -> dict:
    """``rekolab serve`` on 127.0.0.1 (its own home; the clip's folder as bucket
    ``media``), driven through real boto3: a face-detection job on the clip, then

    * one client reading every page of GetFaceDetection (MaxResults 2), in turn:
      requests/s and p50/p95 ms;
    * ``clients`` concurrent clients x ``calls`` calls: GetFaceDetection pages
      (MaxResults 2, random page), ListCollections, ListFaces, DescribeCollection, and one
      IndexFaces per client (a slow synchronous call that must not hold the others up):
      calls/s, GetFaceDetection p50/p95 ms under that load, IndexFaces p50, errors.

    The clients share the server's CPUs (signing and parsing included)."""
    import random
    import signal
    import socket
    import subprocess
    import threading

    import boto3
    import httpx
    from botocore.config import Config

    work = Path(os.environ["REKOLAB_HOME"]) / f"serve-{int(time.time() * 1000)}"
    work.mkdir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, REKOLAB_HOME=str(work), REKOLAB_BUCKETS=f"media={path.parent}",
               PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    server = subprocess.Popen([sys.executable, "-m", "rekolab.cli", "serve", "--host", "127.0.0.1",
                               "--port", str(port), "--log-level", "warning"],
                              env=env, stdout=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def make():
        return boto3.client("rekognition", endpoint_url=url, region_name="us-east-1",
                            aws_access_key_id="bench", aws_secret_access_key="bench",
                            config=Config(retries={"max_attempts": 1}, max_pool_connections=4))
    try:
        for _ in range(600):
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.HTTPError:
                if server.poll() is not None:
                    raise RuntimeError("rekolab serve exited at start")
                time.sleep(0.1)
        rek = make()
        image = (MEDIA / "faces" / "obama.jpg").read_bytes()
        rek.create_collection(CollectionId="bench")
        rek.index_faces(CollectionId="bench", Image={"Bytes": image})  # loads the models once
        job_id = rek.start_face_detection(Video={"S3Object": {"Bucket": "media", "Name": path.name}})["JobId"]
        while rek.get_face_detection(JobId=job_id, MaxResults=1)["JobStatus"] == "IN_PROGRESS":
            time.sleep(0.2)
        assert rek.get_face_detection(JobId=job_id, MaxResults=1)["JobStatus"] == "SUCCEEDED"

        def read_all(max_results: int) -> tuple[list[float], list]:
            ms, tokens, token = [], [None], None
            while True:
                t0 = time.perf_counter()
                page = rek.get_face_detection(JobId=job_id, MaxResults=max_results,
                                              **({"NextToken": token} if token else {}))
                ms.append((time.perf_counter() - t0) * 1000)
                token = page.get("NextToken")
                if not token:
                    return ms, tokens
                tokens.append(token)

        read_all(2)  # warm-up
        t0 = time.perf_counter()
        pages_ms, tokens = read_all(2)
        one_wall = time.perf_counter() - t0

        ops = {
            "GetFaceDetection": lambda c, r: c.get_face_detection(
                JobId=job_id, MaxResults=2, **({"NextToken": t} if (t := r.choice(tokens)) else {})),
            "ListCollections": lambda c, r: c.list_collections(),
            "ListFaces": lambda c, r: c.list_faces(CollectionId="bench"),
            "DescribeCollection": lambda c, r: c.describe_collection(CollectionId="bench"),
            "IndexFaces": lambda c, r: c.index_faces(CollectionId="bench", Image={"Bytes": image}),
        }
        latencies: dict[str, list[float]] = {k: [] for k in ops}
        errors: list[str] = []
        lock = threading.Lock()
        barrier = threading.Barrier(clients)

        def worker(i: int) -> None:
            r, c = random.Random(i), make()
            plan = [r.choice(["GetFaceDetection"] * 3 + ["ListCollections", "ListFaces", "DescribeCollection"])
                    for _ in range(calls - 1)]
            plan.insert(r.randrange(calls), "IndexFaces")
            barrier.wait()
            for op in plan:
                t1 = time.perf_counter()
                try:
                    ops[op](c, r)
                except Exception as exc:  # counted and reported, the load goes on
                    with lock:
                        errors.append(f"{op}: {exc}")
                    continue
                with lock:
                    latencies[op].append((time.perf_counter() - t1) * 1000)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        many_wall = time.perf_counter() - t0
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    for e in errors[:5]:
        print("serve error:", e, file=sys.stderr)
    get = latencies["GetFaceDetection"]
    return {"pages": len(pages_ms), "one_rps": len(pages_ms) / one_wall, "one_p50_ms": percentile(pages_ms, 50),
            "one_p95_ms": percentile(pages_ms, 95), "clients": clients,
            "many_calls": sum(map(len, latencies.values())), "many_rps": sum(map(len, latencies.values())) / many_wall,
            "many_get_p50_ms": percentile(get, 50), "many_get_p95_ms": percentile(get, 95),
            "many_index_p50_ms": percentile(latencies["IndexFaces"], 50), "errors": len(errors)}


OPERATIONS: list[Operation] = [
    Operation("faces DEFAULT", job=faces_job("DEFAULT"), model=analyzer_model(lambda: face_analyzer("DEFAULT")),
              naive=naive_faces, setup=lambda: face_analyzer("DEFAULT"),
              note="naive = cv2 reads every frame, FaceAnalysis.get (SCRFD 640x640 + recognizer) per sample"),
    Operation("faces ALL", job=faces_job("ALL"), model=analyzer_model(lambda: face_analyzer("ALL")),
              naive=naive_faces, setup=lambda: face_analyzer("ALL")),
    Operation("labels YOLOX", job=labels_job("DETECTOR"), model=analyzer_model(lambda: labels_analyzer("DETECTOR")),
              naive=naive_yolox, setup=lambda: labels_analyzer("DETECTOR"),
              note="naive = cv2 + YoloxDetector.detect per sampled frame"),
    Operation("labels CLIP ViT-B-32", job=labels_job("CLIP"), model=analyzer_model(lambda: labels_analyzer("CLIP")),
              naive=naive_clip, setup=lambda: labels_analyzer("CLIP"), max_repeat=1, sample_rate=2.0,
              note="random weights, real size; naive = cv2 + open_clip preprocess/encode_image per frame"),
    Operation("labels YOLOX + CLIP", job=labels_job("DETECTOR+CLIP"),
              model=analyzer_model(lambda: labels_analyzer("DETECTOR+CLIP")), naive=naive_labels,
              setup=lambda: labels_analyzer("DETECTOR+CLIP"), max_repeat=1, sample_rate=2.0),
    Operation("celebrities", job=celebrities_job, model=celebrities_model, naive=naive_face_matches,
              setup=setup_gallery, note="gallery of 2 people; naive = FaceAnalysis.get + cosine per face"),
    Operation("face search (10k faces)", job=face_search_job, model=analyzer_model(face_search_analyzer),
              naive=naive_face_matches, setup=setup_collection,
              note="10k random + 2 real faces indexed (1k in --quick); naive = FaceAnalysis.get + one matmul"),
    Operation("stream processor (face search)", latency=stream_latency, setup=setup_collection),
    Operation("moderation", job=moderation_job, model=analyzer_model(moderation_analyzer), naive=naive_moderation,
              setup=moderation_analyzer,
              note="NudeNet 320n only (no CLIP configured); naive = cv2 + nudenet.NudeDetector.detect per sampled frame"),
    Operation("persons", job=persons_job, model=persons_model, naive=naive_persons, setup=person_models,
              note="naive = cv2 + YOLOX persons + trackers.ByteTrackTracker + FaceAnalysis.get (detection, "
                   "recognition) per sampled frame"),
    Operation("rekolab serve", latency=serve_load,
              note="boto3 clients on the same 2 cores as the server; the Get* job is a face detection of the clip "
                   "(default SampleRate: boto3 cannot send the extension)"),
    Operation("segments", job=segments_job, decode=segment_batches, model=segments_model, naive=naive_segments,
              setup=ocr_model,
              note="every frame decoded (samples/s unused); naive = scenedetect.detect(AdaptiveDetector()) "
                   "+ a cv2 pass testing each frame for black (no bars, no credits)"),
    Operation("text", job=text_job, model=analyzer_model(text_analyzer), naive=naive_text,
              setup=lambda: (text_analyzer(), rapidocr()), max_repeat=1, sample_rate=1.0,
              note="naive = cv2 + RapidOCR() defaults (short side up to 736 px) per sampled frame, lines only"),
]


if __name__ == "__main__":
    if "--quick" in sys.argv:
        os.environ["REKOLAB_BENCH_QUICK"] = "1"
    main(OPERATIONS, Path(__file__).resolve())
