"""Tests for tinyseg/ops/norm.py (batch normalisation) and F.batch_norm.

Gradients w.r.t. x, weight and bias in training and eval mode with random upstream
gradients; fast == naive (running statistics included); running-stat update against
torch's formula; edge cases (1x1 maps, batch of one); bad input named; torch oracle.
"""

from __future__ import annotations

import warnings

import numpy
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opcheck import assert_backward_matches, random_like

import tinyseg as ts
import tinyseg.functional as F
from tinyseg.backend import to_numpy
from tinyseg.ops import norm as B

SHAPES = [(4, 3), (3, 2, 5), (2, 3, 2, 3)]


def assert_close(a, b, rtol=1e-10, atol=1e-12):
    numpy.testing.assert_allclose(to_numpy(a), to_numpy(b), rtol=rtol, atol=atol)


def make(xp, shape, seed=0, affine=True):
    """x, running_mean, running_var (positive), weight, bias for channel count shape[1]."""
    C = shape[1]
    x = 2 * random_like(xp, shape, seed) + 0.5
    running_mean = 0.1 * random_like(xp, (C,), seed + 1)
    running_var = 0.5 + xp.abs(random_like(xp, (C,), seed + 2))
    weight = random_like(xp, (C,), seed + 3) if affine else None
    bias = random_like(xp, (C,), seed + 4) if affine else None
    return x, running_mean, running_var, weight, bias


def reference(x, running_mean, running_var, weight, bias, training, momentum=0.1, eps=1e-5):
    """Batch norm written directly in numpy: (out, new_running_mean, new_running_var)."""
    x = to_numpy(x)
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    rm, rv = to_numpy(running_mean).copy(), to_numpy(running_var).copy()
    if training:
        M = x.size // x.shape[1]
        mean, var = x.mean(axis=axes), x.var(axis=axes)
        rm = (1 - momentum) * rm + momentum * mean
        rv = (1 - momentum) * rv + momentum * x.var(axis=axes, ddof=1)
        assert numpy.allclose(x.var(axis=axes, ddof=1), var * M / (M - 1))
    else:
        mean, var = to_numpy(running_mean), to_numpy(running_var)
    out = (x - mean.reshape(shape)) / numpy.sqrt(var.reshape(shape) + eps)
    if weight is not None:
        out = out * to_numpy(weight).reshape(shape)
    if bias is not None:
        out = out + to_numpy(bias).reshape(shape)
    return out, rm, rv


# ---------------------------------------------------------------- forward ---


@pytest.mark.task("batch_norm_forward")
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("training", [True, False])
def test_forward_and_running_stats_match_formula(xp, shape, training):
    x, rm, rv, w, b = make(xp, shape, seed=1)
    expected, rm_new, rv_new = reference(x, rm, rv, w, b, training, momentum=0.2)
    rm_id, rv_id = id(rm), id(rv)
    out, _ = B.batch_norm_forward(x, rm, rv, w, b, training=training, momentum=0.2)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert_close(out, expected)
    assert id(rm) == rm_id and id(rv) == rv_id
    assert_close(rm, rm_new)  # updated in place in training; unchanged in eval
    assert_close(rv, rv_new)


@pytest.mark.task("batch_norm_forward")
@pytest.mark.parametrize("shape", SHAPES)
def test_training_output_is_normalised(xp, shape):
    x, rm, rv, _, _ = make(xp, shape, seed=2, affine=False)
    out, _ = B.batch_norm_forward(x, rm, rv, training=True)
    axes = (0,) + tuple(range(2, x.ndim))
    assert_close(out.mean(axis=axes), numpy.zeros(shape[1]), atol=1e-12)
    assert_close(out.var(axis=axes), numpy.ones(shape[1]), rtol=1e-4)


@pytest.mark.task("batch_norm_forward")
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_fast_matches_naive(xp, shape, training, affine):
    x, rm, rv, w, b = make(xp, shape, seed=3, affine=affine)
    rm2, rv2 = rm.copy(), rv.copy()
    out, _ = B.batch_norm_forward(x, rm, rv, w, b, training=training)
    naive = B.batch_norm_naive(x, rm2, rv2, w, b, training=training)
    assert_close(out, naive)
    assert_close(rm, rm2)
    assert_close(rv, rv2)


@pytest.mark.task("batch_norm_forward")
def test_training_without_running_stats(xp):
    x, _, _, w, b = make(xp, (3, 2, 2, 2), seed=4)
    out, _ = B.batch_norm_forward(x, None, None, w, b, training=True)
    expected, _, _ = reference(x, numpy.zeros(2), numpy.ones(2), w, b, True)
    assert_close(out, expected)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("training", [True, False])
def test_dtype_kept(xp, dtype, training):
    x, rm, rv, w, b = make(xp, (2, 3, 2, 2), seed=5)
    x, w, b = x.astype(dtype), w.astype(dtype), b.astype(dtype)
    out, cache = B.batch_norm_forward(x, rm, rv, w, b, training=training)
    dx, dw, db = B.batch_norm_backward(xp.ones_like(out), cache)
    assert out.dtype == dx.dtype == dw.dtype == db.dtype == x.dtype


# ----------------------------------------------------------- edge cases ---


@pytest.mark.parametrize("training", [True, False])
def test_one_by_one_maps(xp, training):
    x, rm, rv, w, b = make(xp, (3, 2, 1, 1), seed=6)
    expected, rm_new, rv_new = reference(x, rm, rv, w, b, training)
    out, _ = B.batch_norm_forward(x, rm, rv, w, b, training=training)
    assert_close(out, expected)
    assert_close(rv, rv_new)
    assert_backward_matches(
        B.batch_norm_forward, B.batch_norm_backward, (x, rm, rv, w, b), wrt=[0, 3, 4],
        params={"training": training},
    )


def test_batch_of_one_in_eval_mode(xp):
    x, rm, rv, w, b = make(xp, (1, 3, 1, 1), seed=7)
    out, _ = B.batch_norm_forward(x, rm, rv, w, b, training=False)
    assert_close(out, reference(x, rm, rv, w, b, False)[0])
    # one image with a 2x2 map still has 4 values per channel: training works
    x, rm, rv, w, b = make(xp, (1, 3, 2, 2), seed=8)
    out, _ = B.batch_norm_forward(x, rm, rv, w, b, training=True)
    assert_close(out, reference(x, rm, rv, w, b, True)[0])


def test_single_value_per_channel_in_training_raises(xp):
    for shape in [(1, 3), (1, 3, 1), (1, 3, 1, 1)]:
        x, rm, rv, w, b = make(xp, shape, seed=9)
        with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
            B.batch_norm_forward(x, rm, rv, w, b, training=True)
        out, _ = B.batch_norm_forward(x, rm, rv, w, b, training=False)  # fine in eval
        assert out.shape == shape


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("training", [True, False])
def test_stable_at_large_inputs(xp, dtype, training):
    x = xp.asarray([[1e4, -1e4], [-1e4, -1e4], [1e4, 3.0]], dtype=dtype)
    rm, rv = xp.zeros(2, dtype=dtype), xp.ones(2, dtype=dtype)
    dout = random_like(xp, x.shape, seed=10).astype(dtype)
    with warnings.catch_warnings(), numpy.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        out, cache = B.batch_norm_forward(x, rm, rv, xp.ones(2, dtype), None, training=training)
        grads = B.batch_norm_backward(dout, cache)
    for a in (out, grads[0], grads[1], rm, rv):
        assert bool(xp.isfinite(a).all())
    # a constant channel has variance 0: x_hat = 0, still finite thanks to eps
    x = xp.full((4, 1, 2, 2), 1e4, dtype=dtype)
    out, cache = B.batch_norm_forward(x, None, None, training=True)
    assert bool(xp.isfinite(B.batch_norm_backward(xp.ones_like(x), cache)[0]).all())


@given(
    n=st.integers(1, 3),
    c=st.integers(1, 3),
    spatial=st.lists(st.integers(1, 3), min_size=0, max_size=2),
    training=st.booleans(),
)
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_shapes(xp, n, c, spatial, training):
    shape = (n, c) + tuple(spatial)
    M = n * int(numpy.prod(spatial))
    x, rm, rv, w, b = make(xp, shape, seed=11)
    if training and M == 1:
        with pytest.raises(ValueError, match="per channel"):
            B.batch_norm_forward(x, rm, rv, w, b, training=True)
        return
    out, cache = B.batch_norm_forward(x, rm, rv, w, b, training=training)
    dx, dw, db = B.batch_norm_backward(xp.ones_like(out), cache)
    assert out.shape == dx.shape == shape and dw.shape == db.shape == (c,)
    if training:  # a constant upstream gradient carries no information through a mean shift
        assert_close(dx, xp.zeros(shape), atol=1e-10)


# --------------------------------------------------------------- backward ---


@pytest.mark.task("batch_norm_backward")
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("training", [True, False])
def test_backward_gradcheck(xp, shape, training):
    x, rm, rv, w, b = make(xp, shape, seed=12)
    assert_backward_matches(
        B.batch_norm_forward, B.batch_norm_backward, (x, rm, rv, w, b), wrt=[0, 3, 4],
        params={"training": training, "momentum": 0.3},
    )


@pytest.mark.task("batch_norm_backward")
@pytest.mark.parametrize("training", [True, False])
def test_backward_without_affine(xp, training):
    x, rm, rv, _, _ = make(xp, (3, 2, 2, 2), seed=13)
    assert_backward_matches(
        B.batch_norm_forward, B.batch_norm_backward, (x, rm, rv), wrt=[0],
        params={"training": training},
    )
    out, cache = B.batch_norm_forward(x, rm, rv, training=training)
    _, dw, db = B.batch_norm_backward(random_like(xp, x.shape), cache)
    assert dw is None and db is None


@pytest.mark.task("batch_norm_backward")
def test_backward_compact_formula(xp):
    x, rm, rv, w, b = make(xp, (4, 2, 3), seed=14)
    dout = random_like(xp, x.shape, seed=15)
    out, cache = B.batch_norm_forward(x, rm, rv, w, b, training=True)
    dx, dw, db = B.batch_norm_backward(dout, cache)
    xn, dn, wn = to_numpy(x), to_numpy(dout), to_numpy(w)
    axes = (0, 2)
    sigma = numpy.sqrt(xn.var(axis=axes, keepdims=True) + 1e-5)
    x_hat = (xn - xn.mean(axis=axes, keepdims=True)) / sigma
    gamma = wn.reshape(1, 2, 1)
    dout_mean = dn.mean(axis=axes, keepdims=True)
    proj = (dn * x_hat).mean(axis=axes, keepdims=True)
    expected = gamma / sigma * (dn - dout_mean - x_hat * proj)
    assert_close(dx, expected)
    assert_close(dw, (dn * x_hat).sum(axis=(0, 2)))
    assert_close(db, dn.sum(axis=(0, 2)))


# -------------------------------------------------------------- bad input ---


def test_bad_inputs_name_the_argument(xp):
    x, rm, rv, w, b = make(xp, (2, 3, 2, 2), seed=16)
    wrong = random_like(xp, (4,), seed=0)
    for name, position in [("running_mean", 1), ("running_var", 2), ("weight", 3), ("bias", 4)]:
        args = [x, rm, rv, w, b]
        args[position] = wrong
        with pytest.raises(ValueError, match=name):
            B.batch_norm_forward(*args, training=True)
        with pytest.raises(ValueError, match=name):
            B.batch_norm_naive(*args)
    with pytest.raises(ValueError, match="x must have shape"):
        B.batch_norm_forward(x[0, 0, 0], rm, rv)
    with pytest.raises(ValueError, match="x must have shape"):
        B.batch_norm_forward(x[None], rm, rv)
    with pytest.raises(TypeError, match="x"):
        B.batch_norm_forward(xp.ones((2, 3), dtype="int64"), rm, rv)
    with pytest.raises(ValueError, match="running_mean"):
        B.batch_norm_forward(x, None, None, training=False)
    with pytest.raises(ValueError, match="momentum"):
        B.batch_norm_forward(x, rm, rv, training=True, momentum=1.5)
    with pytest.raises(ValueError, match="eps"):
        B.batch_norm_forward(x, rm, rv, eps=0)
    with pytest.raises(TypeError, match="training"):
        B.batch_norm_forward(x, rm, rv, training="train")


# ---------------------------------------------------- functional / autograd ---


@pytest.mark.parametrize("training", [True, False])
def test_functional_gradcheck(xp, training):
    x, rm, rv, w, b = make(xp, (3, 2, 2, 2), seed=17)
    xt, wt, bt = (ts.tensor(a, requires_grad=True) for a in (x, w, b))

    def fn(x, w, b):
        return F.batch_norm(x, rm, rv, w, b, training=training)

    assert ts.gradcheck(fn, [xt, wt, bt])


def test_functional_updates_tensor_buffers_in_place(xp):
    x, rm, rv, w, b = make(xp, (4, 2, 3, 3), seed=18)
    expected, rm_new, rv_new = reference(x, rm, rv, w, b, True, momentum=0.5)
    rm_t, rv_t = ts.tensor(rm.copy()), ts.tensor(rv.copy())
    data_mean = rm_t.data
    out = F.batch_norm(ts.tensor(x, requires_grad=True), rm_t, rv_t, ts.tensor(w), b,
                       training=True, momentum=0.5)
    assert_close(out.data, expected)
    assert rm_t.data is data_mean
    assert_close(rm_t.data, rm_new)
    assert_close(rv_t.data, rv_new)
    F.batch_norm(x, rm, rv, training=True, momentum=0.5)  # raw arrays are updated too
    assert_close(rm, rm_new)
    assert_close(rv, rv_new)


def test_functional_eval_batch_of_one_backward(xp):
    x, rm, rv, w, b = make(xp, (1, 2, 1, 1), seed=19)
    xt = ts.tensor(x, requires_grad=True)
    out = F.batch_norm(xt, rm, rv, w, b)
    out.backward(xp.ones_like(x))
    assert_close(xt.grad, (to_numpy(w) / numpy.sqrt(to_numpy(rv) + 1e-5)).reshape(1, 2, 1, 1))


# ------------------------------------------------------------- torch oracle ---


@pytest.mark.task("batch_norm_forward")
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("training", [True, False])
def test_forward_matches_torch(xp, shape, training):
    torch = pytest.importorskip("torch")
    x, rm, rv, w, b = make(xp, shape, seed=20)
    rm_t, rv_t = torch.tensor(to_numpy(rm)), torch.tensor(to_numpy(rv))
    expected = torch.nn.functional.batch_norm(
        torch.tensor(to_numpy(x)), rm_t, rv_t, torch.tensor(to_numpy(w)), torch.tensor(to_numpy(b)),
        training=training, momentum=0.1, eps=1e-5,
    )
    out, _ = B.batch_norm_forward(x, rm, rv, w, b, training=training, momentum=0.1, eps=1e-5)
    assert_close(out, expected.numpy(), rtol=1e-9)
    assert_close(rm, rm_t.numpy())
    assert_close(rv, rv_t.numpy())


@pytest.mark.task("batch_norm_backward")
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("training", [True, False])
def test_backward_matches_torch(xp, shape, training):
    torch = pytest.importorskip("torch")
    x, rm, rv, w, b = make(xp, shape, seed=21)
    dout = random_like(xp, shape, seed=22)
    leaves = [torch.tensor(to_numpy(a), requires_grad=True) for a in (x, w, b)]
    y = torch.nn.functional.batch_norm(
        leaves[0], torch.tensor(to_numpy(rm)), torch.tensor(to_numpy(rv)), leaves[1], leaves[2],
        training=training,
    )
    y.backward(torch.tensor(to_numpy(dout)))
    _, cache = B.batch_norm_forward(x, rm, rv, w, b, training=training)
    grads = B.batch_norm_backward(dout, cache)
    for g, leaf in zip(grads, leaves):
        assert_close(g, leaf.grad.numpy(), rtol=1e-8, atol=1e-10)
