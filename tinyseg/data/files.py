"""What the dataset folders on disk share: reading an image file, and writing samples out.

The VOC and COCO readers (``voc.py``, ``coco.py``) both turn image files into float32
(3, H, W) arrays in [0, 1], and their exporters both take the same call forms, check every
sample's id before it becomes a file name, and require the same class list across splits.
Those checks live here once, so that both folders fail in the same words: every error names
the file, the sample or the argument at fault.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = ["read_rgb", "check_classes", "image_array", "sample_id", "export_args",
           "dataset_classes"]



def read_rgb(path: Path) -> np.ndarray:
    """float32 (3, H, W) in [0, 1] from an image file; errors name the file."""
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as img:
            img.load()
            rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as err:
        raise ValueError(f"cannot read image {path}: {err}") from err
    return np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32) / np.float32(255.0)


def check_classes(classes, where: str) -> tuple[str, ...]:
    classes = tuple(str(c) for c in classes)
    if len(classes) < 2 or classes[0] != "background":
        raise ValueError(
            f"{where}: classes must start with 'background' and name at least one class, "
            f"got {classes!r}"
        )
    return classes


def image_array(sample: dict, where: str) -> np.ndarray:
    """uint8 (H, W, 3) from a sample's float (3, H, W) image in [0, 1]."""
    image = np.asarray(sample["image"])
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"{where}: image must have shape (3, H, W), got {image.shape}")
    return np.clip(np.rint(image.transpose(1, 2, 0) * 255.0), 0, 255).astype(np.uint8)


def sample_id(sample: dict, where: str, used: dict) -> str:
    sid = sample.get("id")
    if (
        not isinstance(sid, str)
        or not sid
        or sid != sid.strip()
        or any(ch in sid for ch in "/\\\n\t " + os.sep)
    ):
        raise ValueError(
            f"{where}: id must be a non-empty file stem without spaces or slashes, got {sid!r}"
        )
    if sid in used:
        raise ValueError(f"{where}: id {sid!r} is used twice (first in {used[sid]})")
    used[sid] = where
    return sid


def export_args(name: str, args: tuple, root, splits, dataset):
    """Accept (root, splits), (dataset, root) and (dataset, root, splits=...) call forms."""
    args = list(args)
    if args and not isinstance(args[0], (str, os.PathLike)):
        dataset = args.pop(0)
    if args:
        root = args.pop(0)
    if args:
        splits = args.pop(0)
    if args:
        raise TypeError(f"{name}() takes root and splits (or dataset, root), got extra arguments")
    if root is None:
        raise TypeError(f"{name}() needs root, the folder to write")
    splits = dict(splits or {})
    if dataset is not None:
        if "train" in splits and splits["train"] is not dataset:
            raise ValueError(f"{name}(): dataset and splits['train'] are both given and differ")
        splits.setdefault("train", dataset)
    if not splits:
        raise ValueError(f"{name}(): splits must map split names to datasets, got nothing to write")
    for split, ds in splits.items():
        if not isinstance(split, str) or not split or "/" in split:
            raise ValueError(f"{name}(): split names must be plain strings, got {split!r}")
        if not hasattr(ds, "__len__") or not hasattr(ds, "__getitem__"):
            raise TypeError(f"{name}(): splits[{split!r}] must be a dataset, got {ds!r}")
    return Path(root), splits


def dataset_classes(name: str, splits: dict) -> tuple[str, ...]:
    classes = None
    for split, ds in splits.items():
        if not hasattr(ds, "classes"):
            raise ValueError(f"{name}(): splits[{split!r}] has no .classes")
        these = check_classes(ds.classes, f"{name}(): splits[{split!r}].classes")
        if classes is not None and these != classes:
            raise ValueError(f"{name}(): splits[{split!r}].classes {these} differ from {classes}")
        classes = these
    return classes
