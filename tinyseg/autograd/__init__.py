"""Reverse-mode automatic differentiation: the chain rule and nothing else.

Two files, read in this order:

* ``tape.py``: ``Tensor`` (an array and its gradient), ``Function.apply``
  (run forward, record a node), ``Tensor.backward`` (replay the nodes in
  reverse topological order, summing the gradients of a tensor used twice)
  and ``no_grad``. No operator's math.
* ``tensor_ops.py``: the operators and methods of Tensor (``+``, ``@``,
  ``reshape``, ``sum``...), each a small Function, attached to Tensor when
  this package is imported.

Every network op (conv2d, max_pool2d, cross_entropy...) lives in
``tinyseg/ops``, wrapped as a Function by ``tinyseg.functional``.
"""

from .tape import Context, Function, Node, Tensor, is_grad_enabled, no_grad, tensor
from .tensor_ops import cat, stack, unbroadcast

__all__ = [
    "Context",
    "Function",
    "Node",
    "Tensor",
    "cat",
    "is_grad_enabled",
    "no_grad",
    "stack",
    "tensor",
    "unbroadcast",
]
