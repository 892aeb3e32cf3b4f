"""The standing fuzz suite of the API layer: operators, boxes, autograd, optimisers.

One TABLE of bad inputs (``tests/badinput.py``'s format), each either a clear error that
names the argument (and the first bad index where there is one) or a documented correct
result, driven by one parametrised test. Then hypothesis strategies for box arrays, with
NaN, inf, inverted, zero-size and huge boxes, run through box_iou, nms, roi_align,
roi_pool and the box coder: each call either refuses with a ValueError naming the
argument, or returns a finite result of the right shape; valid boxes keep the documented
properties (IoU in [0, 1], symmetric, 1 with itself).
"""

from __future__ import annotations

import time

import numpy
import pytest
from badinput import Case, clear, correct, params, run_case
from hypothesis import given, settings
from hypothesis import strategies as st

import tinyseg as ts
from tinyseg import functional as F
from tinyseg import nn, optim
from tinyseg.anchors import BoxCoder
from tinyseg.backend import to_numpy
from tinyseg.boxes import batched_nms, box_convert, box_iou, nms, nms_by_image
from tinyseg.ops.roi import roi_align_forward, roi_align_naive, roi_pool_forward

NAN, INF = float("nan"), float("inf")
RNG = numpy.random.default_rng(0)
X = RNG.standard_normal((2, 3, 8, 8))  # features / images for the op cases
GOOD = numpy.array([[0.0, 0, 4, 4], [1, 1, 5, 6], [2, 0, 7, 3]])


def boxes_with(row, value, *, at=1, column=2):
    """GOOD with one coordinate replaced: the bad box is row ``at``."""
    b = GOOD.copy()
    b[at] = row if row is not None else b[at]
    if value is not None:
        b[at, column] = value
    return b


def x_tensor():
    return ts.tensor(X, requires_grad=True)


def backward_twice(retain):
    x = ts.tensor(numpy.array([1.0, 2.0]), requires_grad=True)
    loss = (x * x).sum()
    loss.backward(retain_graph=retain)
    loss.backward()
    return x.grad


def bn_eval(running_var):
    return F.batch_norm(ts.tensor(X), numpy.zeros(3), numpy.asarray(running_var),
                        training=False)


def bn_load(running_var):
    layer = nn.BatchNorm2d(3)
    state = {k: to_numpy(v) for k, v in layer.state_dict().items()}
    state["running_var"] = numpy.asarray(running_var)
    return layer.load_state_dict(state)


def param():
    return nn.Parameter(numpy.ones(3))


def ce(weight):
    logits = RNG.standard_normal((4, 3))
    return F.cross_entropy(ts.tensor(logits), numpy.array([0, 1, 2, 1]), weight=weight)


def roi(boxes, **kw):
    return F.roi_align(ts.tensor(X), numpy.asarray(boxes, dtype=float), 2, **kw).data


def one_pixel_box_matches_inverted():
    inverted = roi([[0, 3.0, 2, 1, 1]])  # x2 < x1, y2 < y1: clamped to 1 pixel from (3, 2)
    return numpy.allclose(inverted, roi([[0, 3.0, 2, 4, 3]]))


P = param()
Q = param()
TABLE = [
    # ----- operators -----
    Case("conv2d-3d-input", lambda: F.conv2d(ts.tensor(X[0]), numpy.ones((4, 3, 3, 3))),
         clear(ValueError, r"\bx\b")),
    Case("conv2d-int-input", lambda: F.conv2d(ts.tensor(X.astype(int)), numpy.ones((4, 3, 3, 3))),
         clear(TypeError, r"\bx\b")),
    Case("conv2d-negative-padding",
         lambda: F.conv2d(ts.tensor(X), numpy.ones((4, 3, 3, 3)), padding=-1),
         clear(ValueError, "padding")),
    Case("conv2d-zero-stride", lambda: F.conv2d(ts.tensor(X), numpy.ones((4, 3, 3, 3)), stride=0),
         clear(ValueError, "stride")),
    Case("conv2d-channel-mismatch", lambda: F.conv2d(ts.tensor(X), numpy.ones((4, 2, 3, 3))),
         clear(ValueError, "weight")),
    Case("max-pool-zero-kernel", lambda: F.max_pool2d(ts.tensor(X), 0),
         clear(ValueError, "kernel_size")),
    Case("avg-pool-negative-padding", lambda: F.avg_pool2d(ts.tensor(X), 2, padding=-1),
         clear(ValueError, "padding")),
    Case("max-unpool-indices-shape",
         lambda: F.max_unpool2d(ts.tensor(X[:, :, :4, :4]), numpy.zeros((2, 3, 3, 3), int), 2),
         clear(ValueError, "indices")),
    Case("interpolate-negative-size", lambda: F.interpolate(ts.tensor(X), size=-2),
         clear(ValueError, "size")),
    Case("interpolate-bad-mode", lambda: F.interpolate(ts.tensor(X), size=4, mode="cubic"),
         clear(ValueError, "mode")),
    Case("softmax-no-dim", lambda: F.softmax(ts.tensor(X)), clear((TypeError, ValueError), "dim")),
    Case("roi-align-zero-output",
         lambda: F.roi_align(ts.tensor(X), numpy.array([[0.0, 0, 0, 4, 4]]), 0),
         clear(ValueError, "output_size")),
    Case("roi-align-negative-scale",
         lambda: F.roi_align(ts.tensor(X), numpy.array([[0.0, 0, 0, 4, 4]]), 2, spatial_scale=-1),
         clear(ValueError, "spatial_scale")),
    Case("roi-align-nan-box", lambda: roi([[0, 0, 0, 4, 4], [1, 0, NAN, 4, 4]]),
         clear(ValueError, r"boxes must be finite.*row 1")),
    Case("roi-align-inf-box", lambda: roi([[0, 0, 0, INF, 4]]),
         clear(ValueError, r"boxes must be finite.*row 0")),
    Case("roi-align-batch-index-out-of-range", lambda: roi([[2, 0, 0, 4, 4]]),
         clear(ValueError, r"batch index.*row 0")),
    Case("roi-align-huge-box", lambda: roi([[0, 0, 0, 1e9, 1e9]]),
         correct(lambda out: out.shape == (1, 3, 2, 2) and numpy.isfinite(out).all())),
    Case("roi-align-inverted-box-not-aligned", one_pixel_box_matches_inverted, correct(bool)),
    Case("roi-align-inverted-box-aligned", lambda: roi([[0, 5.0, 5, 1, 1]], aligned=True),
         correct(lambda out: out.shape == (1, 3, 2, 2) and not out.any())),
    Case("roi-pool-nan-box",
         lambda: F.roi_pool(ts.tensor(X), numpy.array([[0, NAN, 0, 4, 4]]), 2),
         clear(ValueError, r"boxes must be finite.*row 0")),
    Case("cross-entropy-negative-weight", lambda: ce(numpy.array([1.0, -1.0, 1.0])),
         clear(ValueError, r"weight.*>= 0.*class 1")),
    Case("cross-entropy-nan-weight", lambda: ce(numpy.array([1.0, 1.0, NAN])),
         clear(ValueError, r"weight.*class 2")),
    Case("cross-entropy-label-out-of-range",
         lambda: F.cross_entropy(ts.tensor(X[:, :, 0, 0]), numpy.array([0, 3])),
         clear(ValueError, "target")),
    Case("cross-entropy-float-target",
         lambda: F.cross_entropy(ts.tensor(X[:, :, 0, 0]), numpy.array([0.0, 1.0])),
         clear(TypeError, "target")),
    Case("smooth-l1-negative-beta",
         lambda: F.smooth_l1_loss(ts.tensor(X), ts.tensor(X), beta=-1.0),
         clear(ValueError, "beta")),
    Case("batch-norm-eval-negative-running-var", lambda: bn_eval([1.0, -0.5, 1.0]),
         clear(ValueError, r"running_var.*>= 0.*channel 1")),
    Case("batch-norm-load-negative-running-var", lambda: bn_load([1.0, 1.0, -2.0]),
         clear(ValueError, r"running_var.*channel 2")),
    Case("batch-norm-running-mean-shape",
         lambda: F.batch_norm(ts.tensor(X), numpy.zeros(2), numpy.ones(3), training=False),
         clear(ValueError, "running_mean")),
    # ----- boxes -----
    Case("box-iou-nan", lambda: box_iou(boxes_with(None, NAN), GOOD),
         clear(ValueError, r"boxes1 must be finite.*index \[1, 2\]")),
    Case("box-iou-inf", lambda: box_iou(GOOD, boxes_with(None, -INF, at=2, column=0)),
         clear(ValueError, r"boxes2 must be finite.*index \[2, 0\]")),
    Case("box-iou-inverted", lambda: box_iou(boxes_with([5.0, 0, 1, 4], None), GOOD),
         clear(ValueError, r"boxes1.*x1 <= x2.*index 1 \(an inverted box\)")),
    Case("box-iou-zero-size", lambda: box_iou(numpy.array([[2.0, 2, 2, 2], [0, 0, 0, 5]]), GOOD),
         correct(lambda iou: iou.shape == (2, 3) and not iou.any())),
    Case("box-iou-huge", lambda: box_iou(numpy.array([[0.0, 0, 1e30, 1e30]]),
                                         numpy.array([[0.0, 0, 1e30, 1e30], [0, 0, 1, 1]])),
         correct(lambda iou: iou[0, 0] == 1 and 0 <= iou[0, 1] < 1e-50)),
    Case("box-iou-wrong-shape", lambda: box_iou(GOOD[:, :3], GOOD),
         clear(ValueError, r"boxes1 must have shape \(N, 4\)")),
    Case("nms-nan-score", lambda: nms(GOOD, numpy.array([0.9, NAN, 0.1]), 0.5),
         clear(ValueError, r"scores must be finite.*index \[1\]")),
    Case("nms-nan-box", lambda: nms(boxes_with(None, NAN, at=2), numpy.ones(3), 0.5),
         clear(ValueError, r"boxes must be finite.*index \[2, 2\]")),
    Case("nms-inverted-box", lambda: nms(boxes_with([0.0, 5, 4, 1], None), numpy.ones(3), 0.5),
         clear(ValueError, r"boxes.*index 1 \(an inverted box\)")),
    Case("batched-nms-inf-box",
         lambda: batched_nms(boxes_with(None, INF, at=0), numpy.ones(3), numpy.zeros(3, int), 0.5),
         clear(ValueError, r"boxes must be finite.*index \[0, 2\]")),
    Case("nms-by-image-nan-score",
         lambda: nms_by_image(GOOD, numpy.array([1.0, 1.0, NAN]), None, numpy.array([0, 1, 1]),
                              2, 0.5),
         clear(ValueError, r"scores must be finite.*index \[2\]")),
    Case("nms-zero-size-boxes", lambda: nms(numpy.array([[1.0, 1, 1, 1]] * 3), numpy.ones(3), 0.0),
         correct(lambda kept: kept.tolist() == [0, 1, 2])),  # IoU 0 suppresses nothing
    Case("coder-encode-zero-width-gt",
         lambda: BoxCoder().encode(boxes_with([3.0, 0, 3, 4], None), GOOD),
         clear(ValueError, r"gt_boxes must have x2 > x1.*index 1")),
    Case("coder-encode-nan-proposal",
         lambda: BoxCoder().encode(GOOD, boxes_with(None, NAN, at=0)),
         clear(ValueError, r"proposals must be finite.*index \[0, 2\]")),
    Case("coder-decode-nan-deltas",
         lambda: BoxCoder().decode(numpy.array([[0.0, NAN, 0, 0]] * 3), GOOD),
         clear(ValueError, r"deltas must be finite.*index \[0, 1\]")),
    Case("coder-decode-inverted-boxes",
         lambda: BoxCoder().decode(numpy.zeros((3, 4)), boxes_with([4.0, 0, 0, 4], None, at=2)),
         clear(ValueError, r"boxes.*index 2 \(an inverted box\)")),
    Case("box-convert-bad-format", lambda: box_convert(GOOD, "xyxy", "yxyx"),
         clear(ValueError, "out_fmt")),
    Case("box-convert-strings", lambda: box_convert(numpy.array([["a", "b", "c", "d"]]), "xyxy",
                                                     "xywh"),
         clear(TypeError, "boxes")),
    Case("box-convert-keeps-nan-in-place",  # a format change: a NaN stays where it was
         lambda: box_convert(numpy.array([[0.0, NAN, 2, 3]]), "xyxy", "xywh"),
         correct(lambda b: numpy.isnan(b).tolist() == [[False, True, False, True]])),
    # ----- autograd -----
    Case("backward-twice", lambda: backward_twice(False),
         clear(RuntimeError, r"second time.*retain_graph=True")),
    Case("backward-twice-retain-graph", lambda: backward_twice(True),
         correct(lambda g: g.tolist() == [4.0, 8.0])),  # two passes, asked for: 2 * 2x
    Case("backward-retain-graph-not-bool",
         lambda: (x_tensor() * 2).sum().backward(retain_graph="yes"),
         clear(TypeError, "retain_graph")),
    Case("backward-non-scalar-without-grad", lambda: (x_tensor() * 2).backward(),
         clear(RuntimeError, r"grad.*scalar")),
    Case("tensor-of-objects", lambda: ts.tensor(numpy.array([1, "a", None], dtype=object)),
         clear(TypeError, r"data must hold numbers.*object")),
    Case("tensor-of-strings", lambda: ts.tensor(numpy.array(["1", "2"])),
         clear(TypeError, r"data must hold numbers")),
    # ----- optimisers -----
    Case("sgd-duplicate-params", lambda: optim.SGD([P, P], lr=0.1),
         clear(ValueError, r"params\[1\] is the same parameter as params\[0\]")),
    Case("adam-duplicate-params", lambda: optim.Adam([P, Q, P]),
         clear(ValueError, r"params\[2\] is the same parameter as params\[0\]")),
    Case("adamw-duplicate-params", lambda: optim.AdamW([Q, Q]),
         clear(ValueError, r"params\[1\]")),
    Case("sgd-negative-lr", lambda: optim.SGD([P], lr=-0.1), clear(ValueError, r"\blr\b")),
    Case("sgd-empty-params", lambda: optim.SGD([], lr=0.1), clear(ValueError, "params")),
]


@pytest.mark.parametrize("case", params(TABLE))
def test_bad_input(case):
    run_case(case)


# ----- the huge box and RoIAlign's sample window ------------------------------------------


def test_roi_align_on_a_huge_box_returns_in_well_under_a_second():
    x = ts.tensor(RNG.standard_normal((1, 4, 16, 16)))
    start = time.perf_counter()
    for boxes in ([[0, 0, 0, 1e9, 1e9]], [[0, -1e9, -1e9, 1e9, 1e9]], [[0, 0, 0, 1e15, 3]]):
        out = F.roi_align(x, numpy.array(boxes), 2).data
        assert out.shape == (1, 4, 2, 2) and numpy.isfinite(out).all()
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 2, 40])
def test_the_sample_window_keeps_every_value_of_the_full_grid(xp, aligned, sampling_ratio):
    """Boxes far larger than the map (the window is shorter than the grid) match the naive."""
    x = RNG.standard_normal((2, 2, 6, 7))
    rois = numpy.array([[0, -40, -30, 90, 70], [1, 3, 2, 200, 5], [0, -100, 1, 2, 3],
                        [1, 1, 1, 3, 4], [0, 50, 50, -20, -20], [1, 5.5, -60, 6.25, 120]])
    expected = roi_align_naive(x, rois, (2, 3), 0.5, sampling_ratio, aligned)
    out, _ = roi_align_forward(xp.asarray(x), xp.asarray(rois), (2, 3), 0.5, sampling_ratio,
                               aligned)
    numpy.testing.assert_allclose(to_numpy(out), expected, rtol=1e-12, atol=1e-14)


def test_bad_boxes_are_refused_on_the_device_too(xp):
    boxes = xp.asarray(boxes_with(None, NAN, at=2))
    with pytest.raises(ValueError, match=r"boxes must be finite.*index \[2, 2\]"):
        nms(boxes, xp.ones(3), 0.5)
    with pytest.raises(ValueError, match=r"scores must be finite.*index \[0\]"):
        nms_by_image(xp.asarray(GOOD), xp.asarray([NAN, 1, 1]), None, xp.asarray([0, 0, 1]),
                     2, 0.5)
    with pytest.raises(ValueError, match=r"boxes must be finite.*row 0"):
        roi_align_forward(xp.asarray(X), xp.asarray([[0, NAN, 0, 4, 4]]), 2)
    with pytest.raises(ValueError, match=r"boxes must be finite.*row 0"):
        roi_pool_forward(xp.asarray(X), xp.asarray([[0, 0, 0, 4, INF]]), 2)
    with pytest.raises(ValueError, match=r"boxes1 must be finite"):
        box_iou(boxes, xp.asarray(GOOD))


# ----- hypothesis: box arrays with every kind of bad box -----------------------------------

coordinate = st.floats(-50, 50, allow_nan=False)
size = st.floats(0.5, 40)
valid_box = st.tuples(coordinate, coordinate, size, size).map(
    lambda b: (b[0], b[1], b[0] + b[2], b[1] + b[3]))
zero_size_box = st.tuples(coordinate, coordinate, st.booleans()).map(
    lambda b: (b[0], b[1], b[0], b[1] + 5) if b[2] else (b[0], b[1], b[0], b[1]))
inverted_box = valid_box.map(lambda b: (b[2], b[1], b[0], b[3]) if b[2] > b[0] else
                             (b[0], b[3], b[2], b[1]))
huge_box = st.tuples(st.floats(-1e12, -1e6), st.floats(1e6, 1e12)).map(
    lambda b: (b[0], b[0], b[1], b[1]))
non_finite_box = st.tuples(valid_box, st.integers(0, 3), st.sampled_from([NAN, INF, -INF])).map(
    lambda b: tuple(b[2] if i == b[1] else v for i, v in enumerate(b[0])))
any_box = st.one_of(valid_box, zero_size_box, inverted_box, huge_box, non_finite_box)


def box_arrays(boxes=any_box, min_size=0):
    return st.lists(boxes, min_size=min_size, max_size=6).map(
        lambda rows: numpy.array(rows, dtype=float).reshape(-1, 4))


def is_valid(b):
    return bool(numpy.isfinite(b).all() and (b[:, 2] >= b[:, 0]).all()
                and (b[:, 3] >= b[:, 1]).all())


FUZZ = settings(max_examples=50, deadline=None)


@FUZZ
@given(box_arrays(), box_arrays())
def test_box_iou_refuses_bad_boxes_by_name_or_keeps_its_properties(a, b):
    if not (is_valid(a) and is_valid(b)):
        name = "boxes1" if not is_valid(a) else "boxes2"
        with pytest.raises(ValueError, match=name):
            box_iou(a, b)
        return
    iou = box_iou(a, b)
    assert iou.shape == (a.shape[0], b.shape[0]) and numpy.isfinite(iou).all()
    assert ((iou >= 0) & (iou <= 1 + 1e-12)).all()
    numpy.testing.assert_allclose(box_iou(b, a), iou.T)


@FUZZ
@given(box_arrays(valid_box, min_size=1))
def test_a_box_with_area_has_iou_one_with_itself(a):
    numpy.testing.assert_allclose(numpy.diag(box_iou(a, a)), 1.0)


@FUZZ
@given(box_arrays(), st.data())
def test_nms_refuses_bad_boxes_or_scores_by_name_or_returns_a_ranking(boxes, data):
    n = boxes.shape[0]
    scores = numpy.array(data.draw(st.lists(
        st.one_of(st.floats(0, 1), st.just(NAN)), min_size=n, max_size=n)), dtype=float)
    if not (is_valid(boxes) and numpy.isfinite(scores).all()):
        with pytest.raises(ValueError, match="scores" if not numpy.isfinite(scores).all()
                           else "boxes"):
            nms(boxes, scores, 0.5)
        return
    kept = nms(boxes, scores, 0.5)
    assert kept.dtype == numpy.int64 and len(set(kept.tolist())) == kept.size <= n
    assert (numpy.diff(scores[kept]) <= 0).all()


@FUZZ
@given(box_arrays(min_size=1), st.booleans())
def test_roi_ops_refuse_non_finite_boxes_or_give_a_finite_map(boxes, aligned):
    rois = numpy.concatenate([numpy.zeros((boxes.shape[0], 1)), boxes], axis=1)
    x = X[:1]
    if not numpy.isfinite(boxes).all():  # inverted boxes are fine: torchvision's rule
        for op in (lambda: roi_align_forward(x, rois, 2, 0.25, -1, aligned),
                   lambda: roi_pool_forward(x, rois, 2, 0.25)):
            with pytest.raises(ValueError, match="boxes must be finite"):
                op()
        return
    for out, _ in (roi_align_forward(x, rois, 2, 0.25, -1, aligned),
                   roi_pool_forward(x, rois, 2, 0.25)):
        assert out.shape == (boxes.shape[0], 3, 2, 2) and numpy.isfinite(out).all()


@FUZZ
@given(box_arrays(min_size=1), st.data())
def test_the_box_coder_refuses_bad_boxes_by_name_or_round_trips(boxes, data):
    n = boxes.shape[0]
    gt = numpy.array(data.draw(st.lists(valid_box, min_size=n, max_size=n)), dtype=float)
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    with_area = is_valid(boxes) and ((boxes[:, 2] > boxes[:, 0])
                                     & (boxes[:, 3] > boxes[:, 1])).all()
    if not with_area:
        with pytest.raises(ValueError, match="proposals"):
            coder.encode(gt, boxes)
        if not is_valid(boxes):
            with pytest.raises(ValueError, match="boxes"):
                coder.decode(numpy.zeros((n, 4)), boxes)
        return
    deltas = coder.encode(gt, boxes)
    assert deltas.shape == (n, 4) and numpy.isfinite(deltas).all()
    decoded = coder.decode(deltas, boxes)
    assert decoded.shape == (n, 4) and numpy.isfinite(decoded).all()
    unclipped = (deltas[:, 2:] / 5 < coder.bbox_xform_clip).all(axis=1)  # exact inverses
    numpy.testing.assert_allclose(decoded[unclipped], gt[unclipped], rtol=1e-6,
                                  atol=1e-6 * (1 + numpy.abs(boxes).max()))
