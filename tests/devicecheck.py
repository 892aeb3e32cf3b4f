"""What one training step and one evaluation batch cost on the device: launches, syncs, copies.

Used by the budget tests (``test_device_budgets.py``) and by ``benchmarks/device_counts.py``.
Needs the strict simulated device installed as ``cupy`` (``strict_device.install()``) before
tinyseg is imported.
"""

from __future__ import annotations

import strict_device

from tinyseg import engine, nn
from tinyseg.models import build_model
from tinyseg.recipes import default_recipe


def _setup(model_name, batch_size, image_size, seed=0):
    recipe = default_recipe(model_name, fast=True).replace(
        batch_size=batch_size, image_size=image_size, train_images=batch_size,
        val_images=batch_size)
    train_set, val_set = engine.make_datasets("shapes", recipe)
    nn.init.manual_seed(seed)
    model = build_model(recipe.model, num_classes=recipe.num_classes, **recipe.model_options)
    model.to("gpu")
    optimizer = engine.make_optimizer(model, recipe)
    loss_fn = None if engine.is_detection(model) else engine.SegmentationLoss(
        recipe.ignore_index, recipe.dice_weight)
    train_loader, val_loader = engine.make_loaders(train_set, val_set, recipe, seed)
    trainer = engine.Trainer(model, optimizer, loss_fn, train_loader, val_loader, device="gpu",
                             epochs=1, num_classes=recipe.num_classes, progress=False,
                             log=lambda *a: None)
    return trainer, next(iter(train_loader))


def step_counts(model_name, batch_size=2, image_size=None, steps=2):
    """Counts of the last of ``steps`` training steps (the first warms the caches).

    A step is what ``Trainer.train_one_epoch`` does per batch: the copy to the device, the
    forward, zero_grad, backward, the optimiser step and the loss read for the log.
    """
    trainer, host_batch = _setup(model_name, batch_size, image_size)
    trainer.model.train()
    for _ in range(steps):
        with strict_device.counting() as counts:
            trainer.train_step(engine.batch_to_device(host_batch, "gpu"))
    return counts


def eval_counts(model_name, batch_size=2, image_size=None):
    """Counts of evaluating one validation batch (the model's predictions and the scores)."""
    trainer, _ = _setup(model_name, batch_size, image_size)
    trainer.evaluate()  # warm-up
    with strict_device.counting() as counts:
        trainer.evaluate()
    return counts
