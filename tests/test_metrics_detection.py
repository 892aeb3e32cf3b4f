"""tinyseg.metrics (detection): COCO mAP, VOC AP, the overlaps, COCO JSON export, PR plots.

Small cases worked by hand pin each rule (a perfect box, a false positive ranked above a true
positive, duplicates, a missed object, a match at exactly an IoU threshold, crowd regions,
area ranges, maxDets, classes without ground truth). An optional oracle feeds randomised
scenes through ``to_coco_ground_truth`` / ``to_coco_results`` into pycocotools and requires
all nine numbers to agree to 1e-6, for boxes and for masks, which also tests the export.
"""

from __future__ import annotations

import contextlib
import io
import json

import numpy
import pytest

from tinyseg.backend import to_numpy
from tinyseg.metrics import (
    COCO_RECALL_THRESHOLDS,
    coco_evaluate,
    detection_box_iou,
    mask_iou,
    mean_average_precision,
    precision_envelope,
    save_coco_json,
    to_coco_ground_truth,
    to_coco_results,
    voc_ap,
    voc_eval,
)

KEYS = ("map", "map_50", "map_75", "map_small", "map_medium", "map_large",
        "mar_1", "mar_10", "mar_100")


def pred(boxes, scores, labels=None, masks=None, xp=numpy):
    boxes = numpy.asarray(boxes, dtype=numpy.float64).reshape(-1, 4)
    labels = numpy.ones(len(boxes), numpy.int64) if labels is None else labels
    out = {"boxes": xp.asarray(boxes), "scores": xp.asarray(numpy.asarray(scores, float)),
           "labels": xp.asarray(numpy.asarray(labels, numpy.int64))}
    if masks is not None:
        out["masks"] = xp.asarray(masks)
    return out


def target(boxes, labels=None, xp=numpy, **extra):
    boxes = numpy.asarray(boxes, dtype=numpy.float64).reshape(-1, 4)
    labels = numpy.ones(len(boxes), numpy.int64) if labels is None else labels
    out = {"boxes": xp.asarray(boxes), "labels": xp.asarray(numpy.asarray(labels, numpy.int64))}
    out.update({k: xp.asarray(numpy.asarray(v)) for k, v in extra.items()})
    return out


BOX = [0.0, 0.0, 10.0, 10.0]  # area 100: a "small" object
FAR = [50.0, 50.0, 60.0, 60.0]  # overlaps nothing


# ----- COCO mAP worked by hand ---------------------------------------------------------------


def test_one_perfect_box_scores_one(xp):
    scores = mean_average_precision([pred([BOX], [0.9], xp=xp)], [target([BOX], xp=xp)])
    assert scores == {"map": 1.0, "map_50": 1.0, "map_75": 1.0, "map_small": 1.0,
                      "map_medium": -1.0, "map_large": -1.0,  # no object of those sizes
                      "mar_1": 1.0, "mar_10": 1.0, "mar_100": 1.0}


def test_false_positive_ranked_above_true_positive_halves_ap():
    # ranks: FP (precision 0, recall 0), TP (precision 1/2, recall 1); envelope 1/2 everywhere
    scores = mean_average_precision([pred([FAR, BOX], [0.9, 0.8])], [target([BOX])])
    assert scores["map"] == pytest.approx(0.5)
    assert scores["map_50"] == pytest.approx(0.5)
    assert scores["mar_1"] == 0.0  # the top-1 detection of the image is the miss
    assert scores["mar_10"] == 1.0


def test_duplicate_is_a_false_positive_after_the_recall_is_reached():
    # ranks: TP (1, recall 1), duplicate FP (1/2, recall 1): the envelope keeps 1 at recall 1
    scores = mean_average_precision([pred([BOX, BOX], [0.9, 0.8])], [target([BOX])])
    assert scores["map"] == 1.0  # the duplicate is a FP, but after the last true positive
    result = voc_eval([pred([BOX, BOX], [0.9, 0.8])], [target([BOX])])
    numpy.testing.assert_allclose(result["precision"][1], [1.0, 0.5])


def test_missed_object_limits_recall():
    # two objects, one found: precision 1 up to recall 1/2, then nothing: 51 of 101 points
    scores = mean_average_precision([pred([BOX], [0.9])], [target([BOX, FAR])])
    assert scores["map"] == pytest.approx(51 / 101)
    assert scores["mar_100"] == pytest.approx(0.5)


def test_101_point_ap_of_the_worked_example():
    # ranks TP, FP, TP with two objects (docs/metrics.md): recall .5, .5, 1; envelope 1, 2/3, 2/3.
    # Recall points 0, .01, ..., .5 read 1 (51 of them); .51, ..., 1 read 2/3 (50 of them).
    other = [20.0, 20.0, 30.0, 30.0]
    scores = mean_average_precision([pred([BOX, FAR, other], [0.9, 0.8, 0.7])],
                                    [target([BOX, other])])
    assert scores["map"] == pytest.approx((51 + 50 * 2 / 3) / 101)
    assert repr(coco_evaluate([pred([BOX], [0.9])], [target([BOX])])).startswith(
        "COCOEvaluation(bbox, 1 classes: map=1.0000")


def test_iou_exactly_at_a_threshold_matches():
    # IoU 60/100 = 0.6: a match at t = .50, .55, .60 and not above: AP 1 at 3 of 10 thresholds
    scores = mean_average_precision([pred([[0, 0, 10, 6]], [0.9])], [target([BOX])])
    assert scores["map"] == pytest.approx(0.3)
    assert scores["map_50"] == 1.0 and scores["map_75"] == 0.0


def test_detections_inside_a_crowd_region_are_ignored():
    crowd = [20.0, 20.0, 100.0, 100.0]
    inside = [[30, 30, 40, 40], [50, 50, 60, 70]]
    preds = [pred([BOX, *inside], [0.5, 0.9, 0.8])]  # the crowd hits are ranked first
    targets = [target([BOX, crowd], labels=[1, 1], iscrowd=[False, True])]
    assert mean_average_precision(preds, targets)["map"] == 1.0  # neither TP nor FP
    # without the crowd flag they would be false positives ranked above the true one
    targets[0]["iscrowd"] = numpy.array([False, False])
    assert mean_average_precision(preds, targets)["map"] < 0.5


def test_a_regular_object_is_preferred_to_a_crowd_region():
    # the detection lies wholly inside the crowd (overlap 1) and has IoU 0.8 with the object
    crowd, obj, det = [0.0, 0.0, 100.0, 100.0], [0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 8.0]
    targets = [target([crowd, obj], iscrowd=[True, False])]
    assert mean_average_precision([pred([det], [0.9])], targets)["map_50"] == 1.0


def test_equal_overlaps_go_to_the_later_object():
    # the first detection overlaps a and b equally (90/110); pycocotools gives it b, the later
    # one, which leaves a for the second detection (IoU 80/120 with a, 60/140 with b)
    a, b = [2.0, 0.0, 12.0, 10.0], [4.0, 0.0, 14.0, 10.0]
    preds = [pred([[3.0, 0.0, 13.0, 10.0], [0.0, 0.0, 10.0, 10.0]], [0.9, 0.8])]
    assert mean_average_precision(preds, [target([a, b])])["map_50"] == 1.0
    # listed the other way round, the tie goes to a, and the second detection finds a taken
    assert mean_average_precision(preds, [target([b, a])])["map_50"] == pytest.approx(51 / 101)


def test_crowd_overlap_is_intersection_over_detection_area():
    dets = numpy.array([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 4.0, 4.0]])
    gts = numpy.array([[5.0, 0.0, 100.0, 100.0], [0.0, 0.0, 10.0, 10.0]])
    iou = detection_box_iou(dets, gts, numpy.array([True, False]))
    # crowd column: |d and g| / |d| = 50/100 and 0 (disjoint); regular column: plain IoU
    numpy.testing.assert_allclose(iou, [[0.5, 1.0], [0.0, 16 / 100]])


def test_area_ranges_split_the_objects():
    small, large = BOX, [0.0, 0.0, 100.0, 100.0]
    preds = [pred([large], [0.9])]  # finds the large object only
    scores = mean_average_precision(preds, [target([small, large])])
    assert scores["map_large"] == 1.0  # the small object is ignored there
    assert scores["map_small"] == 0.0  # and the large detection is ignored here
    assert scores["map_medium"] == -1.0
    # "area" given in the target wins over the box area
    scores = mean_average_precision(preds, [target([small, large], area=[2000.0, 2000.0])])
    assert scores["map_medium"] == pytest.approx(51 / 101)
    assert scores["map_large"] == -1.0


EDGE = [0.0, 0.0, 32.0, 32.0]  # area exactly 32^2: the end of "small", the start of "medium"
EDGE_STRAY = [200.0, 200.0, 232.0, 232.0]  # the same area, overlapping nothing
BIG = [0.0, 0.0, 96.0, 96.0]  # area exactly 96^2: the end of "medium", the start of "large"


def range_border_scene():
    # image 0: a false alarm of area 32^2 ranked above the hit; image 1: a perfect 96^2 box
    preds = [pred([EDGE_STRAY, EDGE], [0.95, 0.9]), pred([BIG], [0.9])]
    return preds, [target([EDGE]), target([BIG])]


def test_an_area_of_exactly_32_squared_is_both_small_and_medium():
    # pycocotools ignores an object when area < low or area > high: the ranges are closed
    preds, targets = range_border_scene()
    scores = mean_average_precision(preds, targets)
    # small: only EDGE counts, and the stray 32^2 detection is a false positive there: FP, TP
    assert scores["map_small"] == pytest.approx(0.5)
    # medium: EDGE and BIG both count, and so does the stray: FP, TP, TP over two objects
    # (recall 0, 1/2, 1; envelope 2/3 everywhere)
    assert scores["map_medium"] == pytest.approx(2 / 3)
    # large: only BIG; EDGE's detections (area 32^2 < 96^2) are left out, not false positives
    assert scores["map_large"] == 1.0
    # one pixel^2 past the border, an object is in one range only
    above = mean_average_precision([pred([EDGE], [0.9])], [target([EDGE], area=[1025.0])])
    below = mean_average_precision([pred([EDGE], [0.9])], [target([EDGE], area=[1023.0])])
    assert (above["map_small"], above["map_medium"]) == (-1.0, 1.0)
    assert (below["map_small"], below["map_medium"]) == (1.0, -1.0)


def test_an_area_of_exactly_32_squared_matches_pycocotools():
    preds, targets = range_border_scene()
    expected, _ = pycocotools_stats(preds, targets, "bbox")
    assert mean_average_precision(preds, targets) == pytest.approx(expected, abs=1e-12)
    assert (expected["map_small"], expected["map_medium"]) == pytest.approx((0.5, 2 / 3))


def test_classes_without_ground_truth_are_left_out():
    targets = [target([BOX], labels=[1])]
    alone = mean_average_precision([pred([BOX], [0.9], labels=[1])], targets)
    extra = mean_average_precision([pred([BOX, FAR], [0.9, 0.95], labels=[1, 7])], targets)
    assert alone == extra  # class 7 has no ground truth: no AP, not a 0
    result = coco_evaluate([pred([BOX, FAR], [0.9, 0.95], labels=[1, 7])], targets)
    assert result.categories.tolist() == [1]
    assert result.per_class_ap() == {1: 1.0}


def test_nothing_to_evaluate_gives_minus_one():
    assert mean_average_precision([], []) == dict.fromkeys(KEYS, -1.0)
    no_gt = mean_average_precision([pred([BOX], [0.9])], [target(numpy.zeros((0, 4)))])
    assert no_gt == dict.fromkeys(KEYS, -1.0)


def test_max_dets_is_counted_per_image_and_class():
    # 101 detections of one class: the lowest-scored one (the only hit) is beyond maxDets=100
    boxes = [[200.0 + i, 0.0, 210.0 + i, 10.0] for i in range(100)] + [BOX]
    scores = numpy.r_[numpy.linspace(0.99, 0.5, 100), 0.1]
    assert mean_average_precision([pred(boxes, scores)], [target([BOX])])["mar_100"] == 0.0
    # as another class, it has its own 100
    labels = numpy.r_[numpy.full(100, 2), 1]
    result = mean_average_precision([pred(boxes, scores, labels)], [target([BOX])])
    assert result["mar_100"] == 1.0 and result["mar_1"] == 1.0


def test_pr_curve_and_arrays_have_pycocotools_shapes():
    result = coco_evaluate([pred([FAR, BOX], [0.9, 0.8])], [target([BOX])])
    assert result.precision.shape == (10, 101, 1, 4, 3)
    assert result.recall.shape == (10, 1, 4, 3)
    recall, precision = result.pr_curve(1, iou_threshold=0.5)
    numpy.testing.assert_array_equal(recall, COCO_RECALL_THRESHOLDS)
    numpy.testing.assert_allclose(precision, 0.5)
    with pytest.raises(ValueError, match="label"):
        result.pr_curve(3)
    with pytest.raises(ValueError, match="iou_threshold"):
        result.per_class_ap(iou_threshold=0.52)


# ----- masks -------------------------------------------------------------------------------


def test_mask_iou_by_hand(xp):
    a = numpy.zeros((2, 4, 4), bool)
    a[0, :2, :] = True  # 8 pixels
    a[1, :, :1] = True  # 4 pixels
    b = numpy.zeros((2, 4, 4), bool)
    b[0, :, :2] = True  # 8 pixels; meets a[0] in 4, a[1] in 4
    b[1, 1:3, 1:3] = True  # 4 pixels; meets a[0] in 2, a[1] in 0
    iou = to_numpy(mask_iou(xp.asarray(a), xp.asarray(b)))
    numpy.testing.assert_allclose(iou, [[4 / 12, 2 / 10], [4 / 8, 0.0]])
    crowd = to_numpy(mask_iou(xp.asarray(a), xp.asarray(b), xp.asarray([True, False])))
    numpy.testing.assert_allclose(crowd, [[4 / 8, 2 / 10], [4 / 4, 0.0]])  # |a and b| / |a|
    empty = to_numpy(mask_iou(xp.zeros((1, 4, 4), bool), xp.zeros((1, 4, 4), bool)))
    assert empty.tolist() == [[0.0]]


def test_segm_uses_mask_overlap_not_boxes():
    gt = numpy.zeros((1, 20, 20), bool)
    gt[0, 2:12, 2:12] = True
    good = gt.copy()
    bad = numpy.zeros_like(gt)
    bad[0, 2:12, 2:4] = True  # the same box would fit, but only 20 of 100 pixels
    box = [[2.0, 2.0, 12.0, 12.0]]
    assert mean_average_precision([pred(box, [0.9], masks=good)],
                                  [target(box, masks=gt)], iou_type="segm")["map"] == 1.0
    assert mean_average_precision([pred(box, [0.9], masks=bad)],
                                  [target(box, masks=gt)], iou_type="segm")["map"] == 0.0


# ----- VOC ---------------------------------------------------------------------------------

# ranks TP, FP, TP with 2 objects: recall (.5, .5, 1), precision (1, .5, 2/3)
RECALL = numpy.array([0.5, 0.5, 1.0])
PRECISION = numpy.array([1.0, 0.5, 2 / 3])


def test_voc_ap_all_points_and_11_points_by_hand():
    # all points: 0.5 * 1 + 0.5 * 2/3 (the envelope lifts the dip at rank 2)
    assert voc_ap(RECALL, PRECISION) == pytest.approx(5 / 6)
    # 11 points: r = 0 .. 0.5 (six points) reach precision 1, r = 0.6 .. 1 (five) 2/3
    assert voc_ap(RECALL, PRECISION, use_07_metric=True) == pytest.approx((6 + 5 * 2 / 3) / 11)
    numpy.testing.assert_allclose(precision_envelope(PRECISION), [1.0, 2 / 3, 2 / 3])


def test_voc_11_points_count_a_recall_of_exactly_three_tenths():
    recall, precision = numpy.array([0.3]), numpy.array([1.0])
    assert voc_ap(recall, precision, use_07_metric=True) == pytest.approx(4 / 11)  # 0, .1, .2, .3
    assert voc_ap(numpy.zeros(0), numpy.zeros(0)) == 0.0


def test_voc_eval_by_hand_and_its_matching_rule_differs_from_coco():
    a, b = [0.0, 0.0, 10.0, 10.0], [3.0, 0.0, 13.0, 10.0]
    second = [1.0, 0.0, 11.0, 10.0]  # IoU .818 with a (taken by the first), .667 with b
    preds, targets = [pred([a, second], [0.9, 0.8])], [target([a, b])]
    result = voc_eval(preds, targets)
    # VOC: the second detection's best ground truth is taken -> FP, even though b is free
    numpy.testing.assert_allclose(result["recall"][1], [0.5, 0.5])
    numpy.testing.assert_allclose(result["precision"][1], [1.0, 0.5])
    assert result["ap"] == {1: pytest.approx(0.5)} and result["map"] == pytest.approx(0.5)
    # COCO: the second detection moves on to the free b -> TP
    assert mean_average_precision(preds, targets)["map_50"] == 1.0


def test_voc_eval_difficult_objects_are_ignored():
    preds = [pred([BOX, FAR], [0.9, 0.8])]
    targets = [target([BOX, FAR], difficult=[False, True])]
    result = voc_eval(preds, targets)
    numpy.testing.assert_allclose(result["recall"][1], [1.0])  # one object counts; FAR dropped
    assert result["map"] == 1.0
    assert voc_eval(preds, [target([FAR], difficult=[True])])["map"] == -1.0  # nothing to score


def test_voc_eval_classes_are_separate():
    preds = [pred([BOX, BOX], [0.9, 0.8], labels=[1, 2])]
    targets = [target([BOX, FAR], labels=[1, 2])]
    result = voc_eval(preds, targets, use_07_metric=True)
    assert result["ap"] == {1: 1.0, 2: 0.0}
    assert result["map"] == pytest.approx(0.5)


# ----- COCO JSON export ----------------------------------------------------------------------


def test_export_by_hand(tmp_path):
    masks = numpy.zeros((1, 3, 2), bool)
    masks[0, 1:, 1] = True
    preds = [pred([[1.0, 2.0, 4.0, 6.0]], [0.7], labels=[3], masks=masks)]
    results = to_coco_results(preds, image_ids=[42])
    # read column by column the mask is 0 0 0 | 0 1 1: runs [4, 2], written "42"
    assert results == [{"image_id": 42, "category_id": 3, "score": 0.7,
                        "bbox": [1.0, 2.0, 3.0, 4.0],  # x, y, w, h
                        "segmentation": {"size": [3, 2], "counts": "42"}}]
    assert "bbox" not in to_coco_results(preds, iou_type="segm")[0]
    assert "segmentation" not in to_coco_results(preds, iou_type="bbox")[0]
    gt = to_coco_ground_truth([target([[0.0, 0.0, 2.0, 3.0]], labels=[3], iscrowd=[True])],
                              categories={3: "cat", 5: "dog"}, image_sizes=[(3, 2)])
    assert gt["images"] == [{"id": 1, "height": 3, "width": 2}]
    assert gt["annotations"] == [{"id": 1, "image_id": 1, "category_id": 3,
                                  "bbox": [0.0, 0.0, 2.0, 3.0], "area": 6.0, "iscrowd": 1}]
    assert gt["categories"] == [{"id": 3, "name": "cat"}, {"id": 5, "name": "dog"}]
    path = save_coco_json(gt, tmp_path / "gt.json")
    assert json.loads(path.read_text()) == gt


def test_export_mask_area_is_the_pixel_count():
    masks = numpy.zeros((1, 4, 4), bool)
    masks[0, :3, :3] = True
    masks[0, 1, 1] = False  # a hole
    gt = to_coco_ground_truth([target([[0.0, 0.0, 3.0, 3.0]], masks=masks)])
    assert gt["annotations"][0]["area"] == 8.0
    assert gt["images"][0] == {"id": 1, "height": 4, "width": 4}


# ----- the pycocotools oracle ------------------------------------------------------------------


def _ring_masks(rng, boxes, size):
    """Box-shaped masks with a rectangular hole in about half of them (COCO masks have holes)."""
    masks = numpy.zeros((len(boxes), size, size), bool)
    for k, (x1, y1, x2, y2) in enumerate(boxes.astype(int)):
        masks[k, y1:y2, x1:x2] = True
        if rng.random() < 0.5 and x2 - x1 > 4 and y2 - y1 > 4:
            masks[k, y1 + 2:y2 - 2, (x1 + x2) // 2:x2 - 2] = False
    return masks


def grid_scene(seed, iou_type, size=96):
    """Boxes snapped to an 8-pixel grid: exact IoU ties everywhere, many crowds, few scores."""
    rng = numpy.random.default_rng(seed)
    preds, targets = [], []

    def boxes(n):
        corner = rng.integers(0, 10, size=(n, 2)) * 8
        side = rng.choice([8, 16, 32, 40, 96], size=(n, 2))
        return numpy.concatenate([corner, numpy.minimum(corner + side, size)], 1).astype(float)

    for _ in range(4):
        m, n = int(rng.integers(0, 8)), int(rng.integers(1, 30))
        t = target(boxes(m), rng.integers(1, 3, m), iscrowd=rng.random(m) < 0.2)
        p = pred(boxes(n), rng.integers(0, 4, n) / 4, rng.integers(1, 4, n))
        if iou_type == "segm":
            t["masks"] = _ring_masks(rng, t["boxes"], size)
            p["masks"] = _ring_masks(rng, p["boxes"], size)
        preds.append(p)
        targets.append(t)
    return preds, targets


def random_scene(seed, iou_type, size=128):
    """Several images and classes with every case pycocotools treats specially.

    Integer corners make exact IoU ties (and ties with the thresholds) common; scores are
    rounded to tenths to tie too. Image 0 gets 130 detections of one class (> maxDets), image 1
    no ground truth, image 2 no detections; label 4 is only ever predicted; about 15% of the
    objects are crowds; sides are drawn so that all three area ranges occur.
    """
    rng = numpy.random.default_rng(seed)
    preds, targets = [], []
    for i in range(6):
        m = 0 if i == 1 else int(rng.integers(1, 6))
        # square-ish objects of every area range, some exactly on a range border (32^2, 96^2)
        side = rng.choice([6, 12, 20, 32, 50, 70, 96, 110], size=(m, 1))
        side = side + rng.integers(-3, 4, size=(m, 2)) * (rng.random((m, 1)) < 0.5)
        corner = rng.integers(0, size - side + 1)
        gt = numpy.concatenate([corner, corner + side], axis=1).astype(float)
        labels = rng.integers(1, 4, size=m)
        t = target(gt, labels, iscrowd=rng.random(m) < 0.15)
        n_near = 0 if (i == 2 or m == 0) else int(rng.integers(1, 12))
        pick = rng.integers(0, max(m, 1), size=n_near)  # detections near objects...
        dets = gt[pick] + rng.integers(-3, 4, size=(n_near, 4))
        wrong = rng.random(n_near) > 0.85  # ...sometimes with the wrong class
        det_labels = numpy.where(wrong, rng.integers(1, 5, n_near), labels[pick])
        # ...and random ones (130 of class 1 in image 0)
        n_random = 130 if i == 0 else (0 if i == 2 else int(rng.integers(0, 6)))
        corner = rng.integers(0, size - 40, size=(n_random, 2))
        extra = numpy.concatenate([corner, corner + rng.integers(2, 40, (n_random, 2))], 1)
        dets = numpy.clip(numpy.concatenate([dets, extra]), 0, size)
        dets[:, 2:] = numpy.maximum(dets[:, 2:], dets[:, :2] + 1)
        det_labels = numpy.r_[det_labels, numpy.ones(n_random, int) if i == 0 else
                              rng.integers(1, 5, n_random)]
        p = pred(dets, numpy.round(rng.random(len(dets)), 1), det_labels)
        if iou_type == "segm":
            t["masks"], p["masks"] = _ring_masks(rng, gt, size), _ring_masks(rng, dets, size)
        preds.append(p)
        targets.append(t)
    return preds, targets


def pycocotools_stats(preds, targets, iou_type):
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = COCO()
        ground_truth.dataset = to_coco_ground_truth(targets)
        ground_truth.createIndex()
        detections = ground_truth.loadRes(to_coco_results(preds, iou_type=iou_type))
        evaluator = COCOeval(ground_truth, detections, iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return dict(zip(KEYS, evaluator.stats[:9].tolist())), evaluator


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
@pytest.mark.parametrize("scene, seed", [(random_scene, s) for s in range(4)]
                         + [(grid_scene, s) for s in range(6)])
def test_equals_pycocotools(scene, seed, iou_type):
    preds, targets = scene(seed, iou_type)
    expected, evaluator = pycocotools_stats(preds, targets, iou_type)
    ours = coco_evaluate(preds, targets, iou_type)
    assert ours.summary() == pytest.approx(expected, abs=1e-6)
    # the whole precision array too (pycocotools lists only the classes of the ground truth)
    numpy.testing.assert_allclose(ours.precision, evaluator.eval["precision"], atol=1e-12)
    numpy.testing.assert_allclose(ours.recall, evaluator.eval["recall"], atol=1e-12)


def test_mask_iou_equals_pycocotools():
    mask_api = pytest.importorskip("pycocotools.mask")
    rng = numpy.random.default_rng(0)
    a = rng.random((5, 12, 9)) < 0.4
    b = rng.random((4, 12, 9)) < 0.4
    crowd = numpy.array([0, 1, 0, 1], numpy.uint8)
    encode = mask_api.encode
    expected = mask_api.iou(encode(numpy.asfortranarray(a.transpose(1, 2, 0).astype(numpy.uint8))),
                            encode(numpy.asfortranarray(b.transpose(1, 2, 0).astype(numpy.uint8))),
                            crowd)
    numpy.testing.assert_allclose(mask_iou(a, b, crowd.astype(bool)), expected, atol=1e-12)


def test_device_arrays_give_the_host_result(xp):
    preds, targets = random_scene(0, "segm")
    expected = mean_average_precision(preds, targets, "segm")

    def on(xp, d):
        return {k: xp.asarray(v) for k, v in d.items()}

    moved = mean_average_precision([on(xp, p) for p in preds], [on(xp, t) for t in targets], "segm")
    assert moved == expected


# ----- plotting ------------------------------------------------------------------------------


def test_plot_pr_curve(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    from tinyseg.viz import plot_pr_curve

    fig = plot_pr_curve(RECALL, PRECISION, label="class 1", ap=5 / 6, path=tmp_path / "pr.png")
    assert (tmp_path / "pr.png").stat().st_size > 0
    ax = fig.axes[0]
    assert "AP 0.833" in [t.get_text() for t in ax.get_legend().get_texts()][0]
    # a second class drawn into the same axes
    assert plot_pr_curve([0.0, 1.0], [1.0, 1.0], ax=ax, label="class 2") is fig
    with pytest.raises(ValueError, match="recall"):
        plot_pr_curve([0.5, 0.2], [1.0, 1.0])


# ----- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize("preds, targets, error, match", [
    ({"boxes": []}, [], TypeError, "preds must be a list"),
    ([pred([BOX], [0.9])], [], ValueError, "one dict per image"),
    ([[BOX]], [target([BOX])], TypeError, r"preds\[0\] must be a dict"),
    ([{"boxes": numpy.zeros((1, 4)), "labels": numpy.ones(1, int)}], [target([BOX])],
     ValueError, r"missing the key\(s\) \['scores'\]"),
    ([pred([BOX], [0.9])], [{"boxes": numpy.zeros((1, 5)), "labels": numpy.ones(1, int)}],
     ValueError, r'targets\[0\]\["boxes"\] must have shape \(N, 4\)'),
    ([pred([BOX], [0.9, 0.8])], [target([BOX])], ValueError,
     r'\["scores"\] must have shape \(1,\)'),
    ([{**pred([BOX], [0.9]), "labels": numpy.array([1.5])}], [target([BOX])], TypeError,
     r'preds\[0\]\["labels"\] must hold integers'),
    ([pred([[5, 0, 1, 10]], [0.9])], [target([BOX])], ValueError, "x1 <= x2"),
    ([pred([BOX], [numpy.nan])], [target([BOX])], ValueError,
     r"scores\"\] must be finite, got nan at index \[0\]"),
    ([pred([BOX], [0.9])], [target([BOX], iscrowd=[2])], ValueError, "0/1"),
])
def test_bad_input_names_the_argument(preds, targets, error, match):
    with pytest.raises(error, match=match):
        mean_average_precision(preds, targets)


def test_bad_segm_input():
    masks = numpy.ones((1, 8, 8), bool)
    with pytest.raises(ValueError, match="iou_type"):
        mean_average_precision([pred([BOX], [0.9])], [target([BOX])], iou_type="keypoints")
    with pytest.raises(ValueError, match="instance_masks"):
        mean_average_precision([pred([BOX], [0.9])], [target([BOX], masks=masks)], iou_type="segm")
    with pytest.raises(TypeError, match="threshold soft masks"):
        mean_average_precision([pred([BOX], [0.9], masks=masks * 0.7)],
                               [target([BOX], masks=masks)], iou_type="segm")
    with pytest.raises(ValueError, match="share the image size"):
        mean_average_precision([pred([BOX], [0.9], masks=numpy.ones((1, 4, 4), bool))],
                               [target([BOX], masks=masks)], iou_type="segm")
    with pytest.raises(ValueError, match="masks1 and masks2"):
        mask_iou(numpy.ones((1, 4, 4), bool), masks)


def test_bad_voc_and_export_input():
    with pytest.raises(ValueError, match="non-decreasing"):
        voc_ap([0.5, 0.2], [1.0, 1.0])
    with pytest.raises(ValueError, match="same length"):
        voc_ap([0.5], [1.0, 1.0])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        voc_ap([0.5], [1.5])
    with pytest.raises(ValueError, match="iou_threshold"):
        voc_eval([pred([BOX], [0.9])], [target([BOX])], iou_threshold=0)
    with pytest.raises(ValueError, match="image_ids"):
        to_coco_results([pred([BOX], [0.9])], image_ids=[1, 2])
    with pytest.raises(ValueError, match="missing"):
        to_coco_ground_truth([target([BOX], labels=[4])], categories=[1, 2])
    with pytest.raises(ValueError, match="image_sizes"):
        to_coco_ground_truth([target([BOX], masks=numpy.ones((1, 8, 8), bool))],
                             image_sizes=[(4, 4)])
