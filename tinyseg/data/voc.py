"""PASCAL VOC-style segmentation folders: a reader and a writer.

The layout (only the parts semantic segmentation needs)::

    root/
      JPEGImages/<id>.jpg            RGB photos
      SegmentationClass/<id>.png     palette PNGs: pixel value = class index, 255 = ignore
      ImageSets/Segmentation/train.txt   one <id> per line
      ImageSets/Segmentation/val.txt
      classes.txt                    optional: one class name per line, "background" first

A *palette* PNG stores one byte per pixel plus a table of 256 colours. Image viewers show the
colours; :class:`VOCSegmentation` reads the bytes, which are the class indices. VOC draws a
255 ("void") border round every object, which the metrics ignore. Greyscale ("L") PNGs with
the same values are accepted too.

Without ``classes.txt`` the folder is taken to use the 21 PASCAL VOC classes
(:data:`VOC_CLASSES`). :func:`export_voc` always writes ``classes.txt``.

Every problem with a folder raises an error whose message names the file at fault: a missing
file, an id listed twice, a mask that is not a palette/greyscale PNG, of another size than its
image, or holding a value that is neither a class index nor 255.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .base import SampleDataset, check_transform
from .files import check_classes, dataset_classes, export_args, image_array, read_rgb, sample_id

__all__ = ["VOCSegmentation", "VOC_CLASSES", "export_voc", "voc_colormap"]

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip

IGNORE_INDEX = 255


def voc_colormap(n: int = 256) -> np.ndarray:
    """The standard VOC colour map: uint8 (n, 3), entry i is the colour of class i.

    The bits of i are dealt out in turn to red, green and blue, most significant bit first, so
    neighbouring classes get very different colours: 1 -> (128, 0, 0), 2 -> (0, 128, 0),
    15 (person) -> (192, 128, 128), 255 (ignore) -> (224, 224, 192).
    """
    cmap = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        c, rgb = i, [0, 0, 0]
        for bit in range(8):
            for ch in range(3):
                rgb[ch] |= ((c >> ch) & 1) << (7 - bit)
            c >>= 3
        cmap[i] = rgb
    return cmap


# --------------------------------------------------------------------------- reader


class VOCSegmentation(SampleDataset):
    """A VOC-style segmentation folder as a dataset of sample dicts.

    :param root: the folder holding ``JPEGImages/``, ``SegmentationClass/`` and
        ``ImageSets/Segmentation/``.
    :param split: the list to read, ``ImageSets/Segmentation/<split>.txt`` ("train", "val", ...).
    :param transform: optional callable ``t(sample, rng) -> sample``. Its Generator is seeded by
        the index, so ``dataset[i]`` is always the same; for fresh augmentations every epoch give
        the transform to the DataLoader instead.

    ``dataset[i]`` returns "image" float32 (3, H, W) in [0, 1], "mask" int64 (H, W) (class
    indices, 255 = ignore), "instance_masks" bool (0, H, W), "boxes" float32 (0, 4), "labels"
    int64 (0,) (VOC's class masks carry no instances) and "id" (the file stem).

    The constructor checks that the folders, the split file, and every listed image and mask
    exist; reading a sample checks the files themselves. Each error names the file.
    """

    #: No instances, so no boxes: a detector cannot learn from these samples.
    has_boxes = False

    def __init__(self, root, split: str = "train", transform=None):
        self.root = Path(root)
        if not isinstance(split, str) or not split:
            raise ValueError(f"split must be a split name such as 'train', got {split!r}")
        self.split = split
        self.transform = check_transform(transform)
        if not self.root.is_dir():
            raise FileNotFoundError(f"VOC root folder not found: {self.root}")
        self.image_dir = self.root / "JPEGImages"
        self.mask_dir = self.root / "SegmentationClass"
        sets_dir = self.root / "ImageSets" / "Segmentation"
        for folder in (self.image_dir, self.mask_dir, sets_dir):
            if not folder.is_dir():
                raise FileNotFoundError(
                    f"folder not found: {folder} (a VOC-style folder has JPEGImages/, "
                    "SegmentationClass/ and ImageSets/Segmentation/)"
                )
        self.split_file = sets_dir / f"{split}.txt"
        if not self.split_file.is_file():
            known = sorted(p.stem for p in sets_dir.glob("*.txt"))
            raise FileNotFoundError(
                f"split file not found: {self.split_file} (split {split!r}; this folder has "
                f"{known or 'no split files'})"
            )
        self.classes = self._read_classes()
        self.ids = self._read_ids()

    def _read_classes(self) -> tuple[str, ...]:
        path = self.root / "classes.txt"
        if not path.exists():
            return VOC_CLASSES
        try:
            names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        except (OSError, UnicodeDecodeError) as err:
            raise ValueError(f"cannot read {path}: {err}") from err
        names = [n for n in names if n]
        return check_classes(names, str(path))

    def _read_ids(self) -> list[str]:
        try:
            lines = self.split_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise ValueError(f"cannot read split file {self.split_file}: {err}") from err
        ids, first_line = [], {}
        for lineno, line in enumerate(lines, start=1):
            tokens = line.split()
            if not tokens:
                continue
            if len(tokens) > 1:
                raise ValueError(
                    f"{self.split_file}, line {lineno}: expected one image id, got {line.strip()!r}"
                )
            sid = tokens[0]
            if sid in first_line:  # read twice, it would count twice in every metric
                raise ValueError(
                    f"{self.split_file}, line {lineno}: id {sid!r} is already listed on line "
                    f"{first_line[sid]}"
                )
            first_line[sid] = lineno
            for path in (self.image_dir / f"{sid}.jpg", self.mask_dir / f"{sid}.png"):
                if not path.is_file():
                    raise FileNotFoundError(
                        f"file not found: {path} (id {sid!r}, {self.split_file} line {lineno})"
                    )
            ids.append(sid)
        if not ids:
            raise ValueError(f"split file {self.split_file} lists no image ids")
        return ids

    def __len__(self) -> int:
        return len(self.ids)

    def _read_mask(self, path: Path, image_path: Path, hw: tuple[int, int]) -> np.ndarray:
        try:
            with Image.open(path) as img:
                img.load()
                fmt, mode, size = img.format, img.mode, img.size
                mask = np.asarray(img, dtype=np.uint8) if mode in ("P", "L") else None
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as err:
            raise ValueError(f"cannot read mask {path}: {err}") from err
        if fmt != "PNG" or mode not in ("P", "L"):
            raise ValueError(
                f"mask {path} must be a palette (mode 'P') or greyscale (mode 'L') PNG whose "
                f"pixel values are class indices; it is a {fmt} image in mode {mode!r}"
            )
        if (size[1], size[0]) != hw:
            raise ValueError(
                f"mask {path} is {size[0]}x{size[1]} (WxH) but its image {image_path} is "
                f"{hw[1]}x{hw[0]}"
            )
        bad = np.setdiff1d(np.unique(mask), [*range(len(self.classes)), IGNORE_INDEX])
        if bad.size:
            raise ValueError(
                f"mask {path} holds values {bad.tolist()} that are neither a class index "
                f"(0..{len(self.classes) - 1}) nor {IGNORE_INDEX} (ignore)"
            )
        return mask.astype(np.int64)

    def load(self, i: int) -> dict:
        sid = self.ids[i]
        image_path = self.image_dir / f"{sid}.jpg"
        image = read_rgb(image_path)
        h, w = image.shape[1:]
        mask = self._read_mask(self.mask_dir / f"{sid}.png", image_path, (h, w))
        sample = {
            "image": image,
            "mask": mask,
            "instance_masks": np.zeros((0, h, w), dtype=bool),
            "boxes": np.zeros((0, 4), dtype=np.float32),
            "labels": np.zeros((0,), dtype=np.int64),
            "id": sid,
        }
        return sample

    def _repr_fields(self) -> dict:
        return {"root": str(self.root), "split": self.split, "images": len(self),
                "classes": len(self.classes)}  # fmt: skip


# --------------------------------------------------------------------------- writer


def export_voc(*args, root=None, splits=None, dataset=None) -> Path:
    """Write datasets of sample dicts as a VOC-style folder that :class:`VOCSegmentation` reads.

    Call it as ``export_voc(root, {"train": ds1, "val": ds2})``,
    ``export_voc(root, splits={...})``, or ``export_voc(dataset, root)`` (one "train" split).

    :param root: the folder to write (created if needed; existing files of the same names are
        overwritten).
    :param splits: split name -> dataset. The datasets must share ``.classes``; sample ids must be
        unique across all splits because the splits share ``JPEGImages/``.
    :param dataset: a single dataset, written as the "train" split.
    :return: the root folder as a Path.

    Images go to JPEG at quality 95 with no chroma subsampling (so colours stay sharp at object
    edges; expect a pixel error of a few 1/255). Masks go to palette PNGs with the VOC colour
    map, written losslessly. ``classes.txt`` holds the class names.
    """
    root, splits = export_args("export_voc", args, root, splits, dataset)
    classes = dataset_classes("export_voc", splits)
    image_dir = root / "JPEGImages"
    mask_dir = root / "SegmentationClass"
    sets_dir = root / "ImageSets" / "Segmentation"
    for folder in (image_dir, mask_dir, sets_dir):
        folder.mkdir(parents=True, exist_ok=True)
    palette = voc_colormap().ravel().tolist()
    valid = np.array([*range(len(classes)), IGNORE_INDEX])
    used: dict[str, str] = {}
    for split, ds in splits.items():
        ids = []
        for i in range(len(ds)):
            sample = ds[i]
            where = f"export_voc(): splits[{split!r}][{i}]"
            sid = sample_id(sample, where, used)
            rgb = image_array(sample, where)
            mask = np.asarray(sample["mask"])
            if mask.shape != rgb.shape[:2]:
                raise ValueError(
                    f"{where}: mask shape {mask.shape} differs from the image's {rgb.shape[:2]}"
                )
            if not np.isin(mask, valid).all():
                raise ValueError(
                    f"{where}: mask values must be class indices 0..{len(classes) - 1} or "
                    f"{IGNORE_INDEX}"
                )
            Image.fromarray(rgb).save(image_dir / f"{sid}.jpg", quality=95, subsampling=0)
            png = Image.fromarray(mask.astype(np.uint8))  # mode "L": the bytes are the labels
            png.putpalette(palette)  # makes it a palette ("P") image, same bytes
            png.save(mask_dir / f"{sid}.png")
            ids.append(sid)
        (sets_dir / f"{split}.txt").write_text("".join(f"{s}\n" for s in ids), encoding="utf-8")
    (root / "classes.txt").write_text("".join(f"{c}\n" for c in classes), encoding="utf-8")
    return root
