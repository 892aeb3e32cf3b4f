"""SegNet (Badrinarayanan, Kendall and Cipolla, 2017): an encoder-decoder that upsamples with
the encoder's own max-pooling indices.

The idea
--------
Each encoder stage ends with a 2x2 max-pool that keeps, besides the maxima, *where* each maximum
was: its flat index ``h*W + w`` in the (n, c) plane of the map before pooling. The mirrored
decoder stage starts with a max-unpool that writes every value back at exactly that position
and zeros elsewhere (a sparse map), then densifies the sparse map with 3x3 convolutions.

Compared with a transpose convolution (FCN, U-Net), unpooling has no weights and no blur: a
boundary that the encoder saw at pixel (17, 42) is put back at (17, 42), not smeared over a
kernel footprint. Compared with U-Net's skip connections it carries 1 integer per pooled value
instead of the whole pre-pool feature map.

Shapes for the default model (``widths=(16, 32, 64, 64)``, 2 convs per stage, 4 classes) on a
64x64 RGB input, batch N. "cbr" is conv3x3 (pad 1, no bias) -> BatchNorm -> ReLU::

    input                                  (N,   3, 64, 64)
    encoder 0: cbr 3->16, cbr 16->16       (N,  16, 64, 64)   size0 = (64, 64)
               maxpool 2x2 -> indices i0   (N,  16, 32, 32)
    encoder 1: cbr 16->32, cbr 32->32      (N,  32, 32, 32)   size1 = (32, 32)
               maxpool 2x2 -> indices i1   (N,  32, 16, 16)
    encoder 2: cbr 32->64, cbr 64->64      (N,  64, 16, 16)   size2 = (16, 16)
               maxpool 2x2 -> indices i2   (N,  64,  8,  8)
    encoder 3: cbr 64->64, cbr 64->64      (N,  64,  8,  8)   size3 = (8, 8)
               maxpool 2x2 -> indices i3   (N,  64,  4,  4)   bottleneck, stride 16
    decoder 3: unpool(i3, size3)           (N,  64,  8,  8)   3 of every 4 values are 0
               cbr 64->64, cbr 64->64      (N,  64,  8,  8)
    decoder 2: unpool(i2, size2)           (N,  64, 16, 16)
               cbr 64->64, cbr 64->32      (N,  32, 16, 16)
    decoder 1: unpool(i1, size1)           (N,  32, 32, 32)
               cbr 32->32, cbr 32->16      (N,  16, 32, 32)
    decoder 0: unpool(i0, size0)           (N,  16, 64, 64)
               cbr 16->16, cbr 16->16      (N,  16, 64, 64)
    classifier conv1x1 16->4               (N,   4, 64, 64)   logits

Decoder stage ``i`` mirrors encoder stage ``i``: its convolutions keep ``widths[i]`` channels,
and the last one narrows to ``widths[i-1]`` (``widths[0]`` for the top stage), as in the paper.
The input height and width must be multiples of ``2**len(widths)`` (16 here), so that every
pooling halves the map exactly and each unpooling restores it.
"""

from __future__ import annotations

from ..nn import Conv2d, MaxPool2d, MaxUnpool2d, Module, ModuleList, Sequential
from ..validate import check_int, check_int_tuple
from .blocks import check_model_input, conv_bn_relu

__all__ = ["SegNet", "conv_bn_relu"]






def check_divisible(model, h, w, stride: int, why: str) -> tuple[int, int]:
    """(h, w) if both are positive multiples of ``stride``, else a ValueError naming the size."""
    for name, v in (("height", h), ("width", w)):
        if isinstance(v, bool) or not hasattr(v, "__index__") or int(v) < 1:
            raise ValueError(f"input {name} must be a positive int, got {v!r}")
    h, w = int(h), int(w)
    if h % stride or w % stride:
        side, v = ("height", h) if h % stride else ("width", w)
        below, above = v // stride * stride, (v // stride + 1) * stride
        near = f"{below} or {above}" if below else f"{above}"
        raise ValueError(
            f"{type(model).__name__} needs input height and width that are multiples of "
            f"{stride} ({why}), got input size {h}x{w} (H x W); valid {side}s near {v}: {near}"
        )
    return h, w


class SegNet(Module):
    """SegNet: a VGG-style encoder whose max-pool indices drive the decoder's max-unpooling.

    :param num_classes: K, the channels of the logits (background included).
    :param in_channels: channels of the input image (3 for RGB).
    :param widths: channels of each encoder stage; one 2x2 max-pool per stage, so the total
        stride is ``2**len(widths)``.
    :param convs_per_stage: 3x3 conv-BN-ReLU layers in each encoder (and decoder) stage.

    ``forward(x)`` maps (N, in_channels, H, W) to logits (N, num_classes, H, W); H and W must be
    multiples of ``2**len(widths)``. ``encode`` and ``decode`` expose the two halves, with the
    pooling indices in between, for inspection.
    """

    def __init__(self, num_classes: int = 4, in_channels: int = 3, widths=(16, 32, 64, 64),
                 convs_per_stage: int = 2):
        super().__init__()
        self.num_classes = check_int(num_classes, "num_classes", 1)
        self.in_channels = check_int(in_channels, "in_channels", 1)
        self.widths = check_int_tuple(widths, "widths")
        self.convs_per_stage = check_int(convs_per_stage, "convs_per_stage", 1)
        n = self.convs_per_stage

        encoder = []
        c_in = self.in_channels
        for width in self.widths:
            layers = [conv_bn_relu(width, width) for _ in range(n - 1)]
            encoder.append(Sequential(conv_bn_relu(c_in, width), *layers))
            c_in = width
        self.encoder = ModuleList(encoder)
        self.pool = MaxPool2d(2, return_indices=True)
        self.unpool = MaxUnpool2d(2)

        # decoder[i] mirrors encoder[i]; it runs deepest first
        decoder = []
        for i, width in enumerate(self.widths):
            c_out = self.widths[max(i - 1, 0)]
            layers = [conv_bn_relu(width, width) for _ in range(n - 1)]
            decoder.append(Sequential(*layers, conv_bn_relu(width, c_out)))
        self.decoder = ModuleList(decoder)
        self.classifier = Conv2d(self.widths[0], self.num_classes, 1)

    @property
    def total_stride(self) -> int:
        """How much the encoder shrinks the input: ``2**len(widths)``."""
        return 2 ** len(self.widths)

    def config(self) -> dict:
        """The constructor arguments (JSON-able): ``SegNet(**model.config())`` rebuilds it."""
        return {
            "num_classes": self.num_classes,
            "in_channels": self.in_channels,
            "widths": list(self.widths),
            "convs_per_stage": self.convs_per_stage,
        }

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        """The logits' (H, W) for an (h, w) input: the same size, since unpooling undoes pooling.

        :raises ValueError: when h or w is not a multiple of ``2**len(widths)``.
        """
        return check_divisible(self, h, w, self.total_stride,
                               f"{len(self.widths)} stages of 2x2 max-pooling")

    def encode(self, x):
        """Run the encoder.

        :returns: ``(features, skips)``: the bottleneck (N, widths[-1], H/s, W/s) with
            s = ``total_stride``, and for each stage, top first, ``(indices, size)``: the
            pooling indices (an int64 Tensor, flat ``h*W + w`` in the pre-pool plane) and the
            (H, W) of the pre-pool map.
        """
        x = check_model_input(self, x)
        skips = []
        for stage in self.encoder:
            x = stage(x)
            size = tuple(x.shape[2:])
            x, indices = self.pool(x)
            skips.append((indices, size))
        return x, skips

    def decode(self, x, skips):
        """Run the decoder on ``encode``'s output: unpool into each stage's indices, then conv."""
        for stage, (indices, size) in zip(reversed(self.decoder), reversed(skips)):
            x = self.unpool(x, indices, output_size=size)
            x = stage(x)
        return self.classifier(x)

    def forward(self, x):
        """Logits (N, num_classes, H, W) for images (N, in_channels, H, W)."""
        features, skips = self.encode(x)
        return self.decode(features, skips)

    def extra_repr(self):
        return (f"num_classes={self.num_classes}, in_channels={self.in_channels}, "
                f"widths={self.widths}, convs_per_stage={self.convs_per_stage}")
