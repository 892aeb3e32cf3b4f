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

Writing is atomic: the archive goes to a temporary file ``.tmp-XXXX.npz`` in the
same directory, which then replaces the target with ``os.replace`` (a rename,
which the file system does in one step). A crash mid-write leaves the old
checkpoint intact, never a half-written one; a SIGKILL can leave the temporary
file behind, which the next run into that folder removes
(``tinyseg.engine.runfolder``). ``atomic_path`` is the same recipe for any file,
and ``write_json`` uses it too.

Reading checks what a file claims: the config must be a JSON object, and
``load_model`` refuses weights that are NaN or infinite (``check_finite``), since
a model that diverged would otherwise "predict" without a word.

Training checkpoints
--------------------
A training run (``tinyseg.engine``) stores more than weights: the optimiser's
buffers (momentum, Adam's moments) travel as arrays named
``__optimizer__.<i>.<name>`` beside the state dict, and the rest of the
optimiser's state (step counts, its defaults) goes into the JSON config::

    Optimizer.state_dict() --split_optimizer_state--> (arrays, JSON-able dict)
    (arrays, JSON-able dict) --join_optimizer_state--> Optimizer.state_dict()

``load_model`` rebuilds the model of such a checkpoint from the config alone
(``build_model(config["model"], **config["model_config"])``). JSON has no NaN:
``jsonable`` turns NaN and infinities into ``null`` before anything is
written, and ``write_json`` uses it for the run's ``metrics.json``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

from . import backend
from .autograd import Tensor
from .models import build_model

CONFIG_KEY = "__config__"
#: the prefix of the optimiser's arrays in a training checkpoint
OPTIMIZER_PREFIX = "__optimizer__."


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

    with atomic_path(path) as tmp_path:
        with open(tmp_path, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_path(path):
    """``with atomic_path(path) as tmp:`` write ``tmp``; on success it replaces ``path``.

    ``tmp`` is a new ``.tmp-XXXX<suffix>`` file in the same directory (a rename only
    stays atomic within one file system). On an error it is removed and ``path`` is
    left as it was.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp_path = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=Path(path).suffix)
    os.close(fd)
    try:
        yield tmp_path
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
    :raises IsADirectoryError: ``path`` is a directory.
    :raises ValueError: the file is truncated, corrupt, not an ``.npz``, would
        need pickle, or has no config (or one that is not a JSON object). Each
        message names the file.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"checkpoint {path} is a directory, not a checkpoint file")
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
    if not isinstance(config, dict):
        raise ValueError(f"checkpoint {path}: the config must be a JSON object, got a "
                         f"{type(config).__name__}")
    return arrays, config


def check_finite(arrays: dict, path) -> None:
    """Refuse a checkpoint whose floating-point arrays hold NaN or infinity.

    :raises ValueError: naming the file and the first bad array (in the file's order).
    """
    for key, value in arrays.items():
        if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
            raise ValueError(f"checkpoint {path}: {key!r} holds NaN or infinite values "
                             "(the run that wrote it diverged)")


# ----- training checkpoints: optimiser state, JSON, the model back --------------------------
def split_optimizer_state(state: dict):
    """``Optimizer.state_dict()`` -> (arrays for the .npz, the JSON-able rest).

    Every array of at least one dimension becomes ``__optimizer__.<i>.<name>`` (``i`` the
    parameter's index); scalars (a step count) stay in the JSON part as plain numbers.
    """
    arrays, entries = {}, []
    for i, entry in enumerate(state["state"]):
        rest = {}
        for key, value in entry.items():
            if hasattr(value, "shape") and getattr(value, "ndim", 0) > 0:
                arrays[f"{OPTIMIZER_PREFIX}{i}.{key}"] = value
            else:
                rest[key] = value.item() if hasattr(value, "item") else value
        entries.append(rest)
    defaults = {k: list(v) if isinstance(v, tuple) else v for k, v in state["defaults"].items()}
    return arrays, {"type": state["type"], "defaults": defaults, "state": entries}


def join_optimizer_state(arrays: dict, meta: dict) -> dict:
    """The inverse of ``split_optimizer_state``: an ``Optimizer.load_state_dict`` argument."""
    entries = [dict(e) for e in meta["state"]]
    for key, value in arrays.items():
        index, name = key[len(OPTIMIZER_PREFIX):].split(".", 1)
        entries[int(index)][name] = value
    return {"type": meta["type"], "defaults": meta["defaults"], "state": entries}


def split_checkpoint_arrays(arrays: dict):
    """Separate a loaded checkpoint's arrays into (model state dict, optimiser arrays)."""
    model_state = {k: v for k, v in arrays.items() if not k.startswith(OPTIMIZER_PREFIX)}
    optim_state = {k: v for k, v in arrays.items() if k.startswith(OPTIMIZER_PREFIX)}
    return model_state, optim_state


def jsonable(value):
    """NaN and infinities become None (JSON has no NaN); tuples become lists; numpy
    scalars become Python numbers. Dicts and lists are converted all the way down."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return jsonable(value.item())
    return value


def write_json(path, values) -> None:
    """Write ``jsonable(values)`` to ``path`` as indented JSON (``metrics.json``), atomically."""
    text = json.dumps(jsonable(values), indent=2) + "\n"
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)


def load_model(path, expected: str | None = None, device: str = "cpu"):
    """Rebuild the model saved in training checkpoint ``path``, in eval mode, on ``device``.

    :param expected: when given, the model name the checkpoint must hold.
    :returns: ``(model, config)``.
    :raises FileNotFoundError: no such file.
    :raises ValueError: not a tinyseg training checkpoint, a checkpoint of
        another model than ``expected`` (the message names both), a model config
        the model does not take, or weights that are NaN or infinite.
    """
    arrays, config = load_checkpoint(path)
    name = config.get("model")
    if name is None or "model_config" not in config:
        raise ValueError(
            f"checkpoint {path} has no model name and config: it was not written by "
            "tinyseg train"
        )
    if expected is not None and name != expected:
        raise ValueError(f"checkpoint {path} holds a {name!r} model, not {expected!r}")
    model_state, _ = split_checkpoint_arrays(arrays)
    check_finite(model_state, path)
    if not isinstance(config["model_config"], dict):
        raise ValueError(f"checkpoint {path}: model_config must be a JSON object")
    try:
        model = build_model(name, **config["model_config"])
        model.load_state_dict(model_state)
    except (TypeError, ValueError, KeyError) as error:
        raise ValueError(f"checkpoint {path}: cannot rebuild its {name!r} model "
                         f"({error})") from error
    return model.to(device).eval(), config
