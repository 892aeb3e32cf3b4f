"""The training loop: ``Trainer``, the same for every model.

``Trainer.fit`` is the loop listed in the package docstring (``tinyseg.engine``):
per epoch, reseed, shuffle, one ``train_step`` per batch, step the schedule,
evaluate, then append to the history and write the checkpoint and ``history.csv``
(in that order, each atomically: see ``tinyseg.engine.runfolder``).

Divergence. A training loss, a weight or a validation loss that is NaN or infinite
stops the run with ``FloatingPointError`` *before* that epoch is saved, so the
checkpoint on disk stays the last good epoch's. (The weights are checked too: a
detector has no validation loss, and the last step of an epoch can break the
weights after its own loss was still finite.)

Nothing here knows whether the model segments or detects: every step that differs
is a method of the *task* object (``tinyseg.engine.tasks``), found from the
model's ``task`` attribute, or passed in as ``Trainer(..., task=...)``.

Determinism. Every random choice is a function of ``(seed, epoch)``: the
weights come from ``nn.init.manual_seed(seed)``, the shuffle and augmentation
from the loader's seed and ``set_epoch``, dropout and the R-CNN samplers
(``anchors.step_generator``) from the global streams, reseeded at the start of
each epoch. So the same command gives the same
numbers, and a run resumed from the checkpoint of epoch ``e`` continues exactly
as the uninterrupted run would have.

One sync per step. ``train_step`` reads the loss and its named terms from the
device together, in one copy: the log and the divergence check need them, and
reading each term with ``.item()`` would cost a device sync per term.

Checkpoints (``checkpoint.npz``, written after every epoch, no pickle) hold the
model's state dict, the optimiser's buffers under ``__optimizer__.<i>.<name>``
(``tinyseg.checkpoint.split_optimizer_state``), and a JSON config::

    {"model": "unet", "model_config": {...}, "recipe": {...}, "epoch": 3,
     "seed": 0, "classes": [...], "optimizer": {...}, "scheduler": {...},
     "history": [...], "metrics": {...}}
"""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .. import backend
from .. import checkpoint as ckpt
from ..autograd import Tensor
from .evaluate import batch_to_device
from .tasks import task_for

__all__ = ["Trainer", "seed_everything"]


def seed_everything(seed: int, epoch: int = 0, device: str = "cpu") -> None:
    """Seed the global random streams (dropout) from ``(seed, epoch)``.

    Weight init has its own stream (``nn.init.manual_seed``) and the loader its
    own (``seed`` + ``set_epoch``); this one covers what draws from ``xp.random``.
    """
    value = (int(seed) * 1_000_003 + int(epoch)) % 2**32
    np.random.seed(value)
    if device == "gpu":
        backend.module_for("gpu").random.seed(value)


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
    :param task: the task object (see ``tinyseg.engine.tasks``); default
        ``task_for(model, loss_fn=..., num_classes=..., ignore_index=...)``. When given,
        ``loss_fn``, ``num_classes`` and ``ignore_index`` are the task's business.
    :param progress: show tqdm bars (a notebook gets notebook bars).
    :param log: called with one summary line per epoch (``print``; None: silent).
    """

    def __init__(self, model, optimizer, loss_fn, train_loader, val_loader=None, *,
                 scheduler=None, device: str = "cpu", epochs: int = 1, out_dir=None,
                 seed: int = 0, num_classes: int | None = None, config: dict | None = None,
                 ignore_index: int = 255, task=None, progress: bool = True, log=print):
        backend.check_device(device)
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
            raise ValueError(f"epochs must be an int >= 0, got {epochs!r}")
        if task is None:
            task = task_for(model, loss_fn=loss_fn, num_classes=num_classes,
                            ignore_index=ignore_index, training=True)
        self.task = task
        self.model = model.to(device)
        self.optimizer, self.scheduler, self.loss_fn = optimizer, scheduler, loss_fn
        self.train_loader, self.val_loader = train_loader, val_loader
        self.device, self.epochs, self.seed = device, epochs, seed
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.config = dict(config or {})
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
        return self.task.training_loss(self.model, batch)

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

        The mean of each named loss term (a detector's) is kept in ``self.loss_terms``.
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

    def check_weights(self, epoch: int) -> None:
        """Raise ``FloatingPointError`` naming the first weight that holds NaN or infinity.

        One device sync for all of them: the per-array flags are stacked, then copied.
        """
        state = {k: v.data if isinstance(v, Tensor) else v
                 for k, v in self.model.state_dict().items()}
        state = {k: v for k, v in state.items() if v.dtype.kind == "f"}
        if not state:
            return
        xp = backend.xp_of(next(iter(state.values())))
        finite = backend.to_numpy(xp.stack([xp.isfinite(v).all() for v in state.values()]))
        if not finite.all():
            name = list(state)[int(np.argmin(finite))]
            raise FloatingPointError(f"the weight {name!r} became NaN or infinite in epoch "
                                     f"{epoch + 1}; lower the lr")

    def evaluate(self, loader=None) -> dict:
        """The task's scores on ``loader`` (default: the validation loader)."""
        loader = self.val_loader if loader is None else loader
        return self.task.evaluate(self.model, loader, self.device, progress=self.progress)

    def fit(self) -> list[dict]:
        """Train from ``self.epoch`` up to ``self.epochs``; returns the history rows."""
        for epoch in range(self.epoch, self.epochs):
            start = time.perf_counter()
            lr = self.optimizer.lr
            train_loss = self.train_one_epoch(epoch)
            self.check_weights(epoch)
            if self.scheduler is not None:
                self.scheduler.step()
            row = {"epoch": epoch + 1, "train_loss": train_loss}
            row.update({f"train_{name}": value for name, value in self.loss_terms.items()})
            if self.val_loader is not None:
                scores = self.evaluate()
                val_loss = scores.get("loss")
                if val_loss is not None and not math.isfinite(val_loss):
                    raise FloatingPointError(
                        f"the validation loss became {val_loss} in epoch {epoch + 1}; "
                        "lower the lr")
                self.metrics = scores
                row.update(self.task.history_entries(self.metrics))
            seconds = time.perf_counter() - start
            row.update(lr=lr, seconds=round(seconds, 3))
            self.train_seconds += seconds
            self.epoch = epoch + 1
            self.history.append(row)
            if self.out_dir is not None:  # saved before anything else can interrupt us
                self.out_dir.mkdir(parents=True, exist_ok=True)
                self.save(self.out_dir / "checkpoint.npz")  # the truth first, then its view
                self.write_history(self.out_dir / "history.csv")
            self.log(self.summary(row))
        return self.history

    def summary(self, row: dict) -> str:
        """The line logged after an epoch: loss, the task's scores, lr and time."""
        return (f"epoch {row['epoch']}/{self.epochs}  train_loss {row['train_loss']:.4f}"
                f"{self.task.summary(row)}  lr {row['lr']:.2e}  {row['seconds']:.1f}s")

    # -- files --
    def history_fields(self) -> list[str]:
        """The columns of ``history.csv`` (the task's ``history_fields``)."""
        return self.task.history_fields(self.history)

    def write_history(self, path) -> None:
        """Write ``history.csv`` atomically: one row per epoch, columns ``history_fields()``."""
        fields = self.history_fields()
        with ckpt.atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
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
        arrays, optimizer_meta = ckpt.split_optimizer_state(self.optimizer.state_dict())
        config = self.checkpoint_config()
        config["optimizer"] = optimizer_meta
        state = dict(self.model.state_dict())
        state.update(arrays)
        ckpt.save_checkpoint(path, state, ckpt.jsonable(config))

    def resume(self, path) -> None:
        """Load a checkpoint written by ``save`` and continue from its epoch.

        :raises ValueError: a checkpoint of another model, optimiser or schedule, or one
            whose weights are NaN or infinite.
        """
        arrays, config = ckpt.load_checkpoint(path)
        ckpt.check_finite(arrays, path)
        name = self.config.get("model")
        if name is not None and config.get("model") != name:
            raise ValueError(
                f"checkpoint {path} holds a {config.get('model')!r} model, not {name!r}"
            )
        model_state, optim_arrays = ckpt.split_checkpoint_arrays(arrays)
        self.model.load_state_dict(model_state)
        if "optimizer" in config:
            self.optimizer.load_state_dict(
                ckpt.join_optimizer_state(optim_arrays, config["optimizer"]))
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
