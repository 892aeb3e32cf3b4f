"""One training run from a recipe: what ``tinyseg train`` and ``tinyseg eval`` do.

``train_model`` wires a recipe (``tinyseg.recipes.Recipe``) to everything else::

    train_set, val_set = make_datasets(data, recipe)       # cached: drawn or decoded once
    model = build_model(recipe.model, num_classes=...)     # after nn.init.manual_seed(seed)
    task = task_for(model, recipe)                         # segmentation or detection
    optimizer = make_optimizer(model, recipe)              # adam, adamw or sgd
    scheduler = make_scheduler(optimizer, recipe)          # cosine or constant
    train_loader, val_loader = make_loaders(train_set, val_set, recipe, seed)
    Trainer(model, optimizer, None, train_loader, val_loader, task=task, ...).fit()
    write_json("metrics.json", run_metrics(...)); save_predictions("predictions.png", ...)

Each factory is a plain function a notebook can call on its own. Before epoch 1,
``train_model`` checks the run folder (``runfolder.prepare_run_folder``: empty, or
``overwrite``, or the resumed checkpoint's own folder; writable), and a resumed run
the checkpoint's classes against the data's. The files a run leaves in ``out_dir``,
in the order they are written (each atomically; ``metrics.json`` last marks a
finished run):

=================  ==================================================================
``checkpoint.npz`` weights, optimiser and schedule state, history (after every epoch)
``history.csv``    one row per epoch (the task's ``history_fields``)
``predictions.png`` the first validation images: truth and prediction, side by side
``metrics.json``   the task's scores and the run's facts (time, sizes, seed, ...)
=================  ==================================================================

The picture is drawn by ``tinyseg.viz``, which never runs a model: the engine
predicts (``task.predict``) and hands viz the images, the truth and the
predictions.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .. import backend, nn, optim, viz
from .. import data as datasets
from ..checkpoint import atomic_path, check_finite, load_checkpoint, load_model, write_json
from ..models import build_model
from ..recipes import Recipe
from .loop import Trainer
from .runfolder import prepare_run_folder
from .tasks import task_for

__all__ = [
    "CachedDataset",
    "check_classes",
    "checkpoint_recipe",
    "eval_metrics",
    "evaluate_checkpoint",
    "make_datasets",
    "make_loaders",
    "make_optimizer",
    "make_scheduler",
    "open_split",
    "peak_rss_mb",
    "resume_settings",
    "save_predictions",
    "train_model",
]


# ----- the factories -----------------------------------------------------------------
def make_optimizer(model, recipe):
    """The optimiser a recipe names (``adam``, ``adamw`` or ``sgd`` with Nesterov momentum)."""
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


# ----- the run's files ---------------------------------------------------------------
def peak_rss_mb() -> float | None:
    """The process's peak resident memory in MiB (None where ``resource`` is missing)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / 1024.0, 1)  # kilobytes on Linux


def save_predictions(path, task, model, dataset, classes=None, device: str = "cpu", n: int = 6,
                     title=None, transform=None) -> Path:
    """Predict the first ``n`` samples of ``dataset`` with ``task.predict``; let viz draw them.

    :param transform: applied to each sample first (e.g. a ``Resize`` for images of mixed
        sizes), with a fixed generator, so the picture is the same every time.
    """
    n = min(n, len(dataset))
    samples = [dataset[i] for i in range(n)]
    if transform is not None:
        rng = np.random.default_rng(0)
        samples = [transform(s, rng) for s in samples]
    images = np.stack([s["image"] for s in samples])
    preds = task.predict(model, images, device=device)
    with atomic_path(path) as tmp:  # never a half-drawn picture under the real name
        viz.save_predictions(tmp, images, task.picture_targets(samples), preds,
                             classes=classes, title=title)
    return Path(path)


# ----- what a checkpoint says about its run ------------------------------------------
_POSITIVE = ("batch_size", "image_size", "train_images", "val_images")
#: the settings a resumed run keeps; ``epochs`` alone may grow
RESUME_SETTINGS = ("batch_size", "lr", "image_size", "train_images", "val_images", "seed",
                   "data")


def checkpoint_recipe(config: dict, path) -> Recipe:
    """The recipe saved in a checkpoint's config, checked (each message names ``path``).

    :raises ValueError: the recipe is not an object, or a size, count or lr in it is not a
        positive number.
    """
    values = config.get("recipe", {"model": config.get("model")})
    if not isinstance(values, dict):
        raise ValueError(f"checkpoint {path}: its recipe must be a JSON object, "
                         f"got {type(values).__name__}")
    recipe = Recipe.from_dict({"model": config.get("model"), **values})
    for name in (*_POSITIVE, "epochs"):
        value, least = getattr(recipe, name), 0 if name == "epochs" else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"checkpoint {path}: its recipe has {name} {value!r}, expected an "
                             f"integer >= {least}")
    lr = recipe.lr
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr < float("inf"):
        raise ValueError(f"checkpoint {path}: its recipe has lr {lr!r}, expected a positive "
                         "number")
    return recipe


def resume_settings(path, model: str, epochs: int | None = None, **given):
    """The settings of the run saved in checkpoint ``path``, for continuing it.

    :param epochs: the run's new length (default: the saved one); it may grow, not shrink
        below the epochs already done.
    :param given: settings asked for (``RESUME_SETTINGS``; None: not asked). Each must equal
        the saved one: a resumed run is the same run, only longer.
    :returns: ``(recipe, seed, data)``.
    :raises ValueError: another model, NaN or infinite weights, a setting that differs
        (named, with both values), or too few epochs.
    """
    arrays, config = load_checkpoint(path)
    check_finite(arrays, path)  # before any data is read: a diverged run cannot go on
    if config.get("model") != model:
        raise ValueError(f"checkpoint {path} holds a {config.get('model')!r} model, not "
                         f"{model!r}")
    recipe = checkpoint_recipe(config, path)
    saved = {**{k: getattr(recipe, k) for k in RESUME_SETTINGS[:5]},
             "seed": config.get("seed", 0), "data": config.get("data", "shapes")}
    for name, value in given.items():
        if name not in saved:
            raise TypeError(f"resume_settings() got an unknown setting {name!r}")
        same = (os.path.normpath(str(value)) == os.path.normpath(str(saved[name]))
                if name == "data" else value == saved[name])
        if value is not None and not same:
            flag = "--" + name.replace("_", "-")
            raise ValueError(
                f"{flag} {value} differs from the checkpoint's {name} {saved[name]} "
                f"({path}): a resumed run keeps its settings; only --epochs may change")
    done = int(config.get("epoch", 0))
    if epochs is not None and epochs < done:
        raise ValueError(f"--epochs {epochs} is fewer than the {done} epochs checkpoint {path} "
                         "has already trained")
    return recipe.replace(epochs=epochs), saved["seed"], saved["data"]


def check_classes(saved, found, path, data) -> None:
    """A checkpoint's class names must be the data's (same names, same order).

    :raises ValueError: naming both lists (an empty list is not checked).
    """
    saved, found = list(saved or ()), list(found or ())
    if saved and found and saved != found:
        raise ValueError(f"checkpoint {path} was trained on {len(saved)} classes {saved}, but "
                         f"data {data} has {len(found)} classes {found}")


def train_model(recipe, data="shapes", device: str = "cpu", out_dir=None, seed: int = 0,
                resume=None, progress: bool = True, log=print, overwrite: bool = False) -> dict:
    """One full run: data, model and optimiser from ``recipe``, the loop, then the files.

    Writes into ``out_dir`` (default ``runs/<model>``): ``checkpoint.npz`` and
    ``history.csv`` (after every epoch), then ``predictions.png`` and, last,
    ``metrics.json``.

    :param recipe: a ``tinyseg.recipes.Recipe`` (a segmentation or a detection model).
    :param data: ``"shapes"`` or a VOC-/COCO-style folder (detection needs boxes: COCO-style).
    :param resume: a checkpoint to continue from (same model, recipe and classes).
    :param overwrite: replace an earlier run in ``out_dir`` (otherwise a non-empty
        ``out_dir`` is refused, unless it is the folder of the ``resume`` checkpoint).
    :raises FloatingPointError: the loss became NaN or infinite; the checkpoint of the last
        good epoch stays, and no ``metrics.json`` is written.
    :raises FileExistsError: ``out_dir`` holds files and may not be written (see above).
    :returns: the metrics dict written to ``metrics.json``: ``miou``, ``pixel_accuracy``,
        ``dice``, ``per_class_iou`` for segmentation; ``bbox_map``, ``bbox_map_50``,
        ``bbox_map_75`` (and the other ``bbox_`` keys) for detection; and for both the run's
        facts (``train_seconds``, ``epochs``, ``model``, ``seconds_per_epoch``, ``peak_rss_mb``...).
    """
    backend.check_device(device)
    if device == "gpu":
        backend.cupy_module()
    out_dir = Path(out_dir if out_dir is not None else os.path.join("runs", recipe.model))
    train_set, val_set = make_datasets(data, recipe)
    classes = list(getattr(train_set, "classes", ()))
    num_classes = len(classes) if classes else recipe.num_classes
    recipe = recipe.replace(num_classes=num_classes)
    if resume is not None:
        check_classes(load_checkpoint(resume)[1].get("classes"), classes, resume, data)
    nn.init.manual_seed(seed)
    model = build_model(recipe.model, num_classes=num_classes, **recipe.model_options)
    task = task_for(model, recipe, num_classes=num_classes, training=True)
    task.check_data(train_set, recipe.model, data)
    optimizer = make_optimizer(model, recipe)
    scheduler = make_scheduler(optimizer, recipe)
    train_loader, val_loader = make_loaders(train_set, val_set, recipe, seed)
    trainer = Trainer(
        model, optimizer, None, train_loader, val_loader,
        scheduler=scheduler, device=device, epochs=recipe.epochs, out_dir=out_dir, seed=seed,
        task=task, progress=progress, log=log,
        config={"model": recipe.model, "recipe": recipe.to_dict(), "classes": classes,
                "data": str(data)},
    )
    prepare_run_folder(out_dir, resume=resume, overwrite=overwrite)
    if resume is not None:
        trainer.resume(resume)
        log(f"resumed from {resume} at epoch {trainer.epoch}/{recipe.epochs}")
    try:
        trainer.fit()
    except FloatingPointError as error:
        kept = (f"{out_dir / 'checkpoint.npz'} holds the last good epoch ({trainer.epoch})"
                if trainer.epoch > 0 and (out_dir / "checkpoint.npz").exists()
                else "no epoch finished, so no checkpoint was written")
        raise FloatingPointError(f"{error}; {kept}") from error
    if not trainer.metrics or trainer.epoch == 0:  # nothing trained: score what we have
        trainer.metrics = trainer.evaluate()
    if trainer.epoch == 0 or not (out_dir / "checkpoint.npz").exists():
        trainer.write_history(out_dir / "history.csv")
        trainer.save(out_dir / "checkpoint.npz")
    scores = trainer.metrics
    epochs_run = max(len(trainer.history), 1)
    metrics = {"model": recipe.model, **task.metrics(scores)}
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
        "peak_rss_mb": peak_rss_mb(),
    })
    save_predictions(out_dir / "predictions.png", task, model, val_set, classes=classes,
                     device=device, title=f"{recipe.model}: {task.headline(scores)}",
                     transform=val_loader.transform)
    write_json(out_dir / "metrics.json", metrics)  # last: the run is finished
    log(f"{task.headline(scores)}  ({trainer.train_seconds:.1f}s)")
    log(f"wrote {out_dir}/metrics.json, checkpoint.npz, history.csv, predictions.png")
    return metrics


def evaluate_checkpoint(path, expected: str | None = None, data="shapes", device: str = "cpu",
                        batch_size: int | None = None, val_images: int | None = None,
                        progress: bool = True, picture=None):
    """Rebuild a saved model and score it on the val split of ``data``.

    :param picture: when given, a path where the same ``predictions.png`` as training's is drawn
        (label maps, or true and predicted boxes) from the split just scored.
    :returns: ``(metrics, model, config)``.
    :raises ValueError: a checkpoint ``load_model`` refuses, a bad recipe in it, data
        without boxes for a detector, or data whose classes are not the checkpoint's.
    """
    model, config = load_model(path, expected, device)
    recipe = checkpoint_recipe(config, path)
    recipe = recipe.replace(batch_size=batch_size, val_images=val_images)
    val_set = open_split(data, "val", recipe, cache=False)
    task = task_for(model, recipe)
    task.check_data(val_set, config["model"], data)
    check_classes(config.get("classes"), getattr(val_set, "classes", None), path, data)
    _, val_loader = make_loaders(val_set, val_set, recipe.replace(augment=False), 0)
    scores = task.evaluate(model, val_loader, device, progress=progress)
    if picture is not None:
        save_predictions(picture, task, model, val_set, classes=config.get("classes") or None,
                         device=device, title=f"{config['model']}: {task.headline(scores)}",
                         transform=val_loader.transform)
    return scores, model, config


def eval_metrics(scores, model, config, checkpoint, data) -> dict:
    """The ``metrics.json`` of ``tinyseg eval``: the scores and where they come from."""
    return {"model": config["model"], **task_for(model).metrics(scores),
            "train_seconds": config.get("train_seconds"), "epochs": config.get("epoch"),
            "classes": list(config.get("classes") or []), "checkpoint": str(checkpoint),
            "data": str(data)}
