"""YOLO v1 and the classification + localisation model: targets, loss, gradients, decoding.

The loss is checked against a plain-loop computation written here from the paper's formula
(docs/conventions.md, section "Detectors"), the target tensor against boxes worked out by hand,
and decoding by building a head output from the targets and decoding it back. Models are tiny
(1-2 stages of 2-4 channels) and images small (16-64 pixels), so the file runs in a few seconds.
"""

from __future__ import annotations

import json
import math

import numpy
import pytest
from test_boxes import iou_by_hand
from test_models_segnet_deeplab import _device, _host, _input

import tinyseg as ts
from tinyseg.models import MODELS, build_model
from tinyseg.models.classloc import ClassLocNet, single_object_targets
from tinyseg.models.yolo import (
    YOLOv1,
    assign_predictors,
    build_targets,
    cells_to_boxes,
    decode,
    yolo_loss,
)
from tinyseg.nn import init

TINY = {"widths": (2, 4), "depths": (1, 1)}  # stride 4


def _targets(boxes, labels):
    """Host (numpy) targets, as the detection contract passes them."""
    return [{"boxes": numpy.asarray(b, dtype="float32").reshape(-1, 4),
             "labels": numpy.asarray(lab, dtype="int64")} for b, lab in zip(boxes, labels)]


def _logit(p):
    return numpy.log(p) - numpy.log1p(-p)


# ----- build_targets: the grid and the target tensor -------------------------------------------
def test_build_targets_on_hand_worked_boxes(xp):
    """64x64 image, S = 4 (16-pixel cells), C = 2 (num_classes=3)."""
    boxes = [
        # centre (16, 24): column 1, row 1, offsets (0, 0.5); w 16 -> sqrt(1/4), h 32 -> sqrt(1/2)
        [[8, 8, 24, 40]],
        # two centres in cell (0, 0): the larger box (12 x 12) wins over the 10 x 10 one
        [[2, 2, 14, 14], [0, 0, 10, 10]],
        [],
        # equal areas in cell (3, 3): the later one wins; plus a box reaching the image border
        [[50, 50, 60, 60], [52, 54, 62, 64], [0, 40, 64, 64]],
    ]
    labels = [[2], [2, 1], [], [1, 2, 1]]
    target, mask = build_targets([xp.asarray(numpy.asarray(b, "float32").reshape(-1, 4))
                                  for b in boxes], [xp.asarray(numpy.asarray(lab, "int64"))
                                                    for lab in labels],
                                 (64, 64), grid_size=4, num_classes=3)
    target, mask = _host(target), _host(mask)
    assert target.shape == (4, 4, 4, 6) and target.dtype == numpy.float32
    assert mask.shape == (4, 4, 4) and mask.dtype == bool
    expected_mask = numpy.zeros((4, 4, 4), bool)
    expected = numpy.zeros((4, 4, 4, 6))
    expected_mask[0, 1, 1] = True
    expected[0, 1, 1] = [0, 0.5, 0.5, math.sqrt(0.5), 0, 1]
    expected_mask[1, 0, 0] = True
    expected[1, 0, 0] = [0.5, 0.5, math.sqrt(12 / 64), math.sqrt(12 / 64), 0, 1]
    expected_mask[3, 3, 3] = True  # centre (57, 59): offsets (9/16, 11/16)
    expected[3, 3, 3] = [9 / 16, 11 / 16, math.sqrt(10 / 64), math.sqrt(10 / 64), 0, 1]
    expected_mask[3, 3, 2] = True  # centre (32, 52): column 2, row 3
    expected[3, 3, 2] = [0, 0.25, 1, math.sqrt(24 / 64), 1, 0]
    numpy.testing.assert_array_equal(mask, expected_mask)
    numpy.testing.assert_allclose(target, expected, atol=1e-6)


def test_build_targets_clips_boxes_to_the_image(xp):
    """A box half outside the image is clipped first, so its centre lies in the last cell."""
    target, mask = build_targets([xp.asarray([[24.0, 24.0, 48.0, 40.0]])],
                                 [xp.asarray([1])], (32, 32), grid_size=2, num_classes=2)
    assert bool(mask[0, 1, 1]) and int(mask.sum()) == 1
    # clipped to (24, 24, 32, 32): centre (28, 28), offset 12/16, size 8/32
    numpy.testing.assert_allclose(_host(target[0, 1, 1]), [0.75, 0.75, 0.5, 0.5, 1], atol=1e-6)


def test_cells_to_boxes_inverts_build_targets(xp):
    rng = numpy.random.default_rng(1)
    S, H, W = 4, 64, 96
    cells = rng.choice(S * S, size=6, replace=False)  # one object per cell
    rows, cols = cells // S, cells % S
    cx = (cols + rng.uniform(0.05, 0.95, 6)) * W / S
    cy = (rows + rng.uniform(0.05, 0.95, 6)) * H / S
    # sizes that keep each box inside the image (clipping would move the centre)
    w = numpy.minimum(rng.uniform(4, 30, 6), 2 * numpy.minimum(cx, W - cx))
    h = numpy.minimum(rng.uniform(4, 30, 6), 2 * numpy.minimum(cy, H - cy))
    gt = numpy.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
    target, mask = build_targets([xp.asarray(gt)], [xp.asarray(rng.integers(1, 3, 6))], (H, W),
                                 S, num_classes=3, dtype="float64")
    decoded = _host(cells_to_boxes(target[..., None, :4], (H, W)))[..., 0, :]
    numpy.testing.assert_allclose(decoded[0, rows, cols], gt, atol=1e-9)
    assert int(mask.sum()) == 6


def test_build_targets_bad_input(xp):
    box = [xp.asarray([[0.0, 0.0, 4.0, 4.0]])]
    with pytest.raises(ValueError, match="labels must be in 1..2"):
        build_targets(box, [xp.asarray([3])], (8, 8), 2, num_classes=3)
    with pytest.raises(ValueError, match=r"boxes\[0\] must be \(M, 4\)"):
        build_targets([xp.zeros((1, 3))], [xp.asarray([1])], (8, 8), 2, num_classes=3)
    with pytest.raises(ValueError, match="equal length"):
        build_targets(box, [], (8, 8), 2, num_classes=3)
    with pytest.raises(ValueError, match="grid_size"):
        build_targets(box, [xp.asarray([1])], (8, 8), 0, num_classes=3)


# ----- the loss: a plain-loop computation of the paper's formula (docs/conventions.md) -----
def _sigmoid(v):
    return 1 / (1 + math.exp(-v))


def _loss_by_hand(out, boxes, labels, H, W, B, C, l_coord=5.0, l_noobj=0.5):
    """One object per cell at most. Returns the five terms and, for each object cell, the IoU
    gap between its two boxes and the responsible box."""
    N, S = out.shape[:2]
    terms = dict.fromkeys(["loss_xy", "loss_wh", "loss_obj", "loss_noobj", "loss_class"], 0.0)
    gaps = []
    for n in range(N):
        objects = {}
        for (x1, y1, x2, y2), lab in zip(boxes[n], labels[n]):
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            objects[(int(cy // (H / S)), int(cx // (W / S)))] = (x1, y1, x2, y2, lab)
        for i in range(S):
            for j in range(S):
                v = out[n, i, j]
                preds = [[_sigmoid(v[5 * b + k]) for k in range(5)] for b in range(B)]
                if (i, j) not in objects:
                    for b in range(B):
                        terms["loss_noobj"] += l_noobj * preds[b][4] ** 2
                    continue
                x1, y1, x2, y2, lab = objects[(i, j)]
                t = [(x1 + x2) / 2 / (W / S) - j, (y1 + y2) / 2 / (H / S) - i,
                     math.sqrt((x2 - x1) / W), math.sqrt((y2 - y1) / H)]
                ious = []
                for px, py, pw, ph, _ in preds:
                    pcx, pcy = (j + px) * W / S, (i + py) * H / S
                    w, h = pw * pw * W, ph * ph * H
                    ious.append(iou_by_hand((pcx - w / 2, pcy - h / 2, pcx + w / 2, pcy + h / 2),
                                     (x1, y1, x2, y2)))
                r = ious.index(max(ious))
                gaps.append((abs(ious[0] - ious[1]), r))
                for b, (px, py, pw, ph, conf) in enumerate(preds):
                    if b == r:
                        terms["loss_xy"] += l_coord * ((px - t[0]) ** 2 + (py - t[1]) ** 2)
                        terms["loss_wh"] += l_coord * ((pw - t[2]) ** 2 + (ph - t[3]) ** 2)
                        terms["loss_obj"] += (conf - ious[b]) ** 2
                    else:
                        terms["loss_noobj"] += l_noobj * conf ** 2
                scores = [math.exp(s) for s in v[5 * B:]]
                for c in range(C):
                    terms["loss_class"] += (scores[c] / sum(scores) - (lab == c + 1)) ** 2
    return {k: v / N for k, v in terms.items()}, gaps


TINY_CASE = {  # S = 2, B = 2, C = 2 on 32x32 images (16-pixel cells)
    "boxes": [[[2.0, 3.0, 20.0, 17.0], [18.0, 20.0, 30.0, 31.0]], [[14.0, 1.0, 31.0, 12.0]]],
    "labels": [[2, 1], [1]],
}


def _tiny_case(xp, seed=10, scale=1.5, dtype="float64"):
    out = numpy.random.default_rng(seed).standard_normal((2, 2, 2, 12)) * scale
    boxes = [xp.asarray(numpy.asarray(b, dtype)) for b in TINY_CASE["boxes"]]
    labels = [xp.asarray(numpy.asarray(lab)) for lab in TINY_CASE["labels"]]
    target, mask = build_targets(boxes, labels, (32, 32), 2, num_classes=3, dtype=dtype)
    return out, target, mask


def test_yolo_loss_matches_the_plain_loop_formula(xp):
    out, target, mask = _tiny_case(xp)
    losses = yolo_loss(ts.Tensor(xp.asarray(out)), target, mask, (32, 32))
    expected, gaps = _loss_by_hand(out, TINY_CASE["boxes"], TINY_CASE["labels"], 32, 32, B=2, C=2)
    assert min(gap for gap, _ in gaps) > 0.1  # a clear responsible predictor in every cell
    assert {r for _, r in gaps} == {0, 1}  # and each of the two boxes wins somewhere
    assert set(losses) == set(expected)
    for name, value in expected.items():
        assert losses[name].item() == pytest.approx(value, rel=1e-10), name
    assert all(v > 0 for v in expected.values())


def test_lambdas_scale_their_terms(xp):
    out, target, mask = _tiny_case(xp)
    base = yolo_loss(ts.Tensor(xp.asarray(out)), target, mask, (32, 32))
    scaled = yolo_loss(ts.Tensor(xp.asarray(out)), target, mask, (32, 32), lambda_coord=1.0,
                       lambda_noobj=2.0)
    for name, factor in [("loss_xy", 0.2), ("loss_wh", 0.2), ("loss_obj", 1), ("loss_noobj", 4),
                         ("loss_class", 1)]:
        assert scaled[name].item() == pytest.approx(factor * base[name].item(), rel=1e-12)


def test_assign_predictors_picks_the_box_with_the_highest_iou(xp):
    out, target, mask = _tiny_case(xp)
    # cell (0, 0) of image 0: box 1 is placed exactly on the object, box 0 far away
    x1, y1, x2, y2 = TINY_CASE["boxes"][0][0]
    params = [(x1 + x2) / 32, (y1 + y2) / 32, math.sqrt((x2 - x1) / 32), math.sqrt((y2 - y1) / 32)]
    out[0, 0, 0, 5:9] = _logit(numpy.asarray(params))
    out[0, 0, 0, 0:4] = [-6, -6, -6, -6]
    responsible, iou = assign_predictors(xp.asarray(out), target, mask, (32, 32))
    assert responsible.shape == iou.shape == (2, 2, 2, 2)
    assert _host(responsible[0, 0, 0]).tolist() == [False, True]
    assert float(iou[0, 0, 0, 1]) == pytest.approx(1.0, abs=1e-9)
    # exactly one responsible box per object cell and none elsewhere; zero IoU in empty cells
    numpy.testing.assert_array_equal(_host(responsible.sum(-1)), _host(mask).astype(int))
    assert float(abs(iou[~mask]).sum()) == 0.0


def test_yolo_loss_gradcheck(xp):
    """float64 gradient of all five terms w.r.t. the raw head output, random upstream gradients.

    The responsible predictor and the IoU target are computed once and held fixed: the IoU target
    is detached by definition, so central differences must not see it move.
    """
    out, target, mask = _tiny_case(xp, seed=9)
    assignment = assign_predictors(xp.asarray(out), target, mask, (32, 32))
    x = ts.tensor(xp.asarray(out), requires_grad=True)
    free = yolo_loss(x, target, mask, (32, 32))
    fixed = yolo_loss(x, target, mask, (32, 32), assignment=assignment)
    assert all(free[k].item() == fixed[k].item() for k in free)

    def fn(o):
        return tuple(yolo_loss(o, target, mask, (32, 32), assignment=assignment).values())

    assert ts.gradcheck(fn, [x])


def test_yolo_loss_with_no_objects_pushes_only_confidences_down(xp):
    out = numpy.random.default_rng(0).standard_normal((2, 2, 2, 12))
    target, mask = build_targets([xp.zeros((0, 4)), xp.zeros((0, 4))],
                                 [xp.zeros(0, "int64")] * 2, (32, 32), 2, num_classes=3,
                                 dtype="float64")
    losses = yolo_loss(ts.Tensor(xp.asarray(out)), target, mask, (32, 32))
    conf = 1 / (1 + numpy.exp(-out[..., [4, 9]]))
    assert losses["loss_noobj"].item() == pytest.approx(0.5 * (conf ** 2).sum() / 2)
    for name in ("loss_xy", "loss_wh", "loss_obj", "loss_class"):
        assert losses[name].item() == 0.0


# ----- decoding -------------------------------------------------------------------------------
def _output_from_targets(target, mask, B, confident=8.0):
    """A raw head output that says exactly what the targets say (box 0 of each object cell)."""
    target, mask = _host(target), _host(mask)
    N, S = mask.shape[:2]
    C = target.shape[-1] - 4
    out = numpy.full((N, S, S, 5 * B + C), -confident)
    out[..., 0:4] = _logit(numpy.clip(target[..., :4], 1e-6, 1 - 1e-6))
    out[..., 4] = numpy.where(mask, confident, -confident)
    out[..., 5 * B:] = confident * target[..., 4:]
    return out


def test_decode_round_trip_returns_the_ground_truth(xp):
    rng = numpy.random.default_rng(5)
    S, H, W = 4, 64, 64
    boxes, labels = [], []
    for n in range(3):
        cells = rng.choice(S * S, size=n + 1, replace=False)
        cx = (cells % S + rng.uniform(0.1, 0.9, n + 1)) * W / S
        cy = (cells // S + rng.uniform(0.1, 0.9, n + 1)) * H / S
        size = rng.uniform(6, 14, (n + 1, 2))  # small boxes: no two overlap much
        boxes.append(numpy.stack([cx - size[:, 0], cy - size[:, 1], cx + size[:, 0],
                                  cy + size[:, 1]], 1).clip(0, 64))
        labels.append(rng.integers(1, 4, n + 1))
    target, mask = build_targets([xp.asarray(b) for b in boxes], [xp.asarray(lab) for lab in
                                                                  labels], (H, W), S, 4, "float64")
    for b in boxes:  # no two boxes of an image overlap enough for NMS to merge them
        iou = ts.boxes.box_iou(b, b)
        assert (iou - numpy.eye(len(b))).max() < 0.5
    detections = decode(xp.asarray(_output_from_targets(target, mask, B=2)), (H, W), 4)
    assert len(detections) == 3
    for det, gt, lab in zip(detections, boxes, labels):
        assert det["boxes"].dtype == numpy.float32 and det["scores"].dtype == numpy.float32
        assert det["labels"].dtype == numpy.int64
        assert ts.backend.xp_of(det["boxes"]) is xp
        got, scores = _host(det["boxes"]), _host(det["scores"])
        assert got.shape == gt.shape and numpy.all(scores > 0.99)
        order = numpy.lexsort((gt[:, 1], gt[:, 0]))
        found = numpy.lexsort((got[:, 1], got[:, 0]))
        numpy.testing.assert_allclose(got[found], gt[order], atol=1e-3)
        numpy.testing.assert_array_equal(_host(det["labels"])[found], lab[order])


def test_decode_runs_nms_per_class_and_sorts_and_truncates(xp):
    """Two cells predict nearly the same big box (IoU 0.66): one survives per class."""
    S, B = 2, 1
    out = numpy.full((1, S, S, 5 * B + 2), -8.0)
    # cells (0, 0) and (0, 1) of a 64x64 image: centres x 28.8 and 35.2, sides 0.7^2 * 64
    out[0, 0, 0, :5] = _logit(numpy.asarray([0.9, 0.5, 0.7, 0.7, 0.95]))
    out[0, 0, 1, :5] = _logit(numpy.asarray([0.1, 0.5, 0.7, 0.7, 0.9]))

    def detect(classes, **kw):
        o = out.copy()
        for (i, j), c in zip([(0, 0), (0, 1)], classes):
            o[0, i, j, 5 + c] = 8.0
        return decode(xp.asarray(o), (64, 64), 3, **kw)[0]

    same = detect([0, 0])
    assert _host(same["labels"]).tolist() == [1]
    assert float(same["scores"][0]) == pytest.approx(0.95 * (1 - math.exp(-16)), rel=1e-4)
    different = detect([0, 1])
    assert _host(different["labels"]).tolist() == [1, 2]  # by decreasing score 0.95, 0.9
    assert bool(different["scores"][0] > different["scores"][1])
    assert len(detect([0, 0], nms_thresh=0.7)["labels"]) == 2  # IoU 0.66 is below 0.7
    assert _host(detect([0, 1], detections_per_img=1)["labels"]).tolist() == [1]
    assert len(detect([0, 1], score_thresh=0.99)["labels"]) == 0


def test_decode_bad_input(xp):
    with pytest.raises(ValueError, match=r"5B \+ 2"):
        decode(xp.zeros((1, 2, 2, 11)), (8, 8), 3)
    with pytest.raises(ValueError, match=r"\(N, S, S, 5B \+ C\)"):
        decode(xp.zeros((2, 2, 12)), (8, 8), 3)
    with pytest.raises(ValueError, match="score_thresh"):
        decode(xp.zeros((1, 2, 2, 12)), (8, 8), 3, score_thresh=1.5)


# ----- the model ------------------------------------------------------------------------------
SCENE = _targets([[[1, 2, 9, 12], [10, 3, 15, 9]], []], [[1, 3], []])


def test_yolo_shapes_and_default_model(xp):
    model = YOLOv1(num_classes=4, grid_size=2, boxes_per_cell=3, **TINY).to(_device(xp))
    out = model.raw_output(_input(xp, (2, 3, 16, 24)))
    assert out.shape == (2, 2, 2, 5 * 3 + 3)  # the 4x6 stride-4 map pooled to 2x2 (kernel 2x3)
    assert model.output_size(16, 24) == (2, 2)
    default = YOLOv1()
    assert default.output_size(128, 128) == (8, 8) and default.stride == 16
    assert default.raw_output(_input(numpy, (1, 3, 128, 128))).shape == (1, 8, 8, 13)


def test_fc_head(xp):
    model = YOLOv1(grid_size=2, head="fc", fc_hidden=5, **TINY).to(_device(xp))
    assert model.raw_output(_input(xp, (2, 3, 8, 8))).shape == (2, 2, 2, 13)
    model.train()
    losses = model(_input(xp, (2, 3, 16, 16)), SCENE)
    sum(losses.values()).backward()
    assert model.head[1].weight.grad is not None


def test_yolo_train_mode_returns_the_loss_terms(xp):
    model = YOLOv1(grid_size=2, **TINY).to(_device(xp))
    losses = model(_input(xp, (2, 3, 16, 16)), SCENE)
    assert set(losses) == {"loss_xy", "loss_wh", "loss_obj", "loss_noobj", "loss_class"}
    assert all(v.shape == () and numpy.isfinite(v.item()) for v in losses.values())
    sum(losses.values()).backward()
    assert all(p.grad is not None and float(abs(p.grad).sum()) > 0 for p in model.parameters())


def test_yolo_forward_loss_equals_the_functions(xp):
    model = YOLOv1(grid_size=2, **TINY).to(_device(xp), "float64")
    images = _input(xp, (2, 3, 16, 16), dtype="float64")
    losses = model(images, SCENE)
    out = model.raw_output(images)
    boxes = [xp.asarray(t["boxes"]) for t in SCENE]
    target, mask = build_targets(boxes, [xp.asarray(t["labels"]) for t in SCENE], (16, 16), 2, 4,
                                 "float64")
    expected = yolo_loss(out, target, mask, (16, 16))
    assert all(losses[k].item() == pytest.approx(expected[k].item(), rel=1e-12) for k in losses)


def test_yolo_eval_mode_returns_detections(xp):
    model = YOLOv1(grid_size=2, detections_per_img=3, score_thresh=0.0, **TINY).to(_device(xp))
    model.eval()
    with ts.no_grad():
        detections = model(_input(xp, (2, 3, 16, 16)))
    assert len(detections) == 2
    for det in detections:
        assert det["boxes"].shape == (3, 4) and det["boxes"].dtype == numpy.float32
        assert det["scores"].shape == (3,) and det["labels"].dtype == numpy.int64
        scores, boxes = _host(det["scores"]), _host(det["boxes"])
        assert numpy.all(numpy.diff(scores) <= 0)
        assert numpy.all((1 <= _host(det["labels"])) & (_host(det["labels"]) <= 3))
        assert numpy.all((boxes >= 0) & (boxes <= 16))


@pytest.mark.parametrize("Model", [YOLOv1, ClassLocNet])
def test_bad_input(xp, Model):
    options = {"grid_size": 2} if Model is YOLOv1 else {}
    model = Model(**options, **TINY).to(_device(xp))
    images = _input(xp, (2, 3, 16, 16))
    with pytest.raises(ValueError, match="targets is required"):
        model(images)
    with pytest.raises(ValueError, match="targets must be a list of 2 dicts"):
        model(images, SCENE[:1])
    with pytest.raises(ValueError, match=r"targets\[1\] must be a dict"):
        model(images, [SCENE[0], {"boxes": SCENE[0]["boxes"]}])
    for bad in (0, 4):
        with pytest.raises(ValueError, match=r"targets\[0\]\['labels'\] must be in 1..3"):
            model(images, _targets([[[0, 0, 4, 4]], []], [[bad], []]))
    with pytest.raises(ValueError, match=r"targets\[0\]\['boxes'\] must be a real \(M, 4\)"):
        model(images, [{"boxes": numpy.zeros((1, 5)), "labels": numpy.ones(1, "int64")}] * 2)
    with pytest.raises(ValueError, match=r"targets\[0\]\['labels'\] must be an int array"):
        model(images, [{"boxes": numpy.zeros((2, 4)), "labels": numpy.ones(1, "int64")}] * 2)
    with pytest.raises(ValueError, match="multiples of"):
        model(_input(xp, (2, 3, 18, 16)), SCENE)
    with pytest.raises(ValueError, match="channels"):
        model(_input(xp, (2, 1, 16, 16)), SCENE)
    with pytest.raises(ValueError, match="num_classes"):
        Model(num_classes=1)
    with pytest.raises(ValueError, match="depths"):
        Model(widths=(2, 4), depths=(1,))
    with pytest.raises(ValueError, match="score_thresh"):
        Model(score_thresh=-0.1)


def test_yolo_bad_options():
    with pytest.raises(ValueError, match="head must be one of"):
        YOLOv1(head="mlp")
    with pytest.raises(ValueError, match="grid_size"):
        YOLOv1(grid_size=0)
    with pytest.raises(ValueError, match="lambda_coord"):
        YOLOv1(lambda_coord=0)
    with pytest.raises(ValueError, match="multiples of 128"):
        YOLOv1().output_size(64, 64)


@pytest.mark.parametrize("name, options", [
    ("yolo", {"grid_size": 2, "boxes_per_cell": 1, "head": "fc", "fc_hidden": 3,
              "lambda_noobj": 0.25, "score_thresh": 0.2, "detections_per_img": 7, **TINY}),
    ("classloc", {"score_thresh": 0.3, "detections_per_img": 1, **TINY}),
])
def test_config_round_trip(name, options):
    model = build_model(name, num_classes=3, in_channels=2, **options)
    assert model.task == "detection" and model.num_classes == 3 and model.in_channels == 2
    config = json.loads(json.dumps(model.config()))
    rebuilt = build_model(name, **config)
    assert rebuilt.config() == model.config()
    assert type(rebuilt) is MODELS[name]
    rebuilt.load_state_dict(model.state_dict())
    images = _input(numpy, (2, 2, 8, 8))
    model.eval(), rebuilt.eval()
    with ts.no_grad():
        a, b = model(images), rebuilt(images)
    for da, db in zip(a, b):
        for key in ("boxes", "scores", "labels"):
            numpy.testing.assert_array_equal(da[key], db[key])


# ----- classification + localisation -----------------------------------------------------------
def test_single_object_targets_pick_the_largest(xp):
    boxes = [xp.asarray(numpy.asarray(b, "float32").reshape(-1, 4)) for b in
             [[[0, 0, 4, 4], [8, 4, 16, 16]], [], [[0, 0, 8, 2], [4, 4, 8, 8], [-4, 8, 4, 12]]]]
    labels = [xp.asarray(numpy.asarray(lab, "int64")) for lab in [[1, 3], [], [2, 1, 3]]]
    box, cls = single_object_targets(boxes, labels, (16, 32))
    # image 0: the 8 x 12 box; image 2: three areas 16, 16, 16 after clipping -> the first
    numpy.testing.assert_allclose(_host(box), [[12 / 32, 10 / 16, 8 / 32, 12 / 16], [0, 0, 0, 0],
                                               [4 / 32, 1 / 16, 8 / 32, 2 / 16]])
    assert _host(cls).tolist() == [2, -100, 1]
    with pytest.raises(ValueError, match="equal length"):
        single_object_targets(boxes, labels[:2], (16, 32))


def test_classloc_loss_and_detection_by_hand(xp):
    model = ClassLocNet(**TINY).to(_device(xp), "float64")
    images = _input(xp, (3, 3, 16, 16), dtype="float64")
    targets = _targets([[[2, 2, 10, 8]], [], [[0, 0, 6, 6], [4, 4, 16, 16]]], [[3], [], [1, 2]])
    losses = model(images, targets)
    logits, box = (_host(t) for t in model.predict(images))
    assert logits.shape == (3, 3) and box.shape == (3, 4)
    # images 0 and 2 have objects: (cx, cy, w, h) / 16 of (2, 2, 10, 8) and (4, 4, 16, 16)
    wanted = numpy.asarray([[6, 5, 8, 6], [10, 10, 12, 12]]) / 16
    labels = [2, 1]
    log_p = logits - numpy.log(numpy.exp(logits).sum(1, keepdims=True))
    ce = -sum(log_p[n, c] for n, c in zip([0, 2], labels)) / 2
    d = numpy.abs(box[[0, 2]] - wanted)
    beta = 1 / 9
    smooth = numpy.where(d < beta, 0.5 * d ** 2 / beta, d - 0.5 * beta).sum() / 2
    assert losses["loss_class"].item() == pytest.approx(ce, rel=1e-10)
    assert losses["loss_box"].item() == pytest.approx(smooth, rel=1e-10)

    model.eval()
    with ts.no_grad():
        detections = model(images)
        logits, box = (_host(t) for t in model.predict(images))
    p = numpy.exp(logits) / numpy.exp(logits).sum(1, keepdims=True)
    for n, det in enumerate(detections):
        cx, cy, w, h = box[n] * 16
        expected = numpy.clip([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 0, 16)
        numpy.testing.assert_allclose(_host(det["boxes"]), [expected], rtol=1e-6)
        assert _host(det["labels"]).tolist() == [p[n].argmax() + 1]
        assert float(det["scores"][0]) == pytest.approx(p[n].max(), rel=1e-6)
        assert det["scores"].dtype == numpy.float32 and det["labels"].dtype == numpy.int64


def test_classloc_gradcheck_through_the_whole_model(xp):
    """float64, w.r.t. the images: backbone, pooling, both heads and both losses."""
    init.manual_seed(0)
    model = ClassLocNet(widths=(3,), depths=(1,)).to(_device(xp), "float64")
    targets = _targets([[[1, 1, 5, 7]], [[2, 0, 8, 8]]], [[2], [3]])
    values = numpy.random.default_rng(2).random((2, 3, 8, 8))
    x = ts.tensor(xp.asarray(values), requires_grad=True)
    assert ts.gradcheck(lambda images: tuple(model(images, targets).values()), [x])


def test_classloc_eval_threshold_and_empty_input(xp):
    model = ClassLocNet(score_thresh=0.999, **TINY).to(_device(xp)).eval()
    with ts.no_grad():
        detections = model(_input(xp, (2, 3, 16, 16)))
    assert [d["boxes"].shape for d in detections] == [(0, 4), (0, 4)]
    model.train()
    losses = model(_input(xp, (2, 3, 16, 16)), [{"boxes": [], "labels": []}] * 2)
    assert losses["loss_class"].item() == 0.0 and losses["loss_box"].item() == 0.0
    assert model.output_size(16, 16) == (1, 1)


def test_registry_names_both_models():
    assert MODELS["yolo"] is YOLOv1 and MODELS["classloc"] is ClassLocNet
