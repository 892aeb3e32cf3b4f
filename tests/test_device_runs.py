"""Every model trains, evaluates and predicts with ``--device gpu`` on the device under test.

Without a GPU the device is the strict simulated one (``tests/strict_device.py``): a hidden
host/device mix anywhere in the engine, a model, the metrics or the pictures fails here as it
would on a GPU.
"""

from __future__ import annotations

import json

import numpy
import pytest
from conftest import DEVICE_BACKEND
from PIL import Image

from tinyseg.cli import main
from tinyseg.models import MODELS

pytestmark = [pytest.mark.gpu, DEVICE_BACKEND]

SEGMENTATION = ["--image-size", "32"]
DETECTION = ["--image-size", "128"]
TINY = ["--epochs", "1", "--batch-size", "2", "--train-images", "2", "--val-images", "2",
        "--no-progress", "--device", "gpu"]


def _size(model):
    return DETECTION if getattr(MODELS[model], "task", "segmentation") == "detection" \
        else SEGMENTATION


@pytest.mark.parametrize("model", sorted(MODELS))
def test_train_eval_predict_on_the_device(model, tmp_path):
    out = tmp_path / "run"
    assert main(["train", model, "--out", str(out), *TINY, *_size(model)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert all(numpy.isfinite(v) for v in metrics.values() if isinstance(v, float))
    ckpt = str(out / "checkpoint.npz")
    assert main(["eval", model, "--checkpoint", ckpt, "--out", str(tmp_path / "eval"),
                 "--device", "gpu", "--val-images", "2", "--no-progress"]) == 0
    side = int(_size(model)[1])
    image = tmp_path / "photo.png"
    Image.fromarray(numpy.random.default_rng(0).integers(0, 255, (side, side, 3),
                                                         dtype=numpy.uint8)).save(image)
    assert main(["predict", model, "--checkpoint", ckpt, "--device", "gpu", str(image)]) == 0
