"""Hidden test of notebook task ``notebook01_gradcheck``: the student's central differences.

Only the solution cell is executed (its source, in a fresh namespace holding ``np``), never the
whole notebook. The notebook folder is ``$TINYSEG_NOTEBOOKS`` (a grader must point it at the
submission), by default the ``notebooks/`` next to this ``tests/`` folder: in the repo that is
the solved notebook, which must pass.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from tinyseg.gradcheck import numerical_gradient, rel_error

TASK = "notebook01_gradcheck"
NOTEBOOK = "01_convolution_as_matrix_multiply.ipynb"
FUNCTION = "central_difference_gradient"


def solution_cell_source(path: Path, task: str = TASK) -> str:
    """The source of the code cell that holds ``### BEGIN SOLUTION <task>``."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        source = "".join(cell["source"])
        if cell["cell_type"] == "code" and f"BEGIN SOLUTION {task}" in source:
            return source
        if cell["cell_type"] == "code" and f"TODO({task})" in source:
            return source  # a student version: the markers became TODO comments
    raise AssertionError(f"{path.name}: no code cell holds task {task}")


def load_function(source: str):
    namespace = {"np": np}
    exec(compile(source, f"<{NOTEBOOK} solution cell>", "exec"), namespace)
    assert FUNCTION in namespace, f"the solution cell must define {FUNCTION}"
    return namespace[FUNCTION]


def check_gradient_function(fn):
    """Raise AssertionError (first line: what is wrong) unless ``fn`` is a central difference."""
    # A cubic tells the two formulas apart exactly: ((x+e)^3 - (x-e)^3) / 2e = 3x^2 + e^2,
    # while the one-sided (x+e)^3 - x^3) / e = 3x^2 + 3xe + e^2.
    x = np.array([0.5, -1.0, 2.0])
    eps = 1e-2
    got = fn(lambda v: v**3, x, np.ones(3), eps)
    assert np.allclose(got, 3 * x**2 + eps**2, rtol=1e-9, atol=1e-9), (
        f"not a central difference: for x**3 with eps={eps} expected {3 * x**2 + eps**2}, "
        f"got {got}"
    )
    assert np.array_equal(x, [0.5, -1.0, 2.0]), "x was not put back after the nudges"
    # dout weights the outputs, and x can have any shape.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4))
    dout = rng.standard_normal((2, 3, 4))
    f = np.tanh
    want = numerical_gradient(f, x.copy(), dout)
    err = rel_error(fn(f, x, dout), want)
    assert err < 1e-8, f"wrong gradient of <tanh(x), dout>: rel error {err:.3g}"
    # A function that mixes elements (a matrix product), with its default eps.
    a = rng.standard_normal((3, 4))
    x = rng.standard_normal((4, 2))
    dout = rng.standard_normal((3, 2))
    err = rel_error(fn(lambda v: a @ v, x, dout), a.T @ dout)
    assert err < 1e-8, f"wrong gradient of <a @ x, dout>: rel error {err:.3g}"


def notebook_path() -> Path:
    folder = os.environ.get("TINYSEG_NOTEBOOKS")
    if folder:
        path = Path(folder) / NOTEBOOK
        if not path.is_file():
            pytest.fail(f"notebook task {TASK}: {path} not found (TINYSEG_NOTEBOOKS={folder})")
        return path
    path = Path(__file__).resolve().parents[2] / "notebooks" / NOTEBOOK
    if not path.is_file():
        # A copy without notebooks (a library-only build): nothing to grade here. A grader
        # that grades this task sets TINYSEG_NOTEBOOKS to the submission's notebooks.
        pytest.skip(f"notebook task {TASK}: no {NOTEBOOK} here and TINYSEG_NOTEBOOKS is not set")
    return path


@pytest.mark.task(TASK)
def test_notebook01_central_difference_gradient():
    source = solution_cell_source(notebook_path())
    assert "tinyseg" not in source, "write the loop yourself: the cell must not use tinyseg"
    fn = load_function(source)
    assert not {"numerical_gradient", "gradcheck"} & set(fn.__code__.co_names), (
        "write the loop yourself: do not call numerical_gradient or gradcheck"
    )
    check_gradient_function(fn)
