"""Module and Parameter: how a network keeps track of its weights.

A network is a tree of ``Module`` objects. Each module holds three kinds of
state, each in its own ordered dictionary:

* ``_parameters``: the ``Parameter`` tensors that training changes (weights, biases);
* ``_buffers``: raw arrays that are state but not trained (BatchNorm's running
  mean and variance);
* ``_modules``: child modules.

You never fill these dictionaries by hand. ``Module.__setattr__`` looks at the
value you assign and files it: ``self.weight = Parameter(...)`` registers a
parameter, ``self.conv = Conv2d(...)`` a child, and ``register_buffer`` a
buffer. Everything else (``parameters()``, ``state_dict()``, ``to(device)``,
``train()``) is then a walk over the tree, naming each entry by its dotted
path: ``"block.0.conv.weight"``.

``state_dict()`` maps those dotted names to raw arrays (parameters, then
buffers, module by module). ``load_state_dict`` copies a state dict back in
place and says exactly which key is missing, unexpected, or of the wrong shape.
"""

from __future__ import annotations

from collections import OrderedDict, namedtuple

from .. import backend
from ..autograd import Tensor
from ..ops.norm import check_running_var

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class Parameter(Tensor):
    """A Tensor that a Module registers as trainable (``requires_grad=True``).

    :param data: an array or a Tensor; its array is used as is (no copy).
    :param requires_grad: ``False`` freezes the parameter.
    """

    def __init__(self, data, requires_grad: bool = True):
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


def _is_array(value) -> bool:
    return backend.is_cupy_array(value) or hasattr(value, "__array_interface__")


class Module:
    """Base class of every layer and model. Subclasses define ``forward``.

    Example::

        class Head(Module):
            def __init__(self):
                super().__init__()          # must come before any assignment
                self.conv = Conv2d(8, 2, 1)  # registered as a child module

            def forward(self, x):
                return self.conv(x)
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # ----- registration ---------------------------------------------------------
    def _registries(self):
        if "_parameters" not in self.__dict__:
            raise AttributeError(
                f"{type(self).__name__}: call super().__init__() before assigning attributes"
            )
        return self._parameters, self._buffers, self._modules

    def __setattr__(self, name, value):
        if isinstance(value, (Parameter, Module)):
            params, buffers, modules = self._registries()
            self.__dict__.pop(name, None)
            for registry in (params, buffers, modules):
                registry.pop(name, None)
            (params if isinstance(value, Parameter) else modules)[name] = value
            return
        params = self.__dict__.get("_parameters", {})
        buffers = self.__dict__.get("_buffers", {})
        modules = self.__dict__.get("_modules", {})
        if name in params:
            if value is not None:
                raise TypeError(
                    f"cannot assign {type(value).__name__} to parameter '{name}': "
                    "expected a Parameter or None"
                )
            params[name] = None
        elif name in buffers:
            buffers[name] = self._as_buffer(name, value)
        elif name in modules:
            if value is not None:
                raise TypeError(
                    f"cannot assign {type(value).__name__} to child module '{name}': "
                    "expected a Module or None"
                )
            modules[name] = None
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        # Called only when normal lookup fails: look in the registries.
        for registry in ("_parameters", "_buffers", "_modules"):
            entries = self.__dict__.get(registry)
            if entries is not None and name in entries:
                return entries[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        for registry in ("_parameters", "_buffers", "_modules"):
            entries = self.__dict__.get(registry)
            if entries is not None and name in entries:
                del entries[name]
                return
        object.__delattr__(self, name)

    @staticmethod
    def _as_buffer(name, value):
        value = value.data if isinstance(value, Tensor) else value
        if value is not None and not _is_array(value):
            raise TypeError(f"buffer '{name}' must be an array or None, got {type(value).__name__}")
        return value

    @staticmethod
    def _check_name(name, kind):
        if not isinstance(name, str) or not name or "." in name:
            raise ValueError(f"{kind} name must be a non-empty string without '.', got {name!r}")

    def register_buffer(self, name: str, array) -> None:
        """Keep ``array`` (a raw array, or None) as state that is saved but not trained."""
        self._check_name(name, "buffer")
        params, buffers, modules = self._registries()
        if name in params or name in modules or name in self.__dict__:
            raise KeyError(f"attribute '{name}' already exists")
        buffers[name] = self._as_buffer(name, array)

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Register ``param`` (or None, e.g. a missing bias) under ``name``."""
        self._check_name(name, "parameter")
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"parameter '{name}' must be a Parameter or None")
        params, _, _ = self._registries()
        self.__dict__.pop(name, None)
        params[name] = param

    def add_module(self, name: str, module: Module | None) -> None:
        """Register ``module`` as a child under ``name``."""
        self._check_name(name, "module")
        if module is not None and not isinstance(module, Module):
            raise TypeError(
                f"module '{name}' must be a Module or None, got {type(module).__name__}"
            )
        _, _, modules = self._registries()
        self.__dict__.pop(name, None)
        modules[name] = module

    # ----- walking the tree -----------------------------------------------------
    def named_modules(self, prefix: str = ""):
        """Yield ``(dotted_name, module)`` for this module and every descendant, once each."""
        seen = set()
        stack = [(prefix, self)]
        while stack:
            name, module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            yield name, module
            children = [
                (f"{name}.{child_name}" if name else child_name, child)
                for child_name, child in module._modules.items()
                if child is not None
            ]
            stack.extend(reversed(children))  # so that children come out in order

    def modules(self):
        for _, module in self.named_modules():
            yield module

    def named_children(self):
        for name, module in self._modules.items():
            if module is not None:
                yield name, module

    def children(self):
        for _, module in self.named_children():
            yield module

    def _named_members(self, registry, prefix, recurse):
        seen = set()
        modules = self.named_modules(prefix) if recurse else [(prefix, self)]
        for module_name, module in modules:
            for name, value in getattr(module, registry).items():
                if value is None or id(value) in seen:
                    continue
                seen.add(id(value))  # a shared parameter is listed once
                yield (f"{module_name}.{name}" if module_name else name), value

    def named_parameters(self, prefix: str = "", recurse: bool = True):
        """Yield ``(dotted_name, parameter)``, e.g. ``("features.0.weight", p)``."""
        return self._named_members("_parameters", prefix, recurse)

    def parameters(self, recurse: bool = True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "", recurse: bool = True):
        """Yield ``(dotted_name, array)`` for every buffer."""
        return self._named_members("_buffers", prefix, recurse)

    def buffers(self, recurse: bool = True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def apply(self, fn) -> Module:
        """Call ``fn(module)`` on every descendant and then on self (as torch does)."""
        for module in self.children():
            module.apply(fn)
        fn(self)
        return self

    # ----- modes, devices, gradients -----------------------------------------------
    def train(self, mode: bool = True) -> Module:
        """Set training mode (dropout active, BatchNorm uses batch statistics) everywhere below."""
        for module in self.modules():
            object.__setattr__(module, "training", bool(mode))
        return self

    def eval(self) -> Module:
        """Evaluation mode: ``train(False)``."""
        return self.train(False)

    def zero_grad(self) -> None:
        """Forget the gradients of all parameters (``p.grad = None``)."""
        for p in self.parameters():
            p.grad = None

    def to(self, device: str | None = None, dtype=None) -> Module:
        """Move every parameter (and its gradient) and buffer to ``device``, in place.

        The Parameter objects stay the same objects, so an optimiser built
        before the move keeps working. ``dtype`` (e.g. ``"float64"``) casts the
        floating-point parameters and buffers as well. Returns ``self``.
        """
        if device is not None:
            backend.check_device(device)

        def convert(array):
            if array is None:
                return None
            if device is not None and backend.device_of(array) != device:
                array = backend.to_device(array, device)
            if dtype is not None and array.dtype.kind == "f":
                array = array.astype(dtype, copy=False)
            return array

        for module in self.modules():
            for p in module._parameters.values():
                if p is not None:
                    p.data, p.grad = convert(p.data), convert(p.grad)
            for name, b in module._buffers.items():
                module._buffers[name] = convert(b)
        return self

    # ----- saving and loading -------------------------------------------------------
    def state_dict(self) -> OrderedDict:
        """Dotted name -> raw array, parameters then buffers, module by module.

        The arrays are the module's own (no copy), as in torch: copy them, or
        save them with ``tinyseg.checkpoint.save_checkpoint``, to keep a snapshot.
        """
        state = OrderedDict()
        for module_name, module in self.named_modules():
            for registry in (module._parameters, module._buffers):
                for name, value in registry.items():
                    if value is not None:
                        key = f"{module_name}.{name}" if module_name else name
                        state[key] = value.data if isinstance(value, Parameter) else value
        return state

    def _state_targets(self):
        """Dotted name -> (registry, local name), for every entry state_dict() lists."""
        targets = OrderedDict()
        for module_name, module in self.named_modules():
            for registry in (module._parameters, module._buffers):
                for name, value in registry.items():
                    if value is not None:
                        key = f"{module_name}.{name}" if module_name else name
                        targets[key] = (registry, name)
        return targets

    def load_state_dict(self, state_dict, strict: bool = True) -> IncompatibleKeys:
        """Copy the arrays of ``state_dict`` into this module's parameters and buffers, in place.

        Values may be numpy or cupy arrays or Tensors; each is moved to the
        device of the entry it replaces and cast to its dtype.

        :param strict: when True, a key the module has but ``state_dict`` lacks
            (missing) or the reverse (unexpected) raises ValueError naming it.
            A wrong shape always raises, naming the key and both shapes.
        :returns: ``(missing_keys, unexpected_keys)``.
        """
        if not hasattr(state_dict, "items"):
            raise TypeError(
                f"state_dict must be a mapping of names to arrays, got {type(state_dict).__name__}"
            )
        targets = self._state_targets()
        missing = [k for k in targets if k not in state_dict]
        unexpected = [k for k in state_dict if k not in targets]
        if strict and (missing or unexpected):
            parts = []
            if missing:
                parts.append("missing key(s) " + ", ".join(repr(k) for k in missing))
            if unexpected:
                parts.append("unexpected key(s) " + ", ".join(repr(k) for k in unexpected))
            raise ValueError(
                f"load_state_dict into {type(self).__name__}: " + "; ".join(parts)
            )
        # Check every shape before changing anything, so a failed load leaves the model intact.
        updates = []
        for key, (registry, name) in targets.items():
            if key not in state_dict:
                continue
            value = state_dict[key]
            value = value.data if isinstance(value, Tensor) else value
            if not _is_array(value):
                raise TypeError(f"state_dict[{key!r}] must be an array, got {type(value).__name__}")
            entry = registry[name]
            own = entry.data if isinstance(entry, Parameter) else entry
            if tuple(value.shape) != tuple(own.shape):
                raise ValueError(
                    f"size mismatch for {key!r}: the state dict has shape {tuple(value.shape)}, "
                    f"the model has shape {tuple(own.shape)}"
                )
            if name == "running_var":  # checked here, once, not in every eval forward
                check_running_var(value, f"state_dict[{key!r}]")
            updates.append((own, value))
        for own, value in updates:
            own[...] = backend.to_device(value, backend.device_of(own))
        return IncompatibleKeys(missing, unexpected)

    # ----- calling and printing ----------------------------------------------------
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def extra_repr(self) -> str:
        """The text between the parentheses of this module's one-line repr."""
        return ""

    def __repr__(self):
        name = type(self).__name__
        extra = self.extra_repr()
        children = list(self.named_children())
        if not children:
            return f"{name}({extra})"
        lines = [extra] if extra else []
        for child_name, child in children:
            text = repr(child).replace("\n", "\n  ")
            lines.append(f"({child_name}): {text}")
        return name + "(\n  " + "\n  ".join(lines) + "\n)"


class Sequential(Module):
    """Modules applied one after another: ``Sequential(conv, bn, relu)(x)``.

    Children are named "0", "1", ... unless a dict of names is given.
    """

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], dict):
            for name, module in modules[0].items():
                self.add_module(name, module)
        else:
            for i, module in enumerate(modules):
                self.add_module(str(i), module)

    def forward(self, x):
        for module in self._modules.values():
            x = module(x)
        return x

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, index):
        items = list(self._modules.items())
        if isinstance(index, slice):
            return Sequential(OrderedDict(items[index]))
        return items[index][1]

    def append(self, module: Module) -> Sequential:
        self.add_module(str(len(self)), module)
        return self


class ModuleList(Module):
    """A list of modules whose parameters are registered (a plain list's would be missed)."""

    def __init__(self, modules=None):
        super().__init__()
        for module in modules or []:
            self.append(module)

    def append(self, module: Module) -> ModuleList:
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules) -> ModuleList:
        for module in modules:
            self.append(module)
        return self

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, index):
        values = list(self._modules.values())
        if isinstance(index, slice):
            return ModuleList(values[index])
        return values[index]

    def __setitem__(self, index, module):
        key = list(self._modules)[index]
        self.add_module(key, module)
