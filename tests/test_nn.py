"""tinyseg.nn: Module bookkeeping, layers' shapes, and initialisation."""

from __future__ import annotations

import math
import pathlib
import re

import numpy
import pytest

import tinyseg as ts
import tinyseg.functional as F
from tinyseg import backend, nn
from tinyseg.nn import init


def _device(xp):
    return backend.device_of(xp.zeros(1))


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1, generator=0)
        self.bn = nn.BatchNorm2d(3)
        self.scale = nn.Parameter(numpy.ones(1, dtype="float32"))
        self.register_buffer("steps", numpy.zeros(1))
        self.note = "plain attribute"

    def forward(self, x):
        return F.relu(self.bn(self.conv(x))) * self.scale


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = Block()
        self.heads = nn.ModuleList([nn.Conv2d(3, 1, 1, generator=1), nn.Conv2d(3, 2, 1)])

    def forward(self, x):
        y = self.block(x)
        return [head(y) for head in self.heads]


# ----- registration and naming -----------------------------------------------------------
def test_named_parameters_have_dotted_names_in_order():
    names = [name for name, _ in Net().named_parameters()]
    assert names == [
        "block.scale", "block.conv.weight", "block.conv.bias", "block.bn.weight", "block.bn.bias",
        "heads.0.weight", "heads.0.bias", "heads.1.weight", "heads.1.bias",
    ]
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in Net().parameters())


def test_buffers_children_modules_and_plain_attributes():
    net = Net()
    assert [n for n, _ in net.named_buffers()] == [
        "block.steps", "block.bn.running_mean", "block.bn.running_var"]
    assert [n for n, _ in net.named_children()] == ["block", "heads"]
    assert len(list(net.modules())) == 7  # net, block, conv, bn, heads, 2 head convs
    assert net.block.note == "plain attribute"
    assert "note" not in dict(net.block.named_parameters())


def test_shared_parameter_listed_once_and_missing_bias_skipped():
    conv = nn.Conv2d(1, 1, 1, bias=False)
    seq = nn.Sequential(conv, nn.ReLU(), conv)
    assert [n for n, _ in seq.named_parameters()] == ["0.weight"]
    assert conv.bias is None


def test_assigning_wrong_types_raises():
    conv = nn.Conv2d(1, 1, 1)
    with pytest.raises(TypeError, match="weight"):
        conv.weight = numpy.zeros((1, 1, 1, 1))
    with pytest.raises(TypeError, match="buffer 'x'"):
        conv.register_buffer("x", [1, 2])

    class Early(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(numpy.zeros(1))

    with pytest.raises(AttributeError, match="super"):
        Early()


def test_reassigning_a_buffer_keeps_it_registered():
    bn = nn.BatchNorm2d(2)
    bn.running_mean = numpy.full(2, 3.0, dtype="float32")
    assert bn.state_dict()["running_mean"].tolist() == [3.0, 3.0]


def test_train_eval_propagate_to_every_submodule():
    net = Net()
    assert all(m.training for m in net.modules())
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())


def test_zero_grad_clears_gradients():
    lin = nn.Linear(3, 2)
    lin.weight.grad = numpy.ones((2, 3), dtype="float32")
    lin.zero_grad()
    assert lin.weight.grad is None


def test_repr_is_nested_and_readable():
    text = repr(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU()))
    assert text.splitlines() == [
        "Sequential(",
        "  (0): Conv2d(3, 8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))",
        "  (1): ReLU()",
        ")",
    ]


def test_sequential_and_modulelist_indexing():
    seq = nn.Sequential(nn.ReLU(), nn.Identity(), nn.Tanh())
    assert len(seq) == 3 and isinstance(seq[-1], nn.Tanh)
    assert isinstance(seq[1:], nn.Sequential) and len(seq[1:]) == 2
    named = nn.Sequential({"a": nn.Linear(2, 2), "b": nn.ReLU()})
    assert [n for n, _ in named.named_parameters()] == ["a.weight", "a.bias"]
    heads = nn.ModuleList().extend([nn.Linear(2, 2), nn.Linear(2, 1)])
    assert len(list(heads.parameters())) == 4


# ----- state dicts ------------------------------------------------------------------------
def test_state_dict_round_trip_copies_in_place():
    init.manual_seed(1)
    a = Net()
    init.manual_seed(2)
    b = Net()
    a.block.bn.running_mean[...] = 0.5
    state = a.state_dict()
    assert list(state) == [
        "block.scale", "block.steps", "block.conv.weight", "block.conv.bias", "block.bn.weight",
        "block.bn.bias", "block.bn.running_mean", "block.bn.running_var", "heads.0.weight",
        "heads.0.bias", "heads.1.weight", "heads.1.bias",
    ]
    weight_before = b.heads[1].weight
    result = b.load_state_dict(state)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert b.heads[1].weight is weight_before  # same Parameter object: an optimiser keeps working
    for key, value in b.state_dict().items():
        numpy.testing.assert_array_equal(value, state[key])
        assert value is not state[key]


def test_load_state_dict_missing_key_is_named():
    net = Net()
    state = dict(net.state_dict())
    del state["heads.1.bias"]
    with pytest.raises(ValueError, match=r"missing key\(s\) 'heads.1.bias'"):
        net.load_state_dict(state)
    assert net.load_state_dict(state, strict=False).missing_keys == ["heads.1.bias"]


def test_load_state_dict_unexpected_key_is_named():
    net = Net()
    state = dict(net.state_dict(), extra=numpy.zeros(2))
    with pytest.raises(ValueError, match=r"unexpected key\(s\) 'extra'"):
        net.load_state_dict(state)
    assert net.load_state_dict(state, strict=False).unexpected_keys == ["extra"]


def test_load_state_dict_wrong_shape_names_key_and_both_shapes_and_changes_nothing():
    net = Net()
    before = {k: v.copy() for k, v in net.state_dict().items()}
    state = {k: numpy.zeros_like(v) for k, v in before.items()}
    state["block.conv.weight"] = numpy.zeros((3, 2, 5, 5))
    with pytest.raises(ValueError, match=r"'block.conv.weight'.*\(3, 2, 5, 5\).*\(3, 2, 3, 3\)"):
        net.load_state_dict(state)
    for key, value in net.state_dict().items():
        numpy.testing.assert_array_equal(value, before[key])


def test_to_device_moves_parameters_buffers_and_grads(xp):
    device = _device(xp)
    net = Net()
    net.block.conv.weight.grad = numpy.ones((3, 2, 3, 3), dtype="float32")
    params = list(net.parameters())
    assert net.to(device) is net
    assert list(net.parameters()) == params  # same objects, new arrays
    for value in net.state_dict().values():
        assert backend.device_of(value) == device
    assert backend.device_of(net.block.conv.weight.grad) == device
    # loading host arrays into a model on the device moves them there explicitly
    net.load_state_dict({k: backend.to_numpy(v) for k, v in net.state_dict().items()})
    assert all(backend.device_of(v) == device for v in net.state_dict().values())
    net.to(dtype="float64")
    assert all(p.dtype == xp.float64 for p in net.parameters())
    net.to("cpu")
    assert all(isinstance(v, numpy.ndarray) for v in net.state_dict().values())


# ----- layers -----------------------------------------------------------------------------
def test_layer_output_shapes(xp):
    device = _device(xp)
    x = ts.tensor(xp.asarray(numpy.random.default_rng(0).standard_normal((2, 4, 8, 8)),
                             dtype="float32"))
    shapes = {
        "conv": (nn.Conv2d(4, 6, 3, stride=2, padding=1), (2, 6, 4, 4)),
        "dilated": (nn.Conv2d(4, 6, 3, padding=2, dilation=2, groups=2), (2, 6, 8, 8)),
        "up": (nn.ConvTranspose2d(4, 3, 4, stride=2, padding=1), (2, 3, 16, 16)),
        "up_pad": (nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1, output_padding=1),
                   (2, 3, 16, 16)),
        "bn": (nn.BatchNorm2d(4), (2, 4, 8, 8)),
        "pool": (nn.MaxPool2d(2), (2, 4, 4, 4)),
        "avg": (nn.AvgPool2d(3, stride=1, padding=1), (2, 4, 8, 8)),
        "resize": (nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                   (2, 4, 16, 16)),
        "resize_to": (nn.Upsample(size=(5, 7)), (2, 4, 5, 7)),
        "leaky": (nn.LeakyReLU(0.2), (2, 4, 8, 8)),
        "flatten": (nn.Flatten(), (2, 256)),
        "head": (nn.Sequential(nn.Flatten(), nn.Linear(256, 5), nn.Dropout(0.5), nn.Sigmoid()),
                 (2, 5)),
    }
    for name, (layer, expected) in shapes.items():
        out = layer.to(device)(x)
        assert out.shape == expected, name
        assert out.dtype == xp.float32 and out.device == device, name


def test_maxpool_indices_feed_maxunpool(xp):
    values = numpy.random.default_rng(0).permutation(2 * 3 * 4 * 4).reshape(2, 3, 4, 4)
    x = ts.tensor(xp.asarray(values, dtype="float64"))
    out, indices = nn.MaxPool2d(2, return_indices=True)(x)
    restored = nn.MaxUnpool2d(2)(out, indices)
    assert restored.shape == (2, 3, 4, 4)
    assert float((restored.data != 0).sum()) == out.size
    assert float(restored.data.max()) == float(x.data.max())


def test_batchnorm_updates_running_stats_in_training_only(xp):
    bn = nn.BatchNorm2d(2, momentum=0.5).to(_device(xp))
    x = ts.tensor(xp.asarray(numpy.random.default_rng(0).normal(3.0, 2.0, (4, 2, 3, 3)),
                             dtype="float32"))
    bn(x)
    batch_mean = x.data.mean(axis=(0, 2, 3))
    assert xp.allclose(bn.running_mean, 0.5 * batch_mean, atol=1e-5)
    frozen = bn.running_mean.copy()
    out = bn.eval()(x)
    assert xp.array_equal(bn.running_mean, frozen)
    expected = (x.data - frozen.reshape(1, 2, 1, 1)) / xp.sqrt(
        bn.running_var.reshape(1, 2, 1, 1) + bn.eps)
    assert xp.allclose(out.data, expected, atol=1e-5)


def test_dropout_is_identity_in_eval_mode(xp):
    x = ts.tensor(xp.ones((3, 4), dtype="float32"))
    drop = nn.Dropout(0.5)
    assert xp.array_equal(drop.eval()(x).data, x.data)
    zeros = float((drop.train()(x).data == 0).sum())
    assert 0 < zeros < 12


def test_layers_give_parameters_gradients(xp):
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(),
                          nn.Flatten(), nn.Linear(3 * 4 * 4, 2)).to(_device(xp))
    x = ts.tensor(xp.asarray(numpy.random.default_rng(0).standard_normal((2, 2, 4, 4)),
                             dtype="float32"))
    model(x).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape, name


def test_bad_layer_arguments_name_the_argument():
    with pytest.raises(ValueError, match="groups"):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="kernel_size"):
        nn.Conv2d(3, 4, 0)
    with pytest.raises(ValueError, match="init"):
        nn.ConvTranspose2d(3, 3, 4, init="gaussian")
    with pytest.raises(ValueError, match="num_features"):
        nn.BatchNorm2d(0)
    with pytest.raises(ValueError, match="p must"):
        nn.Dropout(1.5)
    with pytest.raises(ValueError, match="out_features"):
        nn.Linear(3, 0)
    with pytest.raises(ValueError, match="scale_factor"):
        nn.Upsample()


# ----- initialisation ---------------------------------------------------------------------
def test_bilinear_kernel_k3_hand_values():
    row = numpy.array([0.5, 1.0, 0.5])  # f = 2, c = 1
    numpy.testing.assert_allclose(init.bilinear_kernel(3), numpy.outer(row, row))
    assert init.bilinear_kernel(3)[0].tolist() == [0.25, 0.5, 0.25]


def test_bilinear_kernel_k4_hand_values():
    row = numpy.array([0.25, 0.75, 0.75, 0.25])  # f = 2, c = 1.5
    kernel = init.bilinear_kernel(4)
    numpy.testing.assert_allclose(kernel, numpy.outer(row, row))
    assert kernel[0, 0] == 0.0625 and kernel[1, 2] == 0.5625 and kernel[0, 1] == 0.1875


def test_bilinear_kernel_k5_and_rectangular():
    row5 = numpy.array([1, 2, 3, 2, 1]) / 3  # f = 3, c = 2
    numpy.testing.assert_allclose(init.bilinear_kernel(5), numpy.outer(row5, row5))
    row2 = numpy.array([0.5, 0.5])  # k = 2: f = 1, c = 0.5
    numpy.testing.assert_allclose(init.bilinear_kernel((2, 5)), numpy.outer(row2, row5))


def test_bilinear_init_fills_the_channel_diagonal_only(xp):
    up = nn.ConvTranspose2d(3, 3, 4, stride=2, padding=1, init="bilinear").to(_device(xp))
    w = backend.to_numpy(up.weight.data)
    for i in range(3):
        for j in range(3):
            expected = init.bilinear_kernel(4) if i == j else numpy.zeros((4, 4))
            numpy.testing.assert_array_equal(w[i, j], expected)
    assert not backend.to_numpy(up.bias.data).any()
    depthwise = nn.ConvTranspose2d(4, 4, 4, 2, 1, groups=4, init="bilinear")
    assert all((depthwise.weight.data[c, 0] == init.bilinear_kernel(4)).all() for c in range(4))


def test_bilinear_transpose_conv_upsamples_a_ramp_exactly_in_the_interior(xp):
    # x[h, w] = 3h - 2w + 1 is affine; bilinear x2 (align_corners=False) maps output
    # position o to the source coordinate (o + 0.5)/2 - 0.5, so the output must be the
    # same affine function of those coordinates away from the border.
    up = nn.ConvTranspose2d(2, 2, 4, stride=2, padding=1, init="bilinear", dtype="float64")
    up.to(_device(xp))
    h, w = numpy.meshgrid(numpy.arange(5.0), numpy.arange(6.0), indexing="ij")
    ramp = 3 * h - 2 * w + 1
    x = ts.tensor(xp.asarray(numpy.stack([ramp, -ramp])[None]))
    out = backend.to_numpy(up(x).data)
    assert out.shape == (1, 2, 10, 12)
    src_h, src_w = numpy.meshgrid((numpy.arange(10) + 0.5) / 2 - 0.5,
                                  (numpy.arange(12) + 0.5) / 2 - 0.5, indexing="ij")
    expected = 3 * src_h - 2 * src_w + 1
    numpy.testing.assert_allclose(out[0, 0, 1:-1, 1:-1], expected[1:-1, 1:-1], atol=1e-12)
    numpy.testing.assert_allclose(out[0, 1, 1:-1, 1:-1], -expected[1:-1, 1:-1], atol=1e-12)


def test_kaiming_normal_std_matches_fan_in():
    conv = nn.Conv2d(64, 128, 3, generator=0)
    fan_in = 64 * 9
    std = float(conv.weight.data.std())
    assert abs(std - math.sqrt(2 / fan_in)) < 0.02 * math.sqrt(2 / fan_in)
    assert abs(float(conv.weight.data.mean())) < 0.01 * std


def test_kaiming_uniform_bound_and_std():
    w = numpy.empty((256, 128))
    init.kaiming_uniform_(w, generator=0)
    bound = math.sqrt(2) * math.sqrt(3 / 128)
    assert w.max() <= bound and w.min() >= -bound and w.max() > 0.99 * bound
    assert abs(w.std() - math.sqrt(2 / 128)) < 0.02 * math.sqrt(2 / 128)
    init.kaiming_normal_(w, mode="fan_out", nonlinearity="linear", generator=0)
    assert abs(w.std() - 1 / math.sqrt(256)) < 0.02 / math.sqrt(256)
    with pytest.raises(ValueError, match="mode"):
        init.kaiming_normal_(w, mode="fan_avg")
    with pytest.raises(ValueError, match="nonlinearity"):
        init.kaiming_normal_(w, nonlinearity="swish")


def test_transpose_conv_kaiming_uses_true_fan_in():
    up = nn.ConvTranspose2d(256, 8, 2, stride=2, generator=0)  # each output sees C_in = 256
    assert abs(float(up.weight.data.std()) - math.sqrt(2 / 256)) < 0.05 * math.sqrt(2 / 256)


def test_initialisation_is_reproducible_across_seeds_and_dtypes(xp):
    a = nn.Conv2d(3, 4, 3, generator=7)
    b = nn.Conv2d(3, 4, 3, generator=numpy.random.default_rng(7), dtype="float64")
    c = nn.Conv2d(3, 4, 3, generator=7, device=_device(xp))
    numpy.testing.assert_allclose(a.weight.data, b.weight.data, rtol=1e-6)
    numpy.testing.assert_array_equal(a.weight.data, backend.to_numpy(c.weight.data))
    assert c.weight.device == _device(xp)
    init.manual_seed(3)
    first = nn.Linear(4, 4).weight.data.copy()
    init.manual_seed(3)
    numpy.testing.assert_array_equal(nn.Linear(4, 4).weight.data, first)
    with pytest.raises(TypeError, match="generator"):
        nn.Linear(2, 2, generator="seed")


def test_no_numpy_prefix_in_tinyseg_nn():
    root = pathlib.Path(__file__).resolve().parents[1] / "tinyseg" / "nn"
    for path in root.glob("*.py"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            assert not re.search(r"\bnp\.|\bnumpy\.", line), f"{path.name}:{number}: {line}"
