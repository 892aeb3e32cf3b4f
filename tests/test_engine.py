"""tinyseg.engine: the training loop, its files, checkpoints, resume and determinism.

Everything runs on tiny models (a few hundred to a few thousand weights) and a
handful of 32x32 or 64x64 scenes, so each test takes a second or two.
"""

from __future__ import annotations

import csv
import json

import numpy
import pytest

import tinyseg as ts
from tinyseg import backend, engine, nn, optim
from tinyseg.checkpoint import load_checkpoint
from tinyseg.data import DataLoader, ShapesDataset
from tinyseg.models import build_model
from tinyseg.recipes import Recipe

TINY = {
    "unet": {"depth": 1, "base_width": 4},
    "deeplab": {"widths": [4, 4, 8, 8, 8], "aspp_channels": 8},  # has dropout
}


def _recipe(model="unet", **changes):
    values = dict(model=model, model_options=TINY[model], epochs=2, batch_size=4, lr=1e-2,
                  image_size=32, train_images=8, val_images=4, augment=True)
    values.update(changes)
    return Recipe(**values)


def _quiet(*_):
    pass


def _loaders(n_train=8, n_val=4, size=32, batch_size=4, seed=0):
    train = ShapesDataset("train", num_images=n_train, size=size)
    val = ShapesDataset("val", num_images=n_val, size=size)
    return (DataLoader(train, batch_size, shuffle=True, seed=seed),
            DataLoader(val, batch_size, shuffle=False))


# ----- small pieces -----


def test_center_crop_takes_the_middle():
    target = numpy.arange(6 * 8).reshape(1, 6, 8)
    out = engine.center_crop(target, (2, 4))
    numpy.testing.assert_array_equal(out[0], target[0, 2:4, 2:6])
    assert engine.center_crop(target, (6, 8)) is target
    with pytest.raises(ValueError, match="larger"):
        engine.center_crop(target, (7, 8))


def test_segmentation_loss_adds_dice_and_ignores_255():
    rng = numpy.random.default_rng(0)
    logits = ts.tensor(rng.standard_normal((2, 3, 4, 4)), requires_grad=True)
    target = rng.integers(0, 3, (2, 4, 4))
    target[0, 0] = 255
    ce = engine.SegmentationLoss()(logits, target).item()
    both = engine.SegmentationLoss(dice_weight=0.5)(logits, target)
    assert both.item() > ce
    both.backward()
    assert logits.grad.shape == logits.shape


def test_batch_to_device_makes_a_tensor(xp):
    device = backend.device_of(xp.zeros(1))
    batch = {"image": numpy.zeros((1, 3, 2, 2), "float32"), "mask": numpy.zeros((1, 2, 2), int),
             "id": ["a"]}
    moved = engine.batch_to_device(batch, device)
    assert isinstance(moved["image"], ts.Tensor) and moved["image"].device == device
    assert backend.device_of(moved["mask"]) == device and moved["id"] == ["a"]


# ----- the loop -----


def test_trainer_loss_falls(tmp_path):
    nn.init.manual_seed(0)
    model = build_model("unet", num_classes=4, depth=1, base_width=4)
    train, val = _loaders(n_train=8, batch_size=8)
    opt = optim.Adam(model.parameters(), lr=3e-2)
    trainer = engine.Trainer(model, opt, engine.SegmentationLoss(), train, val, epochs=5,
                             out_dir=tmp_path, progress=False, log=_quiet)
    history = trainer.fit()
    losses = [row["train_loss"] for row in history]
    assert losses[-1] < 0.7 * losses[0], losses
    assert trainer.epoch == 5 and len(history) == 5
    assert (tmp_path / "history.csv").exists() and (tmp_path / "checkpoint.npz").exists()


def test_valid_padding_model_trains_on_cropped_targets():
    nn.init.manual_seed(0)
    model = build_model("unet", num_classes=4, depth=1, base_width=4, padding="valid")
    assert model.output_size(32, 32) != (32, 32)
    train, val = _loaders()
    trainer = engine.Trainer(model, optim.Adam(model.parameters(), lr=1e-2),
                             engine.SegmentationLoss(), train, val, epochs=1, progress=False,
                             log=_quiet)
    trainer.fit()
    assert 0.0 <= trainer.metrics["miou"] <= 1.0


def test_train_model_writes_the_design_files(tmp_path):
    out = tmp_path / "run"
    lines = []
    metrics = engine.train_model(_recipe(), out_dir=out, progress=False, log=lines.append)
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk == metrics
    for key in ("miou", "pixel_accuracy", "dice", "per_class_iou", "train_seconds", "epochs",
                "model"):
        assert key in metrics, key
    assert metrics["model"] == "unet" and metrics["epochs"] == 2
    assert len(metrics["per_class_iou"]) == 4
    assert (out / "predictions.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(out / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert set(engine.HISTORY_FIELDS) <= set(rows[0])
    arrays, config = load_checkpoint(out / "checkpoint.npz")  # no pickle needed
    assert config["model"] == "unet" and config["epoch"] == 2
    assert config["model_config"]["base_width"] == 4
    assert config["recipe"]["image_size"] == 32 and config["optimizer"]["type"] == "Adam"
    assert any(k.startswith(engine.OPTIMIZER_PREFIX) for k in arrays)
    assert any("epoch 2/2" in line for line in lines)


def test_evaluate_a_saved_checkpoint(tmp_path):
    metrics = engine.train_model(_recipe(epochs=1), out_dir=tmp_path, progress=False,
                                        log=_quiet)
    model, config = engine.load_model(tmp_path / "checkpoint.npz", expected="unet")
    assert not model.training and config["epoch"] == 1
    _, val = _loaders()
    scores = engine.evaluate(model, val)
    assert scores["miou"] == pytest.approx(metrics["miou"])
    again, _, _ = engine.evaluate_checkpoint(tmp_path / "checkpoint.npz", "unet", progress=False)
    assert again["miou"] == pytest.approx(metrics["miou"])
    with pytest.raises(ValueError, match="holds a 'unet' model, not 'fcn8s'"):
        engine.load_model(tmp_path / "checkpoint.npz", expected="fcn8s")


class _Interrupt(Exception):
    pass


def _stop_after(epoch):
    """A log function that interrupts the run after ``epoch`` (its checkpoint is saved)."""

    def log(line):
        if line.startswith(f"epoch {epoch}/"):
            raise _Interrupt

    return log


@pytest.mark.parametrize("model", ["unet", "deeplab"])
def test_resume_gives_the_same_run(tmp_path, model):
    """Epochs 1-3 at once == epoch 1, interrupted, resumed for 2-3 (shuffle, flips, dropout)."""
    recipe = _recipe(model, epochs=3)
    whole = engine.train_model(recipe, out_dir=tmp_path / "whole", progress=False,
                                      log=_quiet)
    with pytest.raises(_Interrupt):
        engine.train_model(recipe, out_dir=tmp_path / "part", progress=False,
                                  log=_stop_after(1))
    assert load_checkpoint(tmp_path / "part" / "checkpoint.npz")[1]["epoch"] == 1
    resumed = engine.train_model(recipe, out_dir=tmp_path / "resumed", progress=False,
                                        log=_quiet, resume=tmp_path / "part" / "checkpoint.npz")
    assert resumed["epochs"] == 3
    for key in ("miou", "pixel_accuracy", "dice", "train_loss", "val_loss"):
        assert resumed[key] == whole[key], key
    a, config_a = load_checkpoint(tmp_path / "whole" / "checkpoint.npz")
    b, config_b = load_checkpoint(tmp_path / "resumed" / "checkpoint.npz")
    assert a.keys() == b.keys()
    for key in a:
        numpy.testing.assert_array_equal(a[key], b[key], err_msg=key)
    strip = [{k: v for k, v in row.items() if k != "seconds"} for row in config_a["history"]]
    assert strip == [{k: v for k, v in row.items() if k != "seconds"}
                     for row in config_b["history"]]


def test_resume_with_more_epochs_continues_the_position(tmp_path):
    engine.train_model(_recipe(epochs=1), out_dir=tmp_path / "a", progress=False,
                              log=_quiet)
    more = engine.train_model(_recipe(epochs=2), out_dir=tmp_path / "b", progress=False,
                                     log=_quiet, resume=tmp_path / "a" / "checkpoint.npz")
    _, config = load_checkpoint(tmp_path / "b" / "checkpoint.npz")
    assert more["epochs"] == 2 and config["scheduler"]["last_epoch"] == 2
    assert [row["epoch"] for row in config["history"]] == [1, 2]
    # epoch 2 ran at the stretched schedule's lr: half way down the cosine of T_max=2
    assert config["history"][1]["lr"] == pytest.approx(1e-2 * (0.02 + 0.98 * 0.5))


def test_same_seed_same_numbers_other_seed_other_numbers(tmp_path):
    runs = [engine.train_model(_recipe(epochs=1), out_dir=tmp_path / str(i), seed=s,
                                      progress=False, log=_quiet)
            for i, s in enumerate([3, 3, 4])]
    assert runs[0]["train_loss"] == runs[1]["train_loss"]
    assert runs[0]["train_loss"] != runs[2]["train_loss"]


def test_resume_of_another_model_is_refused(tmp_path):
    engine.train_model(_recipe(epochs=1), out_dir=tmp_path / "u", progress=False,
                              log=_quiet)
    with pytest.raises(ValueError, match="holds a 'unet' model, not 'deeplab'"):
        engine.train_model(_recipe("deeplab", epochs=1), out_dir=tmp_path / "d",
                                  progress=False, log=_quiet,
                                  resume=tmp_path / "u" / "checkpoint.npz")


# ----- optimiser and schedule state (used by resume) -----


@pytest.mark.parametrize("make", [
    lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
    lambda ps: optim.Adam(ps, lr=0.05, weight_decay=1e-3),
    lambda ps: optim.AdamW(ps, lr=0.05),
])
def test_optimizer_state_round_trip_continues_identically(xp, make):
    rng = numpy.random.default_rng(0)
    grads = [xp.asarray(rng.standard_normal(3)) for _ in range(4)]

    def fresh():
        p = nn.Parameter(xp.asarray([1.0, -2.0, 0.5]))
        return p, make([p])

    p, opt = fresh()
    for g in grads:
        p.grad = g
        opt.step()
    expected = backend.to_numpy(p.data)

    p, opt = fresh()
    for g in grads[:2]:
        p.grad = g
        opt.step()
    state = opt.state_dict()
    saved = {"data": backend.to_numpy(p.data).copy()}
    # through the checkpoint's split: arrays to the host, the rest through JSON
    arrays, meta = engine.split_optimizer_state(state)
    arrays = {k: backend.to_numpy(v).copy() for k, v in arrays.items()}
    meta = json.loads(json.dumps(meta))
    p2, opt2 = fresh()
    p2.data[...] = xp.asarray(saved["data"])
    opt2.load_state_dict(engine.join_optimizer_state(arrays, meta))
    for g in grads[2:]:
        p2.grad = g
        opt2.step()
    numpy.testing.assert_array_equal(backend.to_numpy(p2.data), expected)


def test_optimizer_load_state_dict_rejects_a_mismatch():
    p = nn.Parameter(numpy.zeros(3))
    adam, sgd = optim.Adam([p]), optim.SGD([p], lr=0.1)
    with pytest.raises(ValueError, match="'Adam'"):
        sgd.load_state_dict(adam.state_dict())
    two = optim.Adam([nn.Parameter(numpy.zeros(3)), nn.Parameter(numpy.zeros(2))])
    with pytest.raises(ValueError, match="parameter entries"):
        two.load_state_dict(adam.state_dict())


def test_scheduler_state_round_trip():
    p = nn.Parameter(numpy.zeros(1))
    opt = optim.SGD([p], lr=1.0)
    sched = optim.CosineAnnealingLR(opt, T_max=10, eta_min=0.1)
    for _ in range(3):
        sched.step()
    state = json.loads(json.dumps(sched.state_dict()))
    opt2 = optim.SGD([p], lr=1.0)
    sched2 = optim.CosineAnnealingLR(opt2, T_max=10, eta_min=0.1)
    sched2.load_state_dict(state)
    assert opt2.lr == opt.lr and sched2.last_epoch == 3
    sched.step()
    sched2.step()
    assert opt2.lr == opt.lr


# ----- the loop asks a task object: any object with the Task methods plugs in -----


class _MeanColourTask:
    """A made-up task: predict each image's mean colour (3 numbers) with a 1x1 conv + mean."""

    name = "mean-colour"

    def __init__(self):
        self.calls = []

    def training_loss(self, model, batch):
        self.calls.append("training_loss")
        x = batch["image"]
        target = ts.tensor(x.data.mean(axis=(2, 3)))
        pred = model(x).mean(dim=(2, 3))
        loss = ((pred - target) ** 2).mean()
        return loss, {"loss_mse": loss.data}

    def evaluate(self, model, loader, device="cpu", progress=False):
        self.calls.append("evaluate")
        return {"colour_error": 0.5}

    def history_entries(self, scores):
        return {"colour_error": scores["colour_error"]}

    def history_fields(self, history):
        return ["epoch", "train_loss", "colour_error", "train_loss_mse", "lr", "seconds"]

    def summary(self, row):
        return f"  colour error {row['colour_error']:.2f}"


def test_a_custom_task_object_drives_the_loop(tmp_path, xp):
    device = backend.device_of(xp.zeros(1))
    nn.init.manual_seed(0)
    model = nn.Conv2d(3, 3, 1)
    train, val = _loaders(n_train=8, n_val=4, size=32)
    task = _MeanColourTask()
    lines = []
    trainer = engine.Trainer(model, optim.Adam(model.parameters(), lr=5e-2), None, train, val,
                             task=task, epochs=3, device=device, out_dir=tmp_path,
                             progress=False, log=lines.append)
    history = trainer.fit()
    assert task.calls.count("training_loss") == 3 * 2 and task.calls.count("evaluate") == 3
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert "colour error 0.50" in lines[0] and lines[0].startswith("epoch 1/3  train_loss")
    with open(tmp_path / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == task.history_fields(history) and rows[0]["colour_error"] == "0.5"
    assert float(rows[-1]["train_loss_mse"]) == pytest.approx(history[-1]["train_loss"])


def test_task_for_reads_the_model_task_attribute():
    seg = build_model("unet", **TINY["unet"])
    assert isinstance(engine.task_for(seg), engine.SegmentationTask)
    assert isinstance(engine.task_for(build_model("yolo")), engine.DetectionTask)
    seg.task = "keypoints"
    with pytest.raises(ValueError, match="model.task"):
        engine.task_for(seg)


RCNN_TINY = {"widths": [4, 8], "depths": [1, 1], "anchor_sizes": [8, 16], "aspect_ratios": [1.0],
             "representation_size": 8, "mask_channels": 4, "mask_convs": 1, "mask_roi_size": 4,
             "box_roi_size": 3, "rpn_pre_nms_top_n": [40, 40], "rpn_post_nms_top_n": [12, 8],
             "rpn_batch_size_per_image": 16, "box_batch_size_per_image": 8}


@pytest.mark.parametrize("model", ["fasterrcnn", "maskrcnn"])
def test_resume_gives_the_same_run_for_rcnn(tmp_path, model):
    """The samplers' draws follow (seed, epoch, step), so R-CNN resumes like the others."""
    recipe = Recipe(model=model, model_options=RCNN_TINY, epochs=2, batch_size=2, lr=1e-3,
                    image_size=32, train_images=4, val_images=2)
    whole = engine.train_model(recipe, out_dir=tmp_path / "whole", progress=False, log=_quiet)
    with pytest.raises(_Interrupt):
        engine.train_model(recipe, out_dir=tmp_path / "part", progress=False,
                           log=_stop_after(1))
    resumed = engine.train_model(recipe, out_dir=tmp_path / "resumed", progress=False,
                                 log=_quiet, resume=tmp_path / "part" / "checkpoint.npz")
    machine = {"seconds", "train_seconds", "seconds_per_epoch", "peak_rss_mb"}
    assert {k: v for k, v in resumed.items() if k not in machine} == \
        {k: v for k, v in whole.items() if k not in machine}
    a, _ = load_checkpoint(tmp_path / "whole" / "checkpoint.npz")
    b, _ = load_checkpoint(tmp_path / "resumed" / "checkpoint.npz")
    for key in a:
        numpy.testing.assert_array_equal(a[key], b[key], err_msg=key)


# ----- divergence, the run folder and the order of its files -----


class _NaNAfter:
    """A segmentation loss that turns NaN once it has been called ``calls`` times."""

    def __init__(self, calls):
        self.calls, self.loss = calls, engine.SegmentationLoss()

    def __call__(self, logits, target):
        self.calls -= 1
        loss = self.loss(logits, target)
        return loss * float("nan") if self.calls < 0 else loss


def _nan_trainer(tmp_path, loss_fn, epochs=2):
    nn.init.manual_seed(0)
    model = build_model("unet", num_classes=4, depth=1, base_width=4)
    train, val = _loaders(n_train=4, n_val=4, batch_size=4)
    return engine.Trainer(model, optim.Adam(model.parameters(), lr=1e-2), loss_fn, train, val,
                          epochs=epochs, out_dir=tmp_path, progress=False, log=_quiet)


@pytest.mark.parametrize("calls, which", [(2, "training"), (1, "validation")])
def test_a_diverged_epoch_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, calls,
                                                                           which):
    """Epoch 1 = one training step and one validation batch; then the loss turns NaN: in the
    training step of epoch 2 (after 2 calls) or in the validation of epoch 1 (after 1)."""
    trainer = _nan_trainer(tmp_path, _NaNAfter(calls))
    with pytest.raises(FloatingPointError, match=f"the {which} loss became nan"):
        trainer.fit()
    saved = tmp_path / "checkpoint.npz"
    if which == "training":  # epoch 1 was good: its checkpoint and history stay
        arrays, config = load_checkpoint(saved)
        assert config["epoch"] == 1 and all(numpy.isfinite(v).all() for v in arrays.values())
        assert (tmp_path / "history.csv").read_text().count("\n") == 2
    else:  # epoch 1 itself diverged: nothing was saved
        assert not saved.exists()


def test_train_model_of_a_diverged_run_writes_no_metrics(tmp_path):
    with pytest.raises(FloatingPointError, match=r"loss became (nan|inf) in epoch \d; lower the "
                                                 r"lr; (no epoch finished|.*holds the last)"):
        engine.train_model(_recipe(lr=1e30, epochs=2), out_dir=tmp_path / "r", progress=False,
                           log=_quiet)
    assert not (tmp_path / "r" / "metrics.json").exists()


def test_run_files_are_written_atomically_in_order(tmp_path, monkeypatch):
    import os

    replaced = []
    real = os.replace

    def record(src, dst):
        assert os.path.basename(src).startswith(".tmp-")
        replaced.append(os.path.basename(dst))
        real(src, dst)

    monkeypatch.setattr(os, "replace", record)
    engine.train_model(_recipe(epochs=2), out_dir=tmp_path / "r", progress=False, log=_quiet)
    assert replaced == ["checkpoint.npz", "history.csv"] * 2 + ["predictions.png",
                                                                 "metrics.json"]
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == sorted(engine.RUN_FILES)


def test_train_model_refuses_a_used_folder_unless_told(tmp_path):
    out = tmp_path / "r"
    engine.train_model(_recipe(epochs=1), out_dir=out, progress=False, log=_quiet)
    with pytest.raises(FileExistsError, match=r"run folder .*r is not empty \(checkpoint\.npz"):
        engine.train_model(_recipe(epochs=1), out_dir=out, progress=False, log=_quiet)
    (out / ".tmp-orphan.npz").write_bytes(b"half")
    (out / "notes.txt").write_text("kept")
    engine.train_model(_recipe(epochs=1, lr=2e-2), out_dir=out, progress=False, log=_quiet,
                       overwrite=True)
    assert load_checkpoint(out / "checkpoint.npz")[1]["recipe"]["lr"] == 2e-2
    assert sorted(p.name for p in out.iterdir()) == sorted([*engine.RUN_FILES, "notes.txt"])
    # a resume continues in its own folder: allowed, and metrics.json is that of the new end
    more = engine.train_model(_recipe(epochs=2, lr=2e-2), out_dir=out, progress=False,
                              log=_quiet, resume=out / "checkpoint.npz")
    assert more["epochs"] == 2 and json.loads((out / "metrics.json").read_text())["epochs"] == 2


def test_resume_settings_come_from_the_checkpoint(tmp_path):
    engine.train_model(_recipe(epochs=1), out_dir=tmp_path, progress=False, log=_quiet)
    recipe, seed, data = engine.resume_settings(tmp_path / "checkpoint.npz", "unet", epochs=4)
    assert (recipe.epochs, recipe.image_size, recipe.train_images, seed, data) == \
        (4, 32, 8, 0, "shapes")
    assert recipe.model_options == TINY["unet"]
    with pytest.raises(ValueError, match=r"--batch-size 8 differs from the checkpoint's "
                                         r"batch_size 4"):
        engine.resume_settings(tmp_path / "checkpoint.npz", "unet", batch_size=8)
