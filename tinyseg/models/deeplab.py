"""A DeepLab-style network: an atrous backbone, ASPP with image pooling and a bilinear upsample to
the input size (v3, Chen et al. 2017), with v3+'s light decoder (Chen et al. 2018) by default.

Atrous (dilated) convolution
----------------------------
A 3x3 convolution at rate r reads the taps ``x[h + r*i, w + r*j]`` for i, j in {-1, 0, 1}: the
same 9 weights, spread over a window of ``r*(k-1) + 1 = 2r + 1`` pixels. Padding r keeps the
size. So a stage can grow its view like a strided stage does without shrinking the map.

Output stride and the atrous backbone
-------------------------------------
The backbone has ``len(widths)`` stages of two 3x3 conv-BN-ReLU layers. The first
``log2(output_stride)`` stages halve the map (their first conv has stride 2); every later stage
keeps the size and instead *doubles the dilation*: where a stride of 2 was removed, all the
following convolutions dilate by 2 more, so they sample the input on the same grid as the
strided network would have, at twice the density (DeepLab's "atrous algorithm"). Output
stride 8 (the default) keeps an 8x8 map for a 64x64 input; output stride 16 gives 4x4 and
costs less.

ASPP (atrous spatial pyramid pooling)
-------------------------------------
Five parallel branches read the backbone's map, each ending in BN and ReLU with
``aspp_channels`` outputs: a 1x1 conv; three 3x3 convs at rates ``rates``; and image pooling
(global average -> 1x1 conv -> BN -> ReLU -> bilinear upsample back to the map's size, which
makes it constant over space: the whole image's context). The five are concatenated, projected
by a 1x1 conv (BN, ReLU, dropout), classified by a 1x1 conv, and the logits are bilinearly
upsampled (align_corners=False) to the input size.

The v3+ decoder (``low_level_stride=4``, the default; None gives plain v3)
-------------------------------------------------------------------------
Upsampling 8x8 logits by 8 rounds every corner: a shape 12 pixels across covers about 1.5
cells of the map. v3+ joins the ASPP output, upsampled bilinearly to stride 4, with the last
backbone map at stride 4 (narrowed by a 1x1 conv to ``low_level_channels``, fewer channels than
ASPP's so that the semantics lead), refines the pair with two 3x3 convs, classifies, and
upsamples the stride-4 logits by 4. On the shapes scenes, with the same default recipe, it
lifts the mIoU from 0.81 (v3, 180 s of training) to 0.90 (v3+, 250 s).

Rates for small images
----------------------
The paper uses rates (6, 12, 18) at output stride 16 and (12, 24, 36) at output stride 8 on
513x513 crops, whose maps are 33x33 and 65x65. On a 64x64 image those maps are 4x4 and 8x8: a
rate-12 tap would land in the padding from every position, and the branch would collapse into
a 1x1 conv (the paper observes that degeneration at its largest rates, and adds image pooling
to supply the global context instead). So the default here is scaled down with the map:
(1, 2, 3) at output stride 16 and, by the paper's rule (rates double when the output stride
halves), (2, 4, 6) at output stride 8. A 3x3 conv at rate r spans 2r + 1 cells: 5, 9 and 13
cells of the 8x8 map, i.e. local, whole-map-from-the-centre and edge-to-edge views, the same
range of fractions of the map that the paper's rates cover of its 65x65 map.

Shapes for the default model (``widths=(16, 32, 64, 64, 64)``, output stride 8, rates
(2, 4, 6), ``aspp_channels=64``, decoder at stride 4 with ``low_level_channels=16``, 4 classes)
on a 64x64 RGB input, batch N. "cbr" is conv -> BatchNorm -> ReLU, 3x3 unless marked::

    input                                        (N,   3, 64, 64)
    stage 0: cbr 3->16 stride 2, cbr 16->16      (N,  16, 32, 32)   stride 2
    stage 1: cbr 16->32 stride 2, cbr 32->32     (N,  32, 16, 16)   stride 4
    stage 2: cbr 32->64 stride 2, cbr 64->64     (N,  64,  8,  8)   stride 8
    stage 3: cbr 64->64 rate 2, x2               (N,  64,  8,  8)   (stride 16 without atrous)
    stage 4: cbr 64->64 rate 4, x2               (N,  64,  8,  8)   (stride 32 without atrous)
    ASPP  1x1 cbr 64->64                         (N,  64,  8,  8)
          3x3 cbr 64->64 rate 2                  (N,  64,  8,  8)
          3x3 cbr 64->64 rate 4                  (N,  64,  8,  8)
          3x3 cbr 64->64 rate 6                  (N,  64,  8,  8)
          image pooling: global average          (N,  64,  1,  1)
                         1x1 cbr 64->64          (N,  64,  1,  1)
                         bilinear upsample       (N,  64,  8,  8)   constant over space
          concatenate the five                   (N, 320,  8,  8)
          1x1 cbr 320->64, dropout               (N,  64,  8,  8)
    decoder: bilinear upsample x2                (N,  64, 16, 16)
             stage 1's map, 1x1 cbr 32->16       (N,  16, 16, 16)   low-level features
             concatenate                         (N,  80, 16, 16)
             cbr 80->64, cbr 64->64              (N,  64, 16, 16)
    classifier 1x1 conv 64->4                    (N,   4, 16, 16)
    bilinear upsample x4                         (N,   4, 64, 64)   logits

Without the decoder (``low_level_stride=None``) the classifier reads the ASPP map: logits
(N, 4, 8, 8), upsampled x8. With ``output_stride=16`` stage 3 has stride 2 (map 4x4), stage 4
rate 2, and the ASPP rates are (1, 2, 3). Input sizes must be multiples of the output stride.
"""

from __future__ import annotations

from .. import functional as F
from ..autograd import cat
from ..nn import Conv2d, Dropout, Identity, Module, ModuleList, Sequential
from ..validate import check_int, check_int_tuple
from .blocks import check_model_input, conv_bn_relu
from .segnet import check_divisible

__all__ = ["ASPP", "Decoder", "DeepLab", "ImagePooling", "default_rates"]

_OUTPUT_STRIDES = (4, 8, 16)
_RATES_AT_OS16 = (1, 2, 3)  # scaled-down for 64px inputs; the paper's are (6, 12, 18)


def default_rates(output_stride: int) -> tuple[int, ...]:
    """The default ASPP rates: (1, 2, 3) at output stride 16, doubled each time it halves."""
    if output_stride not in _OUTPUT_STRIDES:
        raise ValueError(f"output_stride must be one of {_OUTPUT_STRIDES}, got {output_stride!r}")
    return tuple(r * 16 // output_stride for r in _RATES_AT_OS16)


class ImagePooling(Module):
    """ASPP's image-level branch: global average -> 1x1 conv-BN-ReLU -> bilinear upsample.

    (N, C_in, H, W) -> (N, C_out, H, W), the same vector at every position. In training mode
    its BatchNorm normalises over the batch only (one value per image), so it needs a batch of
    at least 2 images to learn anything.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = conv_bn_relu(in_channels, out_channels, kernel_size=1)

    def forward(self, x):
        h, w = x.shape[2], x.shape[3]
        y = self.conv(F.global_avg_pool2d(x))
        return F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False)


class ASPP(Module):
    """Atrous spatial pyramid pooling: ``2 + len(rates)`` parallel branches, concatenated and
    projected by a 1x1 conv-BN-ReLU (then dropout).

    Branches, in order: 1x1 conv, one 3x3 conv per rate (padding = rate, so the size is kept),
    image pooling. Each has ``out_channels`` outputs and ends in BatchNorm and ReLU.
    (N, in_channels, H, W) -> (N, out_channels, H, W).
    """

    def __init__(self, in_channels: int, out_channels: int, rates, dropout: float = 0.0):
        super().__init__()
        self.rates = check_int_tuple(rates, "rates")
        branches = [conv_bn_relu(in_channels, out_channels, kernel_size=1)]
        branches += [conv_bn_relu(in_channels, out_channels, 3, dilation=r) for r in self.rates]
        branches.append(ImagePooling(in_channels, out_channels))
        self.branches = ModuleList(branches)
        self.project = Sequential(
            conv_bn_relu(len(branches) * out_channels, out_channels, kernel_size=1),
            Dropout(dropout) if dropout > 0 else Identity(),
        )

    def forward(self, x):
        return self.project(cat([branch(x) for branch in self.branches], dim=1))


class Decoder(Module):
    """DeepLab-v3+'s decoder: sharpen the upsampled ASPP map with early, high-resolution features.

    ``low`` (N, C_low, h, w) is a backbone map at stride ``low_level_stride``; ``x`` is ASPP's
    output at the coarser output stride. The low-level map is narrowed by a 1x1 conv-BN-ReLU to
    ``low_channels`` (fewer than ``x`` has, so the coarse semantics dominate), ``x`` is
    bilinearly upsampled to (h, w), the two are concatenated and refined by two 3x3
    conv-BN-ReLU layers: (N, C_x + low_channels, h, w) -> (N, out_channels, h, w).
    """

    def __init__(self, low_in: int, low_channels: int, x_channels: int, out_channels: int):
        super().__init__()
        self.reduce = conv_bn_relu(low_in, low_channels, kernel_size=1)
        self.refine = Sequential(
            conv_bn_relu(x_channels + low_channels, out_channels),
            conv_bn_relu(out_channels, out_channels),
        )

    def forward(self, x, low):
        h, w = low.shape[2], low.shape[3]
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
        return self.refine(cat([x, self.reduce(low)], dim=1))


class DeepLab(Module):
    """DeepLab segmentation: atrous backbone, ASPP with image pooling, v3+ decoder, upsample.

    :param num_classes: K, the channels of the logits (background included).
    :param in_channels: channels of the input image (3 for RGB).
    :param output_stride: 8 or 16 (4 is allowed too, for very small images): input size over
        the backbone's map size. The first ``log2(output_stride)`` stages have stride 2, the
        rest dilation 2, 4, ... instead.
    :param widths: channels of each backbone stage (two 3x3 conv-BN-ReLU each); there must be
        more stages than ``log2(output_stride)``, so that at least one stage is atrous.
    :param rates: the dilation rates of ASPP's 3x3 branches at this output stride.
        None: ``default_rates(output_stride)``, i.e. (2, 4, 6) at 8 and (1, 2, 3) at 16, scaled
        down for 64px inputs (the paper: (12, 24, 36) at 8 and (6, 12, 18) at 16).
    :param aspp_channels: channels of every ASPP branch and of its projection.
    :param dropout: dropout probability after the ASPP projection (0 disables it).
    :param low_level_stride: None for plain DeepLab-v3 (ASPP's logits upsampled straight to the
        input size). A stride 2, 4, ... below ``output_stride`` adds DeepLab-v3+'s decoder: the
        last backbone map at that stride joins the upsampled ASPP output before the classifier.
    :param low_level_channels: channels the decoder narrows the low-level map to (paper: 48 of
        256, i.e. fewer than the ASPP output).

    ``forward(x)`` maps (N, in_channels, H, W) to logits (N, num_classes, H, W); H and W must be
    multiples of ``output_stride``. ``self.backbone(x)`` gives the (N, widths[-1], H/os, W/os)
    features.
    """

    def __init__(self, num_classes: int = 4, in_channels: int = 3, output_stride: int = 8,
                 widths=(16, 32, 64, 64, 64), rates=None, aspp_channels: int = 64,
                 dropout: float = 0.1, low_level_stride: int | None = 4,
                 low_level_channels: int = 16):
        super().__init__()
        self.num_classes = check_int(num_classes, "num_classes", 1)
        self.in_channels = check_int(in_channels, "in_channels", 1)
        if isinstance(output_stride, bool) or output_stride not in _OUTPUT_STRIDES:
            raise ValueError(
                f"output_stride must be one of {_OUTPUT_STRIDES} (8 or 16 as in the paper), "
                f"got {output_stride!r}"
            )
        self.output_stride = output_stride
        self.widths = check_int_tuple(widths, "widths")
        n_strided = output_stride.bit_length() - 1  # log2
        if len(self.widths) <= n_strided:
            raise ValueError(
                f"widths must have more than log2(output_stride) = {n_strided} stages so that "
                f"at least one is atrous, got {len(self.widths)} stages {self.widths}"
            )
        self.rates_given = None if rates is None else check_int_tuple(rates, "rates")
        self.rates = self.rates_given or default_rates(output_stride)
        self.aspp_channels = check_int(aspp_channels, "aspp_channels", 1)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) \
                or not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be a probability in [0, 1), got {dropout!r}")
        self.dropout = float(dropout)
        strides_below = tuple(2 ** i for i in range(1, n_strided))
        if low_level_stride is not None and (isinstance(low_level_stride, bool)
                                             or low_level_stride not in strides_below):
            raise ValueError(
                f"low_level_stride must be None (no decoder) or a stride below output_stride="
                f"{output_stride}, one of {strides_below}, got {low_level_stride!r}"
            )
        self.low_level_stride = low_level_stride
        self.low_level_channels = check_int(low_level_channels, "low_level_channels", 1)

        # strides (2, ..., 2, 1, ...) and dilations (1, ..., 1, 2, 4, ...)
        self.strides = tuple(2 if i < n_strided else 1 for i in range(len(self.widths)))
        self.dilations = tuple(
            1 if i < n_strided else 2 ** (i - n_strided + 1) for i in range(len(self.widths))
        )
        stages = []
        c_in = self.in_channels
        for width, stride, dilation in zip(self.widths, self.strides, self.dilations):
            stages.append(Sequential(
                conv_bn_relu(c_in, width, 3, stride=stride, dilation=dilation),
                conv_bn_relu(width, width, 3, dilation=dilation),
            ))
            c_in = width
        self.backbone = Sequential(*stages)
        self.aspp = ASPP(c_in, self.aspp_channels, self.rates, self.dropout)
        self.decoder, self.low_level_index = None, None
        if low_level_stride is not None:
            # stage i ends at stride 2**(i+1): the low-level map is the output of stage log2(s)-1
            self.low_level_index = low_level_stride.bit_length() - 2
            self.decoder = Decoder(self.widths[self.low_level_index], self.low_level_channels,
                                   self.aspp_channels, self.aspp_channels)
        self.classifier = Conv2d(self.aspp_channels, self.num_classes, 1)

    def config(self) -> dict:
        """The constructor arguments (JSON-able): ``DeepLab(**model.config())`` rebuilds it."""
        return {
            "num_classes": self.num_classes,
            "in_channels": self.in_channels,
            "output_stride": self.output_stride,
            "widths": list(self.widths),
            "rates": None if self.rates_given is None else list(self.rates_given),
            "aspp_channels": self.aspp_channels,
            "dropout": self.dropout,
            "low_level_stride": self.low_level_stride,
            "low_level_channels": self.low_level_channels,
        }

    def feature_size(self, h: int, w: int) -> tuple[int, int]:
        """The backbone's (H, W) for an (h, w) input: ``(h / output_stride, w / output_stride)``."""
        h, w = self.output_size(h, w)
        return h // self.output_stride, w // self.output_stride

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        """The logits' (H, W): the input's, since the logits are upsampled back to it.

        :raises ValueError: when h or w is not a multiple of ``output_stride``.
        """
        return check_divisible(self, h, w, self.output_stride,
                               f"output_stride={self.output_stride}")

    def forward(self, x):
        """Logits (N, num_classes, H, W) for images (N, in_channels, H, W)."""
        x = check_model_input(self, x)
        h, w = x.shape[2], x.shape[3]
        low = None
        for i, stage in enumerate(self.backbone):
            x = stage(x)
            if i == self.low_level_index:  # the decoder's early map (never, without a decoder)
                low = x
        x = self.aspp(x)
        if self.decoder is not None:
            x = self.decoder(x, low)
        logits = self.classifier(x)
        return F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)

    def extra_repr(self):
        return (f"num_classes={self.num_classes}, in_channels={self.in_channels}, "
                f"output_stride={self.output_stride}, rates={self.rates}, "
                f"low_level_stride={self.low_level_stride}")
