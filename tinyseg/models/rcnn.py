"""Faster R-CNN (Ren, He, Girshick and Sun, 2015) and Mask R-CNN (He, Gkioxari, Dollar and
Girshick, 2017): two-stage detectors, trained from scratch.

Two stages
----------
A one-stage detector (``retinanet.py``) classifies every anchor of a dense grid. A two-stage
detector first asks a cheap question everywhere, "is there an object here?", and then a costly
one only where the answer was yes:

1. The **region proposal network (RPN)** slides a small head over the feature map. For every
   anchor it predicts an objectness logit and four deltas; the best few hundred decoded boxes,
   thinned by NMS, are the *proposals*.
2. The **RoI heads** cut a fixed-size feature window out of the map for every proposal with
   RoIAlign (``tinyseg/ops/roi.py``), classify it into K classes (background included) and
   refine its box once more, with deltas of its own class.
3. **Mask R-CNN** adds a third head: on the same RoIs, a small fully convolutional net predicts
   one 28x28 mask per class. The box says *where* and *what*, the mask only has to say which
   pixels of the box.

Shapes (the defaults, a 128x128 RGB batch of N images, K = 4 classes with background, A = 12
anchors per cell, "cbr" = conv3x3 (no bias) -> BatchNorm -> ReLU)::

    images                                          (N,   3, 128, 128)
    backbone  cbr 3->16 /2; cbr 16->32 /2, cbr 32->32; cbr 32->64 /2, cbr 64->64
    features                                        (N,  64,  16,  16)   stride 8
    RPN       conv3x3 64->64 + ReLU                 (N,  64,  16,  16)
              conv1x1 -> A objectness logits        (N,  12,  16,  16) -> (N, 3072)
              conv1x1 -> 4A deltas                  (N,  48,  16,  16) -> (N, 3072, 4)
    proposals per image, no gradient                (P_i, 4)      P_i <= post_nms_top_n
    box head  roi_align 7x7 (scale 1/8)             (R,  64, 7, 7)      R RoIs in the batch
              flatten, fc 3136->256, ReLU, fc 256->256, ReLU
              class logits                          (R, K)
              class-specific deltas                 (R, (K-1)*4)
    mask head roi_align 14x14 (positives only)      (P,  64, 14, 14)
              4 x (conv3x3 -> 16 + ReLU)            (P,  16, 14, 14)
              convT 2x2 stride 2 + ReLU             (P,  16, 28, 28)
              conv1x1 -> K-1 mask logits            (P,   3, 28, 28)

Sizes. The scenes hold 1-4 objects on 128x128 pixels, so everything torchvision sizes for COCO
is scaled down: 32 sampled RoIs per image (not 512), up to 100 proposals in training and 50 at
inference (not 2000/1000), a 256-wide box head (not 1024) and a 16-channel mask head (not 256).
The mask head runs on every positive RoI of the batch (up to 8 x 8 = 64) at 14x14 and 28x28,
which makes it the dearest stage; ``benchmarks/rcnn.py --profile-only`` prints the split.

The RPN
-------
Anchors are ``boxes.anchor_grid`` (sizes x ratios at every cell, torchvision's order, anchor
``(i*W + j)*A + a`` at cell (i, j)), the same as RetinaNet's. The head's outputs are reshaped
(N, A*k, H, W) -> (N, H, W, A*k) -> (N, H*W*A, k) into that order.

*Proposals* (no gradient flows through them: they are treated as fixed boxes, as in the paper's
approximate joint training). Per image: take the ``pre_nms_top_n`` best anchors by objectness,
decode their deltas (``BoxCoder((1, 1, 1, 1))``), clip to the image, drop boxes thinner than
``rpn_min_size``, run NMS at ``rpn_nms_thresh`` (0.7) and keep the best ``post_nms_top_n``.
The code does this for the whole batch at once (one sort, one ``boxes.nms_by_image``), so its
device syncs do not grow with the batch.

*Loss.* ``Matcher(0.7, 0.3, allow_low_quality_matches=True)`` labels each anchor foreground,
background or ignored; ``BalancedPositiveNegativeSampler(256, 0.5)`` samples S anchors per
image (at most half positive). Over the S sampled anchors of the batch, with t in {0, 1},

    loss_objectness  = (1/S) sum_sampled  BCE-with-logits(o_k, t_k)
    loss_rpn_box_reg = (1/S) sum_positive smooth_l1(d_k - d*_k, beta=1/9)

The RoI heads
-------------
*Training RoIs.* The ground-truth boxes are appended to each image's proposals (so every
object has at least one perfect positive from the first step on, before the RPN has learned
anything). ``Matcher(0.5, 0.5)`` labels each RoI with its ground truth's class (IoU >= 0.5) or
background; ``BalancedPositiveNegativeSampler(32, 0.25)`` keeps R_i RoIs per image. Their
regression targets are ``BoxCoder((10, 10, 5, 5)).encode(gt, roi)``; the weights scale the
deltas of already-good boxes up to about unit size.

*Box loss*, over the R sampled RoIs of the batch, with labels y_r in 0..K-1:

    loss_classifier = (1/R) sum_r  -log softmax(z_r)[y_r]
    loss_box_reg    = (1/R) sum_{r: y_r > 0} smooth_l1(d_r[y_r] - d*_r, beta=1/9)

Only the deltas of the true class are trained (``d_r[y]`` picks 4 of the (K-1)*4 outputs).

*Mask loss.* On the positive RoIs only, the mask head gives logits m_r (K-1, 28, 28). The
target is the ground-truth mask, cut out and resized to 28x28 by the same RoIAlign
(``roi_align(gt_masks, rois, 28, aligned=True)``: soft values in [0, 1] at the edges):

    loss_mask = mean over r, pixels of BCE-with-logits(m_r[y_r], target_r)

Only the true class's channel is trained: the classes do not compete for pixels (a sigmoid
per class, not a softmax over classes), which the paper found decouples masks from
classification.

Inference
---------
Proposals (``post_nms_top_n_test`` per image) -> box head -> softmax over K classes ->
per-class decoding of every RoI -> clip -> drop background -> scores > ``score_thresh``
(0.05) -> drop tiny boxes -> NMS at ``nms_thresh`` (0.5) within each class -> the best
``detections_per_img`` (100). Mask R-CNN then runs the mask head on the final boxes, takes
sigmoid(m[label]) (28x28) and pastes it into the image (``paste_masks``): bilinear resampling
into the box, threshold 0.5.

Pasting is separable like a resize (``ops/pool.py``): for a box [x1, x2) x [y1, y2) and an
M x M mask, image pixel (y, x) reads the mask at

    u = (x + 0.5 - x1) * M / (x2 - x1) - 0.5,    v = (y + 0.5 - y1) * M / (y2 - y1) - 0.5

(clamped to [0, M-1]), the exact inverse of RoIAlign's ``aligned=True`` sample points, and is
zero outside the box. So the pasted soft mask is ``P_y m P_x^T`` with P_y (H, M) and P_x (W, M)
holding two bilinear weights per row: two small matrix products per detection.

Why ``aligned=False`` on the features
-------------------------------------
The backbone's 3x3 stride-2 convolutions with padding 1 centre feature cell i on image pixel
``8i``, i.e. on the continuous coordinate ``8i + 0.5``. A box coordinate x therefore sits at
feature coordinate (x - 0.5)/8, which ``aligned=False`` (x/8) misses by 1/16 of a cell and
``aligned=True`` (x/8 - 1/2) by 7/16. The mask targets sample the pixel grid itself (scale 1,
pixel i centred at i + 0.5), where ``aligned=True`` is exact.

An optional feature pyramid (``fpn_levels``)
---------------------------------------------
With ``fpn_levels = L > 1`` the heads read L maps instead of one (Lin et al., 2017): the
outputs C_1..C_L of the backbone's last L stages (strides s, 2s, ..., finest first) go through
a top-down pathway with lateral 1x1 convolutions,

    P_L = lateral_L(C_L),    P_l = lateral_l(C_l) + upsample_nearest_2x(P_{l+1})

and a 3x3 convolution on each sum, so every level has the coarse map's semantics at its own
resolution. The RPN head (shared weights) runs on every level; ``anchor_sizes`` is split into
L equal groups, the smallest sizes on the finest level, so each level proposes boxes of about
the sizes its cells can resolve. A RoI of size sqrt(wh) is cut from level

    l = clamp(L - 1 + floor(log2(sqrt(wh) / fpn_canonical_size)), 0, L - 1)

(FPN's eq. 1 with the coarsest level for a box of the canonical size, one level finer per
halving). With the defaults, ``fpn_levels=2`` reads strides 4 and 8: RoIs under 48 pixels
come from the stride-4 map, twice as fine as the single-level model's.

Every piece is a method, so a notebook can run them one at a time: ``features``, ``rpn_outputs``,
``propose``, ``rpn_loss``, ``select_training_rois``, ``roi_features``, ``box_loss``,
``mask_targets``, ``mask_loss``, ``detect`` and ``predict_masks``.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import accumulate
from typing import Any, NamedTuple

from .. import backend
from .. import functional as F
from ..autograd import Tensor, cat
from ..boxes import (
    BELOW_LOW_THRESHOLD,
    BalancedPositiveNegativeSampler,
    BoxCoder,
    Matcher,
    anchor_grid,
    box_iou,
    clip_boxes_to_image,
    nms_by_image,
    remove_small_boxes,
)
from ..nn import Conv2d, ConvTranspose2d, Linear, Module, ModuleList, Sequential, init
from ..nn.activation import ReLU
from ..ops.roi import boxes_to_rois
from ..validate import check_fraction, check_int
from .detection import SMOOTH_L1_BETA, AnchorDetector, as_detections

__all__ = ["BoxHead", "FasterRCNN", "FeaturePyramid", "MaskHead", "MaskRCNN", "RPNHead",
           "TrainingRoIs", "paste_masks"]

#: the box head's delta weights (wx, wy, ww, wh) (see docs/conventions.md, section "Box coding")
BOX_CODER_WEIGHTS = (10.0, 10.0, 5.0, 5.0)


# ----- the heads ------------------------------------------------------------------------------


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


class RPNHead(Module):
    """conv3x3 + ReLU, then 1x1 convs to A objectness logits and 4A deltas per cell."""

    def __init__(self, in_channels: int, num_anchors: int):
        super().__init__()
        self.conv = Conv2d(in_channels, in_channels, 3, padding=1)
        self.cls_logits = Conv2d(in_channels, num_anchors, 1)
        self.bbox_pred = Conv2d(in_channels, 4 * num_anchors, 1)
        for conv in (self.conv, self.cls_logits, self.bbox_pred):  # torchvision's init
            init.normal_(conv.weight, std=0.01)
            init.zeros_(conv.bias)

    def forward(self, features):
        """(N, C, H, W) -> (objectness (N, A, H, W), deltas (N, 4A, H, W))."""
        t = F.relu(self.conv(features))
        return self.cls_logits(t), self.bbox_pred(t)


class BoxHead(Module):
    """Two FC layers on the flattened RoI features, then class logits and class deltas."""

    def __init__(self, in_features: int, representation_size: int, num_classes: int):
        super().__init__()
        self.fc6 = Linear(in_features, representation_size)
        self.fc7 = Linear(representation_size, representation_size)
        self.cls_score = Linear(representation_size, num_classes)
        self.bbox_pred = Linear(representation_size, 4 * (num_classes - 1))
        init.normal_(self.cls_score.weight, std=0.01)  # start near uniform class scores
        init.normal_(self.bbox_pred.weight, std=0.001)  # and near-zero deltas (torchvision)

    def forward(self, roi_features):
        """(R, C, P, P) -> (class logits (R, K), deltas (R, (K-1)*4))."""
        x = roi_features.reshape(roi_features.shape[0], -1)
        x = F.relu(self.fc7(F.relu(self.fc6(x))))
        return self.cls_score(x), self.bbox_pred(x)


class MaskHead(Module):
    """``num_convs`` x (conv3x3 + ReLU), a 2x2 stride-2 transpose conv + ReLU, a 1x1 conv.

    (R, C, 14, 14) -> (R, K-1, 28, 28): one mask logit map per object class.
    """

    def __init__(self, in_channels: int, channels: int, num_convs: int, num_classes: int):
        super().__init__()
        layers, c = [], in_channels
        for _ in range(num_convs):
            layers += [Conv2d(c, channels, 3, padding=1), ReLU()]
            c = channels
        self.convs = Sequential(*layers)
        self.upsample = ConvTranspose2d(c, channels, 2, stride=2)
        self.predictor = Conv2d(channels, num_classes - 1, 1)

    def forward(self, roi_features):
        return self.predictor(F.relu(self.upsample(self.convs(roi_features))))


class TrainingRoIs(NamedTuple):
    """The sampled RoIs of a training batch (``FasterRCNN.select_training_rois``).

    :ivar rois: (R, 5) [image index, x1, y1, x2, y2]: each image's positives, then negatives.
    :ivar labels: (R,) int64 class labels, 0 for background.
    :ivar box_targets: (R, 4) encoded deltas to the matched ground truth (zeros for background).
    :ivar matched: (R,) int64 index of the matched ground truth among ALL the batch's ground
        truths (image 0's first), -1 for background: it picks the mask target.
    """

    rois: Any
    labels: Any
    box_targets: Any
    matched: Any

    @property
    def positive(self):
        """(R,) bool: the foreground RoIs (in the box-regression and mask losses)."""
        return self.labels > 0


# ----- pasting masks --------------------------------------------------------------------------


def _paste_matrix(lo, hi, size: int, mask_size: int, xp, dtype):
    """(D, size, M): row p holds the bilinear weights with which image pixel p reads the mask.

    Pixel p (centre p + 0.5) maps to mask coordinate u = (p + 0.5 - lo) M / (hi - lo) - 0.5,
    clamped to [0, M-1]; pixels whose centre lies outside [lo, hi] get a zero row.
    """
    centres = xp.arange(size, dtype=dtype)[None, :] + 0.5  # (1, size)
    lo, hi = lo[:, None], hi[:, None]  # (D, 1)
    extent = xp.maximum(hi - lo, 1e-6)
    u = xp.clip((centres - lo) * (mask_size / extent) - 0.5, 0, mask_size - 1)  # (D, size)
    u0 = xp.floor(u)
    lam = u - u0  # weight of the upper neighbour
    u0 = u0.astype(xp.int64)
    u1 = xp.minimum(u0 + 1, mask_size - 1)
    inside = ((centres >= lo) & (centres <= hi)).astype(dtype)
    taps = xp.arange(mask_size)[None, None, :]  # (1, 1, M)
    weights = ((taps == u0[..., None]) * (1 - lam)[..., None]
               + (taps == u1[..., None]) * lam[..., None])  # (D, size, M), rows sum to 1
    return (weights * inside[..., None]).astype(dtype)


def paste_masks(masks, boxes, image_size, threshold: float | None = 0.5):
    """Paste M x M soft masks into their boxes on an (H, W) image (Mask R-CNN's last step).

    ``pasted[d] = P_y[d] @ masks[d] @ P_x[d]^T`` (see the module docstring): bilinear
    resampling of each mask into its box, zero outside it.

    :param masks: (D, M, M) float soft masks (probabilities).
    :param boxes: (D, 4) xyxy pixel boxes, on the same device.
    :param image_size: (H, W).
    :param threshold: keep pixels with value > threshold as a bool mask; None keeps the soft
        values.
    :returns: (D, H, W) bool (or float with ``threshold=None``).
    """
    xp = backend.xp_of(masks, boxes)
    if masks.ndim != 3 or masks.shape[1] != masks.shape[2]:
        raise ValueError(f"masks must have shape (D, M, M), got {tuple(masks.shape)}")
    if boxes.shape != (masks.shape[0], 4):
        raise ValueError(f"boxes must have shape ({masks.shape[0]}, 4), one per mask, got "
                         f"{tuple(boxes.shape)}")
    height, width = (int(v) for v in image_size)
    m = masks.shape[1]
    dtype = masks.dtype if masks.dtype.kind == "f" else xp.float32
    boxes = boxes.astype(dtype, copy=False)
    p_y = _paste_matrix(boxes[:, 1], boxes[:, 3], height, m, xp, dtype)  # (D, H, M)
    p_x = _paste_matrix(boxes[:, 0], boxes[:, 2], width, m, xp, dtype)  # (D, W, M)
    pasted = p_y @ masks.astype(dtype, copy=False) @ p_x.transpose(0, 2, 1)  # (D, H, W)
    return pasted if threshold is None else pasted > threshold


# ----- the model ------------------------------------------------------------------------------


def _as_levels(features) -> list:
    """One feature map (a Tensor) or the list of pyramid levels, as a list."""
    return list(features) if isinstance(features, (list, tuple)) else [features]


def _check_masks(targets, boxes, image_size, device):
    """Each target's "masks" (M, H, W), one per box, the size of the images, on ``device``."""
    out = []
    for i, (t, b) in enumerate(zip(targets, boxes)):
        if not isinstance(t, Mapping) or "masks" not in t:
            raise ValueError(f"targets[{i}] needs 'masks' (M, H, W) bool instance masks for "
                             f"Mask R-CNN (dataset samples call them 'instance_masks')")
        m = backend.to_device(t["masks"], device)
        if m.size == 0 and b.shape[0] == 0:
            m = m.reshape(0, *image_size)
        if m.shape != (b.shape[0], *image_size):
            raise ValueError(f"targets[{i}]['masks'] must have shape ({b.shape[0]}, "
                             f"{image_size[0]}, {image_size[1]}) (one mask per box, the size "
                             f"of the images), got {tuple(m.shape)}")
        out.append(m)
    return out


class FasterRCNN(AnchorDetector):
    """A two-stage detector: backbone, RPN, RoIAlign and a box head (a mask head with ``masks``).

    :param num_classes: K, classes counting the background (4 for the shapes scenes).
    :param in_channels: channels of the input image.
    :param widths: backbone channels per stage (each stage halves the size).
    :param depths: conv-BN-ReLU layers per stage; the stride is ``2**len(widths)``.
    :param anchor_sizes: RPN anchor sizes in pixels.
    :param aspect_ratios: RPN anchor height/width ratios; A = sizes x ratios per cell.
    :param rpn_fg_iou_thresh: anchors with IoU >= this are RPN foreground (0.7).
    :param rpn_bg_iou_thresh: anchors with best IoU < this are RPN background (0.3).
    :param rpn_batch_size_per_image: anchors sampled per image for the RPN loss (256).
    :param rpn_positive_fraction: at most this fraction of them positive (0.5).
    :param rpn_pre_nms_top_n: (training, inference) anchors kept by objectness before NMS.
    :param rpn_post_nms_top_n: (training, inference) proposals kept after NMS.
    :param rpn_nms_thresh: the proposals' NMS IoU threshold (0.7).
    :param rpn_min_size: proposals thinner than this (pixels) are dropped.
    :param box_roi_size: side of the box head's RoIAlign output (7).
    :param sampling_ratio: RoIAlign samples per bin and axis (<= 0: adaptive).
    :param representation_size: width of the box head's two FC layers.
    :param box_fg_iou_thresh: RoIs with IoU >= this are foreground (0.5).
    :param box_bg_iou_thresh: RoIs with best IoU < this are background (0.5).
    :param box_batch_size_per_image: RoIs sampled per image for the box losses.
    :param box_positive_fraction: at most this fraction of them positive (0.25).
    :param masks: add the mask head (Mask R-CNN).
    :param mask_roi_size: side of the mask head's RoIAlign output (14; the masks are twice it).
    :param mask_channels: channels of the mask head's convs.
    :param mask_convs: 3x3 conv + ReLU layers in the mask head (4).
    :param fpn_levels: 1: the heads read the backbone's last map; L > 1: a feature pyramid over
        its last L stages (module docstring).
    :param fpn_canonical_size: with a pyramid, RoIs of this size (sqrt of the area, pixels) are
        cut from the coarsest level, each halving one level finer.
    :param score_thresh: inference keeps class scores above this (0.05).
    :param nms_thresh: IoU threshold of the per-class NMS at inference (0.5).
    :param detections_per_img: at most this many detections per image (100).

    Training mode: ``model(images, targets)`` returns {"loss_objectness", "loss_rpn_box_reg",
    "loss_classifier", "loss_box_reg"} and, with masks, "loss_mask". Eval mode:
    ``model(images)`` returns one dict per image, {"boxes", "scores", "labels"} and, with
    masks, "masks" (D, H, W) bool.
    """

    def __init__(self, num_classes: int = 4, in_channels: int = 3, widths=(16, 32, 64),
                 depths=(1, 2, 2), anchor_sizes=(20, 28, 40, 56), aspect_ratios=(0.5, 1.0, 2.0),
                 rpn_fg_iou_thresh: float = 0.7, rpn_bg_iou_thresh: float = 0.3,
                 rpn_batch_size_per_image: int = 256, rpn_positive_fraction: float = 0.5,
                 rpn_pre_nms_top_n=(300, 300), rpn_post_nms_top_n=(100, 50),
                 rpn_nms_thresh: float = 0.7, rpn_min_size: float = 1.0,
                 box_roi_size: int = 7, sampling_ratio: int = 2,
                 representation_size: int = 256, box_fg_iou_thresh: float = 0.5,
                 box_bg_iou_thresh: float = 0.5, box_batch_size_per_image: int = 32,
                 box_positive_fraction: float = 0.25, masks: bool = False,
                 mask_roi_size: int = 14, mask_channels: int = 16, mask_convs: int = 4,
                 fpn_levels: int = 1, fpn_canonical_size: float = 48.0,
                 score_thresh: float = 0.05, nms_thresh: float = 0.5,
                 detections_per_img: int = 100):
        super().__init__(num_classes, in_channels, widths, depths, anchor_sizes, aspect_ratios,
                         score_thresh, nms_thresh, detections_per_img)
        self.fpn_levels = check_int(fpn_levels, "fpn_levels", 1)
        if self.fpn_levels > len(self.widths):
            raise ValueError(f"fpn_levels must be at most the number of backbone stages "
                             f"({len(self.widths)}), got {fpn_levels}")
        if len(self.anchor_sizes) % self.fpn_levels:
            raise ValueError(f"anchor_sizes must split into fpn_levels={self.fpn_levels} equal "
                             f"groups (one per level), got {len(self.anchor_sizes)} sizes")
        if isinstance(fpn_canonical_size, bool) or not isinstance(fpn_canonical_size,
                                                                  (int, float)) \
                or not fpn_canonical_size > 0:
            raise ValueError(f"fpn_canonical_size must be a number > 0, got "
                             f"{fpn_canonical_size!r}")
        self.fpn_canonical_size = float(fpn_canonical_size)
        self.num_anchors //= self.fpn_levels  # anchors per cell on each level
        self.rpn_matcher = Matcher(rpn_fg_iou_thresh, rpn_bg_iou_thresh,
                                   allow_low_quality_matches=True)
        # the samplers draw from a stream seeded by the weights' stream (nn.init.manual_seed)
        seed = int(init.get_generator().integers(2**31))
        self.rpn_sampler = BalancedPositiveNegativeSampler(rpn_batch_size_per_image,
                                                           rpn_positive_fraction, rng=seed)
        self.rpn_pre_nms_top_n = self._train_test(rpn_pre_nms_top_n, "rpn_pre_nms_top_n")
        self.rpn_post_nms_top_n = self._train_test(rpn_post_nms_top_n, "rpn_post_nms_top_n")
        self.rpn_nms_thresh = check_fraction(rpn_nms_thresh, "rpn_nms_thresh")
        if isinstance(rpn_min_size, bool) or not isinstance(rpn_min_size, (int, float)) \
                or rpn_min_size < 0:
            raise ValueError(f"rpn_min_size must be a number >= 0, got {rpn_min_size!r}")
        self.rpn_min_size = float(rpn_min_size)
        self.rpn_coder = BoxCoder((1.0, 1.0, 1.0, 1.0))
        self.box_roi_size = check_int(box_roi_size, "box_roi_size", 1)
        if isinstance(sampling_ratio, bool) or not isinstance(sampling_ratio, int):
            raise ValueError(f"sampling_ratio must be an int (<= 0: adaptive), got "
                             f"{sampling_ratio!r}")
        self.sampling_ratio = sampling_ratio
        self.representation_size = check_int(representation_size, "representation_size", 1)
        self.box_matcher = Matcher(box_fg_iou_thresh, box_bg_iou_thresh,
                                   allow_low_quality_matches=False)
        self.box_sampler = BalancedPositiveNegativeSampler(box_batch_size_per_image,
                                                           box_positive_fraction, rng=seed + 1)
        self.box_coder = BoxCoder(BOX_CODER_WEIGHTS)
        if not isinstance(masks, bool):
            raise ValueError(f"masks must be True or False, got {masks!r}")
        self.masks = masks
        self.mask_roi_size = check_int(mask_roi_size, "mask_roi_size", 1)
        self.mask_channels = check_int(mask_channels, "mask_channels", 1)
        self.mask_convs = check_int(mask_convs, "mask_convs", 0)

        c = self.widths[-1]
        if self.fpn_levels > 1:
            self.fpn = FeaturePyramid(self.widths[-self.fpn_levels:], c)
        self.rpn = RPNHead(c, self.num_anchors)
        self.box_head = BoxHead(c * self.box_roi_size ** 2, self.representation_size,
                                self.num_classes)
        if self.masks:
            self.mask_head = MaskHead(c, self.mask_channels, self.mask_convs, self.num_classes)

    @staticmethod
    def _train_test(value, name: str) -> tuple[int, int]:
        values = (value, value) if isinstance(value, int) else tuple(value)
        if len(values) != 2:
            raise ValueError(f"{name} must be an int or a pair (training, inference), got "
                             f"{value!r}")
        return tuple(check_int(v, name, 1) for v in values)

    # ----- description ----------------------------------------------------------------------
    def config(self) -> dict:
        """The constructor arguments (JSON-able): ``type(model)(**model.config())`` rebuilds it."""
        return {
            **super().config(),
            "rpn_fg_iou_thresh": self.rpn_matcher.high_threshold,
            "rpn_bg_iou_thresh": self.rpn_matcher.low_threshold,
            "rpn_batch_size_per_image": self.rpn_sampler.batch_size_per_image,
            "rpn_positive_fraction": self.rpn_sampler.positive_fraction,
            "rpn_pre_nms_top_n": list(self.rpn_pre_nms_top_n),
            "rpn_post_nms_top_n": list(self.rpn_post_nms_top_n),
            "rpn_nms_thresh": self.rpn_nms_thresh,
            "rpn_min_size": self.rpn_min_size,
            "box_roi_size": self.box_roi_size,
            "sampling_ratio": self.sampling_ratio,
            "representation_size": self.representation_size,
            "box_fg_iou_thresh": self.box_matcher.high_threshold,
            "box_bg_iou_thresh": self.box_matcher.low_threshold,
            "box_batch_size_per_image": self.box_sampler.batch_size_per_image,
            "box_positive_fraction": self.box_sampler.positive_fraction,
            "masks": self.masks,
            "mask_roi_size": self.mask_roi_size,
            "mask_channels": self.mask_channels,
            "mask_convs": self.mask_convs,
            "fpn_levels": self.fpn_levels,
            "fpn_canonical_size": self.fpn_canonical_size,
        }

    @property
    def feature_strides(self) -> tuple[int, ...]:
        """The stride of each feature map the heads read, finest first (stage i: 2**(i+1))."""
        stages = len(self.widths)
        return tuple(2 ** (i + 1) for i in range(stages - self.fpn_levels, stages))

    def build_anchors(self, h: int, w: int, device: str, dtype):
        """All RPN anchors of an (h, w) image, level after level, in the order of the RPN
        outputs; level l has the l-th group of ``anchor_sizes`` at stride ``feature_strides[l]``.
        (``anchors`` caches them per image size, device and dtype.)
        """
        self.output_size(h, w)  # checks the size
        per_level = len(self.anchor_sizes) // self.fpn_levels
        grids = [anchor_grid((h // s, w // s), s,
                             self.anchor_sizes[i * per_level:(i + 1) * per_level],
                             self.aspect_ratios, device=device, dtype=dtype)
                 for i, s in enumerate(self.feature_strides)]
        return grids[0] if len(grids) == 1 else backend.xp_of(grids[0]).concatenate(grids)

    def features(self, images) -> list:
        """The maps the heads read: [backbone(x)], or the L pyramid levels, finest first."""
        if self.fpn_levels == 1:
            return [self.backbone(images)]
        # run the flat backbone layer by layer, keeping the output of each stage's last layer
        ends = set(accumulate(self.depths))  # layer counts at the end of each stage
        stages, x = [], images
        for i, layer in enumerate(self.backbone):
            x = layer(x)
            if i + 1 in ends:
                stages.append(x)
        return self.fpn(stages[-self.fpn_levels:])

    # ----- forward ----------------------------------------------------------------------------
    def forward(self, images, targets=None):
        """Losses (training mode) or detections (eval mode); see the class docstring.

        :param images: (N, in_channels, H, W) float Tensor; H and W multiples of the stride.
        :param targets: training only: N dicts {"boxes" (M, 4) xyxy, "labels" (M,) in
            1..num_classes-1, and for Mask R-CNN "masks" (M, H, W) bool}, host arrays.
        """
        x, image_size, boxes, labels = self.check_inputs(images, targets)
        device = backend.device_of(x.data)
        gt_masks = _check_masks(targets, boxes, image_size, device) \
            if self.training and self.masks else None
        features = self.features(x)
        objectness, rpn_deltas = self.rpn_outputs(features)
        anchors = self.anchors(*image_size, device=device, dtype=x.dtype)
        proposals = self.propose(objectness, rpn_deltas, anchors, image_size)
        if not self.training:
            detections = self.detect(features, proposals, image_size)
            if self.masks:
                self.predict_masks(features, detections, image_size)
            return detections
        losses = self.rpn_loss(objectness, rpn_deltas, anchors, boxes)
        sampled = self.select_training_rois(proposals, boxes, labels)
        class_logits, box_deltas = self.box_head(
            self.roi_features(features, sampled.rois, self.box_roi_size))
        losses.update(self.box_loss(class_logits, box_deltas, sampled))
        if self.masks:
            losses["loss_mask"] = self.mask_loss(features, sampled, gt_masks)
        return losses

    # ----- the RPN ----------------------------------------------------------------------------
    def rpn_outputs(self, features):
        """The RPN head on every feature map, in anchor order (level after level).

        :param features: the (N, C, H', W') feature map, or the list of ``features(x)``.
        :returns: ``(objectness, deltas)``: Tensors (N, K) and (N, K, 4), K = sum of H'*W'*A.
        """
        objectness, deltas = [], []
        for level in _as_levels(features):
            logits, level_deltas = self.rpn(level)
            logits = self.per_anchor(logits, 1)
            objectness.append(logits.reshape(*logits.shape[:2]))
            deltas.append(self.per_anchor(level_deltas, 4))
        if len(objectness) == 1:
            return objectness[0], deltas[0]
        return cat(objectness, 1), cat(deltas, 1)

    def propose(self, objectness, deltas, anchors, image_size) -> list:
        """Proposals, per image: top-n by objectness, decode, clip, drop small, NMS, top-n.

        :param objectness: (N, K) logits (Tensor or array; no gradient flows).
        :param deltas: (N, K, 4) RPN deltas.
        :param anchors: (K, 4) anchors on the same device.
        :param image_size: (H, W) for clipping.
        :returns: N arrays (P_i, 4) xyxy, by decreasing objectness.
        """
        scores = objectness.data if isinstance(objectness, Tensor) else objectness
        deltas = deltas.data if isinstance(deltas, Tensor) else deltas
        xp = backend.xp_of(scores, deltas, anchors)
        phase = 0 if self.training else 1
        pre, post = self.rpn_pre_nms_top_n[phase], self.rpn_post_nms_top_n[phase]
        N = scores.shape[0]
        # the whole batch at once: (N, pre) best anchors per image, flattened image by image
        top = xp.argsort(-scores, axis=1, kind="stable")[:, :pre]
        pre = top.shape[1]
        image = xp.repeat(xp.arange(N), pre)
        top = top.reshape(-1)
        boxes = self.rpn_coder.decode(deltas[image, top], anchors[top])
        boxes = clip_boxes_to_image(boxes, image_size)
        keep = remove_small_boxes(boxes, self.rpn_min_size)
        boxes, image, top = boxes[keep], image[keep], top[keep]
        kept = nms_by_image(boxes, scores[image, top], None, image, N, self.rpn_nms_thresh,
                            top_n=post)
        return [boxes[k] for k in kept]

    def rpn_loss(self, objectness, deltas, anchors, boxes) -> dict:
        """The RPN's two loss terms over the sampled anchors of the batch (module docstring).

        :param objectness: (N, K) Tensor of logits.
        :param deltas: (N, K, 4) Tensor of deltas.
        :param anchors: (K, 4) anchors.
        :param boxes: N arrays (M_i, 4) of ground-truth boxes on the anchors' device.
        :returns: {"loss_objectness", "loss_rpn_box_reg"}: scalar Tensors.
        """
        xp = backend.xp_of(anchors)
        labels, box_targets = [], []
        for gt in boxes:
            gt = gt.astype(anchors.dtype, copy=False)
            if gt.shape[0] == 0:  # every anchor is background
                labels.append(xp.zeros(anchors.shape[0], dtype=xp.int64))
                box_targets.append(xp.zeros_like(anchors))
                continue
            matches = self.rpn_matcher(box_iou(gt, anchors))
            labels.append(xp.where(matches >= 0, 1,
                                   xp.where(matches == BELOW_LOW_THRESHOLD, 0, -1)))
            box_targets.append(self.rpn_coder.encode(gt[xp.maximum(matches, 0)], anchors))
        positive, negative = self.rpn_sampler(labels)
        positive, negative = xp.stack(positive), xp.stack(negative)  # (N, K) bool
        dtype = objectness.dtype
        sampled = (positive | negative).astype(dtype)
        num_sampled = xp.maximum(sampled.sum(), 1).astype(dtype)
        bce = F.binary_cross_entropy_with_logits(objectness, positive.astype(dtype),
                                                 reduction="none")
        box_terms = F.smooth_l1_loss(deltas, xp.stack(box_targets).astype(dtype),
                                     reduction="none", beta=SMOOTH_L1_BETA)
        return {
            "loss_objectness": (bce * sampled).sum() / num_sampled,
            "loss_rpn_box_reg": (box_terms * positive.astype(dtype)[..., None]).sum()
            / num_sampled,
        }

    # ----- the RoI heads ------------------------------------------------------------------------
    def select_training_rois(self, proposals, boxes, labels) -> TrainingRoIs:
        """Append the ground truths to the proposals, match, sample (module docstring).

        :param proposals: N arrays (P_i, 4).
        :param boxes: N arrays (M_i, 4) of ground-truth boxes.
        :param labels: N int arrays (M_i,) of their labels.
        :returns: :class:`TrainingRoIs` for the whole batch.
        """
        xp = backend.xp_of(proposals[0])
        dtype = proposals[0].dtype
        kept, roi_labels, targets, matched = [], [], [], []
        offset = 0  # index of this image's first ground truth in the whole batch
        for props, gt, gt_labels in zip(proposals, boxes, labels):
            gt = gt.astype(dtype, copy=False)
            props = xp.concatenate([props, gt])
            if gt.shape[0] == 0:
                matches = xp.full(props.shape[0], BELOW_LOW_THRESHOLD, dtype=xp.int64)
            else:
                matches = self.box_matcher(box_iou(gt, props))
            safe = xp.maximum(matches, 0)
            image_labels = xp.where(
                matches >= 0, gt_labels[safe] if gt.shape[0] else 0,
                xp.where(matches == BELOW_LOW_THRESHOLD, 0, -1)).astype(xp.int64)
            positive, negative = self.box_sampler(image_labels)
            keep = xp.concatenate([xp.nonzero(positive)[0], xp.nonzero(negative)[0]])
            props, image_labels, safe = props[keep], image_labels[keep], safe[keep]
            foreground = image_labels > 0
            if gt.shape[0]:
                deltas = self.box_coder.encode(gt[safe], props)
                targets.append(xp.where(foreground[:, None], deltas, 0).astype(dtype))
            else:
                targets.append(xp.zeros_like(props))
            kept.append(props)
            roi_labels.append(image_labels)
            matched.append(xp.where(foreground, safe + offset, -1))
            offset += gt.shape[0]
        return TrainingRoIs(boxes_to_rois(kept), xp.concatenate(roi_labels),
                            xp.concatenate(targets), xp.concatenate(matched))

    def roi_levels(self, boxes):
        """(R,) int64: the pyramid level each (R, 4) box is cut from (module docstring)."""
        xp = backend.xp_of(boxes)
        size = xp.sqrt(xp.maximum((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]),
                                  1e-12))
        level = self.fpn_levels - 1 + xp.floor(xp.log2(size / self.fpn_canonical_size) + 1e-6)
        return xp.clip(level, 0, self.fpn_levels - 1).astype(xp.int64)

    def roi_features(self, features, rois, output_size: int):
        """RoIAlign on the feature map(s): (R, 5) image-pixel RoIs -> (R, C, P, P) Tensor.

        With a pyramid each RoI is cut from its level (``roi_levels``), at that level's scale.
        """
        levels = _as_levels(features)
        if len(levels) == 1:
            return F.roi_align(levels[0], rois, output_size, spatial_scale=1.0 / self.stride,
                               sampling_ratio=self.sampling_ratio, aligned=False)
        xp = backend.xp_of(rois)
        assigned = self.roi_levels(rois[:, 1:])
        pieces, order = [], []
        for level, (feature_map, stride) in enumerate(zip(levels, self.feature_strides)):
            chosen = xp.nonzero(assigned == level)[0]
            pieces.append(F.roi_align(feature_map, rois[chosen], output_size,
                                      spatial_scale=1.0 / stride,
                                      sampling_ratio=self.sampling_ratio, aligned=False))
            order.append(chosen)
        # the pieces come level by level; put every RoI back in its place
        return cat(pieces, 0)[xp.argsort(xp.concatenate(order))]

    def box_loss(self, class_logits, box_deltas, sampled: TrainingRoIs) -> dict:
        """Cross-entropy over all sampled RoIs, smooth L1 on the true class's deltas.

        :param class_logits: (R, K) Tensor.
        :param box_deltas: (R, (K-1)*4) Tensor.
        :param sampled: the batch's :class:`TrainingRoIs`.
        :returns: {"loss_classifier", "loss_box_reg"}: scalar Tensors, both divided by R.
        """
        xp = backend.xp_of(sampled.labels)
        num_rois = class_logits.shape[0]
        positive = xp.nonzero(sampled.positive)[0]
        loss_classifier = F.cross_entropy(class_logits, sampled.labels)
        deltas = box_deltas.reshape(num_rois, self.num_classes - 1, 4)[
            positive, sampled.labels[positive] - 1]  # (P, 4): the true class's deltas
        loss_box_reg = F.smooth_l1_loss(deltas, sampled.box_targets[positive],
                                        reduction="sum", beta=SMOOTH_L1_BETA) / max(num_rois, 1)
        return {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg}

    # ----- the mask head ------------------------------------------------------------------------
    @property
    def mask_size(self) -> int:
        """Side of the predicted masks and their targets: twice ``mask_roi_size`` (28)."""
        return 2 * self.mask_roi_size

    def mask_targets(self, rois, matched, gt_masks):
        """Each positive RoI's ground-truth mask, cut out and resized to 28x28 by RoIAlign.

        :param rois: (P, 5) positive RoIs (image index, box).
        :param matched: (P,) index of each RoI's ground truth among all the batch's masks.
        :param gt_masks: N arrays (M_i, H, W) bool, concatenated in that order.
        :returns: (P, S, S) soft targets in [0, 1], in the RoIs' dtype (S = ``mask_size``).
        """
        xp = backend.xp_of(rois)
        all_masks = xp.concatenate(gt_masks).astype(rois.dtype)[:, None]  # (G, 1, H, W)
        # the "image" a RoI samples is its own ground-truth mask
        mask_rois = xp.concatenate([matched[:, None].astype(rois.dtype), rois[:, 1:]], axis=1)
        targets = F.roi_align(all_masks, mask_rois, self.mask_size, spatial_scale=1.0,
                              sampling_ratio=self.sampling_ratio, aligned=True)
        return targets.data[:, 0]

    def mask_loss(self, features, sampled: TrainingRoIs, gt_masks):
        """Mean BCE-with-logits of the true class's 28x28 mask over the positive RoIs."""
        xp = backend.xp_of(sampled.labels)
        positive = xp.nonzero(sampled.positive)[0]
        if positive.shape[0] == 0:  # no object in the whole batch: nothing to learn
            return Tensor(xp.zeros((), dtype=_as_levels(features)[0].dtype))
        rois, labels = sampled.rois[positive], sampled.labels[positive]
        logits = self.mask_head(self.roi_features(features, rois, self.mask_roi_size))
        logits = logits[xp.arange(positive.shape[0]), labels - 1]  # (P, 28, 28)
        targets = self.mask_targets(rois, sampled.matched[positive], gt_masks)
        return F.binary_cross_entropy_with_logits(logits, targets)

    # ----- inference ----------------------------------------------------------------------------
    def detect(self, features, proposals, image_size) -> list[dict]:
        """Box head on the proposals, then per-class decoding, threshold, NMS, top-k.

        :param features: the (N, C, H', W') feature map, or the list of ``features(x)``.
        :param proposals: N arrays (P_i, 4).
        :param image_size: (H, W) for clipping.
        :returns: N dicts {"boxes", "scores", "labels"}, by decreasing score.
        """
        first = _as_levels(features)[0].data
        xp = backend.xp_of(first)
        rois = boxes_to_rois(list(proposals), first)  # (R, 5), image by image
        class_logits, box_deltas = self.box_head(
            self.roi_features(features, rois, self.box_roi_size))
        probs = F.softmax(class_logits.data, dim=1).data  # (R, K)
        boxes = self.box_coder.decode(box_deltas.data, rois[:, 1:])  # (R, (K-1)*4)
        num_object_classes = self.num_classes - 1
        # every (RoI, class) pair of the batch, RoI-major, image by image
        boxes = clip_boxes_to_image(boxes.reshape(-1, 4), image_size)  # (R*(K-1), 4)
        scores = probs[:, 1:].reshape(-1)  # background dropped
        classes = xp.tile(xp.arange(num_object_classes), rois.shape[0])
        image = xp.repeat(rois[:, 0].astype(xp.int64), num_object_classes)
        keep = xp.nonzero(scores > self.score_thresh)[0]
        keep = keep[remove_small_boxes(boxes[keep], 1e-2)]
        boxes, scores, classes, image = boxes[keep], scores[keep], classes[keep], image[keep]
        kept = nms_by_image(boxes, scores, classes, image, len(proposals), self.nms_thresh,
                            top_n=self.detections_per_img)
        return [as_detections(boxes[k], scores[k], classes[k]) for k in kept]

    def predict_masks(self, features, detections, image_size) -> list[dict]:
        """Add "masks" (D, H, W) bool to each detection dict (in place; also returned).

        The mask head runs on the detected boxes; each box keeps sigmoid(m[label]) (28x28),
        pasted into the image and thresholded at 0.5 (``paste_masks``).
        """
        first = _as_levels(features)[0].data
        xp = backend.xp_of(first)
        rois = boxes_to_rois([d["boxes"] for d in detections], first)
        if rois.shape[0]:
            logits = self.mask_head(self.roi_features(features, rois, self.mask_roi_size)).data
            labels = xp.concatenate([d["labels"] for d in detections])
            soft = F.sigmoid(logits[xp.arange(rois.shape[0]), labels - 1]).data  # (D, 28, 28)
        start = 0
        for d in detections:
            count = d["boxes"].shape[0]
            if count:
                d["masks"] = paste_masks(soft[start:start + count], d["boxes"], image_size)
            else:
                d["masks"] = xp.zeros((0, *image_size), dtype=bool)
            start += count
        return detections

    def extra_repr(self):
        return (f"num_classes={self.num_classes}, widths={self.widths}, "
                f"anchor_sizes={self.anchor_sizes}, aspect_ratios={self.aspect_ratios}, "
                f"masks={self.masks}, fpn_levels={self.fpn_levels}")


class MaskRCNN(FasterRCNN):
    """Faster R-CNN with the mask head on: ``FasterRCNN(masks=True)`` by another name."""

    def __init__(self, num_classes: int = 4, in_channels: int = 3, masks: bool = True,
                 **options):
        super().__init__(num_classes, in_channels, masks=masks, **options)
