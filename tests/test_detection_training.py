"""Detectors in the one training engine and `tinyseg train/eval/predict`, on tiny settings.

The segmentation side of the same commands is tested in tests/test_cli_train.py.
"""

from __future__ import annotations

import csv
import json

import numpy
import pytest
from clicheck import error_line
from PIL import Image

import tinyseg as ts
from tinyseg import engine, nn, optim
from tinyseg.cli import main
from tinyseg.data import DataLoader, ShapesDataset
from tinyseg.metrics import mean_average_precision
from tinyseg.models import MODELS, build_model

DETECTORS = [m for m in MODELS if getattr(MODELS[m], "task", "segmentation") == "detection"]
TINY = ["--epochs", "1", "--batch-size", "4", "--image-size", "128", "--train-images", "4",
        "--val-images", "4", "--no-progress"]
PNG = b"\x89PNG\r\n\x1a\n"
MAP_KEYS = ("map", "map_50", "map_75", "map_small", "map_medium", "map_large", "mar_1", "mar_10",
            "mar_100")


def test_the_detectors_are_registered():
    assert {"yolo", "retinanet", "classloc", "fasterrcnn", "maskrcnn"} <= set(DETECTORS)


@pytest.fixture(scope="module")
def coco_folder(tmp_path_factory):
    """A COCO-style folder of 128x128 scenes (instances as RLE), as a user's would be."""
    from tinyseg.data import export_coco

    return export_coco(tmp_path_factory.mktemp("coco") / "coco", {
        "train": ShapesDataset("train", num_images=4, size=128),
        "val": ShapesDataset("val", num_images=3, size=128),
    })


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """YOLO trained for one tiny epoch on the built-in scenes: its output folder."""
    out = tmp_path_factory.mktemp("yolo")
    assert main(["train", "yolo", "--out", str(out), *TINY]) == 0
    return out


@pytest.mark.parametrize("model", DETECTORS)
def test_train_writes_box_metrics_and_the_files(model, tmp_path, capsys):
    out = tmp_path / model
    assert main(["train", model, "--out", str(out), *TINY]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("bbox_map", "bbox_map_50", "bbox_map_75", "train_seconds", "epochs", "model",
                "peak_rss_mb", "seconds_per_epoch"):
        assert key in metrics, key
    assert metrics["model"] == model and metrics["epochs"] == 1
    assert all(-1.0 <= metrics[f"bbox_{k}"] <= 1.0 for k in MAP_KEYS)
    assert "miou" not in metrics
    assert (out / "predictions.png").read_bytes()[:8] == PNG
    with open(out / "history.csv") as f:
        rows = list(csv.DictReader(f))
    # the box columns in order (Mask R-CNN puts its mask mAPs before "lr": test_rcnn_cli.py)
    assert [k for k in rows[0] if k in engine.DETECTION_HISTORY_FIELDS] == \
        list(engine.DETECTION_HISTORY_FIELDS)
    assert any(k.startswith("train_loss_") for k in rows[0])  # the model's loss terms
    assert len(rows) == 1 and float(rows[0]["train_loss"]) > 0
    assert "bbox mAP" in capsys.readouterr().out


def test_detectors_train_and_evaluate_on_a_coco_folder(coco_folder, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "retinanet", "--data", str(coco_folder), "--out", str(out),
                 *TINY]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data"] == str(coco_folder) and metrics["val_images"] == 3
    assert metrics["classes"] == ["background", "square", "circle", "triangle"]
    capsys.readouterr()
    evaluated = tmp_path / "eval"
    assert main(["eval", "retinanet", "--checkpoint", str(out / "checkpoint.npz"), "--data",
                 str(coco_folder), "--out", str(evaluated), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "bbox_map_50" in printed
    again = json.loads((evaluated / "metrics.json").read_text())
    assert again["bbox_map"] == pytest.approx(metrics["bbox_map"])
    assert (evaluated / "predictions.png").read_bytes()[:8] == PNG


def test_a_detector_refuses_a_voc_segmentation_folder(tmp_path, capsys):
    from tinyseg.data import export_voc

    voc = export_voc(tmp_path / "voc", {"train": ShapesDataset("train", num_images=2, size=128),
                                        "val": ShapesDataset("val", num_images=2, size=128)})
    assert main(["train", "yolo", "--data", str(voc), "--out", str(tmp_path / "o"),
                 *TINY]) == 2
    line = error_line(capsys)
    assert "needs boxes" in line and "COCO-style" in line


def test_eval_of_the_trained_checkpoint_matches_training(trained, tmp_path):
    out = tmp_path / "eval"
    assert main(["eval", "yolo", "--checkpoint", str(trained / "checkpoint.npz"), "--out",
                 str(out), "--no-progress"]) == 0
    evaluated = json.loads((out / "metrics.json").read_text())
    first = json.loads((trained / "metrics.json").read_text())
    for key in ("bbox_map", "bbox_map_50", "bbox_map_75"):
        assert evaluated[key] == pytest.approx(first[key]), key


def test_predict_draws_boxes_and_lists_them(trained, tmp_path, capsys):
    rng = numpy.random.default_rng(0)
    path = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 255, (48, 80, 3), dtype=numpy.uint8)).save(path)
    out = tmp_path / "pred"
    argv = ["predict", "yolo", "--checkpoint", str(trained / "checkpoint.npz"), str(path),
            "--out", str(out), "--score-threshold", "0"]
    assert main(argv) == 0
    assert (out / "photo_boxes.png").read_bytes()[:8] == PNG
    found = json.loads((out / "photo_boxes.json").read_text())
    assert isinstance(found, list)
    for item in found:  # boxes in the photo's own pixels (80 wide, 48 high)
        x1, y1, x2, y2 = item["box"]
        assert -1 <= x1 <= x2 <= 81 and -1 <= y1 <= y2 <= 49
        assert item["name"] in ("square", "circle", "triangle") and 0 <= item["score"] <= 1
    assert "photo_boxes.png" in capsys.readouterr().out


def test_predict_score_threshold_must_be_a_fraction(trained, tmp_path, capsys):
    argv = ["predict", "yolo", "--checkpoint", str(trained / "checkpoint.npz"), "x.png",
            "--score-threshold", "2"]
    assert main(argv) == 2
    assert "--score-threshold" in error_line(capsys)


# ----- the engine, directly -----


def _loaders(n=4, size=128, batch_size=2):
    data = ShapesDataset("train", num_images=n, size=size)
    return DataLoader(data, batch_size=batch_size, shuffle=True), DataLoader(data, batch_size=2)


def test_trainer_sums_the_models_loss_terms():
    nn.init.manual_seed(0)
    model = build_model("retinanet")
    train, _ = _loaders()
    trainer = engine.Trainer(model, optim.Adam(model.parameters(), lr=1e-3), None, train,
                             progress=False, log=None)
    batch = engine.batch_to_device(next(iter(train)), "cpu")
    loss, terms = trainer.training_loss(batch)
    assert set(terms) == {"loss_cls", "loss_box"}
    assert loss.item() == pytest.approx(sum(terms.values()), rel=1e-5)


def test_trainer_needs_a_loss_for_a_segmentation_model():
    model = build_model("unet", base_width=4, depth=1)
    train, _ = _loaders()
    with pytest.raises(ValueError, match="loss_fn"):
        engine.Trainer(model, optim.Adam(model.parameters()), None, train)


def test_evaluate_detection_is_mean_average_precision_of_the_predictions():
    nn.init.manual_seed(1)
    model = build_model("yolo")
    _, val = _loaders(n=6)
    scores = engine.evaluate(model, val)  # dispatches on model.task
    assert set(scores) == {f"bbox_{k}" for k in MAP_KEYS}
    images = numpy.stack([s["image"] for s in val.dataset])
    preds = engine.predict_detections(model, images, batch_size=4)
    targets = [{"boxes": s["boxes"], "labels": s["labels"]} for s in val.dataset]
    expected = mean_average_precision(preds, targets)
    for key in MAP_KEYS:
        assert scores[f"bbox_{key}"] == pytest.approx(expected[key], abs=1e-12), key
    assert model.training  # put back in the mode it was in


def test_predict_detections_returns_host_dicts_in_eval_mode():
    nn.init.manual_seed(2)
    model = build_model("retinanet").train()
    images = numpy.random.default_rng(0).random((3, 3, 128, 128)).astype(numpy.float32)
    found = engine.predict_detections(model, images, batch_size=2)
    assert len(found) == 3 and model.training
    for d in found:
        assert set(d) == {"boxes", "scores", "labels"}
        assert isinstance(d["boxes"], numpy.ndarray) and d["boxes"].shape[1:] == (4,)


def test_batch_targets_are_host_arrays_per_image():
    train, _ = _loaders(n=3, batch_size=3)
    batch = next(iter(train))
    targets = engine.batch_targets(batch)
    assert len(targets) == 3
    for t, boxes in zip(targets, batch["boxes"]):
        assert t["boxes"].dtype == numpy.float32 and t["boxes"].shape == boxes.shape
        assert t["labels"].dtype == numpy.int64


def test_a_short_run_lowers_the_detection_loss():
    """Ten steps on one batch: the summed loss must fall (the loop really trains a detector)."""
    nn.init.manual_seed(0)
    model = build_model("retinanet")
    opt = optim.Adam(model.parameters(), lr=3e-3)
    batch = engine.batch_to_device(next(iter(_loaders(n=2)[0])), "cpu")
    trainer = engine.Trainer(model, opt, None, [batch], progress=False, log=None)
    first = trainer.training_loss(batch)[0].item()
    for _ in range(10):
        loss, _ = trainer.training_loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert trainer.training_loss(batch)[0].item() < 0.7 * first
    assert isinstance(loss, ts.Tensor)
