"""Weight initialisation: Kaiming (He) for ReLU networks, and the bilinear upsampling kernel.

Kaiming initialisation (He et al. 2015)
---------------------------------------
A layer computes ``y = sum_{i=1..n} w_i x_i`` over ``n = fan_in`` inputs
(for a conv weight of shape (C_out, C_in, kh, kw), ``fan_in = C_in*kh*kw``).
With weights drawn independently, zero-mean, of variance ``Var(w)``,

    Var(y) = n * Var(w) * E[x^2].

If ``x = relu(z)`` for a zero-mean symmetric ``z``, half of the mass is cut
off, so ``E[x^2] = Var(z) / 2``. Keeping ``Var(y) = Var(z)`` from layer to
layer therefore needs

    Var(w) = 2 / n,   i.e.  std = gain / sqrt(fan_in),  gain = sqrt(2).

For a leaky ReLU of slope a, ``E[x^2] = (1 + a^2) Var(z) / 2`` and the gain is
``sqrt(2 / (1 + a^2))``; for a linear layer (no nonlinearity) it is 1. A
uniform distribution on ``[-b, b]`` has variance ``b^2 / 3``, so the uniform
version uses ``b = gain * sqrt(3 / fan_in)``.

Bilinear upsampling kernel (FCN)
--------------------------------
A transpose convolution with stride s and the kernel below performs bilinear
interpolation by the factor s. For a kernel of size k:

    f = (k + 1) // 2
    c = f - 1 if k is odd else f - 0.5        (the kernel's centre)
    w[i, j] = (1 - |i - c| / f) * (1 - |j - c| / f)

It is placed on the channel diagonal only (input channel c feeds output
channel c), so each channel is upsampled on its own.

Reproducibility
---------------
Random values come from a NumPy ``Generator`` on the host, then move to the
weight's device, so a model gets the same initial weights on CPU and GPU, in
float32 and float64. ``generator`` may be a ``Generator``, an int seed, or
None for the module-wide stream that ``manual_seed`` resets (seeded with 0
at import, so scripts are reproducible run to run).
"""

from __future__ import annotations

import math

from .. import backend

_host = backend.module_for("cpu")  # the host array module: random draws happen here
_default_generator = _host.random.default_rng(0)


def manual_seed(seed: int) -> None:
    """Reset the stream that layers draw their initial weights from."""
    global _default_generator
    _default_generator = _host.random.default_rng(seed)


def get_generator(generator=None):
    """A host Generator from None (the module stream), an int seed, or a Generator."""
    if generator is None:
        return _default_generator
    if isinstance(generator, _host.random.Generator):
        return generator
    if isinstance(generator, int) and not isinstance(generator, bool):
        return _host.random.default_rng(generator)
    raise TypeError(f"generator must be None, an int seed or a numpy Generator, got {generator!r}")


def _raw(tensor):
    """The raw array of a Tensor, or the array itself."""
    if backend.is_cupy_array(tensor) or hasattr(tensor, "__array_interface__"):
        return tensor
    array = getattr(tensor, "data", None)
    if backend.is_cupy_array(array) or hasattr(array, "__array_interface__"):
        return array
    raise TypeError(f"tensor must be a Tensor or an array, got {type(tensor).__name__}")


def _fill(tensor, host_values):
    """Write host values into the tensor's array in place, on its own device and dtype."""
    array = _raw(tensor)
    array[...] = backend.to_device(host_values, backend.device_of(array))
    return tensor


def calculate_fan_in_and_fan_out(shape) -> tuple[int, int]:
    """torch's convention: weight (out, in, *kernel) -> (in*prod(kernel), out*prod(kernel))."""
    if len(shape) < 2:
        raise ValueError(f"fan in/out need a weight with at least 2 dims, got shape {tuple(shape)}")
    receptive = 1
    for k in shape[2:]:
        receptive *= int(k)
    return int(shape[1]) * receptive, int(shape[0]) * receptive


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The factor that keeps activations' variance constant through ``nonlinearity``."""
    if nonlinearity in ("linear", "identity", "sigmoid", "conv2d", "conv_transpose2d"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3.0
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else float(param)
        return math.sqrt(2.0 / (1.0 + slope**2))
    raise ValueError(
        f"nonlinearity must be one of linear, sigmoid, tanh, relu, leaky_relu; got {nonlinearity!r}"
    )


def _kaiming_std(shape, a, mode, nonlinearity):
    fan_in, fan_out = calculate_fan_in_and_fan_out(shape)
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan = fan_in if mode == "fan_in" else fan_out
    if fan == 0:
        raise ValueError(f"cannot initialise a weight of shape {tuple(shape)}: its fan is 0")
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_normal_(tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "relu",
                    generator=None):
    """Fill in place from N(0, std^2), ``std = gain / sqrt(fan)``. Returns ``tensor``."""
    shape = _raw(tensor).shape
    std = _kaiming_std(shape, a, mode, nonlinearity)
    return _fill(tensor, get_generator(generator).normal(0.0, std, size=shape))


def kaiming_uniform_(tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "relu",
                     generator=None):
    """Fill in place from U(-b, b), ``b = gain * sqrt(3 / fan)``. Returns ``tensor``."""
    shape = _raw(tensor).shape
    bound = math.sqrt(3.0) * _kaiming_std(shape, a, mode, nonlinearity)
    return _fill(tensor, get_generator(generator).uniform(-bound, bound, size=shape))


def normal_(tensor, mean: float = 0.0, std: float = 1.0, generator=None):
    """Fill in place from N(mean, std^2)."""
    shape = _raw(tensor).shape
    return _fill(tensor, get_generator(generator).normal(mean, std, size=shape))


def uniform_(tensor, low: float = 0.0, high: float = 1.0, generator=None):
    """Fill in place from U(low, high)."""
    shape = _raw(tensor).shape
    return _fill(tensor, get_generator(generator).uniform(low, high, size=shape))


def constant_(tensor, value: float):
    """Fill in place with ``value``."""
    _raw(tensor)[...] = value
    return tensor


def zeros_(tensor):
    """Fill in place with zeros."""
    return constant_(tensor, 0.0)


def ones_(tensor):
    """Fill in place with ones."""
    return constant_(tensor, 1.0)


def bilinear_kernel(kernel_size, device: str = "cpu", dtype="float64"):
    """The (kh, kw) bilinear upsampling kernel of FCN (formula in the module docstring).

    For k = 4: f = 2, c = 1.5, the 1-D factor is [0.25, 0.75, 0.75, 0.25], and
    ``w`` is its outer product with itself.
    """
    from ..validate import pair

    kh, kw = pair(kernel_size, "kernel_size", minimum=1)
    xp = backend.module_for(device)

    def factor(k):
        f = (k + 1) // 2
        c = f - 1 if k % 2 == 1 else f - 0.5
        return 1.0 - xp.abs(xp.arange(k, dtype=dtype) - c) / f

    return factor(kh)[:, None] * factor(kw)[None, :]


def bilinear_(tensor, groups: int = 1):
    """Set a transpose-conv weight (C_in, C_out/groups, kh, kw) to bilinear upsampling, in place.

    Each group's input channel a feeds only the group's output channel a (the
    channel diagonal); all other entries are 0. With C_in == C_out (groups=1)
    or groups == C_in == C_out (depthwise) every channel is upsampled on its own.
    """
    array = _raw(tensor)
    if array.ndim != 4:
        raise ValueError(f"tensor must have shape (C_in, C_out/groups, kh, kw), got {array.shape}")
    c_in, c_out_per_group, kh, kw = array.shape
    if groups < 1 or c_in % groups:
        raise ValueError(f"groups must divide C_in={c_in}, got groups={groups}")
    c_in_per_group = c_in // groups
    kernel = bilinear_kernel((kh, kw), device=backend.device_of(array), dtype=array.dtype)
    array[...] = 0
    for c in range(c_in):
        a = c % c_in_per_group  # the channel's index within its group
        if a < c_out_per_group:
            array[c, a] = kernel
    return tensor


def empty(shape, device: str | None = None, dtype=None):
    """An uninitialised array for a new weight: on ``device`` (default: the default
    device) with ``dtype`` (default float32, the training dtype)."""
    device = backend.get_default_device() if device is None else device
    xp = backend.module_for(device)
    return xp.empty(tuple(int(s) for s in shape), dtype="float32" if dtype is None else dtype)
