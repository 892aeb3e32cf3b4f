"""Mask R-CNN through the command line and the engine: mask mAP in metrics.json and history.csv,
eval reproducing training, predict writing instance overlays, and the engine's mask targets.

(The box-only parts every detector shares, Faster R-CNN included, are in
test_detection_training.py.)
"""

from __future__ import annotations

import csv
import json

import numpy
import pytest
from PIL import Image
from test_detection_training import PNG, TINY  # the same tiny run as every detector's

from tinyseg import engine
from tinyseg.cli import main
from tinyseg.data import DataLoader, ShapesDataset


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Mask R-CNN trained for one tiny epoch on the built-in scenes: its output folder."""
    out = tmp_path_factory.mktemp("maskrcnn")
    assert main(["train", "maskrcnn", "--out", str(out), *TINY]) == 0
    return out


def test_train_writes_mask_metrics(trained):
    metrics = json.loads((trained / "metrics.json").read_text())
    for key in ("bbox_map", "bbox_map_50", "bbox_map_75", "segm_map", "segm_map_50",
                "segm_map_75", "segm_mar_100"):
        assert -1.0 <= metrics[key] <= 1.0, key
    with open(trained / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[:10] == [*engine.DETECTION_HISTORY_FIELDS[:5],
                                  *engine.MASK_HISTORY_FIELDS, "lr", "seconds"]
    for term in ("objectness", "rpn_box_reg", "classifier", "box_reg", "mask"):
        assert float(rows[0][f"train_loss_{term}"]) >= 0
    assert (trained / "predictions.png").read_bytes()[:8] == PNG


def test_eval_of_the_checkpoint_matches_training(trained, tmp_path):
    out = tmp_path / "eval"
    assert main(["eval", "maskrcnn", "--checkpoint", str(trained / "checkpoint.npz"), "--out",
                 str(out), "--no-progress"]) == 0
    evaluated = json.loads((out / "metrics.json").read_text())
    first = json.loads((trained / "metrics.json").read_text())
    for key in ("bbox_map", "bbox_map_50", "segm_map", "segm_map_50"):
        assert evaluated[key] == pytest.approx(first[key]), key
    assert (out / "predictions.png").read_bytes()[:8] == PNG


def test_predict_writes_instances(trained, tmp_path, capsys):
    rng = numpy.random.default_rng(0)
    path = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 255, (48, 80, 3), dtype=numpy.uint8)).save(path)
    out = tmp_path / "pred"
    argv = ["predict", "maskrcnn", "--checkpoint", str(trained / "checkpoint.npz"), str(path),
            "--out", str(out), "--score-threshold", "0"]
    assert main(argv) == 0
    found = json.loads((out / "photo_boxes.json").read_text())
    instances = numpy.asarray(Image.open(out / "photo_instances.png"))
    assert instances.shape == (48, 80)  # the photo's own size
    assert instances.max() <= len(found)
    assert (out / "photo_boxes.png").read_bytes()[:8] == PNG
    assert "photo_instances.png" in capsys.readouterr().out


def test_batch_targets_carry_the_instance_masks():
    data = ShapesDataset("train", num_images=2, size=64)
    batch = next(iter(DataLoader(data, batch_size=2)))
    targets = engine.batch_targets(batch)
    for t, sample in zip(targets, (data[0], data[1])):
        assert t["masks"].dtype == bool and t["masks"].shape == (len(t["boxes"]), 64, 64)
        numpy.testing.assert_array_equal(t["masks"], sample["instance_masks"])


def test_evaluate_detection_scores_masks_when_the_model_gives_them():
    """A model that returns the true boxes and masks scores 1.0 on both."""
    data = ShapesDataset("val", num_images=3, size=64)
    loader = DataLoader(data, batch_size=3)

    class Oracle:
        task, training = "detection", False

        def eval(self):
            return self

        def train(self, mode=True):
            return self

        def __call__(self, images):
            return [{"boxes": s["boxes"], "labels": s["labels"],
                     "scores": numpy.ones(len(s["boxes"]), numpy.float32),
                     "masks": s["instance_masks"]} for s in (data[0], data[1], data[2])]

    scores = engine.evaluate_detection(Oracle(), loader)
    assert scores["bbox_map"] == pytest.approx(1.0) and scores["segm_map"] == pytest.approx(1.0)
