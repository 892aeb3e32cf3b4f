"""Tests of tinyseg/ops/conv.py: im2col/col2im, conv2d, conv_transpose2d.

The four parts of docs/design.md's test standard for each op: float64 gradient checks with a random
upstream gradient, fast == naive loops, shape algebra and edge cases
(hypothesis), bad input. The linear pairs also get adjoint tests:
<im2col x, y> = <x, col2im y> and <conv2d(u), y> = <u, conv_transpose2d(y)>.
"""

from __future__ import annotations

import numpy
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from opcheck import FEW, assert_backward_matches, random_like

import tinyseg as ts
import tinyseg.functional as F
from tinyseg.ops.conv import (
    col2im,
    conv2d_backward,
    conv2d_forward,
    conv2d_naive,
    conv_data_grad,
    conv_output_size,
    conv_transpose2d_backward,
    conv_transpose2d_forward,
    conv_transpose2d_naive,
    im2col,
    im2col_naive,
)


def _dot(xp, a, b):
    return float(xp.sum(a * b))


def _close(xp, a, b, tol=1e-10):
    assert a.shape == b.shape, f"shapes differ: {a.shape} vs {b.shape}"
    assert ts.rel_error(a, b) <= tol


# (N, C_in, H, W, C_out, k, stride, pad, dilation, groups): mixes of every parameter
CONV_CASES = [
    (2, 2, 5, 5, 3, 3, 1, 1, 1, 1),  # "same" 3x3
    (1, 3, 6, 5, 2, 2, 2, 0, 1, 1),  # stride 2, no pad, non-square input
    (2, 4, 6, 6, 4, 3, 2, 1, 1, 2),  # groups 2 with stride
    (1, 2, 7, 6, 2, 3, 1, 2, 2, 1),  # dilation 2 (atrous), pad = d
    (1, 4, 5, 5, 4, 3, 1, 1, 1, 4),  # depthwise
    (2, 3, 4, 5, 2, 1, 3, 0, 1, 1),  # 1x1 kernel, stride > kernel
    (1, 2, 4, 4, 2, 3, 2, 2, 1, 2),  # pad >= k/2, groups 2
]
CONV_IDS = ["same3x3", "stride2", "groups2", "dilated", "depthwise", "1x1-s3", "bigpad"]

# (N, C_in, H, W, C_out, k, stride, pad, output_padding, dilation, groups)
CONVT_CASES = [
    (2, 3, 3, 4, 2, 2, 2, 0, 0, 1, 1),  # U-Net up-convolution 2x2 s2
    (1, 2, 3, 3, 2, 4, 2, 1, 0, 1, 1),  # FCN's k4 s2 p1
    (2, 4, 3, 3, 6, 3, 2, 1, 1, 1, 2),  # output_padding 1, groups 2
    (1, 2, 3, 4, 3, 3, 1, 1, 0, 2, 1),  # dilation 2
    (1, 2, 3, 3, 2, 3, 1, 0, 1, 2, 1),  # output_padding >= stride, allowed by dilation
    (1, 3, 2, 2, 2, 1, 3, 0, 2, 1, 1),  # 1x1 kernel, stride > kernel
]
CONVT_IDS = ["unet", "fcn", "op1-groups", "dilated", "op-by-dilation", "1x1-s3"]


def _conv_inputs(xp, N, C_in, H, W, C_out, k, groups, seed=0, bias=True):
    x = random_like(xp, (N, C_in, H, W), seed)
    w = random_like(xp, (C_out, C_in // groups, k, k), seed + 1)
    b = random_like(xp, (C_out,), seed + 2) if bias else None
    return x, w, b


def _convt_inputs(xp, N, C_in, H, W, C_out, k, groups, seed=0, bias=True):
    x = random_like(xp, (N, C_in, H, W), seed)
    w = random_like(xp, (C_in, C_out // groups, k, k), seed + 1)
    b = random_like(xp, (C_out,), seed + 2) if bias else None
    return x, w, b


# ----- im2col and col2im ---------------------------------------------------------


@pytest.mark.task("im2col")
@pytest.mark.parametrize(
    "shape, k, stride, pad, dilation",
    [
        ((2, 3, 5, 5), (3, 3), 1, 1, 1),
        ((1, 2, 6, 7), (2, 3), (2, 1), (0, 1), 1),
        ((1, 2, 7, 7), (3, 3), 2, 2, 2),
        ((2, 1, 4, 4), (1, 1), 3, 0, 1),
    ],
)
def test_im2col_matches_naive(xp, shape, k, stride, pad, dilation):
    x = random_like(xp, shape)
    fast = im2col(x, *k, stride, pad, dilation)
    assert fast.dtype == x.dtype
    _close(xp, fast, im2col_naive(x, *k, stride, pad, dilation), tol=0)


@pytest.mark.task("col2im")
@pytest.mark.parametrize(
    "shape, k, stride, pad, dilation",
    [
        ((2, 3, 5, 5), (3, 3), 1, 1, 1),  # overlapping windows: sums
        ((1, 2, 6, 7), (2, 3), (2, 1), (0, 1), 1),
        ((1, 2, 7, 7), (3, 3), 2, 2, 2),
        ((2, 1, 5, 5), (1, 1), 3, 0, 1),  # pixels no window reads get 0
    ],
)
def test_col2im_is_the_adjoint_of_im2col(xp, shape, k, stride, pad, dilation):
    x = random_like(xp, shape, 0)
    cols = im2col_naive(x, *k, stride, pad, dilation)
    y = random_like(xp, cols.shape, 1)
    back = col2im(y, shape, *k, stride, pad, dilation)
    assert back.shape == shape
    assert _dot(xp, cols, y) == pytest.approx(_dot(xp, x, back), rel=1e-12)


# ----- conv2d ----------------------------------------------------------------------


@pytest.mark.task("conv2d_forward")
@pytest.mark.parametrize("case", CONV_CASES, ids=CONV_IDS)
def test_conv2d_matches_naive(xp, case):
    N, C_in, H, W, C_out, k, s, p, d, g = case
    x, w, b = _conv_inputs(xp, N, C_in, H, W, C_out, k, g)
    out, _ = conv2d_forward(x, w, b, s, p, d, g)
    expected = conv2d_naive(x, w, b, s, p, d, g)
    assert out.shape == (N, C_out, conv_output_size(H, k, s, p, d), conv_output_size(W, k, s, p, d))
    _close(xp, out, expected)


@pytest.mark.task("conv2d_forward")
def test_conv2d_rectangular_params_match_naive(xp):
    x = random_like(xp, (1, 2, 7, 6), 0)
    w = random_like(xp, (3, 2, 3, 2), 1)
    params = dict(stride=(2, 1), pad=(1, 0), dilation=(1, 2))
    out, _ = conv2d_forward(x, w, None, **params)
    _close(xp, out, conv2d_naive(x, w, None, **params))


@pytest.mark.task("conv2d_forward")
def test_conv2d_float32_stays_float32(xp):
    x, w, b = (a.astype(xp.float32) for a in _conv_inputs(xp, 2, 4, 5, 5, 4, 3, 2))
    out, _ = conv2d_forward(x, w, b, 1, 1, 1, 2)
    assert out.dtype == xp.float32
    expected = conv2d_naive(
        x.astype(xp.float64), w.astype(xp.float64), b.astype(xp.float64), 1, 1, 1, 2
    )
    assert ts.rel_error(out, expected) < 1e-5


@pytest.mark.task("conv2d_backward")
@pytest.mark.parametrize("case", CONV_CASES, ids=CONV_IDS)
def test_conv2d_gradients(xp, case):
    N, C_in, H, W, C_out, k, s, p, d, g = case
    x, w, b = _conv_inputs(xp, N, C_in, H, W, C_out, k, g)
    params = dict(stride=s, pad=p, dilation=d, groups=g)
    assert_backward_matches(
        conv2d_forward, conv2d_backward, (x, w, b), wrt=(0, 1, 2), params=params
    )


@pytest.mark.task("conv2d_backward")
def test_conv2d_backward_image_by_image(xp, monkeypatch):
    """The backward may fold dx a few images at a time; one image per step must agree."""
    import tinyseg.ops.conv

    monkeypatch.setattr(tinyseg.ops.conv, "_CHUNK_BYTES", 1, raising=False)
    x, w, b = _conv_inputs(xp, 3, 4, 4, 5, 2, 3, 2)
    params = dict(stride=(1, 2), pad=1, groups=2)
    assert_backward_matches(
        conv2d_forward, conv2d_backward, (x, w, b), wrt=(0, 1, 2), params=params
    )


@pytest.mark.task("conv2d_backward")
def test_conv2d_backward_without_bias(xp):
    x, w, _ = _conv_inputs(xp, 1, 2, 4, 4, 3, 3, 1, bias=False)
    assert_backward_matches(conv2d_forward, conv2d_backward, (x, w), wrt=(0, 1), params=dict(pad=1))
    out, cache = conv2d_forward(x, w, None, pad=1)
    dx, dw, db = conv2d_backward(random_like(xp, out.shape), cache)
    assert db is None and dx.shape == x.shape and dw.shape == w.shape


@pytest.mark.task("conv2d_backward")
def test_conv2d_backward_float32_stays_float32(xp):
    x, w, b = (a.astype(xp.float32) for a in _conv_inputs(xp, 2, 2, 5, 5, 3, 3, 1))
    out, cache = conv2d_forward(x, w, b, 2, 1)
    grads = conv2d_backward(random_like(xp, out.shape).astype(xp.float32), cache)
    assert [gr.dtype for gr in grads] == [xp.float32] * 3


@pytest.mark.task("conv2d_backward")
def test_conv2d_gradcheck_through_functional(xp):
    x = ts.tensor(random_like(xp, (2, 4, 5, 4), 0), requires_grad=True)
    w = ts.tensor(random_like(xp, (4, 2, 3, 3), 1), requires_grad=True)
    b = ts.tensor(random_like(xp, (4,), 2), requires_grad=True)
    assert ts.gradcheck(
        lambda x, w, b: F.conv2d(x, w, b, stride=(2, 1), padding=1, groups=2), [x, w, b]
    )


@pytest.mark.task("conv2d_backward")
@pytest.mark.parametrize("needs", [(False, True, True), (True, False, True), (True, True, False)])
def test_conv2d_backward_computes_only_the_needed_gradients(xp, needs):
    x, w, b = _conv_inputs(xp, 2, 4, 5, 4, 4, 3, 2)
    out, cache = conv2d_forward(x, w, b, 1, 1, 1, 2)
    dout = random_like(xp, out.shape, 7)
    full = conv2d_backward(dout, cache)
    part = conv2d_backward(dout, cache, needs_input_grad=needs)
    for need, g, ref in zip(needs, part, full):
        assert (g is None) if not need else ts.rel_error(g, ref) == 0


def test_conv2d_on_an_input_without_grad_folds_no_dx(xp, monkeypatch):
    """The first conv of a net sees the image: its dx (a col2im) must not be computed."""
    import tinyseg.ops.conv

    folds = []
    real = tinyseg.ops.conv.col2im
    monkeypatch.setattr(
        tinyseg.ops.conv, "col2im", lambda *a, **k: folds.append(1) or real(*a, **k)
    )
    x_raw, w_raw, b_raw = _conv_inputs(xp, 2, 2, 5, 5, 3, 3, 1)
    x = ts.tensor(x_raw)  # the image: no gradient
    w, b = ts.tensor(w_raw, requires_grad=True), ts.tensor(b_raw, requires_grad=True)
    F.conv2d(x, w, b, padding=1).sum().backward()
    assert folds == [] and x.grad is None
    x2 = ts.tensor(x_raw, requires_grad=True)
    w2, b2 = ts.tensor(w_raw, requires_grad=True), ts.tensor(b_raw, requires_grad=True)
    F.conv2d(x2, w2, b2, padding=1).sum().backward()
    assert folds and x2.grad.shape == x_raw.shape
    assert ts.rel_error(w.grad, w2.grad) == 0 and ts.rel_error(b.grad, b2.grad) == 0


@pytest.mark.task("conv_transpose2d_forward")
@pytest.mark.parametrize("case", CONV_CASES, ids=CONV_IDS)
def test_conv_data_grad_is_conv2d_dx_and_conv_transpose2d(xp, case):
    """One function, two names: conv2d's dx and conv_transpose2d's forward."""
    N, C_in, H, W, C_out, k, s, p, d, G = case
    x, w, b = _conv_inputs(xp, N, C_in, H, W, C_out, k, G)
    out, cache = conv2d_forward(x, w, b, s, p, d, G)
    dout = random_like(xp, out.shape, 3)
    dx = conv_data_grad(dout, w, x.shape, s, p, d, G)
    _close(xp, dx, conv2d_backward(dout, cache)[0], 0)
    H_extra = (H + 2 * p - d * (k - 1) - 1) % s  # rows the conv's floor dropped
    W_extra = (W + 2 * p - d * (k - 1) - 1) % s
    up, _ = conv_transpose2d_forward(dout, w, None, s, p, (H_extra, W_extra), d, G)
    _close(xp, up, dx, 0)


@pytest.mark.task("conv_transpose2d_forward")
def test_conv_transpose2d_forward_image_by_image(xp, monkeypatch):
    import tinyseg.ops.conv

    monkeypatch.setattr(tinyseg.ops.conv, "_CHUNK_BYTES", 1, raising=False)
    x = random_like(xp, (3, 4, 3, 4), 0)
    w = random_like(xp, (4, 1, 3, 3), 1)
    b = random_like(xp, (2,), 2)
    out, _ = conv_transpose2d_forward(x, w, b, 2, 1, 1, 1, 2)
    _close(xp, out, conv_transpose2d_naive(x, w, b, 2, 1, 1, 1, 2))


# ----- conv_transpose2d --------------------------------------------------------------


@pytest.mark.task("conv_transpose2d_forward")
@pytest.mark.parametrize("case", CONVT_CASES, ids=CONVT_IDS)
def test_conv_transpose2d_matches_naive(xp, case):
    N, C_in, H, W, C_out, k, s, p, op, d, g = case
    x, w, b = _convt_inputs(xp, N, C_in, H, W, C_out, k, g)
    out, _ = conv_transpose2d_forward(x, w, b, s, p, op, d, g)
    H_out = (H - 1) * s - 2 * p + d * (k - 1) + op + 1
    W_out = (W - 1) * s - 2 * p + d * (k - 1) + op + 1
    assert out.shape == (N, C_out, H_out, W_out)
    _close(xp, out, conv_transpose2d_naive(x, w, b, s, p, op, d, g))


@pytest.mark.task("conv_transpose2d_forward")
@pytest.mark.parametrize("case", CONVT_CASES, ids=CONVT_IDS)
def test_conv_transpose2d_is_the_adjoint_of_conv2d(xp, case):
    """<conv2d(u, w), y> = <u, conv_transpose2d(y, w)>, with the naive conv2d on the left."""
    N, C_in, H, W, C_out, k, s, p, op, d, g = case
    y, w, _ = _convt_inputs(xp, N, C_in, H, W, C_out, k, g, bias=False)
    back, _ = conv_transpose2d_forward(y, w, None, s, p, op, d, g)
    u = random_like(xp, back.shape, 5)
    # the conv of the big map may have extra rows where output_padding >= stride: they
    # meet no input of the transposed conv, so the identity drops them
    conv_u = conv2d_naive(u, w, None, s, p, d, g)[:, :, :H, :W]
    assert _dot(xp, conv_u, y) == pytest.approx(_dot(xp, u, back), rel=1e-10)


@pytest.mark.task("conv_transpose2d_forward")
def test_conv_transpose2d_float32_stays_float32(xp):
    x, w, b = (a.astype(xp.float32) for a in _convt_inputs(xp, 1, 4, 3, 3, 2, 4, 2))
    out, _ = conv_transpose2d_forward(x, w, b, 2, 1, 0, 1, 2)
    assert out.dtype == xp.float32
    expected = conv_transpose2d_naive(
        x.astype(xp.float64), w.astype(xp.float64), b.astype(xp.float64), 2, 1, 0, 1, 2
    )
    assert ts.rel_error(out, expected) < 1e-5


@pytest.mark.task("conv_transpose2d_backward")
@pytest.mark.parametrize("case", CONVT_CASES, ids=CONVT_IDS)
def test_conv_transpose2d_gradients(xp, case):
    N, C_in, H, W, C_out, k, s, p, op, d, g = case
    x, w, b = _convt_inputs(xp, N, C_in, H, W, C_out, k, g)
    params = dict(stride=s, pad=p, output_padding=op, dilation=d, groups=g)
    assert_backward_matches(
        conv_transpose2d_forward, conv_transpose2d_backward, (x, w, b), wrt=(0, 1, 2), params=params
    )


@pytest.mark.task("conv_transpose2d_backward")
def test_conv_transpose2d_backward_without_bias_float32(xp):
    x, w, _ = _convt_inputs(xp, 1, 2, 3, 3, 2, 2, 1, bias=False)
    out, cache = conv_transpose2d_forward(x.astype(xp.float32), w.astype(xp.float32), None, 2)
    dx, dw, db = conv_transpose2d_backward(random_like(xp, out.shape).astype(xp.float32), cache)
    assert db is None
    assert dx.shape == x.shape and dw.shape == w.shape
    assert dx.dtype == dw.dtype == xp.float32


@pytest.mark.task("conv_transpose2d_backward")
def test_conv_transpose2d_gradcheck_through_functional(xp):
    x = ts.tensor(random_like(xp, (1, 4, 3, 3), 0), requires_grad=True)
    w = ts.tensor(random_like(xp, (4, 1, 3, 3), 1), requires_grad=True)
    b = ts.tensor(random_like(xp, (2,), 2), requires_grad=True)

    def fn(x, w, b):
        return F.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1, groups=2)

    assert ts.gradcheck(fn, [x, w, b])


# ----- shape algebra and edge cases (hypothesis) ------------------------------------

conv_params = st.fixed_dictionaries(
    {
        "N": st.integers(1, 2),
        "groups": st.integers(1, 2),
        "c_in_per_group": st.integers(1, 2),
        "c_out_per_group": st.integers(1, 2),
        "H": st.integers(1, 6),
        "W": st.integers(1, 6),
        "kh": st.integers(1, 3),
        "kw": st.integers(1, 3),
        "stride": st.tuples(st.integers(1, 4), st.integers(1, 4)),  # > kernel too
        "pad": st.tuples(st.integers(0, 3), st.integers(0, 3)),  # >= k/2 too
        "dilation": st.tuples(st.integers(1, 3), st.integers(1, 3)),
    }
)


def _fits(q):
    return all(
        size + 2 * p - d * (k - 1) - 1 >= 0
        for size, p, d, k in (
            (q["H"], q["pad"][0], q["dilation"][0], q["kh"]),
            (q["W"], q["pad"][1], q["dilation"][1], q["kw"]),
        )
    )


@FEW
@given(q=conv_params)
def test_conv2d_shape_algebra_and_naive(xp, q):
    assume(_fits(q))
    G = q["groups"]
    x = random_like(xp, (q["N"], G * q["c_in_per_group"], q["H"], q["W"]), 0)
    w = random_like(xp, (G * q["c_out_per_group"], q["c_in_per_group"], q["kh"], q["kw"]), 1)
    args = (q["stride"], q["pad"], q["dilation"], G)
    out, cache = conv2d_forward(x, w, None, *args)
    H_out = conv_output_size(q["H"], q["kh"], q["stride"][0], q["pad"][0], q["dilation"][0])
    W_out = conv_output_size(q["W"], q["kw"], q["stride"][1], q["pad"][1], q["dilation"][1])
    assert out.shape == (q["N"], w.shape[0], H_out, W_out)
    _close(xp, out, conv2d_naive(x, w, None, *args))
    dx, dw, _ = conv2d_backward(random_like(xp, out.shape, 2), cache)
    assert dx.shape == x.shape and dw.shape == w.shape


@FEW
@given(q=conv_params, op=st.tuples(st.integers(0, 3), st.integers(0, 3)))
def test_conv_transpose2d_shape_algebra_naive_and_adjoint(xp, q, op):
    s, p, d = q["stride"], q["pad"], q["dilation"]
    op = tuple(min(o, max(si, di) - 1) for o, si, di in zip(op, s, d))  # torch's rule
    H_out = (q["H"] - 1) * s[0] - 2 * p[0] + d[0] * (q["kh"] - 1) + op[0] + 1
    W_out = (q["W"] - 1) * s[1] - 2 * p[1] + d[1] * (q["kw"] - 1) + op[1] + 1
    assume(H_out > 0 and W_out > 0)
    G = q["groups"]
    y = random_like(xp, (q["N"], G * q["c_in_per_group"], q["H"], q["W"]), 0)
    w = random_like(xp, (G * q["c_in_per_group"], q["c_out_per_group"], q["kh"], q["kw"]), 1)
    out, cache = conv_transpose2d_forward(y, w, None, s, p, op, d, G)
    assert out.shape == (q["N"], G * q["c_out_per_group"], H_out, W_out)
    _close(xp, out, conv_transpose2d_naive(y, w, None, s, p, op, d, G))
    # the adjoint identity, fast against fast
    u = random_like(xp, out.shape, 2)
    conv_u, _ = conv2d_forward(u, w, None, s, p, d, G)
    conv_u = conv_u[:, :, : q["H"], : q["W"]]
    assert _dot(xp, conv_u, y) == pytest.approx(_dot(xp, u, out), rel=1e-9, abs=1e-9)
    dx, dw, _ = conv_transpose2d_backward(random_like(xp, out.shape, 3), cache)
    assert dx.shape == y.shape and dw.shape == w.shape


@pytest.mark.parametrize(
    "shape, k, s, p, expected",
    [
        ((1, 1, 1, 1), 1, 1, 0, (1, 1)),  # 1x1 map, 1x1 kernel
        ((1, 1, 1, 1), 3, 1, 1, (1, 1)),  # 1x1 map, 3x3 "same"
        ((1, 1, 5, 5), 2, 3, 0, (2, 2)),  # stride > kernel skips pixels
        ((1, 1, 4, 4), 3, 1, 2, (6, 6)),  # pad >= k/2 grows the map
    ],
)
def test_conv2d_edge_cases(xp, shape, k, s, p, expected):
    x = random_like(xp, shape, 0)
    w = random_like(xp, (2, shape[1], k, k), 1)
    out, cache = conv2d_forward(x, w, None, s, p)
    assert out.shape[2:] == expected
    _close(xp, out, conv2d_naive(x, w, None, s, p))
    dx, dw, _ = conv2d_backward(random_like(xp, out.shape, 2), cache)
    assert dx.shape == x.shape


def test_conv_transpose2d_output_padding_adds_no_values(xp):
    x, w, _ = _convt_inputs(xp, 1, 1, 2, 2, 1, 2, 1, bias=False)
    plain, _ = conv_transpose2d_forward(x, w, None, 3)  # k2 s3: gaps between the copies
    padded, _ = conv_transpose2d_forward(x, w, None, 3, 0, 2)
    assert padded.shape == (1, 1, 7, 7) and plain.shape == (1, 1, 5, 5)
    _close(xp, padded[:, :, :5, :5], plain, tol=0)
    assert float(xp.abs(padded[:, :, 5:]).max()) == 0.0


# ----- the functional wrappers ------------------------------------------------------


def test_functional_accepts_raw_arrays_and_tensors(xp):
    x, w, b = _conv_inputs(xp, 1, 2, 4, 4, 3, 3, 1)
    out = F.conv2d(x, w, b, padding=1)
    assert isinstance(out, ts.Tensor) and not out.requires_grad
    _close(xp, out.data, conv2d_naive(x, w, b, 1, 1))
    wt = random_like(xp, (2, 3, 2, 2), 3)
    up = F.conv_transpose2d(ts.tensor(x), ts.tensor(wt), None, stride=2)
    assert up.shape == (1, 3, 8, 8)


def test_functional_conv2d_without_bias_gets_no_bias_grad(xp):
    x = ts.tensor(random_like(xp, (1, 2, 4, 4)), requires_grad=True)
    w = ts.tensor(random_like(xp, (3, 2, 3, 3), 1), requires_grad=True)
    F.conv2d(x, w, dilation=2, padding=2).sum().backward()
    assert x.grad.shape == x.shape and w.grad.shape == w.shape


# ----- bad input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "x_shape, w_shape, b_shape, kwargs, error, match",
    [
        ((2, 3, 5), (4, 3, 3, 3), None, {}, ValueError, "x"),
        ((1, 3, 5, 5), (4, 3, 3), None, {}, ValueError, "weight"),
        ((1, 3, 5, 5), (4, 2, 3, 3), None, {}, ValueError, "weight"),
        ((1, 4, 5, 5), (4, 4, 3, 3), None, {"groups": 2}, ValueError, "weight"),
        ((1, 3, 5, 5), (4, 1, 3, 3), None, {"groups": 2}, ValueError, "groups"),
        ((1, 4, 5, 5), (3, 2, 3, 3), None, {"groups": 2}, ValueError, "groups"),
        ((1, 4, 5, 5), (4, 4, 3, 3), None, {"groups": 0}, ValueError, "groups"),
        ((1, 3, 5, 5), (4, 3, 3, 3), (3,), {}, ValueError, "bias"),
        ((1, 3, 5, 5), (4, 3, 3, 3), (4, 1), {}, ValueError, "bias"),
        ((1, 3, 5, 5), (4, 3, 3, 3), None, {"stride": 0}, ValueError, "stride"),
        ((1, 3, 5, 5), (4, 3, 3, 3), None, {"pad": -1}, ValueError, "padding"),
        ((1, 3, 5, 5), (4, 3, 3, 3), None, {"dilation": 0}, ValueError, "dilation"),
        ((1, 3, 2, 2), (4, 3, 3, 3), None, {}, ValueError, "kernel"),
    ],
)
def test_conv2d_bad_input(xp, x_shape, w_shape, b_shape, kwargs, error, match):
    x = random_like(xp, x_shape, 0)
    w = random_like(xp, w_shape, 1)
    b = None if b_shape is None else random_like(xp, b_shape, 2)
    with pytest.raises(error, match=match):
        conv2d_forward(x, w, b, **kwargs)


def test_conv2d_bad_dtypes(xp):
    x, w, b = _conv_inputs(xp, 1, 2, 4, 4, 3, 3, 1)
    with pytest.raises(TypeError, match="x"):
        conv2d_forward(x.astype(xp.int64), w.astype(xp.int64))
    with pytest.raises(TypeError, match="weight"):
        conv2d_forward(x.astype(xp.float32), w)
    with pytest.raises(TypeError, match="bias"):
        conv2d_forward(x, w, b.astype(xp.float32))
    out, cache = conv2d_forward(x, w, b)
    with pytest.raises(ValueError, match="dout"):
        conv2d_backward(out[:, :2], cache)


@pytest.mark.parametrize(
    "x_shape, w_shape, b_shape, kwargs, match",
    [
        ((2, 3, 5), (3, 4, 3, 3), None, {}, "x"),
        ((1, 3, 5, 5), (3, 4, 3), None, {}, "weight"),
        ((1, 3, 5, 5), (2, 4, 3, 3), None, {}, "weight"),
        ((1, 3, 5, 5), (3, 4, 3, 3), None, {"groups": 2}, "groups"),
        ((1, 3, 5, 5), (3, 4, 3, 3), (3,), {}, "bias"),
        ((1, 3, 5, 5), (3, 4, 3, 3), None, {"stride": 2, "output_padding": 2}, "output_padding"),
        ((1, 3, 5, 5), (3, 4, 3, 3), None, {"output_padding": 1}, "output_padding"),
        ((1, 3, 1, 1), (3, 4, 1, 1), None, {"pad": 1}, "padding"),
    ],
)
def test_conv_transpose2d_bad_input(xp, x_shape, w_shape, b_shape, kwargs, match):
    x = random_like(xp, x_shape, 0)
    w = random_like(xp, w_shape, 1)
    b = None if b_shape is None else random_like(xp, b_shape, 2)
    with pytest.raises(ValueError, match=match):
        conv_transpose2d_forward(x, w, b, **kwargs)


def test_conv_transpose2d_backward_bad_dout(xp):
    x, w, _ = _convt_inputs(xp, 1, 2, 3, 3, 2, 2, 1, bias=False)
    out, cache = conv_transpose2d_forward(x, w, None, 2)
    with pytest.raises(ValueError, match="dout"):
        conv_transpose2d_backward(out[:, :, :-1], cache)


def test_functional_bad_input_names_the_argument(xp):
    x, w, _ = _conv_inputs(xp, 1, 2, 4, 4, 3, 3, 1)
    with pytest.raises(ValueError, match="padding"):
        F.conv2d(x, w, padding=-1)
    with pytest.raises(ValueError, match="output_padding"):
        F.conv_transpose2d(x, random_like(xp, (2, 3, 3, 3)), stride=2, output_padding=3)


# ----- optional oracle: PyTorch CPU -----------------------------------------------------


@pytest.mark.parametrize("case", CONV_CASES, ids=CONV_IDS)
def test_conv2d_matches_torch(case):
    torch = pytest.importorskip("torch")
    N, C_in, H, W, C_out, k, s, p, d, g = case
    x, w, b = _conv_inputs(numpy, N, C_in, H, W, C_out, k, g)
    out, cache = conv2d_forward(x, w, b, s, p, d, g)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    t_out = torch.nn.functional.conv2d(tx, tw, tb, s, p, d, g)
    dout = random_like(numpy, out.shape, 7)
    t_out.backward(torch.tensor(dout))
    _close(numpy, out, t_out.detach().numpy())
    for mine, theirs in zip(conv2d_backward(dout, cache), (tx, tw, tb)):
        _close(numpy, mine, theirs.grad.numpy())


@pytest.mark.parametrize("case", CONVT_CASES, ids=CONVT_IDS)
def test_conv_transpose2d_matches_torch(case):
    torch = pytest.importorskip("torch")
    N, C_in, H, W, C_out, k, s, p, op, d, g = case
    x, w, b = _convt_inputs(numpy, N, C_in, H, W, C_out, k, g)
    out, cache = conv_transpose2d_forward(x, w, b, s, p, op, d, g)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    t_out = torch.nn.functional.conv_transpose2d(tx, tw, tb, s, p, op, g, d)
    dout = random_like(numpy, out.shape, 7)
    t_out.backward(torch.tensor(dout))
    _close(numpy, out, t_out.detach().numpy())
    for mine, theirs in zip(conv_transpose2d_backward(dout, cache), (tx, tw, tb)):
        _close(numpy, mine, theirs.grad.numpy())
