"""Shared fixtures: the backend each test runs on, and the homework grade report.

Every op test takes the ``xp`` fixture and runs once with NumPy and once on a
device: real CuPy where a GPU is present, else the strict simulated device of
``tests/strict_device.py``, installed as the ``cupy`` module before tinyseg is
imported. ``TINYSEG_TEST_BACKEND`` (comma-separated: numpy, cupy, strict)
picks them by hand, e.g. ``TINYSEG_TEST_BACKEND=cupy`` on a GPU machine.
"""

from __future__ import annotations

import json
import os
import signal
import sys

import numpy
import pytest
import strict_device  # noqa: E402  (tests/ is on sys.path: pytest's rootdir conftest)


def _real_gpu() -> bool:
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def _chosen_backends() -> list[str]:
    """numpy, plus cupy on a GPU machine, else the strict simulated device."""
    names = os.environ.get("TINYSEG_TEST_BACKEND")
    names = names.split(",") if names else ["numpy", "cupy" if _real_gpu() else "strict"]
    unknown = set(names) - {"numpy", "cupy", "strict"}
    if unknown or ("cupy" in names and "strict" in names):
        raise pytest.UsageError(
            f"TINYSEG_TEST_BACKEND={','.join(names)}: use numpy, cupy and strict, comma "
            "separated, with at most one of cupy (a real GPU) and strict (the simulated one)"
        )
    return names


_BACKENDS = _chosen_backends()
if "strict" in _BACKENDS:
    for _name in [m for m in sys.modules if m == "cupy" or m.startswith(("cupy.", "cupyx"))]:
        del sys.modules[_name]
    strict_device.install()

from tinyseg import backend  # noqa: E402  (after the device is chosen)

STRICT = "strict" in _BACKENDS


# Tests that run whole models on the device (the `xp` fixture's device, without numpy).
DEVICE_BACKEND = pytest.mark.skipif(
    not (STRICT or ("cupy" in _BACKENDS and backend.gpu_available())),
    reason="no device under test (a GPU, or TINYSEG_TEST_BACKEND with strict)",
)


def _backend_params():
    params = []
    if "numpy" in _BACKENDS:
        params.append(pytest.param("numpy", id="numpy"))
    skip = pytest.mark.skipif(
        not backend.gpu_available(), reason="CuPy with a CUDA device is not available"
    )
    if "cupy" in _BACKENDS:
        params.append(pytest.param("cupy", id="cupy", marks=[skip, pytest.mark.gpu]))
    if STRICT:  # skips only where tinyseg.backend is a stand-in (homework tests)
        params.append(pytest.param("cupy", id="strict", marks=[skip, pytest.mark.gpu]))
    return params


@pytest.fixture(params=_backend_params())
def xp(request):
    """The array module under test: numpy, or cupy (a real GPU or the strict simulated device)."""
    return numpy if request.param == "numpy" else backend.cupy_module()


@pytest.fixture
def rng():
    return numpy.random.default_rng(0)


# ----- homework grading: record each test's outcome with its task marker -----
# TINYSEG_GRADE_REPORT=<file>: write one record per test (node id, outcome, task marks, phase,
# the first line of its error or skip reason). TINYSEG_GRADE_TASK=<task>: run only the tests
# marked with that task. TINYSEG_GRADE_TIMEOUT=<seconds>: fail a test that runs longer.
_grade_results = []


class GradeTimeout(Exception):
    """A graded test ran past TINYSEG_GRADE_TIMEOUT seconds (an infinite loop, say)."""


def _first_message(report) -> str:
    """The first line that says what went wrong: 'E   ...' of a traceback, or a skip reason."""
    longrepr = report.longrepr
    if longrepr is None:
        return ""
    if isinstance(longrepr, tuple):  # a skip: (file, line, reason)
        return str(longrepr[2]).removeprefix("Skipped: ")
    crash = getattr(getattr(longrepr, "reprcrash", None), "message", None)
    if crash:
        return crash.strip().splitlines()[0]
    for line in str(longrepr).splitlines():
        if line.startswith("E "):
            return line[1:].strip()
    return str(longrepr).strip().splitlines()[-1] if str(longrepr).strip() else ""


def pytest_collection_modifyitems(config, items):
    task = os.environ.get("TINYSEG_GRADE_TASK")
    if not task:
        return
    keep = [i for i in items if task in [m.args[0] for m in i.iter_markers("task") if m.args]]
    config.hook.pytest_deselected(items=[i for i in items if i not in keep])
    items[:] = keep


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    seconds = float(os.environ.get("TINYSEG_GRADE_TIMEOUT") or 0)
    if seconds <= 0 or not hasattr(signal, "setitimer"):
        yield
        return

    def alarm(signum, frame):
        raise GradeTimeout(f"timeout: the test ran longer than {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def pytest_runtest_logreport(report):
    if not os.environ.get("TINYSEG_GRADE_REPORT"):
        return
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        _grade_results.append({
            "nodeid": report.nodeid,
            "outcome": report.outcome,
            "tasks": getattr(report, "_tinyseg_tasks", None),
            "when": report.when,
            "message": _first_message(report),
        })


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    report._tinyseg_tasks = [m.args[0] for m in item.iter_markers(name="task") if m.args]


def pytest_sessionfinish(session, exitstatus):
    path = os.environ.get("TINYSEG_GRADE_REPORT")
    if path:
        with open(path, "w") as f:
            json.dump(_grade_results, f)
