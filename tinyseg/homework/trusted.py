"""Trusted grading: the student's task functions, graded inside the instructor's tree.

:func:`grade_trusted` never runs the submission's tests, conftest or helpers. For each chosen
task it assembles a fresh folder from the REFERENCE tree (``tinyseg/``, ``tests/``,
``pyproject.toml``) and swaps in, from the submission, only the functions that hold that task's
solution blocks (found with ``ast``, replaced line for line). Every other task keeps the
reference code, so one bug costs one task. pytest then runs in that folder (``cwd`` there,
``-p no:cacheprovider``, no bytecode written), with ``TINYSEG_GRADE_TASK`` so that the
reference conftest keeps only the task's tests, and ``TINYSEG_GRADE_TIMEOUT`` so that a test
stuck in a loop fails as "timeout". Nothing is written into the submission.

Scoring: passed / expected tests, where the expected node ids come from the submission's
``homework.json`` ``"tests"`` (written at build time) or, without it, from the tests the
reference collects. A skip counts as a failure, except the GPU skips of ``tests/conftest.py``
(:data:`GPU_SKIPS`, at setup, never inside the student's code).
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .student import MANIFEST
from .tasks import find_tasks, task_locations, task_tests

_AST_LOCK = threading.Lock()

__all__ = ["GPU_SKIPS", "grade_trusted"]

#: skip reasons (prefixes) that do not count against a task: the GPU cases of tests/conftest.py
GPU_SKIPS = ("CuPy with a CUDA device is not available", "no device under test")
DEFAULT_POINTS = 10


def _find_function(tree, qualname: str):
    node, parts = tree, qualname.split(".")
    for part in parts:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and (
                child.name == part
            ):
                node = child
                break
        else:
            return None
    return node


def _swap_functions(reference: Path, submission: Path, where: list) -> dict:
    """{rel: new text} with the student's version of each ``rel:qualname`` in ``where``.

    Raises ValueError with a message for the student (syntax error, missing function).
    """
    by_file: dict = {}
    for loc in where:
        rel, qualname = loc.split(":", 1)
        by_file.setdefault(rel, []).append(qualname)
    out = {}
    for rel, names in by_file.items():
        student_path = submission / rel
        if not student_path.is_file():
            raise ValueError(f"{rel} is missing from the submission")
        student_text = student_path.read_text(encoding="utf-8")
        try:
            student_tree = ast.parse(student_text, rel)
        except SyntaxError as err:
            raise ValueError(f"{rel}:{err.lineno}: {type(err).__name__}: {err.msg}") from None
        ref_lines = (reference / rel).read_text(encoding="utf-8").splitlines(keepends=True)
        ref_tree = ast.parse("".join(ref_lines), rel)
        student_lines = student_text.splitlines(keepends=True)
        swaps = []
        for name in names:
            theirs, ours = _find_function(student_tree, name), _find_function(ref_tree, name)
            if theirs is None:
                raise ValueError(f"{rel}: the function {name} is missing from the submission")
            # from the def line (decorators stay the reference's) to the end of the body
            swaps.append((ours.lineno, ours.end_lineno,
                          student_lines[theirs.lineno - 1 : theirs.end_lineno]))
        for begin, end, new in sorted(swaps, reverse=True):
            ref_lines[begin - 1 : end] = new
        text = "".join(ref_lines)
        try:
            compile(text, rel, "exec")
        except SyntaxError as err:
            raise ValueError(f"{rel}:{err.lineno}: {type(err).__name__}: {err.msg}") from None
        out[rel] = text
    return out


def _ignore(directory, names):
    return [n for n in names if n in ("__pycache__", ".hypothesis", ".pytest_cache")
            or n.endswith((".pyc", ".pyo"))]


def _assemble(reference: Path, tree: Path, swaps: dict, hidden):
    shutil.copytree(reference / "tinyseg", tree / "tinyseg", ignore=_ignore)
    shutil.copytree(reference / "tests", tree / "tests", ignore=_ignore)
    shutil.copy2(reference / "pyproject.toml", tree / "pyproject.toml")
    if (reference / "conftest.py").is_file():
        shutil.copy2(reference / "conftest.py", tree / "conftest.py")
    hidden_files = []
    if hidden is not None:
        for path in sorted(Path(hidden).glob("*.py")):
            if (tree / "tests" / path.name).exists() and path.name.startswith("test_"):
                raise ValueError(f"hidden test file {path.name} has the name of a reference one")
            shutil.copy2(path, tree / "tests" / path.name)
            hidden_files.append(f"tests/{path.name}")
    for rel, text in swaps.items():
        (tree / rel).write_text(text, encoding="utf-8")
    return hidden_files


def _run(tree: Path, task: str, files: list, timeout, test_timeout):
    report = tree / "grade-report.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TINYSEG_GRADE", "PYTEST"))}
    env.update(PYTHONPATH=str(tree), PYTHONDONTWRITEBYTECODE="1",
               TINYSEG_GRADE_REPORT=str(report), TINYSEG_GRADE_TASK=task,
               TINYSEG_GRADE_TIMEOUT=str(test_timeout or 0), HOME=str(tree))
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               "--rootdir", str(tree), *files]
    try:
        proc = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, [], f"timeout: pytest ran longer than {timeout:g} s"
    records = json.loads(report.read_text()) if report.is_file() else []
    error = None
    if proc.returncode in (2, 3, 4) or not report.is_file():
        tail = (proc.stdout + proc.stderr).strip().splitlines()
        error = f"pytest ended with exit {proc.returncode} (collection or internal error): " + (
            next((line for line in reversed(tail) if line.startswith("E ")), tail[-1] if tail
                 else "no output"))
    return proc, records, error


def _score(task, records, expected, hidden_files, points, error):
    ran = {r["nodeid"]: r for r in records if task in (r.get("tasks") or [])}
    if expected is None:
        expected = list(ran)
    expected = list(dict.fromkeys([*expected, *(n for n in ran if n.split("::")[0] in
                                                hidden_files)]))
    passed, failed, excused, messages = 0, [], 0, []
    for nodeid in expected:
        record = ran.get(nodeid)
        if record is None:
            continue
        if record["outcome"] == "passed":
            passed += 1
        elif (record["outcome"] == "skipped" and record.get("when") == "setup"
              and record.get("message", "").startswith(GPU_SKIPS)):
            excused += 1
        else:
            failed.append(nodeid)
            prefix = "skipped (counts as a failure): " if record["outcome"] == "skipped" else ""
            messages.append(f"{nodeid}: {prefix}{record.get('message') or record['outcome']}")
    missing = [n for n in expected if n not in ran]
    unexpected = [n for n in ran if n not in expected]
    total = len(expected) - excused
    if not error and not ran:
        error = "no test ran for this task"
    score = round(points * passed / total, 1) if total and not error else 0.0
    message = messages[0] if messages else (f"{missing[0]}: did not run" if missing else "")
    return {"task": task, "points": score, "max_points": points, "passed": passed if not error
            else 0, "total": total, "failed": failed, "missing": missing,
            "unexpected": unexpected, "message": message, "error": error,
            "ok": not error and total > 0 and passed == total}


def grade_trusted(submission, reference, *, tasks=None, hidden=None, timeout=600,
                  test_timeout=60, workers=None) -> list:
    """Grade the chosen tasks of ``submission`` with the tests of the ``reference`` tree.

    ``tasks``: default the submission's ``homework.json`` "tasks". Returns one row per task
    (see :mod:`~tinyseg.homework.report`), in that order.
    """
    submission, reference = Path(submission).resolve(), Path(reference).resolve()
    for needed in ("tinyseg", "tests", "pyproject.toml"):
        if not (reference / needed).exists():
            raise FileNotFoundError(f"reference {reference} has no {needed}: "
                                    "pass the instructor's tinyseg source tree")
    manifest_path = submission / MANIFEST
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{submission} has no {MANIFEST}: is it a tinyseg homework copy?")
    manifest = json.loads(manifest_path.read_text())
    found = find_tasks(reference)
    assigned = list(manifest.get("tasks") or [])
    chosen = assigned if tasks is None else list(tasks)
    unknown = [t for t in chosen if t not in found]
    if unknown or not chosen:
        raise ValueError(f"tasks {unknown or chosen} are not tasks of the reference; "
                         f"assigned: {', '.join(assigned) or 'none'}")
    where = task_locations(reference, {t: found[t] for t in chosen})
    points = manifest.get("points") or {}
    expected_ids = manifest.get("tests")

    def one(task, base):
        start = time.perf_counter()
        tree = base / task
        pts = int(points.get(task, DEFAULT_POINTS))
        try:
            with _AST_LOCK:  # CPython 3.11's ast.parse is not thread-safe
                swaps = _swap_functions(reference, submission, where[task])
        except ValueError as err:
            row = _score(task, [], [], [], pts, str(err))
        else:
            hidden_files = _assemble(reference, tree, swaps, hidden)
            files = [f"tests/{f}" for f in task_tests(tree).get(task, {})]
            if not files:
                row = _score(task, [], [], hidden_files, pts, "no test file marks this task")
            else:
                _, records, error = _run(tree, task, files, timeout, test_timeout)
                expected = expected_ids.get(task) if isinstance(expected_ids, dict) else None
                row = _score(task, records, expected, hidden_files, pts, error)
        row["seconds"] = round(time.perf_counter() - start, 2)
        return row

    with tempfile.TemporaryDirectory(prefix="tinyseg-trusted-") as tmp:
        with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 2) as pool:
            return list(pool.map(lambda t: one(t, Path(tmp)), chosen))
