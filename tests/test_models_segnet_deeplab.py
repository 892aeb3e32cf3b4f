"""SegNet and DeepLab: shapes, the unpooling indices, atrous convolution, ASPP, gradients, config.

Every model here is tiny (1-4 channels, 8-32 pixel inputs) so the file runs in seconds.
"""

from __future__ import annotations

import json

import numpy
import pytest

import tinyseg as ts
import tinyseg.functional as F
from tinyseg.models.deeplab import ASPP, Decoder, DeepLab, ImagePooling, default_rates
from tinyseg.models.segnet import SegNet, conv_bn_relu
from tinyseg.nn import Module

TINY_SEGNET = {"widths": (2, 3), "convs_per_stage": 1}
TINY_DEEPLAB = {"widths": (2, 3, 3, 4), "aspp_channels": 3, "dropout": 0.0}


def _device(xp):
    return "cpu" if xp is numpy else "gpu"


def _input(xp, shape, seed=0, dtype="float32"):
    values = numpy.random.default_rng(seed).standard_normal(shape).astype(dtype)
    return ts.Tensor(xp.asarray(values))


def _host(a):
    return ts.backend.to_numpy(a.data if isinstance(a, ts.Tensor) else a)


# ----- output shapes ---------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(4, 4), (8, 12), (16, 8)])
def test_segnet_output_has_input_size(xp, size):
    model = SegNet(num_classes=3, **TINY_SEGNET).to(_device(xp))
    out = model(_input(xp, (2, 3, *size)))
    assert out.shape == (2, 3, *size)
    assert model.output_size(*size) == size
    assert ts.backend.xp_of(out.data) is xp


def test_default_segnet_on_64x64(xp):
    model = SegNet().to(_device(xp))
    out = model(_input(xp, (1, 3, 64, 64)))
    assert out.shape == (1, 4, 64, 64)
    assert model.total_stride == 16


@pytest.mark.parametrize("output_stride", [8, 16])
@pytest.mark.parametrize("size", [(16, 16), (32, 48)])
def test_deeplab_output_has_input_size(xp, output_stride, size):
    widths = TINY_DEEPLAB["widths"] + (4,)
    model = DeepLab(num_classes=3, output_stride=output_stride,
                    **{**TINY_DEEPLAB, "widths": widths}).to(_device(xp))
    out = model(_input(xp, (2, 3, *size)))
    assert out.shape == (2, 3, *size)
    assert model.output_size(*size) == size


def test_default_deeplab_on_64x64(xp):
    model = DeepLab().to(_device(xp))
    out = model(_input(xp, (2, 3, 64, 64)))
    assert out.shape == (2, 4, 64, 64)
    assert model.rates == (2, 4, 6)


# ----- SegNet: the decoder unpools into the encoder's indices -----------------------------------
def test_hand_set_segnet_puts_each_max_back_where_it_was(xp):
    """One stage, one channel, identity convolutions: the logits are the input's 2x2-window
    maxima at their argmax positions and zeros elsewhere."""
    model = SegNet(num_classes=1, in_channels=1, widths=(1,), convs_per_stage=1)
    model = model.to(_device(xp), "float64").eval()  # BatchNorm with running stats (0, 1)
    identity = xp.zeros((1, 1, 3, 3))
    identity[0, 0, 1, 1] = 1.0
    for conv in (model.encoder[0][0][0], model.decoder[0][0][0]):
        conv.weight.data[...] = identity
    model.classifier.weight.data[...] = 1.0
    model.classifier.bias.data[...] = 0.0

    values = (numpy.random.default_rng(3).permutation(2 * 8 * 8) + 1.0).reshape(2, 1, 8, 8)
    out = _host(model(ts.Tensor(xp.asarray(values))))

    windows = values.reshape(2, 1, 4, 2, 4, 2)
    is_max = windows == windows.max(axis=(3, 5), keepdims=True)
    expected = numpy.where(is_max, windows, 0.0).reshape(values.shape)
    scale = 1.0 / (1.0 + 1e-5)  # two BatchNorms in eval mode, each dividing by sqrt(1 + eps)
    numpy.testing.assert_allclose(out, expected * scale, rtol=1e-12)
    assert (out != 0).sum() == values.size // 4


class _RecordingUnpool(Module):
    """Wraps MaxUnpool2d and keeps what it was given and what it returned."""

    def __init__(self, unpool):
        super().__init__()
        self.unpool, self.calls = unpool, []

    def forward(self, x, indices, output_size=None):
        out = self.unpool(x, indices, output_size=output_size)
        self.calls.append((_host(x), _host(indices), output_size, _host(out)))
        return out


def test_segnet_decoder_unpools_into_the_encoders_argmax(xp):
    model = SegNet(num_classes=2, **TINY_SEGNET).to(_device(xp))
    x = _input(xp, (2, 3, 8, 8), seed=1)
    # the pre-pool maps of the encoder, recomputed stage by stage
    pre_pool, h = [], x
    for stage in model.encoder:
        h = stage(h)
        pre_pool.append(_host(h))
        h = F.max_pool2d(h, 2)
    model.unpool = _RecordingUnpool(model.unpool)
    model(x)
    calls = model.unpool.calls
    assert len(calls) == len(model.widths)
    for (pooled, indices, size, out), before in zip(calls, reversed(pre_pool)):
        N, C, H, W = before.shape
        assert size == (H, W) and out.shape == before.shape
        planes = before.reshape(N, C, H // 2, 2, W // 2, 2).transpose(0, 1, 2, 4, 3, 5)
        flat_in_window = planes.reshape(N, C, H // 2, W // 2, 4).argmax(axis=-1)
        rows = numpy.arange(H // 2)[:, None] * 2 + flat_in_window // 2
        cols = numpy.arange(W // 2)[None, :] * 2 + flat_in_window % 2
        numpy.testing.assert_array_equal(indices, rows * W + cols)
        # each pooled value sits at its index, and nothing is anywhere else
        flat = out.reshape(N, C, H * W)
        numpy.testing.assert_array_equal(
            numpy.take_along_axis(flat, indices.reshape(N, C, -1), axis=2), pooled.reshape(N, C, -1)
        )
        mask = numpy.zeros(flat.shape, bool)
        numpy.put_along_axis(mask, indices.reshape(N, C, -1), True, axis=2)
        assert not flat[~mask].any()


def test_segnet_output_depends_on_the_indices(xp):
    model = SegNet(num_classes=2, **TINY_SEGNET).to(_device(xp))
    x = _input(xp, (1, 3, 8, 8), seed=2)
    features, skips = model.encode(x)
    same = model.decode(features, skips)
    numpy.testing.assert_allclose(_host(same), _host(model(x)), rtol=1e-6, atol=1e-6)
    indices, size = skips[-1]
    moved = ts.Tensor((indices.data + 1) % (size[0] * size[1]))  # every max one pixel over
    other = model.decode(features, skips[:-1] + [(moved, size)])
    assert numpy.abs(_host(other) - _host(same)).max() > 1e-3


# ----- DeepLab: output stride, atrous convolution, ASPP -------------------------------------------
@pytest.mark.parametrize("output_stride, strides, dilations", [
    (8, (2, 2, 2, 1, 1), (1, 1, 1, 2, 4)),
    (16, (2, 2, 2, 2, 1), (1, 1, 1, 1, 2)),
])
def test_backbone_output_stride(xp, output_stride, strides, dilations):
    model = DeepLab(output_stride=output_stride,
                    **{**TINY_DEEPLAB, "widths": (2, 2, 3, 3, 4)}).to(_device(xp))
    assert model.strides == strides and model.dilations == dilations
    features = model.backbone(_input(xp, (2, 3, 32, 64)))
    assert features.shape == (2, 4, 32 // output_stride, 64 // output_stride)
    assert model.feature_size(32, 64) == features.shape[2:]
    for stage, stride, dilation in zip(model.backbone, strides, dilations):
        first, second = stage[0][0], stage[1][0]
        assert first.stride == (stride, stride) and second.stride == (1, 1)
        assert first.dilation == second.dilation == first.padding == (dilation, dilation)


def test_rates_double_when_the_output_stride_halves():
    assert default_rates(16) == (1, 2, 3)
    assert default_rates(8) == (2, 4, 6)
    assert DeepLab(output_stride=16).rates == (1, 2, 3)
    paper = DeepLab(output_stride=8, rates=(12, 24, 36))
    assert paper.rates == (12, 24, 36)
    assert [b[0].dilation for b in paper.aspp.branches[1:4]] == [(r, r) for r in (12, 24, 36)]


@pytest.mark.parametrize("rate", [1, 2, 3, 5])
def test_atrous_conv_keeps_size_and_spans_2r_plus_1(xp, rate):
    block = conv_bn_relu(2, 3, 3, dilation=rate).to(_device(xp))
    assert block(_input(xp, (2, 2, 9, 7))).shape == (2, 3, 9, 7)
    # the impulse response of an all-ones 3x3 kernel at rate r: 3 taps, r apart, over 2r + 1 pixels
    impulse = xp.zeros((1, 1, 15, 15))
    impulse[0, 0, 7, 7] = 1.0
    response = _host(F.conv2d(impulse, xp.ones((1, 1, 3, 3)), padding=rate, dilation=rate))
    rows, cols = numpy.nonzero(response[0, 0])
    assert sorted(set(rows)) == [7 - rate, 7, 7 + rate] == sorted(set(cols))
    assert rows.max() - rows.min() + 1 == rate * (3 - 1) + 1


def test_aspp_has_five_branches_of_the_right_kind(xp):
    aspp = ASPP(4, 3, rates=(1, 2, 3)).to(_device(xp))
    assert len(aspp.branches) == 5
    one_by_one, *atrous, pooling = aspp.branches
    assert one_by_one[0].kernel_size == (1, 1)
    assert [b[0].dilation for b in atrous] == [(1, 1), (2, 2), (3, 3)]
    assert all(b[0].kernel_size == (3, 3) for b in atrous)
    assert isinstance(pooling, ImagePooling)
    assert aspp.project[0][0].in_channels == 5 * 3
    x = _input(xp, (2, 4, 6, 6))
    assert all(b(x).shape == (2, 3, 6, 6) for b in aspp.branches)
    assert aspp(x).shape == (2, 3, 6, 6)
    assert len(ASPP(4, 3, rates=(1, 2)).branches) == 4


def test_image_pooling_is_constant_over_space(xp):
    branch = ImagePooling(4, 3).to(_device(xp), "float64")
    x = _input(xp, (2, 4, 5, 7), dtype="float64")
    out = _host(branch(x))
    assert out.shape == (2, 3, 5, 7)
    numpy.testing.assert_allclose(out, numpy.broadcast_to(out[:, :, :1, :1], out.shape),
                                  rtol=1e-12, atol=1e-12)
    # it is the 1x1 conv-BN-ReLU of the per-image channel means
    means = ts.Tensor(xp.asarray(_host(x).mean(axis=(2, 3), keepdims=True)))
    numpy.testing.assert_allclose(out[:, :, :1, :1], _host(branch.conv(means)), atol=1e-12)


@pytest.mark.parametrize("low_level_stride, low_size", [(2, 8), (4, 4)])
def test_decoder_joins_the_low_level_map(xp, low_level_stride, low_size):
    """v3+: the decoder reads the last backbone map at the low-level stride (16px input, OS 8)."""
    model = DeepLab(num_classes=3, low_level_stride=low_level_stride, low_level_channels=2,
                    **TINY_DEEPLAB).to(_device(xp))
    assert model.low_level_index == low_level_stride.bit_length() - 2
    seen = {}
    stage = model.backbone[model.low_level_index]
    original = stage.forward
    stage.forward = lambda x: seen.setdefault("low", original(x))
    out = model(_input(xp, (2, 3, 16, 16)))
    assert out.shape == (2, 3, 16, 16)
    assert seen["low"].shape == (2, TINY_DEEPLAB["widths"][model.low_level_index],
                                 low_size, low_size)
    assert model.decoder.reduce[0].in_channels == seen["low"].shape[1]
    assert model.decoder.refine[0][0].in_channels == TINY_DEEPLAB["aspp_channels"] + 2


def test_decoder_shapes(xp):
    decoder = Decoder(low_in=4, low_channels=2, x_channels=3, out_channels=5).to(_device(xp))
    out = decoder(_input(xp, (2, 3, 2, 2)), _input(xp, (2, 4, 8, 8), seed=1))
    assert out.shape == (2, 5, 8, 8)


def test_decoder_is_on_by_default_and_none_turns_it_off(xp):
    assert DeepLab(**TINY_DEEPLAB).low_level_stride == 4
    model = DeepLab(low_level_stride=None, **TINY_DEEPLAB)
    assert model.decoder is None and model.low_level_stride is None


def test_output_stride_4_needs_a_lower_low_level_stride():
    with pytest.raises(ValueError, match=r"below output_stride=4, one of \(2,\), got 4"):
        DeepLab(output_stride=4, widths=(2, 2, 2))


@pytest.mark.parametrize("bad", [1, 3, 8, 16, True, "4"])
def test_bad_low_level_stride_is_named(bad):
    with pytest.raises(ValueError, match=r"low_level_stride must be None .* one of \(2, 4\)"):
        DeepLab(output_stride=8, low_level_stride=bad, **TINY_DEEPLAB)


# ----- gradients ----------------------------------------------------------------------------------
def _assert_every_parameter_gets_a_gradient(model, x, target):
    loss = F.cross_entropy(model(x), target)
    model.zero_grad()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        g = _host(p.grad)
        assert numpy.isfinite(g).all() and numpy.abs(g).max() > 0, name


def test_segnet_gradient_reaches_every_parameter(xp):
    model = SegNet(num_classes=3, **TINY_SEGNET).to(_device(xp))
    target = xp.asarray(numpy.random.default_rng(0).integers(0, 3, (2, 8, 8)))
    _assert_every_parameter_gets_a_gradient(model, _input(xp, (2, 3, 8, 8)), target)


def test_deeplab_gradient_reaches_every_parameter(xp):
    model = DeepLab(num_classes=3, **TINY_DEEPLAB).to(_device(xp))
    target = xp.asarray(numpy.random.default_rng(0).integers(0, 3, (2, 16, 16)))
    _assert_every_parameter_gets_a_gradient(model, _input(xp, (2, 3, 16, 16)), target)


def test_deeplab_with_decoder_gradient_reaches_every_parameter(xp):
    model = DeepLab(num_classes=3, low_level_stride=2, low_level_channels=2,
                    **TINY_DEEPLAB).to(_device(xp))
    target = xp.asarray(numpy.random.default_rng(0).integers(0, 3, (2, 16, 16)))
    _assert_every_parameter_gets_a_gradient(model, _input(xp, (2, 3, 16, 16)), target)


def _gradcheck_model(model, x):
    params = list(model.parameters())

    def fn(x, *unused):  # the parameters are read by the model itself
        return model(x)

    x.requires_grad = True
    assert ts.gradcheck(fn, [x, *params], mode="directional", n_directions=3, seed=0)


def test_segnet_gradcheck(xp):
    """x and every parameter, float64, BatchNorm in training mode on a batch of 2."""
    model = SegNet(num_classes=2, in_channels=2, widths=(2, 2), convs_per_stage=1)
    _gradcheck_model(model.to(_device(xp), "float64"), _input(xp, (2, 2, 4, 4), 5, "float64"))


@pytest.mark.parametrize("low_level_stride", [None, 2])
def test_deeplab_gradcheck(xp, low_level_stride):
    model = DeepLab(num_classes=2, in_channels=2, output_stride=4, widths=(2, 2, 2), rates=(1, 2),
                    aspp_channels=2, dropout=0.0, low_level_stride=low_level_stride,
                    low_level_channels=1)
    _gradcheck_model(model.to(_device(xp), "float64"), _input(xp, (2, 2, 8, 8), 6, "float64"))


# ----- config ------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls, options", [
    (SegNet, TINY_SEGNET),
    (DeepLab, TINY_DEEPLAB),
    (DeepLab, {**TINY_DEEPLAB, "widths": (2, 2, 2, 2, 3), "output_stride": 16, "rates": (1, 3)}),
    (DeepLab, {**TINY_DEEPLAB, "low_level_stride": None}),
    (DeepLab, {**TINY_DEEPLAB, "low_level_stride": 2, "low_level_channels": 2}),
])
def test_config_round_trip(xp, cls, options):
    model = cls(num_classes=3, in_channels=2, **options).to(_device(xp)).eval()
    config = json.loads(json.dumps(model.config()))
    rebuilt = cls(**config).to(_device(xp)).eval()
    assert rebuilt.config() == model.config()
    rebuilt.load_state_dict(model.state_dict())
    x = _input(xp, (1, 2, 16, 16))
    numpy.testing.assert_allclose(_host(rebuilt(x)), _host(model(x)), rtol=1e-5, atol=1e-6)


def test_registry_builds_both():
    from tinyseg.models import build_model

    assert isinstance(build_model("segnet", **TINY_SEGNET), SegNet)
    assert isinstance(build_model("deeplab", **TINY_DEEPLAB), DeepLab)


# ----- bad input ----------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [
    lambda: SegNet(**TINY_SEGNET),
    lambda: DeepLab(output_stride=8, **TINY_DEEPLAB),
])
def test_bad_input_is_named(xp, make):
    model = make().to(_device(xp))
    with pytest.raises(ValueError, match="in_channels=3"):
        model(_input(xp, (1, 4, 16, 16)))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        model(_input(xp, (3, 16, 16)))
    with pytest.raises(ValueError, match="18x16"):
        model(_input(xp, (1, 3, 18, 16)))
    with pytest.raises(ValueError, match="18x16"):
        model.output_size(18, 16)
    with pytest.raises(TypeError, match="floating"):
        model(ts.Tensor(xp.zeros((1, 3, 16, 16), dtype=xp.int64)))


@pytest.mark.parametrize("make, name", [
    (lambda: SegNet(widths=()), "widths"),
    (lambda: SegNet(widths=(4, 0)), "widths"),
    (lambda: SegNet(convs_per_stage=0), "convs_per_stage"),
    (lambda: SegNet(num_classes=0), "num_classes"),
    (lambda: DeepLab(output_stride=12), "output_stride"),
    (lambda: DeepLab(output_stride=16, widths=(2, 2, 2, 2)), "widths"),
    (lambda: DeepLab(rates=(1, -2)), "rates"),
    (lambda: DeepLab(dropout=1.0), "dropout"),
    (lambda: DeepLab(in_channels=0), "in_channels"),
])
def test_bad_options_are_named(make, name):
    with pytest.raises(ValueError, match=name):
        make()
