"""Dataset runs on the local executor: parity with single-video jobs, a split long
video, a worker killed mid-run, resume after a killed run, readers, bad input.

Clips (made once per module from ../shared/media): the Hamilton clip (9 s: split
into two segments at SampleRate 2 with segment_s=5), three 1.5 s cuts of the other
real clips, four numbered synthetic clips, and one file that is not a video.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import rekolab as rk
from rekolab import store
from rekolab.errors import InvalidParameterException
from rekolab.testing import numbered_video, write_video

from conftest import MEDIA, MODELS, REPO, module_env, need

RATE = 2
OPS = {"faces": {}, "labels": {"Models": ["DETECTOR"]}}  # YOLOX only: no torch import in workers


def _cut(source: Path, path: Path, frames: int = 45) -> Path:
    import av

    def first():
        with av.open(str(source)) as c:
            for i, f in enumerate(c.decode(video=0)):
                if i >= frames:
                    return
                yield f.to_ndarray(format="rgb24")

    with av.open(str(source)) as c:
        rate = c.streams.video[0].average_rate or 25
    return write_video(path, first(), rate)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    video = need(MEDIA / "video")
    folder = tmp_path_factory.mktemp("clips")
    (folder / "long").mkdir()
    (folder / "long" / "hamilton.mp4").write_bytes((video / "short_hamilton_clip.mp4").read_bytes())
    for name in ("mmaction2_basketball", "mmaction2_demo_armwrestling", "slow_traffic_small"):
        _cut(video / f"{name}.mp4", folder / f"{name}_cut.mp4")
    for i in range(4):
        numbered_video(folder / f"numbered_{i}.mp4", frames=30 + 5 * i)
    (folder / "broken.mp4").write_bytes(b"this is not a video file\n" * 40)
    return folder


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    need(MODELS / "insightface" / "models")
    with module_env(tmp_path_factory, "datasets-home") as home:
        yield home


@pytest.fixture(scope="module")
def local_run(clips, env, tmp_path_factory):
    """Two workers; one worker is killed while it holds its first video."""
    out = tmp_path_factory.mktemp("run") / "out"
    run = rk.analyze(str(clips), OPS, out=out, workers=2, sample_rate=RATE, segment_s=5)
    ex = run._executor
    deadline = time.monotonic() + 60
    killed = None
    while time.monotonic() < deadline and killed is None:
        busy = [w for w in list(ex._pool) if w.task is not None and w.task.kind == "video"
                and not w.task.video_id.startswith("broken")]
        if busy:
            killed = (busy[0].process.pid, busy[0].task.video_id)
            os.kill(killed[0], signal.SIGKILL)
        time.sleep(0.05)
    assert killed is not None, "no worker started within 60 s"
    run.wait(timeout=600, progress=False)
    return run, killed


def _single_job_rows(path: Path, folder: str) -> list[dict]:
    if folder == "faces":
        job = rk.start_face_detection(path, sample_rate=RATE)
    else:
        job = rk.start_label_detection(path, sample_rate=RATE, models=["DETECTOR"])
    job.wait(progress=False)
    assert job.status == "SUCCEEDED", job.status_message
    return job.to_arrow().to_pylist()


def test_local_run_matches_single_jobs(local_run, clips):
    run, (killed_pid, killed_video) = local_run
    m = run.manifest().set_index("video")
    assert len(m) == 9 and run.status == "PARTIAL"
    failed = run.failures()
    assert list(failed["path"]) == [str(clips / "broken.mp4")]
    assert "InvalidParameterException" in failed["status_message"][0]
    ok = m[m["status"] == "SUCCEEDED"]
    assert len(ok) == 8
    # the killed worker's video was retried on another worker and succeeded
    assert m.loc[killed_video, "status"] == "SUCCEEDED"
    assert killed_pid not in m.loc[killed_video, "workers"]
    # the long clip ran as two segments, on the pool's workers
    long_id = m.index[m["path"].str.endswith("hamilton.mp4")][0]
    assert m.loc[long_id, "segments"] == 2
    for folder in OPS:
        for video_id, row in ok.iterrows():
            part = run.out / folder / f"video={video_id}" / "part-0.parquet"
            got = pq.read_table(part).to_pylist()
            assert got == _single_job_rows(Path(row["path"]), folder), (folder, row["path"])
            assert row[f"rows_{folder}"] == len(got)
    faces = run.to_pandas("faces")
    with_faces = ok["rows_faces"][ok["rows_faces"] > 0]
    assert long_id in with_faces.index
    assert faces.groupby("video").size().sort_index().tolist() == with_faces.sort_index().tolist()


def test_readers_see_every_row_once(local_run):
    import duckdb
    import polars as pl

    run, _ = local_run
    m = run.manifest()
    for folder in OPS:
        expected = int(m[f"rows_{folder}"].fillna(0).sum())
        assert expected > 0
        assert run.to_arrow(folder).count_rows() == expected
        assert len(run.to_pandas(folder)) == expected
        glob = str(run.out / folder / "*" / "*.parquet")
        con = duckdb.connect()
        n, videos = con.execute(
            f"SELECT count(*), count(DISTINCT video) FROM read_parquet('{glob}', hive_partitioning=true)").fetchone()
        assert n == expected and videos == (m[f"rows_{folder}"] > 0).sum()
        df = pl.scan_parquet(glob, hive_partitioning=True).collect()
        assert df.height == expected and "video" in df.columns


def test_same_run_again_skips_everything(local_run):
    run, _ = local_run
    before = run.manifest().set_index("video")
    again = rk.analyze([v.uri for v in run.videos], OPS, out=run.out, workers=2, sample_rate=RATE, segment_s=5).wait(progress=False)
    assert again.counts["skipped"] == 8 and again.counts["done"] == 0
    after = again.manifest().set_index("video")
    ok = before["status"] == "SUCCEEDED"
    assert (after.loc[ok, "started"] == before.loc[ok, "started"]).all()  # not run again
    assert after.loc[~ok, "attempts"].iloc[0] == 2  # the broken file is tried again


def test_bad_input_fails_before_any_work(clips, env, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(InvalidParameterException, match="does not exist"):
        rk.analyze(str(tmp_path / "nothing-here"), ["faces"], out=out)
    with pytest.raises(InvalidParameterException, match="match no video"):
        rk.analyze(str(tmp_path / "*.mp4"), ["faces"], out=out)
    with pytest.raises(InvalidParameterException, match="unknown operation 'poses'"):
        rk.analyze(str(clips), ["faces", "poses"], out=out)
    with pytest.raises(InvalidParameterException, match="FaceAttributes"):
        rk.analyze(str(clips), {"faces": {"FaceAttributes": "SOME"}}, out=out)
    with pytest.raises(InvalidParameterException, match="executor"):
        rk.analyze(str(clips), ["faces"], out=out, executor="spark")
    assert not out.exists()


def test_out_with_other_parameters_is_refused(local_run, tmp_path):
    run, _ = local_run
    with pytest.raises(InvalidParameterException, match="new_run=True"):
        rk.analyze([v.uri for v in run.videos], {"faces": {"FaceAttributes": "ALL"}}, out=run.out)
    assert (run.out / "labels").is_dir()  # nothing was touched


def test_operation_names_come_from_the_registry():
    from rekolab.analysis import _ANALYZERS
    from rekolab.datasets import operation_table, resolve_operations

    table = operation_table()
    assert {"faces", "labels", "celebrities", "search"} <= set(table)
    for op in _ANALYZERS:  # every registered Start* operation, by its own name
        assert table[op][0] == op
    ops = resolve_operations({"StartFaceDetection": {"face_attributes": "ALL"}}, sample_rate=1)
    assert ops == {"faces": ("StartFaceDetection", {"FaceAttributes": "ALL", "SampleRate": 1})}


def test_orphan_partition_is_removed_on_reopen(local_run):
    """A crash between renaming a partition into place and writing its record."""
    run, _ = local_run
    orphan = run.out / "faces" / "video=orphan-0000000000"
    orphan.mkdir()
    (orphan / "part-0.parquet").write_bytes((next((run.out / "faces").glob("video=*")) / "part-0.parquet").read_bytes())
    rk.analyze([v.uri for v in run.videos], OPS, out=run.out, workers=1, sample_rate=RATE,
               segment_s=5).wait(progress=False)
    assert not orphan.exists()


_KILLED_RUN = textwrap.dedent("""
    import sys
    import rekolab as rk
    if __name__ == "__main__":
        rk.analyze(sys.argv[1], {"faces": {}, "labels": {"Models": ["DETECTOR"]}}, out=sys.argv[2],
                   workers=1, sample_rate=2).wait(progress=False)
""")


def test_resume_after_killed_run(local_run, clips, tmp_path):
    import pandas as pd

    run, _ = local_run
    out = tmp_path / "out"
    inputs = str(clips / "*.mp4")  # the 7 short clips and the broken file
    script = tmp_path / "run.py"
    script.write_text(_KILLED_RUN)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, str(script), inputs, str(out)], env=env,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    records = out / "_rekolab" / "videos"
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and len(list(records.glob("*.json"))) < 3:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and its worker
    finally:
        proc.wait(30)
        proc.stderr.close()
    first = {p.stem: store.read_json(p) for p in records.glob("*.json")}
    assert 3 <= len(first) < 8
    # resumed from a table of the same paths, with an extra column carried through
    table = pd.DataFrame({"path": sorted(str(p) for p in clips.glob("*.mp4"))})
    table["split"] = ["train" if "numbered" in p else "test" for p in table["path"]]
    resumed = rk.analyze(table, OPS, out=out, workers=1, sample_rate=RATE).wait(progress=False)
    m = resumed.manifest().set_index("video")
    assert len(m) == 8 and (m["status"] == "SUCCEEDED").sum() == 7
    assert (m["split"] == ["train" if "numbered" in p else "test" for p in m["path"]]).all()
    faces = resumed.to_pandas("faces")
    assert len(faces) > 0 and set(faces["split"]) == {"test"}  # numbered clips have no faces
    committed = [v for v, r in first.items() if r["status"] == "SUCCEEDED"]
    assert resumed.counts["skipped"] == len(committed)
    for v in committed:  # not run twice
        assert m.loc[v, "started"] == first[v]["started"] and m.loc[v, "attempts"] == 1
    # every row exactly once: the same rows as the undisturbed run, video by video
    reference = run.manifest().set_index("path")
    for folder in OPS:
        got = resumed.to_arrow(folder).to_table()
        assert got.num_rows == int(m[f"rows_{folder}"].fillna(0).sum())
        for video_id, row in m[m["status"] == "SUCCEEDED"].iterrows():
            ref_id = reference.loc[row["path"], "video"]
            assert (pq.read_table(out / folder / f"video={video_id}" / "part-0.parquet").to_pylist()
                    == pq.read_table(run.out / folder / f"video={ref_id}" / "part-0.parquet").to_pylist())


# -- a real Ray cluster: a head and a second node, one CPU each -----------------------------

RAY_IP = "127.0.0.2"  # loopback; Ray replaces 127.0.0.1 itself by the machine's address


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((RAY_IP, 0))
        return s.getsockname()[1]


def _ray_node(args: list[str], tmp: Path, name: str) -> subprocess.Popen:
    ray = Path(sys.executable).with_name("ray")
    ports = [f"--dashboard-agent-listen-port={_free_port()}", f"--dashboard-agent-grpc-port={_free_port()}",
             f"--metrics-export-port={_free_port()}", f"--runtime-env-agent-port={_free_port()}"]
    # The raylet waits for its dashboard agent to register (15 s by default); on a loaded
    # 2-core machine the agent takes longer than that to start.
    env = dict(os.environ, PYTHONPATH=str(REPO), RAY_USAGE_STATS_ENABLED="0",
               RAY_agent_register_timeout_ms="180000")
    return subprocess.Popen([str(ray), "start", "--block", "--num-cpus=1", f"--node-ip-address={RAY_IP}",
                             "--object-store-memory=80000000", "--disable-usage-stats", "--include-log-monitor=false",
                             *ports, *args],
                            env=env, start_new_session=True, stdout=open(tmp / f"{name}.log", "wb"),
                            stderr=subprocess.STDOUT)


def _processes_of(groups: set[int]) -> list[tuple[int, str]]:
    """Processes in these process groups, or descended from their leaders (Ray may
    start workers in sessions of their own): ``(pid, command line)``."""
    info = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
                info[int(proc.name)] = (int(stat[1]), int(stat[2]),  # ppid, pgid
                                        (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode())
            except (OSError, IndexError, ValueError):
                continue
    out = []
    for pid, (ppid, pgid, cmd) in info.items():
        chain, seen = pid, set()
        while chain in info and chain not in seen and info[chain][1] not in groups and chain not in groups:
            seen.add(chain)
            chain = info[chain][0]
        if chain in groups or (chain in info and info[chain][1] in groups):
            out.append((pid, cmd))
    return out


def _start_cluster(tmp: Path, nodes: list) -> str:
    import ray

    port = _free_port()
    address = f"{RAY_IP}:{port}"
    nodes.append(_ray_node(["--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={tmp}",
                            f"--ray-client-server-port={_free_port()}"], tmp, "head"))
    deadline = time.monotonic() + 90
    while True:
        try:
            ray.init(address=address, _node_ip_address=RAY_IP, log_to_driver=False)
            break
        except (ConnectionError, RuntimeError):
            if nodes[-1].poll() is not None or time.monotonic() > deadline:
                raylet = [line for f in tmp.glob("session_*/logs/raylet.err") for line in f.read_text().splitlines()
                          if "Check failed" in line or "Timed out" in line]
                raise RuntimeError("the Ray head did not start: " + (tmp / "head.log").read_text()[-600:]
                                   + "\nraylet: " + " ".join(raylet)[:600])
            time.sleep(1)
    nodes.append(_ray_node([f"--address={address}"], tmp, "worker"))
    while len([n for n in ray.nodes() if n["Alive"]]) < 2:
        if nodes[-1].poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the second Ray node did not start: " + (tmp / "worker.log").read_text()[-800:])
        time.sleep(0.5)
    ray.shutdown()
    return address


def _kill_groups(nodes: list) -> None:
    import ray

    ray.shutdown()
    victims = [pid for pid, _ in _processes_of({p.pid for p in nodes})]  # before leaders go
    for p in nodes:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for pid in victims:  # descendants in sessions of their own
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for p in nodes:
        p.wait(30)


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """``ray start --head`` and a second ``ray start --address``, each in its own
    process group; killed by process group (never ``ray stop``) whatever happens.
    On an overloaded machine the raylet can give up on its dashboard agent
    (ray-project/ray#65983: a fixed port-file timeout); the error then says so."""
    import tempfile

    nodes: list = []
    try:
        address = _start_cluster(Path(tempfile.mkdtemp(prefix="rkray", dir="/tmp")), nodes)  # short: socket paths
        yield address, {p.pid for p in nodes}
    finally:
        _kill_groups(nodes)


def test_ray_cluster_run_on_two_nodes_with_a_killed_worker(ray_cluster, local_run, clips, tmp_path):
    address, groups = ray_cluster
    run, _ = local_run
    inputs = str(clips / "*.mp4")
    ray_run = rk.analyze(inputs, OPS, out=tmp_path / "out", executor="ray", address=address, workers=2,
                         sample_rate=RATE)
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and time.monotonic() < deadline and ray_run.status == "IN_PROGRESS":
        busy = [pid for pid, cmd in _processes_of(groups) if cmd.startswith("ray::_RayWorker.run")]
        if busy:
            killed = busy[0]
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.05)
    assert killed is not None, "no Ray worker was seen running a task"
    ray_run.wait(timeout=300, progress=False)
    m = ray_run.manifest().set_index("video")
    assert len(m) == 8 and (m["status"] == "SUCCEEDED").sum() == 7, m[["status", "status_message"]]
    nodes = {n for ns in m["nodes"] for n in ns}
    assert len(nodes) == 2, nodes  # tasks ran on both nodes
    reference = run.manifest().set_index("path")
    for folder in OPS:  # every row exactly once, as the local run wrote it
        assert ray_run.to_arrow(folder).count_rows() == int(m[f"rows_{folder}"].fillna(0).sum())
        for video_id, row in m[m["status"] == "SUCCEEDED"].iterrows():
            ref_id = reference.loc[row["path"], "video"]
            assert (pq.read_table(tmp_path / "out" / folder / f"video={video_id}" / "part-0.parquet").to_pylist()
                    == pq.read_table(run.out / folder / f"video={ref_id}" / "part-0.parquet").to_pylist())


def test_start_job_on_the_ray_cluster_in_two_segments(ray_cluster, clips, env, monkeypatch):
    """``REKOLAB_EXECUTOR=ray`` for Start* jobs (tests/test_job_executors.py has the rest):
    on the same cluster, the Hamilton job splits in two segments that run on both
    nodes and its rows equal the in-process thread job's."""
    address, _ = ray_cluster
    video = clips / "long" / "hamilton.mp4"
    expected = _single_job_rows(video, "faces")
    monkeypatch.setenv("REKOLAB_EXECUTOR", "ray")
    monkeypatch.setenv("REKOLAB_RAY_ADDRESS", address)
    monkeypatch.setenv("REKOLAB_SEGMENT_S", "3")
    client = rk.client()
    try:
        job = rk.start_face_detection(video, sample_rate=RATE, client=client)
        job.wait(progress=False)
        record = client.jobs.record(job.id)
    finally:
        client.jobs.runner.close()
    assert record.status == "SUCCEEDED", record.status_message
    assert job.to_arrow().to_pylist() == expected
    segments = [w for w in record.workers if w["kind"] == "segment"]
    assert len(segments) == 2 and len({w["node"] for w in segments}) == 2, record.workers


# -- segments: exact merge and stitched identities ----------------------------------------


def test_merge_segments_stitches_identities_across_a_boundary():
    import pyarrow as pa

    from rekolab.executors.segments import merge_segments, plan_segments

    assert plan_segments(37, 18_000, 6, 2, stateful=False) == [(0, 0, 16), (16, 16, 32), (32, 32, 37)]
    assert plan_segments(37, 18_000, 6, 2, stateful=True) == [(0, 0, 16), (0, 16, 32), (16, 32, 37)]

    def t(frames, ids):
        return pa.table({"FrameNumber": pa.array(frames, pa.int64()), "Index": pa.array(ids, pa.int64())})

    # segment 1 owns frames 0-9; segment 2 warms up on frames 8-9 and owns 10-13;
    # its tracker numbers from 0, so its ids are linked through the shared frames
    first = t([0, 5, 5, 8, 9, 9], [0, 0, 1, 1, 1, 2])
    second = t([8, 9, 9, 10, 12, 13], [0, 0, 1, 0, 2, 1])
    merged = merge_segments([(first, {"FrameNumber": 0}), (second, {"FrameNumber": 10})], "Index")
    assert merged.column("FrameNumber").to_pylist() == [0, 5, 5, 8, 9, 9, 10, 12, 13]
    assert merged.column("Index").to_pylist() == [0, 0, 1, 1, 1, 2, 1, 3, 2]


def test_split_search_and_celebrities_equal_the_single_jobs(clips, env, tmp_path):
    """The Hamilton clip in two segments (faces cross the boundary): face search's
    Person.Index and celebrity recognition's appearances (stitched, then named by
    one finalize over the merged rows) equal the single jobs' rows exactly."""
    from rekolab.api import Collection

    cast = Collection.create("cast")
    cast.index(str(MEDIA / "faces" / "lin-manuel-miranda.png"), external_image_id="lin")
    rk.celebrities.gallery().add("Lin-Manuel Miranda", images=[MEDIA / "faces" / "lin-manuel-miranda.png"])
    video = clips / "long" / "hamilton.mp4"
    run = rk.analyze(str(video), {"search": {"CollectionId": "cast"}, "celebrities": {}}, out=tmp_path / "out",
                     workers=2, sample_rate=3, segment_s=3).wait(progress=False)
    m = run.manifest()
    assert list(m["status"]) == ["SUCCEEDED"], m["status_message"][0]
    assert m["segments"][0] == 2
    jobs = {"search": rk.start_face_search(video, collection_id="cast", sample_rate=3),
            "celebrities": rk.start_celebrity_recognition(video, sample_rate=3)}
    boundary = 16 / 3 * 1000  # sample 16 at 3 per second
    for folder, job in jobs.items():
        expected = job.wait(progress=False).to_arrow().to_pylist()
        got = pq.read_table(next((tmp_path / "out" / folder).glob("video=*/part-0.parquet"))).to_pylist()
        assert got == expected, folder
        ids = "Index" if folder == "search" else "TrackIndex"
        crossing = ({r[ids] for r in expected if r["Timestamp"] < boundary}
                    & {r[ids] for r in expected if r["Timestamp"] >= boundary})
        assert crossing, f"{folder}: no identity crosses the segment boundary: the test would prove nothing"


def test_cli_analyze_resumes_and_reports_failures(local_run, capsys):
    from rekolab.cli import main

    run, _ = local_run
    inputs = [v.uri for v in run.videos]
    code = main(["analyze", *inputs, "-o", str(run.out), "--operations", "faces,labels", "-q",
                 "-p", 'labels.Models=["DETECTOR"]', "--sample-rate", str(RATE), "--workers", "1"])
    out = capsys.readouterr().out
    assert code == 1  # the broken file fails again
    assert "0 done, 8 skipped (already done), 1 failed of 9 videos" in out and "FAILED" in out
    code = main(["analyze", *inputs, "-o", str(run.out), "--operations", "faces", "-q"])
    assert code == 1 and "new_run=True" in capsys.readouterr().err


def test_remote_prefix_listing_identity_and_copy(clips, rekolab_home):
    """The fsspec path of inputs (s3:// works the same way with s3fs installed):
    a prefix lists its videos, identity comes from the object's info, and a worker's
    copy lands in the rekolab home's cache, fetched again when the object changes."""
    import fsspec

    from rekolab.datasets import collect_inputs, content_identity
    from rekolab.executors.work import local_copy

    fs = fsspec.filesystem("memory")
    data = (clips / "numbered_0.mp4").read_bytes()
    fs.pipe("/bucket/clips/a.mp4", data)
    fs.pipe("/bucket/clips/deeper/b.MOV", data)
    fs.pipe("/bucket/clips/notes.txt", b"not a video")
    videos = collect_inputs("memory://bucket/clips/")
    url = fs.unstrip_protocol  # memory:///bucket/..., s3://bucket/...
    assert [v.uri for v in videos] == [url("/bucket/clips/a.mp4"), url("/bucket/clips/deeper/b.MOV")]
    assert [v.uri for v in collect_inputs("memory://bucket/**/*.mp4")] == [url("/bucket/clips/a.mp4")]
    ident = content_identity(videos[0].uri)
    assert ident["size"] == len(data)
    copy = local_copy(videos[0].uri, ident)
    assert Path(copy).read_bytes() == data and copy.startswith(str(rekolab_home))
    fs.pipe("/bucket/clips/a.mp4", data[:-10])
    changed = content_identity(videos[0].uri)
    assert changed != ident and local_copy(videos[0].uri, changed) != copy
    with pytest.raises(InvalidParameterException, match="match no video"):
        collect_inputs("memory://bucket/empty/")


def test_an_operation_that_plans_its_own_decode(clips, env, tmp_path):
    """Segment detection reads every frame (its analyzer's decode_plan): a dataset run
    gives it its own decode, unsplit, and its rows equal the single job's."""
    from rekolab.datasets import operation_table
    from rekolab.executors.segments import own_decode, policy_for

    assert operation_table()["segments"] == ("StartSegmentDetection", "segments")
    assert own_decode("StartSegmentDetection") and policy_for("StartSegmentDetection") is None
    video = clips / "mmaction2_basketball_cut.mp4"
    with pytest.raises(rk.ParamValidationError, match="SegmentTypes"):  # its request's own rules, at once
        rk.analyze(str(video), ["segments"], out=tmp_path / "out")
    ops = {"segments": {"SegmentTypes": ["TECHNICAL_CUE", "SHOT"]}, "faces": {}}
    run = rk.analyze(str(video), ops, out=tmp_path / "out", workers=2, sample_rate=RATE,
                     segment_s=0.5).wait(progress=False)
    assert list(run.manifest()["status"]) == ["SUCCEEDED"], run.manifest()["status_message"][0]
    job = rk.start_segment_detection(video).wait(progress=False)
    assert job.status == "SUCCEEDED", job.status_message
    got = pq.read_table(next((tmp_path / "out" / "segments").glob("video=*/part-0.parquet"))).to_pylist()
    assert got == job.to_arrow().to_pylist() and got
    faces = pq.read_table(next((tmp_path / "out" / "faces").glob("video=*/part-0.parquet"))).to_pylist()
    assert faces == _single_job_rows(video, "faces")
