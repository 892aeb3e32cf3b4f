"""The backward checks must teach: a wrong gradient is named and shown, on the first line.

The grader prints only the first line of a failing assertion, so that line must say which
gradient is wrong (dx, dw, db: the forward's argument names) and where, with both values.
"""

from __future__ import annotations

import re

import pytest
from opcheck import assert_backward_matches, gradient_name, random_like

import tinyseg.ops.conv as conv
from tinyseg.gradcheck import worst_element

WORST = re.compile(
    r"worst at \((\d+), (\d+), (\d+), (\d+)\): analytic (\S+), numerical (\S+)$"
)


def _doubled_dw(dout, cache, needs_input_grad=(True, True, True)):
    dx, dw, db = _right_backward(dout, cache, needs_input_grad)
    return dx, 2 * dw, db


_right_backward = conv.conv2d_backward


def test_wrong_dw_is_named_with_its_worst_element(xp, monkeypatch):
    monkeypatch.setattr(conv, "conv2d_backward", _doubled_dw)
    x, w = random_like(xp, (2, 3, 5, 5), 1), random_like(xp, (4, 3, 3, 3), 2)
    b = random_like(xp, (4,), 3)
    with pytest.raises(AssertionError) as info:
        assert_backward_matches(
            conv.conv2d_forward, conv.conv2d_backward, (x, w, b), wrt=(0, 1, 2),
            params=dict(pad=1),
        )
    first = str(info.value).splitlines()[0]
    assert first.startswith("dw is wrong: rel error 0.333"), first
    match = WORST.search(first)
    assert match, first
    index = tuple(int(g) for g in match.groups()[:4])
    assert all(0 <= i < n for i, n in zip(index, w.shape))
    analytic, numerical = float(match.group(5)), float(match.group(6))
    assert analytic == pytest.approx(2 * numerical, rel=1e-3)  # the doubling, shown


def test_right_backward_passes(xp):
    x, w = random_like(xp, (1, 2, 4, 4), 1), random_like(xp, (3, 2, 3, 3), 2)
    assert_backward_matches(conv.conv2d_forward, conv.conv2d_backward, (x, w), wrt=(0, 1))


def test_wrong_shape_and_missing_gradient_are_named(xp):
    x, w = random_like(xp, (1, 2, 4, 4), 1), random_like(xp, (3, 2, 3, 3), 2)

    def transposed(dout, cache):
        dx, dw, _ = conv.conv2d_backward(dout, cache)
        return dx, dw.reshape(-1), None

    wrong_shape = r"^dw is wrong: shape \(54,\), expected \(3, 2, 3, 3\)"
    with pytest.raises(AssertionError, match=wrong_shape):
        assert_backward_matches(conv.conv2d_forward, transposed, (x, w), wrt=(0, 1))

    def no_dx(dout, cache):
        return (None,) + conv.conv2d_backward(dout, cache)[1:]

    with pytest.raises(AssertionError, match="^dx is wrong: backward returned None"):
        assert_backward_matches(conv.conv2d_forward, no_dx, (x, w), wrt=(0, 1))


def test_gradient_names_follow_the_forward_signature():
    assert gradient_name(conv.conv2d_forward, 0) == "dx"
    assert gradient_name(conv.conv2d_forward, 2) == "db"
    assert gradient_name(lambda *a: a, 1) == "the gradient of argument 1"


def test_worst_element_picks_the_largest_difference(xp):
    a = xp.asarray([[1.0, 2.0], [3.0, 4.0]])
    n = xp.asarray([[1.0, 2.0], [3.0, 9.0]])
    assert worst_element(a, n) == "worst at (1, 1): analytic 4, numerical 9"
    with pytest.raises(ValueError, match="shapes differ"):
        worst_element(a, n.reshape(-1))
