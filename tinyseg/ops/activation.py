r"""Activations, softmax, the linear layer and dropout.

Notation (lecture style)
------------------------
x      input, any shape (for linear: (..., D_in))
y      output of the op, the shape of x unless said otherwise
dout   upstream gradient dL/dy, the shape of y
dx     dL/dx, the shape of x
*      elementwise product; [cond] is 1 where cond holds, else 0

Every op here except softmax and linear is *elementwise*: y_i depends on x_i
alone, so the Jacobian dy/dx is diagonal and the chain rule collapses to one
elementwise product,

    dx_i = dout_i * f'(x_i).

Each backward below is that product with the right f'. Where f' is cheaper to
write with the output y than with x, the forward caches y.

ReLU
----
    y = max(x, 0)            f'(x) = [x > 0]

ReLU has a kink at 0; like every library we take the derivative there to be 0.
A numerical gradient check must keep its inputs away from 0, where central
differences straddle the kink.

Leaky ReLU (negative slope a, default 0.01)
-------------------------------------------
    y = x if x > 0 else a x  f'(x) = 1 if x > 0 else a

Sigmoid
-------
    y = 1 / (1 + exp(-x))

Derivative: write y = (1 + e)^(-1) with e = exp(-x), de/dx = -e. Then

    dy/dx = -(1 + e)^(-2) * (-e) = e / (1 + e)^2 = y * (1 - y),

because 1 - y = e / (1 + e). So dx = dout * y * (1 - y): the backward needs
only the cached output.

Stability: for x = -1e4, exp(-x) = exp(1e4) overflows. Both formulas below
are the same function, and each is safe on one side:

    x >= 0:  y = 1 / (1 + exp(-|x|))
    x <  0:  y = exp(-|x|) / (1 + exp(-|x|))

With z = exp(-|x|) in (0, 1] nothing overflows, whatever the sign of x.

Tanh
----
    y = tanh(x)              f'(x) = 1 - y^2

(From tanh = sinh / cosh: d tanh = (cosh^2 - sinh^2) / cosh^2 = 1 - tanh^2.)

Softmax along an axis (dim)
---------------------------
For one vector x of length K along ``dim``:

    y_k = exp(x_k) / sum_j exp(x_j)

Stability: softmax does not change when a constant c is subtracted from every
x_k (exp(-c) cancels from top and bottom). With c = max_j x_j every exponent
is <= 0, so exp never overflows and the largest term is exactly 1, so the sum
is >= 1 and the division is safe.

Jacobian: differentiate log y_k = x_k - log sum_j exp(x_j):

    dy_k/dx_i = y_k ([i = k] - y_i),   i.e.   J = diag(y) - y y^T.

J is K x K for every row, so forming it would cost K^2 memory per pixel
(a segmentation map with K = 21 classes and 512 x 512 pixels would need
21 * 21 * 262144 numbers). The backward pass never needs J itself, only the
vector-Jacobian product J^T dout (J is symmetric):

    dx = (diag(y) - y y^T) dout = y * dout - y (y . dout)
       = y * (dout - sum_k dout_k y_k).

One elementwise product, one sum along ``dim``, one more product: O(K) per
row. Note that a dout of all ones gives dx = y * (1 - 1) = 0 for ANY y,
because the rows of J sum to zero (softmax outputs always sum to 1). That is
why gradient checks here use a random dout.

Log-softmax along an axis (dim)
-------------------------------
    y_k = x_k - log sum_j exp(x_j) = (x_k - m) - log sum_j exp(x_j - m),  m = max_j x_j

(the log-sum-exp trick: the sum is >= 1, so its log is finite and >= 0, and
no exp overflows). Jacobian: dy_k/dx_i = [i = k] - s_i with s = softmax(x).
Vector-Jacobian product:

    dx_i = sum_k dout_k ([i = k] - s_i) = dout_i - s_i * sum_k dout_k.

s = exp(y) is computed from the cached output without any overflow (y <= 0).
Computing log(softmax(x)) instead would give log(0) = -inf for entries whose
exp underflows; log_softmax stays finite.

Linear (fully connected) layer
------------------------------
torch layout: weight W of shape (D_out, D_in), bias b of shape (D_out,),
x of shape (..., D_in), y of shape (..., D_out):

    y = x W^T + b,   i.e.  y[r, o] = sum_i x[r, i] W[o, i] + b[o]

with r running over all leading positions (flattened to R rows). Each
derivative follows from the index form:

    dx[r, i] = sum_o dout[r, o] W[o, i]        ->  dx = dout W          (R, D_in)
    dW[o, i] = sum_r dout[r, o] x[r, i]        ->  dW = dout^T x        (D_out, D_in)
    db[o]    = sum_r dout[r, o]                ->  db = dout summed over rows

A quick check: each gradient has the shape of the thing it differentiates,
and there is only one way to multiply the matrices to get it.

Dropout (inverted), drop probability p in [0, 1)
------------------------------------------------
In training, draw u_i uniform in [0, 1) and keep x_i where u_i >= p:

    m_i = [u_i >= p] / (1 - p),   y = x * m

Scaling the kept values by 1 / (1 - p) keeps the expectation: E[y_i] = x_i,
so at test time (training=False) dropout is the identity and the network
needs no rescaling. y is linear in x for a fixed mask, so dx = dout * m: the
backward reuses the mask drawn in the forward. The mask is drawn with the
random module of x's own backend (``xp.random``), so it lives on x's device.

Shapes and dtypes
-----------------
Every function keeps the shape (except linear: last axis D_in -> D_out) and
the floating dtype of x; float32 and float64 both work.
"""

from __future__ import annotations

from numbers import Integral
from typing import NamedTuple

from ..backend import xp_of
from ..validate import check_float, check_number

# ----------------------------------------------------------------- helpers ---




def _check_dim(x, dim, op: str) -> int:
    """The axis ``dim`` of x as a non-negative int, with errors naming dim."""
    if dim is None:
        raise ValueError(
            f"{op}: dim must be given (the axis to normalise over, e.g. dim=1 for the "
            f"channels of (N, C, H, W)); there is no implicit dim"
        )
    if isinstance(dim, bool) or not isinstance(dim, Integral):
        raise TypeError(f"{op}: dim must be an int, got {dim!r}")
    if not -x.ndim <= dim < x.ndim:
        raise ValueError(
            f"{op}: dim must be in [-{x.ndim}, {x.ndim}) for x of shape {x.shape}, got {dim}"
        )
    return int(dim) % x.ndim


# -------------------------------------------------------------------- ReLU ---


def relu_forward(x):
    """y = max(x, 0). Returns (y, cache)."""
    check_float(x, "x")
    xp = xp_of(x)
    # BEGIN SOLUTION relu_forward
    mask = x > 0  # the gradient's on/off switch, kept for backward
    out = xp.maximum(x, 0)
    # END SOLUTION
    return out, mask


def relu_backward(dout, cache):
    """dx = dout * [x > 0] (derivative 0 at the kink)."""
    mask = cache
    # BEGIN SOLUTION relu_backward
    dx = dout * mask
    # END SOLUTION
    return dx


def relu_naive(x):
    """ReLU one element at a time."""
    check_float(x, "x")
    xp = xp_of(x)
    out = xp.zeros(x.shape, dtype=x.dtype)
    src, dst = x.reshape(-1), out.reshape(-1)
    for i in range(src.size):
        if src[i] > 0:
            dst[i] = src[i]
    return out


# -------------------------------------------------------------- Leaky ReLU ---


class LeakyReLUCache(NamedTuple):
    positive: object  # bool, x > 0
    slope: float


def leaky_relu_forward(x, negative_slope=0.01):
    """y = x where x > 0, else negative_slope * x. Returns (y, cache)."""
    check_float(x, "x")
    slope = check_number(negative_slope, "negative_slope")
    xp = xp_of(x)
    positive = x > 0
    out = xp.where(positive, x, x * slope)
    return out, LeakyReLUCache(positive, slope)


def leaky_relu_backward(dout, cache):
    """dx = dout * (1 where x > 0, else negative_slope)."""
    xp = xp_of(dout)
    positive, slope = cache
    return xp.where(positive, dout, dout * slope)


def leaky_relu_naive(x, negative_slope=0.01):
    """Leaky ReLU one element at a time."""
    check_float(x, "x")
    slope = check_number(negative_slope, "negative_slope")
    xp = xp_of(x)
    out = xp.empty(x.shape, dtype=x.dtype)
    src, dst = x.reshape(-1), out.reshape(-1)
    for i in range(src.size):
        dst[i] = src[i] if src[i] > 0 else slope * src[i]
    return out


# ----------------------------------------------------------------- Sigmoid ---


def sigmoid_forward(x):
    """y = 1 / (1 + exp(-x)), computed without overflow for any x. Returns (y, cache)."""
    check_float(x, "x")
    xp = xp_of(x)
    z = xp.exp(-xp.abs(x))  # in (0, 1]: never overflows
    out = xp.where(x >= 0, 1 / (1 + z), z / (1 + z))
    return out, out


def sigmoid_backward(dout, cache):
    """dx = dout * y * (1 - y), with y the cached output."""
    y = cache
    # BEGIN SOLUTION sigmoid_backward
    dx = dout * y * (1 - y)
    # END SOLUTION
    return dx


def sigmoid_naive(x):
    """Sigmoid one element at a time, choosing the safe formula by the sign of x."""
    check_float(x, "x")
    xp = xp_of(x)
    out = xp.empty(x.shape, dtype=x.dtype)
    src, dst = x.reshape(-1), out.reshape(-1)
    for i in range(src.size):
        v = src[i]
        if v >= 0:
            dst[i] = 1 / (1 + xp.exp(-v))
        else:
            e = xp.exp(v)
            dst[i] = e / (1 + e)
    return out


# -------------------------------------------------------------------- Tanh ---


def tanh_forward(x):
    """y = tanh(x). Returns (y, cache)."""
    check_float(x, "x")
    xp = xp_of(x)
    out = xp.tanh(x)
    return out, out


def tanh_backward(dout, cache):
    """dx = dout * (1 - y^2)."""
    y = cache
    return dout * (1 - y * y)


def tanh_naive(x):
    """tanh one element at a time, as (1 - e) / (1 + e) with e = exp(-2|x|), sign restored."""
    check_float(x, "x")
    xp = xp_of(x)
    out = xp.empty(x.shape, dtype=x.dtype)
    src, dst = x.reshape(-1), out.reshape(-1)
    for i in range(src.size):
        v = src[i]
        e = xp.exp(-2 * abs(v))  # in (0, 1]: no overflow
        t = (1 - e) / (1 + e)
        dst[i] = t if v >= 0 else -t
    return out


# ----------------------------------------------------------------- Softmax ---


class SoftmaxCache(NamedTuple):
    y: object  # the output: both backwards are written in y
    dim: int


def softmax_forward(x, dim=None):
    """y = exp(x) / sum(exp(x)) along ``dim`` (required), max subtracted first.

    Returns (y, cache).
    """
    check_float(x, "x")
    dim = _check_dim(x, dim, "softmax")
    xp = xp_of(x)
    # BEGIN SOLUTION softmax_forward
    shifted = x - x.max(axis=dim, keepdims=True)  # every exponent <= 0
    e = xp.exp(shifted)
    out = e / e.sum(axis=dim, keepdims=True)  # the sum is >= 1
    # END SOLUTION
    return out, SoftmaxCache(out, dim)


def softmax_backward(dout, cache):
    """dx = y * (dout - sum(dout * y, dim)): the vector-Jacobian product, no K x K matrix."""
    y, dim = cache
    # BEGIN SOLUTION softmax_backward
    dx = y * (dout - (dout * y).sum(axis=dim, keepdims=True))
    # END SOLUTION
    return dx


def _rows_along(x, dim):
    """x with axis ``dim`` moved last and flattened to (rows, K), plus a function to undo it."""
    xp = xp_of(x)
    moved = xp.moveaxis(x, dim, -1)
    moved_shape = moved.shape

    def undo(rows):
        return xp.moveaxis(rows.reshape(moved_shape), -1, dim)

    return moved.reshape(-1, moved_shape[-1]), undo


def softmax_naive(x, dim=None):
    """Softmax by the definition: one row at a time, one element at a time."""
    check_float(x, "x")
    dim = _check_dim(x, dim, "softmax")
    xp = xp_of(x)
    rows, undo = _rows_along(x, dim)
    out = xp.empty(rows.shape, dtype=x.dtype)
    R, K = rows.shape
    for r in range(R):
        m = rows[r, 0]
        for k in range(1, K):
            if rows[r, k] > m:
                m = rows[r, k]
        total = 0
        for k in range(K):
            out[r, k] = xp.exp(rows[r, k] - m)
            total = total + out[r, k]
        for k in range(K):
            out[r, k] = out[r, k] / total
    return undo(out)


# ------------------------------------------------------------- Log-softmax ---


def log_softmax_forward(x, dim=None):
    """y = x - logsumexp(x) along ``dim`` (required), by the log-sum-exp trick.

    Returns (y, cache).
    """
    check_float(x, "x")
    dim = _check_dim(x, dim, "log_softmax")
    xp = xp_of(x)
    shifted = x - x.max(axis=dim, keepdims=True)
    out = shifted - xp.log(xp.exp(shifted).sum(axis=dim, keepdims=True))
    return out, SoftmaxCache(out, dim)


def log_softmax_backward(dout, cache):
    """dx = dout - softmax(x) * sum(dout, dim), with softmax(x) = exp(y)."""
    y, dim = cache
    xp = xp_of(y)
    # BEGIN SOLUTION log_softmax_backward
    dx = dout - xp.exp(y) * dout.sum(axis=dim, keepdims=True)
    # END SOLUTION
    return dx


def log_softmax_naive(x, dim=None):
    """Log-softmax one row at a time: x_k - m - log(sum_j exp(x_j - m))."""
    check_float(x, "x")
    dim = _check_dim(x, dim, "log_softmax")
    xp = xp_of(x)
    rows, undo = _rows_along(x, dim)
    out = xp.empty(rows.shape, dtype=x.dtype)
    R, K = rows.shape
    for r in range(R):
        m = rows[r, 0]
        for k in range(1, K):
            if rows[r, k] > m:
                m = rows[r, k]
        total = 0
        for k in range(K):
            total = total + xp.exp(rows[r, k] - m)
        log_total = xp.log(total)
        for k in range(K):
            out[r, k] = rows[r, k] - m - log_total
    return undo(out)


# ------------------------------------------------------------------ Linear ---


def _check_linear(x, w, b):
    check_float(x, "x")
    check_float(w, "w (weight)")
    if w.ndim != 2:
        raise ValueError(f"w (weight) must have shape (out_features, in_features), got {w.shape}")
    if x.ndim < 1 or x.shape[-1] != w.shape[1]:
        raise ValueError(
            f"x must have shape (..., in_features) with in_features = {w.shape[1]} "
            f"(w (weight) has shape {w.shape}), got {x.shape}"
        )
    if w.dtype != x.dtype:
        raise TypeError(f"w (weight) must have the dtype of x ({x.dtype}), got {w.dtype}")
    if b is not None:
        check_float(b, "b (bias)")
        if b.shape != (w.shape[0],):
            raise ValueError(
                f"b (bias) must have shape (out_features,) = ({w.shape[0]},), got {b.shape}"
            )
        if b.dtype != x.dtype:
            raise TypeError(f"b (bias) must have the dtype of x ({x.dtype}), got {b.dtype}")


class LinearCache(NamedTuple):
    x: object  # (N, D_in)
    w: object  # (D_out, D_in)
    has_bias: bool


def linear_forward(x, w, b=None):
    """y = x W^T + b with W (out_features, in_features) and x (..., in_features).

    Returns (y, cache).
    """
    _check_linear(x, w, b)
    out = x @ w.T
    if b is not None:
        out = out + b
    return out, LinearCache(x, w, b is not None)


def linear_backward(dout, cache, needs_input_grad=(True, True, True)):
    """Returns (dx, dw, db): dx = dout W, dW = dout^T x, db = dout summed over rows.

    ``needs_input_grad`` (x, w, b) skips the products nobody needs (returned as
    None); db is None when the forward had no bias.
    """
    x, w, has_bias = cache
    need_x, need_w, need_b = needs_input_grad
    D_out, D_in = w.shape
    dout_rows = dout.reshape(-1, D_out)  # all leading axes as rows
    dx = dw = db = None
    if need_x:
        # BEGIN SOLUTION linear_backward
        dx = (dout_rows @ w).reshape(x.shape)
        # END SOLUTION
    if need_w:
        # BEGIN SOLUTION linear_backward
        dw = dout_rows.T @ x.reshape(-1, D_in)
        # END SOLUTION
    if has_bias and need_b:
        # BEGIN SOLUTION linear_backward
        db = dout_rows.sum(axis=0)
        # END SOLUTION
    return dx, dw, db


def linear_naive(x, w, b=None):
    """y[r, o] = sum_i x[r, i] W[o, i] + b[o], with explicit loops."""
    _check_linear(x, w, b)
    xp = xp_of(x)
    D_out, D_in = w.shape
    x_rows = x.reshape(-1, D_in)
    out = xp.empty((x_rows.shape[0], D_out), dtype=x.dtype)
    for r in range(x_rows.shape[0]):
        for o in range(D_out):
            total = b[o] if b is not None else 0
            for i in range(D_in):
                total = total + x_rows[r, i] * w[o, i]
            out[r, o] = total
    return out.reshape(x.shape[:-1] + (D_out,))


# ----------------------------------------------------------------- Dropout ---


def _check_dropout(x, p, training):
    check_float(x, "x")
    p = check_number(p, "p")
    if not 0 <= p < 1:
        raise ValueError(f"p (the drop probability) must be in [0, 1), got {p}")
    if not isinstance(training, bool):
        raise TypeError(f"training must be True or False, got {training!r}")
    return p


def _uniform(xp, shape, seed):
    """Uniform [0, 1) numbers on x's backend.

    ``seed``: None (the backend's global ``xp.random`` state, so ``xp.random.seed``
    makes runs repeatable), an int (a fresh ``xp.random.default_rng(seed)``),
    or a generator with a ``random(shape)`` method from the same backend.
    """
    if seed is None:
        return xp.random.random(shape)
    if isinstance(seed, Integral) and not isinstance(seed, bool):
        return xp.random.default_rng(int(seed)).random(shape)
    if hasattr(seed, "random"):
        u = seed.random(shape)
        if xp_of(u) is not xp:
            raise ValueError(
                "seed: the generator belongs to another backend than x; make it with "
                "xp.random.default_rng on x's device"
            )
        return u
    raise TypeError(f"seed must be None, an int or a random generator, got {seed!r}")


def dropout_forward(x, p=0.5, training=True, seed=None):
    """Inverted dropout: y = x * [u >= p] / (1 - p) in training, y = x otherwise.

    ``seed``: None (global ``xp.random`` state), an int, or a generator of x's
    backend. Returns (y, cache).
    """
    p = _check_dropout(x, p, training)
    if not training:
        return x, None
    xp = xp_of(x)
    keep = _uniform(xp, x.shape, seed) >= p
    mask = keep.astype(x.dtype) * (1 / (1 - p))
    return x * mask, mask


def dropout_backward(dout, cache):
    """dx = dout * mask (the scaled mask of the forward); dout itself in eval mode."""
    mask = cache
    return dout if mask is None else dout * mask


def dropout_naive(x, p=0.5, training=True, seed=None):
    """Dropout one element at a time (same random numbers as dropout_forward for a given seed)."""
    p = _check_dropout(x, p, training)
    xp = xp_of(x)
    if not training:
        return x.copy()
    u = _uniform(xp, x.shape, seed).reshape(-1)
    out = xp.zeros(x.shape, dtype=x.dtype)
    src, dst = x.reshape(-1), out.reshape(-1)
    for i in range(src.size):
        if u[i] >= p:
            dst[i] = src[i] / (1 - p)
    return out
