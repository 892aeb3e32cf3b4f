"""tinyseg.boxes (formats, IoU/GIoU, NMS) and tinyseg.anchors (anchors, BoxCoder, Matcher, sampler).

Each function is pinned to the conventions of docs/conventions.md (section "Boxes") and
to examples worked by hand; the fast NMS is tied to the plain-loop ``nms_naive`` on random inputs
(ties and exact-threshold overlaps included); edge cases (no boxes, zero-area
boxes) and bad input that names the argument. Optional oracle tests compare
with torchvision where it is installed.
"""

from __future__ import annotations

import math

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st
from opcheck import FEW

from tinyseg import anchors as anchors_module
from tinyseg import backend
from tinyseg import boxes as boxes_module
from tinyseg.anchors import (
    BELOW_LOW_THRESHOLD,
    BETWEEN_THRESHOLDS,
    DEFAULT_BBOX_XFORM_CLIP,
    BalancedPositiveNegativeSampler,
    BoxCoder,
    Matcher,
    anchor_grid,
    cell_anchors,
)
from tinyseg.backend import to_numpy
from tinyseg.boxes import (
    batched_nms,
    box_area,
    box_convert,
    box_iou,
    clip_boxes_to_image,
    generalized_box_iou,
    nms,
    nms_by_image,
    nms_naive,
    remove_small_boxes,
)


def device_of(xp):
    return "cpu" if xp is numpy else "gpu"


def random_boxes(rng, n, *, extent=40.0, max_side=20.0, integer=False):
    """n valid xyxy boxes; integer corners make exact ties and exact-threshold overlaps likely."""
    if integer:
        corner = rng.integers(0, int(extent), size=(n, 2)).astype(numpy.float64)
        side = rng.integers(0, int(max_side), size=(n, 2)).astype(numpy.float64)
    else:
        corner = rng.uniform(0, extent, size=(n, 2))
        side = rng.uniform(0, max_side, size=(n, 2))
    return numpy.concatenate([corner, corner + side], axis=1)


def iou_by_hand(a, b):
    """One pair, the formula written out in plain Python (0 for an empty union)."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


# ----- formats and areas ------------------------------------------------------------------


def test_box_convert_by_hand(xp):
    xyxy = xp.asarray([[1.0, 2.0, 5.0, 10.0]])
    numpy.testing.assert_array_equal(to_numpy(box_convert(xyxy, "xyxy", "xywh")), [[1, 2, 4, 8]])
    numpy.testing.assert_array_equal(to_numpy(box_convert(xyxy, "xyxy", "cxcywh")), [[3, 6, 4, 8]])
    numpy.testing.assert_array_equal(
        to_numpy(box_convert(xp.asarray([[3.0, 6.0, 4.0, 8.0]]), "cxcywh", "xyxy")), [[1, 2, 5, 10]]
    )
    numpy.testing.assert_array_equal(
        to_numpy(box_convert(xp.asarray([[1.0, 2.0, 4.0, 8.0]]), "xywh", "cxcywh")), [[3, 6, 4, 8]]
    )


@pytest.mark.parametrize("fmt_a", ["xyxy", "xywh", "cxcywh"])
@pytest.mark.parametrize("fmt_b", ["xyxy", "xywh", "cxcywh"])
def test_box_convert_round_trip(xp, fmt_a, fmt_b):
    boxes = xp.asarray(random_boxes(numpy.random.default_rng(1), 7))
    there = box_convert(boxes, "xyxy", fmt_a)
    back = box_convert(box_convert(there, fmt_a, fmt_b), fmt_b, "xyxy")
    numpy.testing.assert_allclose(to_numpy(back), to_numpy(boxes), rtol=1e-12, atol=1e-12)
    assert box_convert(boxes, "xyxy", "xyxy") is not boxes  # a copy, never an alias


def test_box_convert_keeps_float32_and_promotes_integers(xp):
    f32 = xp.asarray([[0, 0, 3, 3]], dtype=xp.float32)
    assert box_convert(f32, "xyxy", "cxcywh").dtype == xp.float32
    ints = xp.asarray([[0, 0, 3, 3]])
    out = box_convert(ints, "xyxy", "cxcywh")
    assert out.dtype == xp.float64
    numpy.testing.assert_array_equal(to_numpy(out), [[1.5, 1.5, 3, 3]])


def test_box_area(xp):
    boxes = xp.asarray([[0.0, 0.0, 2.0, 3.0], [1.0, 1.0, 1.0, 5.0], [-1.0, -2.0, 1.0, 2.0]])
    numpy.testing.assert_array_equal(to_numpy(box_area(boxes)), [6, 0, 8])  # no +1


# ----- IoU and GIoU ------------------------------------------------------------------------


def test_box_iou_unit_offset_is_one_seventh(xp):
    a = xp.asarray([[0.0, 0.0, 2.0, 2.0]])
    b = xp.asarray([[1.0, 1.0, 3.0, 3.0]])
    assert to_numpy(box_iou(a, b))[0, 0] == pytest.approx(1 / 7)


def test_box_iou_by_hand_cases(xp):
    a = xp.asarray([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 4.0, 4.0]])
    b = xp.asarray([
        [0.0, 0.0, 2.0, 2.0],  # identical to a[0]
        [2.0, 0.0, 4.0, 2.0],  # shares an edge with a[0]: no area in common
        [5.0, 5.0, 6.0, 6.0],  # far away
        [1.0, 1.0, 2.0, 2.0],  # inside both
    ])
    iou = to_numpy(box_iou(a, b))
    assert iou.shape == (2, 4)
    numpy.testing.assert_allclose(iou, [[1, 0, 0, 1 / 4], [4 / 16, 4 / 16, 0, 1 / 16]])


def test_box_iou_matches_the_formula_and_is_symmetric(xp):
    rng = numpy.random.default_rng(2)
    a, b = random_boxes(rng, 9), random_boxes(rng, 6)
    iou = to_numpy(box_iou(xp.asarray(a), xp.asarray(b)))
    expected = [[iou_by_hand(p, q) for q in b] for p in a]
    numpy.testing.assert_allclose(iou, expected, rtol=1e-12)
    numpy.testing.assert_allclose(to_numpy(box_iou(xp.asarray(b), xp.asarray(a))), iou.T)
    assert ((iou >= 0) & (iou <= 1)).all()


def test_box_iou_float32_stays_float32(xp):
    a = xp.asarray(random_boxes(numpy.random.default_rng(3), 4), dtype=xp.float32)
    assert box_iou(a, a).dtype == xp.float32
    numpy.testing.assert_allclose(numpy.diag(to_numpy(box_iou(a, a))), 1.0, rtol=1e-6)


def test_degenerate_boxes_give_zero_not_nan(xp):
    point = xp.asarray([[1.0, 1.0, 1.0, 1.0]])
    line = xp.asarray([[0.0, 1.0, 4.0, 1.0]])
    square = xp.asarray([[0.0, 0.0, 2.0, 2.0]])
    for a, b in [(point, point), (point, line), (line, line), (point, square), (line, square)]:
        iou = to_numpy(box_iou(a, b))
        giou = to_numpy(generalized_box_iou(a, b))
        assert not numpy.isnan(iou).any() and not numpy.isnan(giou).any()
        assert iou[0, 0] == 0
    # a zero-area box inside a square: IoU 0, and the enclosing box is the square
    assert to_numpy(generalized_box_iou(point, square))[0, 0] == pytest.approx(-(4 - 4) / 4)
    # the same point twice: enclosing area 0 too, so GIoU is taken as IoU = 0
    assert to_numpy(generalized_box_iou(point, point))[0, 0] == 0


def test_empty_box_sets(xp):
    none = xp.zeros((0, 4))
    some = xp.asarray([[0.0, 0.0, 1.0, 1.0]])
    assert box_iou(none, some).shape == (0, 1)
    assert box_iou(some, none).shape == (1, 0)
    assert generalized_box_iou(none, none).shape == (0, 0)
    assert box_area(none).shape == (0,)
    assert box_convert(none, "xyxy", "cxcywh").shape == (0, 4)


def test_giou_by_hand(xp):
    # disjoint unit squares one apart: IoU 0, union 2, enclosing box 3 -> -1/3
    a = xp.asarray([[0.0, 0.0, 1.0, 1.0]])
    b = xp.asarray([[2.0, 0.0, 3.0, 1.0]])
    assert to_numpy(generalized_box_iou(a, b))[0, 0] == pytest.approx(-1 / 3)
    # unit offset: IoU 1/7, union 7, enclosing 9 -> 1/7 - 2/9 = -5/63
    c = xp.asarray([[0.0, 0.0, 2.0, 2.0]])
    d = xp.asarray([[1.0, 1.0, 3.0, 3.0]])
    assert to_numpy(generalized_box_iou(c, d))[0, 0] == pytest.approx(-5 / 63)
    assert to_numpy(generalized_box_iou(c, c))[0, 0] == pytest.approx(1.0)


def test_giou_bounds(xp):
    rng = numpy.random.default_rng(4)
    a = xp.asarray(random_boxes(rng, 12, extent=200.0))
    b = xp.asarray(random_boxes(rng, 10, extent=200.0))
    giou, iou = to_numpy(generalized_box_iou(a, b)), to_numpy(box_iou(a, b))
    assert (giou <= iou + 1e-12).all()
    assert (giou > -1).all() and (giou <= 1).all()
    # with no overlap, GIoU is -(empty share of the enclosing box)
    assert (giou[iou == 0] <= 0).all()


# ----- NMS -----------------------------------------------------------------------------------


def test_nms_by_hand(xp):
    boxes = xp.asarray([
        [0.0, 0.0, 10.0, 10.0],
        [1.0, 1.0, 11.0, 11.0],  # IoU 81/119 = 0.68 with box 0
        [20.0, 20.0, 30.0, 30.0],
        [0.0, 0.0, 10.0, 9.0],  # IoU 0.9 with box 0
    ])
    scores = xp.asarray([0.9, 0.8, 0.7, 0.95])
    keep = nms(boxes, scores, 0.5)
    assert keep.dtype == xp.int64
    # box 3 is best; it drops 0 (0.9) and 1 (IoU 72/118 = 0.61); 2 is far away
    numpy.testing.assert_array_equal(to_numpy(keep), [3, 2])
    numpy.testing.assert_array_equal(to_numpy(nms(boxes, scores, 0.7)), [3, 1, 2])
    numpy.testing.assert_array_equal(to_numpy(nms(boxes, scores, 0.95)), [3, 0, 1, 2])


def test_nms_suppression_is_strictly_greater(xp):
    # IoU exactly 1/2: intersection 1, union 2
    boxes = xp.asarray([[0.0, 0.0, 2.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
    scores = xp.asarray([0.9, 0.8])
    assert to_numpy(box_iou(boxes[:1], boxes[1:]))[0, 0] == 0.5
    numpy.testing.assert_array_equal(to_numpy(nms(boxes, scores, 0.5)), [0, 1])
    numpy.testing.assert_array_equal(to_numpy(nms(boxes, scores, 0.49)), [0])
    # identical boxes (IoU 1) survive only a threshold of 1
    same = xp.asarray([[0.0, 0.0, 1.0, 1.0]] * 2)
    numpy.testing.assert_array_equal(to_numpy(nms(same, scores, 1.0)), [0, 1])
    numpy.testing.assert_array_equal(to_numpy(nms(same, scores, 0.99)), [0])
    # at threshold 0, boxes that merely touch (IoU 0) both survive
    touching = xp.asarray([[0.0, 0.0, 1.0, 1.0], [1.0, 0.0, 2.0, 1.0]])
    numpy.testing.assert_array_equal(to_numpy(nms(touching, scores, 0.0)), [0, 1])


def test_nms_ties_keep_input_order(xp):
    # equal scores: a stable sort, so the lower index is "higher" and wins
    boxes = xp.asarray([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.5], [50.0, 50.0, 60.0, 60.0]])
    scores = xp.asarray([0.5, 0.5, 0.5])
    numpy.testing.assert_array_equal(to_numpy(nms(boxes, scores, 0.5)), [0, 2])
    numpy.testing.assert_array_equal(to_numpy(nms(boxes[::-1].copy(), scores, 0.5)), [0, 1])
    # disjoint boxes with ties come back in index order within a score
    far = xp.asarray([[10.0 * i, 0.0, 10.0 * i + 5, 5.0] for i in range(5)])
    tied = xp.asarray([0.2, 0.7, 0.2, 0.7, 0.2])
    numpy.testing.assert_array_equal(to_numpy(nms(far, tied, 0.5)), [1, 3, 0, 2, 4])


def test_nms_edge_cases(xp):
    empty = nms(xp.zeros((0, 4)), xp.zeros(0), 0.5)
    assert empty.shape == (0,) and empty.dtype == xp.int64
    one = nms(xp.asarray([[0.0, 0.0, 1.0, 1.0]]), xp.asarray([0.3]), 0.5)
    numpy.testing.assert_array_equal(to_numpy(one), [0])
    # zero-area boxes never suppress anything (IoU 0)
    points = xp.asarray([[1.0, 1.0, 1.0, 1.0]] * 3)
    numpy.testing.assert_array_equal(to_numpy(nms(points, xp.asarray([0.1, 0.3, 0.2]), 0.0)),
                                     [1, 2, 0])
    # integer scores and boxes are accepted
    ints = xp.asarray([[0, 0, 10, 10], [0, 0, 10, 9]])
    numpy.testing.assert_array_equal(to_numpy(nms(ints, xp.asarray([1, 2]), 0.5)), [1])


@FEW
@given(
    n=st.integers(0, 40),
    seed=st.integers(0, 2**32 - 1),
    threshold=st.sampled_from([0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0]),
    integer=st.booleans(),
    tied=st.booleans(),
)
def test_nms_matches_naive(xp, n, seed, threshold, integer, tied):
    rng = numpy.random.default_rng(seed)
    boxes = xp.asarray(random_boxes(rng, n, integer=integer))
    scores = rng.integers(0, 4, size=n) / 4 if tied else rng.random(n)
    scores = xp.asarray(scores)
    fast = to_numpy(nms(boxes, scores, threshold))
    slow = to_numpy(nms_naive(boxes, scores, threshold))
    numpy.testing.assert_array_equal(fast, slow)
    # by decreasing score, and no two kept boxes overlap by more than the threshold
    kept_scores = to_numpy(scores)[fast]
    assert (numpy.diff(kept_scores) <= 0).all()
    kept = boxes[xp.asarray(fast)]
    iou = to_numpy(box_iou(kept, kept))
    assert (iou[numpy.triu_indices(len(fast), 1)] <= threshold).all()


def test_nms_float32(xp):
    rng = numpy.random.default_rng(5)
    boxes = xp.asarray(random_boxes(rng, 60), dtype=xp.float32)
    scores = xp.asarray(rng.random(60), dtype=xp.float32)
    numpy.testing.assert_array_equal(to_numpy(nms(boxes, scores, 0.4)),
                                     to_numpy(nms_naive(boxes, scores, 0.4)))


def per_class_nms(boxes, scores, idxs, threshold):
    """batched NMS by its definition: nms per class, merged by (score desc, index)."""
    boxes, scores, idxs = (to_numpy(a) for a in (boxes, scores, idxs))
    kept = []
    for c in numpy.unique(idxs):
        members = numpy.nonzero(idxs == c)[0]
        kept.extend(members[to_numpy(nms(boxes[members], scores[members], threshold))])
    kept = numpy.asarray(kept, dtype=numpy.int64)
    return kept[numpy.lexsort((kept, -scores[kept]))]


@FEW
@given(
    n=st.integers(0, 40),
    classes=st.integers(1, 4),
    seed=st.integers(0, 2**32 - 1),
    threshold=st.sampled_from([0.0, 0.3, 0.5, 0.7]),
    tied=st.booleans(),
)
def test_batched_nms_is_nms_per_class(xp, n, classes, seed, threshold, tied):
    rng = numpy.random.default_rng(seed)
    boxes = random_boxes(rng, n, integer=True) - 10.0  # negative coordinates too
    scores = rng.integers(0, 3, size=n) / 3 if tied else rng.random(n)
    idxs = rng.integers(0, classes, size=n)
    keep = batched_nms(xp.asarray(boxes), xp.asarray(scores), xp.asarray(idxs), threshold)
    assert keep.dtype == xp.int64
    numpy.testing.assert_array_equal(to_numpy(keep), per_class_nms(boxes, scores, idxs, threshold))


def test_batched_nms_other_classes_do_not_suppress(xp):
    boxes = xp.asarray([[0.0, 0.0, 10.0, 10.0]] * 3)
    scores = xp.asarray([0.9, 0.8, 0.7])
    numpy.testing.assert_array_equal(
        to_numpy(batched_nms(boxes, scores, xp.asarray([0, 1, 0]), 0.5)), [0, 1]
    )
    numpy.testing.assert_array_equal(
        to_numpy(batched_nms(boxes, scores, xp.asarray([0, 0, 0]), 0.5)), [0]
    )
    empty = batched_nms(xp.zeros((0, 4)), xp.zeros(0), xp.zeros(0, dtype=xp.int64), 0.5)
    assert empty.shape == (0,) and empty.dtype == xp.int64


@FEW
@given(
    n=st.integers(0, 40),
    num_images=st.integers(1, 4),
    classes=st.integers(0, 3),  # 0: class-agnostic (idxs=None)
    seed=st.integers(0, 2**32 - 1),
    threshold=st.sampled_from([0.0, 0.3, 0.5, 0.7]),
    top_n=st.sampled_from([None, 1, 3]),
    tied=st.booleans(),
)
def test_nms_by_image_is_batched_nms_per_image_cut_to_top_n(xp, n, num_images, classes, seed,
                                                           threshold, top_n, tied):
    rng = numpy.random.default_rng(seed)
    boxes = random_boxes(rng, n, integer=True)
    scores = rng.integers(0, 3, size=n) / 3 if tied else rng.random(n)
    images = rng.integers(0, num_images, size=n)
    idxs = rng.integers(0, classes, size=n) if classes else numpy.zeros(n, dtype=numpy.int64)
    kept = nms_by_image(xp.asarray(boxes), xp.asarray(scores),
                        xp.asarray(idxs) if classes else None, xp.asarray(images), num_images,
                        threshold, top_n=top_n)
    assert len(kept) == num_images
    for image, keep in enumerate(kept):
        assert keep.dtype == xp.int64
        members = numpy.nonzero(images == image)[0]
        expected = members[per_class_nms(boxes[members], scores[members], idxs[members],
                                         threshold)][:top_n]
        numpy.testing.assert_array_equal(to_numpy(keep), expected)


def test_nms_by_image_keeps_images_apart_and_stops_at_top_n(xp):
    boxes = xp.asarray([[0.0, 0.0, 10.0, 10.0]] * 4 + [[20.0, 20.0, 30.0, 30.0]])
    scores = xp.asarray([0.9, 0.8, 0.7, 0.6, 0.5])
    images = xp.asarray([0, 1, 0, 1, 1])
    kept = nms_by_image(boxes, scores, None, images, 3, 0.5)
    assert [to_numpy(k).tolist() for k in kept] == [[0], [1, 4], []]
    kept = nms_by_image(boxes, scores, None, images, 2, 0.5, top_n=1)
    assert [to_numpy(k).tolist() for k in kept] == [[0], [1]]
    empty = nms_by_image(xp.zeros((0, 4)), xp.zeros(0), None, xp.zeros(0, dtype=xp.int64), 2,
                         0.5)
    assert [k.shape for k in empty] == [(0,), (0,)]


def test_nms_by_image_bad_input_names_the_argument(xp):
    boxes, scores = xp.asarray([[0.0, 0.0, 1.0, 1.0]] * 2), xp.asarray([0.5, 0.4])
    with pytest.raises(ValueError, match="images must hold image indices in 0..1"):
        nms_by_image(boxes, scores, None, xp.asarray([0, 2]), 2, 0.5)
    with pytest.raises(ValueError, match="images must hold image indices"):
        nms_by_image(boxes, scores, None, xp.asarray([-1, 0]), 2, 0.5)
    with pytest.raises(ValueError, match="images"):
        nms_by_image(boxes, scores, None, xp.asarray([0]), 2, 0.5)
    with pytest.raises(ValueError, match="num_images"):
        nms_by_image(boxes, scores, None, xp.asarray([0, 0]), 0, 0.5)
    with pytest.raises(ValueError, match="top_n"):
        nms_by_image(boxes, scores, None, xp.asarray([0, 0]), 1, 0.5, top_n=0)
    with pytest.raises(TypeError, match="idxs must hold integers"):
        nms_by_image(boxes, scores, xp.asarray([0.5, 1.0]), xp.asarray([0, 0]), 1, 0.5)


def test_clip_and_remove_small_boxes(xp):
    boxes = xp.asarray([[-5.0, -1.0, 30.0, 8.0], [2.0, 3.0, 2.5, 9.0], [1.0, 1.0, 4.0, 4.0]])
    clipped = to_numpy(clip_boxes_to_image(boxes, (6, 20)))  # (height, width)
    numpy.testing.assert_array_equal(clipped, [[0, 0, 20, 6], [2, 3, 2.5, 6], [1, 1, 4, 4]])
    numpy.testing.assert_array_equal(to_numpy(remove_small_boxes(boxes, 1.0)), [0, 2])
    numpy.testing.assert_array_equal(to_numpy(remove_small_boxes(boxes, 0.5)), [0, 1, 2])


# ----- anchors ---------------------------------------------------------------------------------


def test_cell_anchors_torchvision_defaults(xp):
    cell = cell_anchors((128, 256, 512), (0.5, 1.0, 2.0), device=device_of(xp))
    assert cell.dtype == xp.float32
    # h = s*sqrt(r), w = s/sqrt(r), round([-w, -h, w, h]/2), ratio-major
    numpy.testing.assert_array_equal(to_numpy(cell), [
        [-91, -45, 91, 45], [-181, -91, 181, 91], [-362, -181, 362, 181],
        [-64, -64, 64, 64], [-128, -128, 128, 128], [-256, -256, 256, 256],
        [-45, -91, 45, 91], [-91, -181, 91, 181], [-181, -362, 181, 362],
    ])


def test_cell_anchors_round_half_to_even(xp):
    # size 5, ratio 1: [-2.5, -2.5, 2.5, 2.5] rounds to even -> [-2, -2, 2, 2] (torch.round)
    cell = cell_anchors((5, 7), (1.0,), device=device_of(xp), dtype="float64")
    assert cell.dtype == xp.float64
    numpy.testing.assert_array_equal(to_numpy(cell), [[-2, -2, 2, 2], [-4, -4, 4, 4]])


def test_anchor_grid_order_and_shifts(xp):
    H, W, sy, sx = 2, 3, 8, 16
    sizes, ratios = (32,), (0.5, 1.0)
    anchors = to_numpy(anchor_grid((H, W), (sy, sx), sizes, ratios, device=device_of(xp)))
    cell = numpy.array([[-23, -11, 23, 11], [-16, -16, 16, 16]])  # worked by hand
    assert anchors.shape == (H * W * 2, 4)
    for i in range(H):
        for j in range(W):
            for a in range(2):
                expected = cell[a] + [j * sx, i * sy, j * sx, i * sy]
                numpy.testing.assert_array_equal(anchors[(i * W + j) * 2 + a], expected)
    # one stride for both axes
    square = anchor_grid(2, 16, (32,), (1.0,), device=device_of(xp))
    numpy.testing.assert_array_equal(to_numpy(square)[3], [0, 0, 32, 32])


def test_anchor_widths_heights_and_areas(xp):
    sizes, ratios = (64.0, 128.0), (0.25, 1.0, 4.0)
    cell = to_numpy(cell_anchors(sizes, ratios, device=device_of(xp), dtype="float64"))
    w, h = cell[:, 2] - cell[:, 0], cell[:, 3] - cell[:, 1]
    expected_ratio = numpy.repeat(ratios, len(sizes))
    expected_size = numpy.tile(sizes, len(ratios))
    numpy.testing.assert_allclose(h / w, expected_ratio, rtol=0.05)
    numpy.testing.assert_allclose(numpy.sqrt(w * h), expected_size, rtol=0.05)


# ----- BoxCoder --------------------------------------------------------------------------------


def test_box_coder_by_hand(xp):
    proposals = xp.asarray([[0.0, 0.0, 10.0, 10.0]])  # centre (5, 5), size 10 x 10
    gt = xp.asarray([[1.0, 2.0, 11.0, 22.0]])  # centre (6, 12), size 10 x 20
    deltas = to_numpy(BoxCoder((10.0, 10.0, 5.0, 5.0)).encode(gt, proposals))
    numpy.testing.assert_allclose(deltas, [[1.0, 7.0, 0.0, 5 * math.log(2)]])
    rpn = to_numpy(BoxCoder().encode(gt, proposals))
    numpy.testing.assert_allclose(rpn, [[0.1, 0.7, 0.0, math.log(2)]])


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0), (2, 3, 4, 5)])
def test_box_coder_round_trip(xp, weights):
    rng = numpy.random.default_rng(6)
    proposals = random_boxes(rng, 20) + [0, 0, 1, 1]  # positive sizes
    gt = random_boxes(rng, 20) + [0, 0, 1, 1]
    coder = BoxCoder(weights)
    deltas = coder.encode(xp.asarray(gt), xp.asarray(proposals))
    decoded = coder.decode(deltas, xp.asarray(proposals))
    numpy.testing.assert_allclose(to_numpy(decoded), gt, rtol=1e-10, atol=1e-10)
    # zero deltas decode to the reference boxes themselves
    same = coder.decode(xp.zeros((20, 4)), xp.asarray(proposals))
    numpy.testing.assert_allclose(to_numpy(same), proposals, rtol=1e-12, atol=1e-12)


def test_box_coder_clamps_dw_dh(xp):
    assert DEFAULT_BBOX_XFORM_CLIP == pytest.approx(math.log(1000 / 16))
    box = xp.asarray([[0.0, 0.0, 10.0, 10.0]])
    coder = BoxCoder((1.0, 1.0, 5.0, 5.0))
    out = to_numpy(coder.decode(xp.asarray([[0.0, 0.0, 500.0, 5 * math.log(2)]]), box))
    # dw/ww = 100 is clamped to log(62.5): width 625; dh/wh = log 2 is not: height 20
    numpy.testing.assert_allclose(out, [[5 - 312.5, -5, 5 + 312.5, 15]])
    assert numpy.isfinite(to_numpy(coder.decode(xp.asarray([[0.0, 0.0, 1e6, 1e6]]), box))).all()
    # a custom clip
    tight = BoxCoder(bbox_xform_clip=math.log(2)).decode(xp.asarray([[0.0, 0.0, 9.0, 9.0]]), box)
    numpy.testing.assert_allclose(to_numpy(tight), [[-5, -5, 15, 15]])
    # encoding does not clamp
    big = to_numpy(BoxCoder().encode(xp.asarray([[0.0, 0.0, 1000.0, 10.0]]), box))
    assert big[0, 2] == pytest.approx(math.log(100))


def test_box_coder_class_specific_deltas(xp):
    rng = numpy.random.default_rng(7)
    proposals = xp.asarray(random_boxes(rng, 5) + [0, 0, 1, 1])
    deltas = xp.asarray(rng.normal(size=(5, 12)))  # K = 3 classes
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    out = to_numpy(coder.decode(deltas, proposals))
    assert out.shape == (5, 12)
    for k in range(3):
        one = coder.decode(deltas[:, 4 * k: 4 * k + 4].copy(), proposals)
        numpy.testing.assert_allclose(out[:, 4 * k: 4 * k + 4], to_numpy(one))


def test_box_coder_dtype_and_empty(xp):
    coder = BoxCoder()
    boxes = xp.asarray([[0.0, 0.0, 4.0, 4.0]])
    out = coder.decode(xp.zeros((1, 4), dtype=xp.float32), boxes)
    assert out.dtype == xp.float32
    assert coder.encode(xp.zeros((0, 4)), xp.zeros((0, 4))).shape == (0, 4)
    assert coder.decode(xp.zeros((0, 4)), xp.zeros((0, 4))).shape == (0, 4)


# ----- Matcher ---------------------------------------------------------------------------------


def test_matcher_thresholds_and_boundaries(xp):
    q = xp.asarray([
        [0.7, 0.3, 0.2999, 0.5, 0.1, 0.69],
        [0.1, 0.1, 0.1000, 0.6, 0.65, 0.9],
    ])
    matches = Matcher(0.7, 0.3)(q)
    assert matches.dtype == xp.int64
    # >= high -> its gt; exactly low -> between (-2); just below low -> background (-1)
    numpy.testing.assert_array_equal(to_numpy(matches), [0, -2, -1, -2, -2, 1])
    assert (BELOW_LOW_THRESHOLD, BETWEEN_THRESHOLDS) == (-1, -2)
    assert (Matcher.BELOW_LOW_THRESHOLD, Matcher.BETWEEN_THRESHOLDS) == (-1, -2)
    # RoI heads: high = low = 0.5, no ignored band
    roi = to_numpy(Matcher(0.5, 0.5)(xp.asarray([[0.5, 0.4999, 0.8]], dtype=xp.float32)))
    numpy.testing.assert_array_equal(roi, [0, -1, 0])


def test_matcher_low_quality_matches(xp):
    q = xp.asarray([
        [0.7, 0.3, 0.2999, 0.5, 0.1, 0.2],
        [0.1, 0.1, 0.1000, 0.6, 0.65, 0.2],
    ])
    # gt 1 reaches 0.7 nowhere; its best prediction (column 4, 0.65) is matched to it anyway
    numpy.testing.assert_array_equal(
        to_numpy(Matcher(0.7, 0.3, allow_low_quality_matches=True)(q)), [0, -2, -1, -2, 1, -1]
    )
    # ties: every prediction tied for a gt's best IoU is kept, even below the low threshold
    tied = xp.asarray([[0.9, 0.2, 0.2, 0.1], [0.1, 0.25, 0.25, 0.25]])
    numpy.testing.assert_array_equal(
        to_numpy(Matcher(0.7, 0.3, allow_low_quality_matches=True)(tied)), [0, 1, 1, 1]
    )
    numpy.testing.assert_array_equal(to_numpy(Matcher(0.7, 0.3)(tied)), [0, -1, -1, -1])


def test_matcher_low_quality_keeps_the_predictions_own_argmax(xp):
    # column 1 is gt 1's best (0.5), but it ties between gt 0 and gt 1: as in
    # torchvision it is restored to its own argmax, the first maximum, gt 0
    q = xp.asarray([[0.9, 0.5], [0.1, 0.5]])
    numpy.testing.assert_array_equal(
        to_numpy(Matcher(0.7, 0.3, allow_low_quality_matches=True)(q)), [0, 0]
    )


def test_matcher_zero_ground_truths_and_predictions(xp):
    for allow in (False, True):
        matcher = Matcher(0.7, 0.3, allow_low_quality_matches=allow)
        none = matcher(xp.zeros((0, 5)))
        assert none.dtype == xp.int64
        numpy.testing.assert_array_equal(to_numpy(none), [-1] * 5)
        empty = matcher(xp.zeros((3, 0)))
        assert empty.shape == (0,) and empty.dtype == xp.int64


def test_matcher_on_box_iou(xp):
    gt = xp.asarray([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    anchors = xp.asarray([
        [0.0, 0.0, 10.0, 10.0],  # IoU 1 with gt 0
        [0.0, 0.0, 10.0, 6.0],  # IoU 0.6 with gt 0: ignored band
        [20.0, 20.0, 30.0, 28.0],  # IoU 0.8 with gt 1
        [50.0, 50.0, 60.0, 60.0],  # nothing
    ])
    matches = Matcher(0.7, 0.3)(box_iou(gt, anchors))
    numpy.testing.assert_array_equal(to_numpy(matches), [0, -2, 1, -1])


# ----- sampler ---------------------------------------------------------------------------------


def make_labels(rng, positives, negatives, ignored):
    labels = numpy.concatenate([
        rng.integers(1, 4, size=positives), numpy.zeros(negatives, int), -numpy.ones(ignored, int)
    ])
    return rng.permutation(labels)


@pytest.mark.parametrize(
    "positives, negatives, expected",
    [
        (300, 1000, (128, 128)),  # enough of both: B*f positives
        (10, 1000, (10, 246)),  # few positives: negatives fill the batch
        (10, 20, (10, 20)),  # too few of both: take them all
        (0, 1000, (0, 256)),
        (300, 0, (128, 0)),  # positives are capped even with no negatives
    ],
)
def test_sampler_counts(xp, positives, negatives, expected):
    labels = xp.asarray(make_labels(numpy.random.default_rng(8), positives, negatives, 50))
    pos, neg = BalancedPositiveNegativeSampler(256, 0.5, rng=0)(labels)
    assert pos.dtype == xp.bool_ and pos.shape == labels.shape
    assert (int(pos.sum()), int(neg.sum())) == expected
    pos, neg, labels = to_numpy(pos), to_numpy(neg), to_numpy(labels)
    assert (labels[pos] >= 1).all() and (labels[neg] == 0).all()  # never an ignored one
    assert not (pos & neg).any()


def test_sampler_roi_head_fraction(xp):
    labels = xp.asarray(make_labels(numpy.random.default_rng(9), 400, 2000, 0))
    pos, neg = BalancedPositiveNegativeSampler(512, 0.25, rng=1)(labels)
    assert (int(pos.sum()), int(neg.sum())) == (128, 384)


def test_sampler_is_deterministic_and_backend_independent(xp):
    host = make_labels(numpy.random.default_rng(10), 100, 500, 20)
    labels = xp.asarray(host)
    a = BalancedPositiveNegativeSampler(64, 0.5, rng=123)(labels)
    b = BalancedPositiveNegativeSampler(64, 0.5, rng=123)(labels)
    c = BalancedPositiveNegativeSampler(64, 0.5, rng=124)(labels)
    on_cpu = BalancedPositiveNegativeSampler(64, 0.5, rng=123)(host)
    for x, y, z in zip(a, b, on_cpu):
        numpy.testing.assert_array_equal(to_numpy(x), to_numpy(y))
        numpy.testing.assert_array_equal(to_numpy(x), z)
    assert not numpy.array_equal(to_numpy(a[0]), to_numpy(c[0]))
    # an explicit Generator per call, and successive calls draw fresh samples
    sampler = BalancedPositiveNegativeSampler(64, 0.5, rng=5)
    first, second = sampler(labels), sampler(labels)
    assert not numpy.array_equal(to_numpy(first[0]), to_numpy(second[0]))
    g1 = sampler(labels, rng=numpy.random.default_rng(7))
    g2 = sampler(labels, rng=numpy.random.default_rng(7))
    numpy.testing.assert_array_equal(to_numpy(g1[1]), to_numpy(g2[1]))


def test_sampler_is_uniform_over_candidates():
    labels = numpy.array([1, 1, 1, 1, 0, -1])
    sampler = BalancedPositiveNegativeSampler(4, 0.5, rng=0)
    counts = numpy.zeros(6)
    for _ in range(2000):
        counts += sampler(labels)[0]
    # each of the four positives is drawn with probability 2/4
    numpy.testing.assert_allclose(counts[:4] / 2000, 0.5, atol=0.05)
    assert counts[4:].sum() == 0


def test_sampler_list_of_images(xp):
    rng = numpy.random.default_rng(11)
    images = [xp.asarray(make_labels(rng, 5, 40, 3)), xp.asarray(make_labels(rng, 50, 10, 0))]
    pos, neg = BalancedPositiveNegativeSampler(16, 0.5, rng=0)(images)
    assert [int(p.sum()) for p in pos] == [5, 8] and [int(n.sum()) for n in neg] == [11, 8]


# ----- bad input ---------------------------------------------------------------------------------


def test_bad_box_shapes_name_the_argument(xp):
    good = xp.zeros((2, 4))
    with pytest.raises(ValueError, match=r"boxes1 must have shape \(N, 4\)"):
        box_iou(xp.zeros((2, 5)), good)
    with pytest.raises(ValueError, match=r"boxes2 must have shape \(N, 4\)"):
        generalized_box_iou(good, xp.zeros(4))
    with pytest.raises(ValueError, match=r"boxes must have shape \(N, 4\)"):
        nms(xp.zeros((2, 4, 1)), xp.zeros(2), 0.5)
    with pytest.raises(ValueError, match="boxes must have shape"):
        box_area(xp.zeros((3, 3)))
    with pytest.raises(TypeError, match="boxes must be a numpy or cupy array"):
        box_convert([[0, 0, 1, 1]], "xyxy", "xywh")
    with pytest.raises(TypeError, match="boxes must hold real numbers"):
        box_area(xp.zeros((2, 4), dtype=bool))


def test_bad_formats_name_the_argument(xp):
    boxes = xp.zeros((1, 4))
    with pytest.raises(ValueError, match="in_fmt must be one of"):
        box_convert(boxes, "yxyx", "xyxy")
    with pytest.raises(ValueError, match="out_fmt must be one of"):
        box_convert(boxes, "xyxy", "XYWH")


def test_bad_nms_inputs_name_the_argument(xp):
    boxes = xp.zeros((3, 4))
    with pytest.raises(ValueError, match=r"scores must have shape \(3,\)"):
        nms(boxes, xp.zeros(2), 0.5)
    with pytest.raises(ValueError, match="scores must have shape"):
        nms_naive(boxes, xp.zeros((3, 1)), 0.5)
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"iou_threshold must be in \[0, 1\]"):
            nms(boxes, xp.zeros(3), bad)
    with pytest.raises(TypeError, match="iou_threshold"):
        nms(boxes, xp.zeros(3), "0.5")
    with pytest.raises(ValueError, match=r"idxs must have shape \(3,\)"):
        batched_nms(boxes, xp.zeros(3), xp.zeros(4, dtype=xp.int64), 0.5)
    with pytest.raises(TypeError, match="idxs must hold integers"):
        batched_nms(boxes, xp.zeros(3), xp.zeros(3), 0.5)
    with pytest.raises(ValueError, match=r"iou_threshold must be in \[0, 1\]"):
        batched_nms(boxes, xp.zeros(3), xp.zeros(3, dtype=xp.int64), 2.0)


def test_bad_matcher_and_sampler_arguments(xp):
    with pytest.raises(ValueError, match="low_threshold must be <= high_threshold"):
        Matcher(0.3, 0.7)
    with pytest.raises(ValueError, match=r"high_threshold must be in \[0, 1\]"):
        Matcher(1.2, 0.3)
    with pytest.raises(ValueError, match=r"low_threshold must be in \[0, 1\]"):
        Matcher(0.7, -0.1)
    with pytest.raises(ValueError, match=r"match_quality_matrix must have shape \(G, P\)"):
        Matcher(0.7, 0.3)(xp.zeros(5))
    with pytest.raises(ValueError, match="batch_size_per_image must be an int >= 1"):
        BalancedPositiveNegativeSampler(0, 0.5)
    with pytest.raises(TypeError, match="batch_size_per_image"):
        BalancedPositiveNegativeSampler(2.5, 0.5)
    with pytest.raises(ValueError, match=r"positive_fraction must be in \[0, 1\]"):
        BalancedPositiveNegativeSampler(256, 1.5)
    with pytest.raises(TypeError, match="rng must be"):
        BalancedPositiveNegativeSampler(256, 0.5, rng="seed")
    sampler = BalancedPositiveNegativeSampler(256, 0.5)
    with pytest.raises(TypeError, match="labels must be integers"):
        sampler(xp.zeros(4))
    with pytest.raises(ValueError, match=r"labels must have shape \(N,\)"):
        sampler(xp.zeros((2, 2), dtype=xp.int64))


def test_bad_coder_and_anchor_arguments(xp):
    with pytest.raises(ValueError, match="weights must be 4 numbers"):
        BoxCoder((1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="weights must hold positive numbers"):
        BoxCoder((1.0, 0.0, 1.0, 1.0))
    coder = BoxCoder()
    with pytest.raises(ValueError, match="gt_boxes and proposals must have the same number"):
        coder.encode(xp.zeros((2, 4)), xp.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"proposals must have shape \(N, 4\)"):
        coder.encode(xp.zeros((2, 4)), xp.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"deltas must be a float array of shape \(N, 4\*K\)"):
        coder.decode(xp.zeros((2, 6)), xp.zeros((2, 4)))
    with pytest.raises(ValueError, match="deltas must have one row per box"):
        coder.decode(xp.zeros((3, 4)), xp.zeros((2, 4)))
    device = device_of(xp)
    with pytest.raises(ValueError, match="sizes must hold positive numbers"):
        cell_anchors((0, 32), device=device)
    with pytest.raises(ValueError, match="aspect_ratios must hold positive numbers"):
        cell_anchors((32,), (), device=device)
    with pytest.raises(ValueError, match="dtype must be a floating-point type"):
        cell_anchors(device=device, dtype="int32")
    with pytest.raises(ValueError, match="feature_size must be >= 1"):
        anchor_grid((0, 4), 16, device=device)
    with pytest.raises(TypeError, match="feature_size"):
        anchor_grid((2.5, 4), 16, device=device)
    with pytest.raises(ValueError, match="stride must be positive"):
        anchor_grid((2, 4), (16, 0), device=device)
    with pytest.raises(ValueError, match="device must be one of"):
        cell_anchors(device="tpu")


def test_mixed_devices_are_an_error():
    if not backend.gpu_available():
        pytest.skip("needs a GPU")
    cp = backend.cupy_module()
    with pytest.raises(ValueError, match="different devices"):
        box_iou(numpy.zeros((1, 4)), cp.zeros((1, 4)))


# ----- optional oracle: torchvision ----------------------------------------------------------


def test_torchvision_oracle_iou_giou_nms(xp):
    torchvision = pytest.importorskip("torchvision")
    import torch

    rng = numpy.random.default_rng(12)
    a, b = random_boxes(rng, 30, integer=True), random_boxes(rng, 20) + [0, 0, 1, 1]
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    numpy.testing.assert_allclose(
        to_numpy(box_iou(xp.asarray(a), xp.asarray(b))), torchvision.ops.box_iou(ta, tb).numpy()
    )
    numpy.testing.assert_allclose(
        to_numpy(generalized_box_iou(xp.asarray(b), xp.asarray(b))),
        torchvision.ops.generalized_box_iou(tb, tb).numpy(),
    )
    boxes = random_boxes(rng, 200, integer=True) + [0, 0, 1, 1]
    scores = rng.integers(0, 10, size=200) / 10  # ties: torchvision sorts stably
    idxs = rng.integers(0, 3, size=200)
    for threshold in (0.3, 0.5, 0.7):
        expected = torchvision.ops.nms(torch.from_numpy(boxes), torch.from_numpy(scores), threshold)
        got = nms(xp.asarray(boxes), xp.asarray(scores), threshold)
        numpy.testing.assert_array_equal(to_numpy(got), expected.numpy())
        distinct = rng.permutation(200) / 200.0
        expected = torchvision.ops.batched_nms(
            torch.from_numpy(boxes), torch.from_numpy(distinct), torch.from_numpy(idxs), threshold
        )
        got = batched_nms(xp.asarray(boxes), xp.asarray(distinct), xp.asarray(idxs), threshold)
        numpy.testing.assert_array_equal(to_numpy(got), expected.numpy())


def test_torchvision_oracle_coder_matcher_anchors(xp):
    pytest.importorskip("torchvision")
    import torch
    from torchvision.models.detection._utils import BoxCoder as TVBoxCoder
    from torchvision.models.detection._utils import Matcher as TVMatcher
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    rng = numpy.random.default_rng(13)
    proposals = random_boxes(rng, 25) + [0, 0, 1, 1]
    gt = random_boxes(rng, 25) + [0, 0, 1, 1]
    weights = (10.0, 10.0, 5.0, 5.0)
    tv = TVBoxCoder(weights)
    expected = tv.encode_single(torch.from_numpy(gt), torch.from_numpy(proposals)).numpy()
    ours = BoxCoder(weights)
    numpy.testing.assert_allclose(
        to_numpy(ours.encode(xp.asarray(gt), xp.asarray(proposals))), expected, rtol=1e-10
    )
    deltas = rng.normal(scale=3.0, size=(25, 8))  # two classes
    deltas[::5, 2::4] = 30.0  # dw/ww = 6 > log(62.5): clamped
    expected = tv.decode_single(torch.from_numpy(deltas), torch.from_numpy(proposals)).numpy()
    numpy.testing.assert_allclose(
        to_numpy(ours.decode(xp.asarray(deltas), xp.asarray(proposals))), expected, rtol=1e-10
    )

    q = rng.integers(0, 10, size=(4, 30)) / 10  # ties on purpose
    for allow in (False, True):
        expected = TVMatcher(0.7, 0.3, allow)(torch.from_numpy(q)).numpy()
        ours = Matcher(0.7, 0.3, allow)(xp.asarray(q))
        numpy.testing.assert_array_equal(to_numpy(ours), expected)

    generator = AnchorGenerator(sizes=((32, 64),), aspect_ratios=((0.5, 1.0, 2.0),))
    expected_cell = generator.generate_anchors([32, 64], [0.5, 1.0, 2.0])
    numpy.testing.assert_array_equal(
        to_numpy(cell_anchors((32, 64), (0.5, 1.0, 2.0), device=device_of(xp))),
        expected_cell.numpy(),
    )
    generator.set_cell_anchors(torch.float32, torch.device("cpu"))
    expected_grid = generator.grid_anchors([[3, 5]], [[torch.tensor(8), torch.tensor(16)]])[0]
    numpy.testing.assert_array_equal(
        to_numpy(anchor_grid((3, 5), (8, 16), (32, 64), (0.5, 1.0, 2.0), device=device_of(xp))),
        expected_grid.numpy(),
    )


# ----- the split: anchors.py and what boxes.py still exports ------------------------------------


def test_the_anchor_names_live_in_anchors_only():
    """They moved to tinyseg.anchors; boxes does not re-export them (anchors imports boxes)."""
    for name in ("BoxCoder", "Matcher", "anchor_grid", "cell_anchors"):
        assert name in anchors_module.__all__
        assert not hasattr(boxes_module, name), name


def test_step_generator_follows_numpys_global_stream():
    """Reseeding the global stream (as seed_everything does every epoch) replays the draws."""
    numpy.random.seed(11)
    first = [anchors_module.step_generator().random(3) for _ in range(2)]
    numpy.random.seed(11)
    again = [anchors_module.step_generator().random(3) for _ in range(2)]
    numpy.testing.assert_array_equal(first[0], again[0])
    numpy.testing.assert_array_equal(first[1], again[1])
    assert not numpy.array_equal(first[0], first[1])  # each step gets its own stream

