"""Tests for tinyseg/ops/activation.py and the matching tinyseg.functional wrappers.

Each op gets: a float64 gradient check with a random upstream gradient, fast == naive,
shapes and edge cases, bad input named by argument, and stability at |x| = 1e4.
"""

from __future__ import annotations

import warnings

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st
from opcheck import FEW, assert_backward_matches, random_like

import tinyseg as ts
import tinyseg.functional as F
from tinyseg.backend import to_numpy
from tinyseg.ops import activation as A


def assert_close(a, b, rtol=1e-10, atol=1e-12):
    numpy.testing.assert_allclose(to_numpy(a), to_numpy(b), rtol=rtol, atol=atol)


def away_from_zero(xp, shape, seed=0):
    """Values with 0.1 <= |v| <= 2.1 and random signs: no input near a kink at 0."""
    r = numpy.random.default_rng(seed)
    v = (0.1 + 2 * r.random(shape)) * r.choice([-1.0, 1.0], size=shape)
    return xp.asarray(v)


ELEMENTWISE = {
    "relu": (A.relu_forward, A.relu_backward, A.relu_naive),
    "leaky_relu": (A.leaky_relu_forward, A.leaky_relu_backward, A.leaky_relu_naive),
    "sigmoid": (A.sigmoid_forward, A.sigmoid_backward, A.sigmoid_naive),
    "tanh": (A.tanh_forward, A.tanh_backward, A.tanh_naive),
}
# the gradient checks of relu and sigmoid grade those homework tasks
GRAD_PARAMS = [
    pytest.param("relu", marks=pytest.mark.task("relu_backward")),
    "leaky_relu",
    pytest.param("sigmoid", marks=pytest.mark.task("sigmoid_backward")),
    "tanh",
]


# ------------------------------------------------------------------ ReLU ---


@pytest.mark.task("relu_forward")
def test_relu_forward_values(xp):
    x = xp.asarray([[-2.0, -0.0, 0.0, 0.5, 3.0]])
    out, _ = A.relu_forward(x)
    assert_close(out, [[0.0, 0.0, 0.0, 0.5, 3.0]])
    assert out.shape == x.shape


@pytest.mark.task("relu_forward")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_relu_forward_matches_naive(xp, dtype):
    x = random_like(xp, (2, 3, 4, 5), seed=3).astype(dtype)
    x[0, 0, 0, :2] = 0.0
    out, _ = A.relu_forward(x)
    assert out.dtype == x.dtype
    assert_close(out, A.relu_naive(x))


@pytest.mark.task("relu_backward")
def test_relu_backward_gradcheck(xp):
    x = away_from_zero(xp, (2, 3, 4, 4), seed=1)
    assert_backward_matches(A.relu_forward, A.relu_backward, (x,), wrt=[0])


@pytest.mark.task("relu_backward")
def test_relu_backward_is_zero_at_and_below_zero(xp):
    x = xp.asarray([-1.0, 0.0, 2.0])
    _, cache = A.relu_forward(x)
    dx = A.relu_backward(xp.asarray([5.0, 6.0, 7.0]), cache)
    assert_close(dx, [0.0, 0.0, 7.0])


# ------------------------------------------------------- elementwise ops ---


@pytest.mark.parametrize("name", GRAD_PARAMS)
def test_elementwise_gradcheck(xp, name):
    forward, backward, _ = ELEMENTWISE[name]
    x = away_from_zero(xp, (2, 3, 3, 3), seed=2)
    assert_backward_matches(forward, backward, (x,), wrt=[0])


@pytest.mark.parametrize("name", list(ELEMENTWISE))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_elementwise_matches_naive(xp, name, dtype):
    forward, _, naive = ELEMENTWISE[name]
    x = (3 * random_like(xp, (2, 2, 3, 3), seed=4)).astype(dtype)
    out, _ = forward(x)
    assert out.dtype == x.dtype and out.shape == x.shape
    tol = 1e-6 if dtype == "float32" else 1e-12
    assert_close(out, naive(x), rtol=tol, atol=tol)


@pytest.mark.parametrize("slope", [0.0, 0.01, 0.2, 1.5])
def test_leaky_relu_slope(xp, slope):
    x = away_from_zero(xp, (3, 5), seed=5)
    out, _ = A.leaky_relu_forward(x, negative_slope=slope)
    xn = to_numpy(x)
    assert_close(out, numpy.where(xn > 0, xn, slope * xn))
    assert_close(out, A.leaky_relu_naive(x, negative_slope=slope))
    assert_backward_matches(
        A.leaky_relu_forward, A.leaky_relu_backward, (x,), wrt=[0], params={"negative_slope": slope}
    )


def test_sigmoid_and_tanh_values(xp):
    x = xp.asarray([-2.0, 0.0, 1.0])
    xn = to_numpy(x)
    assert_close(A.sigmoid_forward(x)[0], 1 / (1 + numpy.exp(-xn)))
    assert_close(A.tanh_forward(x)[0], numpy.tanh(xn))
    assert_close(A.sigmoid_forward(x)[0][1], 0.5)


@pytest.mark.task("sigmoid_backward")
def test_sigmoid_backward_formula(xp):
    x = random_like(xp, (4, 5), seed=6)
    y, cache = A.sigmoid_forward(x)
    dout = random_like(xp, (4, 5), seed=7)
    assert_close(A.sigmoid_backward(dout, cache), dout * y * (1 - y))


# ------------------------------------------------------- softmax family ---


@pytest.mark.task("softmax_forward")
@pytest.mark.parametrize("dim", [0, 1, -1, 2])
def test_softmax_forward_matches_naive(xp, dim):
    x = 3 * random_like(xp, (2, 3, 4), seed=8)
    out, _ = A.softmax_forward(x, dim)
    assert out.shape == x.shape
    assert_close(out, A.softmax_naive(x, dim))
    assert_close(out.sum(axis=dim), xp.ones(out.sum(axis=dim).shape))


@pytest.mark.task("softmax_forward")
def test_softmax_forward_single_class_and_shift(xp):
    x = random_like(xp, (2, 1, 3, 3), seed=9)
    out, _ = A.softmax_forward(x, 1)
    assert_close(out, xp.ones_like(x))  # one class: probability 1
    x = random_like(xp, (3, 4), seed=10)
    shifted, _ = A.softmax_forward(x + 1000.0, 1)
    assert_close(shifted, A.softmax_forward(x, 1)[0], rtol=1e-9)


@pytest.mark.task("softmax_backward")
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_softmax_backward_gradcheck(xp, dim):
    x = random_like(xp, (2, 3, 4), seed=11)
    assert_backward_matches(
        A.softmax_forward, A.softmax_backward, (x,), wrt=[0], params={"dim": dim}
    )


@pytest.mark.task("softmax_backward")
def test_softmax_backward_equals_jacobian_product(xp):
    x = random_like(xp, (6,), seed=12)
    y, cache = A.softmax_forward(x, 0)
    dout = random_like(xp, (6,), seed=13)
    yn = to_numpy(y)
    jacobian = numpy.diag(yn) - numpy.outer(yn, yn)
    assert_close(A.softmax_backward(dout, cache), jacobian.T @ to_numpy(dout))
    # a constant upstream gradient is in the Jacobian's null space
    assert_close(A.softmax_backward(xp.ones(6), cache), numpy.zeros(6), atol=1e-15)


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_log_softmax_forward_matches_naive(xp, dim):
    x = 3 * random_like(xp, (2, 3, 4), seed=14)
    out, _ = A.log_softmax_forward(x, dim)
    assert_close(out, A.log_softmax_naive(x, dim))
    assert_close(out, xp.log(A.softmax_forward(x, dim)[0]), rtol=1e-9)


@pytest.mark.task("log_softmax_backward")
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_log_softmax_backward_gradcheck(xp, dim):
    x = random_like(xp, (2, 3, 4), seed=15)
    assert_backward_matches(
        A.log_softmax_forward, A.log_softmax_backward, (x,), wrt=[0], params={"dim": dim}
    )


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_softmax_family_dtype(xp, op, dtype):
    forward = getattr(A, f"{op}_forward")
    x = random_like(xp, (2, 5, 2, 2), seed=16).astype(dtype)
    out, cache = forward(x, 1)
    backward = getattr(A, f"{op}_backward")
    assert out.dtype == x.dtype and backward(xp.ones_like(x), cache).dtype == x.dtype


@given(
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=4),
    data=st.data(),
)
@FEW
def test_softmax_family_shapes(xp, shape, data):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = random_like(xp, tuple(shape), seed=len(shape))
    out, _ = A.softmax_forward(x, dim)
    log_out, _ = A.log_softmax_forward(x, dim)
    assert out.shape == log_out.shape == x.shape
    assert_close(out.sum(axis=dim), numpy.ones(out.sum(axis=dim).shape), rtol=1e-12)
    assert_close(log_out, A.log_softmax_naive(x, dim))


# ---------------------------------------------------------------- linear ---


@pytest.mark.parametrize("x_shape", [(4, 5), (2, 3, 5), (5,)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_forward_matches_naive(xp, x_shape, with_bias):
    x = random_like(xp, x_shape, seed=17)
    w = random_like(xp, (3, 5), seed=18)
    b = random_like(xp, (3,), seed=19) if with_bias else None
    out, _ = A.linear_forward(x, w, b)
    assert out.shape == x_shape[:-1] + (3,)
    assert_close(out, A.linear_naive(x, w, b))
    expected = to_numpy(x) @ to_numpy(w).T + (to_numpy(b) if with_bias else 0)
    assert_close(out, expected)


@pytest.mark.task("linear_backward")
@pytest.mark.parametrize("x_shape", [(4, 5), (2, 3, 5), (5,)])
def test_linear_backward_gradcheck(xp, x_shape):
    x = random_like(xp, x_shape, seed=20)
    w = random_like(xp, (3, 5), seed=21)
    b = random_like(xp, (3,), seed=22)
    assert_backward_matches(A.linear_forward, A.linear_backward, (x, w, b), wrt=[0, 1, 2])


@pytest.mark.task("linear_backward")
def test_linear_backward_without_bias(xp):
    x = random_like(xp, (4, 5), seed=23)
    w = random_like(xp, (2, 5), seed=24)
    assert_backward_matches(A.linear_forward, A.linear_backward, (x, w), wrt=[0, 1])
    _, cache = A.linear_forward(x, w)
    assert A.linear_backward(random_like(xp, (4, 2)), cache)[2] is None


@pytest.mark.task("linear_backward")
def test_linear_adjoint(xp):
    # y = x W^T is linear in x: <x W^T, v> = <x, dx(v)> and likewise in W.
    x = random_like(xp, (3, 4), seed=25)
    w = random_like(xp, (2, 4), seed=26)
    v = random_like(xp, (3, 2), seed=27)
    out, cache = A.linear_forward(x, w)
    dx, dw, _ = A.linear_backward(v, cache)
    assert abs(float((out * v).sum()) - float((x * dx).sum())) < 1e-10
    assert abs(float((out * v).sum()) - float((w * dw).sum())) < 1e-10


@given(
    lead=st.lists(st.integers(1, 3), min_size=1, max_size=3),
    d_in=st.integers(1, 4),
    d_out=st.integers(1, 4),
)
@FEW
def test_linear_shapes(xp, lead, d_in, d_out):
    x = random_like(xp, tuple(lead) + (d_in,), seed=1)
    w = random_like(xp, (d_out, d_in), seed=2)
    b = random_like(xp, (d_out,), seed=3)
    out, cache = A.linear_forward(x, w, b)
    assert out.shape == tuple(lead) + (d_out,)
    dx, dw, db = A.linear_backward(xp.ones_like(out), cache)
    assert dx.shape == x.shape and dw.shape == w.shape and db.shape == b.shape


# --------------------------------------------------------------- dropout ---


def test_dropout_mask_and_scale(xp):
    x = xp.ones((200, 500))
    out, _ = A.dropout_forward(x, p=0.3, seed=0)
    values = set(numpy.unique(to_numpy(out)).round(12))
    assert values <= {0.0, round(1 / 0.7, 12)}
    kept = float((out != 0).mean())
    assert abs(kept - 0.7) < 0.01
    assert abs(float(out.mean()) - 1.0) < 0.02  # inverted dropout keeps the expectation


def test_dropout_matches_naive_and_is_repeatable(xp):
    x = random_like(xp, (2, 3, 4, 4), seed=28)
    out, _ = A.dropout_forward(x, p=0.4, seed=7)
    again, _ = A.dropout_forward(x, p=0.4, seed=7)
    assert_close(out, again, rtol=0, atol=0)
    assert_close(out, A.dropout_naive(x, p=0.4, seed=7))
    generator_out, _ = A.dropout_forward(x, p=0.4, seed=xp.random.default_rng(7))
    assert_close(out, generator_out, rtol=0, atol=0)


def test_dropout_global_state(xp):
    x = xp.ones((50,))
    xp.random.seed(3)
    a, _ = A.dropout_forward(x, p=0.5)
    xp.random.seed(3)
    b, _ = A.dropout_forward(x, p=0.5)
    assert_close(a, b, rtol=0, atol=0)
    assert type(a) is type(x)  # the mask lives on x's device


def test_dropout_gradcheck(xp):
    x = random_like(xp, (2, 3, 4), seed=29)
    assert_backward_matches(
        A.dropout_forward, A.dropout_backward, (x,), wrt=[0], params={"p": 0.5, "seed": 1}
    )


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dropout_eval_and_p_zero_are_identity(xp, dtype):
    x = random_like(xp, (1, 2, 1, 1), seed=30).astype(dtype)
    out, cache = A.dropout_forward(x, p=0.9, training=False)
    assert_close(out, x, rtol=0, atol=0)
    dout = random_like(xp, x.shape, seed=31).astype(dtype)
    assert_close(A.dropout_backward(dout, cache), dout, rtol=0, atol=0)
    out, _ = A.dropout_forward(x, p=0.0, seed=0)
    assert out.dtype == x.dtype
    assert_close(out, x, rtol=0, atol=0)


# ------------------------------------------------------------- stability ---

ALL_FORWARDS = {
    "relu": (A.relu_forward, A.relu_backward, {}),
    "leaky_relu": (A.leaky_relu_forward, A.leaky_relu_backward, {}),
    "sigmoid": (A.sigmoid_forward, A.sigmoid_backward, {}),
    "tanh": (A.tanh_forward, A.tanh_backward, {}),
    "softmax": (A.softmax_forward, A.softmax_backward, {"dim": 1}),
    "log_softmax": (A.log_softmax_forward, A.log_softmax_backward, {"dim": 1}),
    "dropout": (A.dropout_forward, A.dropout_backward, {"p": 0.5, "seed": 0}),
}


@pytest.mark.parametrize("name", list(ALL_FORWARDS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_stable_at_large_inputs(xp, name, dtype):
    forward, backward, params = ALL_FORWARDS[name]
    rows = [[1e4, -1e4, 0.0, 3.0], [-1e4, -1e4, -1e4, -1e4], [1e4, 1e4, -3.0, 1e4]]
    x = xp.asarray(rows, dtype=dtype)
    dout = random_like(xp, x.shape, seed=32).astype(dtype)
    with warnings.catch_warnings(), numpy.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        out, cache = forward(x, **params)
        dx = backward(dout, cache)
    for a in (out, dx):
        assert a.dtype == x.dtype
        assert bool(xp.isfinite(a).all()), f"{name} gave a non-finite value"
    if name == "sigmoid":
        assert_close(out[0, :2], [1.0, 0.0])
    if name == "softmax":
        assert_close(out[1], [0.25] * 4, rtol=1e-6)
        assert_close(out[2], [1 / 3, 1 / 3, 0.0, 1 / 3], rtol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_linear_stable_at_large_inputs(xp, dtype):
    x = xp.asarray([[1e4, -1e4, 0.5]], dtype=dtype)
    w = xp.asarray([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]], dtype=dtype)
    with warnings.catch_warnings(), numpy.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        out, cache = A.linear_forward(x, w, xp.zeros(2, dtype=dtype))
        grads = A.linear_backward(xp.ones_like(out), cache)
    assert all(bool(xp.isfinite(g).all()) for g in (out,) + grads)


# ------------------------------------------------------------- bad input ---


def test_bad_inputs_name_the_argument(xp):
    x = random_like(xp, (2, 3), seed=33)
    with pytest.raises(ValueError, match="dim"):
        A.softmax_forward(x, None)
    with pytest.raises(ValueError, match="dim"):
        A.log_softmax_forward(x, 2)
    with pytest.raises(TypeError, match="dim"):
        A.softmax_forward(x, 1.0)
    with pytest.raises(ValueError, match="dim"):
        F.softmax(x)
    with pytest.raises(TypeError, match="x"):
        A.relu_forward(xp.arange(4))
    with pytest.raises(TypeError, match="negative_slope"):
        A.leaky_relu_forward(x, negative_slope="0.1")
    with pytest.raises(ValueError, match="p "):
        A.dropout_forward(x, p=1.0)
    with pytest.raises(ValueError, match="p "):
        A.dropout_forward(x, p=-0.1)
    with pytest.raises(TypeError, match="training"):
        A.dropout_forward(x, training="yes")
    w = random_like(xp, (4, 2), seed=34)
    with pytest.raises(ValueError, match="weight"):
        A.linear_forward(x, w)  # in_features 3 != 2
    with pytest.raises(ValueError, match="weight"):
        A.linear_forward(x, random_like(xp, (2,), seed=0))
    with pytest.raises(ValueError, match="bias"):
        A.linear_forward(x, random_like(xp, (4, 3), seed=0), random_like(xp, (3,), seed=0))
    with pytest.raises(TypeError, match="weight"):
        A.linear_forward(x, random_like(xp, (4, 3), seed=0).astype("float32"))


# ------------------------------------------------- functional / autograd ---

FUNCTIONAL = {
    "relu": lambda t: F.relu(t),
    "leaky_relu": lambda t: F.leaky_relu(t, negative_slope=0.1),
    "sigmoid": lambda t: F.sigmoid(t),
    "tanh": lambda t: F.tanh(t),
    "softmax": lambda t: F.softmax(t, dim=1),
    "log_softmax": lambda t: F.log_softmax(t, dim=1),
    "dropout": lambda t: F.dropout(t, p=0.3, training=True, seed=2),
}


@pytest.mark.parametrize("name", list(FUNCTIONAL))
def test_functional_gradcheck(xp, name):
    x = ts.tensor(away_from_zero(xp, (2, 3, 2, 2), seed=35), requires_grad=True)
    assert ts.gradcheck(FUNCTIONAL[name], [x])


def test_functional_linear_gradcheck(xp):
    x = ts.tensor(random_like(xp, (2, 3, 4), seed=36), requires_grad=True)
    w = ts.tensor(random_like(xp, (5, 4), seed=37), requires_grad=True)
    b = ts.tensor(random_like(xp, (5,), seed=38), requires_grad=True)
    assert ts.gradcheck(lambda x, w, b: F.linear(x, w, b), [x, w, b])
    assert ts.gradcheck(lambda x, w: F.linear(x, w), [x, w])


def test_functional_accepts_raw_arrays(xp):
    x = random_like(xp, (2, 3), seed=39)
    out = F.softmax(x, dim=-1)
    assert isinstance(out, ts.Tensor) and out.shape == (2, 3)
    out = F.dropout(x, p=0.5, training=False)
    assert_close(out.data, x, rtol=0, atol=0)


# ----------------------------------------------------------- torch oracle ---


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dim", [1, -1])
def test_softmax_family_matches_torch(xp, op, dim):
    torch = pytest.importorskip("torch")
    x = 4 * random_like(xp, (2, 3, 4, 5), seed=40)
    dout = random_like(xp, x.shape, seed=41)
    out, cache = getattr(A, f"{op}_forward")(x, dim)
    dx = getattr(A, f"{op}_backward")(dout, cache)
    xt = torch.tensor(to_numpy(x), requires_grad=True)
    yt = getattr(torch.nn.functional, op)(xt, dim=dim)
    yt.backward(torch.tensor(to_numpy(dout)))
    assert_close(out, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    assert_close(dx, xt.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_linear_matches_torch(xp):
    torch = pytest.importorskip("torch")
    x, w, b = (random_like(xp, s, seed=i) for i, s in enumerate([(2, 3, 4), (5, 4), (5,)]))
    dout = random_like(xp, (2, 3, 5), seed=9)
    out, cache = A.linear_forward(x, w, b)
    grads = A.linear_backward(dout, cache)
    ts_ = [torch.tensor(to_numpy(a), requires_grad=True) for a in (x, w, b)]
    yt = torch.nn.functional.linear(*ts_)
    yt.backward(torch.tensor(to_numpy(dout)))
    assert_close(out, yt.detach().numpy())
    for g, t in zip(grads, ts_):
        assert_close(g, t.grad.numpy(), rtol=1e-9)
