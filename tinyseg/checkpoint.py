"""Checkpoints: a model's state dict plus its config in one ``.npz`` file, no pickle.

Format
------
A checkpoint is an ordinary NumPy ``.npz`` archive (a zip of ``.npy`` files):

* one entry per state-dict key (``"features.0.weight"``, ...), the array copied
  to the host;
* one entry ``"__config__"``: the config dict as UTF-8 JSON text, stored as a
  uint8 array, so that the whole file loads with ``allow_pickle=False``.

A file that loads without pickle can be opened safely even from an untrusted
source: pickle can run arbitrary code, ``.npy`` arrays cannot.

Writing is atomic: the archive goes to a temporary file in the same directory,
which then replaces the target with ``os.replace``. A crash mid-write leaves
the old checkpoint intact, never a half-written one.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
import zlib

import numpy as np

from . import backend
from .autograd import Tensor

CONFIG_KEY = "__config__"


def save_checkpoint(path, state_dict, config: dict) -> None:
    """Write ``state_dict`` (name -> array or Tensor) and ``config`` (a JSON-able dict) to ``path``.

    :raises TypeError: when ``config`` is not a dict or not JSON-serialisable, or
        a value of ``state_dict`` is not an array.
    :raises ValueError: when ``state_dict`` uses the reserved key ``"__config__"``.
    """
    path = os.fspath(path)
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict, got {type(config).__name__}")
    try:
        config_text = json.dumps(config, sort_keys=True)
    except (TypeError, ValueError) as error:
        raise TypeError(f"config must be JSON-serialisable: {error}") from error
    arrays = {}
    for key, value in state_dict.items():
        if key == CONFIG_KEY:
            raise ValueError(f"state_dict key {CONFIG_KEY!r} is reserved for the config")
        value = value.data if isinstance(value, Tensor) else value
        if not (isinstance(value, np.ndarray) or backend.is_cupy_array(value)):
            raise TypeError(f"state_dict[{key!r}] must be an array, got {type(value).__name__}")
        arrays[key] = np.array(backend.to_numpy(value), copy=True)
    arrays[CONFIG_KEY] = np.frombuffer(config_text.encode("utf-8"), dtype=np.uint8)

    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp_path = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp_path, 0o644)  # mkstemp makes it private (0600)
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise


def load_checkpoint(path):
    """Read a checkpoint written by ``save_checkpoint``.

    :returns: ``(state_dict, config)``: a dict of numpy arrays (host; pass it to
        ``Module.load_state_dict``, which moves them to the model's device) and
        the config dict.
    :raises FileNotFoundError: no file at ``path``.
    :raises ValueError: the file is truncated, corrupt, not an ``.npz``, would
        need pickle, or has no config. Each message names the file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    try:
        archive = np.load(path, allow_pickle=False)
        if not hasattr(archive, "files"):
            raise ValueError("it holds a single array, not an .npz archive")
        with archive:
            arrays = {key: archive[key] for key in archive.files}
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError) as error:
        raise ValueError(
            f"cannot read checkpoint {path}: the file is truncated or corrupt ({error})"
        ) from error
    if CONFIG_KEY not in arrays:
        raise ValueError(
            f"checkpoint {path} has no {CONFIG_KEY!r} entry: it was not written by "
            "save_checkpoint (the config is missing)"
        )
    try:
        config = json.loads(arrays.pop(CONFIG_KEY).tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"checkpoint {path}: the config is not valid JSON ({error})") from error
    return arrays, config
