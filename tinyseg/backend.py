"""The array backend: NumPy on the CPU, CuPy on the GPU.

Every function in tinyseg is written once, against an *array module* ``xp``
that is either ``numpy`` or ``cupy``. The two share almost all of their API,
so ``xp.zeros``, ``xp.exp`` and ``x @ w`` mean the same thing on both. A
function never decides the backend itself; it asks its input::

    xp = xp_of(x)          # numpy for a numpy array, cupy for a cupy array
    out = xp.zeros_like(x)

This module is the only one in tinyseg that imports CuPy. It also holds:

* device moves, which are always explicit (``to_device``, ``to_numpy``):
  no computation ever copies between host and GPU behind your back;
* ``scatter_add``, the one scatter used outside the convolution code. On the
  GPU it is an atomic add (``cupyx.scatter_add``, the kernel behind the
  ``at`` method of CuPy's ``add`` ufunc, which CuPy has had for years): no sync
  and no temporary. On the CPU, NumPy's unbuffered ``at`` is slow, and
  ``bincount`` with weights does the same job faster; on CuPy, ``bincount``
  would cost two syncs and a float64 array the size of the target;
* the default device, from ``set_default_device`` or the environment
  variable ``TINYSEG_DEVICE`` (``cpu`` or ``gpu``).
"""

from __future__ import annotations

import os

import numpy

try:  # CuPy is optional: `pip install tinyseg[gpu]`.
    import cupy as _cupy
    import cupyx as _cupyx
except Exception:  # ImportError, or a CUDA library missing underneath
    _cupy = _cupyx = None

DEVICES = ("cpu", "gpu")
_default_device: str | None = None


def gpu_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device."""
    if _cupy is None:
        return False
    try:
        return _cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def cupy_module():
    """The cupy module, or a clear error when there is no usable GPU."""
    if not gpu_available():
        raise RuntimeError(
            "device='gpu' needs CuPy and a CUDA device; install with "
            "`pip install tinyseg[gpu]` or use device='cpu'"
        )
    return _cupy


def check_device(device: str) -> str:
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    return device


def set_default_device(device: str) -> None:
    """Choose where new tensors live when no device is named."""
    device = check_device(device)
    if device == "gpu":
        cupy_module()
    global _default_device
    _default_device = device


def get_default_device() -> str:
    """The device set by ``set_default_device``, else ``$TINYSEG_DEVICE``, else cpu."""
    if _default_device is not None:
        return _default_device
    return check_device(os.environ.get("TINYSEG_DEVICE", "cpu"))


def module_for(device: str):
    """The array module of a device name: numpy for 'cpu', cupy for 'gpu'."""
    return cupy_module() if check_device(device) == "gpu" else numpy


def is_cupy_array(a) -> bool:
    return _cupy is not None and isinstance(a, _cupy.ndarray)


def _raw(a):
    """The array inside ``a``: a cupy or numpy array as it is, a Tensor's ``.data`` otherwise.

    The array test comes first: a ``cupy.ndarray`` also has a ``.data``, but
    that is a ``cupy.cuda.MemoryPointer``, not an array.
    """
    if isinstance(a, numpy.ndarray) or is_cupy_array(a):
        return a
    return getattr(a, "data", a)


def xp_of(*arrays):
    """The array module of the arrays given: cupy if any is a cupy array, else numpy.

    Tensors are looked through (their ``.data``), so layers can call
    ``xp_of(tensor)`` too, and ops call ``xp_of(x, weight, ...)`` on every
    array argument: mixing devices is a clear error rather than a silent copy
    or a raw CuPy TypeError.
    """
    found_cpu = found_gpu = False
    for a in arrays:
        a = _raw(a)
        if is_cupy_array(a):
            found_gpu = True
        elif isinstance(a, numpy.ndarray):
            found_cpu = True
    if found_gpu and found_cpu:
        raise ValueError(
            "arrays live on different devices (numpy and cupy); move them with "
            ".to('gpu') or .to('cpu') first"
        )
    return _cupy if found_gpu else numpy


def device_of(a) -> str:
    """'gpu' for a cupy array (or a Tensor holding one), 'cpu' for anything else."""
    return "gpu" if is_cupy_array(_raw(a)) else "cpu"


def to_device(a, device: str):
    """Copy an array to 'cpu' or 'gpu'. The one way data crosses devices."""
    if check_device(device) == "gpu":
        return cupy_module().asarray(a)
    return to_numpy(a)


def to_numpy(a):
    """A numpy array holding the values of ``a`` (a copy from the GPU if needed)."""
    if is_cupy_array(a):
        return a.get()
    return numpy.asarray(a)


def scatter_add(target, index, values):
    """In place: ``target.flat[index[i]] += values[i]`` for every i, repeats summed.

    A plain ``target.flat[index] += values`` would keep only one of several
    writes to the same place. On CuPy an atomic add sums them; on NumPy,
    ``bincount`` with weights does (faster than NumPy's ufunc ``at``).

    Shapes: ``target`` any shape (C-contiguous), ``index`` integer array of flat
    positions into it, ``values`` the same size as ``index``.
    """
    xp = xp_of(target)
    index = index.reshape(-1)
    values = values.reshape(-1)
    if index.shape != values.shape:
        raise ValueError(
            f"scatter_add: index has {index.size} entries but values has {values.size}"
        )
    if index.size == 0:
        return target
    if xp is not numpy:
        if not target.flags.c_contiguous:
            raise ValueError("scatter_add: target must be C-contiguous")
        _cupyx.scatter_add(target.reshape(-1), index, values.astype(target.dtype, copy=False))
        return target
    sums = xp.bincount(index, weights=values.astype(xp.float64), minlength=target.size)
    target += sums.reshape(target.shape).astype(target.dtype, copy=False)
    return target
