"""Finding the homework tasks: solution blocks in the source, their tests, their dependencies.

A *task* is a name such as ``col2im`` or ``conv2d_backward``. It owns one or more solution blocks
in ``tinyseg/`` (the lines between ``# BEGIN SOLUTION <task>`` and ``# END SOLUTION``, both
comments alone on their line, at one indentation, inside one function) and it is graded by the
tests marked ``@pytest.mark.task("<task>")`` under ``tests/``.

Three questions are answered here, all by reading files and never by importing them:

- where are the blocks? (:func:`find_tasks`, :func:`solution_blocks`; markers are found with
  ``tokenize``, so a docstring that quotes a marker is not taken for one);
- which tests grade each task, and which functions hold its blocks? (:func:`task_tests`,
  :func:`task_locations`, :func:`list_tasks`);
- which other tasks must a student finish first? (:func:`task_dependencies`, a static graph of
  the names that functions and tests reference).
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

__all__ = [
    "MarkerError",
    "default_root",
    "dependents_closure",
    "find_tasks",
    "list_tasks",
    "package_files",
    "solution_blocks",
    "task_dependencies",
    "task_locations",
    "task_tests",
]

_BEGIN = re.compile(r"#\s*BEGIN SOLUTION\b(.*)$")
_END = re.compile(r"#\s*END SOLUTION\b(.*)$")
_TASK_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TEST_MARK = re.compile(r"mark\.task\(\s*[\"']([A-Za-z_][A-Za-z0-9_]*)[\"']")


class MarkerError(ValueError):
    """Malformed ``# BEGIN SOLUTION`` / ``# END SOLUTION`` markers; the message names file:line."""


def default_root() -> Path:
    """The source tree holding the imported tinyseg package (the folder above ``tinyseg/``)."""
    return Path(__file__).resolve().parents[2]  # tinyseg/homework/tasks.py -> the tree


def package_files(root: Path) -> list:
    """The ``.py`` files of ``root/tinyseg`` in sorted order, caches left out."""
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


def solution_blocks(text: str, name: str) -> list:
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
    for path in package_files(root):
        rel = path.relative_to(root).as_posix()
        for task, begin, end, _ in solution_blocks(path.read_text(encoding="utf-8"), rel):
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


def task_locations(root: Path, tasks: dict) -> dict:
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


def task_tests(root: Path) -> dict:
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
    where, tests = task_locations(root, tasks), task_tests(root)
    deps = task_dependencies(root, tasks)
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
    for task, where in task_locations(root, tasks).items():
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
