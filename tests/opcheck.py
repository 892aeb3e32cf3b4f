"""Checks that every op test uses: backward against central differences.

``assert_backward_matches(forward, backward, args, wrt)`` runs
``out, cache = forward(*args, **params)``, draws a random upstream gradient
``dout`` (never all ones: that would hide softmax-style bugs), runs
``backward(dout, cache)`` and compares each returned gradient with
``numerical_gradient`` on the argument it belongs to.
"""

from __future__ import annotations

import numpy
from hypothesis import HealthCheck, settings

from tinyseg.backend import xp_of
from tinyseg.gradcheck import numerical_gradient, rel_error

# Hypothesis settings for tests that take the ``xp`` fixture: it holds no state, so sharing it
# across examples is safe, and 25 examples keep the suite fast.
FEW = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def random_like(xp, shape, seed=0):
    """Float64 standard normal values on the backend ``xp``."""
    return xp.asarray(numpy.random.default_rng(seed).standard_normal(shape))


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
        x = args[position]
        numeric = numerical_gradient(lambda _x: forward(*args, **params)[0], x, dout)
        err = rel_error(numeric, grads[k])
        assert err < tol, f"gradient of argument {position}: rel error {err:.3g} >= {tol}"
