"""Argument checks: a wrong shape or value fails loudly, by name.

A silent broadcast or a negative output size is the worst kind of bug in a
course: the numbers come out, and they are wrong. Every layer of tinyseg (ops,
layers, models, data, boxes, metrics) checks its arguments with these helpers,
so each error names the argument and what was expected.

One policy: a **TypeError** when the argument has the wrong type (a float where
an int belongs, a string for a number, a bool for a count), a **ValueError**
when the type is right and the value is not (a negative size, a fraction above
1, an array of the wrong shape).

This module is not an operator: it sits beside the backend, imports nothing of
tinyseg (only numpy, for the value checks of host arrays), and anything may
import it. Checks that only one op needs (the channels of a convolution, the
labels of a cross entropy) stay private in that op's file, next to the maths
they protect.
"""

from __future__ import annotations

import numbers

import numpy

from .backend import to_numpy


def pair(value, name: str, minimum: int = 0) -> tuple[int, int]:
    """An int or a 2-sequence of ints, as (height, width), each >= minimum."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair (h, w), got {value!r}")
        values = tuple(value)
    else:
        values = (value, value)
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) and not hasattr(v, "__index__"):
            raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
        if int(v) < minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return int(values[0]), int(values[1])


def check_ndim(x, ndim: int, name: str, layout: str) -> None:
    """Require ``x.ndim == ndim``; ``layout`` describes the expected shape, e.g. "(N, C, H, W)"."""
    if getattr(x, "ndim", None) != ndim:
        shape = getattr(x, "shape", type(x).__name__)
        raise ValueError(f"{name} must have shape {layout}, got {shape}")


def check_float(x, name: str) -> None:
    if getattr(getattr(x, "dtype", None), "kind", None) != "f":
        got = getattr(x, "dtype", type(x))
        raise TypeError(f"{name} must be a floating-point array, got dtype {got}")


def check_same_shape(a, b, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name_b} must have the shape of {name_a} {a.shape}, got {b.shape}")


def check_int(value, name: str, minimum: int) -> int:
    """A whole number (any integer type, not bool) >= minimum, returned as a Python int."""
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise TypeError(f"{name} must be an int >= {minimum}, got {value!r}")
    if int(value) < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def check_int_tuple(values, name: str, minimum: int = 1, length: int | None = None
                    ) -> tuple[int, ...]:
    """A non-empty sequence of ints, each >= minimum (and ``length`` of them, if given)."""
    what = f"{length} ints" if length else "a non-empty sequence of ints"
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise TypeError(f"{name} must be {what} >= {minimum}, got {values!r}")
    values = tuple(values)
    if not values or length is not None and len(values) != length:
        raise ValueError(f"{name} must be {what} >= {minimum}, got {values!r}")
    return tuple(check_int(v, f"each entry of {name}", minimum) for v in values)


def check_number(value, name: str) -> float:
    """A real number (not bool), returned as a Python float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    return float(value)


def check_nonnegative(value, name: str) -> float:
    """A real number >= 0 (NaN rejected), as a Python float."""
    value = check_number(value, name)
    if not value >= 0.0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    return value


def check_fraction(value, name: str) -> float:
    """A real number in [0, 1] (a threshold or a fraction), as a Python float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number in [0, 1], got {value!r}")
    if not 0.0 <= float(value) <= 1.0:  # also rejects NaN
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return float(value)


def check_bool(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def first_bad_index(bad) -> tuple:
    """The index (a tuple, row-major) of the first True in a boolean host array, or None."""
    flat = numpy.flatnonzero(numpy.asarray(bad))
    if flat.size == 0:
        return None
    return tuple(int(i) for i in numpy.unravel_index(flat[0], numpy.shape(bad)))


def check_finite(array, name: str) -> None:
    """Require every value of a host (numpy) array to be finite; name the first bad index.

    A NaN or an infinity in boxes or scores does not raise by itself: a comparison with
    NaN is simply False, so an IoU comes out 0 and NMS keeps the box. Call this on data
    that is already on the host; on a device array it would be a sync (``boxes.py`` and
    ``ops/roi.py`` fold their checks into a copy they make anyway).
    """
    values = numpy.asarray(array)
    if values.dtype.kind not in "fc" or values.size == 0:
        return  # integers are always finite
    index = first_bad_index(~numpy.isfinite(values))
    if index is not None:
        raise ValueError(f"{name} must be finite, got {values[index].item()!r} at index "
                         f"{list(index)}")


def check_ordered_boxes(boxes, name: str) -> None:
    """Require x1 <= x2 and y1 <= y2 in every row of a finite host (N, 4) xyxy array."""
    values = numpy.asarray(boxes)
    bad = (values[:, 2] < values[:, 0]) | (values[:, 3] < values[:, 1])
    index = first_bad_index(bad)
    if index is not None:
        raise ValueError(f"{name} must be xyxy boxes with x1 <= x2 and y1 <= y2, got "
                         f"{values[index[0]].tolist()} at index {index[0]} (an inverted box)")


def pair_of(value, name: str, minimum: float, kind=numbers.Real) -> tuple:
    """A number or a pair (y, x) of numbers >= minimum."""
    values = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(values) != 2:
        raise ValueError(f"{name} must be a number or a pair (height, width), got {value!r}")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, kind):
            raise TypeError(f"{name} must be a number or a pair (height, width), got {value!r}")
        if v < minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return values


def check_box_values(boxes, name: str = "boxes") -> None:
    """Require finite xyxy boxes with x1 <= x2 and y1 <= y2, naming the first bad one.

    On a device array this is one copy to the host (a sync; see "Bad values" in boxes.py).
    """
    values = to_numpy(boxes)
    check_finite(values, name)
    check_ordered_boxes(values, name)
