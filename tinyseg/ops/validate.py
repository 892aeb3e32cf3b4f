"""Argument checks shared by every op: a wrong shape or value fails loudly, by name.

A silent broadcast or a negative output size is the worst kind of bug in a
course: the numbers come out, and they are wrong. Every op checks its inputs
with these helpers, so each error names the argument and what was expected.
"""

from __future__ import annotations


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
