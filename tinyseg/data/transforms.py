"""Transforms on sample dicts: random flip, random scale-and-crop, resize, normalisation.

A transform is a callable ``t(sample, rng) -> sample``: it takes a sample dict and a numpy
Generator and returns a NEW dict (the input is not modified). All randomness comes from ``rng``,
so a seeded Generator reproduces the augmentation exactly.

Geometric transforms move every spatial key together:

- "image" (C, H, W) float: bilinear resampling (half-pixel centres, as ``align_corners=False``);
- "mask" (H, W) int: nearest resampling, padding gets 255 (ignore);
- "instance_masks" (M, H, W) bool: nearest resampling with the SAME index maps as "mask", so the
  two stay consistent pixel for pixel; instances left with no pixel are dropped, with their
  box and label;
- "boxes" (M, 4): recomputed as the tight boxes of the moved instance masks. A sample with boxes
  but no instance masks (M boxes, 0 masks) gets its boxes mapped geometrically and clipped, and
  boxes left with no area are dropped.
"""

from __future__ import annotations

import numpy as np

from ..validate import pair
from .shapes import masks_to_boxes

IGNORE_INDEX = 255


def _default_rng(rng):
    if rng is None:
        return np.random.default_rng()
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy Generator, got {type(rng).__name__}")
    return rng


def _has_instance_masks(sample) -> bool:
    im = sample.get("instance_masks")
    return im is not None and len(im) > 0 and len(im) == len(sample.get("boxes", im))


def _keep(sample, keep):
    """Drop the instances where ``keep`` is False from boxes, labels and instance masks."""
    for key in ("boxes", "labels", "instance_masks"):
        if key in sample and sample[key] is not None and len(sample[key]) == len(keep):
            sample[key] = sample[key][keep]
    return sample


class Compose:
    """Apply transforms in order, all with the same Generator."""

    def __init__(self, transforms):
        transforms = list(transforms)
        for t in transforms:
            if not callable(t):
                raise TypeError(f"transforms must be callables t(sample, rng), got {t!r}")
        self.transforms = transforms

    def __call__(self, sample, rng=None):
        rng = _default_rng(rng)
        for t in self.transforms:
            sample = t(sample, rng)
        return sample

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


class RandomHorizontalFlip:
    """Mirror the sample left-right with probability ``p``.

    Draws exactly one number from ``rng`` whatever the outcome, so later transforms see the same
    stream. A box (x1, y1, x2, y2) becomes (W - x2, y1, W - x1, y2).
    """

    def __init__(self, p: float = 0.5):
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be a probability in [0, 1], got {p!r}")
        self.p = float(p)

    def __call__(self, sample, rng=None):
        rng = _default_rng(rng)
        flip = rng.random() < self.p
        out = dict(sample)
        if not flip:
            return out
        out["image"] = np.ascontiguousarray(sample["image"][..., ::-1])
        if sample.get("mask") is not None:
            out["mask"] = np.ascontiguousarray(sample["mask"][..., ::-1])
        if sample.get("instance_masks") is not None:
            out["instance_masks"] = np.ascontiguousarray(sample["instance_masks"][..., ::-1])
        if sample.get("boxes") is not None:
            w = sample["image"].shape[-1]
            b = np.asarray(sample["boxes"], dtype=np.float32)
            flipped = b.copy()
            flipped[:, 0] = w - b[:, 2]
            flipped[:, 2] = w - b[:, 0]
            out["boxes"] = flipped
        return out

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


def _source_axis(n_out, offset, n_scaled, n_src):
    """Index maps along one axis for output pixels ``offset .. offset + n_out - 1`` of a picture
    of length ``n_src`` scaled to ``n_scaled``.

    Returns (nearest, i0, i1, frac, valid): the nearest source index, the two bilinear source
    indices and the weight of ``i1``, and whether the output pixel lies on the scaled picture
    (False = padding).
    """
    pos = np.arange(n_out, dtype=np.float64) + offset  # position on the scaled picture
    valid = (pos >= 0) & (pos < n_scaled)
    ratio = n_src / n_scaled
    centre = (pos + 0.5) * ratio  # the output pixel's centre, in source pixel units
    nearest = np.clip(np.floor(centre), 0, n_src - 1).astype(np.intp)
    p = np.clip(centre - 0.5, 0, n_src - 1)
    i0 = np.floor(p).astype(np.intp)
    i1 = np.minimum(i0 + 1, n_src - 1)
    frac = (p - i0).astype(np.float32)
    return nearest, i0, i1, frac, valid


def _resample(sample, out_size, scaled_size, offset):
    """Scale the sample to ``scaled_size`` and cut the ``out_size`` window at ``offset``.

    One step: only the output pixels are computed. Window pixels off the scaled picture are
    padding (image 0, mask 255, instance masks False). Every spatial key moves together, as the
    module docstring says.
    """
    image = sample["image"]
    h, w = image.shape[-2:]
    (th, tw), (sh, sw), (top, left) = out_size, scaled_size, offset
    ny, y0, y1, wy, vy = _source_axis(th, top, sh, h)
    nx, x0, x1, wx, vx = _source_axis(tw, left, sw, w)
    valid = vy[:, None] & vx[None, :]

    out = dict(sample)
    # bilinear: interpolate rows, then columns
    wy_, wx_ = wy[:, None], wx[None, :]
    rows = image[..., y0, :] * (1 - wy_) + image[..., y1, :] * wy_
    img = rows[..., x0] * (1 - wx_) + rows[..., x1] * wx_
    out["image"] = np.where(valid, img, 0).astype(image.dtype, copy=False)
    if sample.get("mask") is not None:
        mask = sample["mask"][ny[:, None], nx[None, :]]
        out["mask"] = np.where(valid, mask, IGNORE_INDEX).astype(sample["mask"].dtype)
    if sample.get("instance_masks") is not None:
        inst = sample["instance_masks"][:, ny[:, None], nx[None, :]] & valid
        out["instance_masks"] = inst
    if _has_instance_masks(sample):
        keep = out["instance_masks"].any(axis=(1, 2))
        out["boxes"] = masks_to_boxes(out["instance_masks"])
        _keep(out, keep)
    elif sample.get("boxes") is not None and len(sample["boxes"]) > 0:
        b = np.asarray(sample["boxes"], dtype=np.float32).copy()
        b[:, [0, 2]] = np.clip(b[:, [0, 2]] * (sw / w) - left, 0, tw)
        b[:, [1, 3]] = np.clip(b[:, [1, 3]] * (sh / h) - top, 0, th)
        out["boxes"] = b
        _keep(out, (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1]))
    return out


class RandomScaleCrop:
    """Rescale by a random factor, then take a random window of a fixed size.

    :param scale: (low, high): the factor is drawn uniformly from this range.
    :param size: the output size (int or (H, W)); None keeps the input's size.

    The scaled picture is ``round(H * f) x round(W * f)``. Where it is larger than the output the
    window's position is uniform over all placements; where it is smaller it is placed at a
    uniform random position and the rest is padding: image 0, mask 255 (ignore), instance masks
    False. The resampling and the window are done in one step, computing only the output pixels.
    """

    def __init__(self, scale=(0.75, 1.25), size=None):
        try:
            low, high = (float(v) for v in scale)
        except (TypeError, ValueError):
            raise ValueError(f"scale must be a pair (low, high), got {scale!r}") from None
        if not 0.0 < low <= high:
            raise ValueError(f"scale must satisfy 0 < low <= high, got {scale!r}")
        self.scale = (low, high)
        self.size = None if size is None else pair(size, "size", minimum=1)

    def __call__(self, sample, rng=None):
        rng = _default_rng(rng)
        image = sample["image"]
        h, w = image.shape[-2:]
        th, tw = self.size if self.size is not None else (h, w)
        f = rng.uniform(*self.scale)
        sh, sw = max(1, int(round(h * f))), max(1, int(round(w * f)))
        dy, dx = sh - th, sw - tw
        top = int(rng.integers(min(0, dy), max(0, dy) + 1))
        left = int(rng.integers(min(0, dx), max(0, dx) + 1))
        return _resample(sample, (th, tw), (sh, sw), (top, left))

    def __repr__(self) -> str:
        return f"RandomScaleCrop(scale={self.scale}, size={self.size})"


class Resize:
    """Stretch the sample to a fixed ``size`` (int or (H, W)): no randomness, no padding.

    Images from disk come in many sizes; a batch needs one. The image is resampled bilinearly,
    the masks by nearest neighbour (so labels stay labels), and boxes follow the masks. The
    aspect ratio is not kept: a 500x375 photo becomes a square. A sample of that size already
    is returned unchanged.
    """

    def __init__(self, size):
        self.size = pair(size, "size", minimum=1)

    def __call__(self, sample, rng=None):
        image = sample["image"]
        if getattr(image, "ndim", 0) != 3:
            raise ValueError(f"sample['image'] must have shape (C, H, W), got "
                             f"{getattr(image, 'shape', type(image).__name__)}")
        if tuple(image.shape[-2:]) == self.size:
            return dict(sample)
        return _resample(sample, self.size, self.size, (0, 0))

    def __repr__(self) -> str:
        return f"Resize(size={self.size})"


class Normalize:
    """``image = (image - mean) / std`` per channel; the other keys are untouched.

    :param mean: one value per channel.
    :param std: one positive value per channel.
    """

    def __init__(self, mean, std):
        self.mean = np.asarray(mean, dtype=np.float32).reshape(-1)
        self.std = np.asarray(std, dtype=np.float32).reshape(-1)
        if self.mean.size == 0:
            raise ValueError("mean must hold one value per channel, got an empty sequence")
        if self.std.shape != self.mean.shape:
            raise ValueError(
                f"std must have one value per channel like mean ({self.mean.size}), got {std!r}"
            )
        if not np.all(self.std > 0):
            raise ValueError(f"std must be positive, got {std!r}")

    def _check(self, image):
        if image.ndim != 3 or image.shape[0] != self.mean.size:
            raise ValueError(
                f"image must have shape ({self.mean.size}, H, W) to match mean, got {image.shape}"
            )

    def __call__(self, sample, rng=None):
        image = np.asarray(sample["image"])
        self._check(image)
        out = dict(sample)
        out["image"] = ((image - self.mean[:, None, None]) / self.std[:, None, None]).astype(
            np.float32
        )
        return out

    def inverse(self, image):
        """Undo the normalisation of an image (C, H, W) or a batch (N, C, H, W), e.g. to draw it."""
        image = np.asarray(image)
        shape = (-1, 1, 1)
        return (image * self.std.reshape(shape) + self.mean.reshape(shape)).astype(np.float32)

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean.tolist()}, std={self.std.tolist()})"
