"""tinyseg: segmentation and detection from scratch in NumPy/CuPy.

Read the package in layer order: ``backend`` -> ``ops`` (the textbook) ->
``autograd`` -> ``functional`` -> ``nn`` -> ``optim``.
"""

from . import backend
from .autograd import Function, Tensor, cat, is_grad_enabled, no_grad, stack, tensor
from .gradcheck import GradcheckError, gradcheck, numerical_gradient, rel_error

__version__ = "0.1.0"

__all__ = [
    "Function",
    "GradcheckError",
    "Tensor",
    "backend",
    "cat",
    "gradcheck",
    "is_grad_enabled",
    "no_grad",
    "numerical_gradient",
    "rel_error",
    "stack",
    "tensor",
]
