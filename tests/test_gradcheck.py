"""The checker itself: it must pass right gradients and catch wrong ones."""

from __future__ import annotations

import numpy
import pytest

import tinyseg as ts
from tinyseg.autograd import Function
from tinyseg.gradcheck import GradcheckError, numerical_gradient, rel_error


def test_numerical_gradient_of_a_known_function(xp):
    x = xp.asarray([0.5, -1.0, 2.0])
    dout = xp.asarray([1.0, 2.0, -3.0])
    grad = numerical_gradient(lambda v: v**3, x, dout)  # d/dx <x^3, dout> = 3x^2 dout
    assert xp.allclose(grad, 3 * x**2 * dout, atol=1e-8)
    assert xp.allclose(x, xp.asarray([0.5, -1.0, 2.0]))  # x restored


def test_numerical_gradient_refuses_float32(xp):
    with pytest.raises(TypeError, match="float64"):
        numerical_gradient(lambda v: v, xp.ones(3, dtype=xp.float32), xp.ones(3))


def test_rel_error(xp):
    a = xp.asarray([1.0, 2.0])
    assert rel_error(a, a) == 0.0
    assert rel_error(xp.zeros(2), xp.zeros(2)) == 0.0
    assert abs(rel_error(a, a * 1.01) - 0.02 / 4.02) < 1e-12
    with pytest.raises(ValueError, match="shape"):
        rel_error(a, xp.ones(3))


class _SoftmaxWrongBackward(Function):
    """Softmax whose backward returns zeros: passes an all-ones dout check, fails a random one."""

    @staticmethod
    def forward(ctx, x):
        xp = ts.backend.xp_of(x)
        e = xp.exp(x - x.max())
        return e / e.sum()

    @staticmethod
    def backward(ctx, dout):
        return dout * 0.0


class _WrongScale(Function):
    @staticmethod
    def forward(ctx, x):
        return 2.0 * x

    @staticmethod
    def backward(ctx, dout):
        return 3.0 * dout


def test_random_upstream_gradient_catches_a_softmax_bug(xp):
    x = ts.tensor(xp.asarray([0.1, 0.7, -0.4]), requires_grad=True)
    # With dout = ones the true gradient of softmax is zero, so the wrong backward would pass:
    y = _SoftmaxWrongBackward.apply(x)
    ones_numeric = numerical_gradient(
        lambda v: _SoftmaxWrongBackward.forward(None, v), x.data, xp.ones(3)
    )
    assert float(xp.abs(ones_numeric).max()) < 1e-8
    with pytest.raises(GradcheckError):
        ts.gradcheck(lambda v: _SoftmaxWrongBackward.apply(v), (x,))
    assert y.shape == (3,)


def test_report_names_the_input_and_worst_element(xp):
    a = ts.tensor(xp.ones((2, 2)), requires_grad=True)
    b = ts.tensor(xp.ones((3,)), requires_grad=True)
    with pytest.raises(GradcheckError) as info:
        ts.gradcheck(lambda a, b: (_WrongScale.apply(a), b * 2.0), (a, b))
    message = str(info.value)
    assert "input 0" in message and "worst at" in message and "input 1" not in message


def test_directional_mode(xp):
    x = ts.tensor(
        xp.asarray(numpy.random.default_rng(0).standard_normal((40, 40))), requires_grad=True
    )
    assert ts.gradcheck(lambda v: (v * v).exp().sum(dim=0), (x,), mode="directional")
    with pytest.raises(GradcheckError, match="direction"):
        ts.gradcheck(lambda v: _WrongScale.apply(v), (x,), mode="directional")
    # auto switches to directional above max_elements
    with pytest.raises(GradcheckError, match="direction"):
        ts.gradcheck(lambda v: _WrongScale.apply(v), (x,), max_elements=100)


def test_gradcheck_refuses_float32_and_bad_arguments(xp):
    x32 = ts.tensor(xp.ones(3, dtype=xp.float32), requires_grad=True)
    with pytest.raises(TypeError, match="float64"):
        ts.gradcheck(lambda v: v * 2.0, (x32,))
    x = ts.tensor(xp.ones(3))
    with pytest.raises(ValueError, match="requires_grad"):
        ts.gradcheck(lambda v: v * 2.0, (x,))
    with pytest.raises(ValueError, match="mode"):
        ts.gradcheck(lambda v: v * 2.0, (ts.tensor(xp.ones(3), requires_grad=True),), mode="fast")
