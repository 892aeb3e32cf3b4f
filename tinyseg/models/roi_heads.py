"""The RoI heads: R-CNN's second stage, boxes and masks (torchvision's ``roi_heads.py``).

For every proposal of the RPN (``rpn.py``), RoIAlign cuts a fixed-size window out of the
feature map(s) (``fpn.MultiScaleRoIAlign``); the box head classifies it into K classes
(background included) and refines its box once more with deltas of its own class; Mask R-CNN's
mask head predicts one 28x28 mask per class on the same kind of window. ``RoIHeads`` holds the
heads, the matcher, the sampler and the box coder; the losses, the mask targets and the pasting
are free functions, with torchvision's names: ``fastrcnn_loss``, ``maskrcnn_loss``,
``mask_targets`` and ``paste_masks``.

Shapes (the R-CNN defaults: C = 64 channels, K = 4 classes with background; "R" RoIs in the
batch, "P" of them positive)::

    box head  roi_align 7x7 (scale 1/8)             (R,  64, 7, 7)
              flatten, fc 3136->256, ReLU, fc 256->256, ReLU
              class logits                          (R, K)
              class-specific deltas                 (R, (K-1)*4)
    mask head roi_align 14x14 (positives only)      (P,  64, 14, 14)
              4 x (conv3x3 -> 16 + ReLU)            (P,  16, 14, 14)
              convT 2x2 stride 2 + ReLU             (P,  16, 28, 28)
              conv1x1 -> K-1 mask logits            (P,   3, 28, 28)

Training
--------
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
Proposals (the RPN's inference ``post_nms_top_n`` per image) -> box head -> softmax over K
classes -> per-class decoding of every RoI -> clip -> drop background -> scores > ``score_thresh``
(0.05) -> drop tiny boxes -> NMS at ``nms_thresh`` (0.5) within each class -> the best
``detections_per_img`` (100). Mask R-CNN then runs the mask head on the final boxes, takes
sigmoid(m[label]) (28x28) and pastes it into the image (``paste_masks``): bilinear resampling
into the box, threshold 0.5.

Pasting is separable like a resize (``ops/pool.py``): for a box (x1, y1, x2, y2) and an
M x M mask, image pixel (y, x), centred at (y + 0.5, x + 0.5), reads the mask at

    u = (x + 0.5 - x1) * M / (x2 - x1) - 0.5,    v = (y + 0.5 - y1) * M / (y2 - y1) - 0.5

(clamped to [0, M-1]), the exact inverse of RoIAlign's ``aligned=True`` sample points. A pixel
is inside the box when its centre lies in the CLOSED intervals x1 <= x + 0.5 <= x2 and
y1 <= y + 0.5 <= y2 (a centre exactly on the right or bottom edge still reads the mask, at
u = M - 1/2 clamped to M - 1); every other pixel is zero. So the pasted soft mask is
``P_y m P_x^T`` with P_y (H, M) and P_x (W, M) holding two bilinear weights per row: two small
matrix products per detection.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from .. import backend
from .. import functional as F
from ..anchors import (
    BELOW_LOW_THRESHOLD,
    BalancedPositiveNegativeSampler,
    BoxCoder,
    Matcher,
    step_generator,
)
from ..autograd import Tensor
from ..boxes import box_iou, clip_boxes_to_image, nms_by_image, remove_small_boxes
from ..nn import Conv2d, ConvTranspose2d, Linear, Module, Sequential, init
from ..nn.activation import ReLU
from ..ops.resize import interpolation_matrix
from ..ops.roi import boxes_to_rois
from ..validate import check_int
from .detection import SMOOTH_L1_BETA, as_detections
from .fpn import MultiScaleRoIAlign, as_levels

__all__ = ["BOX_CODER_WEIGHTS", "BoxHead", "MaskHead", "RoIHeads", "TrainingRoIs",
           "check_masks", "fastrcnn_loss", "mask_targets", "maskrcnn_loss", "paste_masks"]

#: the box head's delta weights (wx, wy, ww, wh) (see docs/conventions.md, section "Box coding")
BOX_CODER_WEIGHTS = (10.0, 10.0, 5.0, 5.0)


# ----- the heads ------------------------------------------------------------------------------


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
    """The sampled RoIs of a training batch (``RoIHeads.select_training_samples``).

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


# ----- losses and targets ----------------------------------------------------------------------


def fastrcnn_loss(class_logits, box_deltas, labels, box_targets) -> dict:
    """Cross-entropy over all sampled RoIs, smooth L1 on the true class's deltas.

    :param class_logits: (R, K) Tensor.
    :param box_deltas: (R, (K-1)*4) Tensor.
    :param labels: (R,) int64 class labels, 0 for background.
    :param box_targets: (R, 4) encoded deltas to the matched ground truths.
    :returns: {"loss_classifier", "loss_box_reg"}: scalar Tensors, both divided by R.
    """
    xp = backend.xp_of(labels)
    num_rois, num_classes = class_logits.shape
    positive = xp.nonzero(labels > 0)[0]
    loss_classifier = F.cross_entropy(class_logits, labels)
    deltas = box_deltas.reshape(num_rois, num_classes - 1, 4)[
        positive, labels[positive] - 1]  # (P, 4): the true class's deltas
    loss_box_reg = F.smooth_l1_loss(deltas, box_targets[positive], reduction="sum",
                                    beta=SMOOTH_L1_BETA) / max(num_rois, 1)
    return {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg}


def mask_targets(rois, matched, gt_masks, mask_size: int, sampling_ratio: int = 2):
    """Each positive RoI's ground-truth mask, cut out and resized to S x S by RoIAlign.

    (torchvision's ``project_masks_on_boxes``.)

    :param rois: (P, 5) positive RoIs (image index, box).
    :param matched: (P,) index of each RoI's ground truth among all the batch's masks.
    :param gt_masks: N arrays (M_i, H, W) bool, concatenated in that order.
    :param mask_size: S, the side of the targets (28).
    :param sampling_ratio: RoIAlign samples per bin and axis.
    :returns: (P, S, S) soft targets in [0, 1], in the RoIs' dtype.
    """
    xp = backend.xp_of(rois)
    all_masks = xp.concatenate(gt_masks).astype(rois.dtype)[:, None]  # (G, 1, H, W)
    # the "image" a RoI samples is its own ground-truth mask
    mask_rois = xp.concatenate([matched[:, None].astype(rois.dtype), rois[:, 1:]], axis=1)
    targets = F.roi_align(all_masks, mask_rois, mask_size, spatial_scale=1.0,
                          sampling_ratio=sampling_ratio, aligned=True)
    return targets.data[:, 0]


def maskrcnn_loss(mask_logits, labels, targets):
    """Mean BCE-with-logits of the true class's mask over the positive RoIs.

    :param mask_logits: (P, K-1, S, S) Tensor, one map per object class.
    :param labels: (P,) class labels in 1..K-1.
    :param targets: (P, S, S) soft targets (``mask_targets``).
    :returns: a scalar Tensor.
    """
    xp = backend.xp_of(labels)
    logits = mask_logits[xp.arange(labels.shape[0]), labels - 1]  # (P, S, S)
    return F.binary_cross_entropy_with_logits(logits, targets)


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
    inside = ((centres >= lo) & (centres <= hi)).astype(dtype)
    # the one interpolation-matrix builder of resize and RoIAlign; outside pixels weigh 0
    return interpolation_matrix(u.astype(dtype)[..., None], mask_size, share=inside[..., None])


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


def check_masks(targets, boxes, image_size, device):
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


class RoIHeads(Module):
    """The box head (and with ``masks`` the mask head) on RoIAlign windows of the proposals.

    :param in_channels: C, channels of the feature map(s).
    :param num_classes: K, classes counting the background.
    :param strides: the stride of each feature map, finest first (one entry: no pyramid).
    :param box_roi_size: side of the box head's RoIAlign output (7).
    :param sampling_ratio: RoIAlign samples per bin and axis (<= 0: adaptive).
    :param representation_size: width of the box head's two FC layers.
    :param fg_iou_thresh: RoIs with IoU >= this are foreground (0.5).
    :param bg_iou_thresh: RoIs with best IoU < this are background (0.5).
    :param batch_size_per_image: RoIs sampled per image for the box losses.
    :param positive_fraction: at most this fraction of them positive (0.25).
    :param masks: add the mask head (Mask R-CNN).
    :param mask_roi_size: side of the mask head's RoIAlign output (14; the masks are twice it).
    :param mask_channels: channels of the mask head's convs.
    :param mask_convs: 3x3 conv + ReLU layers in the mask head (4).
    :param canonical_size: with a pyramid, the RoI size cut from the coarsest level.
    :param score_thresh: inference keeps class scores above this (0.05).
    :param nms_thresh: IoU threshold of the per-class NMS at inference (0.5).
    :param detections_per_img: at most this many detections per image (100).
    """

    def __init__(self, in_channels: int, num_classes: int, strides, box_roi_size: int = 7,
                 sampling_ratio: int = 2, representation_size: int = 256,
                 fg_iou_thresh: float = 0.5, bg_iou_thresh: float = 0.5,
                 batch_size_per_image: int = 32, positive_fraction: float = 0.25,
                 masks: bool = False, mask_roi_size: int = 14, mask_channels: int = 16,
                 mask_convs: int = 4, canonical_size: float = 48.0, score_thresh: float = 0.05,
                 nms_thresh: float = 0.5, detections_per_img: int = 100):
        super().__init__()
        self.num_classes = num_classes
        self.box_roi_size = check_int(box_roi_size, "box_roi_size", 1)
        if isinstance(sampling_ratio, bool) or not isinstance(sampling_ratio, int):
            raise ValueError(f"sampling_ratio must be an int (<= 0: adaptive), got "
                             f"{sampling_ratio!r}")
        self.sampling_ratio = sampling_ratio
        self.representation_size = check_int(representation_size, "representation_size", 1)
        self.proposal_matcher = Matcher(fg_iou_thresh, bg_iou_thresh,
                                        allow_low_quality_matches=False)
        self.fg_bg_sampler = BalancedPositiveNegativeSampler(batch_size_per_image,
                                                             positive_fraction)
        self.box_coder = BoxCoder(BOX_CODER_WEIGHTS, check_values=False)
        if not isinstance(masks, bool):
            raise ValueError(f"masks must be True or False, got {masks!r}")
        self.masks = masks
        self.mask_roi_size = check_int(mask_roi_size, "mask_roi_size", 1)
        self.mask_channels = check_int(mask_channels, "mask_channels", 1)
        self.mask_convs = check_int(mask_convs, "mask_convs", 0)
        self.score_thresh, self.nms_thresh = score_thresh, nms_thresh
        self.detections_per_img = detections_per_img
        self.box_roi_pool = MultiScaleRoIAlign(self.box_roi_size, strides, sampling_ratio,
                                               canonical_size)
        self.mask_roi_pool = MultiScaleRoIAlign(self.mask_roi_size, strides, sampling_ratio,
                                                canonical_size)
        self.box_head = BoxHead(in_channels * self.box_roi_size ** 2, self.representation_size,
                                num_classes)
        if self.masks:
            self.mask_head = MaskHead(in_channels, self.mask_channels, self.mask_convs,
                                      num_classes)

    @property
    def mask_size(self) -> int:
        """Side of the predicted masks and their targets: twice ``mask_roi_size`` (28)."""
        return 2 * self.mask_roi_size

    # ----- training -----------------------------------------------------------------------------
    def select_training_samples(self, proposals, boxes, labels, rng=None) -> TrainingRoIs:
        """Append the ground truths to the proposals, match, sample (module docstring).

        :param proposals: N arrays (P_i, 4).
        :param boxes: N arrays (M_i, 4) of ground-truth boxes.
        :param labels: N int arrays (M_i,) of their labels.
        :param rng: the sampler's ``numpy.random.Generator``; default ``step_generator()``.
        :returns: :class:`TrainingRoIs` for the whole batch.
        """
        xp = backend.xp_of(proposals[0])
        rng = step_generator() if rng is None else rng
        dtype = proposals[0].dtype
        kept, roi_labels, targets, matched = [], [], [], []
        offset = 0  # index of this image's first ground truth in the whole batch
        for props, gt, gt_labels in zip(proposals, boxes, labels):
            gt = gt.astype(dtype, copy=False)
            props = xp.concatenate([props, gt])
            if gt.shape[0] == 0:
                matches = xp.full(props.shape[0], BELOW_LOW_THRESHOLD, dtype=xp.int64)
            else:
                matches = self.proposal_matcher(box_iou(gt, props, check_values=False))
            safe = xp.maximum(matches, 0)
            image_labels = xp.where(
                matches >= 0, gt_labels[safe] if gt.shape[0] else 0,
                xp.where(matches == BELOW_LOW_THRESHOLD, 0, -1)).astype(xp.int64)
            positive, negative = self.fg_bg_sampler(image_labels, rng)
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

    def mask_loss(self, features, sampled: TrainingRoIs, gt_masks):
        """The mask head on the positive RoIs, against ``mask_targets``: ``maskrcnn_loss``."""
        xp = backend.xp_of(sampled.labels)
        positive = xp.nonzero(sampled.positive)[0]
        if positive.shape[0] == 0:  # no object in the whole batch: nothing to learn
            return Tensor(xp.zeros((), dtype=as_levels(features)[0].dtype))
        rois, labels = sampled.rois[positive], sampled.labels[positive]
        logits = self.mask_head(self.mask_roi_pool(features, rois))
        targets = mask_targets(rois, sampled.matched[positive], gt_masks, self.mask_size,
                               self.sampling_ratio)
        return maskrcnn_loss(logits, labels, targets)

    # ----- inference ----------------------------------------------------------------------------
    def detect(self, features, proposals, image_size) -> list[dict]:
        """Box head on the proposals, then per-class decoding, threshold, NMS, top-k.

        :param features: the (N, C, H', W') feature map, or the list of pyramid levels.
        :param proposals: N arrays (P_i, 4).
        :param image_size: (H, W) for clipping.
        :returns: N dicts {"boxes", "scores", "labels"}, by decreasing score.
        """
        first = as_levels(features)[0].data
        xp = backend.xp_of(first)
        rois = boxes_to_rois(list(proposals), first)  # (R, 5), image by image
        class_logits, box_deltas = self.box_head(self.box_roi_pool(features, rois))
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
        first = as_levels(features)[0].data
        xp = backend.xp_of(first)
        rois = boxes_to_rois([d["boxes"] for d in detections], first)
        if rois.shape[0]:
            logits = self.mask_head(self.mask_roi_pool(features, rois)).data
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

    def forward(self, features, proposals, image_size, boxes=None, labels=None, gt_masks=None,
                rng=None):
        """Detections (no ``boxes``: inference) or the heads' losses (training).

        :returns: N detection dicts, or {"loss_classifier", "loss_box_reg"(, "loss_mask")}.
        """
        if boxes is None:
            detections = self.detect(features, proposals, image_size)
            return self.predict_masks(features, detections, image_size) if self.masks \
                else detections
        sampled = self.select_training_samples(proposals, boxes, labels, rng)
        class_logits, box_deltas = self.box_head(self.box_roi_pool(features, sampled.rois))
        losses = fastrcnn_loss(class_logits, box_deltas, sampled.labels, sampled.box_targets)
        if self.masks:
            losses["loss_mask"] = self.mask_loss(features, sampled, gt_masks)
        return losses
