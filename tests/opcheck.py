"""Checks that every op test uses: backward against central differences.

``assert_backward_matches(forward, backward, args, wrt)`` runs
``out, cache = forward(*args, **params)``, draws a random upstream gradient
``dout`` (never all ones: that would hide softmax-style bugs), runs
``backward(dout, cache)`` and compares each returned gradient with
``numerical_gradient`` on the argument it belongs to.

A failure teaches on its first line (the grader shows only that one): it names
the gradient after the forward's argument (``dw`` for ``w``), and gives the
worst element with both values, from ``tinyseg.gradcheck.worst_element``::

    dw is wrong: rel error 0.333 >= 1e-06, worst at (2, 1, 2, 1): analytic -4.97, numerical -9.95
"""

from __future__ import annotations

import inspect

import numpy
from hypothesis import HealthCheck, settings

from tinyseg.backend import xp_of
from tinyseg.gradcheck import numerical_gradient, rel_error, worst_element

# Hypothesis settings for tests that take the ``xp`` fixture: it holds no state, so sharing it
# across examples is safe, and 25 examples keep the suite fast.
FEW = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def random_like(xp, shape, seed=0):
    """Float64 standard normal values on the backend ``xp``."""
    return xp.asarray(numpy.random.default_rng(seed).standard_normal(shape))


def gradient_name(forward, position: int) -> str:
    """``"dw"`` for the argument ``w`` of ``forward`` at ``position``; a generic name otherwise."""
    try:
        params = list(inspect.signature(forward).parameters.values())
    except (TypeError, ValueError):  # builtins and some C callables have no signature
        params = []
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if position < len(params) and params[position].kind in positional:
        return "d" + params[position].name
    return f"the gradient of argument {position}"


def assert_backward_matches(forward, backward, args, wrt, params=None, seed=1, tol=1e-6):
    """``wrt``: positions in ``args`` of the inputs that ``backward`` returns gradients for."""
    params = params or {}
    out, cache = forward(*args, **params)
    xp = xp_of(out)
    dout = random_like(xp, out.shape, seed)
    grads = backward(dout, cache)
    grads = grads if isinstance(grads, tuple) else (grads,)
    assert len(grads) >= len(wrt), f"backward returned {len(grads)} grads, expected {len(wrt)}"
    for k, position in enumerate(wrt):
        x, name = args[position], gradient_name(forward, position)
        analytic = grads[k]
        assert analytic is not None, f"{name} is wrong: backward returned None for it"
        assert tuple(analytic.shape) == tuple(x.shape), (
            f"{name} is wrong: shape {tuple(analytic.shape)}, expected {tuple(x.shape)} "
            f"(the shape of the input it is the gradient of)"
        )
        numeric = numerical_gradient(lambda _x: forward(*args, **params)[0], x, dout)
        err = rel_error(numeric, analytic)
        assert err < tol, (
            f"{name} is wrong: rel error {err:.3g} >= {tol}, "
            f"{worst_element(analytic, numeric)}\n"
            f"(analytic: returned by backward; numerical: central differences of forward, "
            f"with a random upstream gradient)"
        )
