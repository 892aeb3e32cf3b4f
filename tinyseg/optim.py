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
"""

from __future__ import annotations

import math

from . import backend
from .autograd import Tensor, no_grad
from .backend import xp_of


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
        for i, p in enumerate(self.params):
            if not isinstance(p, Tensor):
                raise TypeError(f"params[{i}] must be a Tensor, got {type(p).__name__}")
        _check_nonnegative("lr", lr)
        self.lr = float(lr)
        self.state = [{} for _ in self.params]  # per-parameter buffers, in params order

    def zero_grad(self) -> None:
        """Forget the gradients (``p.grad = None``) before the next backward pass."""
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        """Update every parameter that has a gradient, in place."""
        with no_grad():
            for p, state in zip(self.params, self.state):
                if p.grad is not None:
                    self._update(p, p.grad, state)

    def _update(self, p, grad, state) -> None:
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
                if hasattr(value, "shape") and hasattr(value, "dtype") and value.ndim > 0:
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


def _check_nonnegative(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0.0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")


def _check_betas(betas):
    if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
        raise ValueError(f"betas must be a pair of numbers in [0, 1), got {betas!r}")


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, Nesterov momentum and L2 decay."""

    def __init__(self, params, lr: float, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0, dampening: float = 0.0):
        super().__init__(params, lr)
        _check_nonnegative("momentum", momentum)
        _check_nonnegative("weight_decay", weight_decay)
        _check_nonnegative("dampening", dampening)
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

    def _update(self, p, grad, state):
        d = grad + self.weight_decay * p.data if self.weight_decay else grad
        if self.momentum:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = d.copy()
            else:
                buf *= self.momentum
                buf += (1.0 - self.dampening) * d
            d = d + self.momentum * buf if self.nesterov else buf
        p.data -= self.lr * d


class Adam(Optimizer):
    """Adam with bias correction; ``weight_decay`` adds ``wd * p`` to the gradient (L2)."""

    decoupled = False

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        super().__init__(params, lr)
        _check_betas(betas)
        _check_nonnegative("eps", eps)
        _check_nonnegative("weight_decay", weight_decay)
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps, self.weight_decay = float(eps), float(weight_decay)

    def defaults(self):
        return {"lr": self.lr, "betas": self.betas, "eps": self.eps,
                "weight_decay": self.weight_decay}

    def _update(self, p, grad, state):
        xp = xp_of(p.data)
        beta1, beta2 = self.betas
        if not state:
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(p.data)
            state["exp_avg_sq"] = xp.zeros_like(p.data)
        state["step"] += 1
        t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
        if self.weight_decay:
            if self.decoupled:
                p.data *= 1.0 - self.lr * self.weight_decay
            else:
                grad = grad + self.weight_decay * p.data
        m *= beta1
        m += (1.0 - beta1) * grad
        v *= beta2
        v += (1.0 - beta2) * grad * grad
        bias_correction1 = 1.0 - beta1**t
        bias_correction2 = 1.0 - beta2**t
        denom = xp.sqrt(v) / math.sqrt(bias_correction2) + self.eps
        p.data -= (self.lr / bias_correction1) * m / denom


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
        _check_nonnegative("gamma", gamma)
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
        _check_nonnegative("eta_min", eta_min)
        self.T_max, self.eta_min = T_max, float(eta_min)
        super().__init__(optimizer)

    def get_lr(self):
        cosine = (1.0 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2.0
        return self.eta_min + (self.base_lr - self.eta_min) * cosine
