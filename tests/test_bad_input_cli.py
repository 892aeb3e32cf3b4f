"""The standing fuzz table of the command line, its checkpoints and its run folders.

Every CLI row runs ``tinyseg.cli.main`` in-process; ``_cli`` turns a clean failure (exit
status 2 and exactly one stderr line ``tinyseg: error: ...``, no traceback) into a
``CliError`` carrying that line, so ``clear(CliError, regex)`` checks the status, the one line
and that it names the argument or file. Anything else (exit 0, a traceback, two lines) comes
back as a value, and the row fails with "DID NOT RAISE".

The checkpoints are built once per module: one tiny ``tinyseg train unet`` run, then copies
edited with numpy (a NaN weight, a config that is a list, a bad recipe, ...). The rows that
train use the tiniest settings.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from badinput import Case, clear, correct, params, run_case

from tinyseg import engine
from tinyseg.checkpoint import CONFIG_KEY, load_checkpoint, save_checkpoint
from tinyseg.cli import main
from tinyseg.data import ShapesDataset, export_voc
from tinyseg.models import build_model
from tinyseg.recipes import Recipe

TINY = ["--epochs", "1", "--batch-size", "4", "--image-size", "32", "--train-images", "4",
        "--val-images", "4", "--no-progress"]
SHAPES = ["background", "square", "circle", "triangle"]
_NOW: dict = {}  # the current test's fixtures: "files" (the paths below) and "capsys"


class CliError(Exception):
    """``main`` exited with status 2 and printed one clean error line (the message)."""


def _cli(*argv):
    code = main([str(a) for a in argv])
    err = _NOW["capsys"].readouterr().err
    lines = err.strip().splitlines()
    if code == 2 and len(lines) == 1 and lines[0].startswith("tinyseg: error: ") \
            and "Traceback" not in err:
        raise CliError(lines[0])
    return code, err


def cli(*argv):
    """A row's call: ``main(argv)``, with ``{name}`` in an argument replaced by a file's path."""
    return lambda: _cli(*(a.format(**_NOW["files"]) for a in argv))


def _write_raw(path, arrays, config_bytes):
    np.savez(path, **arrays, **{CONFIG_KEY: np.frombuffer(config_bytes, np.uint8)})


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("badcli")
    run = root / "run"
    assert main(["train", "unet", "--out", str(run), *TINY]) == 0
    good = run / "checkpoint.npz"
    arrays, config = load_checkpoint(good)
    paths = {"good": good, "run": run, "root": root}

    def edited(name, change_arrays=None, change_config=None):
        a, c = {k: v.copy() for k, v in arrays.items()}, json.loads(json.dumps(config))
        if change_arrays:
            change_arrays(a)
        if change_config:
            change_config(c)
        save_checkpoint(root / name, a, c)
        paths[name.split(".")[0]] = root / name

    first_weight = next(k for k, v in arrays.items() if v.dtype.kind == "f")
    paths["first_weight"] = first_weight
    edited("nan_weights.npz", lambda a: a[first_weight].flat.__setitem__(0, np.nan))
    edited("inf_weights.npz", lambda a: a[first_weight].flat.__setitem__(-1, np.inf))
    edited("bad_size.npz", change_config=lambda c: c["recipe"].update(image_size=-3))
    edited("text_size.npz", change_config=lambda c: c["recipe"].update(image_size="big"))
    edited("recipe_list.npz", change_config=lambda c: c.update(recipe=[1, 2]))
    edited("bad_options.npz", change_config=lambda c: c["model_config"].update(bogus=1))
    edited("no_model.npz", change_config=lambda c: c.pop("model"))
    _write_raw(root / "config_list.npz", arrays, b"[1, 2, 3]")
    _write_raw(root / "config_text.npz", arrays, b'"unet"')
    paths["config_list"], paths["config_text"] = root / "config_list.npz", root / "config_text.npz"
    np.savez(root / "no_config.npz", **arrays)
    paths["no_config"] = root / "no_config.npz"
    blob = good.read_bytes()
    (root / "truncated.npz").write_bytes(blob[: len(blob) // 2])
    (root / "junk.npz").write_text("not a zip")
    (root / "folder.npz").mkdir()
    paths.update(truncated=root / "truncated.npz", junk=root / "junk.npz",
                 folder=root / "folder.npz")
    # a detector's checkpoint, built without training (eval must refuse a VOC folder first)
    detector = build_model("fasterrcnn", num_classes=4)
    save_checkpoint(root / "fasterrcnn.npz", detector.state_dict(),
                    {"model": "fasterrcnn", "model_config": detector.config(),
                     "recipe": Recipe(model="fasterrcnn", image_size=32).to_dict(),
                     "classes": SHAPES})
    paths["fasterrcnn"] = root / "fasterrcnn.npz"
    # VOC folders: the same 4 classes, 6 classes, and the 21 PASCAL classes (no classes.txt)
    splits = {"train": ShapesDataset("train", num_images=2, size=32),
              "val": ShapesDataset("val", num_images=2, size=32)}
    for name in ("voc4", "voc6", "voc21"):
        paths[name] = export_voc(root / name, splits)
    (paths["voc6"] / "classes.txt").write_text("\n".join([*SHAPES, "star", "moon"]) + "\n")
    (paths["voc21"] / "classes.txt").unlink()
    (root / "a_file").write_text("x")
    paths["a_file"] = root / "a_file"
    full = root / "full"
    full.mkdir()
    (full / "notes.txt").write_text("an earlier run's notes")
    paths["full"] = full
    readonly = root / "readonly"
    readonly.mkdir()
    readonly.chmod(0o500)
    paths["readonly"] = readonly
    yield {k: str(v) for k, v in paths.items()}
    readonly.chmod(0o700)


def _fresh(name):
    """A new, not yet existing folder under the module's root (for rows that train)."""
    path = os.path.join(_NOW["files"]["root"], "fresh", name)
    shutil.rmtree(path, ignore_errors=True)
    return path


def _not_root():
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        pytest.skip("root can write into a read-only folder")


def _readonly_run():
    _not_root()
    return _cli("train", "unet", "--out", os.path.join(_NOW["files"]["readonly"], "r"), *TINY)


def _orphans_removed():
    folder = _fresh("orphans")
    shutil.copytree(_NOW["files"]["run"], folder)
    for name in (".tmp-abc123.npz", ".tmp-x.csv"):
        open(os.path.join(folder, name), "wb").close()
    engine.prepare_run_folder(folder, resume=os.path.join(folder, "checkpoint.npz"))
    return sorted(os.listdir(folder))


def _resume_same_values():
    recipe, seed, data = engine.resume_settings(
        _NOW["files"]["good"], "unet", epochs=3, image_size=32, batch_size=4, seed=0,
        data="shapes", lr=None)
    return recipe.image_size, recipe.train_images, recipe.epochs, seed, data


def _resume_on_other_classes():
    recipe, _, _ = engine.resume_settings(_NOW["files"]["good"], "unet")
    return engine.train_model(recipe, data=_NOW["files"]["voc6"], out_dir=_fresh("classes"),
                              resume=_NOW["files"]["good"], progress=False, log=None)


LR_EXPECTED = r"argument --lr: expected a positive number"
CASES = [
    # ----- the model and the flags' values -----
    Case("train-unknown-model", cli("train", "resnet"), clear(CliError, r"MODEL.*'resnet'")),
    Case("eval-unknown-model", cli("eval", "unet2", "--checkpoint", "{good}"),
         clear(CliError, r"MODEL.*'unet2'")),
    Case("train-no-model", cli("train"), clear(CliError, r"MODEL")),
    Case("epochs-negative", cli("train", "unet", "--epochs", "-1"),
         clear(CliError, r"--epochs: expected an integer >= 0, got '-1'")),
    Case("epochs-text", cli("train", "unet", "--epochs", "two"),
         clear(CliError, r"--epochs: expected .*'two'")),
    Case("epochs-fraction", cli("train", "unet", "--epochs", "1.5"),
         clear(CliError, r"--epochs: expected .*'1.5'")),
    Case("demo-epochs-zero", cli("demo", "--epochs", "0"),
         clear(CliError, r"--epochs: expected a positive integer, got '0'")),
    Case("batch-size-zero", cli("train", "unet", "--batch-size", "0"),
         clear(CliError, r"--batch-size: expected a positive integer, got '0'")),
    Case("batch-size-negative", cli("train", "unet", "--batch-size", "-4"),
         clear(CliError, r"--batch-size: .*'-4'")),
    Case("batch-size-text", cli("train", "unet", "--batch-size", "many"),
         clear(CliError, r"--batch-size: .*'many'")),
    Case("lr-zero", cli("train", "unet", "--lr", "0"), clear(CliError, LR_EXPECTED)),
    Case("lr-negative", cli("train", "unet", "--lr", "-0.1"), clear(CliError, LR_EXPECTED)),
    Case("lr-nan", cli("train", "unet", "--lr", "nan"), clear(CliError, LR_EXPECTED)),
    Case("lr-inf", cli("train", "unet", "--lr", "inf"), clear(CliError, LR_EXPECTED)),
    Case("lr-text", cli("train", "unet", "--lr", "fast"), clear(CliError, r"--lr: .*'fast'")),
    Case("image-size-zero", cli("train", "unet", "--image-size", "0"),
         clear(CliError, r"--image-size: expected a positive integer, got '0'")),
    Case("image-size-text", cli("train", "unet", "--image-size", "32px"),
         clear(CliError, r"--image-size: .*'32px'")),
    Case("train-images-zero", cli("train", "unet", "--train-images", "0"),
         clear(CliError, r"--train-images: expected a positive integer, got '0'")),
    Case("train-images-negative", cli("train", "unet", "--train-images", "-8"),
         clear(CliError, r"--train-images: .*'-8'")),
    Case("val-images-zero", cli("train", "unet", "--val-images", "0"),
         clear(CliError, r"--val-images: .*'0'")),
    Case("seed-negative", cli("train", "unet", "--seed", "-1"),
         clear(CliError, r"--seed: expected an integer >= 0, got '-1'")),
    Case("eval-batch-size-zero", cli("eval", "unet", "--checkpoint", "{good}", "--batch-size", "0"),
         clear(CliError, r"--batch-size: .*'0'")),
    Case("predict-threshold-above-1",
         cli("predict", "unet", "--checkpoint", "{good}", "x.png", "--score-threshold", "2"),
         clear(CliError, r"--score-threshold: expected a number in \[0, 1\], got '2'")),
    Case("device-unknown", cli("train", "unet", "--device", "tpu"), clear(CliError, r"--device")),
    # ----- missing files and folders -----
    Case("data-missing", cli("train", "unet", "--data", "/no/such/folder", *TINY),
         clear(CliError, r"/no/such/folder")),
    Case("eval-no-checkpoint-flag", cli("eval", "unet"), clear(CliError, r"--checkpoint")),
    Case("eval-checkpoint-missing", cli("eval", "unet", "--checkpoint", "/no/such.npz"),
         clear(CliError, r"checkpoint file not found: /no/such\.npz")),
    Case("resume-missing", cli("train", "unet", "--resume", "/no/such.npz", *TINY),
         clear(CliError, r"not found: /no/such\.npz")),
    Case("predict-image-missing",
         cli("predict", "unet", "--checkpoint", "{good}", "{root}/missing.png"),
         clear(CliError, r"missing\.png")),
    # ----- checkpoints -----
    Case("eval-checkpoint-is-a-directory", cli("eval", "unet", "--checkpoint", "{folder}"),
         clear(CliError, r"checkpoint .*folder\.npz is a directory")),
    Case("resume-checkpoint-is-a-directory",
         cli("train", "unet", "--resume", "{folder}", "--no-progress"),
         clear(CliError, r"checkpoint .*folder\.npz is a directory")),
    Case("eval-truncated", cli("eval", "unet", "--checkpoint", "{truncated}"),
         clear(CliError, r"truncated\.npz.*truncated or corrupt")),
    Case("eval-not-a-zip", cli("eval", "unet", "--checkpoint", "{junk}"),
         clear(CliError, r"junk\.npz")),
    Case("eval-no-config", cli("eval", "unet", "--checkpoint", "{no_config}"),
         clear(CliError, r"no_config\.npz has no '__config__'")),
    Case("eval-config-a-list", cli("eval", "unet", "--checkpoint", "{config_list}"),
         clear(CliError, r"config_list\.npz: the config must be a JSON object, got a list")),
    Case("predict-config-a-string",
         cli("predict", "unet", "--checkpoint", "{config_text}", "x.png"),
         clear(CliError, r"config_text\.npz: the config must be a JSON object, got a str")),
    Case("resume-config-a-list", cli("train", "unet", "--resume", "{config_list}"),
         clear(CliError, r"config_list\.npz: the config must be a JSON object")),
    Case("eval-no-model-name", cli("eval", "unet", "--checkpoint", "{no_model}"),
         clear(CliError, r"no_model\.npz has no model name")),
    Case("eval-wrong-model", cli("eval", "fcn8s", "--checkpoint", "{good}"),
         clear(CliError, r"checkpoint .*checkpoint\.npz holds a 'unet' model, not 'fcn8s'")),
    Case("resume-wrong-model", cli("train", "deeplab", "--resume", "{good}"),
         clear(CliError, r"holds a 'unet' model, not 'deeplab'")),
    Case("eval-nan-weights", cli("eval", "unet", "--checkpoint", "{nan_weights}"),
         clear(CliError, r"nan_weights\.npz: '[\w.]+' holds NaN or infinite values")),
    Case("eval-inf-weights", cli("eval", "unet", "--checkpoint", "{inf_weights}"),
         clear(CliError, r"inf_weights\.npz: '[\w.]+' holds NaN or infinite")),
    Case("predict-nan-weights",
         cli("predict", "unet", "--checkpoint", "{nan_weights}", "x.png"),
         clear(CliError, r"nan_weights\.npz: '[\w.]+' holds NaN")),
    Case("resume-nan-weights", cli("train", "unet", "--resume", "{nan_weights}"),
         clear(CliError, r"nan_weights\.npz: '[\w.]+' holds NaN")),
    Case("eval-recipe-image-size-negative", cli("eval", "unet", "--checkpoint", "{bad_size}"),
         clear(CliError, r"bad_size\.npz: its recipe has image_size -3, expected an integer")),
    Case("eval-recipe-image-size-text", cli("eval", "unet", "--checkpoint", "{text_size}"),
         clear(CliError, r"text_size\.npz: its recipe has image_size 'big'")),
    Case("eval-recipe-a-list", cli("eval", "unet", "--checkpoint", "{recipe_list}"),
         clear(CliError, r"recipe_list\.npz: its recipe must be a JSON object")),
    Case("eval-model-config-unknown-option", cli("eval", "unet", "--checkpoint", "{bad_options}"),
         clear(CliError, r"bad_options\.npz: cannot rebuild its 'unet' model")),
    # ----- classes and data the checkpoint does not fit -----
    Case("eval-4-classes-on-6", cli("eval", "unet", "--checkpoint", "{good}", "--data", "{voc6}"),
         clear(CliError, r"trained on 4 classes \['background', 'square', 'circle', "
                         r"'triangle'\], but data .*voc6 has 6 classes \[.*'star', 'moon'\]")),
    Case("eval-4-classes-on-21",
         cli("eval", "unet", "--checkpoint", "{good}", "--data", "{voc21}"),
         clear(CliError, r"4 classes .* but data .*voc21 has 21 classes \['background', "
                         r"'aeroplane'")),
    Case("eval-detector-on-voc",
         cli("eval", "fasterrcnn", "--checkpoint", "{fasterrcnn}", "--data", "{voc4}"),
         clear(CliError, r"fasterrcnn is a detector and needs boxes: --data must be .* not the "
                         r"VOC segmentation folder .*voc4")),
    Case("train-detector-on-voc", cli("train", "fasterrcnn", "--data", "{voc4}", *TINY,
                                      "--out", "{root}/never"),
         clear(CliError, r"fasterrcnn is a detector and needs boxes.*voc4")),
    Case("engine-resume-on-other-classes", _resume_on_other_classes,
         clear(ValueError, r"trained on 4 classes .* but data .*voc6 has 6 classes")),
    # ----- --resume takes the run's settings -----
    Case("resume-other-image-size",
         cli("train", "unet", "--resume", "{good}", "--epochs", "2", "--image-size", "64"),
         clear(CliError, r"--image-size 64 differs from the checkpoint's image_size 32")),
    Case("resume-other-lr", cli("train", "unet", "--resume", "{good}", "--lr", "0.5"),
         clear(CliError, r"--lr 0.5 differs from the checkpoint's lr 0.005")),
    Case("resume-other-train-images",
         cli("train", "unet", "--resume", "{good}", "--train-images", "2000"),
         clear(CliError, r"--train-images 2000 differs from the checkpoint's train_images 4")),
    Case("resume-other-seed", cli("train", "unet", "--resume", "{good}", "--seed", "5"),
         clear(CliError, r"--seed 5 differs from the checkpoint's seed 0")),
    Case("resume-other-data", cli("train", "unet", "--resume", "{good}", "--data", "{voc4}"),
         clear(CliError, r"--data .*voc4 differs from the checkpoint's data shapes")),
    Case("resume-fewer-epochs", cli("train", "unet", "--resume", "{good}", "--epochs", "0"),
         clear(CliError, r"--epochs 0 is fewer than the 1 epochs checkpoint .* has already")),
    Case("resume-same-values-are-fine", _resume_same_values,
         correct(lambda r: r == (32, 4, 3, 0, "shapes"))),
    # ----- run folders -----
    Case("train-into-a-non-empty-folder", cli("train", "unet", "--out", "{full}", *TINY),
         clear(CliError, r"run folder .*full is not empty \(notes\.txt\): pass --overwrite")),
    Case("train-into-a-finished-run", cli("train", "unet", "--out", "{run}", *TINY),
         clear(CliError, r"run folder .*run is not empty \(checkpoint\.npz, history\.csv")),
    Case("resume-into-another-runs-folder",
         cli("train", "unet", "--resume", "{good}", "--out", "{full}", "--epochs", "2"),
         clear(CliError, r"run folder .*full is not empty")),
    Case("out-is-a-file", cli("train", "unet", "--out", "{a_file}", *TINY),
         clear(CliError, r"run folder .*a_file is a file, not a folder")),
    Case("out-below-a-file", cli("train", "unet", "--out", "{a_file}/run", *TINY),
         clear(CliError, r"run folder .*a_file/run is not writable")),
    Case("out-read-only", _readonly_run, clear(CliError, r"run folder .*readonly/r is not "
                                                         r"writable")),
    Case("orphan-temporary-files-are-removed", _orphans_removed,
         correct(lambda names: names == ["checkpoint.npz", "history.csv"])),
]


@pytest.mark.parametrize("case", params(CASES))
def test_bad_input(case, files, capsys):
    _NOW.update(files=files, capsys=capsys)
    run_case(case)
