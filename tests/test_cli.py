"""The rekolab command: run jobs on a file or a folder, list and show jobs, export,
plot; exit codes and messages that say what went wrong."""
from __future__ import annotations

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from rekolab.cli import main
from rekolab.testing import numbered_video, still_video

from conftest import MEDIA, REPO


@pytest.fixture
def obama(tmp_path, models_dir):
    return still_video(MEDIA / "faces/obama.jpg", tmp_path / "obama.mp4", frames=3)


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_faces_on_a_file_writes_parquet(obama, tmp_path, capsys):
    code, out, err = run(capsys, "faces", obama, "-o", tmp_path / "out" / "faces.parquet", "-q")
    assert code == 0, err
    assert "StartFaceDetection" in out and "faces_per_frame" in out and "wrote" in out
    table = pq.read_table(tmp_path / "out" / "faces.parquet")
    assert table.num_rows == 1
    assert json.loads(table.schema.metadata[b"rekolab"])["VideoMetadata"]["Codec"] == "h264"


def test_faces_jsonl_output_by_suffix(obama, tmp_path, capsys):
    code, _, err = run(capsys, "faces", obama, "-o", tmp_path / "faces.jsonl", "--attributes", "ALL", "-q")
    assert code == 0, err
    items = [json.loads(x) for x in (tmp_path / "faces.jsonl").read_text().splitlines()]
    assert len(items) == 1 and items[0]["Timestamp"] == 0 and items[0]["Face"]["Gender"]["Value"] == "Male"


def test_faces_on_a_folder(tmp_path, models_dir, capsys):
    folder = tmp_path / "videos"
    folder.mkdir()
    still_video(MEDIA / "faces/two_people.jpg", folder / "a_two.mp4", frames=1)
    numbered_video(folder / "b_none.mp4", frames=5)
    (folder / "notes.txt").write_text("not a video")
    code, out, err = run(capsys, "faces", folder, "-o", tmp_path / "results", "-q")
    assert code == 0, err
    assert "[1/2]" in out and "[2/2]" in out and "2 of 2 videos done" in out
    assert pq.read_table(tmp_path / "results" / "a_two.parquet").num_rows == 2
    assert pq.read_table(tmp_path / "results" / "b_none.parquet").num_rows == 0


def test_a_failing_video_in_a_folder_exits_1_and_the_rest_still_run(tmp_path, models_dir, capsys):
    folder = tmp_path / "videos"
    folder.mkdir()
    numbered_video(folder / "good.mp4", frames=5)
    (folder / "broken.mp4").write_bytes(b"\x00" * 1000)
    code, out, err = run(capsys, "faces", folder, "-q")
    assert code == 1
    assert "broken.mp4: InvalidParameterException" in err and "not a readable video" in err
    assert "1 of 2 videos done, 1 failed" in out


def test_errors_say_what_went_wrong(tmp_path, models_dir, capsys):
    code, _, err = run(capsys, "faces", tmp_path / "missing.mp4")
    assert code == 1 and "InvalidS3ObjectException" in err and "missing.mp4" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run(capsys, "faces", empty)
    assert code == 1 and "no video files" in err
    (tmp_path / "file.parquet").write_text("x")
    numbered_video(empty / "v.mp4", frames=2)
    code, _, err = run(capsys, "faces", empty, "-o", tmp_path / "file.parquet")
    assert code == 2 and "must be a folder" in err
    with pytest.raises(SystemExit) as e:
        main(["faces"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(["faces", "x.mp4", "--attributes", "SOME"])
    assert e.value.code == 2
    code, _, err = run(capsys, "show", "0" * 64)
    assert code == 1 and "ResourceNotFoundException" in err
    code, _, err = run(capsys, "show", "../../etc")
    assert code == 2 and "is not a JobId" in err


def test_jobs_show_export_plot(obama, tmp_path, capsys):
    code, out, _ = run(capsys, "faces", obama, "-q")
    job_id = out.split()[1]
    assert len(job_id) == 64
    code, out, _ = run(capsys, "jobs")
    assert code == 0 and job_id in out and "SUCCEEDED" in out
    code, out, _ = run(capsys, "jobs", "--operation", "labels")
    assert job_id not in out
    code, out, _ = run(capsys, "show", job_id, "--items", "1")
    assert code == 0 and f'"job_id": "{job_id}"' in out and '"BoundingBox"' in out
    for fmt, target, check in [
        ("parquet", tmp_path / "e.parquet", lambda p: pq.read_table(p).num_rows == 1),
        ("jsonl", tmp_path / "e.jsonl", lambda p: len(p.read_text().splitlines()) == 1),
        ("coco", tmp_path / "coco", lambda p: len(json.loads((p / "annotations.json").read_text())["annotations"]) == 1),
        ("fiftyone", tmp_path / "fo", lambda p: json.loads((p / "labels.json").read_text())["classes"] == ["face"]),
        ("frames", tmp_path / "frames", lambda p: len(list(p.glob("*.jpg"))) == 1),
        ("crops", tmp_path / "crops", lambda p: len(list(p.glob("*.jpg"))) == 1),
    ]:
        code, out, err = run(capsys, "export", job_id, fmt, "-o", target, "-q")
        assert code == 0, (fmt, err)
        assert check(target), fmt
    code, out, _ = run(capsys, "plot", job_id, "-o", tmp_path / "t.png")
    assert code == 0 and (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"
    code, _, err = run(capsys, "export", job_id, "coco", "-o", tmp_path / "c2", "--frames", "detections",
                       "--min-confidence", "100.1", "-q")
    assert code == 0


def test_export_of_a_failed_job_exits_1(tmp_path, models_dir, capsys):
    from rekolab.testing import truncated_video

    truncated_video(MEDIA / "video/slow_traffic_small.mp4", tmp_path / "cut.mp4")
    code, _, err = run(capsys, "faces", tmp_path / "cut.mp4", "-q")
    assert code == 1 and "FAILED: Video decoding failed" in err
    job_id = err.split("job ")[1].split()[0]
    code, _, err = run(capsys, "export", job_id, "jsonl", "-o", tmp_path / "x.jsonl")
    assert code == 1 and "FAILED" in err and not (tmp_path / "x.jsonl").exists()


def test_the_installed_command_exit_codes(tmp_path):
    """The real console entry point, in a new process."""
    exe = [sys.executable, "-m", "rekolab.cli"]
    env = {"REKOLAB_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
    r = subprocess.run(exe + ["faces", str(tmp_path / "nope.mp4")], capture_output=True, text=True,
                       cwd=REPO, env=env, timeout=120)
    assert r.returncode == 1 and "error: " in r.stderr and "video not found" in r.stderr
    r = subprocess.run(exe + ["bogus"], capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    assert r.returncode == 2 and "invalid choice" in r.stderr
    r = subprocess.run(exe + ["jobs"], capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    assert r.returncode == 0 and "no jobs" in r.stderr
    assert r.stdout == ""


def test_labels_celebrities_and_search_commands(tmp_path, models_dir, capsys):
    import rekolab as rk

    dog = still_video(MEDIA / "scenes/dog.jpg", tmp_path / "dog.mp4", frames=1)
    code, out, err = run(capsys, "labels", dog, "-o", tmp_path / "labels.jsonl", "--min-confidence", "60", "-q")
    assert code == 0, err
    assert "label" in out and "Dog" in out  # the lane summary
    items = [json.loads(x) for x in (tmp_path / "labels.jsonl").read_text().splitlines()]
    assert "Dog" in {i["Label"]["Name"] for i in items}
    assert all(i["Label"]["Confidence"] >= 60 for i in items)
    job_id = out.split()[1]
    code, _, err = run(capsys, "export", job_id, "coco", "-o", tmp_path / "coco", "-q")
    assert code == 0, err
    coco = json.loads((tmp_path / "coco" / "annotations.json").read_text())
    assert {"Dog", "Bicycle"} <= {c["name"] for c in coco["categories"]}

    obama = still_video(MEDIA / "faces/obama_and_biden.jpg", tmp_path / "ob.mp4", frames=1)
    code, _, err = run(capsys, "search", obama, "--collection", "nobody", "-q")
    assert code == 1 and "ResourceNotFoundException" in err and "nobody" in err
    rk.Collection.create("cast").index(MEDIA / "faces/obama.jpg", "obama")
    code, out, err = run(capsys, "search", obama, "--collection", "cast", "-q")
    assert code == 0, err
    assert "obama" in out and "no match" in out

    gallery = rk.celebrities.gallery(tmp_path / "gallery")
    gallery.add("Barack Obama", images=[MEDIA / "faces/obama.jpg"])
    code, out, err = run(capsys, "celebrities", obama, "--gallery", tmp_path / "gallery", "-q",
                         "-o", tmp_path / "celebs.parquet")
    assert code == 0, err
    assert "Barack Obama" in out and pq.read_table(tmp_path / "celebs.parquet").num_rows == 1


def test_ctrl_c_during_a_job_exits_130_promptly(tmp_path, models_dir):
    """SIGINT while a job runs: exit code 130 within seconds (the job stops instead
    of running to its end) and a message naming the job, which reads FAILED."""
    import glob
    import os
    import signal
    import time

    video = MEDIA / "video/slow_traffic_small.mp4"
    if not video.exists():
        pytest.skip(f"needs {video}")
    home = tmp_path / "home"
    env = {**os.environ, "REKOLAB_HOME": str(home), "REKOLAB_MODEL_DIR": str(models_dir)}
    # Every frame of a 30 s clip: ~17 s of work on an idle 2-core machine.
    p = subprocess.Popen([sys.executable, "-m", "rekolab.cli", "faces", str(video), "--sample-rate", "30", "-q"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)
    try:
        deadline = time.monotonic() + 60
        while not glob.glob(str(home / "jobs" / "*" / "job.json")) and p.poll() is None:
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.05)
        time.sleep(1.0)  # into the decode/analysis loop
        sent = time.monotonic()
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
        took = time.monotonic() - sent
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, err
    assert "interrupted (Ctrl-C)" in err and "Traceback" not in err
    job_id = err.split("job ")[1].split()[0]
    assert took < 10, took
    record = json.loads((home / "jobs" / job_id / "job.json").read_text())
    assert record["status"] == "FAILED" and "interrupted" in record["status_message"], record
    assert not list((home / "jobs" / job_id).glob("*.parquet*"))
