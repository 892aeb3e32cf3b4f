"""The tape: Tensor storage, Function.apply, the backward pass, no_grad.

A ``Tensor`` wraps a raw array (``.data``, NumPy or CuPy). Each call of a
``Function`` records one *node* on a tape: the function, its context ``ctx``
(what forward saved) and its input tensors. ``y.backward(dout)`` then walks the
nodes from ``y`` back to the leaves in reverse topological order. At each node
it applies the chain rule

    dL/d(input_i) = backward_i(ctx, dL/d(output))

and *adds* the result to what that input already received, because a tensor
used twice gets a gradient from each use (the multivariate chain rule sums
over paths). Leaves, the tensors you made yourself with ``requires_grad=True``,
keep their total in ``.grad``. The pass then frees the graph (each node drops its
``ctx``), as torch does: a second ``backward`` through it is an error, not gradients
counted twice, unless the first was called with ``retain_graph=True``.

``ctx.needs_input_grad`` (one bool per forward argument) is known *before*
forward runs, so both forward (what to save) and backward (what to compute)
can skip the gradients nobody asked for: conv2d never folds a dx for the
input image, which needs no gradient.

This file knows no operator's math, not even ``+``: the operator overloads
and the small shape/elementwise Functions live in ``tensor_ops.py``, every
network op in ``tinyseg/ops`` (wrapped as Functions by ``tinyseg.functional``).
"""

from __future__ import annotations

import contextlib

from .. import backend

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
    """What ``forward`` leaves for ``backward`` (torch's ``ctx``).

    ``needs_input_grad[i]`` says whether forward argument i is a Tensor that
    will receive a gradient; it is set before forward is called.
    """

    def __init__(self, needs_input_grad=()):
        self.saved_tensors = ()
        self.needs_input_grad = tuple(needs_input_grad)

    def save_for_backward(self, *arrays):
        self.saved_tensors = arrays


class Node:
    """One recorded call: the Function class, its ctx, its inputs, its outputs' shapes."""

    __slots__ = ("function", "ctx", "inputs", "out_meta")

    def __init__(self, function, ctx, inputs, out_meta):
        self.function, self.ctx, self.inputs, self.out_meta = function, ctx, inputs, out_meta

    freed = property(lambda self: self.ctx is None)  # backward ran and dropped what it saved


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
        raw = [a.data if isinstance(a, Tensor) else a for a in args]
        # Every array argument on one device: a clear error, not a raw CuPy TypeError.
        backend.xp_of(*raw, *kwargs.values())
        needs = [_grad_enabled and isinstance(a, Tensor) and a.requires_grad for a in args]
        ctx = Context(needs)
        out = cls.forward(ctx, *raw, **kwargs)
        outs = out if isinstance(out, tuple) else (out,)
        record = any(needs)
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
    """An array plus the bookkeeping for its gradient.

    The operators (``+``, ``@``, ``x[i]``...) and methods such as ``reshape``,
    ``sum`` and ``to`` are attached by ``tensor_ops.py``.
    """

    __array_priority__ = 1000  # so that `ndarray + Tensor` calls Tensor.__radd__

    def __init__(self, data, requires_grad: bool = False):
        if isinstance(data, Tensor):
            data = data.data
        xp = backend.xp_of(data)
        self.data = data if backend.is_cupy_array(data) else xp.asarray(data)
        if self.data.dtype.kind not in "biuf":  # an object array would fail far from here
            raise TypeError(f"data must hold numbers (bool, int or float), got an array of "
                            f"dtype {self.data.dtype}")
        if requires_grad and not _is_float(self.data.dtype):
            raise TypeError(f"requires_grad=True needs a floating dtype, got {self.data.dtype}")
        self.requires_grad = bool(requires_grad)
        self.grad = None
        self._node = None  # the Node that made this tensor; None for a leaf
        self._index = 0  # which output of that node

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

    def detach(self) -> Tensor:
        return Tensor(self.data)

    def backward(self, grad=None, retain_graph: bool = False):
        """Accumulate d(self)/d(leaf) * grad into every leaf's ``.grad``.

        As in torch, the pass frees the graph: each node drops its ``ctx`` (what forward
        saved), so a second ``backward`` through it is a RuntimeError instead of gradients
        silently added twice. ``retain_graph=True`` keeps the graph for another pass.
        """
        if not isinstance(retain_graph, bool):
            raise TypeError(f"retain_graph must be True or False, got {retain_graph!r}")
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
        # pending[node]: the gradients its outputs have received so far, one slot each
        nodes = list(_topological_order(self._node))
        if any(node.freed for node in nodes):
            raise RuntimeError(
                "Trying to backward through the graph a second time: its saved values were "
                "freed by the first backward(). Call backward(retain_graph=True) the first "
                "time if you need to backward through the graph again"
            )
        pending = {id(self._node): [None] * len(self._node.out_meta)}
        pending[id(self._node)][self._index] = grad
        for node in nodes:
            douts = [
                d if d is not None else xp.zeros(shape, dtype)
                for d, (shape, dtype) in zip(pending.pop(id(node)), node.out_meta)
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
                    continue
                slots = pending.setdefault(id(tensor._node), [None] * len(tensor._node.out_meta))
                old = slots[tensor._index]
                slots[tensor._index] = g if old is None else old + g  # the sum over paths
        if not retain_graph:
            for node in nodes:
                node.ctx = None  # frees the saved arrays; marks the node as used

    def _accumulate(self, g):
        self.grad = g.copy() if self.grad is None else self.grad + g


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
