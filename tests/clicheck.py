"""The command line's error contract: one line ``tinyseg: error: ...`` on stderr, no traceback."""

from __future__ import annotations


def error_line(capsys) -> str:
    """Read stderr, check it is exactly one error line, and return that line."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("tinyseg: error: ")
    assert "Traceback" not in err
    return lines[0]
