"""tinyseg.validate: one policy, TypeError for a wrong type and ValueError for a wrong value."""

import numpy as np
import pytest

from tinyseg.validate import (
    check_bool,
    check_float,
    check_fraction,
    check_int,
    check_int_tuple,
    check_ndim,
    check_nonnegative,
    check_number,
    check_same_shape,
    pair,
)


def test_good_values_come_back_as_python_values():
    assert check_int(np.int64(3), "n", 1) == 3 and type(check_int(np.int64(3), "n", 1)) is int
    assert check_int_tuple([1, 2], "widths") == (1, 2)
    assert check_int_tuple((4, 4, 4), "w", 1, length=3) == (4, 4, 4)
    assert check_fraction(1, "iou_threshold") == 1.0
    assert check_number(np.float32(0.5), "x") == 0.5
    assert check_nonnegative(0, "lr") == 0.0
    assert check_bool(False, "aligned") is False
    assert pair(3, "kernel_size") == (3, 3) and pair((2, 5), "stride") == (2, 5)


@pytest.mark.parametrize("call", [
    lambda: check_int(2.0, "n", 1),
    lambda: check_int(True, "n", 1),
    lambda: check_int("3", "n", 1),
    lambda: check_int_tuple("abc", "widths"),
    lambda: check_int_tuple([1, 2.5], "widths"),
    lambda: check_fraction("0.5", "iou_threshold"),
    lambda: check_fraction(True, "iou_threshold"),
    lambda: check_number(None, "eps"),
    lambda: check_nonnegative("1", "lr"),
    lambda: check_bool(1, "aligned"),
    lambda: pair(2.0, "stride"),
    lambda: check_float(np.zeros(3, dtype=np.int64), "x"),
])
def test_a_wrong_type_is_a_type_error(call):
    with pytest.raises(TypeError):
        call()


@pytest.mark.parametrize("call, name", [
    (lambda: check_int(0, "num_classes", 1), "num_classes"),
    (lambda: check_int_tuple([], "widths"), "widths"),
    (lambda: check_int_tuple([1, 0], "widths"), "widths"),
    (lambda: check_int_tuple([1, 2], "convs", 1, length=5), "convs"),
    (lambda: check_fraction(1.5, "iou_threshold"), "iou_threshold"),
    (lambda: check_fraction(float("nan"), "iou_threshold"), "iou_threshold"),
    (lambda: check_nonnegative(-1e-3, "lr"), "lr"),
    (lambda: check_nonnegative(float("nan"), "lr"), "lr"),
    (lambda: pair((1, 2, 3), "kernel_size"), "kernel_size"),
    (lambda: pair(-1, "pad"), "pad"),
    (lambda: check_ndim(np.zeros((2, 3)), 4, "x", "(N, C, H, W)"), "x"),
    (lambda: check_same_shape(np.zeros(2), np.zeros(3), "input", "target"), "target"),
])
def test_a_wrong_value_is_a_value_error_naming_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()
