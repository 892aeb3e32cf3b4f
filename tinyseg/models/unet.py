"""U-Net (Ronneberger, Fischer & Brox, 2015): an encoder-decoder with skip connections.

The encoder (contracting path) repeats, ``depth`` times: two conv3x3 ->
BatchNorm -> ReLU blocks, then a 2x2 max-pool that halves the size; the
channels double at each level (``base_width * 2**level``). A last pair of convs
at the bottom is the bottleneck. The decoder (expanding path) climbs back:
a 2x2 up-convolution (ConvTranspose2d, kernel 2, stride 2) doubles the size and
halves the channels, the encoder map of the same level (the skip) is
concatenated to it, and two convs mix them and halve the channels again.
A 1x1 conv maps the top level to the K class scores.

The skips carry the fine detail that the pools threw away; the decoder decides,
with the coarse context coming up from below, which of it is a boundary.
(BatchNorm is not in the paper; it makes training from scratch quick.)

Shapes for a 64x64 RGB input, depth 3, base width 16, padding "same", K classes
--------------------------------------------------------------------------------
::

    x                                     3 x 64 x 64
    down[0]  2 conv3x3                   16 x 64 x 64  ---------------------- skip0 -----+
    pool                                 16 x 32 x 32                                    |
    down[1]  2 conv3x3                   32 x 32 x 32  ------------- skip1 -----+        |
    pool                                 32 x 16 x 16                           |        |
    down[2]  2 conv3x3                   64 x 16 x 16  --- skip2 ---+           |        |
    pool                                 64 x  8 x  8               |           |        |
    down[3]  2 conv3x3 (bottleneck)     128 x  8 x  8               |           |        |
    up[0]     up-conv 2x2, s2            64 x 16 x 16  cat skip2 <--+           |        |
                                        128 x 16 x 16                           |        |
    up_convs[0]  2 conv3x3               64 x 16 x 16                           |        |
    up[1]     up-conv 2x2, s2            32 x 32 x 32  cat skip1 <--------------+        |
                                         64 x 32 x 32                                    |
    up_convs[1]  2 conv3x3               32 x 32 x 32                                    |
    up[2]     up-conv 2x2, s2            16 x 64 x 64  cat skip0 <-----------------------+
                                         32 x 64 x 64
    up_convs[2]  2 conv3x3               16 x 64 x 64
    classifier  conv1x1                   K x 64 x 64

With "same" padding (pad 1) the convs keep the size, so the output has the
input's size; the input's sides must be multiples of ``2**depth``.

"Valid" padding: the paper's arithmetic
---------------------------------------
Without padding each conv3x3 removes a 1-pixel border: two of them take 4 off
each side length. Along one axis, with ``n`` the input size and ``D = depth``:

    encoder level l < D:  s_l = n_l - 4            (must be even and > 0: it is pooled)
                          n_{l+1} = s_l / 2
    bottleneck:           b = n_D - 4
    decoder level l:      u = 2 * (size from below), then u - 4

The skip ``s_l`` is larger than the up-sampled map ``u`` it joins, so its centre
``u x u`` is cropped out (offset ``(s_l - u) / 2``, always an integer here since
both are even). The paper's net (D = 4, base width 64), for n = 572:

    encoder:     572 -> 568 | pool 284 -> 280 | pool 140 -> 136 | pool 68 -> 64 | pool 32
    bottleneck:  32 -> 28
    decoder:     up 56 (crop skip 64 -> 56) -> 52
                 up 104 (crop 136 -> 104) -> 100
                 up 200 (crop 280 -> 200) -> 196
                 up 392 (crop 568 -> 392) -> 388

so 572 -> 388, lost to the borders: each output pixel sees a full context.
In general, for a bottleneck output of b pixels,

    input  n     = 2**D * b + 2**(D+3) - 4
    output n_out = 2**D * b - 2**(D+2) + 4        (n - n_out = 3 * 2**(D+2) - 8)

so an input side n is valid when n + 4 is a multiple of 2**D and
b = (n + 4) / 2**D - 8 is at least 4 (3 at depth 1; smaller b empties the
decoder). For depth 3: 92 -> 4, 100 -> 12, ..., 148 -> 60, 156 -> 68; for
depth 4, 572 -> 388 (b = 28). ``output_size`` follows the sizes level by level
and raises, naming the input size and its valid neighbours, when a map would be
odd before a pool or empty; ``input_size_for`` inverts it.
"""

from __future__ import annotations

from ..autograd import cat
from ..nn import (
    Conv2d,
    ConvTranspose2d,
    MaxPool2d,
    Module,
    ModuleList,
    Sequential,
)
from . import blocks
from .blocks import check_model_input, conv_bn_relu

_PADDINGS = ("same", "valid")


def double_conv(in_channels: int, out_channels: int, padding: int) -> Sequential:
    """(conv3x3 -> BatchNorm2d -> ReLU) twice; the convs have no bias (BatchNorm shifts)."""
    first = conv_bn_relu(in_channels, out_channels, padding=padding)
    second = conv_bn_relu(out_channels, out_channels, padding=padding)
    return Sequential(*first, *second)  # flat: layers 0-2 and 3-5


def center_crop(x, height: int, width: int):
    """The central ``height x width`` window of an (N, C, H, W) tensor (offsets rounded down)."""
    return blocks.center_crop(x, (height, width))


class UNet(Module):
    """U-Net with configurable depth and width; "same" (default) or "valid" padding.

    :param num_classes: K, the number of output channels (logits).
    :param in_channels: channels of the input image.
    :param depth: number of 2x2 poolings (the paper: 4; 3 suits 64x64 images).
    :param base_width: channels of the top level; level l has ``base_width * 2**l``.
    :param padding: "same" (pad 1, output size = input size) or "valid" (no padding,
        centre-crop the skips; smaller output, see ``output_size``).
    """

    def __init__(self, num_classes: int = 4, in_channels: int = 3, depth: int = 3,
                 base_width: int = 16, padding: str = "same"):
        super().__init__()
        for name, value, minimum in (("num_classes", num_classes, 1),
                                     ("in_channels", in_channels, 1), ("depth", depth, 1),
                                     ("base_width", base_width, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
        if padding not in _PADDINGS:
            raise ValueError(f"padding must be 'same' or 'valid', got {padding!r}")
        self.num_classes, self.in_channels = num_classes, in_channels
        self.depth, self.base_width, self.padding = depth, base_width, padding
        pad = 1 if padding == "same" else 0
        widths = [base_width * 2**level for level in range(depth + 1)]

        # down[l] for l < depth is encoder level l; down[depth] is the bottleneck.
        self.down = ModuleList()
        channels = in_channels
        for width in widths:
            self.down.append(double_conv(channels, width, pad))
            channels = width
        self.pool = MaxPool2d(2)
        # Decoder, deepest level first: up[i] and up_convs[i] work at level depth-1-i.
        self.up, self.up_convs = ModuleList(), ModuleList()
        for level in reversed(range(depth)):
            self.up.append(ConvTranspose2d(widths[level + 1], widths[level], 2, stride=2))
            self.up_convs.append(double_conv(2 * widths[level], widths[level], pad))
        self.classifier = Conv2d(widths[0], num_classes, 1)

    # ----- sizes and configuration ------------------------------------------------
    def _trace(self, n: int):
        """Follow one side length ``n`` through the net: ``(output size, None)``, or
        ``(None, what goes wrong)``."""
        shrink = 0 if self.padding == "same" else 4  # two unpadded conv3x3 take 4 off
        size = n
        for level in range(self.depth):
            size -= shrink
            if size <= 0:
                return None, f"the maps vanish at encoder level {level}"
            if size % 2:
                return None, f"the map is {size} pixels, odd, before pooling at level {level}"
            size //= 2
        size -= shrink
        if size <= 0:
            return None, "the maps vanish in the bottleneck"
        for _ in range(self.depth):
            size = 2 * size - shrink
            if size <= 0:
                return None, "the maps vanish in the decoder"
        return size, None

    def _side(self, n, name: str, h, w) -> int:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"UNet: input {name} must be a positive int, got {n!r} "
                             f"(input size {h}x{w})")
        size, problem = self._trace(n)
        if problem:
            near = [m for m in (self._next_valid(n, -1), self._next_valid(n, 1)) if m]
            raise ValueError(
                f"UNet(depth={self.depth}, padding={self.padding!r}) cannot take input size "
                f"{h}x{w}: along the {name}, {problem}. Valid {name}s near {n}: "
                f"{' or '.join(map(str, near))}"
            )
        return size

    def _next_valid(self, n: int, direction: int):
        """The nearest valid input side length beyond ``n`` in ``direction`` (+1 / -1), or None."""
        m = n + direction
        while 0 < m <= n + 2 ** (self.depth + 4):
            if self._trace(m)[1] is None:
                return m
            m += direction
        return None

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        """The logits' ``(h_out, w_out)`` for an ``h x w`` input.

        "same": ``(h, w)``, which must be multiples of ``2**depth``. "valid": the
        arithmetic of the module docstring (572 -> 388 for the paper's depth 4).
        Raises ValueError naming the input size when a map would be odd before a
        pool or would vanish.
        """
        return self._side(h, "height", h, w), self._side(w, "width", h, w)

    def input_size_for(self, h_out: int, w_out: int) -> tuple[int, int]:
        """The input size whose output is ``h_out x w_out`` (the inverse of ``output_size``)."""
        if self.padding == "same":
            self.output_size(h_out, w_out)
            return h_out, w_out
        offset = 3 * 2 ** (self.depth + 2) - 8  # input - output, for every valid size
        h, w = h_out + offset, w_out + offset
        try:
            if self.output_size(h, w) == (h_out, w_out):
                return h, w
        except ValueError:
            pass
        raise ValueError(
            f"UNet(depth={self.depth}, padding='valid') cannot produce an output of "
            f"{h_out}x{w_out}: output sides are 2**depth * b - {2 ** (self.depth + 2) - 4} "
            f"for a bottleneck size b large enough"
        )

    def config(self) -> dict:
        """The constructor's keyword arguments (JSON-able): ``UNet(**m.config())``."""
        return {
            "num_classes": self.num_classes,
            "in_channels": self.in_channels,
            "depth": self.depth,
            "base_width": self.base_width,
            "padding": self.padding,
        }

    # ----- forward ----------------------------------------------------------------
    def forward(self, x):
        """(N, in_channels, H, W) -> logits (N, num_classes, *output_size(H, W))."""
        x = check_model_input(self, x)
        skips = []
        for level in range(self.depth):
            x = self.down[level](x)
            skips.append(x)
            x = self.pool(x)
        x = self.down[self.depth](x)
        for up, up_conv, skip in zip(self.up, self.up_convs, reversed(skips)):
            x = up(x)
            x = cat([center_crop(skip, x.shape[2], x.shape[3]), x], dim=1)
            x = up_conv(x)
        return self.classifier(x)
