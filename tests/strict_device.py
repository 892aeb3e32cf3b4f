"""A strict simulated CuPy device, for tests on machines without a GPU.

This is a test device, not a backend for users. ``install()`` puts a module
named ``cupy`` (and ``cupyx``) into ``sys.modules`` before tinyseg is
imported; ``tinyseg.backend`` then takes it for CuPy. Its arrays hold host
(NumPy) arrays inside, but they obey CuPy's rules, and are stricter where
CuPy would silently copy, so code that mixes host and device arrays breaks
here as it would on a GPU (the idea of JAX's ``transfer_guard``, for CuPy):

* ``numpy.asarray(dev)`` and every implicit conversion to a host array raise
  TypeError; there is no ``__array_interface__``, no buffer, no ``__index__``,
  and ``.data`` is a pointer object, not an array;
* operators and ufuncs take device arrays and Python or NumPy scalars only: a
  ``numpy.ndarray`` operand (even 0-d) or a list raises TypeError;
* NumPy functions called on device arrays dispatch here through
  ``__array_function__`` and ``__array_ufunc__``, with the same checks, and a
  NumPy function that CuPy lacks raises TypeError;
* reductions and integer indexing give 0-d device arrays, never NumPy scalars;
* ``dev[index] = host_array`` raises, and so does an index held in a host
  array or a list;
* the module exports only names that CuPy 14's namespace has (``CUPY_NAMES``),
  and ``random.Generator`` has only CuPy's methods. Its random streams differ
  from NumPy's for the same seed, as CuPy's do.

It also counts what a GPU run would pay for: kernel launches, device syncs
(``.item()``, ``float()``, ``bool()``, ``int()``, ``.get()``, ``nonzero``,
boolean-mask indexing, printing...) and host-to-device / device-to-host
copies, each with its call site (the innermost frame inside ``tinyseg/``,
else the caller). ``counting()`` measures a block::

    with strict_device.counting() as c:
        model(x).sum().backward()
    c.syncs, c.launches, c.h2d, c.d2h, c.top("syncs")

What it cannot catch: numerics (it computes with NumPy), memory use, real
timings, launch configuration, and CuPy's own bugs. A view counts as no
launch; every other call counts as one, so launch counts are an estimate
(CuPy fuses nothing unless asked).
"""

from __future__ import annotations

import collections
import contextlib
import os
import sys
import types

import numpy as _np

# ----- the names CuPy 14.2 exports (read off `dir(cupy)`; those NumPy also has) -----
CUPY_NAMES = frozenset("""
abs absolute acos acosh add all allclose amax amin angle any append apply_along_axis
apply_over_axes arange arccos arccosh arcsin arcsinh arctan arctan2 arctanh argmax argmin
argpartition argsort argwhere around array array_equal array_equiv array_repr array_split
array_str asanyarray asarray asarray_chkfinite ascontiguousarray asfortranarray asin asinh astype
atan atan2 atanh atleast_1d atleast_2d atleast_3d average bartlett binary_repr bincount
bitwise_and bitwise_count bitwise_invert bitwise_left_shift bitwise_not bitwise_or
bitwise_right_shift bitwise_xor blackman bool bool_ broadcast_arrays broadcast_shapes
broadcast_to byte can_cast cbrt cdouble ceil choose clip column_stack common_type complex128
complex64 complexfloating compress concat concatenate conj conjugate convolve copy copysign
copyto corrcoef correlate cos cosh count_nonzero cov cross csingle cumprod cumsum
cumulative_prod cumulative_sum deg2rad degrees delete diag diag_indices diag_indices_from
diagflat diagonal diff digitize divide divmod dot double dsplit dstack dtype e ediff1d einsum
empty empty_like equal euler_gamma exp exp2 expand_dims expm1 extract eye fabs fill_diagonal
finfo fix flatnonzero flip fliplr flipud float16 float32 float64 float_power floating floor
floor_divide fmax fmin fmod frexp full full_like gcd generic gradient greater greater_equal
half hamming hanning heaviside histogram histogram2d histogramdd hsplit hstack hypot i0
identity iinfo imag indices inexact inf inner int16 int32 int64 int8 int_ intc integer interp
intersect1d intp invert isclose iscomplex iscomplexobj isdtype isfinite isfortran isin isinf
isnan isneginf isposinf isreal isrealobj isscalar issubdtype iterable ix_ kaiser kron lcm
ldexp left_shift less less_equal lexsort linspace log log10 log1p log2 logaddexp logaddexp2
logical_and logical_not logical_or logical_xor logspace long longlong mask_indices matmul
matrix_transpose max maximum may_share_memory mean median meshgrid min min_scalar_type minimum
mintypecode mod modf moveaxis multiply nan nan_to_num nanargmax nanargmin nancumprod nancumsum
nanmax nanmean nanmedian nanmin nanprod nanstd nansum nanvar ndarray ndim negative newaxis
nextafter nonzero not_equal number ones ones_like outer packbits pad partition percentile
permute_dims pi piecewise place poly polyadd polyfit polymul polysub polyval positive pow power
prod promote_types ptp put put_along_axis putmask quantile rad2deg radians ravel
ravel_multi_index real real_if_close reciprocal remainder repeat require reshape resize
result_type right_shift rint roll rollaxis roots rot90 round row_stack searchsorted select
setdiff1d setxor1d shape shares_memory short sign signbit signedinteger sin sinc single sinh
size sort sort_complex split sqrt square squeeze stack std subtract sum swapaxes take
take_along_axis tan tanh tensordot tile trace transpose trapezoid tri tril tril_indices
tril_indices_from trim_zeros triu triu_indices triu_indices_from true_divide trunc typename
ubyte ufunc uint uint16 uint32 uint64 uint8 uintc uintp ulong ulonglong union1d unique
unique_all unique_counts unique_inverse unique_values unpackbits unravel_index unsignedinteger
unwrap ushort vander var vdot vsplit vstack where zeros zeros_like
""".split())

# cupy.random.Generator's public methods in CuPy 14.2 (no normal, choice or permutation).
GENERATOR_METHODS = frozenset("""
beta binomial chisquare dirichlet exponential f gamma geometric hypergeometric integers
logseries poisson power random standard_exponential standard_gamma standard_normal uniform
""".split())

# Module-level cupy.random functions (the legacy RandomState API) that we provide.
RANDOM_FUNCTIONS = frozenset("""
rand randn random random_sample randint normal uniform standard_normal permutation shuffle
choice seed
""".split())

# Pure metadata: no array is made, nothing runs on the device.
_METADATA = frozenset("""
shape ndim size isscalar result_type promote_types can_cast issubdtype isdtype min_scalar_type
common_type mintypecode iterable broadcast_shapes typename iscomplexobj isrealobj isfortran
may_share_memory shares_memory
""".split())

# Functions whose result is a view of their input: no kernel runs.
_VIEWS = frozenset("""
reshape transpose swapaxes squeeze expand_dims broadcast_to broadcast_arrays moveaxis rollaxis
permute_dims matrix_transpose atleast_1d atleast_2d atleast_3d diagonal real imag split
array_split hsplit vsplit dsplit flip fliplr flipud
""".split())

# Functions that must wait for the device to learn an output size, and how many times.
_SYNCING = {
    "nonzero": 1, "flatnonzero": 1, "argwhere": 1, "extract": 1, "compress": 1,
    "unique": 1, "unique_all": 1, "unique_counts": 1, "unique_inverse": 1, "unique_values": 1,
    "bincount": 2, "intersect1d": 1, "setdiff1d": 1, "union1d": 1, "setxor1d": 1,
    "trim_zeros": 1, "histogram": 1, "array_repr": 1, "array_str": 1, "allclose": 1,
    "array_equal": 1, "array_equiv": 1,
}

_CREATION_FROM_HOST = frozenset({"array", "asarray", "asanyarray", "ascontiguousarray",
                                 "asfortranarray", "require", "asarray_chkfinite"})

_SCALARS = (bool, int, float, complex, _np.generic)
_THIS_FILE = os.path.abspath(__file__)
_PACKAGE_MARK = os.sep + "tinyseg" + os.sep


# ----- counters -------------------------------------------------------------------------

class Counts:
    """Launches, syncs and copies, with the call site of each (see ``top``)."""

    KINDS = ("launches", "syncs", "h2d", "d2h")

    def __init__(self):
        self.totals = dict.fromkeys(self.KINDS, 0)
        self.sites = {k: collections.Counter() for k in self.KINDS}

    def add(self, kind, n, site):
        self.totals[kind] += n
        self.sites[kind][site] += n

    launches = property(lambda self: self.totals["launches"])
    syncs = property(lambda self: self.totals["syncs"])
    h2d = property(lambda self: self.totals["h2d"])
    d2h = property(lambda self: self.totals["d2h"])

    def top(self, kind="syncs", n=10):
        """The ``n`` call sites with the most events of ``kind``."""
        return self.sites[kind].most_common(n)

    def __repr__(self):
        return "Counts(" + ", ".join(f"{k}={v}" for k, v in self.totals.items()) + ")"


_active: list[Counts] = []       # nested counting() blocks, all credited
_sync_allowed = [True]           # cupyx.allow_synchronize


def _call_site():
    """The innermost frame inside the tinyseg package, else the first one outside this file."""
    frame = sys._getframe(2)
    fallback = None
    while frame is not None:
        name = frame.f_code.co_filename
        if name != _THIS_FILE:
            if _PACKAGE_MARK in name:
                return f"tinyseg/{name.rsplit(_PACKAGE_MARK, 1)[1]}:{frame.f_lineno}"
            if fallback is None:
                fallback = f"{os.path.basename(name)}:{frame.f_lineno}"
        frame = frame.f_back
    return fallback or "?"


def _count(kind, n=1):
    if kind == "syncs" and not _sync_allowed[-1]:
        raise cupyx.DeviceSynchronized(
            f"device synchronisation inside cupyx.allow_synchronize(False), at {_call_site()}"
        )
    if not _active or n == 0:
        return
    site = _call_site()
    for c in _active:
        c.add(kind, n, site)


@contextlib.contextmanager
def counting():
    """Count launches, syncs and copies inside the block (nested blocks each see all)."""
    c = Counts()
    _active.append(c)
    try:
        yield c
    finally:
        _active.remove(c)


# ----- unwrapping and wrapping ------------------------------------------------------------

def _host_error(what, where):
    return TypeError(
        f"strict device: {where} got a host {what}; CuPy does not mix host and device "
        "arrays. Move it explicitly (xp.asarray / backend.to_device) first"
    )


def _operand(x, where):
    """A ufunc or operator operand: a device array or a scalar."""
    if isinstance(x, ndarray):
        return x._a
    if isinstance(x, _SCALARS):
        return x
    if isinstance(x, _np.ndarray):
        raise _host_error("numpy.ndarray", where)
    if isinstance(x, (list, tuple)):
        raise _host_error(type(x).__name__, where)
    raise TypeError(f"strict device: {where}: unsupported operand type {type(x).__name__}")


def _unwrap(x, where):
    """Any argument of a device function: device arrays unwrapped, host arrays refused."""
    if isinstance(x, ndarray):
        return x._a
    if isinstance(x, _np.ndarray):
        raise _host_error("numpy.ndarray", where)
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap(v, where) for v in x)
    if isinstance(x, dict):
        return {k: _unwrap(v, where) for k, v in x.items()}
    if type(x).__name__ == "Tensor":
        raise TypeError(f"strict device: {where} got a tinyseg Tensor; pass tensor.data")
    return x


def _wrap(x):
    if isinstance(x, _np.ndarray):
        out = object.__new__(ndarray)
        out._a = x
        return out
    if isinstance(x, _np.generic):
        return _wrap(_np.asarray(x))
    if isinstance(x, tuple):
        return tuple(_wrap(v) for v in x)
    if isinstance(x, list):
        return [_wrap(v) for v in x]
    return x


def _index(key, where):
    """An index: ints, slices, None, Ellipsis and device arrays; host arrays and lists refused."""
    parts = key if isinstance(key, tuple) else (key,)
    out, mask = [], False
    for k in parts:
        if isinstance(k, ndarray):
            mask |= k._a.dtype == _np.bool_
            out.append(k._a)
        elif isinstance(k, (_np.ndarray, list)):
            raise _host_error(f"{type(k).__name__} index", where)
        elif isinstance(k, slice):
            for b in (k.start, k.stop, k.step):
                if isinstance(b, ndarray):
                    raise TypeError(f"strict device: {where}: a device array as a slice bound "
                                    "needs its value on the host (call int() on purpose)")
            out.append(k)
        else:
            out.append(k)
    return (tuple(out) if isinstance(key, tuple) else out[0]), mask


def _is_view_key(key):
    parts = key if isinstance(key, tuple) else (key,)
    return all(not isinstance(k, _np.ndarray) for k in parts)


# ----- the array ----------------------------------------------------------------------------

class MemoryPointer:
    """What ``ndarray.data`` is on CuPy: an address, not an array."""

    def __init__(self, ptr):
        self.ptr = ptr

    def __repr__(self):
        return f"<strict_device.MemoryPointer {self.ptr:#x}>"


class Device:
    def __init__(self, device=0):
        self.id = int(device)

    def synchronize(self):
        _count("syncs")

    def use(self):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __repr__(self):
        return f"<CUDA Device {self.id} (strict simulation)>"


def _binary(ufunc, reflected=False, inplace=False):
    name = ufunc.__name__

    def op(self, other):
        if not isinstance(other, (ndarray, _np.ndarray, list, tuple) + _SCALARS):
            priority = getattr(other, "__array_priority__", 0)
            if priority > self.__array_priority__ or not inplace:
                return NotImplemented
        if inplace:
            ufunc(self._a, _operand(other, f"ndarray.__i{name}__"), out=self._a)
            _count("launches")
            return self
        a, b = (other, self) if reflected else (self, other)
        return _apply(ufunc, "__call__", (a, b), {}, f"ndarray operator {name}")
    return op


def _unary(ufunc):
    def op(self):
        return _apply(ufunc, "__call__", (self,), {}, f"ndarray operator {ufunc.__name__}")
    return op


class ndarray:
    """A CuPy-like device array over a host array ``_a`` that nothing outside may see."""

    __slots__ = ("_a",)
    __array_priority__ = 100
    __hash__ = None

    def __init__(self, shape, dtype=float, memptr=None, strides=None, order="C"):
        self._a = _np.empty(shape, dtype=dtype, order=order)

    # metadata
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    strides = property(lambda self: self._a.strides)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    flags = property(lambda self: self._a.flags)
    data = property(lambda self: MemoryPointer(self._a.ctypes.data))
    device = property(lambda self: Device(0))
    base = property(lambda self: None if self._a.base is None else _wrap(self._a.base))
    T = property(lambda self: _wrap(self._a.T))
    mT = property(lambda self: _wrap(_np.swapaxes(self._a, -1, -2)))
    real = property(lambda self: _wrap(self._a.real))
    imag = property(lambda self: _wrap(self._a.imag))

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        for i in range(len(self._a)):
            yield _wrap(self._a[i])

    # host conversions: the syncs
    def __array__(self, *args, **kwargs):
        raise TypeError(
            "strict device: implicit conversion of a device array to a host array; "
            "use .get() or cupy.asnumpy() (backend.to_numpy) on purpose"
        )

    def _scalar(self, cast):
        _count("syncs")
        return cast(self._a)

    def __bool__(self):
        return self._scalar(bool)

    def __float__(self):
        return self._scalar(float)

    def __int__(self):
        return self._scalar(int)

    def __complex__(self):
        return self._scalar(complex)

    def item(self):
        _count("syncs")
        return self._a.item()

    def tolist(self):
        _count("syncs")
        _count("d2h")
        return self._a.tolist()

    def get(self, stream=None, order="C", out=None):
        _count("syncs")
        _count("d2h")
        return _np.array(self._a, copy=True)

    def set(self, arr, stream=None):
        if not isinstance(arr, _np.ndarray):
            raise TypeError("ndarray.set takes a numpy.ndarray")
        _count("h2d")
        self._a[...] = arr

    def __repr__(self):
        _count("syncs")
        _count("d2h")
        return repr(self._a)

    def __str__(self):
        _count("syncs")
        _count("d2h")
        return str(self._a)

    def __format__(self, spec):
        _count("syncs")
        return format(self._a.item() if self._a.ndim == 0 else self._a, spec)

    def __reduce__(self):
        raise TypeError("strict device: pickling a device array copies it to the host; "
                        "call .get() first")

    def __copy__(self):
        return self.copy()

    def __deepcopy__(self, memo):
        return self.copy()

    # numpy protocols
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if not all(isinstance(x, (ndarray, _np.ndarray, list, tuple) + _SCALARS)
                   for x in inputs):
            return NotImplemented
        return _apply(ufunc, method, inputs, kwargs, f"numpy.{ufunc.__name__}")

    def __array_function__(self, func, types_, args, kwargs):
        name = func.__name__
        target = getattr(_this_module(), name, None) if name in CUPY_NAMES else None
        if target is None:
            raise TypeError(
                f"strict device: numpy.{name} was called on a device array and CuPy has "
                f"no twin for it"
            )
        return target(*args, **kwargs)

    # indexing
    def __getitem__(self, key):
        ukey, mask = _index(key, "ndarray.__getitem__")
        if mask:
            _count("syncs")  # the output size depends on the mask
        if not _is_view_key(ukey):
            _count("launches")
        return _wrap(self._a[ukey])

    def __setitem__(self, key, value):
        ukey, _ = _index(key, "ndarray.__setitem__")
        self._a[ukey] = _operand(value, "ndarray.__setitem__ value")
        _count("launches")

    @property
    def flat(self):
        return _FlatIter(self)

    # methods
    def astype(self, dtype, order="K", casting=None, subok=None, copy=True):
        if not copy and _np.dtype(dtype) == self._a.dtype:
            return self
        _count("launches")
        return _wrap(self._a.astype(dtype, order=order, copy=True))

    def copy(self, order="C"):
        _count("launches")
        return _wrap(self._a.copy(order=order))

    def fill(self, value):
        _count("launches")
        self._a.fill(_operand(value, "ndarray.fill"))

    def view(self, dtype=None):
        return _wrap(self._a.view() if dtype is None else self._a.view(dtype))

    def sort(self, axis=-1, kind=None):
        _count("launches")
        self._a.sort(axis=axis)

    def nonzero(self):
        _count("syncs")
        _count("launches")
        return _wrap(self._a.nonzero())

    def __dlpack__(self, *args, **kwargs):
        raise TypeError("strict device: no DLPack export from the simulated device")


def _method(name, view=False):
    def method(self, *args, **kwargs):
        where = f"ndarray.{name}"
        out = getattr(self._a, name)(*_unwrap(args, where), **_unwrap(kwargs, where))
        if not view:
            _count("launches")
        return _wrap(out)
    method.__name__ = name
    return method


for _name in ("all any argmax argmin argpartition argsort clip conj conjugate cumprod cumsum dot "
              "max mean min partition prod ptp put repeat round searchsorted std sum take trace "
              "var choose compress").split():
    setattr(ndarray, _name, _method(_name))
for _name in "reshape transpose swapaxes squeeze diagonal".split():
    setattr(ndarray, _name, _method(_name, view=True))
ndarray.ravel = _method("ravel")
ndarray.flatten = _method("flatten")

for _op, _uf in [("add", _np.add), ("sub", _np.subtract), ("mul", _np.multiply),
                 ("truediv", _np.true_divide), ("floordiv", _np.floor_divide),
                 ("mod", _np.remainder), ("pow", _np.power), ("matmul", _np.matmul),
                 ("and", _np.bitwise_and), ("or", _np.bitwise_or), ("xor", _np.bitwise_xor),
                 ("lshift", _np.left_shift), ("rshift", _np.right_shift)]:
    setattr(ndarray, f"__{_op}__", _binary(_uf))
    setattr(ndarray, f"__r{_op}__", _binary(_uf, reflected=True))
    if _op != "matmul":
        setattr(ndarray, f"__i{_op}__", _binary(_uf, inplace=True))
for _op, _uf in [("eq", _np.equal), ("ne", _np.not_equal), ("lt", _np.less),
                 ("le", _np.less_equal), ("gt", _np.greater), ("ge", _np.greater_equal)]:
    setattr(ndarray, f"__{_op}__", _binary(_uf))
for _op, _uf in [("neg", _np.negative), ("pos", _np.positive), ("abs", _np.absolute),
                 ("invert", _np.invert)]:
    setattr(ndarray, f"__{_op}__", _unary(_uf))


class _FlatIter:
    """``a.flat``: indexing of the flattened array (ints, slices and device arrays)."""

    def __init__(self, base):
        self._base = base

    def __getitem__(self, key):
        ukey, _ = _index(key, "ndarray.flat[...]")
        _count("launches")
        return _wrap(_np.asarray(self._base._a.flat[ukey]))

    def __setitem__(self, key, value):
        ukey, _ = _index(key, "ndarray.flat[...] =")
        self._base._a.flat[ukey] = _operand(value, "ndarray.flat[...] = value")
        _count("launches")


# ----- ufuncs and functions --------------------------------------------------------------

def _apply(ufunc, method, inputs, kwargs, where):
    args = tuple(_operand(x, where) for x in inputs)
    out = kwargs.get("out")
    if out is not None:
        outs = out if isinstance(out, tuple) else (out,)
        kwargs = dict(kwargs, out=tuple(_operand(o, where) for o in outs))
    kwargs = {k: (_unwrap(v, where) if k != "out" else v) for k, v in kwargs.items()}
    result = getattr(ufunc, method)(*args, **kwargs) if method != "__call__" else ufunc(
        *args, **kwargs)
    _count("launches")
    if method == "at":
        return None
    if out is not None:
        return out if isinstance(out, tuple) and len(out) > 1 else outs[0]
    return _wrap(result)


class ufunc:
    """A device ufunc: call it, or use ``.at``, ``.reduce``, ``.accumulate``, ``.outer``."""

    def __init__(self, np_ufunc):
        self._u = np_ufunc
        self.__name__ = self.name = np_ufunc.__name__
        self.nin, self.nout, self.nargs = np_ufunc.nin, np_ufunc.nout, np_ufunc.nargs

    def __call__(self, *inputs, **kwargs):
        return _apply(self._u, "__call__", inputs, kwargs, f"cupy.{self.name}")

    def at(self, a, indices, b=None):
        if not isinstance(a, ndarray):
            raise TypeError(f"cupy.{self.name}.at: the target must be a device array")
        ind = _unwrap(indices, f"cupy.{self.name}.at indices")
        args = (ind,) if b is None else (ind, _operand(b, f"cupy.{self.name}.at values"))
        self._u.at(a._a, *args)
        _count("launches")

    def reduce(self, a, *args, **kwargs):
        return _apply(self._u, "reduce", (a,) + args, kwargs, f"cupy.{self.name}.reduce")

    def accumulate(self, a, *args, **kwargs):
        return _apply(self._u, "accumulate", (a,) + args, kwargs, f"cupy.{self.name}.accumulate")

    def outer(self, a, b, **kwargs):
        return _apply(self._u, "outer", (a, b), kwargs, f"cupy.{self.name}.outer")

    def __repr__(self):
        return f"<ufunc '{self.name}' (strict device)>"


def _from_host(name):
    """asarray and friends: a device array passes through; host data is one h2d copy."""

    def make(obj, dtype=None, *args, **kwargs):
        if isinstance(obj, ndarray):
            if name in ("array",) and kwargs.get("copy", True) is not False:
                _count("launches")
                return _wrap(_np.array(obj._a, dtype=dtype, copy=True))
            if dtype is not None and _np.dtype(dtype) != obj.dtype:
                _count("launches")
                return _wrap(obj._a.astype(dtype))
            return obj
        if type(obj).__name__ == "Tensor":
            raise TypeError(f"strict device: cupy.{name} got a tinyseg Tensor; pass tensor.data")
        if _contains_device(obj):
            raise TypeError(f"strict device: cupy.{name} of a list holding device arrays; "
                            "use cupy.stack")
        _count("h2d")
        kwargs.pop("copy", None)
        order = "F" if name == "asfortranarray" else "C"
        return _wrap(_np.array(obj, dtype=dtype, copy=True, order=order))
    make.__name__ = name
    return make


def _contains_device(obj):
    if isinstance(obj, ndarray):
        return True
    if isinstance(obj, (list, tuple)):
        return any(_contains_device(v) for v in obj)
    return False


def _device_function(name):
    np_func = getattr(_np, name)
    syncs = _SYNCING.get(name, 0)
    view = name in _VIEWS
    empty = name in ("empty", "empty_like")

    def func(*args, **kwargs):
        where = f"cupy.{name}"
        if name == "where" and len(args) == 1:
            _count("syncs")
        out = kwargs.get("out")
        result = np_func(*_unwrap(args, where), **_unwrap(kwargs, where))
        if syncs:
            _count("syncs", syncs)
        if not (view or empty):
            _count("launches")
        if out is not None:
            return out
        return _wrap(result)
    func.__name__ = name
    func.__doc__ = f"Strict-device twin of numpy.{name}."
    return func


def _metadata_function(name):
    np_func = getattr(_np, name)

    def func(*args, **kwargs):
        return np_func(*_unwrap(args, f"cupy.{name}"), **_unwrap(kwargs, f"cupy.{name}"))
    func.__name__ = name
    return func


def asnumpy(a, stream=None, order="C", out=None):
    """The one device-to-host copy (``cupy.asnumpy``)."""
    if isinstance(a, ndarray):
        return a.get()
    return _np.asarray(a)


def get_array_module(*args):
    for a in args:
        if isinstance(a, ndarray):
            return _this_module()
    return _np


def is_available():
    return True


# ----- random: CuPy's API, a stream of its own -----------------------------------------------

def _bit_generator(seed):
    # A different bit generator than NumPy's default, so that the same seed gives other
    # numbers than numpy.random (as on CuPy): code must not rely on equal streams.
    return _np.random.Philox(None if seed is None else [int(seed), 0x5EED])


class Generator:
    """``cupy.random.Generator``: only the methods CuPy's has."""

    def __init__(self, bit_generator):
        self._g = _np.random.Generator(bit_generator)

    def __getattr__(self, name):
        if name not in GENERATOR_METHODS:
            raise AttributeError(f"cupy.random.Generator has no method {name!r} "
                                 f"(CuPy's has: {', '.join(sorted(GENERATOR_METHODS))})")
        host = getattr(self._g, name)

        def draw(*args, **kwargs):
            _count("launches")
            return _wrap(_np.asarray(host(*_unwrap(args, name), **_unwrap(kwargs, name))))
        return draw


def default_rng(seed=None):
    if isinstance(seed, ndarray):
        raise TypeError("strict device: seed a generator with a Python int")
    return Generator(_bit_generator(seed))


class _RandomState:
    def __init__(self):
        self.seed(None)

    def seed(self, seed=None):
        self._g = _np.random.Generator(_bit_generator(seed))

    def rand(self, *shape):
        return self.random(shape)

    def randn(self, *shape):
        return self.standard_normal(shape)

    def random(self, size=None):
        return self._draw("random", size=size)

    random_sample = random

    def standard_normal(self, size=None):
        return self._draw("standard_normal", size=size)

    def normal(self, loc=0.0, scale=1.0, size=None):
        return self._draw("normal", loc, scale, size=size)

    def uniform(self, low=0.0, high=1.0, size=None):
        return self._draw("uniform", low, high, size=size)

    def randint(self, low, high=None, size=None):
        return self._draw("integers", low, high, size=size)

    def permutation(self, x):
        return self._draw("permutation", _unwrap(x, "permutation"))

    def shuffle(self, a):
        _count("launches")
        self._g.shuffle(a._a)

    def choice(self, a, size=None, replace=True, p=None):
        return self._draw("choice", _unwrap(a, "choice"), size, replace, _unwrap(p, "choice"))

    def _draw(self, name, *args, **kwargs):
        _count("launches")
        return _wrap(_np.asarray(getattr(self._g, name)(*args, **kwargs)))


_global_random = _RandomState()


# ----- building and installing the modules ------------------------------------------------------

_module: types.ModuleType | None = None
cupyx: types.ModuleType | None = None


def _this_module():
    return _module


def _scatter(np_ufunc, name):
    def scatter(a, slices, value):
        where = f"cupyx.{name}"
        if not isinstance(a, ndarray):
            raise TypeError(f"{where}: the target must be a device array")
        np_ufunc.at(a._a, _unwrap(slices, where), _operand(value, where))
        _count("launches")
    scatter.__name__ = name
    return scatter


class _DeviceSynchronized(RuntimeError):
    pass


@contextlib.contextmanager
def _allow_synchronize(allow):
    _sync_allowed.append(bool(allow))
    try:
        yield
    finally:
        _sync_allowed.pop()


def build():
    """Make the ``cupy`` and ``cupyx`` module objects (not yet installed)."""
    global _module, cupyx
    if _module is not None:
        return _module
    cp = types.ModuleType("cupy", "Strict simulated CuPy device (tests only): " + __doc__)
    cp.__version__ = "14.2.0+strict"
    cp.__strict_device__ = True
    for name in sorted(CUPY_NAMES):
        obj = getattr(_np, name, None)
        if obj is None:
            continue
        if name == "ndarray":
            value = ndarray
        elif name == "ufunc":
            value = ufunc
        elif isinstance(obj, _np.ufunc):
            value = ufunc(obj)
        elif name in _CREATION_FROM_HOST:
            value = _from_host(name)
        elif name in _METADATA:
            value = _metadata_function(name)
        elif isinstance(obj, (type, _np.dtype, float, int)):
            value = obj
        elif callable(obj):
            value = _device_function(name)
        else:
            value = obj
        setattr(cp, name, value)
    cp.newaxis = None
    cp.asnumpy = asnumpy
    cp.get_array_module = get_array_module
    cp.is_available = is_available

    random = types.ModuleType("cupy.random")
    random.Generator = Generator
    random.default_rng = default_rng
    for name in RANDOM_FUNCTIONS:
        setattr(random, name, getattr(_global_random, name))
    cp.random = random

    linalg = types.ModuleType("cupy.linalg")
    for name in ("norm", "inv", "solve", "det", "svd", "qr", "eigh", "cholesky", "lstsq"):
        setattr(linalg, name, _linalg(name))
    cp.linalg = linalg

    cuda = types.ModuleType("cupy.cuda")
    runtime = types.ModuleType("cupy.cuda.runtime")
    runtime.getDeviceCount = lambda: 1
    runtime.deviceSynchronize = lambda: _count("syncs")
    cuda.runtime = runtime
    cuda.Device = Device
    cuda.MemoryPointer = MemoryPointer
    cuda.is_available = is_available
    cuda.get_device_id = lambda: 0
    cp.cuda = cuda

    x = types.ModuleType("cupyx", "Strict simulated cupyx (tests only).")
    x.scatter_add = _scatter(_np.add, "scatter_add")
    x.scatter_max = _scatter(_np.maximum, "scatter_max")
    x.scatter_min = _scatter(_np.minimum, "scatter_min")
    x.DeviceSynchronized = _DeviceSynchronized
    x.allow_synchronize = _allow_synchronize
    x.errstate = _np.errstate
    _module, cupyx = cp, x
    return cp


def _linalg(name):
    np_func = getattr(_np.linalg, name)

    def func(*args, **kwargs):
        _count("launches")
        return _wrap(np_func(*_unwrap(args, f"cupy.linalg.{name}"),
                             **_unwrap(kwargs, f"cupy.linalg.{name}")))
    func.__name__ = name
    return func


def install():
    """Register the device as ``cupy`` / ``cupyx``. Call before importing tinyseg."""
    if "tinyseg.backend" in sys.modules and not getattr(
        sys.modules.get("cupy"), "__strict_device__", False
    ):
        raise RuntimeError("strict_device.install() must run before tinyseg is imported")
    cp = build()
    for name, mod in [("cupy", cp), ("cupy.random", cp.random), ("cupy.linalg", cp.linalg),
                      ("cupy.cuda", cp.cuda), ("cupy.cuda.runtime", cp.cuda.runtime),
                      ("cupyx", cupyx)]:
        sys.modules[name] = mod
    return cp


def is_strict(module) -> bool:
    """True for the strict simulated cupy module."""
    return getattr(module, "__strict_device__", False)
