"""FCN-32s, FCN-16s and FCN-8s: fully convolutional networks (Long, Shelhamer & Darrell, 2015).

The idea: take a classification network, replace its fully connected layers by
convolutions so that it outputs a coarse map of class scores, then upsample
that map back to the input size with transpose convolutions. The coarse map
of the last pooling stage (stride 32) knows *what* is in the image but not
precisely *where*; adding score maps read from earlier, finer pooling stages
(pool4 at stride 16, pool3 at stride 8) puts the boundaries back.

Backbone (ours, VGG-style, trained from scratch)
------------------------------------------------
Five stages; stage ``i`` is ``convs[i]`` blocks of conv3x3 (pad 1) -> BatchNorm
-> ReLU at width ``widths[i]``, then a 2x2 max-pool. The pools divide the size
by 2, 4, 8, 16 and 32: pool3, pool4 and pool5 are the outputs of stages 3, 4, 5.
On pool5 sits the "fc" head: fc6 (conv3x3) and fc7 (conv1x1), each with
BatchNorm and ReLU (the paper's fc6/fc7 are VGG's fully connected layers
re-read as 7x7 and 1x1 convolutions). A 1x1 conv, ``score_fr``, turns it into
K class scores.

Upsampling
----------
Each upsampling by a factor s is a transpose convolution with kernel 2s,
stride s and padding s/2 (k4 s2 p1, k16 s8 p4, k32 s16 p8, k64 s32 p16), so

    H_out = (H - 1)*s - 2*(s/2) + 2s = s*H.

Its weight starts as the bilinear kernel on the channel diagonal
(``tinyseg.nn.init.bilinear_``), so before any training it is exactly bilinear
interpolation (``align_corners=False``) away from the s/2-pixel borders. As in
the paper, the final upsampling stays fixed at bilinear and the x2 ones are
learned (``learn_final_upsample=True`` makes the final one learnable too).
Upsampling layers have no bias: the score maps already carry one.

Skip fusion
-----------
    FCN-32s:  upscore(score_fr(pool5))                                   x32
    FCN-16s:  upscore(upscore2(score_fr(pool5)) + score_pool4(pool4))    x16
    FCN-8s:   upscore(upscore_pool4(that sum) + score_pool3(pool3))      x8

where ``score_pool4`` and ``score_pool3`` are 1x1 convs to K channels,
zero-initialised as in the paper, so training starts from the coarser net's
prediction and the skips add detail as they learn.

Shapes for a 64x64 RGB input, default widths (16, 32, 64, 64, 128), K classes
--------------------------------------------------------------------------------
::

    x                      3 x 64 x 64
    stage1  1 conv, pool   16 x 32 x 32   (pool1, /2)
    stage2  1 conv, pool   32 x 16 x 16   (pool2, /4)
    stage3  2 conv, pool   64 x  8 x  8   (pool3, /8)  --> score_pool3  K x 8 x 8 ------+
    stage4  2 conv, pool   64 x  4 x  4   (pool4, /16) --> score_pool4  K x 4 x 4 ---+  |
    stage5  2 conv, pool  128 x  2 x  2   (pool5, /32)                               |  |
    fc6  conv3x3          128 x  2 x  2                                              |  |
    fc7  conv1x1          128 x  2 x  2                                              |  |
    score_fr  conv1x1       K x  2 x  2                                              |  |
                                                                                     |  |
    FCN-32s: upscore k64 s32 p16       K x 64 x 64                                   |  |
    FCN-16s: upscore2 k4 s2 p1         K x  4 x  4   + score_pool4 <-----------------+  |
             upscore k32 s16 p8        K x 64 x 64                                      |
    FCN-8s:  upscore2 k4 s2 p1         K x  4 x  4   + score_pool4                      |
             upscore_pool4 k4 s2 p1    K x  8 x  8   + score_pool3 <--------------------+
             upscore k16 s8 p4         K x 64 x 64

Input sizes must be multiples of 32 (the five poolings), and then the output
has the input's size. (The paper pads the first conv by 100 and crops the
output to accept any size; "same" padding and this rule are simpler.)
"""

from __future__ import annotations

from ..nn import (
    Conv2d,
    ConvTranspose2d,
    Dropout,
    MaxPool2d,
    Module,
    ModuleList,
    Sequential,
    init,
)
from ..validate import check_int, check_int_tuple
from .blocks import check_model_input, conv_bn_relu

_STRIDES = (32, 16, 8)


def bilinear_upsample(channels: int, factor: int, learnable: bool = True) -> ConvTranspose2d:
    """A per-channel x``factor`` transpose conv (k = 2*factor, p = factor/2) set to bilinear."""
    layer = ConvTranspose2d(channels, channels, 2 * factor, stride=factor, padding=factor // 2,
                            bias=False, init="bilinear")
    layer.weight.requires_grad = learnable
    return layer




def _near(n, multiple: int) -> str:
    """The multiples of ``multiple`` next to ``n``, for error messages."""
    below = n // multiple * multiple if isinstance(n, int) else 0
    return " or ".join(str(v) for v in (below, below + multiple) if v > 0)


class VGGBackbone(Module):
    """Five stages of (conv3x3-BN-ReLU) x ``convs[i]`` + 2x2 max-pool.

    ``forward(x)`` returns the five pooled maps ``[pool1, ..., pool5]`` at
    strides 2, 4, 8, 16, 32 with ``widths[i]`` channels.
    """

    def __init__(self, in_channels: int = 3, widths=(16, 32, 64, 64, 128), convs=(1, 1, 2, 2, 2)):
        super().__init__()
        widths = check_int_tuple(widths, "widths", 1, length=5)
        convs = check_int_tuple(convs, "convs", 1, length=5)
        self.stages = ModuleList()
        channels = in_channels
        for width, n_convs in zip(widths, convs):
            blocks = []
            for _ in range(n_convs):
                blocks.append(conv_bn_relu(channels, width))
                channels = width
            self.stages.append(Sequential(*blocks, MaxPool2d(2)))

    def forward(self, x):
        pools = []
        for stage in self.stages:
            x = stage(x)
            pools.append(x)
        return pools


class FCN(Module):
    """A fully convolutional network with output stride ``stride`` (32, 16 or 8).

    ``FCN32s``, ``FCN16s`` and ``FCN8s`` are this class with the stride fixed.

    :param num_classes: K, the number of score channels.
    :param in_channels: channels of the input image.
    :param stride: 32 (no skips), 16 (pool4 skip) or 8 (pool4 and pool3 skips).
    :param widths: the five backbone stages' widths.
    :param convs: conv3x3 blocks per stage.
    :param fc_width: channels of fc6 and fc7.
    :param dropout: dropout probability after fc6 and fc7 (the paper: 0.5; 0 leaves it out).
    :param learn_final_upsample: train the final upsampling too (the paper keeps it
        fixed at bilinear; the x2 upsamplings are always learned).
    """

    _fixed_stride = None  # set by FCN32s / FCN16s / FCN8s

    def __init__(self, num_classes: int = 4, in_channels: int = 3, stride: int = 8,
                 widths=(16, 32, 64, 64, 128), convs=(1, 1, 2, 2, 2), fc_width: int = 128,
                 dropout: float = 0.0, learn_final_upsample: bool = False):
        super().__init__()
        for name, value in (("num_classes", num_classes), ("in_channels", in_channels),
                            ("fc_width", fc_width)):
            check_int(value, name, 1)
        if stride not in _STRIDES:
            raise ValueError(f"stride must be one of {_STRIDES}, got {stride!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.num_classes, self.in_channels, self.stride = num_classes, in_channels, stride
        self.widths = check_int_tuple(widths, "widths", 1, length=5)
        self.convs = check_int_tuple(convs, "convs", 1, length=5)
        self.fc_width, self.dropout = fc_width, float(dropout)
        self.learn_final_upsample = bool(learn_final_upsample)

        self.backbone = VGGBackbone(in_channels, self.widths, self.convs)
        head = [conv_bn_relu(self.widths[4], fc_width, 3)]
        if dropout > 0:
            head.append(Dropout(dropout))
        head.append(conv_bn_relu(fc_width, fc_width, 1))
        if dropout > 0:
            head.append(Dropout(dropout))
        self.head = Sequential(*head)
        self.score_fr = Conv2d(fc_width, num_classes, 1)
        init.kaiming_normal_(self.score_fr.weight, nonlinearity="linear")
        if stride <= 16:
            self.upscore2 = bilinear_upsample(num_classes, 2)
            self.score_pool4 = self._zero_score(self.widths[3])
        if stride == 8:
            self.upscore_pool4 = bilinear_upsample(num_classes, 2)
            self.score_pool3 = self._zero_score(self.widths[2])
        self.upscore = bilinear_upsample(num_classes, stride, self.learn_final_upsample)

    def _zero_score(self, channels: int) -> Conv2d:
        layer = Conv2d(channels, self.num_classes, 1)
        init.zeros_(layer.weight)
        return layer

    # ----- sizes and configuration ------------------------------------------------
    def output_size(self, h: int, w: int) -> tuple[int, int]:
        """``(h, w)``: the logits have the input's size. Raises unless both are multiples of 32."""
        for name, n in (("height", h), ("width", w)):
            if isinstance(n, bool) or not isinstance(n, int) or n < 32 or n % 32:
                raise ValueError(
                    f"{type(self).__name__}: input {name} {n!r} (input size {h}x{w}) must be a "
                    f"positive multiple of 32 (the backbone pools 5 times), e.g. {_near(n, 32)}"
                )
        return h, w

    def config(self) -> dict:
        """The constructor's keyword arguments (JSON-able): ``type(self)(**m.config())``."""
        config = {
            "num_classes": self.num_classes,
            "in_channels": self.in_channels,
            "stride": self.stride,
            "widths": list(self.widths),
            "convs": list(self.convs),
            "fc_width": self.fc_width,
            "dropout": self.dropout,
            "learn_final_upsample": self.learn_final_upsample,
        }
        if self._fixed_stride is not None:
            del config["stride"]
        return config

    # ----- forward ----------------------------------------------------------------
    def forward(self, x):
        """(N, in_channels, H, W) -> logits (N, num_classes, H, W); H, W multiples of 32."""
        x = check_model_input(self, x)
        pools = self.backbone(x)
        return self.decode(pools[2], pools[3], pools[4])

    def decode(self, pool3, pool4, pool5):
        """Score pool5, fuse the finer skips this variant uses, and upsample to full size."""
        score = self.score_fr(self.head(pool5))  # stride 32
        if self.stride <= 16:
            score = self.upscore2(score) + self.score_pool4(pool4)  # stride 16
        if self.stride == 8:
            score = self.upscore_pool4(score) + self.score_pool3(pool3)  # stride 8
        return self.upscore(score)


class _FixedStrideFCN(FCN):
    def __init__(self, num_classes: int = 4, in_channels: int = 3, **options):
        if "stride" in options:
            raise TypeError(f"{type(self).__name__} has a fixed stride; use FCN(stride=...)")
        super().__init__(num_classes, in_channels, stride=self._fixed_stride, **options)


class FCN32s(_FixedStrideFCN):
    """FCN-32s: ``score_fr(pool5)`` upsampled x32 in one step. Options as ``FCN``."""

    _fixed_stride = 32


class FCN16s(_FixedStrideFCN):
    """FCN-16s: ``score_fr(pool5)`` x2 + ``score_pool4(pool4)``, then x16. Options as ``FCN``."""

    _fixed_stride = 16


class FCN8s(_FixedStrideFCN):
    """FCN-8s: the FCN-16s sum x2 + ``score_pool3(pool3)``, then x8. Options as ``FCN``."""

    _fixed_stride = 8
