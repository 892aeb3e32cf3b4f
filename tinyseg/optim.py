"""Optimisers and learning-rate schedules, with torch.optim's exact update rules.

Notation: parameter ``p``, its gradient ``g = dL/dp``, learning rate ``lr``,
weight decay ``wd``, step count ``t = 1, 2, ...``.

SGD (momentum mu, dampening tau, optional Nesterov)::

    g <- g + wd * p                       (L2 penalty wd/2 |p|^2 folded into g)
    b <- g                                at t = 1
    b <- mu * b + (1 - tau) * g           at t > 1
    d <- g + mu * b   if nesterov   else  b          (d = g when mu = 0)
    p <- p - lr * d

Adam (Kingma & Ba 2015)::

    g <- g + wd * p                       (Adam's weight decay is an L2 penalty)
    m <- beta1 * m + (1 - beta1) * g      (first moment, mean of g)
    v <- beta2 * v + (1 - beta2) * g^2    (second moment, mean of g^2)
    m_hat = m / (1 - beta1^t),  v_hat = v / (1 - beta2^t)   (bias correction: m, v start at 0)
    p <- p - lr * m_hat / (sqrt(v_hat) + eps)

AdamW (Loshchilov & Hutter 2019) decouples the decay from the gradient, so that
it is not rescaled by 1/sqrt(v_hat)::

    p <- p * (1 - lr * wd)                then the Adam step with wd = 0

Updates happen in place on ``p.data`` (raw arrays, on the parameter's own
device), inside ``no_grad``. Parameters whose ``grad`` is None are skipped.

One update for all parameters (flat storage)
--------------------------------------------
Every rule above is elementwise: entry k of ``p`` changes using only entry k of
``g``, ``m``, ``v`` and ``b``. So the rule applied to each parameter in turn
gives exactly the same numbers as the rule applied ONCE to all parameters laid
end to end in one long vector::

    p_flat = [p_1.ravel(), p_2.ravel(), ..., p_P.ravel()]       (sum of sizes,)
    g_flat = [g_1.ravel(), ..., g_P.ravel()]                    one concatenation

That matters on a GPU, where each array operation is one kernel launch: the
per-parameter loop costs ~10 launches per parameter (a U-Net has 60-odd
parameters, so ~650 launches a step), the flat update ~15 in all. The
parameters are not copied at each step: at the first step ``p_flat`` is
allocated, and each ``p.data`` becomes a shaped VIEW of its slice, so an update
of ``p_flat`` in place is an update of every ``p.data``. The optimiser state
(``m``, ``v``, ``b``) is flat in the same way, and each parameter's state
entry is a view of its slice. If something replaces a ``p.data`` or a state
array (``Module.to``, ``load_state_dict``), the next step notices that it is
no longer the view handed out, and packs again.

``_update(data, grad, state)`` is the rule written once, for one array. The
loop version calls it per parameter; the flat version calls it once, on the
flat arrays. The flat version needs every parameter in the same state: all
with a gradient, one device and dtype, the same step count. When that fails
(a parameter that got no gradient this step), the step falls back to the
loop, which updates the same views in place.
"""

from __future__ import annotations

import math

from . import backend
from .autograd import Tensor, no_grad
from .backend import xp_of
from .validate import check_nonnegative


class Optimizer:
    """Holds a list of parameters and a learning rate ``lr`` (schedulers change it)."""

    def __init__(self, params, lr: float):
        if isinstance(params, (Tensor, dict)):
            raise TypeError(
                "params must be an iterable of Tensors, e.g. model.parameters(); "
                f"got a {type(params).__name__}"
            )
        self.params = list(params)
        if not self.params:
            raise ValueError("params is empty: the optimiser has no parameters to update")
        first_seen = {}
        for i, p in enumerate(self.params):
            if not isinstance(p, Tensor):
                raise TypeError(f"params[{i}] must be a Tensor, got {type(p).__name__}")
            if id(p) in first_seen:  # torch refuses it too: the step would move p twice
                raise ValueError(f"params[{i}] is the same parameter as "
                                 f"params[{first_seen[id(p)]}]: each may appear only once")
            first_seen[id(p)] = i
        check_nonnegative(lr, "lr")
        self.lr = float(lr)
        self.state = [{} for _ in self.params]  # per-parameter buffers, in params order
        self._flat = {}  # name -> FlatViews: the flat arrays behind p.data and the state

    def zero_grad(self) -> None:
        """Forget the gradients (``p.grad = None``) before the next backward pass."""
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        """Update every parameter that has a gradient, in place: one flat update when it can."""
        with no_grad():
            if self._can_fuse():
                self.step_flat()
            else:
                self.step_loop()

    def step_loop(self) -> None:
        """The update written as a loop: ``_update`` once per parameter that has a gradient."""
        with no_grad():
            for p, state in zip(self.params, self.state):
                if p.grad is not None:
                    self._update(p.data, p.grad, state)

    def step_flat(self) -> None:
        """The same update as ``step_loop``, applied once to all parameters laid end to end.

        Needs what ``_can_fuse`` checks: every parameter has a gradient, all share one
        device and dtype, and all states hold the same keys and step counts.
        """
        with no_grad():
            params = self.params
            data = self._flat_of("data", [p.data for p in params])
            for p, view in zip(params, self._flat["data"].views):
                p.data = view  # no copy when they were the views already
            xp = xp_of(data)
            grad = xp.concatenate([p.grad.reshape(-1) for p in params])
            flat_state = {}
            for key, value in self.state[0].items():
                if _is_array(value):
                    flat_state[key] = self._flat_of(key, [s[key] for s in self.state])
                else:
                    flat_state[key] = value
            self._update(data, grad, flat_state)
            for key, value in flat_state.items():
                if _is_array(value):
                    views = self._flat_of(key, None, flat=value).views
                    for s, view in zip(self.state, views):
                        s[key] = view
                else:
                    for s in self.state:
                        s[key] = value

    def _can_fuse(self) -> bool:
        if any(p.grad is None for p in self.params):
            return False
        if len({(backend.device_of(p.data), p.data.dtype) for p in self.params}) != 1:
            return False
        keys = self.state[0].keys()
        plain = {k: v for k, v in self.state[0].items() if not _is_array(v)}
        for s in self.state:
            if s.keys() != keys or any(s[k] != v for k, v in plain.items()):
                return False
        return True

    def _flat_of(self, name, arrays, flat=None):
        """The flat array behind ``arrays`` (packed again when they are not its views).

        With ``flat`` given (a state buffer ``_update`` just created), adopt it and cut
        it into views shaped like the parameters.
        """
        packed = self._flat.get(name)
        if flat is not None:
            if packed is None or packed.flat is not flat:
                packed = self._flat[name] = FlatViews(flat, [p.data.shape for p in self.params])
            return packed
        if packed is None or not packed.holds(arrays):
            xp = xp_of(*arrays)
            flat = xp.concatenate([a.reshape(-1) for a in arrays])
            packed = self._flat[name] = FlatViews(flat, [a.shape for a in arrays])
        return packed.flat

    def _update(self, data, grad, state) -> None:
        """The update rule, in place on the array ``data`` with gradient ``grad``."""
        raise NotImplementedError

    def __repr__(self):
        hyper = ", ".join(f"{k}={v}" for k, v in self.defaults().items())
        return f"{type(self).__name__}({hyper})"

    def defaults(self) -> dict:
        return {"lr": self.lr}

    # ----- saving and resuming ------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything needed to resume: the hyperparameters and each parameter's buffers.

        ``{"type": "Adam", "defaults": {"lr": ..., ...}, "state": [{...}, ...]}``
        with one dict per parameter, in ``params`` order, holding raw arrays
        (momentum buffers, moments; the optimiser's own, not copies) and
        ints (step counts). ``tinyseg.engine`` stores the arrays in the
        checkpoint's ``.npz`` and the rest in its JSON config.
        """
        return {
            "type": type(self).__name__,
            "defaults": dict(self.defaults()),
            "state": [dict(s) for s in self.state],
        }

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore what ``state_dict()`` returned, moving arrays to each parameter's device.

        :raises ValueError: the state is from another optimiser type or has a
            different number of parameters, or a buffer's shape differs.
        """
        kind = state_dict.get("type")
        if kind != type(self).__name__:
            raise ValueError(
                f"optimizer state is for {kind!r}, cannot load it into {type(self).__name__}"
            )
        states = state_dict["state"]
        if len(states) != len(self.params):
            raise ValueError(
                f"optimizer state has {len(states)} parameter entries, this "
                f"{type(self).__name__} has {len(self.params)} parameters"
            )
        restored = []
        for i, (p, entry) in enumerate(zip(self.params, states)):
            own = {}
            for key, value in entry.items():
                # float arrays are buffers (0-d for a 0-d parameter); an int array is a count
                if _is_array(value) and value.dtype.kind == "f":
                    if tuple(value.shape) != tuple(p.data.shape):
                        raise ValueError(
                            f"optimizer state[{i}][{key!r}] has shape {tuple(value.shape)}, "
                            f"parameter {i} has shape {tuple(p.data.shape)}"
                        )
                    value = backend.to_device(value, backend.device_of(p.data))
                    value = value.astype(p.data.dtype, copy=True)
                elif hasattr(value, "item"):  # a 0-d array (a step count read back)
                    value = value.item()
                own[key] = value
            restored.append(own)
        for key, value in state_dict.get("defaults", {}).items():
            if hasattr(self, key):
                setattr(self, key, tuple(value) if isinstance(value, list) else value)
        self.state = restored


class FlatViews:
    """One flat array and its consecutive slices, reshaped: ``views[i]`` is a view of ``flat``."""

    def __init__(self, flat, shapes):
        self.flat, self.views, start = flat, [], 0
        for shape in shapes:
            size = math.prod(shape)
            self.views.append(flat[start:start + size].reshape(shape))
            start += size

    def holds(self, arrays) -> bool:
        """Whether ``arrays`` are exactly these views (the same objects), in order."""
        return len(arrays) == len(self.views) and all(
            a is v for a, v in zip(arrays, self.views))


def _is_array(value) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype")




def _check_betas(betas):
    if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
        raise ValueError(f"betas must be a pair of numbers in [0, 1), got {betas!r}")


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, Nesterov momentum and L2 decay."""

    def __init__(self, params, lr: float, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0, dampening: float = 0.0):
        super().__init__(params, lr)
        check_nonnegative(momentum, "momentum")
        check_nonnegative(weight_decay, "weight_decay")
        check_nonnegative(dampening, "dampening")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError(
                f"nesterov=True needs momentum > 0 and dampening = 0, got momentum={momentum}, "
                f"dampening={dampening}"
            )
        self.momentum, self.nesterov = float(momentum), bool(nesterov)
        self.weight_decay, self.dampening = float(weight_decay), float(dampening)

    def defaults(self):
        return {"lr": self.lr, "momentum": self.momentum, "nesterov": self.nesterov,
                "weight_decay": self.weight_decay, "dampening": self.dampening}

    def _update(self, data, grad, state):
        d = grad + self.weight_decay * data if self.weight_decay else grad
        if self.momentum:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = xp_of(d).array(d)  # a copy; 0-d stays an array
            else:
                buf *= self.momentum
                buf += (1.0 - self.dampening) * d
            d = d + self.momentum * buf if self.nesterov else buf
        data -= self.lr * d


class Adam(Optimizer):
    """Adam with bias correction; ``weight_decay`` adds ``wd * p`` to the gradient (L2)."""

    decoupled = False

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        super().__init__(params, lr)
        _check_betas(betas)
        check_nonnegative(eps, "eps")
        check_nonnegative(weight_decay, "weight_decay")
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps, self.weight_decay = float(eps), float(weight_decay)

    def defaults(self):
        return {"lr": self.lr, "betas": self.betas, "eps": self.eps,
                "weight_decay": self.weight_decay}

    def _update(self, data, grad, state):
        xp = xp_of(data)
        beta1, beta2 = self.betas
        if not state:
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(data)
            state["exp_avg_sq"] = xp.zeros_like(data)
        state["step"] += 1
        t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
        if self.weight_decay:
            if self.decoupled:
                data *= 1.0 - self.lr * self.weight_decay
            else:
                grad = grad + self.weight_decay * data
        m *= beta1
        m += (1.0 - beta1) * grad
        v *= beta2
        v += (1.0 - beta2) * grad * grad
        bias_correction1 = 1.0 - beta1**t
        bias_correction2 = 1.0 - beta2**t
        denom = xp.sqrt(v) / math.sqrt(bias_correction2) + self.eps
        data -= (self.lr / bias_correction1) * m / denom


class AdamW(Adam):
    """Adam with decoupled weight decay: ``p <- p * (1 - lr*wd)`` before the Adam step."""

    decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2):
        super().__init__(params, lr, betas, eps, weight_decay)


# ----- learning-rate schedules -------------------------------------------------------
class LRScheduler:
    """Sets ``optimizer.lr`` from the number of ``step()`` calls (epochs) so far.

    Call ``scheduler.step()`` once per epoch, after that epoch's ``optimizer.step()``
    calls. Subclasses give the closed form ``get_lr()`` of ``self.last_epoch``.
    """

    def __init__(self, optimizer: Optimizer):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be an Optimizer, got {type(optimizer).__name__}")
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.last_epoch = 0
        self._last_lr = optimizer.lr = self.get_lr()

    def get_lr(self) -> float:
        raise NotImplementedError

    def step(self) -> None:
        self.last_epoch += 1
        self._last_lr = self.optimizer.lr = self.get_lr()

    def get_last_lr(self) -> list[float]:
        """The learning rate in use, as a one-element list (torch's format, one per group)."""
        return [self._last_lr]

    def state_dict(self) -> dict:
        """The schedule's position and settings, as plain JSON-able numbers."""
        return {
            key: value
            for key, value in vars(self).items()
            if key != "optimizer" and isinstance(value, (int, float, str, bool))
        }

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore ``state_dict()``'s values (all, or some, e.g. only ``last_epoch``).

        The learning rate is then recomputed from the closed form ``get_lr()``
        and set on the optimiser.
        """
        for key, value in state_dict.items():
            if key != "_last_lr":
                setattr(self, key, value)
        self._last_lr = self.optimizer.lr = self.get_lr()


class StepLR(LRScheduler):
    """``lr = base_lr * gamma ** (epoch // step_size)``."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1):
        if isinstance(step_size, bool) or not isinstance(step_size, int) or step_size < 1:
            raise ValueError(f"step_size must be a positive int, got {step_size!r}")
        check_nonnegative(gamma, "gamma")
        self.step_size, self.gamma = step_size, float(gamma)
        super().__init__(optimizer)

    def get_lr(self):
        return self.base_lr * self.gamma ** (self.last_epoch // self.step_size)


class CosineAnnealingLR(LRScheduler):
    """``lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2``.

    The rate falls from ``base_lr`` at epoch 0 to ``eta_min`` at epoch ``T_max``
    along half a cosine (and, as in torch, rises again after it).
    """

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0):
        if isinstance(T_max, bool) or not isinstance(T_max, int) or T_max < 1:
            raise ValueError(f"T_max must be a positive int, got {T_max!r}")
        check_nonnegative(eta_min, "eta_min")
        self.T_max, self.eta_min = T_max, float(eta_min)
        super().__init__(optimizer)

    def get_lr(self):
        cosine = (1.0 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2.0
        return self.eta_min + (self.base_lr - self.eta_min) * cosine
