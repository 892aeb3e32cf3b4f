"""Data: the built-in synthetic scenes, readers for folders on disk, transforms and the loader.

Every dataset returns the same sample dict of numpy arrays (the data lives on the host; the engine
moves batches to the device itself):

- "image": float32 (3, H, W) in [0, 1]
- "mask": int64 (H, W), 0 = background, 1..K-1 = classes, 255 = ignore
- "instance_masks": bool (M, H, W), possibly (0, H, W)
- "boxes": float32 (M, 4), xyxy pixels, the tight box of the instance's visible pixels
- "labels": int64 (M,), the class of each instance
- "id": str

and has ``.classes`` (names, index 0 "background") and ``len()``.

:func:`open_dataset` turns a ``--data`` value ("shapes" or a folder) into a dataset.
"""

from __future__ import annotations

import os

from .loader import DataLoader, collate
from .shapes import CLASSES, ShapesDataset, masks_to_boxes, render_scene
from .transforms import Compose, Normalize, RandomHorizontalFlip, RandomScaleCrop, Resize

# Readers for folders on disk live in their own modules and load on first use.
_LAZY = {
    "VOCSegmentation": "voc",
    "export_voc": "voc",
    "COCODataset": "coco",
    "export_coco": "coco",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module = importlib.import_module(f"{__name__}.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_dataset(spec, split, **kw):
    """The dataset named by ``spec`` (the CLI's ``--data`` value) for ``split``.

    :param spec: "shapes" for :class:`ShapesDataset`, or a folder: a VOC-style folder (it has
        ``JPEGImages/``) gives ``VOCSegmentation``, a COCO-style folder (it has ``annotations/``)
        gives ``COCODataset``.
    :param split: "train" or "val".
    :param kw: passed on to the dataset's constructor (e.g. ``transform``; for shapes also
        ``size``, ``num_images``, ``seed``, ``max_objects``).
    :raises ValueError: when ``spec`` is neither "shapes" nor such a folder; the message names the
        path and what was expected.
    """
    if isinstance(spec, str) and spec == "shapes":
        return ShapesDataset(split=split, **kw)
    if not isinstance(spec, (str, os.PathLike)):
        raise TypeError(f"spec must be 'shapes' or a folder path, got {spec!r}")
    path = os.fspath(spec)
    if not os.path.isdir(path):
        what = "does not exist" if not os.path.exists(path) else "is not a folder"
        raise ValueError(
            f"data {path!r} {what}: expected 'shapes' or a folder with JPEGImages/ (VOC-style) "
            f"or annotations/ (COCO-style)"
        )
    if os.path.isdir(os.path.join(path, "JPEGImages")):
        from .voc import VOCSegmentation

        return VOCSegmentation(path, split=split, **kw)
    if os.path.isdir(os.path.join(path, "annotations")):
        from .coco import COCODataset

        return COCODataset(path, split=split, **kw)
    raise ValueError(
        f"data folder {path!r} has neither JPEGImages/ (VOC-style) nor annotations/ (COCO-style)"
    )


__all__ = [
    "CLASSES",
    "Compose",
    "DataLoader",
    "Normalize",
    "RandomHorizontalFlip",
    "RandomScaleCrop",
    "Resize",
    "ShapesDataset",
    "collate",
    "masks_to_boxes",
    "open_dataset",
    "render_scene",
]
