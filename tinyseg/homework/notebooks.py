"""Notebook assignments: nbgrader-style solution regions in the lecture notebooks.

A code cell of ``notebooks/*.ipynb`` may hold a solution region::

    def central_difference_gradient(f, x, dout, eps=1e-6):
        grad = np.zeros_like(x)
        ### BEGIN SOLUTION notebook01_gradcheck
        ...the lines the student writes...
        ### END SOLUTION
        return grad

In the student version each region of a chosen task becomes a ``raise NotImplementedError(...)``
at the indentation of its ``BEGIN`` line, between two ``# TODO(<task>)`` comments; regions of
other tasks keep their code and lose only the marker lines. A notebook that holds a chosen task
has every output cleared (a printed value can give the answer away); any other notebook is
written unchanged.

Notebooks are read as JSON and never executed. Markers are lines whose text, stripped, starts
with ``### BEGIN SOLUTION`` or ``### END SOLUTION`` (three ``#``, so that a plain comment is
never taken for one); markers in markdown cells are ignored.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path

from .tasks import MarkerError

__all__ = ["find_notebook_tasks", "notebook_blocks", "stub_notebook", "write_student_notebooks"]

_BEGIN = re.compile(r"^###\s*BEGIN SOLUTION\b(.*)$")
_END = re.compile(r"^###\s*END SOLUTION\b(.*)$")
_TASK_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _lines(cell) -> list:
    source = cell.get("source", "")
    return source.splitlines(keepends=True) if isinstance(source, str) else list(source)


def notebook_blocks(lines: list, where: str) -> list:
    """[(task, begin, end, indent)] for one code cell's lines (0-based marker line indices)."""
    blocks, open_block = [], None
    for row, line in enumerate(lines):
        text = line.strip()
        indent = line[: len(line) - len(line.lstrip())]
        begin, end = _BEGIN.match(text), _END.match(text)
        if begin:
            task = begin.group(1).strip()
            if open_block is not None:
                raise MarkerError(f"{where}, line {row + 1}: BEGIN SOLUTION inside another block")
            if not _TASK_NAME.match(task):
                raise MarkerError(
                    f"{where}, line {row + 1}: BEGIN SOLUTION needs one task name, e.g. "
                    f"'### BEGIN SOLUTION notebook01_gradcheck' (got {task!r})"
                )
            open_block = (task, row, indent)
        elif end:
            if open_block is None:
                raise MarkerError(f"{where}, line {row + 1}: END SOLUTION without a BEGIN SOLUTION")
            blocks.append((open_block[0], open_block[1], row, open_block[2]))
            open_block = None
    if open_block is not None:
        raise MarkerError(
            f"{where}, line {open_block[1] + 1}: BEGIN SOLUTION {open_block[0]} is never closed "
            f"(no END SOLUTION in the cell)"
        )
    return blocks


def _code_cells(nb: dict, name: str):
    for index, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") == "code":
            yield index, cell, notebook_blocks(_lines(cell), f"{name}, cell {index}")


def find_notebook_tasks(root) -> dict:
    """``{task: [(notebook path relative to root, cell index), ...]}`` for ``root/notebooks``."""
    root = Path(root)
    tasks: dict = {}
    for path in sorted((root / "notebooks").glob("*.ipynb")):
        rel = path.relative_to(root).as_posix()
        nb = json.loads(path.read_text(encoding="utf-8"))
        for index, _, blocks in _code_cells(nb, rel):
            for task, *_ in blocks:
                if (rel, index) not in tasks.setdefault(task, []):
                    tasks[task].append((rel, index))
    return tasks


def stub_notebook(nb: dict, chosen: set, name: str = "notebook") -> dict:
    """A student version of ``nb`` (which is left as it is): chosen regions stubbed.

    Raises ``MarkerError`` naming ``name`` and the cell for a malformed region.
    """
    nb = copy.deepcopy(nb)
    stubbed = False
    for _, cell, blocks in list(_code_cells(nb, name)):
        if not blocks:
            continue
        lines, out, start = _lines(cell), [], 0
        for task, begin, end, indent in blocks:
            out += lines[start:begin]
            if task in chosen:
                stubbed = True
                out += [
                    f"{indent}# TODO({task}): your code here. Replace the raise below.\n",
                    f"{indent}raise NotImplementedError(\"notebook task '{task}': "
                    f'replace this raise with your code")\n',
                    f"{indent}# TODO({task}): end of your code.\n",
                ]
            else:
                out += lines[begin + 1 : end]
            start = end + 1
        out += lines[start:]
        if out and out[-1].endswith("\n") and not (lines and lines[-1].endswith("\n")):
            out[-1] = out[-1][:-1]  # keep the cell's last line without its newline
        cell["source"] = out
    if stubbed:
        for cell in nb.get("cells", []):
            if cell.get("cell_type") == "code":
                cell["outputs"], cell["execution_count"] = [], None
    return nb


def write_student_notebooks(root, out_dir, chosen) -> list:
    """Write every ``root/notebooks/*.ipynb`` to ``out_dir/notebooks/``, stubbed for ``chosen``.

    ``chosen`` may also hold library tasks; they are ignored here. A notebook without solution
    markers is copied byte for byte. Returns the written paths.
    """
    root, out = Path(root), Path(out_dir) / "notebooks"
    chosen, written = set(chosen), []
    for path in sorted((root / "notebooks").glob("*.ipynb")):
        target = out / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        nb = json.loads(path.read_text(encoding="utf-8"))
        student = stub_notebook(nb, chosen, path.relative_to(root).as_posix())
        if student == nb:
            shutil.copyfile(path, target)
        else:
            text = json.dumps(student, indent=1, ensure_ascii=False) + "\n"
            target.write_text(text, encoding="utf-8")
        written.append(target)
    return written
