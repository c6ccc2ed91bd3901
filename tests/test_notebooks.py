"""Every notebook in notebooks/ runs top to bottom in a real kernel (nbclient), on the
shared media, and the tests check what its cells produced: the summary its last cell
prints, a PNG figure, widget views and the files it wrote."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import REPO

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = REPO / "notebooks"
WIDGET = "application/vnd.jupyter.widget-view+json"


def execute(name: str, tmp_path: Path, monkeypatch, timeout: int = 240) -> nbformat.NotebookNode:
    """Run notebooks/<name> in a fresh python3 kernel, in the notebooks folder, with
    outputs (and the rekolab home, already a tmp folder here) under tmp_path. The
    kernel is another process: its environment is given explicitly, offline
    (REKOLAB_OFFLINE=1: label detection never tries a CLIP download)."""
    path = NOTEBOOKS / name
    assert path.exists(), f"missing notebook {path}"
    monkeypatch.setenv("REKOLAB_NOTEBOOK_OUT", str(tmp_path / "out"))
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute(env={**os.environ, "REKOLAB_OFFLINE": "1"})
    return nb


def outputs(nb, kind: str | None = None):
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for out in cell.get("outputs", []):
            if kind is None or kind in out.get("data", {}) or out.get("output_type") == kind:
                yield cell, out


def summary(nb) -> dict:
    for cell, out in outputs(nb, "stream"):
        for line in out.get("text", "").splitlines():
            if line.startswith("SUMMARY "):
                return json.loads(line[len("SUMMARY "):])
    raise AssertionError("the notebook printed no SUMMARY line")


def cell_with(nb, text: str):
    return next(c for c in nb.cells if c.cell_type == "code" and text in c.source)


def mimes(cell) -> set[str]:
    return {m for o in cell.get("outputs", []) for m in o.get("data", {})}


def test_quickstart(tmp_path, monkeypatch, models_dir, media):
    nb = execute("quickstart.ipynb", tmp_path, monkeypatch)
    s = summary(nb)
    # Hamilton clip at 2 samples/s: 19 sampled frames, faces in most of them.
    assert 15 <= s["frames"] <= 19 and s["rows"] >= s["frames"]
    assert s["lanes"] >= 3 and s["boxes_drawn"] >= 1 and s["payload_bytes"] < 400_000
    assert s["main_face"].startswith("face ")
    assert "image/png" in mimes(cell_with(nb, "fig = job.plot()"))
    assert WIDGET in mimes(cell_with(nb, "tl = job.timeline()"))
    job_cell = cell_with(nb, "await job")
    assert any("SUCCEEDED" in o["data"].get("text/plain", "") for o in job_cell.outputs if "data" in o)
    assert not list(outputs(nb, "error"))


def test_dataset_export(tmp_path, monkeypatch, models_dir, media):
    nb = execute("dataset_export.ipynb", tmp_path, monkeypatch)
    s = summary(nb)
    out = tmp_path / "out"
    assert s["out"] == str(out)
    assert 15 <= s["images"] <= 19 and s["frames"] == s["images"] == s["fiftyone_images"]
    assert s["annotations"] == s["rows"] == s["crops"] >= s["images"]
    assert (out / "faces.parquet").exists() and (out / "faces.jsonl").exists()
    coco = json.loads((out / "coco" / "annotations.json").read_text())
    assert len(list((out / "coco" / "images").glob("*.jpg"))) == len(coco["images"])
    assert (out / "fiftyone" / "labels.json").exists() and (out / "contact_sheet.png").stat().st_size > 10_000
    assert len(list(outputs(nb, "image/png"))) >= 2  # the COCO check image and the contact sheet
    assert not list(outputs(nb, "error"))


def test_labels(tmp_path, monkeypatch, models_dir, media, rekolab_home):
    if not (models_dir / "coco_detection" / "yolox_nano.onnx").exists():
        pytest.skip("needs the YOLOX weights")
    nb = execute("labels.ipynb", tmp_path, monkeypatch)
    s = summary(nb)
    # Basketball clip, one sample a second: people in every frame (10), a ball once.
    assert "Person" in s["labels"] and set(s["lanes"]) == set(s["labels"]) and s["lanes"][0] == "Person"
    assert s["rows"] >= 10 and s["boxes"] >= 10 and s["segments"] >= len(s["labels"])
    assert "DETECTOR" in s["models"]
    # The kernel ran offline: CLIP ran from local weights or was skipped without a download.
    (record,) = [json.loads(p.read_text()) for p in (rekolab_home / "jobs").glob("*/job.json")]
    clip = record["models"]["Clip"]
    assert clip["Ran"] or "offline" in clip["Reason"], clip
    assert "image/png" in mimes(cell_with(nb, "fig = job.plot()"))
    assert WIDGET in mimes(cell_with(nb, "tl = job.timeline()"))
    assert not list(outputs(nb, "error"))


def test_celebrities(tmp_path, monkeypatch, models_dir, media):
    nb = execute("celebrities.ipynb", tmp_path, monkeypatch)
    s = summary(nb)
    assert s["names"] == ["Barack Obama", "Lin-Manuel Miranda"]
    assert s["obama_first_ms"] >= 7000  # the audience shot at the end of the clip
    assert s["lin_manuel_rows"] >= 5
    assert (tmp_path / "out" / "gallery" / "gallery.parquet").exists()
    assert "image/png" in mimes(cell_with(nb, "fig = job.plot()"))
    assert WIDGET in mimes(cell_with(nb, "tl = job.timeline()"))
    assert not list(outputs(nb, "error"))


def test_collections_and_streaming(tmp_path, monkeypatch, models_dir, media):
    nb = execute("collections_streaming.ipynb", tmp_path, monkeypatch)
    s = summary(nb)
    assert s["collection_faces"] == 3 and set(s["lanes"]) >= {"lin-manuel-miranda", "no match"}
    assert s["records"] == 19  # 2 samples/s over 9.2 s: one Kinesis record per analysed frame
    assert s["live_counts"]["lin-manuel-miranda"] >= 5
    assert s["label_events"] == {"labels": 1, "complete": 1}
    assert WIDGET in mimes(cell_with(nb, 'view = rk.live_view("stage"'))
    assert WIDGET in mimes(cell_with(nb, "await events.consume"))
    assert not list(outputs(nb, "error"))
