"""tinyseg.checkpoint: .npz round trip without pickle, atomic writes, clear errors."""

from __future__ import annotations

import os
import re

import numpy
import pytest

from tinyseg import backend, checkpoint, nn
from tinyseg.checkpoint import load_checkpoint, save_checkpoint


def _model(seed):
    nn.init.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Conv2d(3, 1, 1))


CONFIG = {"model": "tiny", "epochs": 3, "lr": 0.01, "classes": ["bg", "square"]}


def test_round_trip_restores_weights_buffers_and_config(tmp_path, xp):
    device = backend.device_of(xp.zeros(1))
    source = _model(0).to(device)
    source[1].running_var[...] = 2.0
    path = tmp_path / "checkpoint.npz"
    save_checkpoint(path, source.state_dict(), CONFIG)
    state, config = load_checkpoint(path)
    assert config == CONFIG
    assert all(isinstance(v, numpy.ndarray) for v in state.values())  # on the host
    target = _model(1).to(device)
    target.load_state_dict(state)
    for key, value in target.state_dict().items():
        assert backend.device_of(value) == device
        numpy.testing.assert_array_equal(backend.to_numpy(value),
                                         backend.to_numpy(source.state_dict()[key]))


def test_file_is_a_plain_npz_that_loads_without_pickle(tmp_path):
    path = tmp_path / "ck.npz"
    save_checkpoint(path, _model(0).state_dict(), CONFIG)
    with numpy.load(path, allow_pickle=False) as archive:
        assert set(archive.files) == set(_model(0).state_dict()) | {"__config__"}
        assert archive["__config__"].dtype == numpy.uint8
        assert archive["0.weight"].shape == (3, 2, 3, 3)


def test_saved_arrays_are_snapshots(tmp_path):
    model = _model(0)
    path = tmp_path / "ck.npz"
    save_checkpoint(path, model.state_dict(), {})
    model[0].weight.data[...] = 7.0
    state, config = load_checkpoint(path)
    assert config == {} and not (state["0.weight"] == 7.0).any()


def test_atomic_write_leaves_no_temp_file_and_overwrites(tmp_path):
    path = tmp_path / "ck.npz"
    save_checkpoint(path, _model(0).state_dict(), {"version": 1})
    save_checkpoint(path, _model(1).state_dict(), {"version": 2})
    assert os.listdir(tmp_path) == ["ck.npz"]
    assert load_checkpoint(path)[1] == {"version": 2}


def test_failed_write_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ck.npz"
    save_checkpoint(path, _model(0).state_dict(), {"version": 1})

    def broken_savez(file, **arrays):
        file.write(b"half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, _model(1).state_dict(), {"version": 2})
    assert os.listdir(tmp_path) == ["ck.npz"]
    monkeypatch.undo()
    assert load_checkpoint(path)[1] == {"version": 1}


def test_truncated_file_error_names_the_file(tmp_path):
    path = tmp_path / "ck.npz"
    save_checkpoint(path, _model(0).state_dict(), CONFIG)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*truncated or corrupt"):
        load_checkpoint(path)


def test_garbage_and_single_array_files_are_rejected_by_name(tmp_path):
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"this is not a zip archive at all")
    with pytest.raises(ValueError, match="garbage.npz"):
        load_checkpoint(garbage)
    single = tmp_path / "single.npy"
    numpy.save(single, numpy.zeros(3))
    with pytest.raises(ValueError, match="single.npy"):
        load_checkpoint(single)


def test_pickled_content_is_refused(tmp_path):
    path = tmp_path / "pickled.npz"
    numpy.savez(path, __config__=numpy.frombuffer(b"{}", numpy.uint8),
                w=numpy.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="pickled.npz"):
        load_checkpoint(path)


def test_missing_file_and_missing_config(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.npz"):
        load_checkpoint(tmp_path / "nowhere.npz")
    path = tmp_path / "bare.npz"
    numpy.savez(path, w=numpy.zeros(2))
    with pytest.raises(ValueError, match=r"bare.npz.*config"):
        load_checkpoint(path)


def test_loading_into_a_different_model_names_the_key(tmp_path):
    path = tmp_path / "ck.npz"
    save_checkpoint(path, _model(0).state_dict(), CONFIG)
    state, _ = load_checkpoint(path)
    wider = nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 1, 1))
    with pytest.raises(ValueError, match=r"'0.weight'.*\(3, 2, 3, 3\).*\(4, 2, 3, 3\)"):
        wider.load_state_dict(state)
    deeper = nn.Sequential(*_model(0), nn.Conv2d(1, 1, 1))
    with pytest.raises(ValueError, match="missing key.*'4.weight'"):
        deeper.load_state_dict(state)
    del state["3.bias"]
    with pytest.raises(ValueError, match="missing key.*'3.bias'"):
        _model(0).load_state_dict(state)


def test_bad_config_and_reserved_key(tmp_path):
    path = tmp_path / "ck.npz"
    with pytest.raises(TypeError, match="config must be a dict"):
        save_checkpoint(path, {}, config="tiny")
    with pytest.raises(TypeError, match="JSON"):
        save_checkpoint(path, {}, config={"weights": numpy.zeros(2)})
    with pytest.raises(ValueError, match="reserved"):
        save_checkpoint(path, {"__config__": numpy.zeros(1)}, {})
    with pytest.raises(TypeError, match="'w'"):
        save_checkpoint(path, {"w": [1.0, 2.0]}, {})
    assert not path.exists()


def test_a_config_that_is_not_an_object_is_refused_by_name(tmp_path):
    path = tmp_path / "listed.npz"
    numpy.savez(path, w=numpy.ones(2), __config__=numpy.frombuffer(b"[1, 2]", numpy.uint8))
    with pytest.raises(ValueError, match=r"listed\.npz: the config must be a JSON object, got a "
                                         r"list"):
        load_checkpoint(path)


def test_a_directory_is_not_reported_as_missing(tmp_path):
    folder = tmp_path / "ck.npz"
    folder.mkdir()
    with pytest.raises(IsADirectoryError, match=r"ck\.npz is a directory"):
        load_checkpoint(folder)


def test_check_finite_names_the_first_bad_array(tmp_path):
    arrays = {"a.weight": numpy.ones(3), "b.weight": numpy.array([1.0, numpy.nan]),
              "c.weight": numpy.array([numpy.inf]), "steps": numpy.array([3])}
    with pytest.raises(ValueError, match=r"ck\.npz: 'b\.weight' holds NaN or infinite"):
        checkpoint.check_finite(arrays, "ck.npz")
    checkpoint.check_finite({"a": numpy.ones(2), "n": numpy.arange(3)}, "ok.npz")  # no error


def test_write_json_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    checkpoint.write_json(path, {"miou": float("nan"), "epochs": 2})
    assert path.read_text().startswith("{") and "null" in path.read_text()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.write_json(path, {"epochs": 3})
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["metrics.json"]  # the old file, no temp file
    assert '"epochs": 2' in path.read_text()
