"""The ``tinyseg`` command: demo, homework list/build/grade, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from clicheck import error_line

from tinyseg import homework
from tinyseg.cli import build_parser, main

# ----- demo (a short U-Net run; tests/test_cli_train.py covers it end to end) -----


def test_demo_writes_metrics_and_picture(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TINYSEG_FAST", "1")  # a smaller run, same code path
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--epochs", "1", "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == "unet" and metrics["epochs"] == 1
    for key in ("miou", "pixel_accuracy", "dice", "per_class_iou", "train_seconds"):
        assert key in metrics
    assert (out / "predictions.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "U-Net" in printed and "mIoU" in printed


def test_demo_parser_takes_epochs_and_rejects_bad_values(capsys):
    args = build_parser().parse_args(["demo", "--epochs", "5", "--out", "x"])
    assert (args.epochs, args.out, args.device, args.seed) == (5, "x", "cpu", 0)
    assert build_parser().parse_args(["demo"]).out == "runs/demo"
    assert main(["demo", "--epochs", "0"]) == 2
    assert "--epochs" in error_line(capsys)
    assert main(["demo", "--device", "tpu"]) == 2
    assert "--device" in error_line(capsys)


# ----- homework -----


def test_homework_list(capsys):
    assert main(["homework", "list"]) == 0
    out = capsys.readouterr().out
    assert "im2col" in out and "col2im" in out and "tinyseg/ops/conv.py:col2im" in out


def test_homework_build_via_main(tmp_path, capsys):
    out = tmp_path / "hw"
    assert main(["homework", "build", str(out), "--tasks", "col2im"]) == 0
    assert "1 task(s)" in capsys.readouterr().out
    assert "# TODO(col2im)" in (out / "tinyseg" / "ops" / "conv.py").read_text()
    assert json.loads((out / homework.MANIFEST).read_text())["tasks"] == ["col2im"]

    assert main(["homework", "build", str(out)]) == 2  # not empty
    assert "not empty" in error_line(capsys)
    assert main(["homework", "build", str(out), "--tasks", "im2col", "--overwrite"]) == 0
    text = (out / "tinyseg" / "ops" / "conv.py").read_text()
    assert "# TODO(im2col)" in text and "# TODO(col2im)" not in text


def test_homework_build_unknown_task(tmp_path, capsys):
    assert main(["homework", "build", str(tmp_path / "hw"), "--tasks", "col2im", "nope"]) == 2
    line = error_line(capsys)
    assert "nope" in line and "valid tasks" in line and "im2col" in line
    assert not (tmp_path / "hw").exists()


def test_homework_grade_via_main(tmp_path, capsys):
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_one.py").write_text(
        "import pytest\n\n"
        '@pytest.mark.task("one")\ndef test_ok():\n    pass\n\n'
        '@pytest.mark.task("one")\ndef test_not_ok():\n    assert False\n'
    )
    from pathlib import Path

    for name in ("conftest.py", "strict_device.py"):  # the fixtures and the device they use
        source = Path(homework.default_root()) / "tests" / name
        (tmp_path / "tests" / name).write_text(source.read_text())
    assert main(["homework", "grade", str(tmp_path)]) == 1  # some tests failed
    out = capsys.readouterr().out
    assert "one" in out and "5.0" in out and "test_not_ok" in out


@pytest.mark.parametrize(
    "argv, needle",
    [
        ([], "COMMAND"),
        (["bogus"], "invalid choice"),
        (["homework"], "ACTION"),
        (["homework", "build"], "OUT"),
        (["homework", "build", "x", "--bogus"], "--bogus"),
        (["homework", "grade", "/no/such/folder"], "/no/such/folder"),
    ],
)
def test_errors_are_one_line_with_status_2(argv, needle, capsys):
    assert main(argv) == 2
    assert needle in error_line(capsys)


def test_help_exits_0(capsys):
    assert main(["--help"]) == 0
    assert "homework" in capsys.readouterr().out


def test_module_entry_point_exit_status():
    proc = subprocess.run(
        [sys.executable, "-m", "tinyseg.cli", "homework", "grade", "/no/such/folder"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "tinyseg: error: no such folder: /no/such/folder"


# ----- --debug: the full traceback on request, one line by default -----


def test_errors_are_one_line_by_default(tmp_path, capsys):
    missing = tmp_path / "nope.npz"
    assert main(["eval", "unet", "--checkpoint", str(missing)]) == 2
    assert "checkpoint file not found" in error_line(capsys)


def test_debug_flag_shows_the_traceback(tmp_path, capsys):
    missing = tmp_path / "nope.npz"
    assert main(["--debug", "eval", "unet", "--checkpoint", str(missing)]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "FileNotFoundError" in err
    assert err.strip().splitlines()[-1] == f"tinyseg: error: checkpoint file not found: {missing}"
    assert build_parser().parse_args(["--debug", "demo"]).debug
    assert not build_parser().parse_args(["demo"]).debug


def test_debug_flag_after_the_command_is_a_usage_error(capsys):
    assert main(["demo", "--debug"]) == 2
    assert "--debug" in error_line(capsys)
