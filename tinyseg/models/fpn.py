"""A feature pyramid (Lin et al., 2017) and the RoIAlign that reads it (torchvision's
``FeaturePyramidNetwork`` and ``MultiScaleRoIAlign``).

The top-down pathway
--------------------
A backbone's stages see more and more context at coarser and coarser resolutions: the last
map knows *what* is there, the early ones *where*. A feature pyramid gives every resolution the
coarse map's semantics. The outputs C_1..C_L of the backbone's last L stages (strides s, 2s, ...,
finest first) go through lateral 1x1 convolutions and a top-down pathway,

    P_L = lateral_L(C_L),    P_l = lateral_l(C_l) + upsample_nearest_2x(P_{l+1})

and a 3x3 convolution on each sum (``FeaturePyramid``): L maps of F channels, each twice the
size of the next.

Which level a RoI is cut from
-----------------------------
A small box has few cells on a coarse map, a large box wastes a fine one. A RoI of size
sqrt(wh) is cut from level

    l = clamp(L - 1 + floor(log2(sqrt(wh) / canonical_size)), 0, L - 1)

(FPN's eq. 1, counted from the finest level: a box of ``canonical_size`` comes from the
coarsest level, each halving of its size one level finer; ``roi_levels``). With tinyseg's R-CNN
defaults (``fpn_levels=2``, canonical size 48), RoIs under 48 pixels come from the stride-4 map.
``MultiScaleRoIAlign`` runs RoIAlign on each level for the RoIs assigned to it, at that level's
scale, and puts the pieces back in the RoIs' order. With one level it is plain RoIAlign.
"""

from __future__ import annotations

from .. import backend
from .. import functional as F
from ..autograd import cat
from ..nn import Conv2d, Module, ModuleList

__all__ = ["FeaturePyramid", "MultiScaleRoIAlign", "roi_levels"]


class FeaturePyramid(Module):
    """FPN's top-down pathway: lateral 1x1 convs, nearest 2x upsampling and sums, 3x3 convs.

    :param in_channels: channels of the L backbone stages it reads, finest first.
    :param out_channels: channels of every pyramid level.
    """

    def __init__(self, in_channels, out_channels: int):
        super().__init__()
        self.lateral = ModuleList([Conv2d(c, out_channels, 1) for c in in_channels])
        self.output = ModuleList([Conv2d(out_channels, out_channels, 3, padding=1)
                                  for _ in in_channels])

    def forward(self, stages):
        """L maps (N, C_l, H_l, W_l), each twice the size of the next -> L maps (N, F, H_l, W_l)."""
        top = self.lateral[len(stages) - 1](stages[-1])
        levels = [self.output[len(stages) - 1](top)]
        for level in range(len(stages) - 2, -1, -1):
            top = self.lateral[level](stages[level]) + F.interpolate(top, scale_factor=2)
            levels.insert(0, self.output[level](top))
        return levels


def roi_levels(boxes, num_levels: int, canonical_size: float):
    """(R,) int64: the pyramid level (0 = finest) each (R, 4) xyxy box is cut from."""
    xp = backend.xp_of(boxes)
    size = xp.sqrt(xp.maximum((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]),
                              1e-12))
    # the 1e-6 absorbs log2's round-off: a box of exactly canonical_size / 2**k keeps its level
    level = num_levels - 1 + xp.floor(xp.log2(size / canonical_size) + 1e-6)
    return xp.clip(level, 0, num_levels - 1).astype(xp.int64)


def as_levels(features) -> list:
    """One feature map (a Tensor) or the list of pyramid levels, as a list."""
    return list(features) if isinstance(features, (list, tuple)) else [features]


class MultiScaleRoIAlign:
    """RoIAlign on one map or a pyramid: (R, 5) image-pixel RoIs -> (R, C, P, P) Tensor.

    :param output_size: P, the side of each RoI's output.
    :param strides: the stride of each level, finest first (one entry: no pyramid).
    :param sampling_ratio: RoIAlign samples per bin and axis (<= 0: adaptive).
    :param canonical_size: the RoI size read from the coarsest level (``roi_levels``).

    ``aligned=False``: the backbone's stride-2 convolutions centre feature cell i on pixel
    coordinate ``s*i + 0.5``, which x/s misses by 1/(2s) of a cell and the half-pixel shift of
    ``aligned=True`` by (s-1)/(2s) (the R-CNN docstring works it out).
    """

    def __init__(self, output_size: int, strides, sampling_ratio: int,
                 canonical_size: float = 48.0):
        self.output_size = output_size
        self.strides = tuple(strides)
        self.sampling_ratio = sampling_ratio
        self.canonical_size = canonical_size

    def __repr__(self):
        return (f"MultiScaleRoIAlign(output_size={self.output_size}, strides={self.strides}, "
                f"sampling_ratio={self.sampling_ratio})")

    def __call__(self, features, rois):
        levels = as_levels(features)
        if len(levels) == 1:
            return F.roi_align(levels[0], rois, self.output_size,
                               spatial_scale=1.0 / self.strides[0],
                               sampling_ratio=self.sampling_ratio, aligned=False)
        xp = backend.xp_of(rois)
        assigned = roi_levels(rois[:, 1:], len(levels), self.canonical_size)
        pieces, order = [], []
        for level, (feature_map, stride) in enumerate(zip(levels, self.strides)):
            chosen = xp.nonzero(assigned == level)[0]
            pieces.append(F.roi_align(feature_map, rois[chosen], self.output_size,
                                      spatial_scale=1.0 / stride,
                                      sampling_ratio=self.sampling_ratio, aligned=False))
            order.append(chosen)
        # the pieces come level by level; put every RoI back in its place
        return cat(pieces, 0)[xp.argsort(xp.concatenate(order))]
