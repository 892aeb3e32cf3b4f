"""Differentiable functions with torch.nn.functional's names, arguments and defaults.

Each function wraps one forward/backward pair from ``tinyseg.ops`` in a
``Function``: forward runs ``<op>_forward`` and keeps its cache on ctx, backward
runs ``<op>_backward``. No math lives here: to learn how an op works, read its
module in ``tinyseg/ops``.

Every function accepts Tensors or raw arrays (NCHW layout throughout).
"""

from __future__ import annotations

from .autograd import Function, Tensor


def _pair_function(forward, backward, n_inputs, name):
    """A Function class whose forward is ``forward(*inputs, **params)`` and backward ``backward``.

    ``n_inputs`` counts the leading positional arguments that can carry a
    gradient; ``backward(dout, cache)`` returns their gradients in order (a
    single array when there is one).
    """

    def fwd(ctx, *args, **params):
        out, ctx.cache = forward(*args, **params)
        return out

    def bwd(ctx, dout, *unused):
        grads = backward(dout, ctx.cache)
        grads = grads if isinstance(grads, tuple) else (grads,)
        grads = tuple(g if need else None for g, need in zip(grads, ctx.needs_input_grad))
        return grads + (None,) * (len(ctx.needs_input_grad) - len(grads))

    return type(name, (Function,), {"forward": staticmethod(fwd), "backward": staticmethod(bwd)})


def _as_tensor_or_none(a):
    return a if a is None or isinstance(a, Tensor) else Tensor(a)


# ===== conv (tinyseg/ops/conv.py) =====

# ===== end conv =====

# ===== pool (tinyseg/ops/pool.py) =====

# ===== end pool =====

# ===== activation (tinyseg/ops/activation.py) =====

# ===== end activation =====

# ===== norm (tinyseg/ops/norm.py) =====

# ===== end norm =====

# ===== loss (tinyseg/ops/loss.py) =====

# ===== end loss =====
