"""Trusted grading (``grade --reference``): each exploit of the old grader, re-tried and closed."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from tinyseg import cli, homework

ROOT = homework.default_root()
TASKS = ["im2col", "col2im", "conv2d_forward"]
CONV = "tinyseg/ops/conv.py"
WRONG_IM2COL = "def im2col(*args, **kwargs):\n    return 0"


@pytest.fixture(scope="module")
def stub_copy(tmp_path_factory):
    """A fresh student copy of three tasks, as the build hands it out."""
    return homework.build(tmp_path_factory.mktemp("hw") / "copy", TASKS)


def _submission(stub_copy, tmp_path, conv_text=None) -> Path:
    """A copy of the student copy whose conv.py is ``conv_text`` (None: left as stubs)."""
    sub = tmp_path / "sub"
    shutil.copytree(stub_copy, sub)
    if conv_text is not None:
        (sub / CONV).write_text(conv_text)
    return sub


def _solved_with(replacement: str = "") -> str:
    """The reference conv.py (every task solved) whose im2col is ``replacement`` instead."""
    text = (ROOT / CONV).read_text()
    if replacement:
        text = text.replace("def im2col(", replacement + "\n\n\ndef _reference_im2col(", 1)
    return text


def _rows(sub, **kw):
    return {r["task"]: r for r in homework.grade(sub, reference=ROOT, quiet=True, **kw)}


def _listing(folder: Path):
    return sorted((str(p.relative_to(folder)), p.stat().st_mtime_ns) for p in folder.rglob("*"))


def test_stub_copy_scores_only_its_tasks_writes_nothing_and_is_fast(stub_copy, capsys):
    before = _listing(stub_copy)
    start = time.perf_counter()
    assert cli.main(["homework", "grade", str(stub_copy), "--reference", str(ROOT)]) == 1
    seconds = time.perf_counter() - start
    out = capsys.readouterr().out
    assert _listing(stub_copy) == before, "trusted grading wrote into the submission"
    assert seconds < 15, f"a 3-task assignment took {seconds:.1f} s"
    rows = _rows(stub_copy)
    assert list(rows) == TASKS  # the assignment only, not all 33 tasks
    assert all(r["points"] == 0 and r["total"] > 0 and not r["ok"] for r in rows.values())
    assert "NotImplementedError: homework task 'im2col'" in out  # first failure, by default


def test_one_bug_costs_one_task(stub_copy, tmp_path):
    sub = _submission(stub_copy, tmp_path, _solved_with(WRONG_IM2COL))
    rows = _rows(sub)
    assert not rows["im2col"]["ok"] and rows["im2col"]["points"] == 0
    # conv2d_forward calls im2col: graded with the reference im2col, it keeps full points
    assert rows["conv2d_forward"]["ok"] and rows["conv2d_forward"]["points"] == 10
    assert rows["col2im"]["ok"]


def test_a_syntax_error_fails_its_tasks_with_a_message(stub_copy, tmp_path):
    sub = _submission(stub_copy, tmp_path, _solved_with() + "\ndef broken(:\n    pass\n")
    rows = _rows(sub)
    for task in TASKS:
        assert rows[task]["points"] == 0 and not rows[task]["ok"]
        assert "SyntaxError" in rows[task]["error"] and CONV in rows[task]["error"]
    assert cli.main(["homework", "grade", str(sub), "--reference", str(ROOT)]) != 0
    indented = _solved_with().replace("def col2im(", "  def col2im(", 1)
    sub2 = _submission(stub_copy, tmp_path / "b", indented)
    assert "IndentationError" in _rows(sub2, tasks=["col2im"])["col2im"]["error"]


def test_a_skip_inside_the_student_op_counts_as_a_failure(stub_copy, tmp_path):
    skipping = ("def im2col(*args, **kwargs):\n    import pytest\n"
                "    pytest.skip('CuPy with a CUDA device is not available')")
    sub = _submission(stub_copy, tmp_path, _solved_with(skipping))
    row = _rows(sub, tasks=["im2col"])["im2col"]
    assert row["points"] == 0 and row["total"] > 0 and not row["ok"]
    assert "skipped (counts as a failure)" in row["message"]


def test_student_tests_and_conftest_have_no_effect(stub_copy, tmp_path):
    sub = _submission(stub_copy, tmp_path)
    fake = "import pytest\n\n" + "".join(
        f'@pytest.mark.task("im2col")\ndef test_free_{i}():\n    pass\n\n' for i in range(200))
    (sub / "tests" / "test_zz_free.py").write_text(fake)
    (sub / "tests" / "conftest.py").write_text(
        "import json, os\n\ndef pytest_sessionfinish(session, exitstatus):\n"
        "    json.dump([], open(os.environ['TINYSEG_GRADE_REPORT'], 'w'))\n")
    row = _rows(sub, tasks=["im2col"])["im2col"]
    assert row["points"] == 0 and row["passed"] == 0 and row["total"] < 200


def test_an_infinite_loop_times_out_and_the_others_are_graded(stub_copy, tmp_path):
    looping = "def im2col(*args, **kwargs):\n    while True:\n        pass"
    sub = _submission(stub_copy, tmp_path, _solved_with(looping))
    rows = _rows(sub, tasks=["im2col", "col2im"], test_timeout=0.5)
    assert not rows["im2col"]["ok"] and "timeout" in rows["im2col"]["message"]
    assert rows["col2im"]["ok"]


def test_missing_and_unexpected_tests_are_reported(stub_copy, tmp_path):
    sub = _submission(stub_copy, tmp_path, _solved_with())
    expected = _rows(sub, tasks=["im2col"])["im2col"]
    assert expected["ok"] and not expected["missing"]
    manifest = json.loads((sub / homework.MANIFEST).read_text())
    ran = [f"tests/test_conv.py::{n}" for n in ["test_not_there[numpy]"]]
    manifest["tests"] = {"im2col": ran}
    manifest["points"] = {"im2col": 7}
    (sub / homework.MANIFEST).write_text(json.dumps(manifest))
    row = _rows(sub, tasks=["im2col"])["im2col"]
    assert row["missing"] == ran and row["unexpected"] and not row["ok"]
    assert row["points"] == 0 and row["max_points"] == 7


def test_gradescope_results_and_task_exit_codes(stub_copy, tmp_path):
    sub = _submission(stub_copy, tmp_path, _solved_with(WRONG_IM2COL))
    results = tmp_path / "results.json"
    summary = tmp_path / "summary.json"
    args = ["homework", "grade", str(sub), "--reference", str(ROOT)]
    assert cli.main([*args, "--gradescope", str(results), "--json", str(summary)]) == 1
    data = json.loads(results.read_text())
    assert data["score"] == 20 and len(data["tests"]) == 3
    for test in data["tests"]:
        assert set(test) >= {"name", "score", "max_score", "output", "visibility"}
    im2col = next(t for t in data["tests"] if t["name"] == "im2col")
    assert im2col["score"] == 0 and "test_conv.py" in im2col["output"]
    assert json.loads(summary.read_text())["max_score"] == 30
    assert cli.main([*args, "--task", "col2im"]) == 0
    assert cli.main([*args, "--task", "im2col"]) == 1
