"""Parity per model family: the same weights and batch give the same loss and gradients on
NumPy and on the device under test (the strict simulated device without a GPU).

float64 agrees to 1e-10 and float32 to 1e-5 (relative to the largest gradient): the device runs
the same formulas, so any larger gap is a bug, such as a step that reads a different random
stream or an op that takes another path on the device. Dropout is switched off: it draws
from the random stream of its input's device, and CuPy's differs from NumPy's (the strict
device's too).
"""

from __future__ import annotations

import numpy
import pytest
from conftest import DEVICE_BACKEND

from tinyseg import backend, engine, nn
from tinyseg.models import build_model
from tinyseg.recipes import default_recipe

pytestmark = [pytest.mark.gpu, DEVICE_BACKEND]

FAMILIES = ["unet", "deeplab", "yolo", "retinanet", "maskrcnn"]  # seg, one-stage, two-stage


def _loss_and_grads(name, device, dtype):
    recipe = default_recipe(name, fast=True).replace(batch_size=2, train_images=2,
                                                     val_images=2)
    train_set, val_set = engine.make_datasets("shapes", recipe)
    nn.init.manual_seed(0)
    model = build_model(name, num_classes=recipe.num_classes, **recipe.model_options)
    model.to(device, dtype=dtype)
    model.train()
    for module in model.modules():  # dropout draws from each device's own random stream
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    loss_fn = None if engine.is_detection(model) else engine.SegmentationLoss(
        recipe.ignore_index, recipe.dice_weight)
    train_loader, val_loader = engine.make_loaders(train_set, val_set, recipe, 0)
    trainer = engine.Trainer(model, nn_optimizer(model), loss_fn, train_loader, val_loader,
                             device=device, epochs=1, progress=False, log=lambda *a: None)
    batch = next(iter(train_loader))
    batch = dict(batch, image=batch["image"].astype(dtype))
    engine.seed_everything(0, 0, device)
    loss, _ = trainer.training_loss(engine.batch_to_device(batch, device))
    loss.backward()
    grads = {k: backend.to_numpy(p.grad) for k, p in model.named_parameters()
             if p.grad is not None}
    return float(backend.to_numpy(loss.data)), grads


def nn_optimizer(model):
    from tinyseg.optim import SGD

    return SGD(model.parameters(), lr=0.0)


@pytest.mark.parametrize("dtype, tol", [("float64", 1e-10), ("float32", 1e-5)])
@pytest.mark.parametrize("name", FAMILIES)
def test_same_loss_and_gradients_on_numpy_and_the_device(name, dtype, tol):
    loss_cpu, grads_cpu = _loss_and_grads(name, "cpu", dtype)
    loss_gpu, grads_gpu = _loss_and_grads(name, "gpu", dtype)
    assert abs(loss_cpu - loss_gpu) <= tol * max(1.0, abs(loss_cpu))
    assert grads_cpu.keys() == grads_gpu.keys() and grads_cpu
    for key in grads_cpu:
        scale = max(1.0, float(numpy.abs(grads_cpu[key]).max()))
        assert numpy.abs(grads_cpu[key] - grads_gpu[key]).max() <= tol * scale, key
