"""COCO run-length encoding (RLE) and polygon rasterisation, written from scratch.

COCO stores an object's mask in one of two ways, and this module reads and writes both
without pycocotools.

**Run-length encoding.** Take a binary mask of shape (h, w) and read it *column by column*
(Fortran / column-major order: pixel (r, c) is number $k = c \\cdot h + r$). The flat
sequence of $h w$ zeros and ones is cut into runs, and the RLE stores the run lengths,
always starting with a run of background (zeros), which is 0 long when the first pixel is
foreground:

    mask (h=3, w=2)     column-major read     runs            counts
      0 1                 0 1 1 | 1 1 0         0 | 1 1 1 1 | 0   [1, 4, 1]
      1 1
      1 0

Even-indexed counts are background runs, odd-indexed counts are foreground runs, and the
counts sum to $h w$. The area of the mask is the sum of the odd-indexed counts.

**The compressed "counts" string.** COCO writes the counts list as text, with a variable-length
code close to LEB128. Before coding, every count from index 3 on is replaced by its difference
from the count two places earlier, $d_i = c_i - c_{i-2}$ for $i > 2$ (runs of the same colour
tend to have similar lengths, so the differences are small and may be negative). Each number
$x$ (a signed integer) is then cut into 5-bit groups, least significant first. Each group
becomes one character:

* bits 0-4: the 5-bit group (bit 4 doubles as the sign bit of the last group);
* bit 5: "more groups follow";
* the character is ``chr(48 + value)``, so all characters lie in ``'0'`` .. ``'o'``.

Groups are emitted while the rest of the number still carries information: after taking the
group $g$ and shifting $x$ right by 5 (arithmetic shift), writing stops when $x = 0$ and the
sign bit of $g$ is 0, or $x = -1$ and the sign bit is 1. Decoding reverses this: collect
groups until one has bit 5 clear, sign-extend from the last group's bit 4, then add back
$c_{i-2}$ for $i > 2$.

Example: counts ``[0, 1, 11, 1, 11, 1]`` (a 5x5 mask with the three pixels (0,0), (2,2),
(4,4) set) has differences ``[0, 1, 11, 0, 0, 0]`` and codes to ``"01;000"``
(``';'`` is ``chr(48 + 11)``).

**Polygons.** A COCO polygon is a flat list ``[x0, y0, x1, y1, ...]`` in pixel coordinates,
where pixel (r, c) covers the unit square $[c, c+1) \\times [r, r+1)$. An object may have
several polygons; its mask is their union. :func:`polygon_to_mask` uses the *pixel-centre
rule*: pixel (r, c) is foreground when its centre $(c + \\tfrac12, r + \\tfrac12)$ lies inside
the polygon by the even-odd rule. A centre exactly on an edge counts as inside for a left or
top edge and outside for a right or bottom edge, so two polygons that share an edge never
both claim a pixel. pycocotools rasterises differently (it walks the outline on a 5x finer
grid), so its masks may differ from ours by one pixel along the edges.

Shapes: masks are bool (h, w); ``size`` is ``[h, w]`` (rows first), as in COCO.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "counts_to_mask",
    "counts_to_string",
    "mask_to_counts",
    "polygon_to_mask",
    "rle_area",
    "rle_decode",
    "rle_encode",
    "string_to_counts",
]


def _check_mask(mask) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be a 2-D (h, w) array, got shape {mask.shape}")
    if mask.dtype == bool:
        return mask
    if mask.dtype.kind not in "iu" or (mask.size and not np.isin(mask, (0, 1)).all()):
        raise ValueError(
            f"mask must be bool or hold only the integers 0 and 1, got dtype {mask.dtype}"
        )
    return mask.astype(bool)


def mask_to_counts(mask) -> list[int]:
    """Uncompressed COCO run lengths of a binary mask.

    :param mask: bool (h, w), or integers 0/1.
    :return: run lengths in column-major order, starting with a (possibly empty) background run.
    """
    mask = _check_mask(mask)
    flat = mask.ravel(order="F")
    if flat.size == 0:
        return []
    # Run boundaries are where the value changes; the first run is background by convention.
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    edges = np.concatenate(([0], change, [flat.size]))
    counts = np.diff(edges).tolist()
    if flat[0]:
        counts.insert(0, 0)
    return [int(c) for c in counts]


def counts_to_mask(counts: Sequence[int], h: int, w: int) -> np.ndarray:
    """Binary mask (h, w) from uncompressed run lengths (the inverse of :func:`mask_to_counts`).

    :raises ValueError: naming ``counts`` if a count is negative or they do not sum to h*w.
    """
    counts = np.asarray(list(counts), dtype=np.int64)
    if counts.ndim != 1:
        raise ValueError("counts must be a flat list of run lengths")
    if (counts < 0).any():
        raise ValueError(f"counts must be non-negative run lengths, got {counts.min()}")
    if int(counts.sum()) != h * w:
        raise ValueError(
            f"counts sum to {int(counts.sum())}, but size [h, w] = [{h}, {w}] needs {h * w}"
        )
    values = (np.arange(counts.size) % 2).astype(bool)  # 0 = background run, 1 = object run
    flat = np.repeat(values, counts)
    return flat.reshape(w, h).T.copy()


def counts_to_string(counts: Sequence[int]) -> str:
    """COCO's compressed text form of a counts list (see the module docstring)."""
    counts = [int(c) for c in counts]
    chars = []
    for i, c in enumerate(counts):
        x = c - counts[i - 2] if i > 2 else c
        more = True
        while more:
            group = x & 0x1F
            x >>= 5  # Python's >> on ints is an arithmetic shift, as in the C original
            sign = group & 0x10
            more = (x != -1) if sign else (x != 0)
            if more:
                group |= 0x20
            chars.append(chr(group + 48))
    return "".join(chars)


def string_to_counts(s: str | bytes) -> list[int]:
    """Counts list from COCO's compressed string (the inverse of :func:`counts_to_string`).

    :raises ValueError: naming ``counts`` for characters outside '0'..'o' or a cut-off number.
    """
    if isinstance(s, bytes):
        s = s.decode("ascii", errors="replace")
    counts: list[int] = []
    x, shift, more = 0, 0, False
    for p, ch in enumerate(s):
        value = ord(ch) - 48
        if not 0 <= value < 64:
            raise ValueError(
                f"counts string has character {ch!r} at position {p}; "
                "compressed RLE uses only '0' (48) .. 'o' (111)"
            )
        x |= (value & 0x1F) << shift
        shift += 5
        more = bool(value & 0x20)
        if more:
            continue
        if value & 0x10:  # sign-extend from the last group's bit 4
            x -= 1 << shift
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
        x, shift = 0, 0
    if more:
        raise ValueError(
            "counts string ends in the middle of a number (last character has bit 5 set)"
        )
    return counts


def _size(rle) -> tuple[int, int]:
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise ValueError('rle must be a dict with keys "size" ([h, w]) and "counts"')
    size = rle["size"]
    if (
        not isinstance(size, (list, tuple))
        or len(size) != 2
        or not all(isinstance(v, (int, np.integer)) and v >= 0 for v in size)
    ):
        raise ValueError(f'rle "size" must be [h, w] with non-negative integers, got {size!r}')
    return int(size[0]), int(size[1])


def _counts(rle) -> list[int]:
    counts = rle["counts"]
    if isinstance(counts, (str, bytes)):
        return string_to_counts(counts)
    if isinstance(counts, (list, tuple, np.ndarray)):
        return [int(c) for c in counts]
    raise ValueError(
        f'rle "counts" must be a string (compressed) or a list of ints, got {type(counts).__name__}'
    )


def rle_encode(mask, compressed: bool = True) -> dict:
    """Encode a binary mask as COCO RLE.

    :param mask: bool (h, w), or integers 0/1.
    :param compressed: True for the ``counts`` string, False for the uncompressed list.
    :return: ``{"size": [h, w], "counts": str | list[int]}``.
    """
    mask = _check_mask(mask)
    counts = mask_to_counts(mask)
    h, w = mask.shape
    return {"size": [int(h), int(w)], "counts": counts_to_string(counts) if compressed else counts}


def rle_decode(rle: dict) -> np.ndarray:
    """Decode COCO RLE (compressed string, bytes, or list counts) to a bool (h, w) mask."""
    h, w = _size(rle)
    return counts_to_mask(_counts(rle), h, w)


def rle_area(rle: dict) -> int:
    """Number of foreground pixels of an RLE, without decoding it."""
    _size(rle)
    return int(sum(_counts(rle)[1::2]))


def _polygon_list(polygons) -> list[np.ndarray]:
    """Accept one flat polygon or a list of them; return (K, 2) float arrays of (x, y)."""
    if isinstance(polygons, np.ndarray):
        polygons = [polygons] if polygons.ndim == 1 else list(polygons)
    if not isinstance(polygons, (list, tuple)):
        raise ValueError("polygons must be a list of flat [x0, y0, x1, y1, ...] lists")
    if polygons and all(isinstance(v, (int, float, np.number)) for v in polygons):
        polygons = [polygons]  # a single flat polygon
    out = []
    for j, poly in enumerate(polygons):
        arr = np.asarray(poly, dtype=np.float64).ravel()
        if arr.size % 2:
            raise ValueError(
                f"polygons[{j}] has {arr.size} coordinates; a polygon is [x0, y0, x1, y1, ...] "
                "with an even count"
            )
        if not np.isfinite(arr).all():
            raise ValueError(f"polygons[{j}] holds a non-finite coordinate")
        out.append(arr.reshape(-1, 2))
    return out


def polygon_to_mask(polygons, h: int, w: int) -> np.ndarray:
    """Rasterise COCO polygons to a bool (h, w) mask by the pixel-centre, even-odd rule.

    :param polygons: a list of flat ``[x0, y0, x1, y1, ...]`` lists (COCO's form), or one such
        list. The object is the union of the polygons; a polygon with fewer than 3 points has
        no area and adds nothing.
    :param h: mask height (rows).
    :param w: mask width (columns).

    Scanline fill: on row r the horizontal line $y = r + \\tfrac12$ meets the polygon's edges at
    points $x_j$; an edge counts when $\\min(y_a, y_b) \\le y < \\max(y_a, y_b)$ (half-open, so a
    vertex on the line is met once, and horizontal edges never). A pixel centre
    $x = c + \\tfrac12$ is inside when an odd number of the $x_j$ are $\\le x$. Each crossing
    toggles every pixel from $c = \\lceil x_j - \\tfrac12 \\rceil$ rightwards, so the fill is a
    running sum of toggles, taken mod 2.
    """
    if int(h) != h or int(w) != w or h < 0 or w < 0:
        raise ValueError(f"h and w must be non-negative integers, got h={h}, w={w}")
    h, w = int(h), int(w)
    mask = np.zeros((h, w), dtype=bool)
    yc = np.arange(h, dtype=np.float64)[:, None] + 0.5  # (h, 1) row centres
    for pts in _polygon_list(polygons):
        if len(pts) < 3 or h == 0 or w == 0:
            continue
        x0, y0 = pts[:, 0], pts[:, 1]
        x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
        crosses = (np.minimum(y0, y1) <= yc) & (yc < np.maximum(y0, y1))  # (h, E)
        dy = np.where(y1 == y0, 1.0, y1 - y0)
        xs = x0 + (yc - y0) * (x1 - x0) / dy  # (h, E) crossing abscissae
        start = np.clip(np.ceil(xs - 0.5), 0, w).astype(np.int64)
        rows = np.broadcast_to(np.arange(h)[:, None], xs.shape)
        flat = (rows * (w + 1) + start)[crosses]
        toggles = np.bincount(flat, minlength=h * (w + 1)).reshape(h, w + 1)
        mask |= (np.cumsum(toggles, axis=1)[:, :w] % 2).astype(bool)
    return mask
