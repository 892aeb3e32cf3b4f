"""Linear (fully connected) layer: ``y = x @ weight.T + bias``, weight (out, in)."""

from __future__ import annotations

from .. import functional as F
from . import init
from .module import Module, Parameter


class Linear(Module):
    """Affine map over the last axis. Kaiming-normal weight (fan_in = in_features), zero bias.

    :param generator: seed or numpy Generator for the initial weights.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, device=None,
                 dtype=None, generator=None):
        super().__init__()
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(init.empty((out_features, in_features), device, dtype))
        init.kaiming_normal_(self.weight, nonlinearity="relu", generator=generator)
        self.bias = Parameter(init.zeros_(init.empty((out_features,), device, dtype))) if bias \
            else None

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, " \
               f"bias={self.bias is not None}"
