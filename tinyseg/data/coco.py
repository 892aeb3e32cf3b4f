"""COCO-style instance folders: a reader and a writer.

The layout::

    root/
      images/<file_name>                 the photos (any format Pillow reads)
      annotations/instances_train.json
      annotations/instances_val.json

Each JSON file holds three lists:

* ``images``: ``{"id", "file_name", "height", "width"}``;
* ``categories``: ``{"id", "name"}``; ids need not be contiguous;
* ``annotations``: ``{"id", "image_id", "category_id", "segmentation", "bbox", "iscrowd",
  "area"}``. ``segmentation`` is a list of polygons ``[[x0, y0, x1, y1, ...], ...]`` or an RLE
  dict ``{"size": [h, w], "counts": ...}`` with compressed-string or list counts (see
  :mod:`tinyseg.data.rle`); ``bbox`` is ``[x, y, width, height]``.

Labels: the categories sorted by id get the labels 1..K-1 (label 0 is background), so
``classes = ("background", *names in id order)``.

Each sample holds the non-crowd annotations of its image as instances (in file order; boxes
converted to xyxy), and a semantic mask painted from them: later annotations paint over
earlier ones, and crowd regions (``iscrowd: 1``) are painted 255 (ignore) last. An annotation
without a segmentation is taken to fill its bbox.

Every problem with a folder raises an error whose message names the file at fault, and the
annotation id where there is one. Broken annotations are refused, not guessed at: a bbox of
zero or negative width or height, a bbox wholly outside its image, a polygon of fewer than 3
points, an annotation id used twice. A bbox partly outside its image is clipped to the image
(with a warning when it reached more than a pixel past the edge).
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from .base import SampleDataset, check_transform
from .files import dataset_classes, export_args, image_array, read_rgb, sample_id
from .rle import polygon_to_mask, rle_decode, rle_encode
from .voc import IGNORE_INDEX

__all__ = ["COCODataset", "export_coco"]


def _tight_boxes(masks: np.ndarray) -> np.ndarray:
    """xyxy float32 (M, 4) of bool masks (M, H, W); x2 = max_x + 1; empty masks get zeros."""
    boxes = np.zeros((masks.shape[0], 4), dtype=np.float32)
    for m, mask in enumerate(masks):
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        if rows.size:
            boxes[m] = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    return boxes


class _Annotation:
    """One annotation after checking: what a sample needs to decode it later."""

    __slots__ = ("ann_id", "label", "segmentation", "bbox", "iscrowd")

    def __init__(self, ann_id, label, segmentation, bbox, iscrowd):
        self.ann_id = ann_id
        self.label = label
        self.segmentation = segmentation
        self.bbox = bbox
        self.iscrowd = iscrowd


class COCODataset(SampleDataset):
    """A COCO-style folder as a dataset of sample dicts.

    :param root: the folder holding ``images/`` and ``annotations/``.
    :param split: reads ``annotations/instances_<split>.json`` ("train", "val", ...).
    :param transform: optional callable ``t(sample, rng) -> sample``, seeded by the index (see
        :class:`~tinyseg.data.voc.VOCSegmentation`).

    ``dataset[i]`` returns "image" float32 (3, H, W) in [0, 1], "mask" int64 (H, W),
    "instance_masks" bool (M, H, W), "boxes" float32 (M, 4) xyxy, "labels" int64 (M,) and "id"
    (the image file's stem); M counts the non-crowd annotations.

    The constructor parses and checks the whole JSON file (keys, ids, references, RLE sizes)
    and that each image file exists; reading a sample decodes the masks and checks the image.
    """

    def __init__(self, root, split: str = "train", transform=None):
        self.root = Path(root)
        if not isinstance(split, str) or not split:
            raise ValueError(f"split must be a split name such as 'train', got {split!r}")
        self.split = split
        self.transform = check_transform(transform)
        if not self.root.is_dir():
            raise FileNotFoundError(f"COCO root folder not found: {self.root}")
        self.image_dir = self.root / "images"
        if not self.image_dir.is_dir():
            raise FileNotFoundError(
                f"folder not found: {self.image_dir} (a COCO-style folder has images/ and "
                "annotations/)"
            )
        self.ann_file = self.root / "annotations" / f"instances_{split}.json"
        if not self.ann_file.is_file():
            raise FileNotFoundError(f"annotation file not found: {self.ann_file} (split {split!r})")
        self._parse(self._load_json())

    # ------------------------------------------------------------------ parsing

    def _error(self, what: str) -> ValueError:
        return ValueError(f"{self.ann_file}: {what}")

    def _load_json(self) -> dict:
        try:
            text = self.ann_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise ValueError(f"cannot read {self.ann_file}: {err}") from err
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(
                f"{self.ann_file}: bad JSON at line {err.lineno}, column {err.colno} "
                f"(character {err.pos}): {err.msg}"
            ) from err
        if not isinstance(data, dict):
            raise self._error(f"the top level must be an object, got {type(data).__name__}")
        return data

    def _list(self, data: dict, key: str, required: bool = True) -> list:
        if key not in data:
            if required:
                raise self._error(f'missing the "{key}" list')
            return []
        value = data[key]
        if not isinstance(value, list):
            raise self._error(f'"{key}" must be a list, got {type(value).__name__}')
        return value

    def _field(self, entry, key: str, kind, where: str):
        if not isinstance(entry, dict) or key not in entry:
            raise self._error(f'{where} has no "{key}"')
        value = entry[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise self._error(f'{where}: "{key}" has the wrong type ({value!r})')
        return value

    def _parse(self, data: dict) -> None:
        categories = self._list(data, "categories")
        cats = {}
        for j, cat in enumerate(categories):
            cid = self._field(cat, "id", int, f"categories[{j}]")
            name = self._field(cat, "name", str, f"categories[{j}]")
            if cid in cats:
                raise self._error(f"category id {cid} appears twice")
            cats[cid] = name
        if not cats:
            raise self._error('"categories" is empty; at least one category is needed')
        self.category_ids = sorted(cats)
        self.cat_to_label = {cid: k + 1 for k, cid in enumerate(self.category_ids)}
        self.classes = ("background", *(cats[cid] for cid in self.category_ids))

        self.images = []  # (image_id, path, height, width)
        row_of = {}
        for j, img in enumerate(self._list(data, "images")):
            where = f"images[{j}]"
            image_id = self._field(img, "id", int, where)
            file_name = self._field(img, "file_name", str, where)
            height = self._field(img, "height", int, where)
            width = self._field(img, "width", int, where)
            if image_id in row_of:
                raise self._error(f"image id {image_id} appears twice")
            if height <= 0 or width <= 0:
                raise self._error(f"{where}: height {height} and width {width} must be positive")
            path = self.image_dir / file_name
            if not path.is_file():
                raise FileNotFoundError(
                    f"image file not found: {path} (image id {image_id} in {self.ann_file})"
                )
            row_of[image_id] = len(self.images)
            self.images.append((image_id, path, height, width))
        if not self.images:
            raise self._error('"images" is empty')

        self.annotations: list[list[_Annotation]] = [[] for _ in self.images]
        seen, clipped = set(), []
        for j, ann in enumerate(self._list(data, "annotations", required=False)):
            where = f"annotations[{j}]"
            if isinstance(ann, dict) and "id" in ann:
                ann_id = self._field(ann, "id", int, where)
                if ann_id in seen:
                    raise self._error(f"annotation id {ann_id} appears twice")
                seen.add(ann_id)
                where = f"annotation id {ann_id}"
            image_id = self._field(ann, "image_id", int, where)
            cid = self._field(ann, "category_id", int, where)
            if image_id not in row_of:
                raise self._error(
                    f'{where} refers to image id {image_id}, which is not in "images"'
                )
            if cid not in cats:
                raise self._error(
                    f'{where} refers to category id {cid}, which is not in "categories"'
                )
            row = row_of[image_id]
            _, _, height, width = self.images[row]
            iscrowd = ann.get("iscrowd", 0)
            if iscrowd not in (0, 1) or isinstance(iscrowd, bool):
                raise self._error(f'{where}: "iscrowd" must be 0 or 1, got {iscrowd!r}')
            bbox = self._bbox(ann.get("bbox"), where, image_id, height, width, clipped)
            seg = ann.get("segmentation")
            self._check_segmentation(seg, where, image_id, height, width)
            if not seg and bbox is None:
                raise self._error(f'{where} has neither a "segmentation" nor a "bbox"')
            self.annotations[row].append(
                _Annotation(ann.get("id", j), self.cat_to_label[cid], seg, bbox, bool(iscrowd))
            )
        if clipped:  # a repair, so say so: once per file, naming the first few
            warnings.warn(
                f"{self.ann_file}: {len(clipped)} bbox(es) reach more than 1 pixel past their "
                f"image and were clipped to it ({', '.join(clipped[:3])}"
                f"{', ...' if len(clipped) > 3 else ''})",
                stacklevel=3,
            )

    def _bbox(self, bbox, where: str, image_id: int, height: int, width: int, clipped: list):
        """The checked bbox [x, y, w, h], clipped to the image; None when there is none.

        A box of zero or negative width or height holds no object, and one wholly outside its
        image holds none of the image: both are errors. A box partly outside is cut to the
        image (the part outside has no pixels to learn from); when it reached more than a
        pixel past the edge (more than annotation tools' rounding), ``where`` joins ``clipped``.
        """
        if bbox is None:
            return None
        if not (
            isinstance(bbox, list)
            and len(bbox) == 4
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox)
            and all(math.isfinite(v) for v in bbox)
        ):
            raise self._error(f'{where}: "bbox" must be [x, y, width, height], got {bbox!r}')
        x, y, bw, bh = (float(v) for v in bbox)
        if bw <= 0 or bh <= 0:
            raise self._error(
                f'{where}: "bbox" {bbox!r} has width {bw:g} and height {bh:g}; both must be '
                "positive (a box of no size holds no object)"
            )
        x1, y1 = max(x, 0.0), max(y, 0.0)
        x2, y2 = min(x + bw, float(width)), min(y + bh, float(height))
        if x2 <= x1 or y2 <= y1:
            raise self._error(
                f'{where}: "bbox" {bbox!r} lies wholly outside image id {image_id} '
                f"(width {width}, height {height})"
            )
        if min(x, y, width - (x + bw), height - (y + bh)) < -1.0:
            clipped.append(where)
        return [x1, y1, x2 - x1, y2 - y1]

    def _check_segmentation(self, seg, where: str, image_id: int, height: int, width: int):
        """Polygons: lists of >= 3 finite (x, y) points; RLE: the image's [height, width]."""
        if isinstance(seg, dict):
            size = seg.get("size")
            if size != [height, width]:
                raise self._error(
                    f"{where}: RLE size {size} does not match image id {image_id}'s "
                    f"[height, width] = [{height}, {width}]"
                )
            if not isinstance(seg.get("counts"), (str, list)):
                raise self._error(f'{where}: RLE "counts" must be a string or a list of ints')
        elif isinstance(seg, list):
            number = (int, float)
            flat = bool(seg) and all(isinstance(v, number) for v in seg)  # one bare polygon
            for k, poly in enumerate([seg] if flat else seg):
                if not (
                    isinstance(poly, list)
                    and all(isinstance(v, number) and not isinstance(v, bool) for v in poly)
                    and all(math.isfinite(v) for v in poly)
                    and len(poly) % 2 == 0
                ):
                    raise self._error(
                        f"{where}: polygon {k} must be a flat list [x0, y0, x1, y1, ...] of "
                        "finite numbers"
                    )
                if len(poly) < 6:
                    raise self._error(
                        f"{where}: polygon {k} has {len(poly) // 2} point(s); a polygon needs "
                        "at least 3 (fewer enclose no pixel)"
                    )
        elif seg is not None:
            raise self._error(
                f'{where}: "segmentation" must be polygons (a list) or an '
                f"RLE object, got {type(seg).__name__}"
            )

    # ------------------------------------------------------------------ samples

    def __len__(self) -> int:
        return len(self.images)

    def _decode(self, ann: _Annotation, h: int, w: int) -> np.ndarray:
        seg = ann.segmentation
        try:
            if isinstance(seg, dict):
                return rle_decode(seg)
            if seg:
                return polygon_to_mask(seg, h, w)
        except ValueError as err:
            raise self._error(f"annotation id {ann.ann_id}: bad segmentation: {err}") from err
        x, y, bw, bh = ann.bbox  # no segmentation: the box is the mask
        mask = np.zeros((h, w), dtype=bool)
        mask[
            max(0, math.ceil(y - 0.5)) : max(0, math.ceil(y + bh - 0.5)),
            max(0, math.ceil(x - 0.5)) : max(0, math.ceil(x + bw - 0.5)),
        ] = True
        return mask

    def load(self, i: int) -> dict:
        image_id, path, height, width = self.images[i]
        image = read_rgb(path)
        h, w = image.shape[1:]
        if (h, w) != (height, width):
            raise ValueError(
                f"image {path} is {w}x{h} (WxH) but {self.ann_file} says "
                f"width {width}, height {height} (image id {image_id})"
            )
        semantic = np.zeros((h, w), dtype=np.int64)
        crowd = np.zeros((h, w), dtype=bool)
        masks, labels, boxes = [], [], []
        for ann in self.annotations[i]:
            m = self._decode(ann, h, w)
            if ann.iscrowd:
                crowd |= m
                continue
            semantic[m] = ann.label
            masks.append(m)
            labels.append(ann.label)
            if ann.bbox is not None:
                x, y, bw, bh = ann.bbox
                boxes.append((x, y, x + bw, y + bh))
            elif m.any():
                boxes.append(tuple(_tight_boxes(m[None])[0]))
            else:  # no bbox to fall back on: the instance would be a box of no size
                raise self._error(
                    f"annotation id {ann.ann_id}: its segmentation covers no pixel of image "
                    f"{path} and it has no bbox"
                )
        semantic[crowd] = IGNORE_INDEX
        sample = {
            "image": image,
            "mask": semantic,
            "instance_masks": np.stack(masks) if masks else np.zeros((0, h, w), dtype=bool),
            "boxes": np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
            "labels": np.asarray(labels, dtype=np.int64),
            "id": path.stem,
        }
        return sample

    def _repr_fields(self) -> dict:
        return {"root": str(self.root), "split": self.split, "images": len(self),
                "classes": len(self.classes)}  # fmt: skip


# --------------------------------------------------------------------------- writer


def _instances(sample: dict, num_classes: int, where: str):
    """(masks bool (M, H, W), labels (M,), boxes (M, 4) xyxy) to export for one sample.

    A sample without instances (e.g. from a VOC folder) exports one region per class present
    in its semantic mask, with the region's tight box.
    """
    mask = np.asarray(sample["mask"])
    masks = np.asarray(sample.get("instance_masks", np.zeros((0, *mask.shape))), dtype=bool)
    labels = np.asarray(sample.get("labels", np.zeros(0)), dtype=np.int64).reshape(-1)
    if masks.shape[0] == 0:
        present = [c for c in np.unique(mask).tolist() if 0 < c < num_classes]
        masks = np.stack([mask == c for c in present]) if present else masks.reshape(0, *mask.shape)
        labels = np.asarray(present, dtype=np.int64)
        return masks, labels, _tight_boxes(masks)
    if masks.ndim != 3 or masks.shape[1:] != mask.shape or len(labels) != len(masks):
        raise ValueError(
            f"{where}: instance_masks {masks.shape}, labels {labels.shape} and mask {mask.shape} "
            "do not fit together"
        )
    if ((labels < 1) | (labels >= num_classes)).any():
        raise ValueError(f"{where}: labels must lie in 1..{num_classes - 1}, got {labels.tolist()}")
    boxes = sample.get("boxes")
    boxes = _tight_boxes(masks) if boxes is None else np.asarray(boxes, dtype=np.float32)
    if boxes.shape != (len(masks), 4):
        raise ValueError(f"{where}: boxes must have shape ({len(masks)}, 4), got {boxes.shape}")
    flat = np.flatnonzero(~((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])))
    if flat.size:  # the reader refuses such a box, so do not write one
        raise ValueError(f"{where}: instance {int(flat[0])} has the box {boxes[flat[0]].tolist()} "
                         "of no size (x2 <= x1 or y2 <= y1)")
    return masks, labels, boxes


def export_coco(*args, root=None, splits=None, dataset=None) -> Path:
    """Write datasets of sample dicts as a COCO-style folder that :class:`COCODataset` reads.

    Call it as ``export_coco(root, {"train": ds1, "val": ds2})``,
    ``export_coco(root, splits={...})``, or ``export_coco(dataset, root)`` (one "train" split).

    :param root: the folder to write (created if needed; files of the same names are
        overwritten).
    :param splits: split name -> dataset; the datasets must share ``.classes`` and their sample
        ids must be unique (the splits share ``images/``).
    :param dataset: a single dataset, written as the "train" split.
    :return: the root folder as a Path.

    Images go to ``images/<id>.jpg`` (JPEG quality 95, no chroma subsampling). Each instance
    becomes one annotation: ``segmentation`` is its mask as compressed RLE, ``bbox`` its box as
    ``[x, y, width, height]``, ``area`` its pixel count, ``iscrowd`` 0. Category ids are the
    labels 1..K-1. Samples without instances (e.g. from a VOC folder) export one annotation per
    class region of the semantic mask. Ignore (255) pixels of the semantic mask are not
    exported: the reader rebuilds the semantic mask from the instances.
    """
    root, splits = export_args("export_coco", args, root, splits, dataset)
    classes = dataset_classes("export_coco", splits)
    image_dir, ann_dir = root / "images", root / "annotations"
    image_dir.mkdir(parents=True, exist_ok=True)
    ann_dir.mkdir(parents=True, exist_ok=True)
    categories = [{"id": k, "name": name} for k, name in enumerate(classes) if k > 0]
    used: dict[str, str] = {}
    for split, ds in splits.items():
        images, annotations = [], []
        for i in range(len(ds)):
            sample = ds[i]
            where = f"export_coco(): splits[{split!r}][{i}]"
            sid = sample_id(sample, where, used)
            rgb = image_array(sample, where)
            h, w = rgb.shape[:2]
            if np.asarray(sample["mask"]).shape != (h, w):
                raise ValueError(f"{where}: mask shape differs from the image's {(h, w)}")
            Image.fromarray(rgb).save(image_dir / f"{sid}.jpg", quality=95, subsampling=0)
            image_id = i + 1
            images.append({"id": image_id, "file_name": f"{sid}.jpg", "height": h, "width": w})
            masks, labels, boxes = _instances(sample, len(classes), where)
            for m, label, box in zip(masks, labels, boxes):
                x1, y1, x2, y2 = (float(v) for v in box)
                annotations.append({
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(label),
                    "segmentation": rle_encode(m),
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": int(m.sum()),
                    "iscrowd": 0,
                })  # fmt: skip
        payload = {"images": images, "annotations": annotations, "categories": categories}
        with open(ann_dir / f"instances_{split}.json", "w", encoding="utf-8") as f:
            json.dump(payload, f)
    return root
