"""The backend helpers, and the design rules that keep ops backend-agnostic."""

from __future__ import annotations

import pathlib
import re

import numpy
import pytest

from tinyseg import backend

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "tinyseg"


def test_xp_of(xp):
    a = xp.zeros(3)
    assert backend.xp_of(a) is xp
    assert backend.xp_of(numpy.zeros(2), 3.0) is numpy


def test_xp_of_rejects_mixed_devices():
    cupy = pytest.importorskip("cupy")
    if not backend.gpu_available():
        pytest.skip("no GPU")
    with pytest.raises(ValueError, match="devices"):
        backend.xp_of(numpy.zeros(2), cupy.zeros(2))


def test_scatter_add_sums_repeats(xp):
    target = xp.zeros((2, 3))
    index = xp.asarray([0, 0, 5, 1, 0])
    values = xp.asarray([1.0, 2.0, 3.0, 4.0, 5.0])
    backend.scatter_add(target, index, values)
    assert xp.allclose(target, xp.asarray([[8.0, 4.0, 0.0], [0.0, 0.0, 3.0]]))
    with pytest.raises(ValueError, match="values"):
        backend.scatter_add(target, index, values[:2])


def test_scatter_add_keeps_dtype(xp):
    target = xp.zeros(4, dtype=xp.float32)
    backend.scatter_add(target, xp.asarray([1, 1]), xp.asarray([0.5, 0.25], dtype=xp.float32))
    assert target.dtype == xp.float32 and float(target[1]) == 0.75


def test_device_moves_and_default(monkeypatch):
    assert backend.device_of(numpy.zeros(1)) == "cpu"
    assert isinstance(backend.to_device(numpy.zeros(1), "cpu"), numpy.ndarray)
    monkeypatch.setenv("TINYSEG_DEVICE", "cpu")
    assert backend.get_default_device() == "cpu"
    monkeypatch.setenv("TINYSEG_DEVICE", "tpu")
    with pytest.raises(ValueError, match="device"):
        backend.get_default_device()
    with pytest.raises(ValueError, match="device"):
        backend.set_default_device("tpu")


def test_gpu_request_without_gpu_is_a_clear_error():
    if backend.gpu_available():
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="CuPy"):
        backend.to_device(numpy.zeros(1), "gpu")


def _code_lines(path):
    """Lines of a file outside docstrings and comments: where a stray np. would run."""
    text = path.read_text()
    text = re.sub(r'"""[\s\S]*?"""', "", text)
    for number, line in enumerate(text.splitlines(), 1):
        code = line.split("#", 1)[0]
        if code.strip():
            yield number, code


def test_no_numpy_inside_ops_functional_nn():
    """ops/, functional.py and nn/ get their array module from xp_of (docs/design.md, "Layers")."""
    files = sorted((PACKAGE / "ops").rglob("*.py")) + [PACKAGE / "functional.py"]
    files += sorted((PACKAGE / "nn").rglob("*.py"))
    offenders = [
        f"{path.relative_to(PACKAGE)}:{n}: {code.strip()}"
        for path in files
        if path.exists()
        for n, code in _code_lines(path)
        if re.search(r"\b(np|numpy)\.", code) or re.search(r"^\s*import numpy|^\s*from numpy", code)
    ]
    assert not offenders, "use xp = backend.xp_of(x) instead:\n" + "\n".join(offenders)


def test_no_add_at_and_no_cupy_import_outside_backend():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        if re.search(r"\.add\.at\b", text):
            offenders.append(f"{path.name}: add.at (use backend.scatter_add or col2im)")
        if path.name != "backend.py" and re.search(r"^\s*(import cupy|from cupy)", text, re.M):
            offenders.append(f"{path.name}: imports cupy (only backend.py may)")
        if re.search(r"allow_pickle\s*=\s*True|pickle\.load", text):
            offenders.append(f"{path.name}: pickle in loading code")
    assert not offenders, "\n".join(offenders)


def test_xp_of_and_device_of_see_raw_device_arrays_and_tensors(xp):
    """A cupy array's own ``.data`` is a memory pointer: it must not be looked through."""
    import tinyseg as ts

    a = xp.zeros((2, 3))
    want = "cpu" if xp is numpy else "gpu"
    assert backend.xp_of(a) is xp and backend.device_of(a) == want
    t = ts.tensor(a)
    assert backend.xp_of(t) is xp and backend.device_of(t) == want and t.device == want
    assert backend.xp_of(t, a, 2.0, numpy.float32(1)) is xp


@pytest.mark.parametrize("op", ["conv2d", "linear"])
def test_a_host_input_with_device_weights_is_a_clear_device_error(op):
    if not backend.gpu_available():
        pytest.skip("no device under test")
    import tinyseg.functional as F

    cp = backend.cupy_module()
    x = numpy.ones((1, 2, 4, 4)) if op == "conv2d" else numpy.ones((3, 2))
    w = cp.ones((3, 2, 3, 3)) if op == "conv2d" else cp.ones((4, 2))
    with pytest.raises(ValueError, match="different devices"):
        getattr(F, op)(x, w)
