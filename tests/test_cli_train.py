"""`tinyseg train`, `eval` and `predict` end to end, on tiny settings, and their errors.

The demo's run is tested in tests/test_cli.py, the detectors' runs in
tests/test_detection_training.py.
"""

from __future__ import annotations

import json

import numpy
import pytest
from clicheck import error_line
from PIL import Image

from tinyseg import backend
from tinyseg.cli import build_parser, main
from tinyseg.data import ShapesDataset
from tinyseg.models import MODELS

SEGMENTATION = [m for m in MODELS if getattr(MODELS[m], "task", "segmentation") == "segmentation"]
TINY = ["--epochs", "1", "--batch-size", "4", "--image-size", "32", "--train-images", "4",
        "--val-images", "4", "--no-progress"]
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A U-Net trained for one tiny epoch: its output folder."""
    out = tmp_path_factory.mktemp("unet")
    assert main(["train", "unet", "--out", str(out), *TINY]) == 0
    return out


def test_train_writes_the_four_files(trained):
    metrics = json.loads((trained / "metrics.json").read_text())
    for key in ("miou", "pixel_accuracy", "dice", "per_class_iou", "train_seconds", "epochs",
                "model"):
        assert key in metrics, key
    assert metrics["model"] == "unet" and metrics["epochs"] == 1
    assert metrics["image_size"] == 32 and metrics["train_images"] == 4
    assert (trained / "predictions.png").read_bytes()[:8] == PNG
    assert (trained / "history.csv").read_text().startswith("epoch,train_loss,val_loss,miou")
    assert (trained / "checkpoint.npz").stat().st_size > 0


@pytest.mark.parametrize("model", [m for m in SEGMENTATION if m != "unet"])
def test_every_model_trains_from_the_command_line(model, tmp_path, capsys):
    assert main(["train", model, "--out", str(tmp_path), *TINY]) == 0
    assert json.loads((tmp_path / "metrics.json").read_text())["model"] == model
    assert "mIoU" in capsys.readouterr().out


def test_train_default_out_is_runs_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "fcn32s", *TINY]) == 0
    assert (tmp_path / "runs" / "fcn32s" / "metrics.json").exists()


class _MixedSizes:
    """Scenes of two sizes in one split, as photos on disk are: the loader must resize them."""

    def __init__(self, split, n):
        self.parts = [ShapesDataset(split, num_images=n, size=(32, 48)),
                      ShapesDataset(split, num_images=n, size=(40, 36), seed=7)]
        self.classes = self.parts[0].classes

    def __len__(self):
        return sum(len(p) for p in self.parts)

    def __getitem__(self, i):
        part, j = self.parts[i % 2], i // 2
        return dict(part[j], id=f"{part[j]['id']}-{i % 2}")


@pytest.fixture(scope="module")
def voc_folder(tmp_path_factory):
    """A VOC-style folder whose images have two different sizes in each split."""
    from tinyseg.data import export_voc

    return export_voc(tmp_path_factory.mktemp("voc") / "voc",
                      {"train": _MixedSizes("train", 2), "val": _MixedSizes("val", 1)})


@pytest.mark.parametrize("model", SEGMENTATION)
def test_every_model_trains_on_a_voc_folder_of_mixed_sizes(model, voc_folder, tmp_path):
    out = tmp_path / "run"
    assert main(["train", model, "--data", str(voc_folder), "--out", str(out), *TINY]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data"] == str(voc_folder) and metrics["val_images"] == 2
    assert metrics["classes"] == ["background", "square", "circle", "triangle"]
    assert (out / "predictions.png").read_bytes()[:8] == PNG
    # and the checkpoint scores on the same folder
    assert main(["eval", model, "--checkpoint", str(out / "checkpoint.npz"),
                 "--data", str(voc_folder)]) == 0


def test_train_resume(trained, tmp_path):
    out = tmp_path / "more"
    argv = ["train", "unet", "--out", str(out), "--resume", str(trained / "checkpoint.npz"),
            *TINY, "--epochs", "2"]  # the last --epochs wins
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == 2
    assert (out / "history.csv").read_text().count("\n") == 3  # header + 2 epochs


def test_eval_prints_and_writes_the_same_scores(trained, tmp_path, capsys):
    out = tmp_path / "eval"
    argv = ["eval", "unet", "--checkpoint", str(trained / "checkpoint.npz"), "--out", str(out),
            "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "mIoU" in printed and "pixel accuracy" in printed and "square" in printed
    evaluated = json.loads((out / "metrics.json").read_text())
    trained_metrics = json.loads((trained / "metrics.json").read_text())
    assert evaluated["miou"] == pytest.approx(trained_metrics["miou"])
    assert evaluated["model"] == "unet" and evaluated["epochs"] == 1


def test_predict_writes_mask_and_overlay(trained, tmp_path, capsys):
    rng = numpy.random.default_rng(0)
    paths = []
    for name, size in (("a.png", (40, 50)), ("b.jpg", (32, 32))):
        path = tmp_path / name
        Image.fromarray(rng.integers(0, 255, size + (3,), dtype=numpy.uint8)).save(path)
        paths.append(str(path))
    out = tmp_path / "pred"
    argv = ["predict", "unet", "--checkpoint", str(trained / "checkpoint.npz"), *paths,
            "--out", str(out)]
    assert main(argv) == 0
    mask = Image.open(out / "a_mask.png")
    assert mask.mode == "P" and mask.size == (50, 40)
    assert numpy.asarray(mask).max() < 4
    assert Image.open(out / "a_overlay.png").size == (50, 40)
    assert (out / "b_mask.png").exists() and (out / "b_overlay.png").exists()
    assert "a_mask.png" in capsys.readouterr().out


def test_train_parser_defaults():
    args = build_parser().parse_args(["train", "deeplab"])
    # None: not asked for (a new run then uses shapes and seed 0; a resumed one the checkpoint's)
    assert (args.model, args.data, args.out, args.seed, args.device, args.overwrite) == (
        "deeplab", None, None, None, "cpu", False)
    assert args.epochs is None and args.lr is None and args.batch_size is None


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["train"], "MODEL"),
        (["train", "resnet"], "invalid choice: 'resnet'"),
        (["train", "unet", "--epochs", "x"], "--epochs"),
        (["train", "unet", "--batch-size", "0"], "--batch-size"),
        (["train", "unet", "--lr", "-1"], "--lr"),
        (["train", "unet", "--bogus"], "--bogus"),
        (["train", "unet", "--device", "tpu"], "--device"),
        (["train", "unet", "--data", "/no/such/folder", *TINY], "/no/such/folder"),
        (["train", "unet", "--resume", "/no/such.npz", *TINY], "/no/such.npz"),
        (["eval", "unet"], "--checkpoint"),
        (["eval", "unet", "--checkpoint", "/no/such.npz"], "not found: /no/such.npz"),
        (["predict", "unet", "--checkpoint", "/no/such.npz", "x.png"], "/no/such.npz"),
        (["predict", "unet", "--checkpoint", "x.npz"], "IMAGE"),
        (["demo", "--epochs", "0"], "--epochs"),
    ],
)
def test_errors_are_one_line_with_status_2(argv, needle, capsys):
    assert main(argv) == 2
    assert needle in error_line(capsys)


def test_checkpoint_of_another_model_is_refused(trained, tmp_path, capsys):
    checkpoint = str(trained / "checkpoint.npz")
    assert main(["eval", "fcn8s", "--checkpoint", checkpoint]) == 2
    assert "holds a 'unet' model, not 'fcn8s'" in error_line(capsys)
    image = tmp_path / "x.png"
    Image.fromarray(numpy.zeros((8, 8, 3), numpy.uint8)).save(image)
    assert main(["predict", "segnet", "--checkpoint", checkpoint, str(image)]) == 2
    assert "holds a 'unet' model, not 'segnet'" in error_line(capsys)
    argv = ["train", "deeplab", "--resume", checkpoint, "--out", str(tmp_path / "r"), *TINY]
    assert main(argv) == 2
    assert "holds a 'unet' model, not 'deeplab'" in error_line(capsys)


def test_bad_files_are_one_line_errors(trained, tmp_path, capsys):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    assert main(["eval", "unet", "--checkpoint", str(junk)]) == 2
    assert "junk.npz" in error_line(capsys)
    text = tmp_path / "notes.png"
    text.write_text("hello")
    argv = ["predict", "unet", "--checkpoint", str(trained / "checkpoint.npz"), str(text)]
    assert main(argv) == 2
    assert "notes.png" in error_line(capsys)
    assert main(["predict", "unet", "--checkpoint", str(trained / "checkpoint.npz"),
                 str(tmp_path / "missing.png")]) == 2
    assert "missing.png" in error_line(capsys)


@pytest.mark.skipif(backend.gpu_available(), reason="a GPU is here")
def test_gpu_without_gpu_is_a_one_line_error(capsys):
    assert main(["train", "unet", "--device", "gpu", *TINY]) == 2
    assert "--device gpu" in error_line(capsys)


def test_a_diverged_run_exits_1_and_claims_nothing(tmp_path, capsys):
    out = tmp_path / "diverged"
    argv = ["train", "unet", "--lr", "1e30", "--epochs", "2", "--batch-size", "4",
            "--image-size", "32", "--train-images", "8", "--val-images", "4", "--no-progress",
            "--out", str(out)]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tinyseg: training failed: the ")
    assert "loss became" in err[0] and "checkpoint" in err[0]
    assert not (out / "metrics.json").exists() and not (out / "predictions.png").exists()


def test_resume_takes_the_run_settings_from_the_checkpoint(tmp_path, capsys):
    """The issue's scenario: a small run resumed with only --epochs keeps its small settings."""
    out = tmp_path / "small"
    assert main(["train", "unet", "--epochs", "1", "--train-images", "4", "--val-images", "4",
                 "--image-size", "32", "--batch-size", "4", "--out", str(out),
                 "--no-progress"]) == 0
    checkpoint = str(out / "checkpoint.npz")
    (out / ".tmp-killed.npz").write_bytes(b"half a save")  # what a SIGKILL mid-save leaves
    assert main(["train", "unet", "--epochs", "2", "--resume", checkpoint,
                 "--no-progress"]) == 0  # no --out: the checkpoint's own folder
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["epochs"], metrics["image_size"], metrics["train_images"],
            metrics["val_images"], metrics["batch_size"]) == (2, 32, 4, 4, 4)
    assert not (out / ".tmp-killed.npz").exists()
    assert (out / "history.csv").read_text().count("\n") == 3
    # the same value again is fine; another value is refused, naming the setting
    assert main(["train", "unet", "--epochs", "3", "--image-size", "32", "--resume", checkpoint,
                 "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["train", "unet", "--epochs", "4", "--image-size", "64", "--resume",
                 checkpoint]) == 2
    assert "--image-size 64 differs from the checkpoint's image_size 32" in error_line(capsys)
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 3  # untouched


def test_a_used_run_folder_needs_overwrite(tmp_path, capsys):
    out = tmp_path / "again"
    assert main(["train", "fcn32s", "--out", str(out), *TINY]) == 0
    assert main(["train", "fcn32s", "--out", str(out), *TINY]) == 2
    assert "is not empty" in error_line(capsys)
    assert main(["train", "fcn32s", "--out", str(out), "--overwrite", *TINY]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint.npz", "history.csv", "metrics.json", "predictions.png"]
