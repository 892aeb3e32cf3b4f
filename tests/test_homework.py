"""Homework tooling: markers, student copies, grading, and the loop between them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tinyseg import homework

ROOT = homework.default_root()


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def _source_tree(tmp_path: Path, module: str) -> Path:
    """A minimal source tree: tinyseg/mod.py holding ``module``, an empty tests/, pyproject."""
    root = tmp_path / "src"
    _write(root / "tinyseg" / "__init__.py", "")
    _write(root / "tinyseg" / "mod.py", module)
    _write(root / "tests" / "test_mod.py", 'import pytest\n\n@pytest.mark.task("double")\n'
           "def test_double():\n    pass\n")
    _write(root / "pyproject.toml", "[project]\nname = 'tinyseg'\n")
    return root


GOOD = """\
    '''A docstring that quotes a marker is not a marker:
    # BEGIN SOLUTION nothing
    '''


    def double(x):
        y = x  # setup the student keeps
        # BEGIN SOLUTION double
        y = 2 * y
        # END SOLUTION
        return y


    def triple(x):
        if x is None:
            raise ValueError("x")
        # BEGIN SOLUTION triple
        out = 3 * x  # BEGIN SOLUTION trailing comments are not markers
        # END SOLUTION
        return out
    """


def _python(cwd: Path, code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter that imports tinyseg from ``cwd``."""
    env = dict(os.environ, PYTHONPATH=str(cwd))
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


# ----- find_tasks -----


def test_find_tasks_sees_the_known_tasks():
    tasks = homework.find_tasks(ROOT)
    assert {"im2col", "col2im"} <= set(tasks)
    for task, blocks in tasks.items():
        for rel, begin, end in blocks:
            lines = (ROOT / rel).read_text().splitlines()
            assert lines[begin - 1].strip() == f"# BEGIN SOLUTION {task}"
            assert lines[end - 1].strip() == "# END SOLUTION"
            assert begin < end
    assert tasks["col2im"][0][0] == "tinyseg/ops/conv.py"


def test_find_tasks_reads_only_real_comments(tmp_path):
    root = _source_tree(tmp_path, GOOD)
    assert homework.find_tasks(root) == {
        "double": [("tinyseg/mod.py", 8, 10)],
        "triple": [("tinyseg/mod.py", 17, 19)],
    }


BEGIN, END = "    # BEGIN SOLUTION", "    # END SOLUTION"


@pytest.mark.parametrize(
    "source, message",
    [
        (f"def f():\n{BEGIN} f\n    pass\n", r"mod\.py:2: .*never closed"),
        (f"def f():\n{BEGIN} f\n{BEGIN} g\n{END}\n{END}\n", r"mod\.py:3: .*cannot nest"),
        (f"def f():\n{BEGIN}\n    pass\n{END}\n", r"mod\.py:2: .*task name"),
        (f"def f():\n{BEGIN} two words\n{END}\n", r"mod\.py:2: .*one identifier"),
        (f"def f():\n    pass\n{END}\n", r"mod\.py:3: END SOLUTION without"),
        (f"def f():\n{BEGIN} f\n    if True:\n    {END}\n", r"mod\.py:4: .*indentation"),
    ],
    ids=["unclosed", "nested", "no-name", "two-words", "end-alone", "indent"],
)
def test_find_tasks_rejects_malformed_markers(tmp_path, source, message):
    root = _source_tree(tmp_path, source)
    with pytest.raises(homework.MarkerError, match=message):
        homework.find_tasks(root)


def test_dependencies_follow_the_call_graph():
    deps = homework.task_dependencies(ROOT)
    if "conv2d_backward" in deps:
        assert {"col2im", "conv2d_forward"} <= deps["conv2d_backward"]
    if "conv2d_forward" in deps:
        assert "col2im" not in deps["conv2d_forward"]
    closure = homework.dependents_closure({"col2im"}, deps)
    assert "col2im" in closure and "im2col" not in closure


# ----- build -----


def test_build_stubs_chosen_blocks_and_strips_the_others(tmp_path):
    root = _source_tree(tmp_path, GOOD)
    out = homework.build(tmp_path / "hw", ["double"], root=root)
    text = (out / "tinyseg" / "mod.py").read_text()
    assert "SOLUTION double" not in text and "SOLUTION triple" not in text
    assert "# TODO(double): your code here" in text
    assert "y = 2 * y" not in text
    assert "out = 3 * x" in text  # unchosen: still solved
    assert "quotes a marker" in text  # the docstring is untouched
    namespace = {}
    exec(compile(text, "mod.py", "exec"), namespace)
    with pytest.raises(NotImplementedError, match="homework task 'double'"):
        namespace["double"](1)
    assert namespace["triple"](2) == 6
    readme = (out / "README.md").read_text()
    assert "`double`" in readme and "tinyseg/mod.py:double" in readme and "triple" not in readme
    assert "homework grade" in readme
    assert json.loads((out / "homework.json").read_text())["tasks"] == ["double"]
    assert (out / "tests" / "test_mod.py").is_file() and (out / "pyproject.toml").is_file()


def test_build_refuses_unknown_tasks_and_non_empty_folders(tmp_path):
    root = _source_tree(tmp_path, GOOD)
    with pytest.raises(ValueError, match=r"nope.*valid tasks: double, triple"):
        homework.build(tmp_path / "a", ["double", "nope"], root=root)
    out = tmp_path / "b"
    homework.build(out, root=root)
    with pytest.raises(FileExistsError, match="b is not empty"):
        homework.build(out, [], root=root)
    homework.build(out, [], root=root, overwrite=True)
    assert "y = 2 * y" in (out / "tinyseg" / "mod.py").read_text()
    with pytest.raises(ValueError, match="source tree"):
        homework.build(root, [], root=root, overwrite=True)
    with pytest.raises(ValueError, match="source tree"):
        homework.build(root / "tinyseg" / "x", [], root=root)


def test_build_of_the_repo_imports_and_stubs_raise(tmp_path):
    out = homework.build(tmp_path / "hw", ["im2col", "col2im"])
    assert homework.find_tasks(out) == {}  # every marker is gone
    assert "# TODO(col2im)" in (out / "tinyseg" / "ops" / "conv.py").read_text()
    assert not list(out.rglob("__pycache__"))
    assert {"conftest.py", "opcheck.py"} <= {p.name for p in (out / "tests").iterdir()}
    probe = _python(out, textwrap.dedent("""
        import numpy, tinyseg, tinyseg.functional, tinyseg.nn
        from tinyseg.ops import conv
        print(tinyseg.__file__)
        for call in (lambda: conv.im2col(numpy.zeros((1, 1, 3, 3)), 2, 2),
                     lambda: conv.col2im(numpy.zeros((1, 4, 4)), (1, 1, 3, 3), 2, 2)):
            try:
                call()
            except NotImplementedError as err:
                print(err)
    """))
    assert probe.returncode == 0, probe.stderr
    lines = probe.stdout.splitlines()
    assert Path(lines[0]).resolve().is_relative_to(out.resolve())
    assert lines[1].startswith("homework task 'im2col'")
    assert lines[2].startswith("homework task 'col2im'")


# ----- grade on a tiny project: points arithmetic and shadowing -----


def _fake_project(tmp_path: Path) -> Path:
    """A stand-in tinyseg with the real conftest, and tests with known outcomes."""
    root = tmp_path / "fake"
    _write(root / "tinyseg" / "__init__.py", "FAKE = True\n")
    _write(root / "tinyseg" / "backend.py", """\
        def gpu_available():
            return False
        def cupy_module():
            raise RuntimeError("no cupy")
        """)
    test_file = _write(root / "tests" / "test_fake.py", """\
        import os
        import pytest
        import tinyseg

        @pytest.mark.task("a")
        def test_a_passes_1(xp):  # numpy runs, cupy is skipped: the skip does not count
            pass

        @pytest.mark.task("a")
        def test_a_passes_2():
            pass

        @pytest.mark.task("a")
        def test_a_fails():
            raise NotImplementedError("homework task 'a'")

        @pytest.mark.task("b")
        def test_shadowing_probe():
            here = os.path.realpath(os.getcwd())
            assert os.path.realpath(tinyseg.__file__).startswith(here + os.sep)
            assert tinyseg.FAKE

        def test_unmarked_is_not_graded():
            raise AssertionError("never run by grade")
        """)
    for name in ("conftest.py", "strict_device.py"):
        shutil.copy(ROOT / "tests" / name, test_file.parent / name)
    return root


def test_grade_points_skips_and_shadowing(tmp_path, capsys):
    rows = homework.grade(_fake_project(tmp_path))
    assert [(r["task"], r["passed"], r["total"], r["points"]) for r in rows] == [
        ("a", 2, 3, 6.7),
        ("b", 1, 1, 10.0),  # the probe: the fake package shadowed the installed tinyseg
    ]
    assert rows[0]["failed"] == ["tests/test_fake.py::test_a_fails"]
    printed = capsys.readouterr().out
    assert "points" in printed and "16.7 / 20" in printed and "test_a_fails" in printed


def test_grade_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        homework.grade(tmp_path / "missing")
    root = _fake_project(tmp_path)
    (root / "tinyseg" / "__init__.py").write_text("this is not python\n")
    with pytest.raises(homework.GradeError, match="pytest could not run the tests"):
        homework.grade(root, quiet=True)


# ----- the loop: build, grade, and only the chosen tasks lose points -----


def _chosen_tasks():
    tasks = homework.find_tasks(ROOT)
    graded = homework.task_tests(ROOT)
    chosen = ["col2im"]
    backward = [t for t in ("conv2d_backward", "relu_backward") if t in tasks and t in graded]
    return chosen + backward


@pytest.fixture(scope="module")
def graded_copies(tmp_path_factory):
    """Build a student copy (col2im + backward tasks) and a solved copy; grade both in parallel."""
    base = tmp_path_factory.mktemp("homework")
    chosen = _chosen_tasks()
    student = homework.build(base / "student", chosen)
    reference = homework.build(base / "reference", [])
    with ThreadPoolExecutor(2) as pool:
        jobs = [pool.submit(homework.grade, d, quiet=True) for d in (student, reference)]
        student_rows, reference_rows = (job.result() for job in jobs)
    return {
        "chosen": chosen,
        "student": (student, {r["task"]: r for r in student_rows}),
        "reference": (reference, {r["task"]: r for r in reference_rows}),
    }


@pytest.mark.slow  # two full grading runs in the module fixture (~30-60 s)
def test_reference_copy_passes_every_graded_test(graded_copies):
    _, rows = graded_copies["reference"]
    graded = set(homework.task_tests(ROOT)) & set(homework.find_tasks(ROOT))
    assert graded <= set(rows), f"tasks with marked tests but no result: {graded - set(rows)}"
    failing = {t: r["failed"] for t, r in rows.items() if r["passed"] != r["total"]}
    assert not failing
    assert all(r["total"] > 0 and r["points"] == 10.0 for t, r in rows.items() if t in graded)


@pytest.mark.slow  # two full grading runs in the module fixture (~30-60 s)
def test_student_copy_loses_exactly_the_chosen_tasks(graded_copies):
    _, rows = graded_copies["student"]
    chosen = graded_copies["chosen"]
    # tasks whose tests need a chosen task (e.g. conv_transpose2d_forward calls col2im) may fail too
    affected = homework.dependents_closure(set(chosen), homework.task_dependencies(ROOT))
    for task in chosen:
        if task in rows:
            assert rows[task]["total"] > 0
            assert rows[task]["passed"] < rows[task]["total"], f"{task} passed as a stub"
    wrong = {t: r["failed"] for t, r in rows.items() if t not in affected and r["failed"]}
    assert not wrong, f"tasks that should be untouched failed: {wrong}"
    assert "col2im" in rows or "col2im" not in homework.task_tests(ROOT)


@pytest.mark.slow  # two full grading runs in the module fixture (~30-60 s)
def test_student_copy_is_what_grade_imports(graded_copies):
    student, _ = graded_copies["student"]
    probe = student / "tests" / "test_zz_probe.py"
    _write(probe, """\
        import os
        import pytest
        import tinyseg
        from tinyseg.ops import conv

        @pytest.mark.task("probe")
        def test_probe():
            here = os.path.realpath(os.getcwd())
            assert os.path.realpath(tinyseg.__file__).startswith(here + os.sep)
            with pytest.raises(NotImplementedError, match="col2im"):
                conv.col2im(conv.im2col(__import__("numpy").ones((1, 1, 2, 2)), 1, 1),
                            (1, 1, 2, 2), 1, 1)
        """)
    try:
        rows = homework.grade(student, paths=["tests/test_zz_probe.py"], quiet=True)
    finally:
        probe.unlink()
    assert [(r["task"], r["passed"], r["total"]) for r in rows if r["task"] == "probe"] == [
        ("probe", 1, 1)
    ]
