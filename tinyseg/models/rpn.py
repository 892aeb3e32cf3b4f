"""The region proposal network: R-CNN's first stage (torchvision's ``rpn.py``).

The RPN asks, at every anchor of the feature map(s), the cheap question "is there an object
here, and roughly where?", and hands the best few hundred answers, the *proposals*, to the RoI
heads (``roi_heads.py``). ``RegionProposalNetwork`` holds the head, the matcher, the sampler
and the box coder; ``rpn_loss`` is its loss as a free function, as in torchvision.

Shapes (the R-CNN defaults: C = 64 channels at stride 8 on a 128x128 image, A = 12 anchors)::

    features                           (N,  64, 16, 16)
    conv3x3 64->64 + ReLU              (N,  64, 16, 16)
    conv1x1 -> A objectness logits     (N,  12, 16, 16) -> (N, 3072)
    conv1x1 -> 4A deltas               (N,  48, 16, 16) -> (N, 3072, 4)
    proposals per image, no gradient   (P_i, 4)      P_i <= post_nms_top_n

Anchors and layout
------------------
Anchors are ``anchors.anchor_grid`` (sizes x ratios at every cell, torchvision's order, anchor
``(i*W + j)*A + a`` at cell (i, j)), the same as RetinaNet's. The head's outputs are reshaped
(N, A*k, H, W) -> (N, H, W, A*k) -> (N, H*W*A, k) into that order (``head_outputs``); with a
feature pyramid the levels follow one another, finest first.

Proposals
---------
No gradient flows through them: they are treated as fixed boxes, as in the paper's approximate
joint training. Per image (``propose``): take the ``pre_nms_top_n`` best anchors by objectness,
decode their deltas (``BoxCoder((1, 1, 1, 1))``), clip to the image, drop boxes thinner than
``min_size``, run NMS at ``nms_thresh`` (0.7) and keep the best ``post_nms_top_n``. Both
top-n are pairs (training, inference). The code does this for the whole batch at once (one
sort, one ``boxes.nms_by_image``), so its device syncs do not grow with the batch.

Loss
----
``Matcher(0.7, 0.3, allow_low_quality_matches=True)`` labels each anchor foreground,
background or ignored (``assign_targets``); ``BalancedPositiveNegativeSampler(256, 0.5)``
samples S anchors per image (at most half positive). Over the S sampled anchors of the batch,
with t in {0, 1} (``rpn_loss``),

    loss_objectness  = (1/S) sum_sampled  BCE-with-logits(o_k, t_k)
    loss_rpn_box_reg = (1/S) sum_positive smooth_l1(d_k - d*_k, beta=1/9)

The sample is drawn from the ``rng`` given (a ``numpy.random.Generator``), by default
``anchors.step_generator()``: one draw from numpy's global stream, which the training loop
reseeds from (seed, epoch) every epoch, so a resumed run samples what the unbroken run sampled.
"""

from __future__ import annotations

from .. import backend
from .. import functional as F
from ..anchors import (
    BELOW_LOW_THRESHOLD,
    BalancedPositiveNegativeSampler,
    BoxCoder,
    Matcher,
    step_generator,
)
from ..autograd import Tensor, cat
from ..boxes import box_iou, clip_boxes_to_image, nms_by_image, remove_small_boxes
from ..nn import Conv2d, Module, init
from ..validate import check_fraction, check_int
from .detection import SMOOTH_L1_BETA
from .fpn import as_levels

__all__ = ["RPNHead", "RegionProposalNetwork", "rpn_loss", "train_test_pair"]


def train_test_pair(value, name: str) -> tuple[int, int]:
    """An int or a pair (training, inference) of ints >= 1, as a pair."""
    values = (value, value) if isinstance(value, int) else tuple(value)
    if len(values) != 2:
        raise ValueError(f"{name} must be an int or a pair (training, inference), got "
                         f"{value!r}")
    return tuple(check_int(v, name, 1) for v in values)


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


def rpn_loss(objectness, deltas, positive, negative, box_targets) -> dict:
    """The RPN's two loss terms over the sampled anchors of the batch (module docstring).

    :param objectness: (N, K) Tensor of logits.
    :param deltas: (N, K, 4) Tensor of deltas.
    :param positive: (N, K) bool: the sampled foreground anchors.
    :param negative: (N, K) bool: the sampled background anchors.
    :param box_targets: (N, K, 4) encoded deltas to each anchor's matched ground truth.
    :returns: {"loss_objectness", "loss_rpn_box_reg"}: scalar Tensors, both divided by S.
    """
    xp = backend.xp_of(positive, negative)
    dtype = objectness.dtype
    sampled = (positive | negative).astype(dtype)
    num_sampled = xp.maximum(sampled.sum(), 1).astype(dtype)
    bce = F.binary_cross_entropy_with_logits(objectness, positive.astype(dtype),
                                             reduction="none")
    box_terms = F.smooth_l1_loss(deltas, box_targets.astype(dtype), reduction="none",
                                 beta=SMOOTH_L1_BETA)
    return {
        "loss_objectness": (bce * sampled).sum() / num_sampled,
        "loss_rpn_box_reg": (box_terms * positive.astype(dtype)[..., None]).sum() / num_sampled,
    }


class RegionProposalNetwork(Module):
    """The RPN: a head shared by every level, proposals, and the loss of its two outputs.

    :param in_channels: channels of the feature map(s).
    :param num_anchors: A, anchors per cell (on each level).
    :param fg_iou_thresh: anchors with IoU >= this are foreground (0.7).
    :param bg_iou_thresh: anchors with best IoU < this are background (0.3).
    :param batch_size_per_image: anchors sampled per image for the loss (256).
    :param positive_fraction: at most this fraction of them positive (0.5).
    :param pre_nms_top_n: (training, inference) anchors kept by objectness before NMS.
    :param post_nms_top_n: (training, inference) proposals kept after NMS.
    :param nms_thresh: the proposals' NMS IoU threshold (0.7).
    :param min_size: proposals thinner than this (pixels) are dropped.
    """

    def __init__(self, in_channels: int, num_anchors: int, fg_iou_thresh: float = 0.7,
                 bg_iou_thresh: float = 0.3, batch_size_per_image: int = 256,
                 positive_fraction: float = 0.5, pre_nms_top_n=(300, 300),
                 post_nms_top_n=(100, 50), nms_thresh: float = 0.7, min_size: float = 1.0):
        super().__init__()
        self.num_anchors = check_int(num_anchors, "num_anchors", 1)
        self.proposal_matcher = Matcher(fg_iou_thresh, bg_iou_thresh,
                                        allow_low_quality_matches=True)
        self.fg_bg_sampler = BalancedPositiveNegativeSampler(batch_size_per_image,
                                                             positive_fraction)
        self.pre_nms_top_n = train_test_pair(pre_nms_top_n, "pre_nms_top_n")
        self.post_nms_top_n = train_test_pair(post_nms_top_n, "post_nms_top_n")
        self.nms_thresh = check_fraction(nms_thresh, "nms_thresh")
        if isinstance(min_size, bool) or not isinstance(min_size, (int, float)) or min_size < 0:
            raise ValueError(f"min_size must be a number >= 0, got {min_size!r}")
        self.min_size = float(min_size)
        self.box_coder = BoxCoder((1.0, 1.0, 1.0, 1.0), check_values=False)
        self.head = RPNHead(in_channels, self.num_anchors)

    def head_outputs(self, features):
        """The head on every feature map, in anchor order (level after level).

        :param features: the (N, C, H', W') feature map, or a list of pyramid levels.
        :returns: ``(objectness, deltas)``: Tensors (N, K) and (N, K, 4), K = sum of H'*W'*A.
        """
        objectness, deltas = [], []
        for level in as_levels(features):
            logits, level_deltas = self.head(level)
            n, _, h, w = logits.shape
            # (N, A*k, H, W) -> (N, H, W, A*k) -> (N, H*W*A, k): rows in anchor order
            objectness.append(logits.permute(0, 2, 3, 1).reshape(n, h * w * self.num_anchors))
            deltas.append(level_deltas.permute(0, 2, 3, 1).reshape(n, h * w * self.num_anchors,
                                                                   4))
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
        pre, post = self.pre_nms_top_n[phase], self.post_nms_top_n[phase]
        N = scores.shape[0]
        # the whole batch at once: (N, pre) best anchors per image, flattened image by image
        top = xp.argsort(-scores, axis=1, kind="stable")[:, :pre]
        pre = top.shape[1]
        image = xp.repeat(xp.arange(N), pre)
        top = top.reshape(-1)
        boxes = self.box_coder.decode(deltas[image, top], anchors[top])
        boxes = clip_boxes_to_image(boxes, image_size)
        keep = remove_small_boxes(boxes, self.min_size)
        boxes, image, top = boxes[keep], image[keep], top[keep]
        kept = nms_by_image(boxes, scores[image, top], None, image, N, self.nms_thresh,
                            top_n=post)
        return [boxes[k] for k in kept]

    def assign_targets(self, anchors, boxes):
        """Each anchor's label (1 object, 0 background, -1 ignored) and regression target.

        :param anchors: (K, 4) anchors.
        :param boxes: N arrays (M_i, 4) of ground-truth boxes on the anchors' device.
        :returns: ``(labels, box_targets)``: N int arrays (K,) and N arrays (K, 4).
        """
        xp = backend.xp_of(anchors)
        labels, box_targets = [], []
        for gt in boxes:
            gt = gt.astype(anchors.dtype, copy=False)
            if gt.shape[0] == 0:  # every anchor is background
                labels.append(xp.zeros(anchors.shape[0], dtype=xp.int64))
                box_targets.append(xp.zeros_like(anchors))
                continue
            matches = self.proposal_matcher(box_iou(gt, anchors, check_values=False))
            labels.append(xp.where(matches >= 0, 1,
                                   xp.where(matches == BELOW_LOW_THRESHOLD, 0, -1)))
            box_targets.append(self.box_coder.encode(gt[xp.maximum(matches, 0)], anchors))
        return labels, box_targets

    def compute_loss(self, objectness, deltas, anchors, boxes, rng=None) -> dict:
        """Match, sample (from ``rng``, default ``step_generator()``), then ``rpn_loss``."""
        xp = backend.xp_of(anchors)
        labels, box_targets = self.assign_targets(anchors, boxes)
        positive, negative = self.fg_bg_sampler(labels, step_generator() if rng is None else rng)
        return rpn_loss(objectness, deltas, xp.stack(positive), xp.stack(negative),
                        xp.stack(box_targets))

    def forward(self, features, anchors, image_size, boxes=None, rng=None):
        """Proposals and, given ground-truth ``boxes`` (training), the RPN's losses.

        :returns: ``(proposals, losses)``: N arrays (P_i, 4), and a dict ({} without boxes).
        """
        objectness, deltas = self.head_outputs(features)
        proposals = self.propose(objectness, deltas, anchors, image_size)
        if boxes is None:
            return proposals, {}
        return proposals, self.compute_loss(objectness, deltas, anchors, boxes, rng)

    def extra_repr(self):
        return (f"num_anchors={self.num_anchors}, pre_nms_top_n={self.pre_nms_top_n}, "
                f"post_nms_top_n={self.post_nms_top_n}, nms_thresh={self.nms_thresh}")
