"""BatchNorm2d: per-channel normalisation with running statistics (math in ops/norm.py).

In training mode the layer normalises with the batch's mean and variance over
(N, H, W) and updates the buffers

    running_mean <- (1 - momentum) * running_mean + momentum * batch_mean
    running_var  <- (1 - momentum) * running_var  + momentum * batch_var_unbiased

(``F.batch_norm`` does this update in place, as torch does). In eval mode it
uses the running buffers, so the output of one image no longer depends on the
rest of its batch.
"""

from __future__ import annotations

from .. import functional as F
from . import init
from .module import Module, Parameter


class BatchNorm2d(Module):
    """Batch normalisation over (N, H, W) for input (N, C, H, W).

    :param num_features: C.
    :param affine: learn a per-channel scale ``weight`` (ones) and shift ``bias`` (zeros).
    :param track_running_stats: keep ``running_mean`` (zeros) and ``running_var``
        (ones) buffers; without them the batch statistics are used in eval mode too.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1,
                 affine: bool = True, track_running_stats: bool = True, *, device=None,
                 dtype=None):
        super().__init__()
        if isinstance(num_features, bool) or not isinstance(num_features, int) or num_features < 1:
            raise ValueError(f"num_features must be a positive int, got {num_features!r}")
        if eps <= 0:
            raise ValueError(f"eps must be > 0, got {eps!r}")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum!r}")
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        if affine:
            self.weight = Parameter(init.ones_(init.empty((num_features,), device, dtype)))
            self.bias = Parameter(init.zeros_(init.empty((num_features,), device, dtype)))
        else:
            self.weight = self.bias = None
        if track_running_stats:
            self.register_buffer("running_mean", init.zeros_(init.empty((num_features,), device,
                                                                        dtype)))
            self.register_buffer("running_var", init.ones_(init.empty((num_features,), device,
                                                                      dtype)))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)

    def forward(self, x):
        use_batch_stats = self.training or self.running_mean is None
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            training=use_batch_stats, momentum=self.momentum, eps=self.eps)

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, " \
               f"affine={self.affine}, track_running_stats={self.track_running_stats}"
