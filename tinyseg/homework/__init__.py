"""Homework: build a student copy of tinyseg with operators left to write, and grade it.

Instructor's quick guide
------------------------
1. Mark the core of an operator in the library source (never in a naive loop version)::

       def col2im(x_cols, x_shape, ...):
           ...setup the student keeps...
           # BEGIN SOLUTION col2im
           ...the lines the student writes...
           # END SOLUTION
           return ...

   Both markers sit inside one function body, at the same indentation. The task
   name is ``<op>_forward`` / ``<op>_backward`` (or the function's name, such as
   ``im2col``). One task may own several blocks.

2. Mark the tests that grade the task: ``@pytest.mark.task("col2im")``. Only
   marked tests count. A backward task's tests may use the forward pass, so a
   student must finish ``conv2d_forward`` before ``conv2d_backward`` can score.

3. See the tasks: ``tinyseg homework list``.

4. Build the student copy: ``tinyseg homework build OUT --tasks col2im conv2d_backward``
   (all tasks without ``--tasks``). In OUT, each chosen block becomes
   ``raise NotImplementedError("homework task '<task>': ...")`` between two
   ``# TODO(<task>)`` comments; every other block stays solved, markers removed.
   OUT also gets the tests, ``pyproject.toml`` and a README.md for students.

5. Grade: ``tinyseg homework grade OUT`` runs the marked tests against the
   package in OUT (it shadows the installed tinyseg) and prints one row per task:
   ``points = 10 * passed / total``. Skipped tests (e.g. CuPy without a GPU) do
   not count.

6. Grade for marks: ``tinyseg homework grade SUBMISSION --reference ROOT`` takes only the
   student's task functions and grades them with ROOT's tests, one task at a time
   (:mod:`~tinyseg.homework.trusted`; ``--gradescope``, ``--json``, ``--task``).

The Python API is the same: ``find_tasks(root)``, ``build(out_dir, tasks)``,
``grade(dir)``. docs/homework.md has the long version.

The code is in modules by topic: :mod:`~tinyseg.homework.tasks` finds the solution blocks,
the tests and the dependencies between tasks; :mod:`~tinyseg.homework.student` builds the student
copy; :mod:`~tinyseg.homework.grading` runs the tests and scores them
(:mod:`~tinyseg.homework.trusted`
for the instructor's trusted mode, :mod:`~tinyseg.homework.report` for its output formats,
:mod:`~tinyseg.homework.command` for the ``tinyseg homework`` command). Everything public is
importable from ``tinyseg.homework`` itself.
"""

from .grading import GradeError, format_table, grade
from .report import gradescope_results, summary
from .student import MANIFEST, build, stub_file
from .tasks import (
    MarkerError,
    default_root,
    dependents_closure,
    find_tasks,
    list_tasks,
    solution_blocks,
    task_dependencies,
    task_locations,
    task_tests,
)
from .trusted import GPU_SKIPS, grade_trusted

__all__ = [
    "GPU_SKIPS",
    "GradeError",
    "MANIFEST",
    "MarkerError",
    "build",
    "default_root",
    "dependents_closure",
    "find_tasks",
    "format_table",
    "grade",
    "grade_trusted",
    "gradescope_results",
    "list_tasks",
    "solution_blocks",
    "stub_file",
    "summary",
    "task_dependencies",
    "task_locations",
    "task_tests",
]
