"""tinyseg.optim: update rules against hand-worked steps and torch.optim; LR schedules."""

from __future__ import annotations

import math

import numpy
import pytest

from tinyseg import backend, nn, optim


def _run(xp, make_optimizer, grads, start=(1.0, -2.0)):
    """Apply one optimiser step per gradient in ``grads``; return p after each step."""
    p = nn.Parameter(xp.array(start, dtype="float64"))  # a copy: updates are in place
    opt = make_optimizer([p])
    history = []
    for g in grads:
        p.grad = xp.asarray(g, dtype="float64")
        opt.step()
        history.append(backend.to_numpy(p.data).copy())
    return history


G1, G2 = [1.0, 2.0], [0.5, -1.0]


def test_sgd_plain_step(xp):
    (p1,) = _run(xp, lambda ps: optim.SGD(ps, lr=0.1), [G1])
    numpy.testing.assert_allclose(p1, [0.9, -2.2])


def test_sgd_momentum_two_steps(xp):
    # b1 = g1 = (1, 2); p1 = (1, -2) - 0.1 b1
    # b2 = 0.9 b1 + g2 = (1.4, 0.8); p2 = p1 - 0.1 b2
    p1, p2 = _run(xp, lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9), [G1, G2])
    numpy.testing.assert_allclose(p1, [0.9, -2.2])
    numpy.testing.assert_allclose(p2, [0.76, -2.28])


def test_sgd_nesterov_two_steps(xp):
    # d1 = g1 + 0.9 b1 = (1.9, 3.8); d2 = g2 + 0.9 b2 = (1.76, -0.28)
    p1, p2 = _run(xp, lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True), [G1, G2])
    numpy.testing.assert_allclose(p1, [0.81, -2.38])
    numpy.testing.assert_allclose(p2, [0.634, -2.352])


def test_sgd_weight_decay_and_dampening(xp):
    # d = g1 + 0.1 p0 = (1.1, 1.8)
    (p1,) = _run(xp, lambda ps: optim.SGD(ps, lr=0.1, weight_decay=0.1), [G1])
    numpy.testing.assert_allclose(p1, [0.89, -2.18])
    # b1 = g1 (no dampening on the first step); b2 = 0.9 b1 + 0.5 g2 = (1.15, 1.3)
    p1, p2 = _run(xp, lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, dampening=0.5), [G1, G2])
    numpy.testing.assert_allclose(p2, p1 - 0.1 * numpy.array([1.15, 1.3]))


def test_adam_two_steps(xp):
    # step 1: m_hat = g, v_hat = g^2, so p moves by lr * sign(g).
    # step 2: m = (0.14, 0.08), v = (0.001249, 0.004996), bc1 = 0.19, bc2 = 0.001999
    p1, p2 = _run(xp, lambda ps: optim.Adam(ps, lr=0.1), [G1, G2])
    numpy.testing.assert_allclose(p1, [0.9, -2.1], atol=1e-8)
    numpy.testing.assert_allclose(p2, [0.806782037298161, -2.1266337037975687], atol=1e-8)


def test_adamw_decays_before_the_adam_step(xp):
    # p <- p * (1 - 0.1 * 0.1) = (0.99, -1.98), then -0.1 * sign(g)
    (p1,) = _run(xp, lambda ps: optim.AdamW(ps, lr=0.1, weight_decay=0.1), [G1])
    numpy.testing.assert_allclose(p1, [0.89, -2.08], atol=1e-8)


def test_adam_weight_decay_is_added_to_the_gradient(xp):
    # g' = g + 0.5 p = (1.5, 1.0) on step 1; different from AdamW on step 2
    l2 = _run(xp, lambda ps: optim.Adam(ps, lr=0.1, weight_decay=0.5), [G1, G2])
    decoupled = _run(xp, lambda ps: optim.AdamW(ps, lr=0.1, weight_decay=0.5), [G1, G2])
    numpy.testing.assert_allclose(l2[0], [0.9, -2.1], atol=1e-8)
    assert not numpy.allclose(l2[1], decoupled[1])


def test_parameters_without_grad_are_skipped_and_zero_grad(xp):
    a = nn.Parameter(xp.ones(2))
    b = nn.Parameter(xp.ones(2))
    opt = optim.SGD([a, b], lr=1.0, momentum=0.9)
    a.grad = xp.ones(2)
    opt.step()
    assert backend.to_numpy(b.data).tolist() == [1.0, 1.0]
    assert backend.to_numpy(a.data).tolist() == [0.0, 0.0]
    opt.zero_grad()
    assert a.grad is None and b.grad is None


def test_float32_parameters_stay_float32(xp):
    p = nn.Parameter(xp.ones(3, dtype="float32"))
    for opt in (optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=1e-4), optim.AdamW([p])):
        p.grad = xp.full(3, 0.5, dtype="float32")
        opt.step()
        assert p.dtype == xp.float32


# ----- the flat update: the same numbers as the loop, in a few launches ----------------------
FLAT_CASES = [
    ("SGD", {"lr": 0.1}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01, "dampening": 0.2}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
    ("Adam", {"lr": 0.01, "weight_decay": 0.1}),
    ("AdamW", {"lr": 0.01, "weight_decay": 0.1}),
]
SHAPES = [(3, 2, 3, 3), (3,), (), (4, 5), (1, 1, 2)]  # conv-like, bias, scalar, linear, odd


def _model_params(xp, seed=0):
    rng = numpy.random.default_rng(seed)
    return [nn.Parameter(xp.asarray(rng.standard_normal(s))) for s in SHAPES]


def _grads(xp, steps, seed=1):
    rng = numpy.random.default_rng(seed)
    return [[xp.asarray(rng.standard_normal(s)) for s in SHAPES] for _ in range(steps)]


@pytest.mark.parametrize("name, kwargs", FLAT_CASES)
def test_flat_step_equals_the_loop_exactly(xp, name, kwargs):
    flat_params, loop_params = _model_params(xp), _model_params(xp)
    flat = getattr(optim, name)(flat_params, **kwargs)
    loop = getattr(optim, name)(loop_params, **kwargs)
    for grads in _grads(xp, 3):
        for p, q, g in zip(flat_params, loop_params, grads):
            p.grad, q.grad = g, g.copy()
        assert flat._can_fuse()
        flat.step_flat()
        loop.step_loop()
    for p, q in zip(flat_params, loop_params):
        assert p.data.shape == q.data.shape
        assert backend.to_numpy(p.data).tolist() == backend.to_numpy(q.data).tolist()
    for s, t in zip(flat.state, loop.state):
        assert s.keys() == t.keys()
        for key in s:
            assert backend.to_numpy(xp.asarray(s[key])).tolist() == \
                backend.to_numpy(xp.asarray(t[key])).tolist()


def test_flat_step_makes_parameters_views_of_one_array(xp):
    params = _model_params(xp)
    opt = optim.Adam(params, lr=0.1)
    for p, g in zip(params, _grads(xp, 1)[0]):
        p.grad = g
    opt.step()
    flat = opt._flat["data"].flat
    assert flat.shape == (sum(int(numpy.prod(s)) for s in SHAPES),)
    flat[...] = 7.0  # writing the flat array writes every parameter
    assert all(float(p.data.sum()) == 7.0 * p.data.size for p in params)
    assert opt.state[0]["exp_avg"].shape == SHAPES[0]


def test_a_replaced_parameter_array_is_packed_again(xp):
    # Module.to or load_state_dict give p.data a new array: the next step must update it.
    params = _model_params(xp)
    opt = optim.SGD(params, lr=1.0, momentum=0.5)
    for p, g in zip(params, _grads(xp, 1)[0]):
        p.grad = g
    opt.step()
    params[1].data = xp.zeros(3)
    params[1].grad = xp.ones(3)
    opt.step()  # buffer b = 0.5 b + g; p = 0 - b
    expected = -(0.5 * backend.to_numpy(_grads(xp, 1)[0][1]) + 1.0)
    numpy.testing.assert_allclose(backend.to_numpy(params[1].data), expected)
    assert opt._flat["data"].holds([p.data for p in params])


def test_a_parameter_without_grad_falls_back_to_the_loop(xp):
    params = _model_params(xp)
    opt = optim.Adam(params, lr=0.1)
    grads = _grads(xp, 2)
    for p, g in zip(params, grads[0]):
        p.grad = g
    opt.step()
    params[2].grad = None  # no gradient this step: skipped, its step count stays 1
    assert not opt._can_fuse()
    before = backend.to_numpy(params[2].data).copy()
    opt.step()
    assert backend.to_numpy(params[2].data).tolist() == before.tolist()
    assert [s["step"] for s in opt.state] == [2, 2, 1, 2, 2]
    for p, g in zip(params, grads[1]):
        p.grad = g
    assert not opt._can_fuse()  # step counts differ: the loop keeps them apart


def test_resumed_state_gives_the_same_steps_as_an_unbroken_run(xp):
    grads = _grads(xp, 4)
    unbroken = _model_params(xp)
    opt = optim.Adam(unbroken, lr=0.05)
    for step in grads:
        for p, g in zip(unbroken, step):
            p.grad = g
        opt.step()
    first = _model_params(xp)
    opt1 = optim.Adam(first, lr=0.05)
    for step in grads[:2]:
        for p, g in zip(first, step):
            p.grad = g
        opt1.step()
    saved = {k: v for k, v in opt1.state_dict().items()}
    resumed = [nn.Parameter(p.data.copy()) for p in first]
    opt2 = optim.Adam(resumed, lr=0.05)
    opt2.load_state_dict(saved)
    for step in grads[2:]:
        for p, g in zip(resumed, step):
            p.grad = g
        opt2.step()
    for p, q in zip(unbroken, resumed):
        assert backend.to_numpy(p.data).tolist() == backend.to_numpy(q.data).tolist()


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("SGD", {"lr": 0.1}),
        ("SGD", {"lr": 0.1, "momentum": 0.9}),
        ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
        ("SGD", {"lr": 0.05, "momentum": 0.8, "dampening": 0.3, "weight_decay": 0.1}),
        ("Adam", {"lr": 0.01}),
        ("Adam", {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1}),
        ("AdamW", {"lr": 0.01}),
        ("AdamW", {"lr": 0.01, "betas": (0.5, 0.9), "weight_decay": 0.3}),
    ],
)
def test_matches_torch_over_five_steps(name, kwargs):
    torch = pytest.importorskip("torch")
    rng = numpy.random.default_rng(0)
    start = rng.standard_normal((3, 4))
    grads = [rng.standard_normal((3, 4)) for _ in range(5)]
    ours = _run(numpy, lambda ps: getattr(optim, name)(ps, **kwargs), grads, start=start)
    theirs = torch.nn.Parameter(torch.tensor(start))
    opt = getattr(torch.optim, name)([theirs], **kwargs)
    for step, g in enumerate(grads):
        theirs.grad = torch.tensor(g)
        opt.step()
        numpy.testing.assert_allclose(ours[step], theirs.detach().numpy(), rtol=1e-10,
                                      atol=1e-12, err_msg=f"step {step + 1}")


# ----- schedules --------------------------------------------------------------------------
def _lrs(scheduler, epochs):
    values = []
    for _ in range(epochs):
        values.append(scheduler.get_last_lr()[0])
        assert scheduler.optimizer.lr == values[-1]
        scheduler.step()
    return values


def _opt(lr=1.0):
    return optim.SGD([nn.Parameter(numpy.zeros(1))], lr=lr)


def test_step_lr_sequence():
    lrs = _lrs(optim.StepLR(_opt(), step_size=2, gamma=0.5), 6)
    assert lrs == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]


def test_cosine_annealing_sequence():
    lrs = _lrs(optim.CosineAnnealingLR(_opt(), T_max=4, eta_min=0.1), 5)
    numpy.testing.assert_allclose(
        lrs, [1.0, 0.1 + 0.9 * (1 + math.cos(math.pi / 4)) / 2, 0.55,
              0.1 + 0.9 * (1 + math.cos(3 * math.pi / 4)) / 2, 0.1])


def test_scheduler_changes_the_step_size():
    p = nn.Parameter(numpy.zeros(1))
    opt = optim.SGD([p], lr=1.0)
    sched = optim.StepLR(opt, step_size=1, gamma=0.1)
    for _ in range(2):
        p.grad = numpy.ones(1)
        opt.step()
        sched.step()
    numpy.testing.assert_allclose(p.data, [-1.1])


@pytest.mark.parametrize(
    "name, kwargs",
    [("StepLR", {"step_size": 3, "gamma": 0.3}), ("CosineAnnealingLR", {"T_max": 5}),
     ("CosineAnnealingLR", {"T_max": 4, "eta_min": 0.01})],
)
def test_schedules_match_torch(name, kwargs):
    torch = pytest.importorskip("torch")
    theirs = getattr(torch.optim.lr_scheduler, name)(
        torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5), **kwargs)
    expected = []
    for _ in range(12):
        expected.append(theirs.get_last_lr()[0])
        theirs.optimizer.step()
        theirs.step()
    ours = _lrs(getattr(optim, name)(_opt(0.5), **kwargs), 12)
    numpy.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-15)


# ----- bad input --------------------------------------------------------------------------
def test_bad_hyperparameters_name_the_argument():
    params = [nn.Parameter(numpy.zeros(1))]
    with pytest.raises(ValueError, match="lr"):
        optim.SGD(params, lr=-0.1)
    with pytest.raises(ValueError, match="momentum"):
        optim.SGD(params, lr=0.1, momentum=-0.5)
    with pytest.raises(ValueError, match="nesterov.*momentum"):
        optim.SGD(params, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="betas"):
        optim.Adam(params, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="weight_decay"):
        optim.AdamW(params, weight_decay=-1)
    with pytest.raises(ValueError, match="params is empty"):
        optim.Adam([])
    with pytest.raises(TypeError, match="params"):
        optim.SGD(params[0], lr=0.1)
    with pytest.raises(ValueError, match="step_size"):
        optim.StepLR(optim.SGD(params, lr=0.1), step_size=0)
    with pytest.raises(ValueError, match="T_max"):
        optim.CosineAnnealingLR(optim.SGD(params, lr=0.1), T_max=0)
