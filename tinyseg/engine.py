"""Training and evaluation: one loop for every model.

The loop every model in tinyseg trains with is short::

    for epoch in range(start, epochs):
        seed_everything(seed, epoch)         # dropout masks, augmentation: fixed per epoch
        train_loader.set_epoch(epoch)        # a new shuffle, also fixed by (seed, epoch)
        model.train()
        for batch in train_loader:           # host arrays
            batch = batch_to_device(batch, device)   # the one explicit copy
            loss = loss_fn(model(images), targets)
            optimizer.zero_grad(); loss.backward(); optimizer.step()
        scheduler.step()                     # once per epoch
        metrics = evaluate(model, val_loader)          # eval mode, no_grad
        history.append(...); write history.csv; save checkpoint.npz

``Trainer`` holds that loop; ``evaluate`` and ``predict`` are plain functions a
notebook can call on their own; ``train_model`` wires a recipe
(``tinyseg.recipes``) to data, model, optimiser and files: it is what
``tinyseg train`` runs.

Two kinds of model share the loop. What differs is three lines of it, chosen by
the model's ``task`` attribute:

============  =====================================  ===================================
step          segmentation (the default)             detection (``task = "detection"``)
============  =====================================  ===================================
loss          ``loss_fn(model(images), mask)``       ``sum(model(images, targets).values())``
evaluate      confusion matrix -> mIoU, Dice         detections -> COCO mAP (``bbox_map``...)
picture       image / truth / predicted labels       image with true / predicted boxes
============  =====================================  ===================================

A detection model computes its own loss: only it knows how its outputs meet the
boxes (a YOLO grid cell, a matched anchor). The targets stay on the host, as a
list of ``{"boxes", "labels"}`` per image; the model moves what it needs.

Determinism. Every random choice is a function of ``(seed, epoch)``: the
weights come from ``nn.init.manual_seed(seed)``, the shuffle and augmentation
from the loader's seed and ``set_epoch``, dropout from the array module's global
stream, reseeded at the start of each epoch. So the same command gives the same
numbers, and a run resumed from the checkpoint of epoch ``e`` continues exactly
as the uninterrupted run would have.

Checkpoints (``checkpoint.npz``, written after every epoch, no pickle) hold the
model's state dict, the optimiser's buffers under ``__optimizer__.<i>.<name>``,
and a JSON config::

    {"model": "unet", "model_config": {...}, "recipe": {...}, "epoch": 3,
     "seed": 0, "classes": [...], "optimizer": {...}, "scheduler": {...},
     "history": [...], "metrics": {...}}

Models whose output is smaller than their input (U-Net with valid padding)
are scored on the centre of the target: ``center_crop`` cuts the label map to
the logits' size, the same centre the network sees.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from . import backend
from . import checkpoint as ckpt
from . import functional as F
from .autograd import no_grad, tensor
from .metrics import SegmentationMeter
from .models.blocks import center_crop

OPTIMIZER_PREFIX = "__optimizer__."
HISTORY_FIELDS = (
    "epoch", "train_loss", "val_loss", "miou", "pixel_accuracy", "dice", "lr", "seconds",
)
# Detection runs have no validation loss (an eval-mode detector returns boxes, not losses); the
# loss terms (``train_loss_box``, ...) follow these columns.
DETECTION_HISTORY_FIELDS = (
    "epoch", "train_loss", "bbox_map", "bbox_map_50", "bbox_map_75", "lr", "seconds",
)
# A detector that also predicts instance masks (Mask R-CNN) adds its mask mAPs after the box ones.
MASK_HISTORY_FIELDS = ("segm_map", "segm_map_50", "segm_map_75")

__all__ = [
    "SegmentationLoss",
    "Trainer",
    "batch_targets",
    "batch_to_device",
    "center_crop",
    "evaluate",
    "evaluate_detection",
    "evaluating",
    "is_detection",
    "load_model",
    "predict",
    "predict_detections",
    "seed_everything",
    "train_model",
]


# ----- small pieces ------------------------------------------------------------------
def seed_everything(seed: int, epoch: int = 0, device: str = "cpu") -> None:
    """Seed the global random streams (dropout) from ``(seed, epoch)``.

    Weight init has its own stream (``nn.init.manual_seed``) and the loader its
    own (``seed`` + ``set_epoch``); this one covers what draws from ``xp.random``.
    """
    value = (int(seed) * 1_000_003 + int(epoch)) % 2**32
    np.random.seed(value)
    if device == "gpu":
        backend.module_for("gpu").random.seed(value)


def batch_to_device(batch: dict, device: str) -> dict:
    """Copy a loader batch's ``"image"`` (as a Tensor) and ``"mask"`` to ``device``.

    The other entries (ids, boxes lists) stay as they are, on the host.
    """
    out = dict(batch)
    out["image"] = tensor(backend.to_device(batch["image"], device))
    if "mask" in batch:
        out["mask"] = backend.to_device(batch["mask"], device)
    return out


class SegmentationLoss:
    """``cross_entropy(logits, target, ignore_index)`` + ``dice_weight * dice_loss(softmax)``.

    :param ignore_index: label of pixels left out (255).
    :param dice_weight: weight of the soft Dice term (0 turns it off).
    """

    def __init__(self, ignore_index: int = 255, dice_weight: float = 0.0):
        self.ignore_index = ignore_index
        self.dice_weight = float(dice_weight)

    def __call__(self, logits, target):
        loss = F.cross_entropy(logits, target, ignore_index=self.ignore_index)
        if self.dice_weight:
            probs = F.softmax(logits, dim=1)
            loss = loss + self.dice_weight * F.dice_loss(
                probs, target, ignore_index=self.ignore_index
            )
        return loss

    def __repr__(self):
        return f"SegmentationLoss(ignore_index={self.ignore_index}, dice_weight={self.dice_weight})"


def _forward_and_crop(model, batch):
    """Logits for the batch's images and the mask cropped to their size."""
    logits = model(batch["image"])
    target = center_crop(batch["mask"], logits.shape[-2:])
    return logits, target


def _num_classes_of(model, num_classes):
    if num_classes is not None:
        return num_classes
    found = getattr(model, "num_classes", None)
    if found is None:
        raise ValueError("num_classes is needed: the model has no .num_classes attribute")
    return found


@contextlib.contextmanager
def evaluating(model):
    """``with evaluating(model):`` eval mode and no gradients inside; the mode is restored after."""
    was_training = getattr(model, "training", False)
    model.eval()
    try:
        with no_grad():
            yield model
    finally:
        model.train(was_training)


def _image_batches(images, device: str, batch_size: int):
    """Tensors of ``batch_size`` images at a time from a host array, copied to ``device``."""
    images = np.asarray(images, dtype=np.float32)
    for start in range(0, len(images), batch_size):
        yield tensor(backend.to_device(images[start : start + batch_size], device))


def is_detection(model) -> bool:
    """True for a detection model (``task = "detection"``): it takes targets, returns boxes."""
    return getattr(model, "task", "segmentation") == "detection"


def batch_targets(batch: dict) -> list[dict]:
    """The detection targets of a loader batch: one ``{"boxes", "labels"}`` dict per image,
    plus ``"masks"`` (M, H, W) bool when the batch has ``"instance_masks"``.

    They stay host arrays; the model copies them to the images' device itself.
    """
    targets = [{"boxes": np.asarray(b, dtype=np.float32).reshape(-1, 4),
                "labels": np.asarray(lab, dtype=np.int64).reshape(-1)}
               for b, lab in zip(batch["boxes"], batch["labels"])]
    if batch.get("instance_masks") is not None:
        for target, masks in zip(targets, batch["instance_masks"]):
            target["masks"] = np.asarray(masks, dtype=bool)
    return targets


def _detections_to_host(detections) -> list[dict]:
    return [{k: backend.to_numpy(v) for k, v in d.items()} for d in detections]


def evaluate_detection(model, loader, device: str = "cpu", progress: bool = False) -> dict:
    """COCO-style box mAP (and mask mAP) of a detection model on every batch of ``loader``.

    Runs the model in eval mode under ``no_grad``; the detections come back to the host and
    ``tinyseg.metrics.mean_average_precision`` scores them against the batches' boxes. A model
    whose detections carry ``"masks"`` (Mask R-CNN) is also scored on the instance masks.

    :returns: ``{"bbox_map", "bbox_map_50", "bbox_map_75", "bbox_map_small", ...}``: each key of
        ``mean_average_precision`` with the prefix ``bbox_`` (the names of ``metrics.json``),
        and the same keys with the prefix ``segm_`` for a model that predicts masks.
    """
    from .metrics import mean_average_precision

    preds, targets = [], []
    with evaluating(model):
        for batch in tqdm(loader, desc="eval", leave=False, disable=not progress):
            targets += batch_targets(batch)
            batch = batch_to_device(batch, device)
            preds += _detections_to_host(model(batch["image"]))
    scores = mean_average_precision(preds, targets, iou_type="bbox")
    out = {f"bbox_{key}": float(value) for key, value in scores.items()}
    if preds and all("masks" in p for p in preds):
        scores = mean_average_precision(preds, targets, iou_type="segm")
        out.update({f"segm_{key}": float(value) for key, value in scores.items()})
    return out


def predict_detections(model, images, device: str = "cpu", batch_size: int = 8) -> list[dict]:
    """Detections of ``images`` (N, 3, H, W) float32 host array: N dicts of host arrays
    ``{"boxes", "scores", "labels"}``, in eval mode under ``no_grad``."""
    out = []
    with evaluating(model):
        for x in _image_batches(images, device, batch_size):
            out += _detections_to_host(model(x))
    return out


def evaluate(model, loader, num_classes: int | None = None, device: str = "cpu",
             loss_fn=None, ignore_index: int = 255, progress: bool = False) -> dict:
    """Score ``model`` on every batch of ``loader``, in eval mode and without gradients.

    :param model: a segmentation model (logits (N, K, H', W')).
    :param loader: yields batch dicts with ``"image"`` (N, 3, H, W) and ``"mask"`` (N, H, W).
    :param num_classes: K (default: ``model.num_classes``).
    :param device: where the batches are copied to ("cpu" or "gpu").
    :param loss_fn: when given, the mean loss over the batches is returned as ``"loss"``.
    :param ignore_index: label of pixels left out of the scores.
    :returns: ``{"miou", "pixel_accuracy", "dice", "per_class_iou"}`` (+ ``"loss"``).
        The model is put back into the mode it was in. A detection model is scored by
        :func:`evaluate_detection` instead (its keys are ``bbox_map``, ...).
    """
    if is_detection(model):
        return evaluate_detection(model, loader, device, progress)
    num_classes = _num_classes_of(model, num_classes)
    meter = SegmentationMeter(num_classes, ignore_index)
    losses = []
    with evaluating(model):
        for batch in tqdm(loader, desc="eval", leave=False, disable=not progress):
            batch = batch_to_device(batch, device)
            logits, target = _forward_and_crop(model, batch)
            if loss_fn is not None:
                losses.append(loss_fn(logits, target).item())
            meter.update(logits, target)
    scores = meter.compute()
    if loss_fn is not None:
        scores["loss"] = float(np.mean(losses)) if losses else float("nan")
    return scores


def predict(model, images, device: str = "cpu", batch_size: int = 8):
    """Predicted label maps of ``images`` (N, 3, H, W) float32 host array -> int64 (N, H', W').

    Runs in eval mode under ``no_grad``; the result comes back to the host.
    """
    images = np.asarray(images, dtype=np.float32)
    out = []
    with evaluating(model):
        for x in _image_batches(images, device, batch_size):
            out.append(backend.to_numpy(model(x).data.argmax(axis=1)).astype(np.int64))
    return np.concatenate(out) if out else np.zeros((0,) + images.shape[2:], dtype=np.int64)


# ----- checkpoints -------------------------------------------------------------------
def _split_optimizer_state(state: dict):
    """Optimizer.state_dict() -> (arrays for the .npz, the JSON-able rest)."""
    arrays, entries = {}, []
    for i, entry in enumerate(state["state"]):
        rest = {}
        for key, value in entry.items():
            if hasattr(value, "shape") and getattr(value, "ndim", 0) > 0:
                arrays[f"{OPTIMIZER_PREFIX}{i}.{key}"] = value
            else:
                rest[key] = value.item() if hasattr(value, "item") else value
        entries.append(rest)
    defaults = {k: list(v) if isinstance(v, tuple) else v for k, v in state["defaults"].items()}
    return arrays, {"type": state["type"], "defaults": defaults, "state": entries}


def _join_optimizer_state(arrays: dict, meta: dict) -> dict:
    entries = [dict(e) for e in meta["state"]]
    for key, value in arrays.items():
        index, name = key[len(OPTIMIZER_PREFIX):].split(".", 1)
        entries[int(index)][name] = value
    return {"type": meta["type"], "defaults": meta["defaults"], "state": entries}


def split_checkpoint_arrays(arrays: dict):
    """Separate a loaded checkpoint's arrays into (model state dict, optimiser arrays)."""
    model_state = {k: v for k, v in arrays.items() if not k.startswith(OPTIMIZER_PREFIX)}
    optim_state = {k: v for k, v in arrays.items() if k.startswith(OPTIMIZER_PREFIX)}
    return model_state, optim_state


def load_model(path, expected: str | None = None, device: str = "cpu"):
    """Rebuild the model saved in checkpoint ``path``, in eval mode, on ``device``.

    :param expected: when given, the model name the checkpoint must hold.
    :returns: ``(model, config)``.
    :raises FileNotFoundError: no such file.
    :raises ValueError: not a tinyseg training checkpoint, or a checkpoint of
        another model than ``expected`` (the message names both).
    """
    from .models import build_model

    arrays, config = ckpt.load_checkpoint(path)
    name = config.get("model")
    if name is None or "model_config" not in config:
        raise ValueError(
            f"checkpoint {path} has no model name and config: it was not written by "
            "tinyseg train"
        )
    if expected is not None and name != expected:
        raise ValueError(f"checkpoint {path} holds a {name!r} model, not {expected!r}")
    model = build_model(name, **config["model_config"])
    model_state, _ = split_checkpoint_arrays(arrays)
    model.load_state_dict(model_state)
    return model.to(device).eval(), config


# ----- the loop ------------------------------------------------------------------------
class Trainer:
    """The training loop shared by every model.

    :param model: an ``nn.Module``: a segmentation model, or a detection model
        (``task = "detection"``) that returns its own loss terms in training mode.
    :param optimizer: a ``tinyseg.optim`` optimiser over ``model.parameters()``.
    :param loss_fn: ``loss_fn(output, target) -> scalar Tensor`` (segmentation; None for a
        detection model, whose loss is the sum of the terms it returns).
    :param train_loader: a ``DataLoader`` (``set_epoch`` is called when it has one).
    :param val_loader: scored after every epoch (None: no validation).
    :param scheduler: an LR schedule, stepped once per epoch (or None).
    :param device: "cpu" or "gpu"; the model is moved there.
    :param epochs: the total number of epochs (a resumed run continues up to it).
    :param out_dir: where ``history.csv`` and ``checkpoint.npz`` go (None: nowhere).
    :param seed: seeds dropout per epoch (and should have seeded init and the loader).
    :param num_classes: K for the metrics (default: ``model.num_classes``).
    :param config: extra JSON-able entries for the checkpoint (``"model"``, ``"recipe"``, ...).
    :param progress: show tqdm bars (a notebook gets notebook bars).
    :param log: called with one summary line per epoch (``print``; None: silent).
    """

    def __init__(self, model, optimizer, loss_fn, train_loader, val_loader=None, *,
                 scheduler=None, device: str = "cpu", epochs: int = 1, out_dir=None,
                 seed: int = 0, num_classes: int | None = None, config: dict | None = None,
                 ignore_index: int = 255, progress: bool = True, log=print):
        backend.check_device(device)
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
            raise ValueError(f"epochs must be an int >= 0, got {epochs!r}")
        self.detection = is_detection(model)
        if loss_fn is None and not self.detection:
            raise ValueError("loss_fn is needed for a segmentation model (e.g. SegmentationLoss())")
        self.model = model.to(device)
        self.optimizer, self.scheduler, self.loss_fn = optimizer, scheduler, loss_fn
        self.train_loader, self.val_loader = train_loader, val_loader
        self.device, self.epochs, self.seed = device, epochs, seed
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.num_classes = _num_classes_of(model, num_classes)
        self.config = dict(config or {})
        self.ignore_index = ignore_index
        self.progress = progress
        self.log = log or (lambda *_: None)
        self.epoch = 0  # epochs completed
        self.history: list[dict] = []
        self.metrics: dict = {}
        self.loss_terms: dict = {}
        self.train_seconds = 0.0

    # -- one epoch --
    def training_loss(self, batch):
        """The loss of one device batch and its named terms: ``(loss Tensor, {name: array})``.

        The terms stay 0-d device arrays: reading each one with ``.item()`` would cost a
        device sync per term per step.
        """
        if self.detection:
            terms = self.model(batch["image"], batch_targets(batch))
            loss = sum(terms.values())
            return loss, {name: value.data for name, value in terms.items()}
        output, target = _forward_and_crop(self.model, batch)
        return self.loss_fn(output, target), {}

    def train_step(self, batch) -> tuple[float, dict]:
        """One optimiser step on a device batch: ``(loss, {term: value})`` as host floats.

        The loss and its terms are read from the device together, in one copy: the one
        sync of a step, which the log and the divergence check need.
        """
        loss, terms = self.training_loss(batch)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        xp = backend.xp_of(loss.data)
        values = backend.to_numpy(xp.stack([loss.data.reshape(()), *terms.values()]))
        return float(values[0]), {name: float(v) for name, v in zip(terms, values[1:])}

    def train_one_epoch(self, epoch: int) -> float:
        """Train for one epoch; returns the mean training loss.

        The mean of each named loss term (detection) is kept in ``self.loss_terms``.
        """
        seed_everything(self.seed, epoch, self.device)
        if hasattr(self.train_loader, "set_epoch"):
            self.train_loader.set_epoch(epoch)
        self.model.train()
        total, count = 0.0, 0
        term_totals: dict[str, float] = {}
        bar = tqdm(self.train_loader, desc=f"epoch {epoch + 1}/{self.epochs}", leave=False,
                   disable=not self.progress, unit="batch")
        for batch in bar:
            value, terms = self.train_step(batch_to_device(batch, self.device))
            if not math.isfinite(value):
                raise FloatingPointError(
                    f"the training loss became {value} in epoch {epoch + 1}; lower the lr"
                )
            for name, term in terms.items():
                term_totals[name] = term_totals.get(name, 0.0) + term
            total, count = total + value, count + 1
            bar.set_postfix(loss=f"{total / count:.4f}")
        bar.close()
        self.loss_terms = {name: value / max(count, 1) for name, value in term_totals.items()}
        return total / max(count, 1)

    def evaluate(self, loader=None) -> dict:
        """Scores (and mean loss) on ``loader`` (default: the validation loader)."""
        loader = self.val_loader if loader is None else loader
        return evaluate(self.model, loader, self.num_classes, self.device, self.loss_fn,
                        self.ignore_index, progress=self.progress)

    def fit(self) -> list[dict]:
        """Train from ``self.epoch`` up to ``self.epochs``; returns the history rows."""
        for epoch in range(self.epoch, self.epochs):
            start = time.perf_counter()
            lr = self.optimizer.lr
            train_loss = self.train_one_epoch(epoch)
            if self.scheduler is not None:
                self.scheduler.step()
            row = {"epoch": epoch + 1, "train_loss": train_loss}
            row.update({f"train_{name}": value for name, value in self.loss_terms.items()})
            if self.val_loader is not None:
                scores = self.evaluate()
                self.metrics = scores
                shown = DETECTION_HISTORY_FIELDS + MASK_HISTORY_FIELDS if self.detection \
                    else HISTORY_FIELDS
                row.update({k: scores[k] for k in shown if k in scores})
                if not self.detection:
                    row["val_loss"] = scores["loss"]
            seconds = time.perf_counter() - start
            row.update(lr=lr, seconds=round(seconds, 3))
            self.train_seconds += seconds
            self.epoch = epoch + 1
            self.history.append(row)
            if self.out_dir is not None:  # saved before anything else can interrupt us
                self.out_dir.mkdir(parents=True, exist_ok=True)
                self.write_history(self.out_dir / "history.csv")
                self.save(self.out_dir / "checkpoint.npz")
            self.log(self._summary(row))
        return self.history

    def _summary(self, row):
        text = f"epoch {row['epoch']}/{self.epochs}  train_loss {row['train_loss']:.4f}"
        if "bbox_map" in row:
            text += (f"  bbox mAP {row['bbox_map']:.4f}  mAP@50 {row['bbox_map_50']:.4f}"
                     f"  mAP@75 {row['bbox_map_75']:.4f}")
        if "segm_map" in row:
            text += f"  segm mAP {row['segm_map']:.4f}  mAP@50 {row['segm_map_50']:.4f}"
        if "miou" in row:
            text += (f"  val_loss {row['val_loss']:.4f}  mIoU {row['miou']:.4f}"
                     f"  pixel_acc {row['pixel_accuracy']:.4f}")
        return text + f"  lr {row['lr']:.2e}  {row['seconds']:.1f}s"

    # -- files --
    def history_fields(self) -> list[str]:
        """The columns of ``history.csv``: ``HISTORY_FIELDS`` (segmentation) or
        ``DETECTION_HISTORY_FIELDS``, the mask mAPs if scored, then the loss terms (detection)."""
        fields = list(DETECTION_HISTORY_FIELDS if self.detection else HISTORY_FIELDS)
        if any("segm_map" in row for row in self.history):
            fields[fields.index("lr"):fields.index("lr")] = MASK_HISTORY_FIELDS
        for row in self.history:
            fields += [k for k in row if k.startswith("train_loss_") and k not in fields]
        return fields

    def write_history(self, path) -> None:
        """Write ``history.csv``: one row per epoch, columns ``history_fields()``."""
        fields = self.history_fields()
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            writer.writeheader()
            for row in self.history:
                writer.writerow({k: row.get(k, "") for k in fields})

    def checkpoint_config(self) -> dict:
        """The JSON part of the checkpoint (without the optimiser's arrays)."""
        config = dict(self.config)
        if hasattr(self.model, "config"):
            config.setdefault("model_config", self.model.config())
        config.update(
            epoch=self.epoch,
            seed=self.seed,
            history=self.history,
            metrics=self.metrics,
            train_seconds=self.train_seconds,
        )
        if self.scheduler is not None:
            config["scheduler"] = {"type": type(self.scheduler).__name__,
                                   **self.scheduler.state_dict()}
        return config

    def save(self, path) -> None:
        """Write the checkpoint (weights, optimiser and schedule state, history; no pickle)."""
        arrays, optimizer_meta = _split_optimizer_state(self.optimizer.state_dict())
        config = self.checkpoint_config()
        config["optimizer"] = optimizer_meta
        state = dict(self.model.state_dict())
        state.update(arrays)
        ckpt.save_checkpoint(path, state, _jsonable(config))

    def resume(self, path) -> None:
        """Load a checkpoint written by ``save`` and continue from its epoch.

        :raises ValueError: a checkpoint of another model, optimiser or schedule.
        """
        arrays, config = ckpt.load_checkpoint(path)
        name = self.config.get("model")
        if name is not None and config.get("model") != name:
            raise ValueError(
                f"checkpoint {path} holds a {config.get('model')!r} model, not {name!r}"
            )
        model_state, optim_arrays = split_checkpoint_arrays(arrays)
        self.model.load_state_dict(model_state)
        if "optimizer" in config:
            self.optimizer.load_state_dict(_join_optimizer_state(optim_arrays, config["optimizer"]))
        if self.scheduler is not None and "scheduler" in config:
            state = dict(config["scheduler"])
            kind = state.pop("type", None)
            if kind != type(self.scheduler).__name__:
                raise ValueError(f"checkpoint {path} has a {kind} schedule, not "
                                 f"{type(self.scheduler).__name__}")
            # the position only: the schedule's shape (T_max, ...) is this run's recipe, so
            # a run resumed with more epochs stretches its schedule instead of restarting it
            self.scheduler.load_state_dict({"last_epoch": int(state["last_epoch"])})
        self.epoch = int(config.get("epoch", 0))
        self.history = list(config.get("history", []))
        self.metrics = dict(config.get("metrics", {}))
        self.train_seconds = float(config.get("train_seconds", 0.0))


def _jsonable(value):
    """NaN and infinities become None (JSON has no NaN); tuples become lists."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    return value


# ----- one training run, from a recipe --------------------------------------------------
def make_optimizer(model, recipe):
    """The optimiser a recipe names (``adam``, ``adamw`` or ``sgd`` with Nesterov momentum)."""
    from . import optim

    params = list(model.parameters())
    kind = recipe.optimizer.lower()
    if kind == "adam":
        return optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    if kind == "adamw":
        return optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    if kind == "sgd":
        return optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum,
                         nesterov=recipe.momentum > 0, weight_decay=recipe.weight_decay)
    raise ValueError(f"recipe.optimizer must be 'adam', 'adamw' or 'sgd', got {recipe.optimizer!r}")


def make_scheduler(optimizer, recipe):
    """A cosine schedule over ``recipe.epochs`` down to ``lr * min_lr_ratio``, or None."""
    from . import optim

    if recipe.schedule == "constant":
        return None
    if recipe.schedule == "cosine":
        return optim.CosineAnnealingLR(optimizer, T_max=max(recipe.epochs, 1),
                                       eta_min=recipe.lr * recipe.min_lr_ratio)
    raise ValueError(f"recipe.schedule must be 'cosine' or 'constant', got {recipe.schedule!r}")


class CachedDataset:
    """Remembers each sample of ``dataset`` after its first read (drawing or decoding it once).

    Safe for datasets whose sample ``i`` never changes (the shapes scenes, files on
    disk); the loader's random transforms run after it, so they still differ per epoch.
    """

    def __init__(self, dataset):
        self.dataset = dataset
        self.classes = getattr(dataset, "classes", None)
        self._cache = {}

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        i = int(i) % len(self.dataset)
        if i not in self._cache:
            self._cache[i] = self.dataset[i]
        return dict(self._cache[i])  # a new dict: transforms may replace entries

    def __repr__(self):
        return f"CachedDataset({self.dataset!r})"


def open_split(data, split: str, recipe, cache: bool = True):
    """One split: the built-in scenes (``recipe.image_size``, ``recipe.<split>_images``)
    for ``"shapes"``, else the VOC-/COCO-style folder ``data``."""
    from . import data as datasets

    if str(data) == "shapes":
        count = recipe.train_images if split == "train" else recipe.val_images
        dataset = datasets.open_dataset("shapes", split, num_images=count,
                                        size=recipe.image_size, max_objects=recipe.max_objects)
    else:
        dataset = datasets.open_dataset(data, split)
    return CachedDataset(dataset) if cache else dataset


def make_datasets(data, recipe, cache: bool = True):
    """(train, val) datasets of ``data`` (see ``open_split``)."""
    return open_split(data, "train", recipe, cache), open_split(data, "val", recipe, cache)


def make_loaders(train_set, val_set, recipe, seed):
    """Shuffled, augmented training loader and a plain validation loader.

    Both first stretch every sample to ``recipe.image_size`` squared: images from disk come in
    many sizes, and a batch needs one. The built-in scenes are drawn at that size already, and
    ``Resize`` passes them through unchanged.
    """
    from . import data as datasets

    resize = datasets.Resize(recipe.image_size)
    steps = [resize]
    if recipe.augment:
        steps += [datasets.RandomHorizontalFlip(), datasets.RandomScaleCrop()]
    train = datasets.DataLoader(train_set, batch_size=recipe.batch_size, shuffle=True, seed=seed,
                                drop_last=len(train_set) > recipe.batch_size,
                                transform=datasets.Compose(steps))
    val = datasets.DataLoader(val_set, batch_size=recipe.batch_size, shuffle=False, seed=seed,
                              transform=resize)
    return train, val


def _peak_rss_mb() -> float | None:
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / 1024.0, 1)  # kilobytes on Linux


def _write_json(path, values) -> None:
    Path(path).write_text(json.dumps(_jsonable(values), indent=2) + "\n")


def train_model(recipe, data="shapes", device: str = "cpu", out_dir=None, seed: int = 0,
                resume=None, progress: bool = True, log=print) -> dict:
    """One full run: data, model and optimiser from ``recipe``, the loop, then the files.

    Writes into ``out_dir`` (default ``runs/<model>``): ``checkpoint.npz`` and
    ``history.csv`` (after every epoch), then ``metrics.json`` and
    ``predictions.png``.

    :param recipe: a ``tinyseg.recipes.Recipe`` (a segmentation or a detection model).
    :param data: ``"shapes"`` or a VOC-/COCO-style folder (detection needs boxes: COCO-style).
    :param resume: a checkpoint to continue from (same model and recipe).
    :returns: the metrics dict written to ``metrics.json``: ``miou``, ``pixel_accuracy``,
        ``dice``, ``per_class_iou`` for segmentation; ``bbox_map``, ``bbox_map_50``,
        ``bbox_map_75`` (and the other ``bbox_`` keys) for detection; and for both the run's
        facts (``train_seconds``, ``epochs``, ``model``, ``seconds_per_epoch``, ``peak_rss_mb``...).
    """
    from . import nn, viz
    from .models import build_model

    backend.check_device(device)
    if device == "gpu":
        backend.cupy_module()
    out_dir = Path(out_dir if out_dir is not None else os.path.join("runs", recipe.model))
    train_set, val_set = make_datasets(data, recipe)
    classes = list(getattr(train_set, "classes", ()))
    num_classes = len(classes) if classes else recipe.num_classes
    recipe = recipe.replace(num_classes=num_classes)
    nn.init.manual_seed(seed)
    model = build_model(recipe.model, num_classes=num_classes, **recipe.model_options)
    detection = is_detection(model)
    if detection and not getattr(getattr(train_set, "dataset", train_set), "has_boxes", True):
        raise ValueError(f"{recipe.model} is a detector and needs boxes: --data must be 'shapes' "
                         f"or a COCO-style folder (annotations/), not the VOC segmentation "
                         f"folder {data}")
    loss_fn = None if detection else SegmentationLoss(recipe.ignore_index, recipe.dice_weight)
    optimizer = make_optimizer(model, recipe)
    scheduler = make_scheduler(optimizer, recipe)
    train_loader, val_loader = make_loaders(train_set, val_set, recipe, seed)
    trainer = Trainer(
        model, optimizer, loss_fn, train_loader, val_loader, scheduler=scheduler, device=device,
        epochs=recipe.epochs, out_dir=out_dir, seed=seed, num_classes=num_classes,
        ignore_index=recipe.ignore_index, progress=progress, log=log,
        config={"model": recipe.model, "recipe": recipe.to_dict(), "classes": classes,
                "data": str(data)},
    )
    if resume is not None:
        trainer.resume(resume)
        log(f"resumed from {resume} at epoch {trainer.epoch}/{recipe.epochs}")
    out_dir.mkdir(parents=True, exist_ok=True)
    trainer.fit()
    if not trainer.metrics or trainer.epoch == 0:  # nothing trained: score what we have
        trainer.metrics = trainer.evaluate()
    if trainer.epoch == 0 or not (out_dir / "checkpoint.npz").exists():
        trainer.write_history(out_dir / "history.csv")
        trainer.save(out_dir / "checkpoint.npz")
    scores = trainer.metrics
    epochs_run = max(len(trainer.history), 1)
    metrics = {"model": recipe.model, **task_scores(scores, detection)}
    metrics.update({
        "train_loss": trainer.history[-1]["train_loss"] if trainer.history else None,
        "train_seconds": round(trainer.train_seconds, 3),
        "seconds_per_epoch": round(trainer.train_seconds / epochs_run, 3),
        "epochs": trainer.epoch,
        "classes": classes,
        "seed": seed,
        "device": device,
        "data": str(data),
        "batch_size": recipe.batch_size,
        "lr": recipe.lr,
        "image_size": recipe.image_size,
        "train_images": len(train_set),
        "val_images": len(val_set),
        "num_parameters": int(sum(p.size for p in model.parameters())),
        "peak_rss_mb": _peak_rss_mb(),
    })
    _write_json(out_dir / "metrics.json", metrics)
    viz.save_predictions(out_dir / "predictions.png", model, val_set, classes=classes,
                         device=device, title=f"{recipe.model}: {headline(scores)}",
                         transform=val_loader.transform)
    log(f"{headline(scores)}  ({trainer.train_seconds:.1f}s)")
    log(f"wrote {out_dir}/metrics.json, checkpoint.npz, history.csv, predictions.png")
    return metrics


def task_scores(scores: dict, detection: bool) -> dict:
    """The quality entries of ``metrics.json`` from ``evaluate``'s scores."""
    if detection:
        return dict(scores)
    return {"miou": scores["miou"], "pixel_accuracy": scores["pixel_accuracy"],
            "dice": scores["dice"], "per_class_iou": scores["per_class_iou"],
            "val_loss": scores.get("loss")}


def headline(scores: dict) -> str:
    """One line of the main figures: mAPs for detection, mIoU etc. for segmentation."""
    if "bbox_map" in scores:
        line = (f"bbox mAP {scores['bbox_map']:.3f}  mAP@50 {scores['bbox_map_50']:.3f}  "
                f"mAP@75 {scores['bbox_map_75']:.3f}")
        if "segm_map" in scores:
            line += f"  segm mAP {scores['segm_map']:.3f}  mAP@50 {scores['segm_map_50']:.3f}"
        return line
    return (f"mIoU {scores['miou']:.4f}  pixel accuracy {scores['pixel_accuracy']:.4f}  "
            f"dice {scores['dice']:.4f}")


def evaluate_checkpoint(path, expected: str | None = None, data="shapes", device: str = "cpu",
                        batch_size: int | None = None, val_images: int | None = None,
                        progress: bool = True, picture=None):
    """Rebuild a saved model and score it on the val split of ``data``.

    :param picture: when given, a path where the same ``predictions.png`` as training's is drawn
        (label maps, or true and predicted boxes) from the split just scored.
    :returns: ``(metrics, model, config)``.
    """
    from . import viz
    from .recipes import Recipe

    model, config = load_model(path, expected, device)
    recipe = Recipe.from_dict(config.get("recipe", {"model": config["model"]}))
    recipe = recipe.replace(batch_size=batch_size, val_images=val_images)
    val_set = open_split(data, "val", recipe, cache=False)
    _, val_loader = make_loaders(val_set, val_set, recipe.replace(augment=False), 0)
    loss_fn = None if is_detection(model) else SegmentationLoss(recipe.ignore_index,
                                                                 recipe.dice_weight)
    scores = evaluate(model, val_loader, model.num_classes, device, loss_fn,
                      recipe.ignore_index, progress=progress)
    if picture is not None:
        viz.save_predictions(picture, model, val_set, classes=config.get("classes") or None,
                             device=device, title=f"{config['model']}: {headline(scores)}",
                             transform=val_loader.transform)
    return scores, model, config
