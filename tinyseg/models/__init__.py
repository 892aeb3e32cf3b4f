"""The models, segmentation and detection, and the registry that names them.

``MODELS`` maps each command-line name to its class::

    fcn32s, fcn16s, fcn8s   FCN32s, FCN16s, FCN8s   (models/fcn.py)
    unet                    UNet                    (models/unet.py)
    segnet                  SegNet                  (models/segnet.py)
    deeplab                 DeepLab                 (models/deeplab.py)
    yolo                    YOLOv1                  (models/yolo.py)
    classloc                ClassLocNet             (models/classloc.py)
    retinanet               RetinaNet               (models/retinanet.py)
    fasterrcnn              FasterRCNN              (models/rcnn.py)
    maskrcnn                MaskRCNN                (models/rcnn.py)

Every model is an ``nn.Module`` built as ``Model(num_classes=4, in_channels=3,
**options)`` (``num_classes`` counts the background), and ``config()`` returns the
constructor arguments, so that ``build_model(name, **model.config())`` rebuilds
it from a checkpoint.

* A segmentation model's ``forward(x)`` returns logits (N, num_classes, H_out, W_out), and
  ``output_size(h, w)`` gives (H_out, W_out).
* A detection model (class attribute ``task = "detection"``: yolo, classloc, retinanet,
  fasterrcnn, maskrcnn) follows torchvision: ``model(images, targets)`` returns a dict of loss
  terms in training mode, ``model(images)`` one ``{"boxes", "scores", "labels"}`` dict per
  image in eval mode (Mask R-CNN adds ``"masks"``);
  ``output_size(h, w)`` gives the size of its feature grid.

The classes are imported on first use (``MODELS["unet"]``), so importing
``tinyseg.models`` stays cheap and works even while one model file is missing.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

# name -> (module inside tinyseg.models, class name)
_WHERE = {
    "fcn32s": ("fcn", "FCN32s"),
    "fcn16s": ("fcn", "FCN16s"),
    "fcn8s": ("fcn", "FCN8s"),
    "unet": ("unet", "UNet"),
    "segnet": ("segnet", "SegNet"),
    "deeplab": ("deeplab", "DeepLab"),
    "yolo": ("yolo", "YOLOv1"),
    "classloc": ("classloc", "ClassLocNet"),
    "retinanet": ("retinanet", "RetinaNet"),
    "fasterrcnn": ("rcnn", "FasterRCNN"),
    "maskrcnn": ("rcnn", "MaskRCNN"),
}


class _Registry(Mapping):
    """A read-only dict name -> model class that imports each class when first asked for."""

    def __getitem__(self, name):
        if name not in _WHERE:
            raise KeyError(name)
        module, cls = _WHERE[name]
        return getattr(importlib.import_module(f"{__name__}.{module}"), cls)

    def __iter__(self):
        return iter(_WHERE)

    def __len__(self):
        return len(_WHERE)

    def __repr__(self):
        return f"MODELS({', '.join(_WHERE)})"


MODELS = _Registry()


def check_model_name(name: str) -> str:
    """Return ``name`` if it is a registered model, else raise ValueError listing them."""
    if name not in _WHERE:
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(_WHERE)}")
    return name


def build_model(name: str, **config):
    """Build the model called ``name`` with constructor arguments ``config``.

    :param name: one of ``MODELS`` (see the module docstring).
    :param config: keyword arguments for the class, e.g. ``num_classes=4``.
    :raises ValueError: an unknown name (the message lists the valid ones).
    """
    return MODELS[check_model_name(name)](**config)


def __getattr__(attr):  # `from tinyseg.models import UNet` also imports lazily
    for name, (_module, cls) in _WHERE.items():
        if cls == attr:
            return MODELS[name]
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


__all__ = ["MODELS", "build_model", "check_model_name"]
