"""Faster / Mask R-CNN: head layout, proposals, the five losses against plain-loop versions,
float64 gradients, RoI sampling, mask targets and pasting, inference, bad input, config.

The models here are tiny (2-4 channels, 32-48 pixel images) so the file runs in seconds; one
test builds the default model to pin its shapes.
"""

from __future__ import annotations

import json
import math

import numpy
import pytest
from test_models_retinanet import _device, _host, _images  # shared helpers

import tinyseg as ts
from tinyseg import backend
from tinyseg.anchors import BoxCoder, anchor_grid
from tinyseg.boxes import box_iou
from tinyseg.models import MODELS, build_model
from tinyseg.models.fpn import MultiScaleRoIAlign, roi_levels
from tinyseg.models.rcnn import FasterRCNN, MaskRCNN, TrainingRoIs, paste_masks
from tinyseg.models.roi_heads import fastrcnn_loss, mask_targets
from tinyseg.nn import init

# stride 4, two anchor sizes, small heads
TINY = {"widths": (3, 4), "depths": (1, 1), "anchor_sizes": (8, 16), "aspect_ratios": (1.0,),
        "representation_size": 8, "mask_channels": 3, "mask_convs": 1, "mask_roi_size": 4,
        "box_roi_size": 3, "rpn_pre_nms_top_n": (40, 40), "rpn_post_nms_top_n": (12, 8),
        "box_batch_size_per_image": 16}


def _target(boxes, labels, size=None):
    """A target dict; with ``size`` also rectangle masks filling each (integer) box."""
    boxes = numpy.asarray(boxes, dtype=numpy.float32).reshape(-1, 4)
    t = {"boxes": boxes, "labels": numpy.asarray(labels, dtype=numpy.int64)}
    if size is not None:
        masks = numpy.zeros((len(boxes), size, size), dtype=bool)
        for m, (x1, y1, x2, y2) in zip(masks, boxes.astype(int)):
            m[y1:y2, x1:x2] = True
        t["masks"] = masks
    return t


def _tiny(xp, cls=MaskRCNN, seed=0, **options):
    init.manual_seed(seed)
    return cls(**{**TINY, **options}).to(_device(xp))


def _mask_targets(model, rois, matched, masks):
    heads = model.roi_heads
    return mask_targets(rois, matched, masks, heads.mask_size, heads.sampling_ratio)


def xp_asarray(a):
    return numpy.asarray(a)


TARGETS = [_target([[4, 6, 20, 22], [18, 12, 30, 30]], [1, 3], 32),
           _target([[2, 2, 14, 10]], [2], 32)]


# ----- shapes and the RPN layout --------------------------------------------------------------
def test_default_models_and_registry(xp):
    assert MODELS["fasterrcnn"] is FasterRCNN and MODELS["maskrcnn"] is MaskRCNN
    model = build_model("maskrcnn").to(_device(xp))
    assert model.task == "detection" and model.masks and model.stride == 8
    assert model.num_anchors == 12 and model.output_size(128, 128) == (16, 16)
    objectness, deltas = model.rpn.head_outputs(model.backbone(_images(xp, (2, 3, 64, 64))))
    assert objectness.shape == (2, 8 * 8 * 12) and deltas.shape == (2, 8 * 8 * 12, 4)
    assert not build_model("fasterrcnn").masks
    assert not hasattr(build_model("fasterrcnn"), "mask_head")


def test_config_round_trip():
    model = MaskRCNN(**TINY)
    config = json.loads(json.dumps(model.config()))
    again = MaskRCNN(**config)
    assert again.config() == model.config()
    assert [k for k, _ in again.named_parameters()] == [k for k, _ in model.named_parameters()]
    assert FasterRCNN(**FasterRCNN(**TINY).config()).masks is False


def test_rpn_outputs_follow_the_anchor_order(xp):
    """Row (i*W + j)*A + a of the outputs is channel a (4a..4a+3) of the 1x1 convs at (i, j)."""
    model = _tiny(xp, FasterRCNN, aspect_ratios=(0.5, 1.0, 2.0))
    features = model.backbone(_images(xp, (1, 3, 16, 24)))
    logits, deltas = (_host(t) for t in model.rpn.head(features))
    objectness, flat = (_host(t) for t in model.rpn.head_outputs(features))
    a_count, w = model.num_anchors, 6
    for i, j, a in [(0, 0, 0), (2, 5, 3), (3, 1, 5)]:
        row = (i * w + j) * a_count + a
        assert objectness[0, row] == logits[0, a, i, j]
        numpy.testing.assert_array_equal(flat[0, row], deltas[0, 4 * a:4 * a + 4, i, j])
    anchors = model.anchors(16, 24, _device(xp))
    expected = anchor_grid((4, 6), 4, (8, 16), (0.5, 1.0, 2.0), device=_device(xp))
    numpy.testing.assert_array_equal(_host(anchors), _host(expected))


# ----- proposals ----------------------------------------------------------------------------------
def test_propose_by_hand(xp):
    """Zero deltas: the proposals are the anchors by objectness, clipped, NMS-ed, top-n."""
    model = _tiny(xp, FasterRCNN, rpn_pre_nms_top_n=(5, 5), rpn_post_nms_top_n=(3, 3),
                  rpn_min_size=0.0).eval()
    anchors = xp.asarray(numpy.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30],
                                      [-4, -4, 6, 6], [12, 0, 22, 8], [0, 20, 8, 30]],
                                     dtype=numpy.float64))
    scores = xp.asarray(numpy.array([[0.9, 0.8, 0.7, 0.6, 0.5, 0.95]]))
    deltas = xp.zeros((1, 6, 4))
    (proposals,) = model.rpn.propose(scores, deltas, anchors, (32, 32))
    # top 5 by score: 5, 0, 1, 2, 3; anchor 1 overlaps 0 at IoU 9/11 > 0.7; anchor 3 clips to
    # (0, 0, 6, 6); post-NMS top 3: 5, 0, 2
    numpy.testing.assert_allclose(_host(proposals), [[0, 20, 8, 30], [0, 0, 10, 10],
                                                      [20, 20, 30, 30]])


def test_propose_clips_filters_and_limits(xp):
    model = _tiny(xp, FasterRCNN).train()
    features = model.backbone(_images(xp, (2, 3, 32, 32)))
    objectness, deltas = model.rpn.head_outputs(features)
    anchors = model.anchors(32, 32, _device(xp))
    proposals = model.rpn.propose(objectness, deltas, anchors, (32, 32))
    assert len(proposals) == 2
    for p in proposals:
        p = _host(p)
        assert 0 < len(p) <= 12
        assert (p >= 0).all() and (p <= 32).all()
        assert ((p[:, 2] - p[:, 0]) >= 1).all() and ((p[:, 3] - p[:, 1]) >= 1).all()
        iou = _host(box_iou(xp.asarray(p), xp.asarray(p)))
        assert (iou[numpy.triu_indices(len(p), 1)] <= 0.7).all()
    model.eval()
    assert all(len(p) <= 8 for p in model.rpn.propose(objectness, deltas, anchors, (32, 32)))


# ----- the RPN loss -------------------------------------------------------------------------------
def _rpn_loss_by_hand(model, objectness, deltas, anchors, boxes, positive, negative):
    """The RPN loss with plain loops over images and anchors."""
    coder = BoxCoder((1, 1, 1, 1))
    bce = box = 0.0
    count = positive.sum() + negative.sum()
    for n, gt in enumerate(boxes):
        iou = _host(box_iou(xp_asarray(gt), xp_asarray(anchors))) if len(gt) else None
        for k in range(len(anchors)):
            if not (positive[n, k] or negative[n, k]):
                continue
            t = 1.0 if positive[n, k] else 0.0
            p = 1 / (1 + math.exp(-objectness[n, k]))
            bce += -(t * math.log(p) + (1 - t) * math.log(1 - p))
            if positive[n, k]:
                g = gt[int(iou[:, k].argmax())]
                target = _host(coder.encode(g[None], anchors[k][None]))[0]
                for d in deltas[n, k] - target:
                    beta = 1 / 9
                    box += 0.5 * d * d / beta if abs(d) < beta else abs(d) - 0.5 * beta
    return bce / count, box / count


def test_rpn_loss_matches_plain_loops():
    model = _tiny(numpy, FasterRCNN, rpn_batch_size_per_image=10)
    rng = numpy.random.default_rng(3)
    anchors = model.anchors(32, 32, "cpu", dtype="float64")
    k = anchors.shape[0]
    objectness = rng.standard_normal((2, k))
    deltas = 0.3 * rng.standard_normal((2, k, 4))
    boxes = [numpy.array([[4.0, 6, 20, 22], [18, 12, 30, 30]]), numpy.zeros((0, 4))]
    losses = model.rpn.compute_loss(ts.Tensor(objectness), ts.Tensor(deltas), anchors, boxes,
                                    rng=numpy.random.default_rng(0))
    # the same sample again, to know which anchors were drawn
    labels = []
    for gt in boxes:
        if len(gt) == 0:
            labels.append(numpy.zeros(k, numpy.int64))
            continue
        m = model.rpn.proposal_matcher(box_iou(gt, anchors))
        labels.append(numpy.where(m >= 0, 1, numpy.where(m == -1, 0, -1)))
    pos, neg = model.rpn.fg_bg_sampler(labels, numpy.random.default_rng(0))
    pos, neg = numpy.stack(pos), numpy.stack(neg)
    assert pos.sum() + neg.sum() == 20 and pos[1].sum() == 0  # 10 per image, image 1 empty
    bce, box = _rpn_loss_by_hand(model, objectness, deltas, anchors, boxes, pos, neg)
    assert losses["loss_objectness"].item() == pytest.approx(bce, rel=1e-10)
    assert losses["loss_rpn_box_reg"].item() == pytest.approx(box, rel=1e-10)


def test_rpn_loss_gradcheck(xp):
    model = _tiny(xp, FasterRCNN, rpn_batch_size_per_image=12)
    anchors = model.anchors(32, 32, _device(xp), dtype="float64")
    k = anchors.shape[0]
    rng = numpy.random.default_rng(1)
    objectness = ts.Tensor(xp.asarray(rng.standard_normal((2, k))), requires_grad=True)
    deltas = ts.Tensor(xp.asarray(0.3 * rng.standard_normal((2, k, 4))), requires_grad=True)
    boxes = [xp.asarray(t["boxes"].astype(numpy.float64)) for t in TARGETS]
    weights = [1.3, -0.7]  # a random upstream gradient for each term

    def loss(o, d):
        # the same sample every call
        terms = model.rpn.compute_loss(o, d, anchors, boxes, rng=numpy.random.default_rng(0))
        return terms["loss_objectness"] * weights[0] + terms["loss_rpn_box_reg"] * weights[1]

    assert ts.gradcheck(loss, (objectness, deltas))


# ----- RoI sampling and the box loss --------------------------------------------------------------
def test_select_training_rois(xp):
    model = _tiny(xp, FasterRCNN, box_batch_size_per_image=6, box_positive_fraction=0.5)
    proposals = [xp.asarray(numpy.array([[4.0, 6, 20, 21], [0, 0, 3, 3], [17, 12, 30, 30],
                                         [25, 0, 31, 5]])),
                 xp.asarray(numpy.array([[20.0, 20, 30, 30]]))]
    boxes = [xp.asarray(t["boxes"].astype(numpy.float64)) for t in TARGETS]
    labels = [xp.asarray(t["labels"]) for t in TARGETS]
    s = model.roi_heads.select_training_samples(proposals, boxes, labels)
    rois, lab, targets, matched = (_host(v) for v in s)
    image0 = rois[:, 0] == 0
    # image 0: 4 proposals + 2 ground truths; 4 positives (proposals 0 and 2, both gts), of
    # which at most 6 * 0.5 = 3 are kept, and the only 2 negatives (proposals 1 and 3)
    assert image0.sum() == 5 and (lab[image0] > 0).sum() == 3
    # image 1: 1 proposal (background) + its gt
    assert sorted(lab[~image0].tolist()) == [0, 2]
    # every positive's deltas decode back onto its ground truth; matched indexes all gts
    all_gt = numpy.concatenate([t["boxes"] for t in TARGETS])
    pos = lab > 0
    decoded = _host(BoxCoder((10, 10, 5, 5)).decode(xp.asarray(targets[pos]),
                                                    xp.asarray(rois[pos, 1:])))
    numpy.testing.assert_allclose(decoded, all_gt[matched[pos]], atol=1e-9)
    assert (matched[~pos] == -1).all() and (targets[~pos] == 0).all()
    # positives come first within each image
    assert (numpy.diff((lab[image0] > 0).astype(int)) <= 0).all()


def test_box_loss_matches_plain_loops_and_gradcheck(xp):
    # fastrcnn_loss is a free function: no model needed
    rng = numpy.random.default_rng(2)
    labels = numpy.array([2, 0, 3, 1, 0])
    box_targets = numpy.where((labels > 0)[:, None], rng.standard_normal((5, 4)), 0)
    sampled = TrainingRoIs(xp.zeros((5, 5)), xp.asarray(labels), xp.asarray(box_targets),
                           xp.asarray(numpy.where(labels > 0, 0, -1)))
    logits = rng.standard_normal((5, 4))
    deltas = rng.standard_normal((5, 12))
    terms = fastrcnn_loss(ts.Tensor(xp.asarray(logits)), ts.Tensor(xp.asarray(deltas)),
                          sampled.labels, sampled.box_targets)
    ce = box = 0.0
    for r in range(5):
        ce += -(logits[r, labels[r]] - math.log(numpy.exp(logits[r]).sum()))
        if labels[r] > 0:
            for d in deltas[r, 4 * (labels[r] - 1):4 * labels[r]] - box_targets[r]:
                box += 4.5 * d * d if abs(d) < 1 / 9 else abs(d) - 1 / 18
    assert terms["loss_classifier"].item() == pytest.approx(ce / 5, rel=1e-10)
    assert terms["loss_box_reg"].item() == pytest.approx(box / 5, rel=1e-10)

    def loss(z, d):
        t = fastrcnn_loss(z, d, sampled.labels, sampled.box_targets)
        return t["loss_classifier"] * 0.8 + t["loss_box_reg"] * -1.7

    args = (ts.Tensor(xp.asarray(logits), requires_grad=True),
            ts.Tensor(xp.asarray(deltas), requires_grad=True))
    assert ts.gradcheck(loss, args)


# ----- masks: targets, loss, pasting --------------------------------------------------------------
def test_mask_targets_of_a_rectangle(xp):
    model = _tiny(xp, mask_roi_size=14)
    mask = numpy.zeros((1, 64, 64), dtype=bool)
    mask[0, 8:36, 16:44] = True  # the box (16, 8, 44, 36), 28x28 pixels
    rois = xp.asarray(numpy.array([[0.0, 16, 8, 44, 36], [0.0, 2, 8, 58, 36]]))
    targets = _host(_mask_targets(model, rois, xp.asarray(numpy.array([0, 0])), [xp.asarray(mask)]))
    assert targets.shape == (2, 28, 28)
    # the RoI is the box: all inside, but the outer samples (a quarter pixel from the edge)
    # interpolate with the pixel outside: (0.75 + 1) / 2 on the border, 0.875^2-ish corners
    numpy.testing.assert_allclose(targets[0][1:-1, 1:-1], 1.0)
    numpy.testing.assert_allclose(targets[0][0, 1:-1], 0.875)
    assert (targets[0] > 0.5).all()
    # a RoI twice as wide: bins 2 pixels wide, columns 7..20 sample pixels 16..43, all inside
    numpy.testing.assert_allclose(targets[1][1:-1, 7:21], 1.0)
    numpy.testing.assert_allclose(targets[1][:, :7], 0.0)
    numpy.testing.assert_allclose(targets[1][:, 21:], 0.0)


def test_paste_masks_by_hand_and_against_a_loop(xp):
    ones = xp.ones((1, 4, 4))
    pasted = _host(paste_masks(ones, xp.asarray([[3.0, 2.0, 7.0, 5.0]]), (8, 10)))
    expected = numpy.zeros((1, 8, 10), dtype=bool)
    expected[0, 2:5, 3:7] = True
    numpy.testing.assert_array_equal(pasted, expected)

    rng = numpy.random.default_rng(4)
    masks = rng.random((3, 5, 5))
    boxes = numpy.array([[1.5, 2.0, 9.0, 7.5], [0.0, 0.0, 12.0, 10.0], [6.2, 3.1, 7.9, 9.6]])
    soft = _host(paste_masks(xp.asarray(masks), xp.asarray(boxes), (10, 12), threshold=None))
    for d, (x1, y1, x2, y2) in enumerate(boxes):
        for y in range(10):
            for x in range(12):
                cy, cx = y + 0.5, x + 0.5
                if not (x1 <= cx <= x2 and y1 <= cy <= y2):
                    assert soft[d, y, x] == 0
                    continue
                v = min(max((cy - y1) * 5 / (y2 - y1) - 0.5, 0), 4)
                u = min(max((cx - x1) * 5 / (x2 - x1) - 0.5, 0), 4)
                v0, u0 = int(v), int(u)
                v1, u1 = min(v0 + 1, 4), min(u0 + 1, 4)
                a, b = v - v0, u - u0
                value = ((1 - a) * (1 - b) * masks[d, v0, u0] + (1 - a) * b * masks[d, v0, u1]
                         + a * (1 - b) * masks[d, v1, u0] + a * b * masks[d, v1, u1])
                assert soft[d, y, x] == pytest.approx(value, abs=1e-12)


def test_mask_target_then_paste_gives_the_mask_back(xp):
    """RoIAlign (aligned) into the box and pasting back are near inverses: a disc survives."""
    model = _tiny(xp, mask_roi_size=14)
    yy, xx = numpy.mgrid[:64, :64]
    disc = ((yy - 30.5) ** 2 + (xx - 25.5) ** 2 <= 15 ** 2)[None]
    box = numpy.array([[10.0, 15, 41, 46]])  # the disc's tight box
    target = _mask_targets(model, xp.asarray(numpy.concatenate([[[0.0]], box], 1)),
                                xp.asarray(numpy.array([0])), [xp.asarray(disc)])
    back = _host(paste_masks(target, xp.asarray(box), (64, 64)))
    iou = (back & disc).sum() / (back | disc).sum()
    assert iou > 0.97


def test_mask_loss_gradcheck(xp):
    model = _tiny(xp).to(dtype="float64")
    features = ts.Tensor(xp.asarray(numpy.random.default_rng(5).standard_normal((2, 4, 8, 8))),
                         requires_grad=True)
    masks = [xp.asarray(t["masks"]) for t in TARGETS]
    sampled = TrainingRoIs(
        xp.asarray(numpy.array([[0.0, 4, 6, 20, 22], [0, 17, 12, 30, 29], [1, 2, 2, 15, 11],
                                [1, 20, 20, 30, 30]])),
        xp.asarray(numpy.array([1, 3, 2, 0])), xp.zeros((4, 4)),
        xp.asarray(numpy.array([0, 1, 2, -1])))

    def loss(f):
        return model.roi_heads.mask_loss(f, sampled, masks) * 1.9

    assert ts.gradcheck(loss, (features,))
    # by hand: the mean BCE of the true class's channel against the RoIAligned targets
    value = model.roi_heads.mask_loss(features, sampled, masks).item()
    pos = sampled.rois[:3]
    logits = _host(model.roi_heads.mask_head(model.roi_heads.mask_roi_pool(features, pos)))
    logits = logits[[0, 1, 2], [0, 2, 1]]
    targets = _host(_mask_targets(model, pos, xp.asarray(numpy.array([0, 1, 2])), masks))
    p = 1 / (1 + numpy.exp(-logits))
    expected = -(targets * numpy.log(p) + (1 - targets) * numpy.log(1 - p)).mean()
    assert value == pytest.approx(expected, rel=1e-9)


# ----- the whole model ---------------------------------------------------------------------------
def test_training_returns_the_five_losses_and_every_parameter_learns(xp):
    model = _tiny(xp).train()
    images = _images(xp, (2, 3, 32, 32))
    losses = model(images, TARGETS)
    assert sorted(losses) == sorted(["loss_objectness", "loss_rpn_box_reg", "loss_classifier",
                                     "loss_box_reg", "loss_mask"])
    assert all(math.isfinite(v.item()) for v in losses.values())
    sum(losses.values()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and float(abs(_host(p.grad)).sum()) > 0, name
    faster = _tiny(xp, FasterRCNN).train()
    assert "loss_mask" not in faster(images, TARGETS)


def test_an_image_without_objects_trains(xp):
    model = _tiny(xp).train()
    targets = [TARGETS[0], {"boxes": numpy.zeros((0, 4), numpy.float32),
                            "labels": numpy.zeros(0, numpy.int64),
                            "masks": numpy.zeros((0, 32, 32), bool)}]
    losses = model(_images(xp, (2, 3, 32, 32)), targets)
    assert all(math.isfinite(v.item()) for v in losses.values())
    empty = [targets[1], targets[1]]
    losses = model(_images(xp, (2, 3, 32, 32)), empty)
    assert losses["loss_mask"].item() == 0 and losses["loss_box_reg"].item() == 0


def test_eval_returns_the_contract(xp):
    model = _tiny(xp, score_thresh=0.0, detections_per_img=5).eval()
    with ts.no_grad():
        out = model(_images(xp, (2, 3, 32, 32)))
    assert len(out) == 2
    for d in out:
        assert set(d) == {"boxes", "scores", "labels", "masks"}
        assert backend.xp_of(d["boxes"]) is xp
        n = d["boxes"].shape[0]
        assert 0 < n <= 5 and d["boxes"].dtype == numpy.float32
        assert d["masks"].shape == (n, 32, 32) and d["masks"].dtype == bool
        scores = _host(d["scores"])
        assert (numpy.diff(scores) <= 0).all()
        assert set(_host(d["labels"]).tolist()) <= {1, 2, 3}
        b = _host(d["boxes"])
        assert (b >= 0).all() and (b <= 32).all()
        # a mask lies inside its box
        for m, (x1, y1, x2, y2) in zip(_host(d["masks"]), b):
            ys, xs = numpy.nonzero(m)
            if len(ys):
                assert ys.min() + 0.5 >= y1 and ys.max() + 0.5 <= y2
                assert xs.min() + 0.5 >= x1 and xs.max() + 0.5 <= x2
    faster = _tiny(xp, FasterRCNN).eval()
    with ts.no_grad():
        assert "masks" not in faster(_images(xp, (1, 3, 32, 32)))[0]


def test_a_few_steps_overfit_one_batch():
    from tinyseg.optim import Adam

    model = _tiny(numpy, widths=(8, 8), representation_size=32, mask_channels=8).train()
    opt = Adam(list(model.parameters()), lr=1e-2)
    images = _images(numpy, (2, 3, 32, 32), seed=7)
    first = None
    for _ in range(30):
        loss = sum(model(images, TARGETS).values())
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first


# ----- bad input --------------------------------------------------------------------------------
def test_bad_input(xp):
    model = _tiny(xp).train()
    images = _images(xp, (2, 3, 32, 32))
    with pytest.raises(ValueError, match="targets is required"):
        model(images)
    no_masks = [{k: v for k, v in t.items() if k != "masks"} for t in TARGETS]
    with pytest.raises(ValueError, match=r"targets\[0\] needs 'masks'"):
        model(images, no_masks)
    wrong = [dict(TARGETS[0]), TARGETS[1]]
    wrong[0]["masks"] = wrong[0]["masks"][:1]
    with pytest.raises(ValueError, match=r"targets\[0\]\['masks'\] must have shape \(2, 32, 32\)"):
        model(images, wrong)
    with pytest.raises(ValueError, match="multiples of 4"):
        model(_images(xp, (1, 3, 30, 32)), TARGETS[:1])
    _tiny(xp, FasterRCNN).train()(images, no_masks)  # Faster R-CNN needs no masks
    with pytest.raises(ValueError, match="masks must be True or False"):
        FasterRCNN(masks=1)
    with pytest.raises(ValueError, match="rpn_post_nms_top_n"):
        FasterRCNN(rpn_post_nms_top_n=(1, 2, 3))
    with pytest.raises(ValueError, match="rpn_nms_thresh"):
        FasterRCNN(rpn_nms_thresh=1.5)
    with pytest.raises(ValueError, match="sampling_ratio"):
        FasterRCNN(sampling_ratio=2.5)
    with pytest.raises(ValueError, match="masks must have shape"):
        paste_masks(xp.ones((2, 4, 5)), xp.ones((2, 4)), (8, 8))
    with pytest.raises(ValueError, match="boxes must have shape"):
        paste_masks(xp.ones((2, 4, 4)), xp.ones((3, 4)), (8, 8))


# ----- the optional feature pyramid --------------------------------------------------------------
FPN = dict(TINY, widths=(3, 4, 4), depths=(1, 2, 1), anchor_sizes=(6, 10, 16, 24),
           fpn_levels=2, fpn_canonical_size=16.0)


def test_fpn_levels_anchors_and_rpn_layout(xp):
    model = _tiny(xp, **FPN)
    assert model.feature_strides == (4, 8) and model.num_anchors == 2
    levels = model.features(_images(xp, (2, 3, 32, 48)))
    assert [tuple(f.shape) for f in levels] == [(2, 4, 8, 12), (2, 4, 4, 6)]
    anchors = _host(model.anchors(32, 48, _device(xp)))
    fine = _host(anchor_grid((8, 12), 4, (6, 10), (1.0,), device=_device(xp)))
    coarse = _host(anchor_grid((4, 6), 8, (16, 24), (1.0,), device=_device(xp)))
    numpy.testing.assert_array_equal(anchors, numpy.concatenate([fine, coarse]))
    objectness, deltas = model.rpn.head_outputs(levels)
    assert objectness.shape == (2, len(anchors)) and deltas.shape == (2, len(anchors), 4)
    # the coarse level's rows follow the fine level's, in per_anchor order
    logits, _ = model.rpn.head(levels[1])
    numpy.testing.assert_array_equal(_host(objectness)[:, 8 * 12 * 2:],
                                     _host(model.per_anchor(logits, 1))[..., 0])


def test_fpn_top_down_pathway_by_hand(xp):
    """P_2 = out_2(lat_2(C_2)); P_1 = out_1(lat_1(C_1) + nearest_2x(lat_2(C_2)))."""
    import tinyseg.functional as F

    model = _tiny(xp, **FPN)
    x = _images(xp, (1, 3, 32, 32))
    stages, h = [], x
    for i, layer in enumerate(model.backbone):
        h = layer(h)
        if i in (2, 3):  # the ends of stages 2 and 3 (depths 1, 2, 1)
            stages.append(h)
    top = model.fpn.lateral[1](stages[1])
    p1 = model.fpn.output[0](model.fpn.lateral[0](stages[0]) + F.interpolate(top, scale_factor=2))
    p2 = model.fpn.output[1](top)
    got = model.features(x)
    numpy.testing.assert_allclose(_host(got[0]), _host(p1), rtol=1e-6)
    numpy.testing.assert_allclose(_host(got[1]), _host(p2), rtol=1e-6)


def test_fpn_roi_levels_and_multilevel_roi_align(xp):
    import tinyseg.functional as F

    model = _tiny(xp, **FPN)
    boxes = xp.asarray(numpy.array([[0.0, 0, 8, 8], [0, 0, 15.9, 16], [0, 0, 16, 16],
                                    [2, 2, 40, 30], [4, 4, 5, 5]]))
    # sqrt(area) 8, ~15.95, 16, ~33.8, 1 against canonical 16: fine, fine, coarse, coarse, fine
    levels_of = roi_levels(boxes, model.fpn_levels, model.fpn_canonical_size)
    assert _host(levels_of).tolist() == [0, 0, 1, 1, 0]
    levels = model.features(_images(xp, (2, 3, 32, 48)))
    rois = xp.concatenate([xp.asarray(numpy.array([[0.0], [1], [0], [1], [1]])), boxes], axis=1)
    pool = MultiScaleRoIAlign(3, model.feature_strides, 2, model.fpn_canonical_size)
    out = _host(pool(levels, rois))
    for r, (level, stride) in enumerate([(0, 4), (0, 4), (1, 8), (1, 8), (0, 4)]):
        expected = F.roi_align(levels[level], rois[r:r + 1], 3, spatial_scale=1 / stride,
                               sampling_ratio=model.roi_heads.sampling_ratio)
        numpy.testing.assert_allclose(out[r], _host(expected)[0], rtol=1e-5, atol=1e-6)


def test_fpn_model_trains_and_detects(xp):
    model = _tiny(xp, **FPN).train()
    images = _images(xp, (2, 3, 32, 32))
    losses = model(images, TARGETS)
    assert len(losses) == 5 and all(math.isfinite(v.item()) for v in losses.values())
    sum(losses.values()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and float(abs(_host(p.grad)).sum()) > 0, name
    with ts.no_grad():
        out = model.eval()(images)
    assert out[0]["masks"].shape[1:] == (32, 32)
    assert MaskRCNN(**json.loads(json.dumps(model.config()))).config() == model.config()


def test_fpn_bad_options():
    with pytest.raises(ValueError, match="fpn_levels must be at most"):
        FasterRCNN(fpn_levels=4)
    with pytest.raises(ValueError, match="anchor_sizes must split"):
        FasterRCNN(fpn_levels=3, anchor_sizes=(20, 28, 40, 56))
    with pytest.raises(ValueError, match="fpn_canonical_size"):
        FasterRCNN(fpn_levels=2, fpn_canonical_size=0)


def test_checkpoints_with_the_old_keys_still_load():
    """Before rpn.py and roi_heads.py the keys were rpn.conv.*, box_head.*, mask_head.*."""
    model = MaskRCNN(**TINY)
    renames = (("rpn.head.", "rpn."), ("roi_heads.box_head.", "box_head."),
               ("roi_heads.mask_head.", "mask_head."))
    old = {}
    for key, value in model.state_dict().items():
        for new, before in renames:
            if key.startswith(new):
                key = before + key[len(new):]
                break
        old[key] = value + 1.0
    assert "rpn.conv.weight" in old and "box_head.fc6.weight" in old
    again = MaskRCNN(**TINY)
    again.load_state_dict(old)
    numpy.testing.assert_array_equal(again.roi_heads.box_head.fc6.weight.data,
                                     old["box_head.fc6.weight"])
