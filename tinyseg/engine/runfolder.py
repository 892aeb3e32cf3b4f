"""The run folder: what a training run writes, in which order, and when it may write there.

A run folder (``runs/unet``, ``--out DIR``) holds the four files of ``RUN_FILES``. They are
written so that a run killed at any instant (Ctrl-C, SIGKILL, a full disk) leaves a folder
that tells the truth:

1. ``checkpoint.npz`` after every epoch: the truth about the run (weights, optimiser,
   history). Every file goes to a temporary ``.tmp-XXXX`` name in the same folder first and
   is then renamed over the old one (``checkpoint.atomic_path``), so each file is always
   either the old one or the new one, never half of each.
2. ``history.csv`` right after it: a readable copy of the checkpoint's history. A kill
   between the two leaves it one epoch behind, never ahead.
3. ``predictions.png`` when the last epoch is done.
4. ``metrics.json`` last: the "run finished" marker. It is removed when a run starts, so a
   folder with ``metrics.json`` holds a finished run, and its numbers are that run's.

Before epoch 1, ``prepare_run_folder`` decides whether the run may use the folder at all:

- a new run needs an empty (or new) folder, or ``overwrite=True``, which first deletes the
  earlier run's files (so no mix of old and new files can be left);
- a resumed run may continue in the folder its checkpoint is in;
- the folder must be writable: a test file is created and removed, so a read-only folder
  is found now, not after an hour of training;
- orphan ``.tmp-*`` files (left by a SIGKILL during a save) are removed.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["RUN_FILES", "FINISHED_FILES", "prepare_run_folder", "remove_orphans"]

#: the files a training run writes into its folder
RUN_FILES = ("checkpoint.npz", "history.csv", "predictions.png", "metrics.json")
#: the files written only when a run has finished (removed when a run starts)
FINISHED_FILES = ("predictions.png", "metrics.json")
_TEMPORARY = ".tmp-"


def remove_orphans(folder) -> list[Path]:
    """Delete the ``.tmp-*`` files an interrupted save left in ``folder``; returns them."""
    orphans = sorted(Path(folder).glob(_TEMPORARY + "*"))
    for orphan in orphans:
        if orphan.is_file():
            orphan.unlink()
    return orphans


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def prepare_run_folder(out_dir, resume=None, overwrite: bool = False) -> Path:
    """Make ``out_dir`` ready for a run (see the module docstring), before any training.

    :param resume: the checkpoint the run continues from (None: a new run).
    :param overwrite: a new run may replace the earlier run in ``out_dir``.
    :raises FileExistsError: ``out_dir`` is not empty, and neither ``overwrite`` nor a
        resume from a checkpoint in ``out_dir`` allows writing there; or it is a file.
    :raises PermissionError: (or another ``OSError``) the folder cannot be written.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"run folder {out} is a file, not a folder")
    entries = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    entries = [name for name in entries if not name.startswith(_TEMPORARY)]
    continues = resume is not None and _same_folder(Path(resume).parent, out)
    if entries and not (overwrite or continues):
        raise FileExistsError(
            f"run folder {out} is not empty ({', '.join(entries[:4])}"
            f"{', ...' if len(entries) > 4 else ''}): pass --overwrite to replace the run "
            "there, --resume to continue it, or choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out, prefix=_TEMPORARY, suffix=".probe")
        os.close(fd)
        os.remove(probe)
    except OSError as error:
        raise type(error)(f"run folder {out} is not writable: {error.strerror or error}") \
            from error
    remove_orphans(out)
    # a resumed run keeps its checkpoint (and rewrites history.csv from it next epoch)
    stale = FINISHED_FILES if continues else (RUN_FILES if overwrite else ())
    for name in stale:
        if (out / name).is_file():
            (out / name).unlink()
    return out
