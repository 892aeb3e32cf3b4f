"""Output formats of a trusted grade: the printed table, Gradescope's results.json, a JSON summary.

Each row is one task: ``{"task", "points", "max_points", "passed", "total", "failed",
"missing", "unexpected", "message", "error", "ok"}``. ``message`` is the first failure, one
readable line (``nodeid: AssertionError: ...``), so that a student sees *what* failed first.
Gradescope reads ``{"score", "tests": [{"name", "score", "max_score", "output",
"visibility"}], ...}`` from ``/autograder/results/results.json``; one test per task.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["format_rows", "gradescope_results", "summary", "write_json"]


def format_rows(rows) -> str:
    """The points table, with the first failure line under each failing task."""
    width = max([len("task"), *(len(r["task"]) for r in rows)])
    head = f"{'task':<{width}}  {'passed':>6}  {'total':>5}  {'points':>6}  {'max':>4}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['task']:<{width}}  {r['passed']:>6}  {r['total']:>5}  "
                     f"{r['points']:>6.1f}  {r['max_points']:>4}")
        if not r["ok"]:
            lines.append(f"{'':<{width}}    {r['error'] or r['message']}")
        if r["missing"]:
            lines.append(f"{'':<{width}}    {len(r['missing'])} expected test(s) did not run")
        if r["unexpected"]:
            lines.append(f"{'':<{width}}    {len(r['unexpected'])} unexpected test(s) ignored")
    lines.append("-" * len(head))
    s = summary(rows)
    lines.append(f"{'total':<{width}}  {s['passed']:>6}  {s['total']:>5}  "
                 f"{s['score']:>6.1f}  {s['max_score']:>4}")
    return "\n".join(lines)


def summary(rows) -> dict:
    """Totals and rows, for scripts (``--json``)."""
    return {
        "score": round(sum(r["points"] for r in rows), 1),
        "max_score": sum(r["max_points"] for r in rows),
        "passed": sum(r["passed"] for r in rows),
        "total": sum(r["total"] for r in rows),
        "ok": bool(rows) and all(r["ok"] for r in rows),
        "tasks": rows,
    }


def gradescope_results(rows, visibility: str = "visible") -> dict:
    """Gradescope's results.json: one test per task, the first failure as its output."""
    tests = []
    for r in rows:
        if r["ok"]:
            output = f"all {r['total']} test(s) passed"
        else:
            output = r["error"] or r["message"]
            if r["missing"]:
                output += f"\n{len(r['missing'])} expected test(s) did not run"
        tests.append({"name": r["task"], "score": r["points"], "max_score": r["max_points"],
                      "output": output, "visibility": visibility})
    s = summary(rows)
    return {"score": s["score"], "output": f"{s['score']} / {s['max_score']} points",
            "visibility": visibility, "stdout_visibility": "hidden", "tests": tests}


def write_json(path, data) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path
