"""Default training recipes: one per model, the settings ``tinyseg train MODEL`` uses.

A recipe is everything about a run except the code: how long to train, on how
many images of which size, with which optimiser, schedule, augmentation and
loss. Command-line flags override single fields (``--epochs``, ``--lr``, ...);
``Recipe.to_dict()`` is stored in the checkpoint, so a saved run says exactly
how it was made.

Each default is meant to reach its model's quality target on the built-in
shapes data on a 2-core CPU: segmentation within 5 minutes
(``benchmarks/segmentation.py``), detection within 10 (``benchmarks/detection.py``).

``TINYSEG_FAST=1`` (set in CI and by the tests) shrinks the recipe, fewer epochs
and images, but keeps every other setting, so the same code path runs.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from dataclasses import dataclass, field

from .models import check_model_name


@dataclass
class Recipe:
    """The settings of one training run.

    :ivar model: registry name (``unet``, ``fcn8s``, ...).
    :ivar model_options: extra constructor arguments for the model (widths, modes).
    :ivar epochs: passes over the training images.
    :ivar batch_size: images per step.
    :ivar lr: the peak learning rate (the cosine schedule starts there).
    :ivar optimizer: ``"adam"``, ``"adamw"`` or ``"sgd"`` (SGD uses ``momentum``, Nesterov).
    :ivar momentum: SGD momentum.
    :ivar weight_decay: L2 penalty (decoupled for AdamW).
    :ivar schedule: ``"cosine"`` (to ``lr * min_lr_ratio`` at the last epoch) or ``"constant"``.
    :ivar min_lr_ratio: the final learning rate as a fraction of ``lr``.
    :ivar image_size: side of the square synthetic images (built-in data).
    :ivar train_images: training images drawn from the synthetic scenes.
    :ivar val_images: validation images (the val split, disjoint from train).
    :ivar augment: random flip and scale-crop on the training images.
    :ivar dice_weight: the loss is ``cross_entropy + dice_weight * dice_loss`` (0: CE only).
    :ivar ignore_index: the label left out of the loss and the metrics.
    :ivar num_classes: classes including background (4 for the shapes scenes).
    :ivar max_objects: the built-in scenes hold 1 to ``max_objects`` objects (1 for the
        single-object classification + localisation model).
    """

    model: str
    model_options: dict = field(default_factory=dict)
    epochs: int = 10
    batch_size: int = 16
    lr: float = 3e-3
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "cosine"
    min_lr_ratio: float = 0.02
    image_size: int = 64
    train_images: int = 1000
    val_images: int = 200
    augment: bool = True
    dice_weight: float = 0.0
    ignore_index: int = 255
    num_classes: int = 4
    max_objects: int = 4

    def to_dict(self) -> dict:
        """A JSON-able copy (the checkpoint's ``"recipe"`` entry)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> Recipe:
        """Rebuild from ``to_dict()``; unknown keys (from newer versions) are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    def replace(self, **changes) -> Recipe:
        """A copy with some fields changed; ``None`` values leave a field as it is."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


# Tuned on the 2-core CPU with benchmarks/segmentation.py (one BLAS thread per run). What mattered,
# for every model: batches of 8 instead of 16 (twice the updates for about the same cost per
# image), no flip/scale-crop augmentation (the generator already draws 2000 fresh random scenes,
# and the crops' padding and rescaling only slowed learning: U-Net of width 16, batch 8, after 6
# of 8 epochs, 0.928 with it and 0.958 without), and a Dice term of weight 0.5 (the three shapes
# are small next to the background).
_SHARED = dict(batch_size=8, augment=False, dice_weight=0.5, lr=5e-3, train_images=2000)
_DEFAULTS = {
    # base width 12: 0.86 after 2 epochs where width 8 had 0.71; width 16 costs 80 s an epoch
    "unet": dict(_SHARED, model_options={"base_width": 12}, epochs=5),
    # three stages (bottleneck 8x8) learned faster than four, (8, 16, 32, 32): 0.90 vs 0.88
    "segnet": dict(_SHARED, model_options={"widths": (8, 16, 32)}, epochs=10, lr=1e-2),
    "deeplab": dict(_SHARED, epochs=9),
    # FCNs: a learned final upsample (the paper fixes it to bilinear) and lr 1e-2: 0.83 -> 0.86
    **{name: dict(_SHARED, model_options={"learn_final_upsample": True}, epochs=11, lr=1e-2)
       for name in ("fcn8s", "fcn16s", "fcn32s")},
}

# Detection: 128x128 scenes (the size), the same loop; the model computes its own loss.
_DETECTION = dict(batch_size=8, augment=False, dice_weight=0.0, lr=2e-3, image_size=128,
                  train_images=2000, weight_decay=0.0)
_DEFAULTS.update({
    # 10 epochs at lr 2e-3 gave mAP@50 0.856; 16 at 3e-3 0.880 (20 at 2e-3 overfit: 0.87 -> 0.85)
    "yolo": dict(_DETECTION, epochs=16, lr=3e-3),
    # mAP@50 0.90 after 3 of 10 epochs and 0.96 after 10; 6 keeps a wide margin in half the time
    "retinanet": dict(_DETECTION, epochs=6),
    # one object per image: the lecture's regressor has one box to give
    # lr 1e-3: at 2e-3 and above its class loss can sit at log 3 for hundreds of steps
    "classloc": dict(_DETECTION, epochs=6, max_objects=1, lr=1e-3),
    # box mAP@50 0.94 after 3 of 8 epochs (0.95 after 7); 6 keeps the margin
    "fasterrcnn": dict(_DETECTION, epochs=6),
    # the mask head makes a step ~2x dearer; box 0.91 and mask 0.88 mAP@50 after 2 of 8 epochs
    "maskrcnn": dict(_DETECTION, epochs=8),
})

# What TINYSEG_FAST=1 changes: a smoke-test-sized run of the same recipe.
FAST = dict(epochs=2, train_images=64, val_images=16)


def fast_mode() -> bool:
    """True when the environment variable ``TINYSEG_FAST`` is ``1``."""
    return os.environ.get("TINYSEG_FAST") == "1"


def default_recipe(model: str, fast: bool | None = None) -> Recipe:
    """The default recipe of ``model``; shrunk as ``FAST`` says when ``fast`` (default: env).

    :raises ValueError: an unknown model name (the message lists the valid ones).
    """
    check_model_name(model)
    recipe = Recipe(model=model, **copy.deepcopy(_DEFAULTS[model]))  # callers may edit options
    if fast is None:
        fast = fast_mode()
    if fast:
        recipe = recipe.replace(**{k: min(v, getattr(recipe, k)) for k, v in FAST.items()})
    return recipe


RECIPES = tuple(_DEFAULTS)

__all__ = ["FAST", "RECIPES", "Recipe", "default_recipe", "fast_mode"]
