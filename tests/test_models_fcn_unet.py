"""FCN-32s/16s/8s and U-Net: shapes, size arithmetic, bilinear upsampling, skip fusion, gradients.

Every model here is tiny (widths of 1-4 channels, 8-64 pixel inputs) so the file runs in seconds.
"""

from __future__ import annotations

import json

import numpy
import pytest

import tinyseg as ts
import tinyseg.functional as F
from tinyseg.models.fcn import FCN, FCN8s, FCN16s, FCN32s
from tinyseg.models.unet import UNet

TINY_FCN = {"widths": (2, 2, 3, 3, 4), "convs": (1, 1, 1, 1, 1), "fc_width": 4}
FCN_CLASSES = (FCN32s, FCN16s, FCN8s)


def _device(xp):
    return "cpu" if xp is numpy else "gpu"


def _input(xp, shape, seed=0, dtype="float32"):
    values = numpy.random.default_rng(seed).standard_normal(shape).astype(dtype)
    return ts.Tensor(xp.asarray(values))


def _tiny_fcn(cls, xp, dtype=None, **options):
    return cls(num_classes=3, **{**TINY_FCN, **options}).to(_device(xp), dtype)


# ----- output shapes ---------------------------------------------------------------------------
@pytest.mark.parametrize("cls", FCN_CLASSES)
@pytest.mark.parametrize("size", [(32, 32), (64, 96)])
def test_fcn_output_has_input_size(xp, cls, size):
    model = _tiny_fcn(cls, xp)
    out = model(_input(xp, (2, 3, *size)))
    assert out.shape == (2, 3, *size)
    assert model.output_size(*size) == size
    assert out.dtype == numpy.float32


def test_fcn_default_model_on_64x64(xp):
    model = FCN8s().to(_device(xp))
    out = model(_input(xp, (1, 3, 64, 64)))
    assert out.shape == (1, 4, 64, 64)


@pytest.mark.parametrize("depth, width, size", [(1, 2, (8, 8)), (2, 3, (16, 24)), (3, 2, (64, 64)),
                                                (4, 1, (32, 48))])
def test_unet_same_output_has_input_size(xp, depth, width, size):
    model = UNet(num_classes=5, depth=depth, base_width=width).to(_device(xp))
    out = model(_input(xp, (2, 3, *size)))
    assert out.shape == (2, 5, *size)
    assert model.output_size(*size) == size


def test_unet_channels_double_going_down(xp):
    model = UNet(depth=3, base_width=4).to(_device(xp))
    widths = [block[0].out_channels for block in model.down]
    assert widths == [4, 8, 16, 32]
    assert [up.out_channels for up in model.up] == [16, 8, 4]
    assert all(up.kernel_size == (2, 2) and up.stride == (2, 2) for up in model.up)


# ----- valid padding: the crop arithmetic ------------------------------------------------------
@pytest.mark.parametrize("depth, size", [(1, (18, 22)), (2, (44, 52)), (3, (92, 100))])
def test_unet_valid_output_size_matches_forward(xp, depth, size):
    model = UNet(num_classes=2, depth=depth, base_width=1, padding="valid").to(_device(xp))
    expected = model.output_size(*size)
    out = model(_input(xp, (1, 3, *size)))
    assert out.shape == (1, 2, *expected)
    assert expected[0] < size[0] and expected[1] < size[1]
    assert model.input_size_for(*expected) == size


def test_unet_valid_paper_arithmetic_572_to_388():
    # The paper's network: depth 4, 64 channels at the top; arithmetic only, no forward pass.
    model = UNet(num_classes=2, in_channels=1, depth=4, base_width=64, padding="valid")
    assert model.output_size(572, 572) == (388, 388)
    assert model.input_size_for(388, 388) == (572, 572)
    assert model.down[4][0].out_channels == 1024


def test_unet_valid_crop_is_centred(xp):
    from tinyseg.models.unet import center_crop

    x = ts.Tensor(xp.arange(2 * 8 * 10, dtype=xp.float32).reshape(1, 2, 8, 10))
    crop = center_crop(x, 4, 6)
    assert crop.shape == (1, 2, 4, 6)
    assert float(crop.data[0, 0, 0, 0]) == float(x.data[0, 0, 2, 2])


def test_unet_valid_rejects_odd_and_vanishing_sizes():
    model = UNet(depth=3, padding="valid")
    with pytest.raises(ValueError, match="64x64.*odd.*92"):
        model.output_size(64, 64)
    with pytest.raises(ValueError, match="20x92.*vanish"):
        model.output_size(20, 92)
    with pytest.raises(ValueError, match="64x64"):
        model.input_size_for(64, 64)


def test_unet_same_rejects_sizes_not_divisible(xp):
    model = UNet(depth=3, base_width=2).to(_device(xp))
    with pytest.raises(ValueError, match="60x64.*56 or 64"):
        model(_input(xp, (1, 3, 60, 64)))


# ----- bilinear upsampling ---------------------------------------------------------------------
def test_fcn32s_upsampling_of_constant_map_is_constant_inside(xp):
    model = _tiny_fcn(FCN32s, xp)
    score = ts.Tensor(xp.full((1, 3, 2, 2), 2.5, dtype=xp.float32))
    up = model.upscore(score).data
    assert up.shape == (1, 3, 64, 64)
    # Away from the s/2 = 16 pixel borders every output pixel gets full bilinear weight.
    assert float(xp.abs(up[:, :, 16:48, 16:48] - 2.5).max()) < 1e-5


@pytest.mark.parametrize("cls", FCN_CLASSES)
def test_fcn_upsampling_is_bilinear_interpolation(xp, cls):
    model = _tiny_fcn(cls, xp, dtype="float64")
    score = _input(xp, (1, 3, 3, 4), dtype="float64")
    s = cls._fixed_stride
    up = model.upscore(score).data
    ref = F.interpolate(score, scale_factor=s, mode="bilinear", align_corners=False).data
    b = s // 2 + s // 2  # a border of s/2 ramps, and interpolate clamps one more half cell
    assert up.shape == ref.shape
    assert float(xp.abs(up - ref)[:, :, b:-b, b:-b].max()) < 1e-12
    # At the borders the values shrink by a common positive factor: the labels still agree.
    assert bool((up.argmax(axis=1) == ref.argmax(axis=1)).all())
    if s <= 16:
        up2 = model.upscore2(score).data
        ref2 = F.interpolate(score, scale_factor=2, mode="bilinear", align_corners=False).data
        assert float(xp.abs(up2 - ref2)[:, :, 2:-2, 2:-2].max()) < 1e-12


def test_fcn_final_upsample_fixed_and_x2_learned():
    model = FCN8s(**TINY_FCN)
    assert not model.upscore.weight.requires_grad
    assert model.upscore2.weight.requires_grad and model.upscore_pool4.weight.requires_grad
    assert FCN8s(learn_final_upsample=True, **TINY_FCN).upscore.weight.requires_grad


# ----- skip fusion -----------------------------------------------------------------------------
def _pools(model, xp):
    # Batch 2: at 32x32 the head sees 1x1 maps, and BatchNorm needs more than one value.
    pools = model.backbone(_input(xp, (2, 3, 32, 32), dtype="float64"))
    return pools[2], pools[3], pools[4]


def _perturbed(t, xp):
    return ts.Tensor(t.data + xp.asarray(numpy.random.default_rng(1).standard_normal(t.shape)))


@pytest.mark.parametrize("cls, uses_pool4, uses_pool3",
                         [(FCN32s, False, False), (FCN16s, True, False), (FCN8s, True, True)])
def test_fcn_skip_fusion(xp, cls, uses_pool4, uses_pool3):
    model = _tiny_fcn(cls, xp, dtype="float64").eval()
    for name in ("score_pool4", "score_pool3"):
        if hasattr(model, name):
            assert float(xp.abs(getattr(model, name).weight.data).max()) == 0  # zero init
            ts.nn.init.normal_(getattr(model, name).weight, std=1.0, generator=2)
    pool3, pool4, pool5 = _pools(model, xp)
    with ts.no_grad():
        base = model.decode(pool3, pool4, pool5).data
        moved3 = model.decode(_perturbed(pool3, xp), pool4, pool5).data
        moved4 = model.decode(pool3, _perturbed(pool4, xp), pool5).data
    assert (float(xp.abs(moved3 - base).max()) > 1e-6) == uses_pool3
    assert (float(xp.abs(moved4 - base).max()) > 1e-6) == uses_pool4


def test_fcn8s_output_depends_on_pool3_features_through_gradient(xp):
    model = _tiny_fcn(FCN8s, xp, dtype="float64")
    ts.nn.init.normal_(model.score_pool3.weight, std=1.0, generator=3)
    pool3, pool4, pool5 = _pools(model, xp)
    pool3 = ts.Tensor(pool3.data, requires_grad=True)
    (model.decode(pool3, pool4, pool5) ** 2).sum().backward()
    assert float(xp.abs(pool3.grad).max()) > 0


# ----- gradients -------------------------------------------------------------------------------
def _models(xp):
    return [
        (_tiny_fcn(FCN32s, xp), (2, 3, 32, 32)),
        (_tiny_fcn(FCN16s, xp), (2, 3, 32, 32)),
        (_tiny_fcn(FCN8s, xp, learn_final_upsample=True), (2, 3, 32, 32)),
        (UNet(depth=2, base_width=2).to(_device(xp)), (2, 3, 16, 16)),
        (UNet(depth=2, base_width=2, padding="valid").to(_device(xp)), (2, 3, 44, 44)),
    ]


def test_gradient_reaches_every_trainable_parameter(xp):
    for model, shape in _models(xp):
        out = model(_input(xp, shape))
        target = xp.asarray(numpy.random.default_rng(0).integers(0, 3, (shape[0], *out.shape[2:])))
        F.cross_entropy(out, target).backward()
        for name, p in model.named_parameters():
            if not p.requires_grad:
                assert p.grad is None, name
                continue
            assert p.grad is not None, f"{type(model).__name__}.{name} got no gradient"
            assert p.grad.shape == p.shape and bool(xp.isfinite(p.grad).all()), name
    frozen = [n for n, p in _tiny_fcn(FCN8s, xp).named_parameters() if not p.requires_grad]
    assert frozen == ["upscore.weight"]


@pytest.mark.parametrize("padding, size", [("same", 8), ("valid", 18)])
def test_unet_gradcheck(xp, padding, size):
    ts.nn.init.manual_seed(0)  # fixed weights: not whatever stream earlier tests left
    model = UNet(num_classes=2, depth=1, base_width=2, padding=padding).to(_device(xp), "float64")
    x = _input(xp, (2, 3, size, size), seed=4, dtype="float64")
    x.requires_grad = True
    up, first = model.up[0].weight, model.down[0][0].weight
    assert ts.gradcheck(lambda x, a, b: model(x), [x, up, first], mode="directional",
                        n_directions=3)


def test_fcn_gradcheck(xp):
    model = _tiny_fcn(FCN8s, xp, dtype="float64", widths=(1, 1, 2, 2, 2), fc_width=2)
    ts.nn.init.normal_(model.score_pool3.weight, std=1.0, generator=5)
    x = _input(xp, (2, 3, 32, 32), seed=6, dtype="float64")
    x.requires_grad = True
    first_conv = model.backbone.stages[0][0][0]
    params = [model.score_pool3.weight, model.upscore_pool4.weight, first_conv.weight]
    assert ts.gradcheck(lambda x, *p: model(x), [x, *params], mode="directional", n_directions=3)


# ----- configuration ---------------------------------------------------------------------------
def _structure(model):
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()]


@pytest.mark.parametrize("make", [
    lambda: FCN32s(**TINY_FCN),
    lambda: FCN16s(num_classes=2, dropout=0.5, **TINY_FCN),
    lambda: FCN8s(in_channels=1, learn_final_upsample=True, **TINY_FCN),
    lambda: FCN(stride=16, **TINY_FCN),
    lambda: UNet(num_classes=3, depth=2, base_width=2, padding="valid"),
])
def test_config_round_trip(make):
    model = make()
    config = json.loads(json.dumps(model.config()))
    copy = type(model)(**config)
    assert copy.config() == config
    assert _structure(copy) == _structure(model)
    assert [p.requires_grad for p in copy.parameters()] == [
        p.requires_grad for p in model.parameters()]


# ----- bad input -------------------------------------------------------------------------------
def test_wrong_channel_count_names_in_channels(xp):
    for model, _ in _models(xp)[2:4]:
        with pytest.raises(ValueError, match="in_channels=3"):
            model(_input(xp, (1, 4, 32, 32)))
        with pytest.raises(ValueError, match="x must have shape"):
            model(_input(xp, (3, 32, 32)))


def test_fcn_size_not_divisible_by_32_names_the_size(xp):
    model = _tiny_fcn(FCN8s, xp)
    with pytest.raises(ValueError, match="width 40.*32x40.*32 or 64"):
        model(_input(xp, (1, 3, 32, 40)))
    with pytest.raises(ValueError, match="height 16"):
        model.output_size(16, 32)


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="widths"):
        FCN8s(widths=(4, 4, 4))
    with pytest.raises(ValueError, match="stride"):
        FCN(stride=4)
    with pytest.raises(TypeError, match="stride"):
        FCN8s(stride=8)
    with pytest.raises(ValueError, match="dropout"):
        FCN32s(dropout=1.0)
    with pytest.raises(ValueError, match="padding"):
        UNet(padding="full")
    with pytest.raises(ValueError, match="depth"):
        UNet(depth=0)
    with pytest.raises(ValueError, match="num_classes"):
        UNet(num_classes=0)
