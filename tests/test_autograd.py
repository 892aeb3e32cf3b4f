"""The tape: chain rule, accumulation, no_grad, every Tensor operator, cat/stack, Function API."""

from __future__ import annotations

import numpy
import pytest

import tinyseg as ts
from tinyseg import backend
from tinyseg.autograd import Function, Tensor


def leaf(xp, shape, seed=0, positive=False):
    values = numpy.random.default_rng(seed).standard_normal(shape)
    if positive:
        values = numpy.abs(values) + 0.5
    return ts.tensor(xp.asarray(values), requires_grad=True)


def test_tensor_basics(xp):
    t = ts.tensor(xp.arange(6.0).reshape(2, 3))
    assert t.shape == (2, 3) and t.ndim == 2 and t.size == 6
    assert t.dtype == xp.float64 and not t.requires_grad and t.grad is None
    assert t.device == ("gpu" if xp.__name__ == "cupy" else "cpu")
    assert isinstance(t.numpy(), numpy.ndarray)
    assert "tensor(" in repr(t)


def test_tensor_from_list_uses_default_device():
    t = ts.tensor([1.0, 2.0])
    assert t.device == "cpu" and t.data.dtype == numpy.float64


def test_requires_grad_needs_float(xp):
    with pytest.raises(TypeError, match="floating"):
        ts.tensor(xp.arange(3), requires_grad=True)


def test_chain_rule_by_hand(xp):
    x = ts.tensor(xp.asarray([1.0, 2.0, 3.0]), requires_grad=True)
    y = (x * x * 3.0 + x).sum()  # dy/dx = 6x + 1
    y.backward()
    assert xp.allclose(x.grad, xp.asarray([7.0, 13.0, 19.0]))


def test_gradients_accumulate_when_a_tensor_is_used_twice(xp):
    x = ts.tensor(xp.asarray([2.0]), requires_grad=True)
    a = x * 3.0
    y = (a * a + a).sum()  # two paths through a: dy/dx = (2a + 1) * 3
    y.backward()
    assert xp.allclose(x.grad, xp.asarray([(2 * 6.0 + 1) * 3]))


def test_backward_twice_accumulates_in_leaf(xp):
    x = ts.tensor(xp.asarray([1.0, -1.0]), requires_grad=True)
    (x * 2.0).sum().backward()
    (x * 2.0).sum().backward()
    assert xp.allclose(x.grad, xp.asarray([4.0, 4.0]))


def test_nonscalar_backward_needs_grad(xp):
    x = leaf(xp, (3,))
    with pytest.raises(RuntimeError, match="scalar"):
        (x * 2.0).backward()
    with pytest.raises(ValueError, match="shape"):
        (x * 2.0).backward(xp.ones(4))


def test_no_grad_records_nothing(xp):
    x = leaf(xp, (3,))
    with ts.no_grad():
        y = x * 2.0
        assert not ts.is_grad_enabled()
    assert ts.is_grad_enabled()
    assert not y.requires_grad and y.is_leaf


def _idx(t, values):
    """An index array on t's device (a host list index would be a hidden copy)."""
    return backend.xp_of(t).asarray(values)


@pytest.mark.parametrize(
    "name, fn, positive",
    [
        ("add_broadcast", lambda a, b: a + b[0], False),
        ("sub_rsub", lambda a, b: (1.0 - a) - b, False),
        ("mul_broadcast", lambda a, b: a * b[:, :1], False),
        ("div", lambda a, b: a / b, True),
        ("rdiv", lambda a, b: 2.0 / b + a, True),
        ("matmul", lambda a, b: a @ b.permute(1, 0), False),
        ("pow", lambda a, b: a**3 + b**2, False),
        ("neg_exp_log", lambda a, b: (-a).exp() + b.log(), True),
        ("reshape_permute", lambda a, b: a.reshape(4, 3).permute(1, 0) * b.reshape(3, 4), False),
        ("transpose_flatten", lambda a, b: a.transpose(0, 1).flatten() + b.view(-1), False),
        ("getitem_slice", lambda a, b: a[1:, ::2] * b[:2, 1:3], False),
        ("getitem_repeated", lambda a, b: a[_idx(a, [0, 0, 2])] + b[_idx(b, [1, 1, 1])], False),
        ("sum_dim_keepdim", lambda a, b: a.sum(dim=1, keepdim=True) * b, False),
        ("sum_dims", lambda a, b: a.sum(dim=(0, 1)) + b.sum(), False),
        ("mean", lambda a, b: a.mean(dim=0) + b.mean(), False),
        ("max_dim", lambda a, b: a.max(dim=1) + b.max(dim=0, keepdim=True).sum(), False),
        ("max_all", lambda a, b: a.max() * b, False),
        ("abs", lambda a, b: a.abs() + b, False),
        ("cat", lambda a, b: ts.cat([a, b, a], dim=1), False),
        ("stack", lambda a, b: ts.stack([a, b], dim=1), False),
    ],
)
def test_operator_gradients(xp, name, fn, positive):
    a = leaf(xp, (3, 4), seed=1, positive=positive)
    b = leaf(xp, (3, 4), seed=2, positive=positive)
    assert ts.gradcheck(fn, (a, b))


def test_matmul_broadcasts_over_batch(xp):
    a = leaf(xp, (2, 3, 4), seed=3)
    b = leaf(xp, (4, 5), seed=4)
    assert ts.gradcheck(lambda a, b: a @ b, (a, b))


def test_raw_array_operands(xp):
    a = leaf(xp, (2, 2))
    raw = xp.ones((2, 2))
    y = (raw + a) * raw - raw / (a * a + 1.0)
    assert isinstance(y, Tensor) and y.requires_grad


def test_comparisons_have_no_gradient(xp):
    a = leaf(xp, (3,))
    mask = a > 0
    assert not mask.requires_grad and mask.dtype == bool


def test_permute_rejects_bad_dims(xp):
    with pytest.raises(ValueError, match="permutation"):
        leaf(xp, (2, 3)).permute(0, 0)


def test_pow_rejects_tensor_exponent(xp):
    a = leaf(xp, (2,))
    with pytest.raises(TypeError, match="exponent"):
        a**a


class _Square(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, dout):
        (x,) = ctx.saved_tensors
        return 2 * x * dout


class _SplitHalves(Function):
    """Two outputs: checks multi-output nodes and zero-filled missing douts."""

    @staticmethod
    def forward(ctx, x):
        n = x.shape[0] // 2
        return x[:n] * 1.0, x[n:] * 3.0

    @staticmethod
    def backward(ctx, d_first, d_second):
        xp = ts.backend.xp_of(d_first)
        return xp.concatenate([d_first, 3.0 * d_second])


class _BadShape(Function):
    @staticmethod
    def forward(ctx, x):
        return x * 1.0

    @staticmethod
    def backward(ctx, dout):
        return dout[:1]


def test_custom_function(xp):
    x = leaf(xp, (4,))
    assert ts.gradcheck(lambda x: _Square.apply(x), (x,))
    assert ts.gradcheck(lambda x: _SplitHalves.apply(x), (x,))
    first, _ = _SplitHalves.apply(x)
    x.grad = None
    first.sum().backward()  # the unused second output gets a zero gradient
    assert xp.allclose(x.grad, xp.asarray([1.0, 1.0, 0.0, 0.0]))


def test_function_with_wrong_gradient_shape_is_caught(xp):
    x = leaf(xp, (3,))
    with pytest.raises(RuntimeError, match="shape"):
        _BadShape.apply(x).sum().backward()


def test_long_chain_does_not_hit_recursion_limit(xp):
    x = leaf(xp, (2,))
    y = x
    for _ in range(3000):
        y = y * 1.0
    y.sum().backward()
    assert xp.allclose(x.grad, xp.ones(2))


def test_detach_and_to_cpu_round_trip(xp):
    x = leaf(xp, (2,))
    d = x.detach()
    assert not d.requires_grad
    y = x.to("cpu")
    assert y.device == "cpu"
    if xp.__name__ == "cupy":  # a move of a non-leaf keeps the gradient path
        z = (x * 2.0).to("cpu").sum()
        z.backward()
        assert x.grad.shape == (2,)


def test_needs_input_grad_is_known_before_forward():
    seen = []

    class Probe(Function):
        @staticmethod
        def forward(ctx, a, b, k):
            seen.append(ctx.needs_input_grad)
            return a * b

        @staticmethod
        def backward(ctx, dout):
            return dout, dout, None

    a = Tensor(numpy.ones(2), requires_grad=True)
    Probe.apply(a, Tensor(numpy.ones(2)), 3)
    with ts.no_grad():
        Probe.apply(a, a, 3)
    assert seen == [(True, False, False), (False, False, False)]


def test_matmul_skips_the_gradient_of_a_constant():
    a = Tensor(numpy.arange(6.0).reshape(2, 3), requires_grad=True)
    b = Tensor(numpy.ones((3, 2)))
    (a @ b).sum().backward()
    assert b.grad is None
    numpy.testing.assert_allclose(a.grad, numpy.ones((2, 2)) @ numpy.ones((3, 2)).T)
