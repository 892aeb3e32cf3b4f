"""The Tensor conveniences: operators, shape methods and their small Functions.

``tape.py`` knows how to record and replay; this file gives ``Tensor`` the
everyday vocabulary of ``+ - * / @ **``, ``x[i]``, ``reshape``, ``permute``,
``sum``, ``mean``, ``max``, ``exp``, ``log``, ``to`` and the functions ``cat``
and ``stack``. Each is a ``Function`` whose backward is a few lines:

    a + b      da = db = dout                   (then unbroadcast)
    a * b      da = dout b,    db = dout a
    a / b      da = dout / b,  db = -dout a / b^2
    A @ B      dA = dout B^T,  dB = A^T dout
    x ** p     dx = p x^(p-1) dout
    exp, log   dx = dout e^x,  dx = dout / x
    reshape, permute   the inverse reshape / permutation of dout
    x[index]   scatter-add dout into zeros (an index may repeat)
    sum        dout broadcast back over the summed axes
    max        dout to the first maximum, zeros elsewhere
    cat        dout split at the same places

Where one input needs no gradient (``ctx.needs_input_grad``) its product is
not computed. Broadcasting: an input of shape (3, 1) used against (3, 4) was
read four times per element, so its gradient is dout summed over that axis
(``unbroadcast``).

How the methods reach Tensor: this module imports ``tape`` and attaches them
(``Tensor.__add__ = ...``) at import; ``tinyseg/autograd/__init__.py`` imports
both, so every ``from tinyseg.autograd import Tensor`` gets a complete Tensor
and no module imports upwards or in a cycle.
"""

from __future__ import annotations

from .. import backend
from .tape import Function, Tensor


def unbroadcast(grad, shape):
    """Sum ``grad`` down to ``shape``: the backward of NumPy broadcasting."""
    while grad.ndim > len(shape):
        grad = grad.sum(axis=0)
    for axis, size in enumerate(shape):
        if size == 1 and grad.shape[axis] != 1:
            grad = grad.sum(axis=axis, keepdims=True)
    return grad


def _raw(a):
    return a.data if isinstance(a, Tensor) else a


def _wrap(a):
    return a if isinstance(a, Tensor) else Tensor(a)


def _axes(dim, ndim):
    """``dim`` (None, an int or a tuple) as a tuple of non-negative axes."""
    if dim is None:
        return tuple(range(ndim))
    return tuple(a % ndim for a in (dim if isinstance(dim, (tuple, list)) else (dim,)))


def _inverse(perm):
    return tuple(sorted(range(len(perm)), key=perm.__getitem__))


def _shape_of(a):
    return getattr(a, "shape", ())


# ----- elementwise and matrix rules ----------------------------------------------
class _Add(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = (_shape_of(a), _shape_of(b))
        return a + b

    @staticmethod
    def backward(ctx, dout):
        need_a, need_b = ctx.needs_input_grad
        da, db = (unbroadcast(dout, s) for s in ctx.shapes)
        return (da if need_a else None), (db if need_b else None)


class _Mul(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx, dout):
        (a, b), (need_a, need_b) = ctx.saved_tensors, ctx.needs_input_grad
        da = unbroadcast(dout * b, _shape_of(a)) if need_a else None
        return da, (unbroadcast(dout * a, _shape_of(b)) if need_b else None)


class _Div(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a / b

    @staticmethod
    def backward(ctx, dout):
        (a, b), (need_a, need_b) = ctx.saved_tensors, ctx.needs_input_grad
        da = unbroadcast(dout / b, _shape_of(a)) if need_a else None
        return da, (unbroadcast(-dout * a / (b * b), _shape_of(b)) if need_b else None)


class _MatMul(Function):
    @staticmethod
    def forward(ctx, a, b):
        if a.ndim < 2 or b.ndim < 2:
            raise ValueError(f"@ needs operands with 2 or more dims, got {a.shape} and {b.shape}")
        ctx.save_for_backward(a, b)
        return a @ b

    @staticmethod
    def backward(ctx, dout):
        (a, b), (need_a, need_b) = ctx.saved_tensors, ctx.needs_input_grad
        da = unbroadcast(dout @ b.swapaxes(-1, -2), a.shape) if need_a else None
        return da, (unbroadcast(a.swapaxes(-1, -2) @ dout, b.shape) if need_b else None)


class _Pow(Function):
    @staticmethod
    def forward(ctx, x, p):
        ctx.save_for_backward(x)
        ctx.p = p
        return x**p

    @staticmethod
    def backward(ctx, dout):
        (x,) = ctx.saved_tensors
        return dout * ctx.p * x ** (ctx.p - 1), None


class _Exp(Function):
    @staticmethod
    def forward(ctx, x):
        out = backend.xp_of(x).exp(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, dout):
        return dout * ctx.saved_tensors[0]


class _Log(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return backend.xp_of(x).log(x)

    @staticmethod
    def backward(ctx, dout):
        return dout / ctx.saved_tensors[0]


# ----- shape rules ---------------------------------------------------------------
class _Reshape(Function):
    @staticmethod
    def forward(ctx, x, shape):
        ctx.in_shape = x.shape
        return x.reshape(shape)

    @staticmethod
    def backward(ctx, dout):
        return dout.reshape(ctx.in_shape), None


class _Permute(Function):
    @staticmethod
    def forward(ctx, x, dims):
        if sorted(d % x.ndim for d in dims) != list(range(x.ndim)):
            raise ValueError(f"permute dims {dims} are not a permutation of {x.ndim} axes")
        ctx.dims = tuple(d % x.ndim for d in dims)
        return x.transpose(ctx.dims)

    @staticmethod
    def backward(ctx, dout):
        return dout.transpose(_inverse(ctx.dims)), None


class _GetItem(Function):
    @staticmethod
    def forward(ctx, x, index):
        ctx.in_shape, ctx.index = x.shape, index
        return x[index]

    @staticmethod
    def backward(ctx, dout):
        # An index may name one element twice (x[[0, 0]]): scatter-add, not assign.
        xp = backend.xp_of(dout)
        dx = xp.zeros(ctx.in_shape, dtype=dout.dtype)
        positions = xp.arange(dx.size).reshape(ctx.in_shape)[ctx.index]
        backend.scatter_add(dx, positions, dout)
        return dx, None


class _Sum(Function):
    @staticmethod
    def forward(ctx, x, dim, keepdim):
        ctx.in_shape, ctx.axes = x.shape, _axes(dim, x.ndim)
        return x.sum(axis=ctx.axes, keepdims=keepdim)

    @staticmethod
    def backward(ctx, dout):
        xp = backend.xp_of(dout)
        dout = xp.expand_dims(dout, ctx.axes) if dout.ndim < len(ctx.in_shape) else dout
        return xp.broadcast_to(dout, ctx.in_shape).copy(), None, None


class _Max(Function):
    """max over axes; the whole gradient goes to the first maximum (as argmax picks)."""

    @staticmethod
    def forward(ctx, x, dim, keepdim):
        axes = _axes(dim, x.ndim)
        order = tuple(a for a in range(x.ndim) if a not in axes) + axes  # reduced axes last
        moved = x.transpose(order)
        rows = moved.reshape(moved.shape[: x.ndim - len(axes)] + (-1,))
        arg = rows.argmax(axis=-1)
        ctx.save_for_backward(arg)
        ctx.meta = (order, moved.shape, rows.shape[-1])
        out = backend.xp_of(x).take_along_axis(rows, arg[..., None], axis=-1)[..., 0]
        keep = tuple(1 if a in axes else x.shape[a] for a in range(x.ndim))
        return out.reshape(keep) if keepdim else out

    @staticmethod
    def backward(ctx, dout):
        (arg,), (order, moved_shape, width) = ctx.saved_tensors, ctx.meta
        one_hot = backend.xp_of(dout).arange(width) == arg[..., None]  # the winner of each row
        drows = one_hot * dout.reshape(arg.shape + (1,))
        return drows.reshape(moved_shape).transpose(_inverse(order)), None, None


class _Cat(Function):
    @staticmethod
    def forward(ctx, dim, *arrays):
        ctx.dim = dim
        ctx.sizes = [a.shape[dim] for a in arrays]
        return backend.xp_of(*arrays).concatenate(arrays, axis=dim)

    @staticmethod
    def backward(ctx, dout):
        cuts, total = [], 0
        for s in ctx.sizes[:-1]:
            total += s
            cuts.append(total)
        return (None, *backend.xp_of(dout).split(dout, cuts, axis=ctx.dim))


class _ToDevice(Function):
    @staticmethod
    def forward(ctx, x, device):
        ctx.source = backend.device_of(x)
        return backend.to_device(x, device)

    @staticmethod
    def backward(ctx, dout):
        return backend.to_device(dout, ctx.source), None


def cat(tensors, dim: int = 0) -> Tensor:
    """Join tensors along an existing axis."""
    return _Cat.apply(dim, *tensors)


def stack(tensors, dim: int = 0) -> Tensor:
    """Join tensors along a new axis."""
    return cat([t.reshape(t.shape[:dim] + (1,) + t.shape[dim:]) for t in map(_wrap, tensors)], dim)


# ----- the methods, attached to Tensor ----------------------------------------------
def _pow(self, exponent):
    if isinstance(exponent, Tensor):
        raise TypeError("only a number exponent is supported: x ** 2, not x ** tensor")
    return _Pow.apply(self, exponent)


def _reshape(self, *shape):
    shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    return _Reshape.apply(self, tuple(shape))


def _permute(self, *dims):
    dims = dims[0] if len(dims) == 1 and isinstance(dims[0], (tuple, list)) else dims
    return _Permute.apply(self, tuple(dims))


def _transpose(self, dim0, dim1):
    dims = list(range(self.ndim))
    dims[dim0], dims[dim1] = dims[dim1], dims[dim0]
    return self.permute(dims)


def _mean(self, dim=None, keepdim=False):
    count = 1
    for a in _axes(dim, self.ndim):
        count *= self.shape[a]
    return self.sum(dim, keepdim) / count


def _to(self, device: str) -> Tensor:
    """A copy on 'cpu' or 'gpu'. A leaf stays a leaf; gradients flow through."""
    if device == self.device:
        return self
    if self.is_leaf:
        return Tensor(backend.to_device(self.data, device), self.requires_grad)
    return _ToDevice.apply(self, device)


_METHODS = {
    "__add__": lambda self, other: _Add.apply(self, other),
    "__radd__": lambda self, other: _Add.apply(other, self),
    "__sub__": lambda self, other: _Add.apply(self, -other),
    "__rsub__": lambda self, other: _Add.apply(other, -self),
    "__mul__": lambda self, other: _Mul.apply(self, other),
    "__rmul__": lambda self, other: _Mul.apply(other, self),
    "__truediv__": lambda self, other: _Div.apply(self, other),
    "__rtruediv__": lambda self, other: _Div.apply(other, self),
    "__matmul__": lambda self, other: _MatMul.apply(self, other),
    "__rmatmul__": lambda self, other: _MatMul.apply(other, self),
    "__pow__": _pow,
    "__neg__": lambda self: _Mul.apply(self, -1.0),
    "__getitem__": lambda self, index: _GetItem.apply(self, _raw(index)),
    # comparisons give plain boolean tensors: they have no gradient
    "__lt__": lambda self, other: Tensor(self.data < _raw(other)),
    "__le__": lambda self, other: Tensor(self.data <= _raw(other)),
    "__gt__": lambda self, other: Tensor(self.data > _raw(other)),
    "__ge__": lambda self, other: Tensor(self.data >= _raw(other)),
    "reshape": _reshape,
    "view": _reshape,
    "flatten": lambda self, start_dim=0: self.reshape(self.shape[:start_dim] + (-1,)),
    "permute": _permute,
    "transpose": _transpose,
    "sum": lambda self, dim=None, keepdim=False: _Sum.apply(self, dim, keepdim),
    "mean": _mean,
    "max": lambda self, dim=None, keepdim=False: _Max.apply(self, dim, keepdim),
    "exp": lambda self: _Exp.apply(self),
    "log": lambda self: _Log.apply(self),
    "abs": lambda self: self * Tensor(backend.xp_of(self.data).sign(self.data)),
    "argmax": lambda self, dim=None: Tensor(self.data.argmax(axis=dim)),
    "to": _to,
}
for _name, _method in _METHODS.items():
    setattr(Tensor, _name, _method)
