"""Pieces every model shares: the conv-BN-ReLU block, the input check, the centre crop.

(What only the detectors share, on top of these, is in ``models/detection.py``.)

* ``conv_bn_relu``: a convolution without bias (BatchNorm's shift replaces it),
  then BatchNorm2d, then ReLU. Its default padding ``dilation * (k - 1) // 2``
  keeps the size at stride 1 for odd kernels: a 3x3 conv at rate r spans
  ``2r + 1`` pixels, so it needs r pixels of padding ("same" padding).
* ``check_model_input``: every model's forward starts here, so a wrong input
  fails with one clear message that names the model and the expected shape.
* ``center_crop``: the central window of the last two axes. U-Net with "valid"
  padding crops its skips with it, and the engine crops label maps to the
  logits of such a model.
"""

from __future__ import annotations

from ..autograd import Tensor
from ..nn import BatchNorm2d, Conv2d, ReLU, Sequential

__all__ = ["center_crop", "check_model_input", "conv_bn_relu"]


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 dilation: int = 1, padding: int | None = None) -> Sequential:
    """conv (no bias) -> BatchNorm2d -> ReLU; ``padding=None`` means "same" for odd kernels."""
    if padding is None:
        padding = dilation * (kernel_size - 1) // 2
    return Sequential(
        Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
               dilation=dilation, bias=False),
        BatchNorm2d(out_channels),
        ReLU(),
    )


def check_model_input(model, x):
    """Validate a model's input and return it as a Tensor.

    ``x`` must be (N, in_channels, H, W) and floating point; ``model.output_size``
    then checks that H and W suit the model (it raises naming the size).
    """
    x = x if isinstance(x, Tensor) else Tensor(x)
    if x.ndim != 4:
        raise ValueError(
            f"x must have shape (N, {model.in_channels}, H, W) for {type(model).__name__}, "
            f"got {x.shape}"
        )
    if x.shape[1] != model.in_channels:
        raise ValueError(
            f"x must have {model.in_channels} channels (in_channels={model.in_channels}), "
            f"got shape {x.shape}"
        )
    if x.dtype.kind != "f":
        raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}")
    model.output_size(int(x.shape[2]), int(x.shape[3]))
    return x


def center_crop(x, size):
    """The centre ``size = (h, w)`` window of the last two axes (offset ``(H - h) // 2``).

    Works on arrays and Tensors alike; returns ``x`` itself when it already has that size.
    """
    h, w = size
    H, W = x.shape[-2:]
    if (h, w) == (H, W):
        return x
    if h > H or w > W:
        raise ValueError(f"center_crop: size {(h, w)} is larger than the map {(H, W)}")
    top, left = (H - h) // 2, (W - w) // 2
    return x[..., top : top + h, left : left + w]
