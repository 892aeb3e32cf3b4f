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

The Python API is the same: ``find_tasks(root)``, ``build(out_dir, tasks)``,
``grade(dir)``. docs/homework.md has the long version.
"""

from __future__ import annotations

import ast
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tokenize
from pathlib import Path

__all__ = [
    "GradeError",
    "MarkerError",
    "build",
    "dependents_closure",
    "find_tasks",
    "format_table",
    "grade",
    "list_tasks",
    "task_dependencies",
]

_BEGIN = re.compile(r"#\s*BEGIN SOLUTION\b(.*)$")
_END = re.compile(r"#\s*END SOLUTION\b(.*)$")
_TASK_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TEST_MARK = re.compile(r"mark\.task\(\s*[\"']([A-Za-z_][A-Za-z0-9_]*)[\"']")
MANIFEST = "homework.json"


class MarkerError(ValueError):
    """Malformed ``# BEGIN SOLUTION`` / ``# END SOLUTION`` markers; the message names file:line."""


class GradeError(RuntimeError):
    """The tests could not be run at all (e.g. the package does not import)."""


def default_root() -> Path:
    """The source tree holding the imported tinyseg package (the folder above ``tinyseg/``)."""
    return Path(__file__).resolve().parent.parent


def _package_files(root: Path):
    package = root / "tinyseg"
    if not package.is_dir():
        raise FileNotFoundError(f"no tinyseg package folder in {root}")
    return sorted(p for p in package.rglob("*.py") if "__pycache__" not in p.parts)


def _markers(text: str, name: str):
    """(line, kind, task, indent) for each marker comment that stands alone on its line.

    Only real comments count (tokenize), so a docstring that quotes a marker is
    not mistaken for one.
    """
    found = []
    lines = text.splitlines()
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError) as err:
        raise MarkerError(f"{name}: cannot tokenize: {err}") from None
    for tok in tokens:
        if tok.type != tokenize.COMMENT:
            continue
        row, col = tok.start
        if lines[row - 1][:col].strip():
            continue  # a trailing comment after code is not a marker
        for kind, pattern in (("begin", _BEGIN), ("end", _END)):
            match = pattern.match(tok.string)
            if match:
                found.append((row, kind, match.group(1).strip(), lines[row - 1][:col]))
    return found


def _blocks(text: str, name: str):
    """Parse the marker pairs of one file into [(task, begin_line, end_line, indent)]."""
    blocks, open_block = [], None
    for row, kind, rest, indent in _markers(text, name):
        if kind == "begin":
            if open_block is not None:
                raise MarkerError(
                    f"{name}:{row}: BEGIN SOLUTION inside the block '{open_block[0]}' "
                    f"opened at line {open_block[1]}: blocks cannot nest"
                )
            if not rest:
                raise MarkerError(
                    f"{name}:{row}: BEGIN SOLUTION needs a task name, e.g. "
                    f"'# BEGIN SOLUTION conv2d_forward'"
                )
            if not _TASK_NAME.match(rest):
                raise MarkerError(f"{name}:{row}: task name {rest!r} must be one identifier")
            open_block = (rest, row, indent)
        else:
            if open_block is None:
                raise MarkerError(f"{name}:{row}: END SOLUTION without a BEGIN SOLUTION")
            if rest:
                raise MarkerError(f"{name}:{row}: END SOLUTION takes no task name (got {rest!r})")
            if indent != open_block[2]:
                raise MarkerError(
                    f"{name}:{row}: END SOLUTION must have the indentation of its BEGIN SOLUTION "
                    f"at line {open_block[1]}"
                )
            blocks.append((open_block[0], open_block[1], row, open_block[2]))
            open_block = None
    if open_block is not None:
        raise MarkerError(
            f"{name}:{open_block[1]}: BEGIN SOLUTION {open_block[0]} is never closed "
            f"(no END SOLUTION before the end of the file)"
        )
    return blocks


def find_tasks(root=None) -> dict:
    """Scan ``root/tinyseg/**/*.py`` for solution blocks.

    Returns ``{task: [(file, begin_line, end_line), ...]}``: ``file`` relative to
    ``root`` (posix), lines 1-based, the marker lines themselves. Tasks come in
    file order. Raises ``MarkerError`` naming file and line for a block that is
    never closed, nested, closed twice, or opened without a task name.
    """
    root = Path(root) if root is not None else default_root()
    tasks: dict = {}
    for path in _package_files(root):
        rel = path.relative_to(root).as_posix()
        for task, begin, end, _ in _blocks(path.read_text(encoding="utf-8"), rel):
            tasks.setdefault(task, []).append((rel, begin, end))
    return tasks


def _enclosing_function(tree, line: int) -> str:
    """``Class.method`` or ``function`` whose body holds ``line`` (innermost), or '<module>'."""
    best = ("<module>", -1)

    def visit(node, prefix):
        nonlocal best
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                inside = child.lineno <= line <= (child.end_lineno or child.lineno)
                if inside and not isinstance(child, ast.ClassDef) and child.lineno > best[1]:
                    best = (name, child.lineno)
                if inside:
                    visit(child, name + ".")
            else:
                visit(child, prefix)

    visit(tree, "")
    return best[0]


def _locations(root: Path, tasks: dict) -> dict:
    """{task: ["tinyseg/ops/conv.py:col2im", ...]}"""
    trees, out = {}, {}
    for task, blocks in tasks.items():
        for rel, begin, _ in blocks:
            if rel not in trees:
                trees[rel] = ast.parse((root / rel).read_text(encoding="utf-8"))
            where = f"{rel}:{_enclosing_function(trees[rel], begin)}"
            if where not in out.setdefault(task, []):
                out[task].append(where)
    return out


def _task_tests(root: Path) -> dict:
    """{task: {test_file: number of ``mark.task("task")`` occurrences}} by a text scan of tests/."""
    counts: dict = {}
    tests = root / "tests"
    for path in sorted(tests.glob("test_*.py")) if tests.is_dir() else []:
        for task in _TEST_MARK.findall(path.read_text(encoding="utf-8")):
            files = counts.setdefault(task, {})
            files[path.name] = files.get(path.name, 0) + 1
    return counts


def list_tasks(root=None) -> list:
    """One dict per task: ``{"task", "where": [file:function], "tests": {file: n}, "needs": set}``.

    ``tests`` counts the ``mark.task("<task>")`` marks per test file (a text scan:
    a parametrized test counts once); ``needs`` is ``task_dependencies``.
    """
    root = Path(root) if root is not None else default_root()
    tasks = find_tasks(root)
    where, tests, deps = _locations(root, tasks), _task_tests(root), task_dependencies(root, tasks)
    return [
        {"task": t, "where": where[t], "tests": tests.get(t, {}), "needs": deps[t]} for t in tasks
    ]


# ----- which tasks a task's tests need: a static reference graph -----


def _references(node) -> set:
    names = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            names.add(sub.id)
        elif isinstance(sub, ast.Attribute):
            names.add(sub.attr)
    return names


def _graph_of(tree, graph: dict, scope: str = ""):
    """name -> names it references, for top-level functions, classes and assignments.

    Methods and nested functions count as part of their top-level owner. With a
    ``scope`` (a test file), names defined in the file are keyed ``scope::name``
    and references to them resolve there first, so that same-named tests in
    different files stay apart.
    """
    entries = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            entries.append((node.name, node))
        elif isinstance(node, ast.Assign):
            entries += [(t.id, node.value) for t in node.targets if isinstance(t, ast.Name)]
    local = {name for name, _ in entries} if scope else set()

    def key(name):
        return f"{scope}::{name}" if name in local else name

    for name, node in entries:
        graph.setdefault(key(name), set()).update(key(r) for r in _references(node))
    return key


def _task_marks(decorators) -> list:
    marks = []
    for dec in decorators:
        for sub in ast.walk(dec):
            if (
                isinstance(sub, ast.Call)
                and isinstance(sub.func, ast.Attribute)
                and sub.func.attr == "task"
                and sub.args
                and isinstance(sub.args[0], ast.Constant)
            ):
                marks.append(sub.args[0].value)
    return marks


def task_dependencies(root=None, tasks=None) -> dict:
    """{task: set of other tasks its graded tests reach}, by static analysis.

    The graph holds every function, class and module-level assignment of
    ``tinyseg/ops``, ``tinyseg/functional.py`` and the test files, keyed by plain
    name (so it over-approximates where names collide). A test marked with task
    T, and the function holding T's block, reach every name they reference,
    transitively; T depends on task U when a function holding one of U's blocks
    is reached. A ``<op>_backward`` task
    also depends on whatever ``<op>_forward`` depends on, because its tests run
    the forward pass.
    """
    root = Path(root) if root is not None else default_root()
    tasks = find_tasks(root) if tasks is None else tasks
    graph: dict = {}
    sources = sorted((root / "tinyseg" / "ops").rglob("*.py"))
    sources += [root / "tinyseg" / "functional.py"]
    test_roots: dict = {}
    for path in sources:
        if path.is_file() and "__pycache__" not in path.parts:
            _graph_of(ast.parse(path.read_text(encoding="utf-8")), graph)
    for path in sorted((root / "tests").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        key = _graph_of(tree, graph, scope=path.name)
        for top in tree.body:  # a marked test, or a test class holding marked methods
            for node in ast.walk(top):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    for task in _task_marks(node.decorator_list):
                        test_roots.setdefault(task, set()).add(key(getattr(top, "name", "")))
    owners, functions = {}, {}  # function name -> tasks with a block in it, and back
    for task, where in _locations(root, tasks).items():
        for loc in where:
            name = loc.split(":", 1)[1].split(".")[-1]
            owners.setdefault(name, set()).add(task)
            functions.setdefault(task, set()).add(name)

    def reach(names):
        seen, todo = set(), list(names)
        while todo:
            name = todo.pop()
            if name not in seen:
                seen.add(name)
                todo.extend(graph.get(name, ()))
        return seen

    deps = {}
    for task in tasks:
        roots = test_roots.get(task, set()) | functions.get(task, set())
        if task.endswith("_backward"):
            forward = task[: -len("_backward")] + "_forward"
            roots |= test_roots.get(forward, set()) | functions.get(forward, set())
        found = set()
        for name in reach(roots):
            found |= owners.get(name, set())
        deps[task] = found - {task}
    return deps


def dependents_closure(chosen, deps: dict) -> set:
    """``chosen`` plus every task whose tests (transitively) need a chosen one."""
    closed = set(chosen)
    changed = True
    while changed:
        changed = False
        for task, needs in deps.items():
            if task not in closed and needs & closed:
                closed.add(task)
                changed = True
    return closed


# ----- build -----


def _stub_file(text: str, rel: str, chosen: set) -> str:
    """Replace chosen blocks by a raise between TODO comments; drop the markers of the others."""
    lines = text.splitlines(keepends=True)
    blocks = {begin: (task, end, indent) for task, begin, end, indent in _blocks(text, rel)}
    out, row = [], 1
    while row <= len(lines):
        if row not in blocks:
            out.append(lines[row - 1])
            row += 1
            continue
        task, end, indent = blocks[row]
        if task in chosen:
            message = f"homework task '{task}': replace this raise with your code"
            out.append(f"{indent}# TODO({task}): your code here. Replace the raise below.\n")
            out.append(f"{indent}raise NotImplementedError({message!r})\n")
            out.append(f"{indent}# TODO({task}): end of your code.\n")
        else:
            out.extend(lines[row : end - 1])  # the solution, without its two markers
        row = end + 1
    result = "".join(out)
    try:
        compile(result, rel, "exec")
    except SyntaxError as err:
        raise MarkerError(
            f"{rel}:{err.lineno}: the student version does not compile: {err.msg}"
        ) from None
    return result


def _ignore_caches(directory, names):
    return [n for n in names if n == "__pycache__" or n.endswith((".pyc", ".pyo"))]


def _student_readme(chosen: list, locations: dict, tests: dict, deps: dict) -> str:
    lines = [
        "# tinyseg homework",
        "",
        "This is a copy of tinyseg with some operators left for you to write. Each task is a",
        "`raise NotImplementedError(\"homework task '<task>': ...\")` between two `# TODO(<task>)`",
        "comments. Replace the raise with your code; keep the lines around it.",
        "",
        f"## Your tasks ({len(chosen)})",
        "",
        "| task | where (file:function) | graded by | needs first |",
        "|---|---|---|---|",
    ]
    for task in chosen:
        graded = ", ".join(f"tests/{f} ({n})" for f, n in sorted(tests.get(task, {}).items()))
        needs = ", ".join(sorted(deps.get(task, set()) & set(chosen))) or "-"
        lines.append(
            f"| `{task}` | {'<br>'.join(f'`{w}`' for w in locations[task])} "
            f"| {graded or '-'} | {needs} |"
        )
    lines += [
        "",
        "The tests of a backward task run the forward pass too, so finish a forward task before",
        "its backward. Each op's module docstring (e.g. `tinyseg/ops/conv.py`) derives the math.",
        "",
        "## Check your work",
        "",
        "From this folder (so that Python imports *this* copy of tinyseg):",
        "",
        "```bash",
        "python -m tinyseg.cli homework grade      # or: tinyseg homework grade .",
        "python -m pytest -m task tests/test_conv.py -q  # one file, with tracebacks",
        "```",
        "",
        "`grade` runs every test marked `@pytest.mark.task(...)` and prints one row per task:",
        "passed tests, total tests and points = 10 x passed / total. Tests skipped on your machine",
        "(GPU tests without a GPU) do not count. Add `--verbose` to see pytest's full output.",
        "",
    ]
    return "\n".join(lines)


def build(out_dir, tasks=None, *, overwrite: bool = False, root=None) -> Path:
    """Write a student copy of tinyseg into ``out_dir`` and return its path.

    ``tasks``: the tasks to leave as stubs (None: all of them; []: none, a
    solved reference copy). Unknown names raise ValueError listing the valid
    ones. The copy holds ``tinyseg/`` (source only), ``tests/``,
    ``pyproject.toml``, a student README.md and ``homework.json`` (the chosen
    tasks). A non-empty ``out_dir`` is refused unless ``overwrite=True``.
    """
    root = Path(root).resolve() if root is not None else default_root()
    out = Path(out_dir).resolve()
    found = find_tasks(root)
    chosen = list(found) if tasks is None else list(dict.fromkeys(tasks))
    unknown = [t for t in chosen if t not in found]
    if unknown:
        raise ValueError(
            f"unknown homework task(s) {', '.join(unknown)}; "
            f"valid tasks: {', '.join(found) or 'none'}"
        )
    for needed in ("tests", "pyproject.toml"):
        if not (root / needed).exists():
            raise FileNotFoundError(
                f"{root} has no {needed}: build needs a source checkout of tinyseg"
            )
    if (
        out == root
        or out in root.parents
        or root / "tinyseg" in (out, *out.parents)
        or root / "tests" in (out, *out.parents)
    ):
        raise ValueError(
            f"out_dir {out} would overwrite the source tree {root}: choose another folder"
        )
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"out_dir {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"out_dir {out} is not empty (pass overwrite=True / --overwrite)")
        for name in ("tinyseg", "tests"):
            shutil.rmtree(out / name, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)

    shutil.copytree(root / "tinyseg", out / "tinyseg", ignore=_ignore_caches)
    shutil.copytree(root / "tests", out / "tests", ignore=_ignore_caches)
    shutil.copy2(root / "pyproject.toml", out / "pyproject.toml")
    chosen_set = set(chosen)
    for rel in sorted({rel for blocks in found.values() for rel, _, _ in blocks}):
        text = (root / rel).read_text(encoding="utf-8")
        (out / rel).write_text(_stub_file(text, rel, chosen_set), encoding="utf-8")

    graded, deps = _task_tests(root), task_dependencies(root, found)
    readme = _student_readme(chosen, _locations(root, found), graded, deps)
    (out / "README.md").write_text(readme, encoding="utf-8")
    manifest = {"tasks": chosen, "graded_tasks": [t for t in found if t in graded]}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return out


# ----- grade -----


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
    dir=".", *, paths=("tests",), timeout=None, verbose=False, quiet=False, file=None
) -> list:
    """Run the task-marked tests of the copy in ``dir`` and score each task.

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
