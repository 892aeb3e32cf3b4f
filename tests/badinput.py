"""The table format of the standing fuzz suite (``tests/test_bad_input_*.py``).

Each bad-input file holds one table of :class:`Case` rows and one parametrised test that runs
them with :func:`run_case`. A row expects one of two outcomes:

- ``clear(ErrorType, pattern)``: the call raises ``ErrorType`` and its message matches
  ``pattern`` (a regex naming the argument, file or setting at fault);
- ``correct(check)``: the call returns, and ``check(result)`` holds: a documented correct
  answer, not merely "no error".

Keeping every case in a table lets a note count them:
``python -m pytest tests/test_bad_input_*.py --collect-only -q | grep -c "::"``, and
``-k clear`` / ``-k correct`` split the counts, since the outcome kind is part of each test id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import pytest


@dataclass(frozen=True)
class Clear:
    error: type
    pattern: str


@dataclass(frozen=True)
class Correct:
    check: Callable


def clear(error: type, pattern: str) -> Clear:
    """The case must raise ``error`` with a message matching ``pattern``."""
    return Clear(error, pattern)


def correct(check: Callable) -> Correct:
    """The case must return a result for which ``check(result)`` is true."""
    return Correct(check)


@dataclass(frozen=True)
class Case:
    id: str
    call: Callable  # no arguments; may take fixtures through a closure or a default
    expect: object  # a Clear or a Correct


def params(cases):
    """pytest params of a table, with ids ``<clear|correct>-<case id>``; ids must be unique."""
    ids = [c.id for c in cases]
    duplicates = {i for i in ids if ids.count(i) > 1}
    if duplicates:
        raise ValueError(f"duplicate case ids: {sorted(duplicates)}")
    kind = {Clear: "clear", Correct: "correct"}
    return [pytest.param(c, id=f"{kind[type(c.expect)]}-{c.id}") for c in cases]


def run_case(case: Case):
    """Run one row and assert its expected outcome."""
    expect = case.expect
    if isinstance(expect, Clear):
        with pytest.raises(expect.error) as info:
            case.call()
        message = str(info.value)
        assert re.search(expect.pattern, message), (
            f"{case.id}: message {message!r} does not match {expect.pattern!r}"
        )
    elif isinstance(expect, Correct):
        result = case.call()
        assert expect.check(result), f"{case.id}: unexpected result {result!r}"
    else:
        raise TypeError(f"{case.id}: expect must be clear(...) or correct(...), got {expect!r}")
