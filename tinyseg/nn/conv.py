"""Convolution layers: Conv2d and ConvTranspose2d hold a weight and call ``F.conv2d``.

The math of both convolutions (im2col, the backward pass, why the transpose
convolution is the adjoint of the convolution) is in ``tinyseg/ops/conv.py``.
A layer only owns the weight, its initialisation and the hyper-parameters.

Shapes (torch's layouts):

* Conv2d weight ``(C_out, C_in/groups, kh, kw)``, bias ``(C_out,)``;
* ConvTranspose2d weight ``(C_in, C_out/groups, kh, kw)``, bias ``(C_out,)``.
"""

from __future__ import annotations

import math

from .. import functional as F
from ..validate import pair
from .init import bilinear_, empty, kaiming_normal_, normal_, zeros_
from .module import Module, Parameter


def _check_channels(in_channels, out_channels, groups):
    for name, value in (("in_channels", in_channels), ("out_channels", out_channels),
                        ("groups", groups)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if in_channels % groups or out_channels % groups:
        raise ValueError(
            f"groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}"
        )


def _zero_bias(channels, device, dtype):
    return Parameter(zeros_(empty((channels,), device, dtype)))


class Conv2d(Module):
    """2-D convolution, ``y = conv2d(x, weight) + bias``.

    The weight starts Kaiming-normal (fan_in, ReLU gain: std = sqrt(2 / (C_in/groups*kh*kw))),
    the bias at zero.

    :param generator: seed or numpy Generator for the initial weights
        (None: the stream of ``tinyseg.nn.init.manual_seed``).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, *, device=None, dtype=None,
                 generator=None):
        super().__init__()
        _check_channels(in_channels, out_channels, groups)
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = pair(kernel_size, "kernel_size", minimum=1)
        self.stride = pair(stride, "stride", minimum=1)
        self.padding = pair(padding, "padding", minimum=0)
        self.dilation = pair(dilation, "dilation", minimum=1)
        shape = (out_channels, in_channels // groups, *self.kernel_size)
        self.weight = Parameter(empty(shape, device, dtype))
        kaiming_normal_(self.weight, nonlinearity="relu", generator=generator)
        self.bias = _zero_bias(out_channels, device, dtype) if bias else None

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                        self.groups)

    def extra_repr(self):
        return _describe(self, padding=(0, 0), dilation=(1, 1), groups=1)


class ConvTranspose2d(Module):
    """2-D transpose convolution (the adjoint of Conv2d): learnable upsampling.

    Output size: ``(H-1)*stride - 2*padding + dilation*(k-1) + output_padding + 1``.

    :param init: ``"kaiming"`` (random, for learned up-convolutions as in U-Net) or
        ``"bilinear"`` (FCN: the weight performs bilinear upsampling by ``stride``
        when ``kernel_size = 2*stride`` and ``padding = stride/2``; bias 0).

    Kaiming here counts the true fan-in of an output pixel: each one receives
    ``C_in/groups * kh*kw / (sh*sw)`` products on average (only one in
    ``sh*sw`` kernel taps lands on a given output position), so
    ``std = sqrt(2 / that)``. For k = s = 2 that is exactly C_in/groups.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 output_padding=0, groups: int = 1, bias: bool = True, dilation=1,
                 init: str = "kaiming", *, device=None, dtype=None, generator=None):
        super().__init__()
        _check_channels(in_channels, out_channels, groups)
        if init not in ("kaiming", "bilinear"):
            raise ValueError(f"init must be 'kaiming' or 'bilinear', got {init!r}")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = pair(kernel_size, "kernel_size", minimum=1)
        self.stride = pair(stride, "stride", minimum=1)
        self.padding = pair(padding, "padding", minimum=0)
        self.output_padding = pair(output_padding, "output_padding", minimum=0)
        self.dilation = pair(dilation, "dilation", minimum=1)
        self.init = init
        shape = (in_channels, out_channels // groups, *self.kernel_size)
        self.weight = Parameter(empty(shape, device, dtype))
        if init == "bilinear":
            bilinear_(self.weight, groups)
        else:
            kh, kw = self.kernel_size
            sh, sw = self.stride
            fan_in = max(in_channels // groups * kh * kw / (sh * sw), 1.0)
            normal_(self.weight, std=math.sqrt(2.0 / fan_in), generator=generator)
        self.bias = _zero_bias(out_channels, device, dtype) if bias else None

    def forward(self, x):
        return F.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding,
                                  self.output_padding, self.groups, self.dilation)

    def extra_repr(self):
        return _describe(
            self, padding=(0, 0), output_padding=(0, 0), dilation=(1, 1), groups=1, init="kaiming"
        )


def _describe(layer, **defaults):
    """A conv layer's repr: sizes and stride, then each setting that is not its default."""
    text = (
        f"{layer.in_channels}, {layer.out_channels}, kernel_size={layer.kernel_size}, "
        f"stride={layer.stride}"
    )
    for name, default in defaults.items():
        value = getattr(layer, name)
        if value != default:
            text += f", {name}={value!r}"
    if layer.bias is None:
        text += ", bias=False"
    return text
