"""What the dataset folders on disk share: reading an image file, and writing samples out.

The VOC and COCO readers (``voc.py``, ``coco.py``) both turn image files into float32
(3, H, W) arrays in [0, 1], and their exporters both take the same call forms, check every
sample's id before it becomes a file name, and require the same class list across splits.
Those checks live here once, so that both folders fail in the same words: every error names
the file, the sample or the argument at fault.

:func:`read_rgb_uint8` is the one image reader (the CLI's ``predict`` uses it too). Its one
piece of arithmetic is 16-bit images: a 16-bit value $v \\in [0, 65535]$ becomes the 8-bit
$v \\gg 8 = \\lfloor v / 256 \\rfloor$, its high byte, as Pillow does for 16-bit RGB.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = ["read_rgb", "read_rgb_uint8", "check_classes", "image_array", "sample_id",
           "export_args", "dataset_classes"]

# Pillow modes that hold more than 8 bits per pixel; convert("RGB") clips them at 255, which
# turns a 16-bit photo white, so they are scaled down here first.
_WIDE_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "I;16S", "I;16BS", "I;16LS")


def _wide_to_rgb_uint8(values: np.ndarray, mode: str, path: Path) -> np.ndarray:
    """uint8 (H, W, 3) from a 16-bit greyscale image's values: the high byte, v >> 8."""
    values = values.astype(np.int64)
    if values.size and (values.min() < 0 or values.max() > 65535):
        raise ValueError(
            f"cannot read image {path}: mode {mode!r} with values "
            f"{values.min()}..{values.max()}, outside the 16-bit range 0..65535"
        )
    grey = (values >> 8).astype(np.uint8)  # 65535 -> 255, and 257 * k -> k for k in 0..255
    return np.repeat(grey[..., None], 3, axis=-1)


def read_rgb_uint8(path) -> np.ndarray:
    """uint8 (H, W, 3) RGB from an image file; the one image reader of tinyseg.

    Every mode Pillow opens comes out as RGB: palette and 1-bit images through their colours,
    CMYK converted, an alpha channel dropped, greyscale repeated in the three channels.
    **16-bit images** (PNG greyscale, modes ``"I;16"``, ``"I"``, ...) keep their high byte,
    ``value >> 8``, so 0..65535 maps onto 0..255 (65535 -> 255, and a 16-bit file made from an
    8-bit one by ``v * 257`` gives back ``v`` exactly). Pillow reads 16-bit RGB PNGs the same
    way. Plain ``convert("RGB")`` would clip every value above 255 to white instead.

    Errors name the file: FileNotFoundError when there is no file, IsADirectoryError for a
    folder, ValueError for a file that is not a readable image (empty, truncated, corrupt,
    float-valued) or one larger than Pillow's decompression-bomb limit,
    ``PIL.Image.MAX_IMAGE_PIXELS`` (raise that limit yourself if you trust the file).
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"image path is a folder, not a file: {path}")
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode in _WIDE_MODES:  # 16-bit greyscale (a 32-bit "I" must hold 16-bit values)
                values = np.asarray(img)
            elif mode != "F":  # palette, CMYK, alpha, 1-bit, ...: Pillow's own conversion
                rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
    except Image.DecompressionBombError as err:
        raise ValueError(
            f"image {path} is too large to read safely ({err}); if you trust the file, raise "
            "PIL.Image.MAX_IMAGE_PIXELS"
        ) from err
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as err:
        raise ValueError(f"cannot read image {path}: {err}") from err
    if mode == "F":  # 32-bit float: no agreed scale (0..1? 0..255?), so say so
        raise ValueError(
            f"cannot read image {path}: mode 'F' (32-bit float) has no agreed range; "
            "save it as an 8- or 16-bit image"
        )
    if mode in _WIDE_MODES:
        return _wide_to_rgb_uint8(values, mode, path)
    return rgb


def read_rgb(path) -> np.ndarray:
    """float32 (3, H, W) in [0, 1] from an image file (:func:`read_rgb_uint8`, divided by 255)."""
    rgb = read_rgb_uint8(path)
    return np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32) / np.float32(255.0)


def check_classes(classes, where: str) -> tuple[str, ...]:
    classes = tuple(str(c) for c in classes)
    if len(classes) < 2 or classes[0] != "background":
        raise ValueError(
            f"{where}: classes must start with 'background' and name at least one class, "
            f"got {classes!r}"
        )
    twice = sorted({c for c in classes if classes.count(c) > 1})
    if twice:
        raise ValueError(f"{where}: class names must differ, got {twice} more than once")
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
