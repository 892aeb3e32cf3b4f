"""The ``tinyseg homework`` command: list the tasks, build a student copy, grade one.

    tinyseg homework list
    tinyseg homework build OUT [--tasks TASK ...] [--overwrite]
    tinyseg homework grade [DIR] [--verbose] [--timeout S]
    tinyseg homework grade SUBMISSION --reference ROOT [--task T] [--hidden DIR]
                           [--test-timeout S] [--gradescope PATH] [--json PATH]

:func:`add_parser` registers it on the ``tinyseg`` command's subparsers. Exit status of
``grade``: 0 when every graded task passed fully (with ``--task T``: when T did), else 1.
"""

from __future__ import annotations

import json

from . import report
from .grading import grade
from .student import MANIFEST, build
from .tasks import default_root, list_tasks

__all__ = ["add_parser"]


def _list(args) -> int:
    root = default_root()
    tasks = list_tasks(root)
    if not tasks:
        print(f"no homework markers (# BEGIN SOLUTION <task>) under {root / 'tinyseg'}")
        return 0
    header = ("task", "where (file:function)", "marked tests", "needs")
    rows = [
        (t["task"], ", ".join(t["where"]), str(sum(t["tests"].values())),
         ", ".join(sorted(t["needs"])) or "-")
        for t in tasks
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[3])
    print(f"\n{len(tasks)} task(s) in {root}")
    return 0


def _build(args) -> int:
    out = build(args.out, args.tasks, overwrite=args.overwrite)
    chosen = json.loads((out / MANIFEST).read_text())["tasks"]
    print(
        f"wrote a student copy with {len(chosen)} task(s) to {out}: {', '.join(chosen) or 'none'}"
    )
    print(f"grade it with: tinyseg homework grade {args.out}")
    return 0


def _grade(args) -> int:
    if args.reference is None:
        if args.task or args.hidden or args.gradescope or args.json:
            raise ValueError("--task, --hidden, --gradescope and --json need --reference ROOT")
        rows = grade(args.dir, verbose=args.verbose, timeout=args.timeout)
        return 0 if rows and all(r["passed"] == r["total"] for r in rows) else 1
    rows = grade(args.dir, reference=args.reference, tasks=[args.task] if args.task else None,
                 hidden=args.hidden, timeout=args.timeout, test_timeout=args.test_timeout)
    if args.gradescope:
        report.write_json(args.gradescope, report.gradescope_results(rows))
    if args.json:
        report.write_json(args.json, report.summary(rows))
    return 0 if report.summary(rows)["ok"] else 1


def add_parser(subparsers):
    """Register ``homework`` (list, build, grade) on the ``tinyseg`` command's subparsers."""
    parser = subparsers.add_parser(
        "homework",
        help="build student copies and grade them",
        description="Build student copies of tinyseg and grade them.",
    )
    commands = parser.add_subparsers(dest="homework_command", metavar="ACTION")
    commands.required = True

    p = commands.add_parser("list", help="list the homework tasks in the source tree")
    p.set_defaults(func=_list)

    p = commands.add_parser("build", help="write a student copy with tasks left as stubs")
    p.add_argument("out", metavar="OUT", help="folder to write (must be empty or new)")
    p.add_argument(
        "--tasks",
        nargs="*",
        metavar="TASK",
        help="tasks to leave as stubs (default: all; --tasks with no names: a solved copy)",
    )
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty OUT")
    p.set_defaults(func=_build)

    p = commands.add_parser("grade", help="run the graded tests and print the points table")
    p.add_argument(
        "dir", nargs="?", default=".", metavar="DIR", help="the student copy (default: .)"
    )
    p.add_argument("--verbose", "-v", action="store_true", help="also print pytest's output")
    p.add_argument("--timeout", type=float, default=None, help="seconds before giving up")
    p.add_argument("--reference", metavar="ROOT", default=None,
                   help="trusted mode: grade with the tests and code of this source tree")
    p.add_argument("--task", metavar="T", default=None,
                   help="grade only T; exit 0 only when T passes (one Classroom test per task)")
    p.add_argument("--hidden", metavar="DIR", default=None, help="a folder of hidden tests")
    p.add_argument("--test-timeout", type=float, default=60.0,
                   help="seconds one test may run (default 60)")
    p.add_argument("--gradescope", metavar="PATH", default=None,
                   help="write Gradescope's results.json there")
    p.add_argument("--json", metavar="PATH", default=None, help="write a JSON summary there")
    p.set_defaults(func=_grade)
