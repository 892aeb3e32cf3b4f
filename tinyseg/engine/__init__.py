"""Training and evaluation: one loop for every model.

The lesson in fifteen lines: the loop every model in tinyseg trains with (``Trainer.fit``)::

    task = task_for(model)                   # SegmentationTask or DetectionTask
    for epoch in range(start, epochs):
        seed_everything(seed, epoch)         # dropout masks: fixed per (seed, epoch)
        train_loader.set_epoch(epoch)        # a new shuffle, also fixed by (seed, epoch)
        model.train()
        for batch in train_loader:           # host arrays
            batch = batch_to_device(batch, device)          # the one explicit copy
            loss, terms = task.training_loss(model, batch)
            optimizer.zero_grad(); loss.backward(); optimizer.step()
        scheduler.step()                     # once per epoch
        scores = task.evaluate(model, val_loader, device)   # eval mode, no_grad
        row = {"epoch": epoch + 1, "train_loss": ..., **task.history_entries(scores)}
        history.append(row)                  # then history.csv and checkpoint.npz
        log(task.summary(row))

What differs between segmentation and detection is not a line of this loop but
the *task object*, chosen by the model's ``task`` attribute: ``tasks.py`` tables
its methods (``training_loss``, ``evaluate``, ``history_entries``, ``summary``, ...)
for both tasks.

The package, in reading order:

* ``evaluate.py``: ``evaluate``, ``predict``, ``evaluate_detection``, ``predict_detections``
  and the small pieces (``batch_to_device``, ``evaluating``, ``batch_targets``): plain
  functions a notebook can call on their own.
* ``tasks.py``: ``SegmentationLoss``, ``SegmentationTask``, ``DetectionTask``, ``task_for``.
* ``loop.py``: ``Trainer`` (the loop above, history, checkpoints, resume) and
  ``seed_everything``.
* ``run.py``: ``train_model`` (what ``tinyseg train`` runs: recipe -> data, model, optimiser,
  loop, files), the factories ``make_optimizer``, ``make_scheduler``, ``make_datasets``,
  ``make_loaders``, ``evaluate_checkpoint`` (what ``tinyseg eval`` runs), and what a
  checkpoint says about its run (``checkpoint_recipe``, ``resume_settings``,
  ``check_classes``).
* ``runfolder.py``: the run folder: which files, in which order, and
  ``prepare_run_folder`` (may this run write here?).

Checkpoint files, the optimiser's state in them and ``load_model`` live in
``tinyseg.checkpoint``; the pictures in ``tinyseg.viz``, which receives predictions
and never runs a model.
"""

from ..checkpoint import (
    OPTIMIZER_PREFIX,
    join_optimizer_state,
    jsonable,
    load_model,
    split_checkpoint_arrays,
    split_optimizer_state,
    write_json,
)
from .evaluate import (
    batch_targets,
    batch_to_device,
    center_crop,
    evaluate,
    evaluate_detection,
    evaluate_segmentation,
    evaluating,
    is_detection,
    predict,
    predict_detections,
)
from .loop import Trainer, seed_everything
from .run import (
    CachedDataset,
    check_classes,
    checkpoint_recipe,
    eval_metrics,
    evaluate_checkpoint,
    make_datasets,
    make_loaders,
    make_optimizer,
    make_scheduler,
    open_split,
    resume_settings,
    save_predictions,
    train_model,
)
from .runfolder import RUN_FILES, prepare_run_folder, remove_orphans
from .tasks import (
    DETECTION_HISTORY_FIELDS,
    HISTORY_FIELDS,
    MASK_HISTORY_FIELDS,
    TASKS,
    DetectionTask,
    SegmentationLoss,
    SegmentationTask,
    headline,
    task_for,
    task_scores,
)

__all__ = [
    "DETECTION_HISTORY_FIELDS",
    "HISTORY_FIELDS",
    "MASK_HISTORY_FIELDS",
    "OPTIMIZER_PREFIX",
    "RUN_FILES",
    "TASKS",
    "CachedDataset",
    "DetectionTask",
    "SegmentationLoss",
    "SegmentationTask",
    "Trainer",
    "batch_targets",
    "batch_to_device",
    "center_crop",
    "check_classes",
    "checkpoint_recipe",
    "eval_metrics",
    "evaluate",
    "evaluate_checkpoint",
    "evaluate_detection",
    "evaluate_segmentation",
    "evaluating",
    "headline",
    "is_detection",
    "join_optimizer_state",
    "jsonable",
    "load_model",
    "make_datasets",
    "make_loaders",
    "make_optimizer",
    "make_scheduler",
    "open_split",
    "predict",
    "predict_detections",
    "prepare_run_folder",
    "remove_orphans",
    "resume_settings",
    "save_predictions",
    "seed_everything",
    "split_checkpoint_arrays",
    "split_optimizer_state",
    "task_for",
    "task_scores",
    "train_model",
    "write_json",
]
