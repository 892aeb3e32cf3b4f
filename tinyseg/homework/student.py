"""Building a student copy: chosen solution blocks become stubs, the rest stays solved.

:func:`build` copies ``tinyseg/``, ``tests/`` and ``pyproject.toml`` into a new folder, then
rewrites each file that holds solution blocks: a chosen task's block becomes a
``raise NotImplementedError("homework task '<task>': ...")`` between two ``# TODO(<task>)``
comments; any other block keeps its code and loses its two marker lines. Every rewritten file
must still compile, or the build stops with a :class:`~tinyseg.homework.tasks.MarkerError` that
names the line. The copy also gets a README.md for students (their tasks, where each lives, the
tests that grade it, what to finish first) and ``homework.json`` (:data:`MANIFEST`), which the
grader reads.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .tasks import (
    MarkerError,
    default_root,
    find_tasks,
    solution_blocks,
    task_dependencies,
    task_locations,
    task_tests,
)

__all__ = ["MANIFEST", "build", "stub_file"]

#: the file in a student copy naming its chosen tasks and the graded ones
MANIFEST = "homework.json"


def stub_file(text: str, rel: str, chosen: set) -> str:
    """Replace chosen blocks by a raise between TODO comments; drop the markers of the others."""
    lines = text.splitlines(keepends=True)
    blocks = {begin: (task, end, indent) for task, begin, end, indent in solution_blocks(text, rel)}
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
        (out / rel).write_text(stub_file(text, rel, chosen_set), encoding="utf-8")

    graded, deps = task_tests(root), task_dependencies(root, found)
    readme = _student_readme(chosen, task_locations(root, found), graded, deps)
    (out / "README.md").write_text(readme, encoding="utf-8")
    manifest = {"tasks": chosen, "graded_tasks": [t for t in found if t in graded]}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return out
