r"""Batch normalisation: forward, running statistics, and the backward pass.

Notation (lecture style)
------------------------
x      input, shape (N, C), (N, C, L) or (N, C, H, W)
C      channels: every statistic and parameter is per channel, shape (C,)
M      values per channel: N, N*L or N*H*W
gamma  weight (scale), beta bias (shift); either may be absent (None)
eps    small constant inside the square root, default 1e-5
dout   upstream gradient dL/dy, the shape of x

Forward, one channel at a time
------------------------------
Take the M values x_1 .. x_M of one channel (all batch items and positions).
In training mode (training=True) the statistics come from the batch itself:

    mu      = (1/M) sum_i x_i                     batch mean
    var     = (1/M) sum_i (x_i - mu)^2            biased batch variance
    sigma   = sqrt(var + eps)
    x_hat_i = (x_i - mu) / sigma                  zero mean, unit variance
    y_i     = gamma x_hat_i + beta

Each channel is normalised with the *biased* variance (divide by M), as in the
paper and in torch. A channel with M = 1 has var = 0 and x_hat = 0 whatever
x is: the layer would learn nothing, so training with one value per channel is
an error ("Expected more than 1 value per channel").

Running statistics (what eval mode uses)
----------------------------------------
Every training forward also updates two buffers IN PLACE, torch's rule with
``momentum`` (default 0.1):

    running_mean <- (1 - momentum) running_mean + momentum mu
    running_var  <- (1 - momentum) running_var  + momentum var * M / (M - 1)

The running variance stores the *unbiased* estimate (divide by M - 1) of the
population variance, while the normalisation itself used the biased one. In
eval mode (training=False) the layer is a fixed per-channel affine map:

    y_i = gamma (x_i - running_mean) / sqrt(running_var + eps) + beta

so the output for one image no longer depends on the rest of the batch
(a batch of one works).

Backward in training mode: the computational graph
---------------------------------------------------
The graph for one channel is

    x --+--> mu --+--> x - mu --+-----------------> x_hat --> y
        |         |             |                    ^
        +---------+             +--> var --> sigma --+

x_i reaches the loss along three paths: directly through (x_i - mu), through
mu, and through var (hence sigma). Let g_i = dL/dx_hat_i = gamma dout_i.

The parameters are the easy part (y_i = gamma x_hat_i + beta):

    dbeta  = sum_i dout_i
    dgamma = sum_i dout_i x_hat_i

Now the local derivatives. Write [i = j] for 1 if i = j, else 0.

    d mu / d x_j  = 1/M
    d var / d x_j = (2/M) sum_i (x_i - mu)([i = j] - 1/M) = (2/M)(x_j - mu),

because sum_i (x_i - mu) = 0 kills the second term. So

    d sigma / d x_j = (1 / (2 sigma)) (2/M)(x_j - mu) = x_hat_j / M.

The quotient rule on x_hat_i = (x_i - mu) / sigma:

    d x_hat_i / d x_j = ([i = j] - 1/M) / sigma - (x_i - mu) / sigma^2 * x_hat_j / M
                      = (1 / sigma) ([i = j] - 1/M - x_hat_i x_hat_j / M).

Summing over every x_hat_i that x_j feeds (the chain rule):

    dx_j = sum_i g_i d x_hat_i / d x_j
         = (1 / sigma) (g_j - (1/M) sum_i g_i - x_hat_j (1/M) sum_i g_i x_hat_i).

With g = gamma dout this is the compact formula

    dx = (gamma / sigma) * (dout - mean(dout) - x_hat * mean(dout * x_hat))

where each mean runs over the M values of the channel. Read it as: take the
upstream gradient, remove its mean (the mean of x does not matter after
normalising) and remove its component along x_hat (nor does its scale), then
scale by gamma / sigma. It costs two reductions per channel, and it never
forms the M x M matrix d x_hat / d x.

Backward in eval mode
---------------------
mu and sigma are the running buffers, constants with respect to x, so only
the direct path is left:

    dx = (gamma / sigma) * dout,   sigma = sqrt(running_var + eps)

dgamma and dbeta are the same formulas as above, with x_hat computed from
the running statistics.

Shapes
------
Per-channel arrays (C,) are reshaped to (1, C, 1, ...) to broadcast against
x; sums and means run over every axis except axis 1. dx has the shape of x,
dweight and dbias the shape (C,). Outputs keep the dtype of x.
"""

from __future__ import annotations

from numbers import Real
from typing import NamedTuple

from ..backend import is_cupy_array, to_numpy, xp_of
from ..validate import check_float, first_bad_index

_LAYOUTS = "(N, C), (N, C, L) or (N, C, H, W)"


def check_running_var(running_var, name: str = "running_var") -> None:
    """A variance buffer must be >= 0 (and finite): sqrt(var + eps) of a negative is NaN.

    Eval mode checks a host buffer on every call (C values: free). A GPU buffer is not
    checked per call, which would be a device sync per layer in every evaluation; it is
    checked where it enters, in ``Module.load_state_dict``, and training keeps it >= 0.
    """
    values = to_numpy(running_var).reshape(-1)
    index = first_bad_index(~(values >= 0))  # NaN fails the comparison too
    if index is not None:
        c = index[0]
        raise ValueError(f"{name} must hold variances >= 0, got {values.reshape(-1)[c]!r} "
                         f"for channel {c}")


def _check_batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps):
    """Argument checks; returns (C, M, reduction axes, broadcast shape)."""
    check_float(x, "x")
    if x.ndim not in (2, 3, 4):
        raise ValueError(f"x must have shape {_LAYOUTS}, got {x.shape}")
    C = x.shape[1]
    named = (("running_mean", running_mean), ("running_var", running_var),
             ("weight", weight), ("bias", bias))
    for name, a in named:
        if a is None:
            continue
        check_float(a, name)
        if a.shape != (C,):
            raise ValueError(
                f"{name} must have shape (C,) = ({C},) for x of shape {x.shape}, got {a.shape}"
            )
    if (running_mean is None) != (running_var is None):
        raise ValueError("running_mean and running_var must both be given or both be None")
    if not training and running_mean is None:
        raise ValueError("running_mean and running_var are needed when training=False")
    if not training and not is_cupy_array(running_var):
        check_running_var(running_var, "running_var")
    if not isinstance(training, bool):
        raise TypeError(f"training must be True or False, got {training!r}")
    if isinstance(momentum, bool) or not isinstance(momentum, Real) or not 0 <= momentum <= 1:
        raise ValueError(f"momentum must be a number in [0, 1], got {momentum!r}")
    if isinstance(eps, bool) or not isinstance(eps, Real) or not eps > 0:
        raise ValueError(f"eps must be a positive number, got {eps!r}")
    M = x.size // C if C else 0
    if training and M <= 1:
        raise ValueError(
            f"Expected more than 1 value per channel when training, got input size {x.shape} "
            f"(x has M = {M} value(s) per channel; use training=False or a bigger batch)"
        )
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, C) + (1,) * (x.ndim - 2)
    return C, M, axes, shape


class BatchNormCache(NamedTuple):
    x_hat: object  # (x - mu) / sigma
    inv_std: object  # (C,) 1 / sigma
    gamma: object  # (C,) or None
    training: bool  # batch statistics (True) or running ones
    axes: tuple  # every axis but 1
    shape: tuple  # (1, C, 1, ...), for broadcasting (C,) against x
    dtypes: tuple  # (weight dtype, bias dtype), None where absent


def batch_norm_forward(
    x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5
):
    """Batch norm over every axis but 1. Returns (out, cache).

    In training mode normalises with the batch mean and biased variance and
    updates ``running_mean`` / ``running_var`` in place (the variance buffer
    gets the unbiased estimate); in eval mode uses the running buffers.
    ``running_mean`` and ``running_var`` may be None in training mode (then
    nothing is tracked).
    """
    C, M, axes, shape = _check_batch_norm(
        x, running_mean, running_var, weight, bias, training, momentum, eps
    )
    xp = xp_of(x, running_mean, running_var, weight, bias)
    gamma = None if weight is None else weight.astype(x.dtype, copy=False)
    beta = None if bias is None else bias.astype(x.dtype, copy=False)
    # BEGIN SOLUTION batch_norm_forward
    if training:
        mean = x.mean(axis=axes)
        x_centered = x - mean.reshape(shape)
        var = (x_centered * x_centered).mean(axis=axes)  # biased: divide by M
        if running_mean is not None:
            # [...] = writes into the caller's buffers (in place, cast to their dtype)
            running_mean[...] = (1 - momentum) * running_mean + momentum * mean
            running_var[...] = (1 - momentum) * running_var + momentum * var * (M / (M - 1))
    else:
        mean = running_mean.astype(x.dtype, copy=False)
        var = running_var.astype(x.dtype, copy=False)
        x_centered = x - mean.reshape(shape)
    inv_std = 1 / xp.sqrt(var + eps)  # 1 / sigma, shape (C,)
    x_hat = x_centered * inv_std.reshape(shape)
    out = x_hat
    if gamma is not None:
        out = out * gamma.reshape(shape)
    if beta is not None:
        out = out + beta.reshape(shape)
    # END SOLUTION
    dtypes = tuple(None if a is None else a.dtype for a in (weight, bias))
    cache = BatchNormCache(x_hat, inv_std, gamma, training, axes, shape, dtypes)
    return out, cache


def batch_norm_backward(dout, cache):
    """Returns (dx, dweight, dbias); dweight / dbias are None where weight / bias were None."""
    x_hat, inv_std, gamma, training, axes, shape, (weight_dtype, bias_dtype) = cache
    # BEGIN SOLUTION batch_norm_backward
    dweight = None if weight_dtype is None else (dout * x_hat).sum(axis=axes)
    dbias = None if bias_dtype is None else dout.sum(axis=axes)
    scale = inv_std if gamma is None else gamma * inv_std  # gamma / sigma, shape (C,)
    if training:
        dout_mean = dout.mean(axis=axes, keepdims=True)
        proj = (dout * x_hat).mean(axis=axes, keepdims=True)
        dx = scale.reshape(shape) * (dout - dout_mean - x_hat * proj)
    else:
        dx = scale.reshape(shape) * dout
    # END SOLUTION
    if dweight is not None:
        dweight = dweight.astype(weight_dtype, copy=False)
    if dbias is not None:
        dbias = dbias.astype(bias_dtype, copy=False)
    return dx, dweight, dbias


def batch_norm_naive(
    x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5
):
    """Batch norm one channel at a time, statistics written out as sums.

    Updates the running buffers in place in training mode, like the fast version.
    """
    C, M, axes, shape = _check_batch_norm(
        x, running_mean, running_var, weight, bias, training, momentum, eps
    )
    xp = xp_of(x, running_mean, running_var, weight, bias)
    out = xp.empty(x.shape, dtype=x.dtype)
    for c in range(C):
        values = x[:, c]  # every value of channel c: (N,), (N, L) or (N, H, W)
        if training:
            mean = values.sum() / M
            var = ((values - mean) ** 2).sum() / M
            if running_mean is not None:
                running_mean[c] = (1 - momentum) * running_mean[c] + momentum * mean
                running_var[c] = (1 - momentum) * running_var[c] + momentum * var * M / (M - 1)
        else:
            mean, var = running_mean[c], running_var[c]
        y = (values - mean) / xp.sqrt(var + eps)
        if weight is not None:
            y = y * weight[c]
        if bias is not None:
            y = y + bias[c]
        out[:, c] = y
    return out
