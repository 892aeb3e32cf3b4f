"""tinyseg.metrics (segmentation): confusion matrix, IoU, mIoU, pixel accuracy, Dice."""

from __future__ import annotations

import json

import numpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinyseg as ts
from tinyseg import backend
from tinyseg.metrics import (
    SegmentationMeter,
    confusion_matrix,
    dice_per_class,
    iou_per_class,
    mean_dice,
    mean_iou,
    pixel_accuracy,
    segmentation_scores,
)

# A 2x4 map with three classes, worked by hand.
#   target       pred
#   0 0 1 1      0 1 1 1
#   2 2 2 255    2 0 2 0      (the 255 pixel is ignored, whatever is predicted there)
TARGET = numpy.array([[0, 0, 1, 1], [2, 2, 2, 255]])
PRED = numpy.array([[0, 1, 1, 1], [2, 0, 2, 0]])
# rows = true class, columns = predicted class
CM = numpy.array([
    [1, 1, 0],  # true 0: one called 0, one called 1
    [0, 2, 0],  # true 1: both right
    [1, 0, 2],  # true 2: one called 0, two right
])


def test_confusion_matrix_by_hand(xp):
    cm = confusion_matrix(xp.asarray(PRED), xp.asarray(TARGET), 3)
    assert isinstance(cm, numpy.ndarray) and cm.dtype == numpy.int64
    numpy.testing.assert_array_equal(cm, CM)
    assert cm.sum() == 7  # 8 pixels, one ignored


def test_scores_by_hand():
    # class 0: TP 1, FP 1 (true 2 called 0), FN 1 (called 1) -> IoU 1/3, Dice 2/4
    # class 1: TP 2, FP 1, FN 0 -> IoU 2/3, Dice 4/5
    # class 2: TP 2, FP 0, FN 1 -> IoU 2/3, Dice 4/5
    numpy.testing.assert_allclose(iou_per_class(CM), [1 / 3, 2 / 3, 2 / 3])
    numpy.testing.assert_allclose(dice_per_class(CM), [1 / 2, 4 / 5, 4 / 5])
    assert mean_iou(CM) == pytest.approx(5 / 9)
    assert mean_dice(CM) == pytest.approx(0.7)
    assert pixel_accuracy(CM) == pytest.approx(5 / 7)


def test_dice_is_2iou_over_1_plus_iou():
    rng = numpy.random.default_rng(0)
    cm = rng.integers(0, 50, size=(5, 5))
    iou, dice = iou_per_class(cm), dice_per_class(cm)
    numpy.testing.assert_allclose(dice, 2 * iou / (1 + iou))


def test_absent_class_is_left_out_of_the_means():
    # class 2 is neither in the target nor predicted: IoU 0/0, not 0
    target = numpy.array([0, 0, 1, 1])
    pred = numpy.array([0, 0, 1, 0])
    cm = confusion_matrix(pred, target, 3)
    ious = iou_per_class(cm)
    assert numpy.isnan(ious[2])
    assert mean_iou(cm) == pytest.approx((2 / 3 + 1 / 2) / 2)
    scores = segmentation_scores(cm)
    assert scores["per_class_iou"][2] is None
    json.dumps(scores, allow_nan=False)  # valid JSON: no NaN


def test_class_predicted_but_not_present_counts_as_zero():
    target = numpy.array([0, 0, 0, 0])
    pred = numpy.array([0, 0, 0, 1])
    cm = confusion_matrix(pred, target, 2)
    numpy.testing.assert_allclose(iou_per_class(cm), [3 / 4, 0.0])
    assert mean_iou(cm) == pytest.approx(3 / 8)


def test_all_ignored_gives_nan_scores():
    cm = confusion_matrix(numpy.array([1, 2]), numpy.array([255, 255]), 3)
    assert cm.sum() == 0
    assert numpy.isnan(mean_iou(cm)) and numpy.isnan(pixel_accuracy(cm))


def test_labels_outside_range_in_target_are_not_counted():
    cm = confusion_matrix(numpy.array([0, 1, 1]), numpy.array([0, 7, -1]), 2)
    assert cm.sum() == 1


def _direct_iou(pred, target, c, ignore=255):
    """IoU from sets of pixel positions, the definition itself."""
    keep = target != ignore
    p = set(zip(*numpy.nonzero((pred == c) & keep)))
    g = set(zip(*numpy.nonzero((target == c) & keep)))
    union = p | g
    return len(p & g) / len(union) if union else None


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(1, 5), h=st.integers(1, 9), w=st.integers(1, 9))
def test_agrees_with_direct_set_computation(seed, k, h, w):
    rng = numpy.random.default_rng(seed)
    target = rng.integers(0, k, size=(2, h, w))
    target[rng.random(target.shape) < 0.2] = 255
    pred = rng.integers(0, k, size=(2, h, w))
    scores = segmentation_scores(confusion_matrix(pred, target, k))
    direct = [_direct_iou(pred, target, c) for c in range(k)]
    for got, want in zip(scores["per_class_iou"], direct):
        assert (got is None and want is None) or got == pytest.approx(want)
    present = [v for v in direct if v is not None]
    if present:
        assert scores["miou"] == pytest.approx(numpy.mean(present))
        keep = target != 255
        assert scores["pixel_accuracy"] == pytest.approx((pred == target)[keep].mean())


def test_meter_accumulates_batches_and_takes_logits(xp):
    rng = numpy.random.default_rng(1)
    logits = rng.standard_normal((4, 3, 5, 6)).astype("float32")
    target = rng.integers(0, 3, size=(4, 5, 6))
    target[0, 0, :] = 255
    meter = SegmentationMeter(3)
    meter.update(ts.tensor(xp.asarray(logits[:2])), xp.asarray(target[:2]))  # Tensor logits
    meter.update(xp.asarray(logits[2:].argmax(axis=1)), xp.asarray(target[2:]))  # labels
    whole = confusion_matrix(logits.argmax(axis=1), target, 3)
    numpy.testing.assert_array_equal(meter.cm, whole)
    scores = meter.compute()
    assert set(scores) == {"miou", "pixel_accuracy", "dice", "per_class_iou"}
    assert len(scores["per_class_iou"]) == 3
    meter.reset()
    assert meter.cm.sum() == 0
    assert backend.device_of(meter.cm) == "cpu"


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="same shape"):
        confusion_matrix(numpy.zeros((2, 3), int), numpy.zeros((3, 2), int), 2)
    with pytest.raises(ValueError, match="pred holds label 5"):
        confusion_matrix(numpy.array([5]), numpy.array([0]), 2)
    with pytest.raises(TypeError, match="pred must hold integer"):
        confusion_matrix(numpy.zeros(3), numpy.zeros(3, int), 2)
    with pytest.raises(ValueError, match="num_classes"):
        confusion_matrix(numpy.zeros(3, int), numpy.zeros(3, int), 0)
    with pytest.raises(ValueError, match="cm must be a square"):
        iou_per_class(numpy.zeros((2, 3)))
    with pytest.raises(ValueError, match="num_classes"):
        SegmentationMeter(3).update(numpy.zeros((1, 4, 2, 2)), numpy.zeros((1, 2, 2), int))
