"""Notebook assignments: finding, stubbing and writing nbgrader-style solution regions."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from tinyseg.homework.notebooks import (
    find_notebook_tasks,
    stub_notebook,
    write_student_notebooks,
)
from tinyseg.homework.tasks import MarkerError

ROOT = Path(__file__).resolve().parents[1]
NB01 = "notebooks/01_convolution_as_matrix_multiply.ipynb"
TASK = "notebook01_gradcheck"


def _hidden():
    path = ROOT / "tests" / "hidden" / "test_notebook01_gradcheck.py"
    spec = importlib.util.spec_from_file_location("hidden_notebook01", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _nb(*cells):
    return {"cells": list(cells), "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def _code(source, outputs=None):
    return {
        "cell_type": "code",
        "execution_count": 3,
        "metadata": {},
        "outputs": outputs or [{"output_type": "stream", "name": "stdout", "text": ["42\n"]}],
        "source": source,
    }


SOLVED = "y = 1\nif True:\n    ### BEGIN SOLUTION t1\n    y = 42\n    ### END SOLUTION\nprint(y)"


def test_find_notebook_tasks_finds_the_shipped_task():
    tasks = find_notebook_tasks(ROOT)
    assert TASK in tasks
    [(rel, cell)] = tasks[TASK]
    assert rel == NB01
    nb = json.loads((ROOT / rel).read_text(encoding="utf-8"))
    assert "central_difference_gradient" in "".join(nb["cells"][cell]["source"])


def test_stub_removes_the_solution_clears_outputs_and_raises():
    nb = _nb({"cell_type": "markdown", "metadata": {}, "source": "text"}, _code(SOLVED))
    original = json.dumps(nb)
    student = stub_notebook(nb, {"t1"})
    assert json.dumps(nb) == original  # the input is left as it is
    cell = student["cells"][1]
    source = "".join(cell["source"])
    assert "y = 42" not in source and "SOLUTION" not in source
    assert "    raise NotImplementedError(\"notebook task 't1'" in source  # indentation kept
    assert source.startswith("y = 1\nif True:\n") and source.endswith("print(y)")
    assert cell["outputs"] == [] and cell["execution_count"] is None
    with pytest.raises(NotImplementedError, match="notebook task 't1'"):
        exec(source, {})
    namespace = {}
    exec(SOLVED, namespace)  # the solved cell runs
    assert namespace["y"] == 42


def test_unchosen_regions_keep_their_code_and_outputs():
    nb = _nb(_code(SOLVED))
    student = stub_notebook(nb, {"other"})
    source = "".join(student["cells"][0]["source"])
    assert "    y = 42" in source and "SOLUTION" not in source
    assert student["cells"][0]["outputs"] == nb["cells"][0]["outputs"]


def test_markers_in_markdown_cells_are_ignored():
    md = {"cell_type": "markdown", "metadata": {}, "source": "### BEGIN SOLUTION t1\nno end"}
    nb = _nb(md)
    assert stub_notebook(nb, {"t1"}) == nb


def test_begin_without_end_names_notebook_and_cell():
    nb = _nb(_code("x = 1"), _code("### BEGIN SOLUTION t1\nx = 2\n"))
    with pytest.raises(MarkerError, match=r"nb\.ipynb, cell 1, line 1: .*t1 is never closed"):
        stub_notebook(nb, {"t1"}, "nb.ipynb")
    with pytest.raises(MarkerError, match="needs one task name"):
        stub_notebook(_nb(_code("### BEGIN SOLUTION\n### END SOLUTION")), set())


def test_write_student_notebooks(tmp_path):
    root = tmp_path / "src"
    (root / "notebooks").mkdir(parents=True)
    shutil.copy(ROOT / NB01, root / NB01)
    shutil.copy(ROOT / "notebooks/03_fcn.ipynb", root / "notebooks/03_fcn.ipynb")
    written = write_student_notebooks(root, tmp_path / "out", {TASK, "conv2d_forward"})
    assert [p.name for p in written] == [Path(NB01).name, "03_fcn.ipynb"]
    unchosen = tmp_path / "out/notebooks/03_fcn.ipynb"
    assert unchosen.read_bytes() == (root / "notebooks/03_fcn.ipynb").read_bytes()
    student = json.loads(written[0].read_text(encoding="utf-8"))
    text = json.dumps(student)
    assert "BEGIN SOLUTION" not in text and "(plus - minus)" not in text
    assert all(c.get("outputs", []) == [] for c in student["cells"])
    # The stubbed function raises when called, and the hidden test fails on it.
    hidden = _hidden()
    fn = hidden.load_function(hidden.solution_cell_source(written[0]))
    with pytest.raises(NotImplementedError, match=TASK):
        fn(lambda v: v, __import__("numpy").ones(2), 1.0)


def test_hidden_test_rejects_a_one_sided_difference():
    import numpy as np

    def one_sided(f, x, dout, eps=1e-6):
        grad, flat = np.zeros_like(x), x.reshape(-1)
        base = np.sum(f(x) * dout)
        for m in range(flat.size):
            old = flat[m]
            flat[m] = old + eps
            grad.reshape(-1)[m] = (np.sum(f(x) * dout) - base) / eps
            flat[m] = old
        return grad

    with pytest.raises(AssertionError, match="not a central difference"):
        _hidden().check_gradient_function(one_sided)
    solved = _hidden().load_function(_hidden().solution_cell_source(ROOT / NB01))
    _hidden().check_gradient_function(solved)


def test_hidden_test_grades_the_notebook_that_env_points_to(tmp_path, monkeypatch):
    hidden = _hidden()
    monkeypatch.setenv("TINYSEG_NOTEBOOKS", str(tmp_path))
    with pytest.raises(pytest.fail.Exception, match="not found"):
        hidden.notebook_path()
    write_student_notebooks(ROOT, tmp_path / "sub", {TASK})
    monkeypatch.setenv("TINYSEG_NOTEBOOKS", str(tmp_path / "sub" / "notebooks"))
    with pytest.raises(NotImplementedError, match=TASK):  # the stub, not the repo's solution
        hidden.test_notebook01_central_difference_gradient()
