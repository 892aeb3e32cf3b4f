"""RetinaNet: anchors and head layout, target assignment worked by hand, the two classification
losses and their normalisation, gradients, decoding, per-class NMS, bad input, config.

The models here are tiny (2-4 channels, 16-32 pixel images) so the file runs in seconds; one
test builds the default model to pin its shapes.
"""

from __future__ import annotations

import json
import math

import numpy
import pytest

import tinyseg as ts
from tinyseg import backend
from tinyseg.anchors import BoxCoder, anchor_grid
from tinyseg.boxes import box_iou
from tinyseg.models.retinanet import AnchorTargets, RetinaNet
from tinyseg.nn import init
from tinyseg.optim import Adam

# stride 4 (two stride-2 convs), one 3x3 conv per subnet, two square anchor sizes
TINY = {"widths": (2, 3), "head_channels": 4, "head_convs": 1, "anchor_sizes": (8, 12)}


def _device(xp):
    return "cpu" if xp is numpy else "gpu"


def _host(a):
    return backend.to_numpy(a.data if isinstance(a, ts.Tensor) else a)


def _images(xp, shape, seed=0, dtype="float32"):
    values = numpy.random.default_rng(seed).standard_normal(shape).astype(dtype)
    return ts.Tensor(xp.asarray(values))


def _target(boxes, labels):
    return {"boxes": numpy.asarray(boxes, dtype=numpy.float32).reshape(-1, 4),
            "labels": numpy.asarray(labels, dtype=numpy.int64)}


def _focal_by_hand(x, t, alpha=0.25, gamma=2.0):
    """-alpha_t (1 - p_t)^gamma log(p_t), elementwise, straight from the paper."""
    p = 1 / (1 + numpy.exp(-x))
    p_t = numpy.where(t == 1, p, 1 - p)
    alpha_t = numpy.where(t == 1, alpha, 1 - alpha)
    return -alpha_t * (1 - p_t) ** gamma * numpy.log(p_t)


def _bce_by_hand(x, t):
    p = 1 / (1 + numpy.exp(-x))
    return -(t * numpy.log(p) + (1 - t) * numpy.log(1 - p))


# ----- shapes, anchors and the head layout ------------------------------------------------------
def test_default_model_shapes(xp):
    model = RetinaNet().to(_device(xp))
    assert model.task == "detection" and model.num_classes == 4 and model.in_channels == 3
    assert model.stride == 8 and model.num_anchors == 4
    assert model.output_size(128, 128) == (16, 16)
    cls_logits, box_deltas = model.head_outputs(_images(xp, (2, 3, 64, 64)))
    assert cls_logits.shape == (2, 8 * 8 * 4, 3)
    assert box_deltas.shape == (2, 8 * 8 * 4, 4)
    assert model.anchors(64, 64, _device(xp)).shape == (8 * 8 * 4, 4)


def test_anchors_are_the_anchor_grid(xp):
    model = RetinaNet(**TINY, aspect_ratios=(0.5, 1.0))
    anchors = model.anchors(16, 24, _device(xp), dtype="float64")
    expected = anchor_grid((4, 6), 4, (8, 12), (0.5, 1.0), device=_device(xp), dtype="float64")
    assert anchors.dtype == numpy.float64 and backend.xp_of(anchors) is xp
    numpy.testing.assert_array_equal(_host(anchors), _host(expected))


def test_head_outputs_follow_the_anchor_order(xp):
    """Output row (i*W + j)*A + a, column c is channel a*C + c of the last conv at cell (i, j)."""
    model = RetinaNet(**TINY, aspect_ratios=(0.5, 1.0, 2.0)).to(_device(xp)).eval()
    x = _images(xp, (2, 3, 16, 12))
    cls_logits, box_deltas = model.head_outputs(x)
    features = model.backbone(x)
    raw_cls = _host(model.cls_score(model.cls_subnet(features)))  # (N, A*C, H, W)
    raw_box = _host(model.box_pred(model.box_subnet(features)))  # (N, A*4, H, W)
    a_count, c_count, w = 6, 3, 3
    for n, i, j, a, c in [(0, 0, 0, 0, 0), (1, 2, 1, 4, 2), (0, 3, 2, 5, 1), (1, 1, 2, 2, 0)]:
        row = (i * w + j) * a_count + a
        assert _host(cls_logits)[n, row, c] == raw_cls[n, a * c_count + c, i, j]
        numpy.testing.assert_array_equal(_host(box_deltas)[n, row],
                                         raw_box[n, a * 4 : a * 4 + 4, i, j])


def test_prior_bias_initialisation(xp):
    """Every anchor starts at p ~ pi = 0.01 for every class, with either loss."""
    for cls_loss in ("focal", "bce"):
        model = RetinaNet(**TINY, cls_loss=cls_loss).to(_device(xp)).eval()
        bias = _host(model.cls_score.bias)
        numpy.testing.assert_allclose(bias, -math.log(99), rtol=1e-6)
        assert numpy.all(_host(model.box_pred.bias) == 0)
        cls_logits, _ = model.head_outputs(_images(xp, (1, 3, 16, 16)))
        p = 1 / (1 + numpy.exp(-_host(cls_logits)))
        assert abs(p.mean() - 0.01) < 0.003


# ----- target assignment, by hand ---------------------------------------------------------------
def test_assign_targets_by_hand(xp):
    model = RetinaNet(**TINY)
    anchors = xp.asarray([
        [0, 0, 10, 10],     # gt 0 exactly: IoU 1                    -> label 2
        [0, 0, 20, 20],     # IoU 100/400 = 0.25 with gt 0            -> background
        [5, 0, 15, 10],     # IoU 50/150 = 0.33                       -> background
        [2, 0, 12, 10],     # IoU 80/120 = 0.67                       -> label 2
        [0, 0, 10, 22],     # IoU 100/220 = 0.45: between 0.4 and 0.5 -> ignored
        [50, 50, 66, 66],   # IoU 100/256 = 0.39 with gt 1, its best  -> label 3 (low quality)
        [48, 50, 66, 66],   # IoU 100/288 = 0.35 with gt 1            -> background
        [90, 90, 100, 100],  # nothing                                -> background
    ], dtype=xp.float64)
    gt_boxes = xp.asarray([[0, 0, 10, 10], [50, 50, 60, 60]], dtype=xp.float64)
    gt_labels = xp.asarray([2, 3])
    targets = model.assign_targets(anchors, gt_boxes, gt_labels)
    assert isinstance(targets, AnchorTargets)
    numpy.testing.assert_array_equal(_host(targets.labels), [2, 0, 0, 2, -1, 3, 0, 0])
    assert targets.labels.dtype == numpy.int64
    numpy.testing.assert_array_equal(_host(targets.positive),
                                     [1, 0, 0, 1, 0, 1, 0, 0])
    numpy.testing.assert_array_equal(_host(targets.ignored), [0, 0, 0, 0, 1, 0, 0, 0])
    one_hot = numpy.zeros((8, 3))
    one_hot[[0, 3], 1] = 1  # label 2 is class index 1
    one_hot[5, 2] = 1
    numpy.testing.assert_array_equal(_host(targets.cls_targets), one_hot)
    box = numpy.zeros((8, 4))
    box[3] = [-2 / 10, 0, 0, 0]  # gt centre 5, anchor centre 7, width 10
    box[5] = [-3 / 16, -3 / 16, math.log(10 / 16), math.log(10 / 16)]
    numpy.testing.assert_allclose(_host(targets.box_targets), box, atol=1e-12)


def test_low_quality_match_makes_the_best_anchors_positive():
    """A gt reached only at IoU 0.3 makes its best anchor(s), ties included, positive."""
    model = RetinaNet(**TINY)
    anchors = numpy.array([[0, 0, 10, 10], [10, 0, 20, 10], [40, 40, 50, 50]], dtype=float)
    gt = numpy.array([[5, 0, 15, 10]])  # IoU 50/150 = 1/3 with both of the first two
    labels = model.assign_targets(anchors, gt, numpy.array([1])).labels
    numpy.testing.assert_array_equal(labels, [1, 1, 0])


def test_assign_targets_without_objects(xp):
    model = RetinaNet(**TINY)
    anchors = model.anchors(16, 16, _device(xp))
    targets = model.assign_targets(anchors, xp.zeros((0, 4), dtype=xp.float32),
                                   xp.zeros(0, dtype=xp.int64))
    assert targets.labels.shape == (anchors.shape[0],)
    assert not _host(targets.labels).any() and not _host(targets.cls_targets).any()
    assert targets.box_targets.shape == (anchors.shape[0], 4)
    assert not _host(targets.box_targets).any()
    assert targets.cls_targets.dtype == anchors.dtype


# ----- the losses ---------------------------------------------------------------------------------
def _loss_case(xp, seed=0):
    """Two 16x16 images (K = 4*4*2 = 32 anchors), random head outputs, one and two objects."""
    rng = numpy.random.default_rng(seed)
    model = RetinaNet(**TINY).to(_device(xp), "float64")
    anchors = model.anchors(16, 16, _device(xp), dtype="float64")
    cls = rng.standard_normal((2, 32, 3))
    box = rng.standard_normal((2, 32, 4)) * 0.3
    targets = [_target([[1, 2, 11, 12]], [1]), _target([[0, 0, 8, 9], [6, 5, 16, 15]], [3, 2])]
    return model, anchors, cls, box, targets


@pytest.mark.parametrize("cls_loss", ["focal", "bce"])
def test_loss_is_summed_and_divided_by_the_positives_of_the_batch(xp, cls_loss):
    model, anchors, cls, box, targets = _loss_case(xp)
    model.cls_loss = cls_loss
    losses = model.compute_loss(ts.Tensor(xp.asarray(cls)), ts.Tensor(xp.asarray(box)),
                                anchors, targets)
    assert set(losses) == {"loss_cls", "loss_box"}
    per_image = [model.assign_targets(anchors, xp.asarray(t["boxes"], dtype=xp.float64),
                                      xp.asarray(t["labels"])) for t in targets]
    labels = numpy.stack([_host(t.labels) for t in per_image])
    one_hot = numpy.stack([_host(t.cls_targets) for t in per_image])
    deltas = numpy.stack([_host(t.box_targets) for t in per_image])
    num_pos = (labels > 0).sum()
    assert num_pos >= 3  # every object got at least one anchor
    terms = _focal_by_hand(cls, one_hot) if cls_loss == "focal" else _bce_by_hand(cls, one_hot)
    expected_cls = (terms * (labels >= 0)[..., None]).sum() / num_pos
    d = numpy.abs(box - deltas)
    smooth = numpy.where(d < 1 / 9, 0.5 * d**2 * 9, d - 0.5 / 9)
    expected_box = (smooth * (labels > 0)[..., None]).sum() / num_pos
    numpy.testing.assert_allclose(float(losses["loss_cls"].item()), expected_cls, rtol=1e-10)
    numpy.testing.assert_allclose(float(losses["loss_box"].item()), expected_box, rtol=1e-10)


def test_ignored_anchors_change_no_loss(xp):
    model, anchors, cls, box, targets = _loss_case(xp)
    labels = numpy.stack([
        _host(model.assign_targets(anchors, xp.asarray(t["boxes"], dtype=xp.float64),
                                   xp.asarray(t["labels"])).labels) for t in targets])
    ignored = labels < 0
    assert ignored.any()
    before = model.compute_loss(ts.Tensor(xp.asarray(cls)), ts.Tensor(xp.asarray(box)),
                                anchors, targets)
    cls2, box2 = cls.copy(), box.copy()
    cls2[ignored] += 5.0
    box2[ignored] -= 3.0
    after = model.compute_loss(ts.Tensor(xp.asarray(cls2)), ts.Tensor(xp.asarray(box2)),
                               anchors, targets)
    for name in before:
        assert float(after[name].item()) == pytest.approx(float(before[name].item()), rel=1e-12)


def test_no_objects_divides_by_one(xp):
    model, anchors, cls, box, _ = _loss_case(xp)
    empty = [_target([], []), _target([], [])]
    losses = model.compute_loss(ts.Tensor(xp.asarray(cls)), ts.Tensor(xp.asarray(box)),
                                anchors, empty)
    assert float(losses["loss_box"].item()) == 0.0
    expected = _focal_by_hand(cls, numpy.zeros_like(cls)).sum()  # every anchor a negative
    numpy.testing.assert_allclose(float(losses["loss_cls"].item()), expected, rtol=1e-10)


def test_focal_versus_bce_changes_only_the_classification_loss(xp):
    focal = RetinaNet(**TINY).to(_device(xp))
    bce = RetinaNet(**{**TINY, "cls_loss": "bce"}).to(_device(xp))
    bce.load_state_dict(focal.state_dict())
    x = _images(xp, (2, 3, 16, 16))
    targets = [_target([[1, 2, 11, 12]], [1]), _target([[0, 0, 8, 9]], [3])]
    a, b = focal(x, targets), bce(x, targets)
    assert float(a["loss_box"].item()) == float(b["loss_box"].item())
    # at p ~ 0.01 the easy negatives cost BCE ~ -log(0.99) each and focal loss ~1e-4 of that
    assert float(b["loss_cls"].item()) > 2 * float(a["loss_cls"].item())
    focal.eval()
    bce.eval()
    with ts.no_grad():  # inference does not depend on the loss
        for da, db in zip(focal(x), bce(x)):
            for key in da:
                numpy.testing.assert_array_equal(_host(da[key]), _host(db[key]))


@pytest.mark.parametrize("cls_loss", ["focal", "bce"])
def test_loss_gradcheck_float64(xp, cls_loss):
    """The total loss w.r.t. the head outputs, random outputs and random boxes/labels."""
    rng = numpy.random.default_rng(3)
    model = RetinaNet(**{**TINY, "cls_loss": cls_loss}).to(_device(xp), "float64")
    anchors = model.anchors(16, 16, _device(xp), dtype="float64")
    corners = rng.uniform(0, 8, size=(3, 2))
    boxes = numpy.concatenate([corners, corners + rng.uniform(4, 8, size=(3, 2))], axis=1)
    targets = [_target(boxes[:2], rng.integers(1, 4, 2)), _target(boxes[2:], rng.integers(1, 4, 1))]
    cls = ts.tensor(xp.asarray(rng.standard_normal((2, 32, 3))), requires_grad=True)
    box = ts.tensor(xp.asarray(rng.standard_normal((2, 32, 4)) * 0.5), requires_grad=True)

    def total(c, b):
        losses = model.compute_loss(c, b, anchors, targets)
        return losses["loss_cls"] + losses["loss_box"]

    assert ts.gradcheck(total, [cls, box])


# ----- inference ----------------------------------------------------------------------------------
def _outputs_from_targets(model, anchors, targets, logit=8.0):
    """Head outputs that say exactly what assign_targets asked for: the ideal network."""
    xp = backend.xp_of(anchors)
    cls, box = [], []
    for t in targets:
        assigned = model.assign_targets(anchors, xp.asarray(t["boxes"], dtype=anchors.dtype),
                                        xp.asarray(t["labels"]))
        cls.append(xp.where(assigned.cls_targets > 0, logit, -logit))
        box.append(assigned.box_targets)
    return xp.stack(cls), xp.stack(box)


def test_decode_round_trip(xp):
    """Outputs built from the encoded ground truth decode back to it, with the right labels;
    the many positive anchors of one object collapse to one detection in NMS."""
    model = RetinaNet(**TINY).to(_device(xp), "float64").eval()
    anchors = model.anchors(32, 32, _device(xp), dtype="float64")
    targets = [_target([[2, 3, 13, 12], [15, 16, 29, 30]], [3, 1]),
               _target([[4, 4, 14, 16]], [2])]
    cls, box = _outputs_from_targets(model, anchors, targets)
    detections = model.postprocess(cls, box, anchors, (32, 32))
    assert len(detections) == 2
    for det, t in zip(detections, targets):
        order = numpy.argsort(_host(det["boxes"])[:, 0])  # equal scores: sort by x1
        numpy.testing.assert_allclose(_host(det["boxes"])[order], t["boxes"], atol=1e-4)
        numpy.testing.assert_array_equal(_host(det["labels"])[order], t["labels"])
        numpy.testing.assert_allclose(_host(det["scores"]), 1 / (1 + math.exp(-8)), rtol=1e-6)
        assert det["boxes"].dtype == numpy.float32 and det["scores"].dtype == numpy.float32
        assert det["labels"].dtype == numpy.int64
        assert backend.xp_of(det["boxes"], det["scores"], det["labels"]) is xp


def test_inference_nms_is_per_class(xp):
    """Two heavily overlapping boxes: both kept when their classes differ, one when equal."""
    model = RetinaNet(**TINY).to(_device(xp), "float64").eval()
    anchors = xp.asarray([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30]], dtype=xp.float64)
    box = xp.zeros((1, 3, 4))
    cls = xp.full((1, 3, 3), -10.0)
    cls[0, 0, 0] = 3.0  # anchor 0, class index 0 (label 1), best
    cls[0, 1, 0] = 2.0  # anchor 1, same class, IoU 90/110 with anchor 0: suppressed
    cls[0, 1, 2] = 1.0  # anchor 1, class index 2 (label 3): kept
    cls[0, 2, 1] = 0.0  # anchor 2, p = 0.5, alone
    det = model.postprocess(cls, box, anchors, (32, 32))[0]
    numpy.testing.assert_array_equal(_host(det["labels"]), [1, 3, 2])
    numpy.testing.assert_allclose(_host(det["boxes"]), [[0, 0, 10, 10], [1, 0, 11, 10],
                                                        [20, 20, 30, 30]])
    scores = 1 / (1 + numpy.exp(-numpy.array([3.0, 1.0, 0.0])))
    numpy.testing.assert_allclose(_host(det["scores"]), scores, rtol=1e-6)


def test_inference_thresholds_clipping_and_limits(xp):
    anchors = xp.asarray([[0, 0, 10, 10], [12, 0, 22, 10], [24, 0, 34, 10],
                          [0, 20, 10, 30]], dtype=xp.float64)
    box = xp.zeros((1, 4, 4))
    cls = xp.full((1, 4, 3), -10.0)
    # p = 0.04 is below the score threshold 0.05; the others are above, one per anchor
    cls[0, :, 0] = xp.asarray([math.log(0.04 / 0.96), 1.0, 2.0, 3.0])
    model = RetinaNet(**TINY).to(_device(xp), "float64")
    det = model.postprocess(cls, box, anchors, (32, 30))[0]
    numpy.testing.assert_allclose(_host(det["boxes"]), [[0, 20, 10, 30], [24, 0, 30, 10],
                                                        [12, 0, 22, 10]])  # clipped to W = 30
    assert numpy.all(numpy.diff(_host(det["scores"])) <= 0)
    few = RetinaNet(**TINY, detections_per_img=2).postprocess(cls, box, anchors, (32, 32))[0]
    assert few["boxes"].shape == (2, 4)
    top1 = RetinaNet(**TINY, topk_candidates=1).postprocess(cls, box, anchors, (32, 32))[0]
    numpy.testing.assert_array_equal(_host(top1["boxes"]), [[0, 20, 10, 30]])
    nothing = xp.full((1, 4, 3), -10.0)
    empty = model.postprocess(nothing, box, anchors, (32, 32))[0]
    assert empty["boxes"].shape == (0, 4) and empty["labels"].shape == (0,)


# ----- the model in both modes ------------------------------------------------------------------
def test_train_and_eval_outputs(xp):
    model = RetinaNet(**TINY).to(_device(xp))
    x = _images(xp, (2, 3, 16, 20))
    targets = [_target([[1, 2, 11, 12], [3, 3, 19, 15]], [1, 2]), _target([], [])]
    losses = model(x, targets)
    assert set(losses) == {"loss_cls", "loss_box"}
    total = losses["loss_cls"] + losses["loss_box"]
    assert total.shape == () and numpy.isfinite(_host(total))
    total.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape, name
    model.eval()
    model.score_thresh = 0.005  # the untrained model scores ~0.01: let some through
    with ts.no_grad():
        detections = model(x)
    assert len(detections) == 2
    for det in detections:
        assert set(det) == {"boxes", "scores", "labels"}
        n = det["boxes"].shape[0]
        assert det["boxes"].shape == (n, 4) and det["scores"].shape == (n,)
        assert n <= model.detections_per_img
        assert backend.xp_of(det["boxes"]) is xp
        boxes = _host(det["boxes"])
        assert (boxes[:, 0::2] >= 0).all() and (boxes[:, 0::2] <= 20).all()
        assert (boxes[:, 1::2] >= 0).all() and (boxes[:, 1::2] <= 16).all()
        labels = _host(det["labels"])
        assert ((labels >= 1) & (labels <= 3)).all()
        assert (_host(det["scores"]) > model.score_thresh).all()


def test_a_few_steps_fit_one_batch():
    """The loss of one fixed batch falls, and the fitted model finds its two objects."""
    init.manual_seed(0)
    model = RetinaNet(widths=(8, 16), head_channels=16, head_convs=1, anchor_sizes=(8, 12))
    rng = numpy.random.default_rng(0)
    x = rng.uniform(0, 0.1, (2, 3, 32, 32)).astype(numpy.float32)
    x[0, 0, 4:14, 6:16] = 1.0  # a red square, label 1
    x[1, 2, 16:28, 12:24] = 1.0  # a blue square, label 2
    targets = [_target([[6, 4, 16, 14]], [1]), _target([[12, 16, 24, 28]], [2])]
    optimizer = Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(60):
        losses = model(ts.Tensor(x), targets)
        total = losses["loss_cls"] + losses["loss_box"]
        first = first if first is not None else float(total.item())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    assert float(total.item()) < 0.2 * first
    model.eval()
    with ts.no_grad():
        detections = model(ts.Tensor(x))
    for det, t in zip(detections, targets):
        assert det["labels"][0] == t["labels"][0]
        iou = box_iou(det["boxes"][:1], t["boxes"])[0, 0]
        assert iou > 0.5


def test_float64_model(xp):
    model = RetinaNet(**TINY).to(_device(xp), "float64")
    losses = model(_images(xp, (1, 3, 16, 16), dtype="float64"), [_target([[2, 2, 10, 12]], [3])])
    assert losses["loss_cls"].dtype == numpy.float64
    model.eval()
    det = model(_images(xp, (1, 3, 16, 16), dtype="float64"))[0]
    assert det["boxes"].dtype == numpy.float32


# ----- bad input, config -------------------------------------------------------------------------
def test_bad_images():
    model = RetinaNet(**TINY)
    with pytest.raises(ValueError, match="multiples of 4.*18x16"):
        model(ts.Tensor(numpy.zeros((1, 3, 18, 16), numpy.float32)), [_target([], [])])
    with pytest.raises(ValueError, match="3 channels"):
        model(ts.Tensor(numpy.zeros((1, 1, 16, 16), numpy.float32)), [_target([], [])])
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        model(ts.Tensor(numpy.zeros((3, 16, 16), numpy.float32)))
    with pytest.raises(ValueError, match="multiples of 4"):
        model.anchors(16, 10)


@pytest.mark.parametrize("targets, match", [
    (None, "targets is required"),
    ([_target([], [])], "list of 2 dicts"),
    ("boxes", "list of 2 dicts"),
    ([{"boxes": numpy.zeros((0, 4))}, _target([], [])], r"targets\[0\] must be a dict"),
    ([_target([], []), {"boxes": numpy.zeros((1, 5)), "labels": numpy.ones(1, int)}],
     r"targets\[1\]\['boxes'\] must be a real \(M, 4\)"),
    ([_target([[0, 0, 4, 4]], [1]), {"boxes": numpy.ones((1, 4)), "labels": numpy.ones(2, int)}],
     r"targets\[1\]\['labels'\] must be an int array of shape \(1,\)"),
    ([_target([[0, 0, 4, 4]], [0]), _target([], [])], r"labels'\] must be in 1\.\.3"),
    ([_target([[0, 0, 4, 4]], [4]), _target([], [])], r"labels'\] must be in 1\.\.3"),
    ([_target([[0, 0, 4, 4]], [1]), _target([[5, 0, 5, 4]], [1])], "x2 > x1"),
])
def test_bad_targets(targets, match):
    model = RetinaNet(**TINY)
    with pytest.raises(ValueError, match=match):
        model(ts.Tensor(numpy.zeros((2, 3, 16, 16), numpy.float32)), targets)


@pytest.mark.parametrize("options, match", [
    ({"num_classes": 1}, "num_classes"),
    ({"cls_loss": "softmax"}, "cls_loss must be one of"),
    ({"anchor_sizes": ()}, "sizes"),
    ({"aspect_ratios": (1.0, -2.0)}, "aspect_ratios"),
    ({"prior_prob": 0.0}, "prior_prob"),
    ({"focal_gamma": -1.0}, "focal_gamma"),
    ({"score_thresh": 1.5}, "score_thresh"),
    ({"nms_thresh": -0.1}, "nms_thresh"),
    ({"fg_iou_thresh": 0.3, "bg_iou_thresh": 0.4}, "low_threshold must be <= high_threshold"),
    ({"detections_per_img": 0}, "detections_per_img"),
    ({"topk_candidates": 0}, "topk_candidates"),
    ({"widths": ()}, "widths"),
])
def test_bad_options(options, match):
    with pytest.raises((ValueError, TypeError), match=match):
        RetinaNet(**options)


def test_compute_loss_checks_shapes():
    model = RetinaNet(**TINY)
    anchors = model.anchors(16, 16)
    with pytest.raises(ValueError, match=r"cls_logits \(N, K, 3\)"):
        model.compute_loss(numpy.zeros((1, 32, 4)), numpy.zeros((1, 32, 4)), anchors,
                           [_target([], [])])


def test_config_round_trip():
    model = RetinaNet(num_classes=3, widths=(4, 6), head_channels=5, head_convs=2,
                      anchor_sizes=(10, 20), aspect_ratios=(0.5, 1.0), cls_loss="bce",
                      focal_gamma=1.0, prior_prob=0.02, fg_iou_thresh=0.6, bg_iou_thresh=0.3,
                      score_thresh=0.1, nms_thresh=0.4, detections_per_img=7, topk_candidates=50)
    config = json.loads(json.dumps(model.config()))
    rebuilt = RetinaNet(**config)
    assert rebuilt.config() == model.config()
    assert config["cls_loss"] == "bce" and config["detections_per_img"] == 7
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == shapes
    assert rebuilt.cls_score.weight.shape == (4 * 2, 5, 3, 3)  # A = 2 sizes x 2 ratios, C = 2

    from tinyseg.models import MODELS, build_model

    assert MODELS["retinanet"] is RetinaNet
    assert build_model("retinanet", **config).config() == model.config()


def test_box_coder_is_the_unit_weight_one():
    assert RetinaNet(**TINY).box_coder.weights == BoxCoder((1, 1, 1, 1)).weights
