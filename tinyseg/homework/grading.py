"""Grading a student copy: run the task-marked tests in a subprocess and score each task.

:func:`grade` runs ``pytest -m task`` inside the copy with the copy first on ``PYTHONPATH``, so
its ``tinyseg`` shadows any installed one. The suite's ``tests/conftest.py`` writes a JSON list,
one record per test (node id, outcome, task marks), to the file named by
``TINYSEG_GRADE_REPORT``; the grader counts passed and failed tests per task (skips do not
count) and gives ``10 * passed / total`` points. :func:`format_table` prints the result.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from .report import format_rows
from .student import MANIFEST
from .trusted import grade_trusted

__all__ = ["GradeError", "format_table", "grade"]


class GradeError(RuntimeError):
    """The tests could not be run at all (e.g. the package does not import)."""


def _run_tests(directory: Path, paths, report: Path, timeout):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(directory), *filter(None, [env.get("PYTHONPATH")])])
    env["TINYSEG_GRADE_REPORT"] = str(report)
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-m",
        "task",
        "-q",
        "-p",
        "no:cacheprovider",
        *[str(directory / p) for p in paths],
    ]
    return subprocess.run(
        command, cwd=directory, env=env, capture_output=True, text=True, timeout=timeout
    )


def format_table(rows) -> str:
    """The points table ``grade`` prints."""
    width = max([len("task"), *(len(r["task"]) for r in rows)])
    lines = [f"{'task':<{width}}  {'passed':>6}  {'total':>5}  {'points':>6}"]
    lines.append("-" * len(lines[0]))
    for r in rows:
        lines.append(
            f"{r['task']:<{width}}  {r['passed']:>6}  {r['total']:>5}  {r['points']:>6.1f}"
        )
    lines.append("-" * len(lines[0]))
    points = round(sum(r["points"] for r in rows), 1)
    passed, total = sum(r["passed"] for r in rows), sum(r["total"] for r in rows)
    lines.append(f"{'total':<{width}}  {passed:>6}  {total:>5}  {points:>6.1f} / {10 * len(rows)}")
    return "\n".join(lines)


def grade(
    dir=".", *, paths=("tests",), timeout=None, verbose=False, quiet=False, file=None,
    reference=None, tasks=None, hidden=None, test_timeout=60,
) -> list:
    """Run the task-marked tests of the copy in ``dir`` and score each task.

    With ``reference=ROOT`` (trusted mode, for instructors) the submission's own tests are
    never run: :func:`~tinyseg.homework.trusted.grade_trusted` grades the student's task
    functions inside a copy of ROOT (``tasks``, ``hidden`` tests, ``test_timeout`` seconds
    per test) and the rows are those of :mod:`~tinyseg.homework.report`. Without it:

    pytest runs in a subprocess with ``cwd=dir`` and ``PYTHONPATH=dir``, so the
    package in ``dir`` shadows any installed tinyseg. Returns one dict per task,
    in test order: ``{"task", "passed", "total", "points", "failed"}`` where
    ``total`` counts passed and failed tests (skips do not count),
    ``points = round(10 * passed / total, 1)`` and ``failed`` lists node ids.
    Prints the table (and pytest's output with ``verbose``) unless ``quiet``.
    Raises GradeError if pytest produced no report (e.g. tinyseg fails to import).
    """
    directory = Path(dir).resolve()
    if not directory.is_dir():
        raise FileNotFoundError(f"no such folder: {dir}")
    if reference is not None:
        rows = grade_trusted(directory, reference, tasks=tasks, hidden=hidden,
                             timeout=timeout or 600, test_timeout=test_timeout)
        if not quiet:
            print(format_rows(rows), file=file or sys.stdout)
        return rows
    for p in paths:
        if not (directory / p).exists():
            raise FileNotFoundError(
                f"{directory / p} does not exist: is {dir} a tinyseg homework copy?"
            )
    file = file or sys.stdout
    with tempfile.TemporaryDirectory(prefix="tinyseg-grade-") as tmp:
        report_path = Path(tmp) / "report.json"
        proc = _run_tests(directory, paths, report_path, timeout)
        if verbose and not quiet:
            print(proc.stdout + proc.stderr, file=file)
        if not report_path.exists():
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            raise GradeError(
                f"pytest could not run the tests in {directory} (exit {proc.returncode}): "
                f"{tail.splitlines()[-1] if tail else 'no output'}\n{tail}"
            )
        results = json.loads(report_path.read_text())

    rows: dict = {}
    manifest = directory / MANIFEST
    if manifest.is_file():  # tasks whose tests never ran (collection error) still get a row
        for task in json.loads(manifest.read_text()).get("graded_tasks", []):
            rows[task] = {"task": task, "passed": 0, "total": 0, "points": 0.0, "failed": []}
    order = []
    for result in results:
        for task in result.get("tasks") or []:
            if task not in order:
                order.append(task)
            row = rows.setdefault(
                task, {"task": task, "passed": 0, "total": 0, "points": 0.0, "failed": []}
            )
            if result["outcome"] == "passed":
                row["passed"] += 1
                row["total"] += 1
            elif result["outcome"] == "failed":
                row["total"] += 1
                row["failed"].append(result["nodeid"])
    order += [t for t in rows if t not in order]
    table = [rows[t] for t in order]
    for row in table:
        row["points"] = round(10 * row["passed"] / row["total"], 1) if row["total"] else 0.0
    if not quiet:
        print(format_table(table), file=file)
        failed = [n for r in table for n in r["failed"]]
        if failed:
            print(f"\n{len(set(failed))} failing test(s):", file=file)
            for nodeid in dict.fromkeys(failed):
                print(f"  {nodeid}", file=file)
        if proc.returncode not in (0, 1, 5):
            print(
                f"\npytest exited with {proc.returncode}: run with --verbose to see why", file=file
            )
    return table
