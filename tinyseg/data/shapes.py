"""Synthetic shapes scenes: the built-in dataset, drawn on the fly.

Each image shows 1 to ``max_objects`` objects of three classes (1 square, 2 circle, 3 triangle)
on a textured background. Nothing is stored on disk: sample ``i`` is a pure function of
``(seed, split, i)``, so the dataset has random access and every run sees the same pictures.

How a scene is drawn (all sizes scale with ``s = min(H, W)``):

1. Background: a linear gradient between two random colours in a random direction, plus two
   to four low-frequency Gaussian blobs that tint it.
2. Objects, one after another, each later one painting over the earlier ones. Every object has
   a size ``rho`` drawn from ``[0.09 s, 0.22 s]`` (at least 3 pixels) and the three shapes get
   the same AREA for the same ``rho`` (a circle of radius ``rho``, a square of half side
   ``0.886 rho``, an equilateral triangle of circumradius ``1.555 rho``), so size says nothing
   about class: only the outline does. Squares are turned by up to 15 degrees either way,
   triangles by any angle. An object lies wholly inside the image.
3. Occlusion rule: a placement that would leave an earlier object less than 30% visible is
   rejected and drawn again elsewhere (up to 30 tries; after that the scene keeps fewer objects).
   So every kept instance shows at least 30% of its pixels, and its instance mask, box and
   label describe exactly those visible pixels.
4. Colour: an object's colour is at least ``MIN_CONTRAST`` away (Euclidean distance in RGB) from
   the mean colour of a thin ring around it and from every earlier object that ring touches,
   so its outline is always visible. A faint linear shading makes it not quite flat.
5. Pixel noise: Gaussian, with a standard deviation drawn per image from ``NOISE_STD``.

Pixel (row y, column x) covers the square [x, x + 1) x [y, y + 1); shapes are tested at pixel
centres (x + 0.5, y + 0.5), without anti-aliasing, so the masks match the image exactly.
"""

from __future__ import annotations

import math

import numpy as np

from ..validate import check_int, pair
from .base import SampleDataset, check_transform

CLASSES = ("background", "square", "circle", "triangle")

#: Object size ``rho`` as a fraction of ``min(H, W)``.
SIZE_RANGE = (0.09, 0.22)
#: Smallest colour distance (RGB in [0, 1]) between an object and what surrounds it.
MIN_CONTRAST = 0.35
#: Range of the per-image standard deviation of the Gaussian pixel noise.
NOISE_STD = (0.01, 0.04)
#: An object that would end up less visible than this fraction is not kept.
MIN_VISIBLE = 0.3
#: Largest rotation of a square, in degrees.
SQUARE_MAX_ANGLE = 15.0

_SPLITS = {"train": 0, "val": 1}
_DEFAULT_LENGTH = {"train": 2000, "val": 200}
_TAG = 0x5EA5  # separates these seeds from any other use of the same user seed
_PLACEMENT_TRIES = 30
_COLOUR_TRIES = 24

# Bounding radius and size factor of each class, for an area of pi * rho^2.
_SQUARE_HALF = math.sqrt(math.pi) / 2.0  # 0.886
_TRIANGLE_R = math.sqrt(4.0 * math.pi / (3.0 * math.sqrt(3.0)))  # 1.555
_BOUND = {1: _SQUARE_HALF * math.sqrt(2.0), 2: 1.0, 3: _TRIANGLE_R}


def masks_to_boxes(masks) -> np.ndarray:
    """Tight xyxy boxes of boolean masks (M, H, W) -> float32 (M, 4).

    ``x2 = max_x + 1`` and ``y2 = max_y + 1`` (no +1 convention on widths: width = x2 - x1).
    An empty mask gets the box (0, 0, 0, 0).
    """
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks must have shape (M, H, W), got {masks.shape}")
    masks = masks.astype(bool, copy=False)
    m, h, w = masks.shape
    boxes = np.zeros((m, 4), dtype=np.float32)
    if m == 0:
        return boxes
    rows = masks.any(axis=2)  # (M, H)
    cols = masks.any(axis=1)  # (M, W)
    nonempty = rows.any(axis=1)
    boxes[:, 0] = cols.argmax(axis=1)
    boxes[:, 1] = rows.argmax(axis=1)
    boxes[:, 2] = w - cols[:, ::-1].argmax(axis=1)
    boxes[:, 3] = h - rows[:, ::-1].argmax(axis=1)
    boxes[~nonempty] = 0.0
    return boxes


def _shape_mask(label, cx, cy, rho, angle, xs, ys, grow=0.0):
    """Boolean (H, W) mask of one object; ``grow`` pixels enlarge it (for the contrast ring)."""
    dx = xs - cx
    dy = ys - cy
    if label == 2:  # circle
        r = rho + grow
        return dx * dx + dy * dy <= r * r
    if label == 1:  # square: |u| <= a and |v| <= a in the object's own axes
        a = _SQUARE_HALF * rho + grow
        c, s = math.cos(angle), math.sin(angle)
        u = c * dx + s * dy
        v = -s * dx + c * dy
        return (np.abs(u) <= a) & (np.abs(v) <= a)
    # equilateral triangle: inside all three half-planes n_k . p <= inradius (= R / 2)
    inradius = 0.5 * _TRIANGLE_R * rho + grow
    inside = None
    for k in range(3):
        phi = angle + math.pi + 2.0 * math.pi * k / 3.0  # outward normal, opposite vertex k
        half = math.cos(phi) * dx + math.sin(phi) * dy <= inradius
        inside = half if inside is None else inside & half
    return inside


def _background(rng, h, w, xs, ys, s):
    c0 = rng.uniform(0.0, 1.0, size=3).astype(np.float32)
    c1 = rng.uniform(0.0, 1.0, size=3).astype(np.float32)
    theta = rng.uniform(0.0, 2.0 * math.pi)
    t = math.cos(theta) * xs + math.sin(theta) * ys
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    image = (c0[:, None, None] * (1.0 - t) + c1[:, None, None] * t).astype(np.float32)
    for _ in range(int(rng.integers(2, 5))):
        bx, by = rng.uniform(0, w), rng.uniform(0, h)
        sigma = rng.uniform(0.1, 0.3) * s
        amp = rng.uniform(-0.2, 0.2, size=3).astype(np.float32)
        k = np.float32(-0.5 / (sigma * sigma))
        g = np.exp(k * (ys[:, :1] - by) ** 2) * np.exp(k * (xs[:1, :] - bx) ** 2)  # separable
        image += amp[:, None, None] * g
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def _pick_colour(rng, references):
    """A random colour at least MIN_CONTRAST from every reference colour (or the best of a few)."""
    refs = np.asarray(references, dtype=np.float32).reshape(-1, 3)
    cands = rng.uniform(0.0, 1.0, size=(_COLOUR_TRIES, 3)).astype(np.float32)
    dist = np.sqrt(((cands[:, None, :] - refs[None, :, :]) ** 2).sum(axis=2)).min(axis=1)
    ok = np.flatnonzero(dist >= MIN_CONTRAST)
    return cands[ok[0]] if ok.size else cands[int(dist.argmax())]


def render_scene(rng, height: int, width: int, max_objects: int = 4) -> dict:
    """Draw one scene with the numpy Generator ``rng``.

    Returns a sample dict without "id": "image" float32 (3, H, W) in [0, 1], "mask" int64 (H, W),
    "instance_masks" bool (M, H, W), "boxes" float32 (M, 4), "labels" int64 (M,). Instances are
    in painting order (later ones lie on top); 1 <= M <= max_objects.
    """
    h, w = int(height), int(width)
    s = min(h, w)
    ys = (np.arange(h, dtype=np.float32) + 0.5)[:, None]
    xs = (np.arange(w, dtype=np.float32) + 0.5)[None, :]
    xs, ys = np.broadcast_to(xs, (h, w)), np.broadcast_to(ys, (h, w))
    image = _background(rng, h, w, xs, ys, s)
    ring_width = max(1.5, 0.04 * s)

    n_objects = int(rng.integers(1, max_objects + 1))
    visible: list[np.ndarray] = []  # visible pixels of each kept instance
    areas: list[int] = []
    labels: list[int] = []
    colours: list[np.ndarray] = []
    for _ in range(n_objects):
        for _try in range(_PLACEMENT_TRIES):
            label = int(rng.integers(1, 4))
            rho = max(3.0, rng.uniform(*SIZE_RANGE) * s)
            bound = _BOUND[label] * rho + 0.5
            cx = rng.uniform(bound, max(bound, w - bound))
            cy = rng.uniform(bound, max(bound, h - bound))
            if label == 1:
                angle = math.radians(rng.uniform(-SQUARE_MAX_ANGLE, SQUARE_MAX_ANGLE))
            else:
                angle = rng.uniform(0.0, 2.0 * math.pi)
            shape = _shape_mask(label, cx, cy, rho, angle, xs, ys)
            area = int(shape.sum())
            if area == 0:
                continue
            still = [v & ~shape for v in visible]
            if all(v.sum() >= MIN_VISIBLE * a for v, a in zip(still, areas)):
                break
        else:
            continue  # no placement keeps the others visible enough: fewer objects
        ring = _shape_mask(label, cx, cy, rho, angle, xs, ys, grow=ring_width) & ~shape
        refs = [image[:, ring].mean(axis=1) if ring.any() else image[:, shape].mean(axis=1)]
        refs += [c for v, c in zip(visible, colours) if (v & ring).any()]
        colour = _pick_colour(rng, refs)
        shade_dir = rng.uniform(0.0, 2.0 * math.pi)
        shade = rng.uniform(0.0, 0.08)
        ramp = (math.cos(shade_dir) * (xs - cx) + math.sin(shade_dir) * (ys - cy)) / (2.0 * rho)
        fill = colour[:, None, None] + np.float32(shade) * ramp
        np.copyto(image, np.clip(fill, 0.0, 1.0), where=shape)
        visible = still + [shape]
        areas.append(area)
        labels.append(label)
        colours.append(colour)

    noise_std = rng.uniform(*NOISE_STD)
    image += rng.standard_normal(image.shape, dtype=np.float32) * np.float32(noise_std)
    np.clip(image, 0.0, 1.0, out=image)

    instance_masks = np.stack(visible) if visible else np.zeros((0, h, w), dtype=bool)
    mask = np.zeros((h, w), dtype=np.int64)
    for m, label in zip(instance_masks, labels):
        mask[m] = label
    return {
        "image": image,
        "mask": mask,
        "instance_masks": instance_masks,
        "boxes": masks_to_boxes(instance_masks),
        "labels": np.asarray(labels, dtype=np.int64),
    }


class ShapesDataset(SampleDataset):
    """Synthetic scenes of squares, circles and triangles, drawn on demand.

    :param split: "train" or "val"; the two splits draw from disjoint random streams.
    :param num_images: number of images; default 2000 for "train" and 200 for "val".
    :param size: image size, an int or a pair (H, W), each at least 32.
    :param seed: non-negative int; sample ``i`` depends only on ``(seed, split, i)``.
    :param max_objects: each image holds 1 to ``max_objects`` objects (fewer only when occlusion
        leaves no room).
    :param transform: optional callable ``t(sample, rng) -> sample``; its Generator is seeded from
        ``(seed, split, i)`` too, so the same index always gets the same augmentation. For new
        augmentations every epoch give the transform to :class:`~tinyseg.data.loader.DataLoader`.

    ``dataset[i]`` returns a dict of numpy arrays: "image" float32 (3, H, W) in [0, 1], "mask"
    int64 (H, W), "instance_masks" bool (M, H, W), "boxes" float32 (M, 4) xyxy, "labels" int64
    (M,), and "id" (e.g. "shapes-train-000042").
    """

    classes = CLASSES

    def __init__(
        self,
        split: str = "train",
        num_images: int | None = None,
        size=64,
        seed: int = 0,
        max_objects: int = 4,
        transform=None,
    ):
        if split not in _SPLITS:
            raise ValueError(f"split must be one of {sorted(_SPLITS)}, got {split!r}")
        self.split = split
        if num_images is None:
            num_images = _DEFAULT_LENGTH[split]
        self.num_images = check_int(num_images, "num_images", 1)
        self.size = pair(size, "size", minimum=32)
        self.seed = check_int(seed, "seed", 0)
        self.max_objects = check_int(max_objects, "max_objects", 1)
        self.transform = check_transform(transform)

    def __len__(self) -> int:
        return self.num_images

    def _rng(self, i: int, stream: int) -> np.random.Generator:
        key = (self.seed, _TAG, _SPLITS[self.split], i, stream)
        return np.random.Generator(np.random.PCG64(np.random.SeedSequence(key)))

    def load(self, i: int) -> dict:
        h, w = self.size
        sample = render_scene(self._rng(i, 0), h, w, self.max_objects)
        sample["id"] = f"shapes-{self.split}-{i:06d}"
        return sample

    def transform_rng(self, i: int) -> np.random.Generator:
        return self._rng(i, 1)  # stream 1 of (seed, split, i); stream 0 draws the scene

    def _repr_fields(self) -> dict:
        return {"split": self.split, "num_images": self.num_images, "size": self.size,
                "seed": self.seed, "max_objects": self.max_objects}  # fmt: skip
