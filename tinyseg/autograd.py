"""Reverse-mode automatic differentiation: the chain rule and nothing else.

A ``Tensor`` wraps a raw array (``.data``, NumPy or CuPy). Each call of a
``Function`` records one *node* on a tape: the function, its context ``ctx``
(what forward saved) and its input tensors. ``y.backward(dout)`` then walks the
nodes from ``y`` back to the leaves in reverse topological order. At each node
it applies the chain rule

    dL/d(input_i) = backward_i(ctx, dL/d(output))

and *adds* the result to what that input already received, because a tensor
used twice gets a gradient from each use (the multivariate chain rule sums
over paths). Leaves, the tensors you made yourself with ``requires_grad=True``,
keep their total in ``.grad``.

This file knows no operator's math. Each operator's forward and backward lives
in ``tinyseg/ops``; ``tinyseg/functional.py`` wraps them in Functions. The
few elementwise rules below (``+``, ``*``, ``exp``...) are one line each.
"""

from __future__ import annotations

import contextlib

from . import backend

_grad_enabled = True


@contextlib.contextmanager
def no_grad():
    """Inside this block no tape is recorded (evaluation, optimiser steps)."""
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = previous


def is_grad_enabled() -> bool:
    return _grad_enabled


def _is_float(dtype) -> bool:
    return dtype.kind == "f"


class Context:
    """What ``forward`` leaves for ``backward`` (torch's ``ctx``)."""

    def __init__(self):
        self.saved_tensors = ()
        self.needs_input_grad = ()

    def save_for_backward(self, *arrays):
        self.saved_tensors = arrays


class Node:
    """One recorded call: the Function class, its ctx, its inputs, its outputs' shapes."""

    __slots__ = ("function", "ctx", "inputs", "out_meta")

    def __init__(self, function, ctx, inputs, out_meta):
        self.function, self.ctx, self.inputs, self.out_meta = function, ctx, inputs, out_meta


class Function:
    """Subclass with two static methods, as in ``torch.autograd.Function``::

    class Square(Function):
        @staticmethod
        def forward(ctx, x):          # raw arrays in, raw array(s) out
            ctx.save_for_backward(x)
            return x * x
        @staticmethod
        def backward(ctx, dout):      # one dout per output
            (x,) = ctx.saved_tensors
            return 2 * x * dout       # one grad per forward input (None: no grad)

    y = Square.apply(x)
    """

    @staticmethod
    def forward(ctx, *args, **kwargs):
        raise NotImplementedError

    @staticmethod
    def backward(ctx, *douts):
        raise NotImplementedError

    @classmethod
    def apply(cls, *args, **kwargs):
        ctx = Context()
        raw = [a.data if isinstance(a, Tensor) else a for a in args]
        # Every array argument on one device: a clear error, not a raw CuPy TypeError.
        backend.xp_of(*raw, *kwargs.values())
        out = cls.forward(ctx, *raw, **kwargs)
        outs = out if isinstance(out, tuple) else (out,)
        ctx.needs_input_grad = tuple(isinstance(a, Tensor) and a.requires_grad for a in args)
        record = _grad_enabled and any(ctx.needs_input_grad)
        node = None
        if record:
            inputs = tuple(a if isinstance(a, Tensor) else None for a in args)
            node = Node(cls, ctx, inputs, [(o.shape, o.dtype) for o in outs])
        tensors = []
        for i, o in enumerate(outs):
            differentiable = record and _is_float(o.dtype)
            t = Tensor(o, requires_grad=differentiable)
            if differentiable:
                t._node, t._index = node, i
            tensors.append(t)
        return tuple(tensors) if isinstance(out, tuple) else tensors[0]


class Tensor:
    """An array plus the bookkeeping for its gradient."""

    __array_priority__ = 1000  # so that `ndarray + Tensor` calls Tensor.__radd__

    def __init__(self, data, requires_grad: bool = False):
        if isinstance(data, Tensor):
            data = data.data
        xp = backend.xp_of(data)
        self.data = data if backend.is_cupy_array(data) else xp.asarray(data)
        if requires_grad and not _is_float(self.data.dtype):
            raise TypeError(f"requires_grad=True needs a floating dtype, got {self.data.dtype}")
        self.requires_grad = bool(requires_grad)
        self.grad = None
        self._node = None  # the Node that made this tensor; None for a leaf
        self._index = 0  # which output of that node

    # ----- plain properties -------------------------------------------------
    shape = property(lambda self: self.data.shape)
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    size = property(lambda self: self.data.size)
    device = property(lambda self: backend.device_of(self.data))
    is_leaf = property(lambda self: self._node is None)

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"tensor({self.data!r}{grad}, device='{self.device}')"

    def numpy(self):
        """The values as a numpy array (copied off the GPU if needed)."""
        return backend.to_numpy(self.data)

    def item(self):
        return self.data.item()

    def to(self, device: str) -> Tensor:
        """A copy on 'cpu' or 'gpu'. A leaf stays a leaf; gradients flow through."""
        if device == self.device:
            return self
        if self.is_leaf:
            return Tensor(backend.to_device(self.data, device), self.requires_grad)
        return _ToDevice.apply(self, device)

    def detach(self) -> Tensor:
        return Tensor(self.data)

    # ----- the backward pass ------------------------------------------------
    def backward(self, grad=None):
        """Accumulate d(self)/d(leaf) * grad into every leaf's ``.grad``."""
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad")
        xp = backend.xp_of(self.data)
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"grad can be left out only for a scalar output; this one has shape "
                    f"{self.shape}. Pass grad= an array of that shape"
                )
            grad = xp.ones_like(self.data)
        grad = grad.data if isinstance(grad, Tensor) else xp.asarray(grad, dtype=self.dtype)
        if grad.shape != self.shape:
            raise ValueError(f"grad has shape {grad.shape}, expected {self.shape}")
        if self.is_leaf:
            self._accumulate(grad)
            return
        pending = {id(self._node): [None] * len(self._node.out_meta)}
        pending[id(self._node)][self._index] = grad
        for node in _topological_order(self._node):
            douts = pending.pop(id(node))
            douts = [
                d if d is not None else xp.zeros(shape, dtype)
                for d, (shape, dtype) in zip(douts, node.out_meta)
            ]
            grads = node.function.backward(node.ctx, *douts)
            grads = grads if isinstance(grads, tuple) else (grads,)
            if len(grads) < len(node.inputs):
                raise RuntimeError(
                    f"{node.function.__name__}.backward returned {len(grads)} gradients "
                    f"for {len(node.inputs)} inputs"
                )
            for tensor, g in zip(node.inputs, grads):
                if tensor is None or g is None or not tensor.requires_grad:
                    continue
                if g.shape != tensor.shape:
                    raise RuntimeError(
                        f"{node.function.__name__}.backward gave a gradient of shape "
                        f"{g.shape} for an input of shape {tensor.shape}"
                    )
                if tensor.is_leaf:
                    tensor._accumulate(g)
                else:
                    slots = pending.setdefault(
                        id(tensor._node), [None] * len(tensor._node.out_meta)
                    )
                    old = slots[tensor._index]
                    slots[tensor._index] = g if old is None else old + g

    def _accumulate(self, g):
        self.grad = g.copy() if self.grad is None else self.grad + g

    # ----- operators ----------------------------------------------------------
    def __add__(self, other):
        return _Add.apply(self, other)

    def __radd__(self, other):
        return _Add.apply(other, self)

    def __sub__(self, other):
        return _Add.apply(self, -other)

    def __rsub__(self, other):
        return _Add.apply(other, -self)

    def __mul__(self, other):
        return _Mul.apply(self, other)

    def __rmul__(self, other):
        return _Mul.apply(other, self)

    def __truediv__(self, other):
        return _Div.apply(self, other)

    def __rtruediv__(self, other):
        return _Div.apply(other, self)

    def __matmul__(self, other):
        return _MatMul.apply(self, other)

    def __rmatmul__(self, other):
        return _MatMul.apply(other, self)

    def __pow__(self, exponent):
        if isinstance(exponent, Tensor):
            raise TypeError("only a number exponent is supported: x ** 2, not x ** tensor")
        return _Pow.apply(self, exponent)

    def __neg__(self):
        return _Mul.apply(self, -1.0)

    def __getitem__(self, index):
        index = index.data if isinstance(index, Tensor) else index
        return _GetItem.apply(self, index)

    # comparisons give plain boolean tensors: they have no gradient
    def __lt__(self, other):
        return Tensor(self.data < _raw(other))

    def __le__(self, other):
        return Tensor(self.data <= _raw(other))

    def __gt__(self, other):
        return Tensor(self.data > _raw(other))

    def __ge__(self, other):
        return Tensor(self.data >= _raw(other))

    def reshape(self, *shape):
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        return _Reshape.apply(self, tuple(shape))

    def view(self, *shape):
        return self.reshape(*shape)

    def flatten(self, start_dim=0):
        return self.reshape(self.shape[:start_dim] + (-1,))

    def permute(self, *dims):
        dims = dims[0] if len(dims) == 1 and isinstance(dims[0], (tuple, list)) else dims
        return _Permute.apply(self, tuple(dims))

    def transpose(self, dim0, dim1):
        dims = list(range(self.ndim))
        dims[dim0], dims[dim1] = dims[dim1], dims[dim0]
        return self.permute(dims)

    def sum(self, dim=None, keepdim=False):
        return _Sum.apply(self, dim, keepdim)

    def mean(self, dim=None, keepdim=False):
        axes = range(self.ndim) if dim is None else _as_tuple(dim)
        count = 1
        for a in axes:
            count *= self.shape[a]
        return self.sum(dim, keepdim) / count

    def max(self, dim=None, keepdim=False):
        return _Max.apply(self, dim, keepdim)

    def exp(self):
        return _Exp.apply(self)

    def log(self):
        return _Log.apply(self)

    def abs(self):
        return self * Tensor(backend.xp_of(self.data).sign(self.data))

    def argmax(self, dim=None):
        return Tensor(self.data.argmax(axis=dim))


def tensor(data, requires_grad: bool = False, dtype=None, device: str | None = None) -> Tensor:
    """Make a leaf tensor from an array, list or number.

    ``device`` defaults to the array's own device for an array, else to
    ``backend.get_default_device()``.
    """
    if isinstance(data, Tensor):
        data = data.data
    if device is None:
        is_array = backend.is_cupy_array(data) or hasattr(data, "__array_interface__")
        device = backend.device_of(data) if is_array else backend.get_default_device()
    xp = backend.module_for(device)
    if backend.device_of(data) != device:
        data = backend.to_device(data, device)
    return Tensor(xp.asarray(data, dtype=dtype), requires_grad=requires_grad)


def cat(tensors, dim: int = 0) -> Tensor:
    """Join tensors along an existing axis."""
    return _Cat.apply(dim, *tensors)


def stack(tensors, dim: int = 0) -> Tensor:
    """Join tensors along a new axis."""
    return cat([t.reshape(t.shape[:dim] + (1,) + t.shape[dim:]) for t in map(_wrap, tensors)], dim)


# ----- helpers -----------------------------------------------------------------
def _raw(a):
    return a.data if isinstance(a, Tensor) else a


def _wrap(a):
    return a if isinstance(a, Tensor) else Tensor(a)


def _as_tuple(dim):
    return tuple(dim) if isinstance(dim, (tuple, list)) else (dim,)


def _topological_order(root):
    """Nodes reachable from ``root``, each after every node that consumes it."""
    order, seen = [], set()
    stack = [(root, False)]
    while stack:  # iterative depth-first search: deep nets would overflow recursion
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        for t in node.inputs:
            if t is not None and t._node is not None and id(t._node) not in seen:
                stack.append((t._node, False))
    return reversed(order)


def unbroadcast(grad, shape):
    """Sum ``grad`` down to ``shape``: the backward of NumPy broadcasting."""
    while grad.ndim > len(shape):
        grad = grad.sum(axis=0)
    for axis, size in enumerate(shape):
        if size == 1 and grad.shape[axis] != 1:
            grad = grad.sum(axis=axis, keepdims=True)
    return grad


def _shape_of(a):
    return getattr(a, "shape", ())


# ----- the elementwise and shape rules -----------------------------------------
class _Add(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = (_shape_of(a), _shape_of(b))
        return a + b

    @staticmethod
    def backward(ctx, dout):
        return tuple(unbroadcast(dout, s) for s in ctx.shapes)


class _Mul(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx, dout):
        a, b = ctx.saved_tensors
        return unbroadcast(dout * b, _shape_of(a)), unbroadcast(dout * a, _shape_of(b))


class _Div(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a / b

    @staticmethod
    def backward(ctx, dout):
        a, b = ctx.saved_tensors
        da = unbroadcast(dout / b, _shape_of(a))
        db = unbroadcast(-dout * a / (b * b), _shape_of(b))
        return da, db


class _MatMul(Function):
    @staticmethod
    def forward(ctx, a, b):
        if a.ndim < 2 or b.ndim < 2:
            raise ValueError(f"@ needs operands with 2 or more dims, got {a.shape} and {b.shape}")
        ctx.save_for_backward(a, b)
        return a @ b

    @staticmethod
    def backward(ctx, dout):
        a, b = ctx.saved_tensors
        da = dout @ b.swapaxes(-1, -2)
        db = a.swapaxes(-1, -2) @ dout
        return unbroadcast(da, a.shape), unbroadcast(db, b.shape)


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
        (out,) = ctx.saved_tensors
        return dout * out


class _Log(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return backend.xp_of(x).log(x)

    @staticmethod
    def backward(ctx, dout):
        (x,) = ctx.saved_tensors
        return dout / x


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
        ctx.dims = dims
        return x.transpose(dims)

    @staticmethod
    def backward(ctx, dout):
        inverse = [0] * len(ctx.dims)
        for i, d in enumerate(ctx.dims):
            inverse[d % len(ctx.dims)] = i
        return dout.transpose(inverse), None


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
        ctx.in_shape = x.shape
        ctx.axes = (
            tuple(range(x.ndim)) if dim is None else tuple(a % x.ndim for a in _as_tuple(dim))
        )
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
        xp = backend.xp_of(x)
        axes = tuple(range(x.ndim)) if dim is None else tuple(a % x.ndim for a in _as_tuple(dim))
        rest = tuple(a for a in range(x.ndim) if a not in axes)
        moved = x.transpose(rest + axes).reshape([x.shape[a] for a in rest] + [-1])
        arg = moved.argmax(axis=-1)
        out = xp.take_along_axis(moved, arg[..., None], axis=-1)[..., 0]
        ctx.save_for_backward(arg)
        ctx.meta = (x.shape, axes, rest, moved.shape)
        if keepdim:
            out = out.reshape([1 if a in axes else x.shape[a] for a in range(x.ndim)])
        return out

    @staticmethod
    def backward(ctx, dout):
        xp = backend.xp_of(dout)
        (arg,) = ctx.saved_tensors
        in_shape, axes, rest, moved_shape = ctx.meta
        dmoved = xp.zeros(moved_shape, dtype=dout.dtype)
        # one winner per row, so a plain assignment at flat positions is safe
        rows = xp.arange(arg.size) * moved_shape[-1]
        dmoved.reshape(-1)[rows + arg.reshape(-1)] = dout.reshape(-1)
        dmoved = dmoved.reshape([in_shape[a] for a in rest + axes])
        inverse = [0] * len(in_shape)
        for i, a in enumerate(rest + axes):
            inverse[a] = i
        return dmoved.transpose(inverse), None, None


class _Cat(Function):
    @staticmethod
    def forward(ctx, dim, *arrays):
        xp = backend.xp_of(*arrays)
        ctx.dim = dim
        ctx.sizes = [a.shape[dim] for a in arrays]
        return xp.concatenate(arrays, axis=dim)

    @staticmethod
    def backward(ctx, dout):
        xp = backend.xp_of(dout)
        cuts = []
        total = 0
        for s in ctx.sizes[:-1]:
            total += s
            cuts.append(total)
        return (None, *xp.split(dout, cuts, axis=ctx.dim))


class _ToDevice(Function):
    @staticmethod
    def forward(ctx, x, device):
        ctx.source = backend.device_of(x)
        return backend.to_device(x, device)

    @staticmethod
    def backward(ctx, dout):
        return backend.to_device(dout, ctx.source), None
