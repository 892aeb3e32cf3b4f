"""The ``tinyseg`` command.

    tinyseg [--debug] COMMAND ...
    tinyseg demo [--out DIR] [--epochs N] [--seed S] [--device cpu|gpu]
    tinyseg train MODEL [--epochs N] [--batch-size B] [--lr LR] [--seed S] [--device cpu|gpu]
                        [--data shapes|PATH] [--out DIR] [--overwrite] [--resume FILE] ...
    tinyseg eval MODEL --checkpoint FILE [--data shapes|PATH] [--out DIR]
    tinyseg predict MODEL --checkpoint FILE IMAGE... [--out DIR]
    tinyseg homework list
    tinyseg homework build OUT [--tasks TASK ...] [--overwrite]
    tinyseg homework grade [DIR] [--verbose] [--reference ROOT] [--task T] ...

Each command is one ``_add_<command>(subparsers)`` function in ``COMMANDS`` that registers
its parser and sets ``func``; ``func(args)`` returns the exit status. MODEL is a name of
``tinyseg.models.MODELS``; the training itself is ``tinyseg.engine``. Usage errors and bad
arguments print one line ``tinyseg: error: ...`` and exit with status 2; with ``--debug``
the full traceback comes first (for a bug report, or to see where a message comes from).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import traceback
from pathlib import Path

import numpy

from . import homework
from .homework import command as homework_command


class CommandError(Exception):
    """A user error a command reports as one line (exit status 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump, no traceback
        raise CommandError(message)


# ----- homework: the command lives next to the code it drives -----


def _add_homework(subparsers):
    homework_command.add_parser(subparsers)


# ----- shared argument types -----


def _number(convert, accept, expected):
    """An argparse type: ``convert`` the text, then require ``accept(value)``."""

    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


_positive_int = _number(int, lambda v: v >= 1, "a positive integer")
_nonnegative_int = _number(int, lambda v: v >= 0, "an integer >= 0")
_positive_float = _number(float, lambda v: 0 < v < float("inf"), "a positive number")
_fraction = _number(float, lambda v: 0 <= v <= 1, "a number in [0, 1]")


def _check_device(device):
    from . import backend

    if device == "gpu" and not backend.gpu_available():
        raise CommandError("--device gpu: no CuPy with a CUDA device here; use --device cpu")
    return device


def _add_device(p):
    p.add_argument("--device", choices=["cpu", "gpu"], default="cpu", help="cpu (default) or gpu")


def _add_model(p):
    from .models import MODELS

    p.add_argument("model", metavar="MODEL", choices=list(MODELS),
                   help="one of: " + ", ".join(MODELS))


def _print_scores(scores, classes=()):
    if "bbox_map" in scores:  # a detector: the COCO summary
        for key, value in scores.items():
            print(f"{key:<18s} {value:.4f}")
        return
    print(f"mIoU            {scores['miou']:.4f}")
    print(f"pixel accuracy  {scores['pixel_accuracy']:.4f}")
    print(f"dice            {scores['dice']:.4f}")
    for k, iou in enumerate(scores["per_class_iou"]):
        name = classes[k] if k < len(classes) else f"class {k}"
        print(f"  IoU {name:<12s} {'absent' if iou is None else f'{iou:.4f}'}")


# ----- train -----


def _fit(args, recipe, **where) -> int:
    """Train a recipe; a run that diverged (FloatingPointError) exits with 1, never 0."""
    from .engine import train_model

    quiet = "warn" if args.debug else "ignore"  # the loop's divergence check says it in one line
    try:
        with numpy.errstate(over=quiet, invalid=quiet, divide=quiet):
            train_model(recipe, device=args.device, progress=not args.no_progress, **where)
    except FloatingPointError as err:
        if args.debug:
            traceback.print_exc()
        print(f"tinyseg: training failed: {err}", file=sys.stderr)
        return 1
    return 0


def _train(args) -> int:
    from .engine import resume_settings
    from .recipes import default_recipe

    _check_device(args.device)
    asked = dict(batch_size=args.batch_size, lr=args.lr, image_size=args.image_size,
                 train_images=args.train_images, val_images=args.val_images)
    if args.resume is not None:  # the run's own settings: only --epochs may change
        recipe, seed, data = resume_settings(args.resume, args.model, epochs=args.epochs,
                                             seed=args.seed, data=args.data, **asked)
        out = args.out if args.out is not None else os.path.dirname(args.resume) or "."
    else:
        recipe = default_recipe(args.model).replace(epochs=args.epochs, **asked)
        seed, data = args.seed or 0, args.data or "shapes"
        out = args.out if args.out is not None else os.path.join("runs", args.model)
    return _fit(args, recipe, seed=seed, data=data, out_dir=out, resume=args.resume,
                overwrite=args.overwrite)


def _add_train(subparsers):
    p = subparsers.add_parser(
        "train",
        help="train a model (default recipe of tinyseg.recipes)",
        description="Train MODEL with its default recipe, overridden by the flags; writes "
        "metrics.json, checkpoint.npz, predictions.png and history.csv into --out.",
    )
    _add_model(p)
    p.add_argument("--epochs", type=_nonnegative_int, help="epochs (recipe's default)")
    p.add_argument("--batch-size", type=_positive_int, help="images per step")
    p.add_argument("--lr", type=_positive_float, help="peak learning rate")
    p.add_argument("--seed", type=_nonnegative_int, help="seed of init, order and augmentation (0)")
    _add_device(p)
    p.add_argument("--data", metavar="shapes|PATH",
                   help="the built-in scenes (default) or a VOC-/COCO-style folder")
    p.add_argument("--out", metavar="DIR", help="output folder (default runs/MODEL; on "
                   "--resume the checkpoint's folder); must be empty unless --overwrite")
    p.add_argument("--overwrite", action="store_true", help="replace the run in --out")
    p.add_argument("--image-size", type=_positive_int,
                   help="side of the images (recipe: 64 segmentation, 128 detection)")
    p.add_argument("--train-images", type=_positive_int, help="synthetic training images")
    p.add_argument("--val-images", type=_positive_int, help="synthetic validation images")
    p.add_argument("--resume", metavar="FILE",
                   help="continue the run of this checkpoint, with its settings")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_train)


# ----- eval -----


def _eval(args) -> int:
    from .checkpoint import write_json
    from .engine import eval_metrics, evaluate_checkpoint

    _check_device(args.device)
    out = Path(args.out) if args.out is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    scores, model, config = evaluate_checkpoint(
        args.checkpoint, expected=args.model, data=args.data, device=args.device,
        batch_size=args.batch_size, val_images=args.val_images, progress=not args.no_progress,
        picture=None if out is None else out / "predictions.png",
    )
    classes = list(config.get("classes") or [])
    print(f"{args.model} from {args.checkpoint} (epoch {config.get('epoch', '?')}) on {args.data}:")
    _print_scores(scores, classes)
    if out is not None:
        write_json(out / "metrics.json", eval_metrics(scores, model, config, args.checkpoint,
                                                      args.data))
        print(f"wrote {out / 'metrics.json'} and {out / 'predictions.png'}")
    return 0


def _add_eval(subparsers):
    p = subparsers.add_parser(
        "eval",
        help="score a checkpoint on the validation split",
        description="Rebuild MODEL from --checkpoint and score it on the val split of --data: "
        "mIoU, pixel accuracy and Dice for segmentation, COCO box mAP for detection. With --out, "
        "also write metrics.json and predictions.png.",
    )
    _add_model(p)
    p.add_argument("--checkpoint", required=True, metavar="FILE", help="a checkpoint.npz")
    p.add_argument("--data", default="shapes", metavar="shapes|PATH",
                   help="the built-in scenes (default) or a VOC-/COCO-style folder")
    _add_device(p)
    p.add_argument("--batch-size", type=_positive_int, help="images per batch")
    p.add_argument("--val-images", type=_positive_int, help="synthetic validation images")
    p.add_argument("--out", metavar="DIR",
                   help="also write DIR/metrics.json and DIR/predictions.png")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_eval)


# ----- predict -----


def _read_image(path):
    """An RGB photo (H, W, 3) uint8 from PATH, read as the dataset folders read theirs."""
    from .data.files import read_rgb_uint8  # errors name the file; main prints them as one line

    return read_rgb_uint8(path)


def _model_input(picture, size: int):
    """An RGB photo (H, W, 3) uint8 -> a batch of one (1, 3, size, size) float32 in [0, 1]."""
    from PIL import Image

    resized = numpy.asarray(Image.fromarray(picture).resize((size, size), Image.BILINEAR))
    return resized.transpose(2, 0, 1)[None].astype(numpy.float32) / 255.0


def _predict(args) -> int:
    from PIL import Image

    from . import viz
    from .checkpoint import load_model
    from .engine import is_detection, predict

    _check_device(args.device)
    model, config = load_model(args.checkpoint, expected=args.model, device=args.device)
    size = int(config.get("recipe", {}).get("image_size", 64))
    out = Path(args.out if args.out is not None else os.path.join("runs", args.model, "predict"))
    pictures = [_read_image(path) for path in args.images]  # every error before any work
    out.mkdir(parents=True, exist_ok=True)
    if is_detection(model):
        return _predict_boxes(args, model, config, pictures, size, out)
    for path, picture in zip(args.images, pictures):
        h, w = picture.shape[:2]
        labels = predict(model, _model_input(picture, size), device=args.device)[0]
        if labels.shape != (size, size):  # valid padding: the centre, the border unknown
            full = numpy.full((size, size), 255, dtype=numpy.int64)
            top, left = (size - labels.shape[0]) // 2, (size - labels.shape[1]) // 2
            full[top : top + labels.shape[0], left : left + labels.shape[1]] = labels
            labels = full
        labels = numpy.asarray(
            Image.fromarray(labels.astype(numpy.uint8)).resize((w, h), Image.NEAREST)
        )
        stem = Path(path).stem
        viz.save_mask_png(out / f"{stem}_mask.png", labels)
        viz.save_image(out / f"{stem}_overlay.png", viz.overlay(picture, labels))
        found = sorted(int(v) for v in numpy.unique(labels) if 0 < v < 255)
        classes = config.get("classes") or []
        names = [classes[v] if v < len(classes) else str(v) for v in found]
        print(f"{path}: {', '.join(names) or 'background only'} -> "
              f"{out / (stem + '_mask.png')}, {out / (stem + '_overlay.png')}")
    return 0


def _predict_boxes(args, model, config, pictures, size, out) -> int:
    """predict for a detector: boxes on each picture -> <stem>_boxes.png and <stem>_boxes.json.

    A detector that predicts masks (Mask R-CNN) also colours each instance in the picture and
    writes <stem>_instances.png, a palette PNG whose pixel value is the instance's number
    (1, 2, ... in the order of the JSON records; 0 where no instance is).
    """
    import matplotlib.pyplot as plt
    from PIL import Image

    from . import viz
    from .engine import predict_detections

    classes = config.get("classes") or []
    for path, picture in zip(args.images, pictures):
        h, w = picture.shape[:2]
        found = predict_detections(model, _model_input(picture, size), device=args.device)[0]
        boxes = found["boxes"] * numpy.array([w / size, h / size, w / size, h / size])
        keep = found["scores"] >= args.score_threshold
        stem = Path(path).stem
        shown, written = picture, []
        if "masks" in found:  # back to the photo's size, then one colour per instance
            masks = numpy.stack([
                numpy.asarray(Image.fromarray(m).resize((w, h), Image.NEAREST))
                for m in found["masks"][keep]]) if keep.any() else numpy.zeros((0, h, w), bool)
            shown = viz.overlay_instances(picture, masks[::-1])  # the best on top
            instances = numpy.zeros((h, w), dtype=numpy.uint8)
            for number, m in reversed(list(enumerate(masks, start=1))):
                instances[m] = number
            viz.save_mask_png(out / f"{stem}_instances.png", instances)
            written = [out / f"{stem}_instances.png"]
        fig, ax = plt.subplots(figsize=(5, 5 * h / w))
        ax.imshow(shown)
        viz.draw_boxes(ax, boxes[keep], found["labels"][keep], found["scores"][keep], classes)
        ax.set_axis_off()
        fig.savefig(out / f"{stem}_boxes.png", dpi=100, bbox_inches="tight")
        plt.close(fig)
        names = [classes[v] if v < len(classes) else str(v) for v in found["labels"][keep]]
        records = [{"box": [round(float(v), 2) for v in b], "label": int(lab), "name": name,
                    "score": round(float(sc), 4)}
                   for b, lab, name, sc in zip(boxes[keep], found["labels"][keep], names,
                                               found["scores"][keep])]
        (out / f"{stem}_boxes.json").write_text(json.dumps(records, indent=1) + "\n")
        files = [out / f"{stem}_boxes.png", out / f"{stem}_boxes.json", *written]
        print(f"{path}: {len(records)} object(s) {', '.join(names)} -> "
              f"{', '.join(str(f) for f in files)}")
    return 0


def _add_predict(subparsers):
    p = subparsers.add_parser(
        "predict",
        help="segment or detect objects in image files with a checkpoint",
        description="Run MODEL from --checkpoint on each IMAGE. A segmentation model writes "
        "<stem>_mask.png (palette PNG, pixel value = class) and <stem>_overlay.png; a detector "
        "writes <stem>_boxes.png (the boxes drawn) and <stem>_boxes.json.",
    )
    _add_model(p)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, ...)")
    p.add_argument("--checkpoint", required=True, metavar="FILE", help="a checkpoint.npz")
    p.add_argument("--out", metavar="DIR", help="output folder (default runs/MODEL/predict)")
    p.add_argument("--score-threshold", type=_fraction, default=0.5,
                   help="detectors: draw boxes scoring at least this (0.5)")
    _add_device(p)
    p.set_defaults(func=_predict)


# ----- demo: a short U-Net run on the built-in scenes -----


def demo_recipe(epochs=None):
    """The demo's recipe: the default U-Net on 1000 scenes for 5 epochs (shrunk by TINYSEG_FAST=1).

    About 130 s of training on two CPU cores, for an mIoU near 0.86; ``tinyseg train unet``
    runs the full recipe. TINYSEG_FAST=1 keeps the model and every setting and
    only trains on fewer images for fewer epochs.
    """
    from .recipes import default_recipe, fast_mode

    recipe = default_recipe("unet", fast=False).replace(
        epochs=5, train_images=1000, val_images=100, augment=False
    )
    if fast_mode():
        recipe = recipe.replace(epochs=2, train_images=16, val_images=8)
    return recipe.replace(epochs=epochs)


def _demo(args) -> int:
    _check_device(args.device)
    recipe = demo_recipe(args.epochs)
    print(f"tinyseg demo: U-Net on {recipe.train_images} synthetic {recipe.image_size}x"
          f"{recipe.image_size} scenes, {recipe.epochs} epoch(s), device {args.device}")
    return _fit(args, recipe, seed=args.seed, data="shapes", out_dir=args.out, overwrite=True)


def _add_demo(subparsers):
    p = subparsers.add_parser(
        "demo",
        help="a short U-Net run on the built-in scenes (about two minutes on a CPU)",
        description="Train a small U-Net on synthetic shapes scenes; writes "
        "DIR/predictions.png, DIR/metrics.json, DIR/history.csv and DIR/checkpoint.npz.",
    )
    p.add_argument("--out", default="runs/demo", metavar="DIR",
                   help="output folder (runs/demo); the demo starts over there each time")
    p.add_argument("--epochs", type=_positive_int, default=None,
                   help="epochs (5; 2 when TINYSEG_FAST=1)")
    p.add_argument("--seed", type=_nonnegative_int, default=0)
    _add_device(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_demo)


COMMANDS = [_add_demo, _add_train, _add_eval, _add_predict, _add_homework]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tinyseg", description="tinyseg: segmentation from scratch in NumPy/CuPy."
    )
    parser.add_argument("--debug", action="store_true",
                        help="on an error, also print the full traceback")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for add in COMMANDS:
        add(subparsers)
    return parser


def main(argv=None) -> int:
    """Run the command line; returns the exit status (2 for usage and input errors).

    With ``--debug`` before the command, an error also prints its full traceback.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    # known before parsing (the flags ahead of the command), so a usage error can show it too
    debug = "--debug" in itertools.takewhile(lambda word: word.startswith("-"), argv)
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except SystemExit as exit_:  # --help
        return exit_.code if isinstance(exit_.code, int) else 0
    except (CommandError, ValueError, OSError, subprocess.TimeoutExpired,
            homework.GradeError) as err:
        if debug:  # the traceback first, so that the one line stays the last word
            traceback.print_exc()
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"tinyseg: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tinyseg: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
