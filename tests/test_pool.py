"""Tests of tinyseg/ops/pool.py and the pool section of tinyseg/functional.py.

Every op gets the four-part standard: a float64 gradient check with a random
upstream gradient, fast == naive, shape algebra (hypothesis) and edge cases,
and bad input that names the argument. Max-style ops use tie-free inputs; the
linear ops also get adjoint tests, <A x, y> = <x, A^T y>. Optional oracle
tests compare with PyTorch on the CPU.
"""

from __future__ import annotations

import numpy
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opcheck import assert_backward_matches, random_like

import tinyseg as ts
import tinyseg.functional as F
from tinyseg.backend import to_numpy
from tinyseg.ops import pool as P
from tinyseg.ops import resize as R

SHAPE_SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# (kernel_size, stride, pad): non-overlapping, overlapping, padded, stride > kernel, rectangles
GEOMETRIES = [
    (2, None, 0),
    (3, 2, 1),
    (2, 1, 1),
    (2, 3, 0),
    ((3, 2), (1, 2), (1, 1)),
]


def tie_free(xp, shape, seed=0):
    """Distinct float64 values 0.1 apart, negatives included: no ties, no flips under eps."""
    size = int(numpy.prod(shape))
    values = numpy.random.default_rng(seed).permutation(size).reshape(shape) * 0.1 - size * 0.05
    return xp.asarray(values, dtype=xp.float64)


def inner(xp, a, b):
    return float(xp.sum(a * b))


def values_only(forward):
    """max_pool2d_forward's out is (out, indices); gradient checks look at out alone."""

    def f(*args, **params):
        (out, _), cache = forward(*args, **params)
        return out, cache

    return f


def pooled_indices(xp, shape, kernel_size, stride=None, pad=0, seed=0):
    """Values and indices from a tie-free max pool, as SegNet's decoder receives them.

    The naive loop makes them, so unpooling tests do not hang on the max_pool2d homework.
    """
    return P.max_pool2d_naive(tie_free(xp, shape, seed), kernel_size, stride, pad)


# ===== max_pool2d ==================================================================


@pytest.mark.task("max_pool2d_backward")
@pytest.mark.parametrize("kernel_size, stride, pad", GEOMETRIES)
def test_max_pool2d_backward_gradcheck(xp, kernel_size, stride, pad):
    x = tie_free(xp, (2, 2, 5, 6))
    assert_backward_matches(
        values_only(P.max_pool2d_forward), P.max_pool2d_backward, [x, kernel_size, stride, pad], [0]
    )


@pytest.mark.task("max_pool2d_forward")
@pytest.mark.parametrize("kernel_size, stride, pad", GEOMETRIES)
def test_max_pool2d_matches_naive(xp, kernel_size, stride, pad):
    x = tie_free(xp, (2, 3, 6, 7), seed=3)
    (out, indices), _ = P.max_pool2d_forward(x, kernel_size, stride, pad)
    out_naive, indices_naive = P.max_pool2d_naive(x, kernel_size, stride, pad)
    assert out.dtype == x.dtype and indices.dtype == xp.int64
    assert bool(xp.all(out == out_naive)) and bool(xp.all(indices == indices_naive))


@pytest.mark.task("max_pool2d_forward")
def test_max_pool2d_ties_go_to_first_maximum(xp):
    x = xp.zeros((1, 1, 4, 4))
    x[0, 0, 1, 2] = x[0, 0, 2, 1] = 1.0  # two equal maxima in the middle window
    (out, indices), _ = P.max_pool2d_forward(x, 2, 1, 1)
    _, indices_naive = P.max_pool2d_naive(x, 2, 1, 1)
    assert bool(xp.all(indices == indices_naive))
    assert int(indices[0, 0, 0, 0]) == 0  # window over padding and pixel (0, 0): the real pixel
    assert int(indices[0, 0, 2, 2]) == 1 * 4 + 2  # (1, 2) comes before (2, 1) in row-major order


@pytest.mark.task("max_pool2d_forward")
def test_max_pool2d_negative_inputs_beat_padding(xp):
    x = -1.0 - tie_free(xp, (1, 2, 3, 3)) ** 2  # all negative: zero padding would win
    (out, indices), _ = P.max_pool2d_forward(x, 3, 1, 1)
    assert bool(xp.all(out < 0))
    assert bool(xp.all(xp.take_along_axis(x.reshape(1, 2, -1), indices.reshape(1, 2, -1), 2)
                       == out.reshape(1, 2, -1)))


@pytest.mark.task("max_pool2d_backward")
def test_max_pool2d_float32(xp):
    x = tie_free(xp, (1, 2, 4, 4)).astype(xp.float32)
    (out, indices), _ = P.max_pool2d_forward(x, 2)
    dx = P.max_pool2d_backward(xp.ones_like(out), _)
    assert out.dtype == xp.float32 and dx.dtype == xp.float32 and indices.dtype == xp.int64


@pytest.mark.task("max_pool2d_forward")
@SHAPE_SETTINGS
@given(
    n=st.integers(1, 2), h=st.integers(1, 7), w=st.integers(1, 7),
    kh=st.integers(1, 4), kw=st.integers(1, 4), sh=st.integers(1, 5), sw=st.integers(1, 5),
    pad_h=st.booleans(), pad_w=st.booleans(),
)
def test_max_pool2d_shape_algebra(xp, n, h, w, kh, kw, sh, sw, pad_h, pad_w):
    ph, pw = kh // 2 * pad_h, kw // 2 * pad_w  # 0 or the largest padding allowed
    h_out, w_out = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    x = tie_free(xp, (n, 2, h, w))
    if h_out <= 0 or w_out <= 0:
        with pytest.raises(ValueError, match="kernel_size"):
            P.max_pool2d_forward(x, (kh, kw), (sh, sw), (ph, pw))
        return
    (out, indices), _ = P.max_pool2d_forward(x, (kh, kw), (sh, sw), (ph, pw))
    assert out.shape == indices.shape == (n, 2, h_out, w_out)
    assert bool(xp.all((indices >= 0) & (indices < h * w)))
    picked = xp.take_along_axis(x.reshape(n, 2, -1), indices.reshape(n, 2, -1), axis=2)
    assert bool(xp.all(picked == out.reshape(n, 2, -1)))
    out_naive, indices_naive = P.max_pool2d_naive(x, (kh, kw), (sh, sw), (ph, pw))
    assert bool(xp.all(out == out_naive)) and bool(xp.all(indices == indices_naive))


def test_max_pool2d_1x1_map_and_batch_of_one(xp):
    x = tie_free(xp, (1, 3, 1, 1))
    (out, indices), cache = P.max_pool2d_forward(x, 1)
    assert bool(xp.all(out == x)) and bool(xp.all(indices == 0))
    (out, indices), cache = P.max_pool2d_forward(x, 2, 1, 1)  # four windows see the one pixel
    assert out.shape == (1, 3, 2, 2) and bool(xp.all(indices == 0))
    dout = random_like(xp, out.shape, 2)
    dx = P.max_pool2d_backward(dout, cache)
    assert bool(xp.allclose(dx, dout.sum(axis=(2, 3), keepdims=True)))  # overlaps add


@pytest.mark.parametrize(
    "x_shape, kwargs, exc, name",
    [
        ((2, 3, 4), {"kernel_size": 2}, ValueError, "x"),
        ((1, 1, 4, 4), {"kernel_size": 0}, ValueError, "kernel_size"),
        ((1, 1, 4, 4), {"kernel_size": (2, 2, 2)}, ValueError, "kernel_size"),
        ((1, 1, 4, 4), {"kernel_size": 2.5}, TypeError, "kernel_size"),
        ((1, 1, 4, 4), {"kernel_size": 2, "stride": 0}, ValueError, "stride"),
        ((1, 1, 4, 4), {"kernel_size": 3, "pad": 2}, ValueError, "padding"),
        ((1, 1, 4, 4), {"kernel_size": 2, "pad": -1}, ValueError, "padding"),
        ((1, 1, 2, 2), {"kernel_size": 3}, ValueError, "kernel_size"),
    ],
)
@pytest.mark.parametrize("op", ["max", "avg"])
def test_pool2d_bad_input(xp, op, x_shape, kwargs, exc, name):
    forward = P.max_pool2d_forward if op == "max" else P.avg_pool2d_forward
    with pytest.raises(exc, match=name):
        forward(xp.zeros(x_shape), **kwargs)


@pytest.mark.parametrize("op", [P.max_pool2d_forward, P.avg_pool2d_forward])
def test_pool2d_rejects_integer_input(xp, op):
    with pytest.raises(TypeError, match="x"):
        op(xp.zeros((1, 1, 4, 4), dtype=xp.int64), 2)


def test_max_pool2d_functional(xp):
    x = ts.tensor(tie_free(xp, (1, 2, 5, 5)), requires_grad=True)
    assert ts.gradcheck(lambda t: F.max_pool2d(t, 3, 2, 1), [x])
    out, indices = F.max_pool2d(x, 3, 2, 1, return_indices=True)
    assert isinstance(indices, ts.Tensor) and not indices.requires_grad
    assert indices.dtype == numpy.int64 and out.requires_grad
    assert F.max_pool2d(x.data, 2).shape == (1, 2, 2, 2)  # raw arrays work too


def test_max_pool2d_torch_oracle(xp):
    torch = pytest.importorskip("torch")
    for kernel_size, stride, pad in GEOMETRIES:
        x = tie_free(xp, (2, 3, 7, 6), seed=5)
        (out, indices), cache = P.max_pool2d_forward(x, kernel_size, stride, pad)
        dout = random_like(xp, out.shape, 4)
        dx = P.max_pool2d_backward(dout, cache)
        tx = torch.tensor(to_numpy(x), requires_grad=True)
        t_out, t_indices = torch.nn.functional.max_pool2d(
            tx, kernel_size, stride, pad, return_indices=True
        )
        t_out.backward(torch.tensor(to_numpy(dout)))
        numpy.testing.assert_array_equal(to_numpy(out), t_out.detach().numpy())
        numpy.testing.assert_array_equal(to_numpy(indices), t_indices.numpy())
        numpy.testing.assert_allclose(to_numpy(dx), tx.grad.numpy(), atol=1e-12)


# ===== avg_pool2d ==================================================================


@pytest.mark.task("avg_pool2d_backward")
@pytest.mark.parametrize("kernel_size, stride, pad", GEOMETRIES)
def test_avg_pool2d_backward_gradcheck(xp, kernel_size, stride, pad):
    x = random_like(xp, (2, 2, 5, 6))
    assert_backward_matches(
        P.avg_pool2d_forward, P.avg_pool2d_backward, [x, kernel_size, stride, pad], [0]
    )


@pytest.mark.task("avg_pool2d_forward")
@pytest.mark.parametrize("kernel_size, stride, pad", GEOMETRIES)
def test_avg_pool2d_matches_naive(xp, kernel_size, stride, pad):
    x = random_like(xp, (2, 3, 6, 7), 3)
    out, _ = P.avg_pool2d_forward(x, kernel_size, stride, pad)
    assert out.dtype == x.dtype
    assert bool(xp.allclose(out, P.avg_pool2d_naive(x, kernel_size, stride, pad), atol=1e-12))


@pytest.mark.task("avg_pool2d_backward")
@pytest.mark.parametrize("kernel_size, stride, pad", GEOMETRIES)
def test_avg_pool2d_adjoint(xp, kernel_size, stride, pad):
    x = random_like(xp, (2, 3, 6, 7), 1)
    out, cache = P.avg_pool2d_forward(x, kernel_size, stride, pad)
    y = random_like(xp, out.shape, 2)
    assert inner(xp, out, y) == pytest.approx(inner(xp, x, P.avg_pool2d_backward(y, cache)))


@pytest.mark.task("avg_pool2d_forward")
@SHAPE_SETTINGS
@given(
    n=st.integers(1, 2), h=st.integers(1, 7), w=st.integers(1, 7),
    kh=st.integers(1, 4), kw=st.integers(1, 4), sh=st.integers(1, 5), sw=st.integers(1, 5),
    pad_h=st.booleans(), pad_w=st.booleans(),
)
def test_avg_pool2d_shape_algebra(xp, n, h, w, kh, kw, sh, sw, pad_h, pad_w):
    ph, pw = kh // 2 * pad_h, kw // 2 * pad_w
    h_out, w_out = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    if h_out <= 0 or w_out <= 0:
        return
    x = random_like(xp, (n, 2, h, w))
    out, _ = P.avg_pool2d_forward(x, (kh, kw), (sh, sw), (ph, pw))
    assert out.shape == (n, 2, h_out, w_out)
    naive = P.avg_pool2d_naive(x, (kh, kw), (sh, sw), (ph, pw))
    assert bool(xp.allclose(out, naive, atol=1e-12))


def test_avg_pool2d_counts_padding(xp):
    x = xp.ones((1, 1, 2, 2))
    out, _ = P.avg_pool2d_forward(x, 2, 2, 1)  # each window holds one real pixel of four
    assert bool(xp.allclose(out, 0.25))


def test_avg_pool2d_functional_and_float32(xp):
    x = ts.tensor(random_like(xp, (1, 2, 5, 5)), requires_grad=True)
    assert ts.gradcheck(lambda t: F.avg_pool2d(t, 3, 2, 1), [x])
    out, cache = P.avg_pool2d_forward(x.data.astype(xp.float32), 2)
    assert out.dtype == xp.float32 and P.avg_pool2d_backward(out, cache).dtype == xp.float32


def test_avg_pool2d_torch_oracle(xp):
    torch = pytest.importorskip("torch")
    for kernel_size, stride, pad in GEOMETRIES:
        x = random_like(xp, (2, 3, 7, 6), 5)
        out, _ = P.avg_pool2d_forward(x, kernel_size, stride, pad)
        tx = torch.tensor(to_numpy(x))
        expected = torch.nn.functional.avg_pool2d(tx, kernel_size, stride, pad)
        numpy.testing.assert_allclose(to_numpy(out), expected.numpy(), atol=1e-12)


# ===== global_avg_pool2d ===========================================================


def test_global_avg_pool2d_gradcheck_and_naive(xp):
    x = random_like(xp, (2, 3, 4, 5))
    assert_backward_matches(P.global_avg_pool2d_forward, P.global_avg_pool2d_backward, [x], [0])
    out, cache = P.global_avg_pool2d_forward(x)
    assert out.shape == (2, 3, 1, 1)
    assert bool(xp.allclose(out, P.global_avg_pool2d_naive(x), atol=1e-12))
    y = random_like(xp, out.shape, 2)
    assert inner(xp, out, y) == pytest.approx(inner(xp, x, P.global_avg_pool2d_backward(y, cache)))


def test_global_avg_pool2d_1x1_map(xp):
    x = random_like(xp, (1, 4, 1, 1))
    out, _ = P.global_avg_pool2d_forward(x)
    assert bool(xp.all(out == x))


def test_global_avg_pool2d_functional(xp):
    x = ts.tensor(random_like(xp, (2, 2, 3, 3)), requires_grad=True)
    assert ts.gradcheck(F.global_avg_pool2d, [x])
    assert ts.gradcheck(lambda t: F.adaptive_avg_pool2d(t, (1, 1)), [x])
    with pytest.raises(ValueError, match="output_size"):
        F.adaptive_avg_pool2d(x, 2)
    with pytest.raises(ValueError, match="x"):
        F.global_avg_pool2d(xp.zeros((3, 3)))


def test_global_avg_pool2d_torch_oracle(xp):
    torch = pytest.importorskip("torch")
    x = random_like(xp, (2, 3, 4, 5))
    expected = torch.nn.functional.adaptive_avg_pool2d(torch.tensor(to_numpy(x)), 1)
    numpy.testing.assert_allclose(to_numpy(F.adaptive_avg_pool2d(x, 1).data), expected.numpy())


# ===== max_unpool2d ================================================================


@pytest.mark.task("max_unpool2d_backward")
@pytest.mark.parametrize("kernel_size, stride, pad", GEOMETRIES)
def test_max_unpool2d_backward_gradcheck(xp, kernel_size, stride, pad):
    _, indices = pooled_indices(xp, (2, 2, 6, 5), kernel_size, stride, pad)
    x = random_like(xp, indices.shape, 3)
    size = (6, 5)  # the pooled map's size: the default is smaller where windows do not tile
    assert_backward_matches(
        P.max_unpool2d_forward, P.max_unpool2d_backward,
        [x, indices, kernel_size, stride, pad, size], [0],
    )


@pytest.mark.task("max_unpool2d_forward")
@pytest.mark.parametrize("kernel_size, stride, pad", GEOMETRIES)
def test_max_unpool2d_matches_naive(xp, kernel_size, stride, pad):
    values, indices = pooled_indices(xp, (2, 3, 7, 6), kernel_size, stride, pad)
    out, _ = P.max_unpool2d_forward(values, indices, kernel_size, stride, pad, (7, 6))
    naive = P.max_unpool2d_naive(values, indices, kernel_size, stride, pad, (7, 6))
    assert out.dtype == values.dtype
    assert bool(xp.all(out == naive))  # overlapping windows: each pixel written once


@pytest.mark.task("max_unpool2d_forward")
def test_max_unpool2d_inverts_pooling_on_the_maxima(xp):
    x = tie_free(xp, (1, 2, 4, 6))
    values, indices = P.max_pool2d_naive(x, 2)
    out, _ = P.max_unpool2d_forward(values, indices, 2)
    assert out.shape == x.shape
    assert bool(xp.all((out == x) | (out == 0)))  # the maxima back in place, zeros elsewhere
    assert int((out != 0).sum()) == values.size


@pytest.mark.task("max_unpool2d_backward")
@pytest.mark.parametrize("kernel_size, stride, pad", GEOMETRIES)
def test_max_unpool2d_adjoint(xp, kernel_size, stride, pad):
    _, indices = pooled_indices(xp, (2, 3, 7, 6), kernel_size, stride, pad)
    x = random_like(xp, indices.shape, 1)
    out, cache = P.max_unpool2d_forward(x, indices, kernel_size, stride, pad, (7, 6))
    y = random_like(xp, out.shape, 2)
    assert inner(xp, out, y) == pytest.approx(inner(xp, x, P.max_unpool2d_backward(y, cache)))


@pytest.mark.task("max_unpool2d_forward")
@SHAPE_SETTINGS
@given(
    n=st.integers(1, 2), h=st.integers(1, 4), w=st.integers(1, 4),
    k=st.integers(1, 3), s=st.integers(1, 4), padded=st.booleans(), extra=st.integers(-1, 1),
)
def test_max_unpool2d_output_size_algebra(xp, n, h, w, k, s, padded, extra):
    p = k // 2 * padded
    default = ((h - 1) * s - 2 * p + k, (w - 1) * s - 2 * p + k)
    size = (default[0] + extra * (s > 1), default[1])  # torch allows default +- (stride - 1)
    x = random_like(xp, (n, 2, h, w))
    indices = xp.zeros(x.shape, dtype=xp.int64)  # all to the first pixel: the last write wins
    if min(default) <= 0:
        with pytest.raises(ValueError, match="kernel_size"):
            P.max_unpool2d_forward(x, indices, k, s, p)
        return
    if min(size) <= 0:
        return
    out, _ = P.max_unpool2d_forward(x, indices, k, s, p)
    assert out.shape == (n, 2) + default
    out, _ = P.max_unpool2d_forward(x, indices, k, s, p, output_size=size)
    assert out.shape == (n, 2) + size
    assert bool(xp.all(out[:, :, 0, 0] == x[:, :, -1, -1]))


def test_max_unpool2d_bad_input(xp):
    x = random_like(xp, (1, 1, 2, 2))
    indices = xp.zeros((1, 1, 2, 2), dtype=xp.int64)
    with pytest.raises(ValueError, match="indices"):
        P.max_unpool2d_forward(x, indices[:, :, :1], 2)
    with pytest.raises(TypeError, match="indices"):
        P.max_unpool2d_forward(x, indices.astype(xp.float64), 2)
    with pytest.raises(ValueError, match="indices"):
        P.max_unpool2d_forward(x, indices + 16, 2)  # output is 4x4: index 16 is outside
    with pytest.raises(ValueError, match="indices"):
        P.max_unpool2d_forward(x, indices - 1, 2)
    with pytest.raises(ValueError, match="output_size"):
        P.max_unpool2d_forward(x, indices, 2, output_size=(6, 4))
    with pytest.raises(ValueError, match="output_size"):
        P.max_unpool2d_forward(x, indices, 2, output_size=(4,))
    with pytest.raises(ValueError, match="x"):
        P.max_unpool2d_forward(x[0], indices[0], 2)
    with pytest.raises(ValueError, match="kernel_size"):
        P.max_unpool2d_forward(x, indices, 0)


def test_max_unpool2d_functional_segnet_chain(xp):
    x = ts.tensor(tie_free(xp, (1, 2, 4, 4)), requires_grad=True)

    def encode_decode(t):
        pooled, indices = F.max_pool2d(t, 2, return_indices=True)
        return F.max_unpool2d(pooled * 2.0, indices, 2, output_size=t.shape)

    assert ts.gradcheck(encode_decode, [x])
    assert encode_decode(x).shape == (1, 2, 4, 4)


def test_max_unpool2d_torch_oracle(xp):
    torch = pytest.importorskip("torch")
    for kernel_size, pad, size in [(2, 0, None), (3, 1, (7, 6)), ((2, 3), (1, 1), (7, 6))]:
        x = tie_free(xp, (2, 3, 7, 6), 6)
        (values, indices), _ = P.max_pool2d_forward(x, kernel_size, None, pad)
        out, _ = P.max_unpool2d_forward(values, indices, kernel_size, None, pad, size)
        expected = torch.nn.functional.max_unpool2d(
            torch.tensor(to_numpy(values)), torch.tensor(to_numpy(indices)), kernel_size,
            None, pad, size,
        )
        numpy.testing.assert_array_equal(to_numpy(out), expected.numpy())


OVERLAPPING = [(3, 2, 0), (3, 2, 1), (3, 1, 1), ((3, 2), 1, 0)]


@pytest.mark.parametrize("kernel_size, stride, pad", OVERLAPPING)
def test_max_unpool2d_overlapping_windows_torch_oracle(xp, kernel_size, stride, pad):
    """k > s: a pixel that wins two windows is written once (torch), not summed.

    Backward: torch hands dout to both copies; the true gradient (gradcheck)
    gives it to the copy that was written last, 0 to the one overwritten.
    """
    torch = pytest.importorskip("torch")
    x = tie_free(xp, (2, 2, 7, 6), 4)
    (values, indices), _ = P.max_pool2d_forward(x, kernel_size, stride, pad)
    out, cache = P.max_unpool2d_forward(values, indices, kernel_size, stride, pad, (7, 6))
    naive = P.max_unpool2d_naive(values, indices, kernel_size, stride, pad, (7, 6))
    v = torch.tensor(to_numpy(values), requires_grad=True)
    expected = torch.nn.functional.max_unpool2d(
        v, torch.tensor(to_numpy(indices)), kernel_size, stride, pad, (7, 6)
    )
    numpy.testing.assert_array_equal(to_numpy(out), expected.detach().numpy())
    numpy.testing.assert_array_equal(to_numpy(naive), expected.detach().numpy())
    dout = random_like(xp, out.shape, 5)
    expected.backward(torch.tensor(to_numpy(dout)))
    dx = to_numpy(P.max_unpool2d_backward(dout, cache))
    won = to_numpy(cache.won)
    assert not won.all()  # the geometry does repeat indices
    numpy.testing.assert_array_equal(dx[won], v.grad.numpy()[won])
    assert (dx[~won] == 0).all() and (v.grad.numpy()[~won] != 0).all()
    # the values alone: gradcheck of the masked gather
    assert_backward_matches(
        P.max_unpool2d_forward, P.max_unpool2d_backward,
        [values, indices, kernel_size, stride, pad, (7, 6)], [0],
    )
    # and through the pooling: unpool(max_pool(x)) keeps each winning pixel once
    t = ts.tensor(x, requires_grad=True)

    def encode_decode(a):
        pooled, idx = F.max_pool2d(a, kernel_size, stride, pad, return_indices=True)
        return F.max_unpool2d(pooled, idx, kernel_size, stride, pad, output_size=(7, 6))

    assert ts.gradcheck(encode_decode, [t])


def test_max_unpool2d_repeated_index_last_write_wins(xp):
    x = xp.asarray([[[[1.0, 2.0], [3.0, 4.0]]]])
    indices = xp.asarray([[[[5, 5], [0, 5]]]], dtype=xp.int64)  # 5 three times
    out, cache = P.max_unpool2d_forward(x, indices, 3, 2, 0, (5, 5))
    assert to_numpy(out).reshape(-1)[[0, 5]].tolist() == [3.0, 4.0]
    assert float(out.sum()) == 7.0
    assert to_numpy(cache.won).reshape(-1).tolist() == [False, False, True, True]
    assert bool(xp.all(P.max_unpool2d_naive(x, indices, 3, 2, 0, (5, 5)) == out))


# ===== bed_of_nails_unpool2d ========================================================


@pytest.mark.parametrize("stride", [1, 2, (2, 3)])
def test_bed_of_nails_gradcheck_naive_adjoint(xp, stride):
    x = random_like(xp, (2, 2, 3, 4))
    assert_backward_matches(
        P.bed_of_nails_unpool2d_forward, P.bed_of_nails_unpool2d_backward, [x, stride], [0]
    )
    out, cache = P.bed_of_nails_unpool2d_forward(x, stride)
    assert bool(xp.all(out == P.bed_of_nails_unpool2d_naive(x, stride)))
    y = random_like(xp, out.shape, 2)
    dx = P.bed_of_nails_unpool2d_backward(y, cache)
    assert inner(xp, out, y) == pytest.approx(inner(xp, x, dx))


@SHAPE_SETTINGS
@given(n=st.integers(1, 2), h=st.integers(1, 5), w=st.integers(1, 5),
       sh=st.integers(1, 4), sw=st.integers(1, 4))
def test_bed_of_nails_shape_algebra(xp, n, h, w, sh, sw):
    x = random_like(xp, (n, 2, h, w))
    out, _ = P.bed_of_nails_unpool2d_forward(x, (sh, sw))
    assert out.shape == (n, 2, h * sh, w * sw)
    assert float(xp.abs(out).sum()) == pytest.approx(float(xp.abs(x).sum()))
    assert bool(xp.all(out[:, :, ::sh, ::sw] == x))


def test_bed_of_nails_bad_input_and_functional(xp):
    x = random_like(xp, (1, 1, 2, 2))
    with pytest.raises(ValueError, match="stride"):
        P.bed_of_nails_unpool2d_forward(x, 0)
    with pytest.raises(ValueError, match="x"):
        P.bed_of_nails_unpool2d_forward(x[0], 2)
    t = ts.tensor(x, requires_grad=True)
    assert ts.gradcheck(lambda a: F.bed_of_nails_unpool2d(a, 2), [t])


# ===== nearest resize ===============================================================

NEAREST_SIZES = [(3, 4, 6, 8), (3, 4, 7, 9), (5, 5, 2, 3), (1, 1, 3, 2), (4, 3, 4, 3), (6, 5, 4, 7),
                 (2, 3, 82, 5)]


@pytest.mark.parametrize("h, w, h_out, w_out", NEAREST_SIZES)
def test_upsample_nearest2d_gradcheck_naive_adjoint(xp, h, w, h_out, w_out):
    x = random_like(xp, (2, 2, h, w))
    assert_backward_matches(
        R.upsample_nearest2d_forward, R.upsample_nearest2d_backward, [x, (h_out, w_out)], [0]
    )
    out, cache = R.upsample_nearest2d_forward(x, (h_out, w_out))
    assert out.shape == (2, 2, h_out, w_out) and out.dtype == x.dtype
    assert bool(xp.all(out == R.upsample_nearest2d_naive(x, (h_out, w_out))))
    y = random_like(xp, out.shape, 2)
    dx = R.upsample_nearest2d_backward(y, cache)
    assert inner(xp, out, y) == pytest.approx(inner(xp, x, dx))


@SHAPE_SETTINGS
@given(n=st.integers(1, 2), h=st.integers(1, 6), w=st.integers(1, 6),
       h_out=st.integers(1, 9), w_out=st.integers(1, 9))
def test_upsample_nearest2d_shape_algebra(xp, n, h, w, h_out, w_out):
    x = random_like(xp, (n, 1, h, w))
    out, cache = R.upsample_nearest2d_forward(x, (h_out, w_out))
    assert out.shape == (n, 1, h_out, w_out)
    assert bool(xp.all(out == R.upsample_nearest2d_naive(x, (h_out, w_out))))
    # every output pixel copies one input pixel, so the gradient of ones counts the copies
    counts = R.upsample_nearest2d_backward(xp.ones_like(out), cache)
    assert float(counts.sum()) == n * h_out * w_out


def test_upsample_nearest2d_integer_scale_repeats(xp):
    x = random_like(xp, (1, 2, 3, 2))
    out, _ = R.upsample_nearest2d_forward(x, (6, 6))
    assert bool(xp.all(out == x.repeat(2, axis=2).repeat(3, axis=3)))


def test_upsample_nearest2d_bad_input(xp):
    x = random_like(xp, (1, 1, 2, 2))
    with pytest.raises(ValueError, match="size"):
        R.upsample_nearest2d_forward(x, (0, 2))
    with pytest.raises(ValueError, match="x"):
        R.upsample_nearest2d_forward(x[0], 2)


# sizes where torch's float32 scale and the exact floor(d * in / out) disagree
NEAREST_FLOAT32_SIZES = [(2, 3, 82, 5), (4, 9, 94, 111), (14, 6, 46, 74), (3, 2, 7, 110)]


def test_nearest_source_is_torchs_float32_rule():
    torch = pytest.importorskip("torch")
    for n_in, n_out in [(2, 82), (9, 111), (14, 46), (6, 74), (2, 110), (5, 3), (7, 7), (3, 6)]:
        probe = torch.arange(n_in, dtype=torch.float32).reshape(1, 1, 1, n_in)
        expected = torch.nn.functional.interpolate(probe, size=(1, n_out))[0, 0, 0].long()
        got = R.nearest_source(n_in, n_out, numpy)
        assert got.tolist() == expected.tolist(), (n_in, n_out)
    exact = (numpy.arange(82) * 2) // 82
    assert (R.nearest_source(2, 82, numpy) != exact).any()  # the float32 rounding matters


def test_interpolate_nearest_torch_oracle(xp):
    torch = pytest.importorskip("torch")
    # float32 maps: for float64 ones torch's CPU kernel changes its index arithmetic with
    # the output's size (a parallel path computes part of it in double)
    for h, w, h_out, w_out in NEAREST_SIZES + NEAREST_FLOAT32_SIZES:
        x = random_like(xp, (2, 2, h, w)).astype(xp.float32)
        out = F.interpolate(x, size=(h_out, w_out)).data
        expected = torch.nn.functional.interpolate(torch.tensor(to_numpy(x)), size=(h_out, w_out))
        numpy.testing.assert_array_equal(to_numpy(out), expected.numpy())
    x = random_like(xp, (1, 2, 3, 4))
    for factor in [2, 3, (2, 3)]:
        out = F.interpolate(x, scale_factor=factor).data
        expected = torch.nn.functional.interpolate(torch.tensor(to_numpy(x)), scale_factor=factor)
        numpy.testing.assert_array_equal(to_numpy(out), expected.numpy())


# ===== bilinear resize ==============================================================

BILINEAR_SIZES = [
    (3, 4, 6, 8), (3, 4, 7, 9), (5, 6, 2, 3), (1, 1, 3, 2), (4, 3, 4, 3), (2, 5, 1, 7)
]


@pytest.mark.task("bilinear_resize2d_backward")
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("h, w, h_out, w_out", BILINEAR_SIZES)
def test_bilinear_resize2d_backward_gradcheck(xp, h, w, h_out, w_out, align_corners):
    x = random_like(xp, (2, 2, h, w))
    assert_backward_matches(
        R.bilinear_resize2d_forward, R.bilinear_resize2d_backward,
        [x, (h_out, w_out), align_corners], [0],
    )


@pytest.mark.task("bilinear_resize2d_forward")
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("h, w, h_out, w_out", BILINEAR_SIZES)
def test_bilinear_resize2d_matches_naive(xp, h, w, h_out, w_out, align_corners):
    x = random_like(xp, (2, 3, h, w), 4)
    out, _ = R.bilinear_resize2d_forward(x, (h_out, w_out), align_corners)
    naive = R.bilinear_resize2d_naive(x, (h_out, w_out), align_corners)
    assert out.shape == (2, 3, h_out, w_out) and out.dtype == x.dtype
    assert bool(xp.allclose(out, naive, atol=1e-12))


@pytest.mark.task("bilinear_resize2d_backward")
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("h, w, h_out, w_out", BILINEAR_SIZES)
def test_bilinear_resize2d_adjoint(xp, h, w, h_out, w_out, align_corners):
    x = random_like(xp, (2, 3, h, w), 1)
    out, cache = R.bilinear_resize2d_forward(x, (h_out, w_out), align_corners)
    y = random_like(xp, out.shape, 2)
    dx = R.bilinear_resize2d_backward(y, cache)
    assert inner(xp, out, y) == pytest.approx(inner(xp, x, dx))


@pytest.mark.task("bilinear_resize2d_forward")
@SHAPE_SETTINGS
@given(n=st.integers(1, 2), h=st.integers(1, 6), w=st.integers(1, 6),
       h_out=st.integers(1, 9), w_out=st.integers(1, 9), align_corners=st.booleans())
def test_bilinear_resize2d_shape_algebra(xp, n, h, w, h_out, w_out, align_corners):
    x = random_like(xp, (n, 1, h, w))
    out, _ = R.bilinear_resize2d_forward(x, (h_out, w_out), align_corners)
    assert out.shape == (n, 1, h_out, w_out)
    naive = R.bilinear_resize2d_naive(x, (h_out, w_out), align_corners)
    assert bool(xp.allclose(out, naive, atol=1e-12))
    # weights are a convex combination: constants stay constant, values stay in range
    ones, _ = R.bilinear_resize2d_forward(xp.ones_like(x), (h_out, w_out), align_corners)
    assert bool(xp.allclose(ones, 1.0))
    assert float(out.max()) <= float(x.max()) + 1e-12 and float(out.min()) >= float(x.min()) - 1e-12


@pytest.mark.task("bilinear_resize2d_forward")
def test_bilinear_resize2d_worked_example(xp):
    # 2 -> 4 along one row: the example worked in docs/ops/pool.md
    x = xp.asarray([[[[0.0, 1.0]]]])
    out, _ = R.bilinear_resize2d_forward(x, (1, 4), align_corners=False)
    assert bool(xp.allclose(out[0, 0, 0], xp.asarray([0.0, 0.25, 0.75, 1.0])))
    out, _ = R.bilinear_resize2d_forward(x, (1, 4), align_corners=True)
    assert bool(xp.allclose(out[0, 0, 0], xp.asarray([0.0, 1 / 3, 2 / 3, 1.0])))


def test_bilinear_resize2d_float32(xp):
    x = random_like(xp, (1, 2, 3, 3)).astype(xp.float32)
    out, cache = R.bilinear_resize2d_forward(x, (5, 4))
    assert out.dtype == xp.float32
    assert R.bilinear_resize2d_backward(out, cache).dtype == xp.float32


def test_bilinear_resize2d_bad_input(xp):
    x = random_like(xp, (1, 1, 2, 2))
    with pytest.raises(TypeError, match="align_corners"):
        R.bilinear_resize2d_forward(x, 4, align_corners=None)
    with pytest.raises(ValueError, match="size"):
        R.bilinear_resize2d_forward(x, (4, 0))
    with pytest.raises(ValueError, match="x"):
        R.bilinear_resize2d_forward(x[0], 4)
    with pytest.raises(TypeError, match="x"):
        R.bilinear_resize2d_forward(x.astype(xp.int64), 4)


def test_interpolate_bilinear_torch_oracle(xp):
    torch = pytest.importorskip("torch")
    for h, w, h_out, w_out in BILINEAR_SIZES:
        for align_corners in (False, True):
            x = random_like(xp, (2, 2, h, w))
            t = ts.tensor(x, requires_grad=True)
            out = F.interpolate(
                t, size=(h_out, w_out), mode="bilinear", align_corners=align_corners
            )
            dout = random_like(xp, out.shape, 3)
            out.backward(dout)
            tx = torch.tensor(to_numpy(x), requires_grad=True)
            expected = torch.nn.functional.interpolate(
                tx, size=(h_out, w_out), mode="bilinear", align_corners=align_corners
            )
            expected.backward(torch.tensor(to_numpy(dout)))
            numpy.testing.assert_allclose(to_numpy(out.data), expected.detach().numpy(), atol=1e-12)
            numpy.testing.assert_allclose(to_numpy(t.grad), tx.grad.numpy(), atol=1e-12)
    x = random_like(xp, (1, 1, 3, 5))
    out = F.interpolate(x, scale_factor=2, mode="bilinear").data
    expected = torch.nn.functional.interpolate(
        torch.tensor(to_numpy(x)), scale_factor=2, mode="bilinear"
    )
    numpy.testing.assert_allclose(to_numpy(out), expected.numpy(), atol=1e-12)


# ===== interpolate (functional) =====================================================


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_interpolate_gradcheck(xp, mode):
    x = ts.tensor(random_like(xp, (1, 2, 3, 4)), requires_grad=True)
    assert ts.gradcheck(lambda t: F.interpolate(t, size=(5, 7), mode=mode), [x])
    assert ts.gradcheck(lambda t: F.interpolate(t, scale_factor=2, mode=mode), [x])


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({}, "size"),
        ({"size": 4, "scale_factor": 2}, "scale_factor"),
        ({"scale_factor": 1.5}, "scale_factor"),
        ({"scale_factor": 0.5}, "scale_factor"),
        ({"scale_factor": (2, 2, 2)}, "scale_factor"),
        ({"size": 4, "align_corners": True}, "align_corners"),
        ({"size": 4, "mode": "bicubic"}, "mode"),
        ({"size": 4, "mode": "bilinear", "align_corners": "yes"}, "align_corners"),
        ({"size": (4, -1)}, "size"),
    ],
)
def test_interpolate_bad_input(xp, kwargs, name):
    x = random_like(xp, (1, 1, 2, 2))
    with pytest.raises((ValueError, TypeError), match=name):
        F.interpolate(x, **kwargs)


def test_interpolate_needs_nchw(xp):
    with pytest.raises(ValueError, match="x"):
        F.interpolate(random_like(xp, (2, 2, 2)), size=4)


def test_interpolate_float_scale_factor_integer_valued(xp):
    x = random_like(xp, (1, 1, 2, 3))
    assert F.interpolate(x, scale_factor=2.0, mode="bilinear").shape == (1, 1, 4, 6)


def test_interpolation_matrix_rows_and_edges(xp):
    coord = xp.asarray([[0.0], [0.25], [2.0], [3.5]])  # the last two at/past pixel 2 of 3
    A = R.interpolation_matrix(coord, 3)
    expected = [[1, 0, 0], [0.75, 0.25, 0], [0, 0, 1], [0, 0, 1]]
    numpy.testing.assert_allclose(to_numpy(A), expected)
    two = R.interpolation_matrix(xp.asarray([[0.5, 1.5]]), 3, xp.asarray([[0.5, 0.5]]))
    numpy.testing.assert_allclose(to_numpy(two), [[0.25, 0.5, 0.25]])  # the mean of two samples
