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

Why ``aligned=False`` on the features
-------------------------------------
The backbone's 3x3 stride-2 convolutions with padding 1 centre feature cell i on image pixel
``8i``, i.e. on the continuous coordinate ``8i + 0.5``. A box coordinate x therefore sits at
feature coordinate (x - 0.5)/8, which ``aligned=False`` (x/8) misses by 1/16 of a cell and
``aligned=True`` (x/8 - 1/2) by 7/16. The mask targets sample the pixel grid itself (scale 1,
pixel i centred at i + 0.5), where ``aligned=True`` is exact.

A feature pyramid (``fpn_levels``)
---------------------------------
With ``fpn_levels = L > 1`` the heads read L maps instead of one: the backbone's last L stages
go through ``fpn.FeaturePyramid`` (Lin et al., 2017). The RPN head (shared weights) runs on
every level; ``anchor_sizes`` is split into L equal groups, the smallest sizes on the finest
level, so each level proposes boxes of about the sizes its cells can resolve; each RoI is cut
from the level its size calls for (``fpn.roi_levels``). With the defaults, ``fpn_levels=2``
reads strides 4 and 8: RoIs under 48 pixels come from the stride-4 map, twice as fine as the
single-level model's.

The pieces, one module each, as in torchvision
----------------------------------------------
``FasterRCNN`` is only the glue: ``features`` (backbone, optional pyramid) ->
``model.rpn`` (``rpn.RegionProposalNetwork``: head, ``propose``, ``compute_loss``) ->
``model.roi_heads`` (``roi_heads.RoIHeads``: ``select_training_samples``, the box and mask
heads, ``detect``, ``predict_masks``), with the losses and mask pasting as free functions
(``rpn.rpn_loss``, ``roi_heads.fastrcnn_loss``, ``mask_targets``, ``maskrcnn_loss``,
``paste_masks``). A notebook can run them one at a time (notebook 10).

Random sampling. Both samplers of a training step draw from one ``numpy.random.Generator``,
``anchors.step_generator()``: a single draw from numpy's global stream, which the training loop
reseeds from (seed, epoch) at every epoch (``engine.seed_everything``). The k-th step of epoch
e therefore samples the same anchors and RoIs in every run with that seed, and a run resumed
at an epoch boundary repeats the uninterrupted one. The draws stay on the host.
"""

from __future__ import annotations

from itertools import accumulate

from .. import backend
from ..anchors import anchor_grid, step_generator
from ..validate import check_fraction, check_int
from .detection import AnchorDetector
from .fpn import FeaturePyramid
from .roi_heads import BoxHead, MaskHead, RoIHeads, TrainingRoIs, check_masks, paste_masks
from .rpn import RegionProposalNetwork, RPNHead, train_test_pair

# BoxHead, MaskHead, RPNHead, FeaturePyramid, TrainingRoIs and paste_masks live in rpn.py,
# roi_heads.py and fpn.py; they stay importable from here, where they were first.
__all__ = ["BoxHead", "FasterRCNN", "FeaturePyramid", "MaskHead", "MaskRCNN", "RPNHead",
           "TrainingRoIs", "paste_masks"]

# checkpoints saved before the RPN and the RoI heads were modules of their own
_OLD_KEY_PREFIXES = (("rpn.", "rpn.head."), ("box_head.", "roi_heads.box_head."),
                     ("mask_head.", "roi_heads.mask_head."))


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
        # checked here too, so that a message names the argument as FasterRCNN spells it
        rpn_pre_nms_top_n = train_test_pair(rpn_pre_nms_top_n, "rpn_pre_nms_top_n")
        rpn_post_nms_top_n = train_test_pair(rpn_post_nms_top_n, "rpn_post_nms_top_n")
        check_fraction(rpn_nms_thresh, "rpn_nms_thresh")
        c = self.widths[-1]
        if self.fpn_levels > 1:
            self.fpn = FeaturePyramid(self.widths[-self.fpn_levels:], c)
        self.rpn = RegionProposalNetwork(
            c, self.num_anchors, rpn_fg_iou_thresh, rpn_bg_iou_thresh, rpn_batch_size_per_image,
            rpn_positive_fraction, rpn_pre_nms_top_n, rpn_post_nms_top_n, rpn_nms_thresh,
            rpn_min_size)
        self.roi_heads = RoIHeads(
            c, self.num_classes, self.feature_strides, box_roi_size, sampling_ratio,
            representation_size, box_fg_iou_thresh, box_bg_iou_thresh, box_batch_size_per_image,
            box_positive_fraction, masks, mask_roi_size, mask_channels, mask_convs,
            self.fpn_canonical_size, self.score_thresh, self.nms_thresh, self.detections_per_img)

    @property
    def masks(self) -> bool:
        """Whether the mask head is on (Mask R-CNN)."""
        return self.roi_heads.masks

    def config(self) -> dict:
        """The constructor arguments (JSON-able): ``type(model)(**model.config())`` rebuilds it."""
        rpn, heads = self.rpn, self.roi_heads
        return {
            **super().config(),
            "rpn_fg_iou_thresh": rpn.proposal_matcher.high_threshold,
            "rpn_bg_iou_thresh": rpn.proposal_matcher.low_threshold,
            "rpn_batch_size_per_image": rpn.fg_bg_sampler.batch_size_per_image,
            "rpn_positive_fraction": rpn.fg_bg_sampler.positive_fraction,
            "rpn_pre_nms_top_n": list(rpn.pre_nms_top_n),
            "rpn_post_nms_top_n": list(rpn.post_nms_top_n),
            "rpn_nms_thresh": rpn.nms_thresh, "rpn_min_size": rpn.min_size,
            "box_roi_size": heads.box_roi_size, "sampling_ratio": heads.sampling_ratio,
            "representation_size": heads.representation_size,
            "box_fg_iou_thresh": heads.proposal_matcher.high_threshold,
            "box_bg_iou_thresh": heads.proposal_matcher.low_threshold,
            "box_batch_size_per_image": heads.fg_bg_sampler.batch_size_per_image,
            "box_positive_fraction": heads.fg_bg_sampler.positive_fraction,
            "masks": heads.masks, "mask_roi_size": heads.mask_roi_size,
            "mask_channels": heads.mask_channels, "mask_convs": heads.mask_convs,
            "fpn_levels": self.fpn_levels, "fpn_canonical_size": self.fpn_canonical_size,
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

    def forward(self, images, targets=None):
        """Losses (training mode) or detections (eval mode); see the class docstring.

        :param images: (N, in_channels, H, W) float Tensor; H and W multiples of the stride.
        :param targets: training only: N dicts {"boxes" (M, 4) xyxy, "labels" (M,) in
            1..num_classes-1, and for Mask R-CNN "masks" (M, H, W) bool}, host arrays.
        """
        x, image_size, boxes, labels = self.check_inputs(images, targets)
        device = backend.device_of(x.data)
        gt_masks = check_masks(targets, boxes, image_size, device) \
            if self.training and self.masks else None
        features = self.features(x)
        anchors = self.anchors(*image_size, device=device, dtype=x.dtype)
        rng = step_generator() if self.training else None  # both samplers of this step
        proposals, losses = self.rpn(features, anchors, image_size, boxes, rng)
        if not self.training:
            return self.roi_heads(features, proposals, image_size)
        losses.update(self.roi_heads(features, proposals, image_size, boxes, labels, gt_masks,
                                     rng))
        return losses

    def load_state_dict(self, state_dict, strict: bool = True):
        """``Module.load_state_dict``, also for checkpoints with the keys of earlier versions
        (``rpn.conv.weight`` is now ``rpn.head.conv.weight``, ``box_head.*`` is
        ``roi_heads.box_head.*``, ``mask_head.*`` is ``roi_heads.mask_head.*``).
        """
        if hasattr(state_dict, "items") and not any(k.startswith("roi_heads.")
                                                    for k in state_dict):
            renamed = {}
            for key, value in state_dict.items():
                for old, new in _OLD_KEY_PREFIXES:
                    if key.startswith(old):
                        key = new + key[len(old):]
                        break
                renamed[key] = value
            state_dict = renamed
        return super().load_state_dict(state_dict, strict)

    def extra_repr(self):
        return (f"num_classes={self.num_classes}, widths={self.widths}, "
                f"anchor_sizes={self.anchor_sizes}, aspect_ratios={self.aspect_ratios}, "
                f"masks={self.masks}, fpn_levels={self.fpn_levels}")


class MaskRCNN(FasterRCNN):
    """Faster R-CNN with the mask head on: ``FasterRCNN(masks=True)`` by another name."""

    def __init__(self, num_classes: int = 4, in_channels: int = 3, masks: bool = True,
                 **options):
        super().__init__(num_classes, in_channels, masks=masks, **options)
